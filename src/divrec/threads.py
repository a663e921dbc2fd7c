"""One thread policy for divrec: how many threads torch, faiss, BLAS and implicit may use.

Why: on a 2-core machine shared with other jobs, OpenMP / BLAS parallel regions wait at
their barriers for a thread whose core is busy elsewhere. Issue #9 (item 12) saw two-tower
training with 2 torch threads run 77x slower than with 1 under load, and single-query faiss
search with faiss's default (all cores) up to 320x slower, while on a quiet machine 2
threads were only 1.4x faster for training. `benchmarks/bench_threads.py`
(`benchmarks/results/threads.json`, one busy-loop core added): 2 threads made ML-100K
two-tower training 2.5x slower and exact single-query p99 4.7x slower (mean 2.5x); without
the busy core 2 threads made training 1.25x faster and halved the time of a 1,000-query
batch search and of re-ranking 256 requests (DPP, MMR; with the busy core 2 threads still
took 0.8x the time there: each thread runs its own range of requests, with no barrier).
So divrec never oversubscribes by default.

The policy:

* **Budget.** `thread_budget()` is the number of threads divrec may use for *batch* work
  (training, ALS / BPR, batch index search and index builds, re-ranking a batch of at
  least `SMALL_BATCH` requests with the compiled DPP / MMR kernels). It is, first found:
  the value given to `set_threads(n)` (e.g. by a CLI ``--threads`` option), the
  ``DIVREC_THREADS`` environment variable, and otherwise **1**. ``0`` or ``"auto"`` means
  every core this process may run on (`available_cores`).
* **Per-request serving stays single-threaded.** A search of fewer than `SMALL_BATCH`
  queries (one user request) runs on 1 thread whatever the budget: a parallel region costs
  more than it saves at that size, and is the 320x case under load.
* **Explicit wins.** A model or index constructed with ``threads=n`` (n >= 1) uses n;
  ``threads=0`` means every available core (implicit's and faiss's convention); the default
  ``threads=None`` means "ask this policy" (`resolve_threads`).

`limit_threads(n)` is a context manager that sets torch's intra-op threads, faiss's OpenMP
threads and every BLAS / OpenMP pool threadpoolctl finds to n, restoring all of them on exit;
`configure_threads(n)` sets the budget and applies it the same way for the whole process
(the entry point of a CLI ``--threads`` option).
implicit takes its thread count as an argument (`num_threads`); pass `resolve_threads(...)`.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator

ENV_VAR = "DIVREC_THREADS"
DEFAULT_THREADS = 1
SMALL_BATCH = 64
"""Searches with fewer queries than this are "per request" and run single-threaded."""

_override: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity set; `os.cpu_count` as a fallback)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _parse(value: int | str, what: str) -> int:
    """A thread count from an int or string: n >= 1 as is, 0 / "auto" -> available cores."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "all", "0"):
            return available_cores()
        try:
            value = int(text)
        except ValueError:
            raise ValueError(
                f"{what} must be a positive integer, 0 or 'auto', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be a positive integer, 0 or 'auto', got {value!r}")
    return available_cores() if value == 0 else int(value)


def set_threads(n: int | str | None) -> None:
    """Sets the process-wide thread budget (what a CLI ``--threads N`` option should call).

    Args:
        n: threads (>= 1), 0 / "auto" for every available core, or None to drop the override
            (then ``DIVREC_THREADS`` or the default of 1 applies again).
    """
    global _override
    _override = None if n is None else _parse(n, "threads")


def configure_threads(n: int | str | None = None) -> int:
    """Sets the budget and applies it process-wide: what a CLI ``--threads`` option calls.

    `set_threads(n)` (when n is not None), then torch's intra-op threads, faiss's OpenMP
    threads and every BLAS / OpenMP pool threadpoolctl finds are set to `thread_budget()`
    for the rest of the process (numpy scoring included). Per-request searches still run
    single-threaded (`resolve_threads`).

    Args:
        n: threads (>= 1), 0 / "auto" for every available core, or None to keep the
            ``DIVREC_THREADS`` / default (1) budget.

    Returns:
        the thread count applied.
    """
    import torch
    from threadpoolctl import threadpool_limits

    if n is not None:
        set_threads(n)
    budget = thread_budget()
    threadpool_limits(limits=budget)  # not used as a context: stays in force
    torch.set_num_threads(budget)
    faiss = _faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(budget)
    return budget


def thread_budget() -> int:
    """Threads divrec may use for batch work: `set_threads` > ``DIVREC_THREADS`` > 1."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _parse(env, ENV_VAR)
    return DEFAULT_THREADS


def resolve_threads(threads: int | None = None, batch: int | None = None) -> int:
    """The thread count for one piece of work.

    Args:
        threads: an explicit setting (a constructor's ``threads``): n >= 1 is used as is,
            0 means every available core, None asks the policy.
        batch: number of queries of a search (None: batch work such as training). With
            ``threads=None``, fewer than `SMALL_BATCH` queries get 1 thread.

    Returns:
        threads, >= 1.
    """
    if threads is not None:
        return _parse(threads, "threads")
    if batch is not None and batch < SMALL_BATCH:
        return 1
    return thread_budget()


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a dependency
        return None
    return faiss


def current_threads() -> dict[str, int]:
    """Thread settings now in force: torch intra-op, faiss OpenMP, and each BLAS pool."""
    import torch
    from threadpoolctl import threadpool_info

    out = {"torch": torch.get_num_threads()}
    faiss = _faiss()
    if faiss is not None:
        out["faiss"] = faiss.omp_get_max_threads()
    for pool in threadpool_info():
        key = f"{pool['user_api']}:{pool['prefix']}"
        out[key] = min(out.get(key, pool["num_threads"]), pool["num_threads"])
    return out


@contextlib.contextmanager
def limit_threads(n: int | None = None) -> Iterator[int]:
    """Runs a block with torch, faiss, BLAS and OpenMP limited to n threads; restores after.

    Args:
        n: threads (>= 1), 0 for every available core, None for `thread_budget()`.

    Yields:
        the thread count in force (pass it to implicit's ``num_threads``).
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = resolve_threads(n)
    faiss = _faiss()
    old_torch = torch.get_num_threads()
    old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        if faiss is not None:
            faiss.omp_set_num_threads(n)
        try:
            yield n
        finally:
            torch.set_num_threads(old_torch)
            if faiss is not None:
                faiss.omp_set_num_threads(old_faiss)


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[int]:
    """faiss's OpenMP thread count set to n for a block (cheap: no library scan); restored.

    faiss's bundled OpenBLAS uses the OpenMP threading layer, so its sgemm (flat search of
    20+ queries) follows the same setting.
    """
    faiss = _faiss()
    if faiss is None:  # pragma: no cover
        yield n
        return
    old = faiss.omp_get_max_threads()
    if old == n:
        yield n
        return
    faiss.omp_set_num_threads(n)
    try:
        yield n
    finally:
        faiss.omp_set_num_threads(old)
