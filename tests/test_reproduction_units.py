"""`reproductions.units.run_units`: the fan-out the reproduction scripts share."""

from __future__ import annotations

import os

import pytest

from reproductions.units import run_units


def _unit(x: int, y: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError(f"bad unit {x}")
    return x * y, os.getpid()


TASKS = [(i, 10) for i in range(5)]


def test_in_process_runs_every_unit_in_order():
    out = list(run_units(_unit, TASKS, jobs=1))
    assert [i for i, _ in out] == list(range(5))
    assert [r[0] for _, r in out] == [10 * i for i in range(5)]
    assert {r[1] for _, r in out} == {os.getpid()}


def test_processes_give_the_same_results_each_unit_in_a_fresh_process():
    out = dict(run_units(_unit, TASKS, jobs=2))
    assert sorted(out) == list(range(5))  # every task once, whatever the finishing order
    assert [out[i][0] for i in range(5)] == [10 * i for i in range(5)]
    pids = [out[i][1] for i in range(5)]
    assert os.getpid() not in pids and len(set(pids)) == 5  # maxtasksperchild=1


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_unit_stops_the_run_with_its_error(jobs):
    with pytest.raises(ValueError, match="bad unit -1"):
        list(run_units(_unit, [(1, 1), (-1, 1)], jobs=jobs))


def test_no_tasks_no_processes():
    assert list(run_units(_unit, [], jobs=2)) == []
