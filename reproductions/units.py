"""A reproduction's independent units ((data set, seed) or (data set, model, seed) runs), run
`jobs` at a time: the one fan-out that cdm_tables, purs_tables and totalrecall_table2 share."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _call(job: tuple[int, Callable[..., Any], tuple]) -> tuple[int, Any]:
    i, fn, task = job
    return i, fn(*task)


def run_units(
    fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int = 1
) -> Iterator[tuple[int, Any]]:
    """Yields `(i, fn(*tasks[i]))` for every task.

    `jobs <= 1`: in this process, in order. Otherwise in `jobs` processes started by "spawn",
    each unit in a fresh one (`maxtasksperchild=1`: a unit's memory is returned when it ends,
    and nothing, torch's thread count included, passes from one unit to the next), yielded in
    the order they finish. `fn` must be a module-level function and the tasks picklable; the
    first unit that raises stops the run with its exception.

    Args:
        fn: the unit, e.g. `fn(args, dataset, seed) -> dict`; it writes its own result file
            if the run is to be resumable.
        tasks: `fn`'s positional arguments, one tuple per unit.
        jobs: processes at a time.
    """
    if jobs <= 1:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    if not tasks:
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(jobs, len(tasks)), maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(_call, [(i, fn, t) for i, t in enumerate(tasks)])
