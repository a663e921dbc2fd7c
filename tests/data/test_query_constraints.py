"""Constraints (divrec.data.constraints): validation, Query broadcast/slicing, the list
checker on hand-made lists and the position-space resolution."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.constraints import (
    Constraints,
    ConstraintViolation,
    check_list,
    fairness_floor,
    resolve_batch,
)
from divrec.data.query import Query


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_count": {1: 3}, "max_count": {1: 2}}, "min_count[1]"),
        ({"min_count": {1: -1}}, "min_count[1]"),
        ({"max_count": {2: -4}}, "max_count[2]"),
        ({"max_count": {-2: 1}}, "max_count"),
        ({"pins": [(3, 0), (4, 0)]}, "pins: position 0 pinned twice"),
        ({"pins": [(3, 0), (3, 1)]}, "pins: item 3 pinned twice"),
        ({"pins": {3: -1}}, "pins[3]"),
        ({"boosts": {5: float("nan")}}, "boosts[5]"),
        ({"boosts": {5: float("inf")}}, "boosts[5]"),
        ({"min_share": 1.5, "protected": 0}, "min_share"),
        ({"min_share": 0.5}, "min_share needs a protected"),
        ({"exclude": [1.5]}, "exclude"),
        ({"allowed": np.ones(3)}, "allowed"),
        ({"pins": {2: 0}, "exclude": [2]}, "pins: item 2"),
        ({"min_count": {1: 1}, "deny_categories": [1]}, "min_count[1]"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError) as e:
        Constraints(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(field)


def test_frozen_and_normalized():
    c = Constraints(exclude=[5, 3, 5], pins={9: 2, 7: 0}, max_count={1: 2}, boosts={1: 0.5})
    assert c.exclude.tolist() == [3, 5]
    assert list(c.pins.items()) == [(7, 0), (9, 2)]  # by position
    assert c.has_counts and c.has_filters
    with pytest.raises(AttributeError):
        c.min_share = 0.3  # type: ignore[misc]
    assert not Constraints(boosts={1: 0.5}).has_counts


def test_query_broadcast_take_and_explain():
    c = Constraints(max_count={0: 1})
    q = Query([0, 1, 2], constraints=c, explain=True)
    assert q.constraints == (c, c, c) and q.explain
    q2 = Query([0, 1], constraints=[None, c])
    assert q2.constraints[0] is None and q2.constraints[1] is c
    assert q2.take(np.array([1])).constraints == (c,)
    assert Query([0, 1], constraints=[None, None]).constraints is None
    assert Query([0]).constraints is None and not Query([0]).explain
    with pytest.raises(ValueError, match="constraints has 1 entries for 2 users"):
        Query([0, 1], constraints=[c])
    with pytest.raises(ValueError, match=r"constraints\[0\]"):
        Query([0], constraints=[{"max_count": 1}])
    with pytest.raises(ValueError, match="explain"):
        Query([0], explain="yes")


def test_fairness_floor():
    assert fairness_floor(0.5, 5).tolist() == [0, 0, 1, 1, 2, 2]
    assert fairness_floor(1 / 3, 6).tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_check_list_by_hand():
    cat = np.array([0, 0, 1, 1, 2, 2, -1])
    c = Constraints(
        min_count={2: 1}, max_count={0: 1}, pins={3: 1}, exclude=[6], protected=1, min_share=0.5
    )
    # list [0, 3, 1, 6]: category 0 twice (max 1), no category 2 (min 1), item 3 at 1 ok,
    # 6 excluded, protected (category 1) prefixes: [0, 1, 1, 1] vs floor [0, 1, 1, 2]
    got = check_list([0, 3, 1, 6], c, cat, k=4)
    fields = [v.field for v in got]
    assert fields == ["exclude", "min_count", "max_count", "min_share"]
    assert got[3].detail == "prefix 4: 1 protected items, minimum 2"
    assert isinstance(got[0], ConstraintViolation)
    ok = check_list([2, 3, 4, 0], c, cat, k=4)
    assert ok == []
    pin = check_list([2, 4, 3, 0], c, cat, k=4)
    assert [v.field for v in pin] == ["pins"]
    assert check_list([0, 1], None, cat, k=2) == []


def test_check_list_prefix_detail():
    cat = np.array([0, 1, 0, 0])
    c = Constraints(protected=1, min_share=0.5)
    got = check_list([0, 2, 1, 3], c, cat, k=4)
    assert [str(v) for v in got] == ["request 0: min_share: prefix 2: 0 protected items, minimum 1"]


def test_resolve_batch_positions():
    cat = np.array([0, 0, 1, 1, 2, 2])
    ids = np.array([[5, 4, 3, 2, 1, 0], [0, 1, 2, -1, -1, -1]])
    c = Constraints(
        exclude=[4], deny_categories=[1], min_count={0: 1}, max_count={2: 1},
        pins={0: 1}, boosts={5: 0.25, 1: -1.0},
    )  # fmt: skip
    r = resolve_batch([c, None], ids, 3, cat)
    assert r.keep.tolist() == [
        [True, False, False, False, True, True],
        [True, True, True, False, False, False],
    ]
    assert r.active.tolist() == [True, False]
    # compact codes: category 0 -> 0, category 2 -> 1
    assert r.cat[0].tolist() == [1, 1, -1, -1, 0, 0]
    assert r.min_c[0].tolist() == [1, 0] and r.max_c[0].tolist() == [3, 1]
    assert r.pin_slot[0].tolist() == [-1, 5, -1]
    assert r.boost[0].tolist() == [0.25, 0, 0, 0, -1.0, 0]
    with pytest.raises(ValueError, match=r"^pins: item 0 at position 5 is outside the list"):
        resolve_batch([Constraints(pins={0: 5}), None], ids, 3, cat)
    with pytest.raises(ValueError, match=r"^min_count: the minimums sum to 4 > k = 3"):
        resolve_batch([Constraints(min_count={0: 2, 1: 2}), None], ids, 3, cat)
    with pytest.raises(ValueError, match=r"^max_count: unknown category 7"):
        resolve_batch([Constraints(max_count={7: 2}), None], ids, 3, cat)
    with pytest.raises(ValueError, match=r"^exclude: item 9 is outside"):
        resolve_batch([Constraints(exclude=[9]), None], ids, 3, cat)
    with pytest.raises(ValueError, match="need item categories"):
        resolve_batch([Constraints(max_count={0: 1}), None], ids, 3, None)
