"""`mask_request_items`: each request's own items are masked with -inf (hand-computed)."""

from __future__ import annotations

import numpy as np

from divrec.data.interactions import Interactions
from divrec.splitting.events import Requests, build_requests
from divrec.splitting.request_masks import mask_request_items


def _requests(pos, neg) -> Requests:
    empty = np.zeros(0, dtype=np.int64)
    return Requests(
        users=np.arange(len(pos)),
        pos=[np.asarray(p, dtype=np.int64) for p in pos],
        neg=[np.asarray(q, dtype=np.int64) for q in neg],
        eval_req=empty,
        eval_items=empty,
        eval_labels=np.zeros(0, dtype=bool),
    )


def test_masks_positive_and_negative_request_items_by_hand():
    scores = np.arange(15, dtype=np.float32).reshape(3, 5)
    req = _requests(pos=[[0, 3], [], [4]], neg=[[1], [], [4, 2]])
    got = mask_request_items(scores, req)
    inf = -np.inf
    expected = np.array(
        [
            [inf, inf, 2.0, inf, 4.0],
            [5.0, 6.0, 7.0, 8.0, 9.0],  # empty request: nothing masked
            [10.0, 11.0, inf, 13.0, inf],
        ]
    )
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64
    # the input is not modified
    np.testing.assert_array_equal(scores, np.arange(15, dtype=np.float32).reshape(3, 5))


def test_masks_exactly_the_context_of_built_requests():
    # user 0: training items 0 (rating 5), 1 (rating 1); test events 2, 3, 4 in time order
    # user 1: no training events; test events 4, 0. Ids 0..4 / 0..1 map to themselves.
    log = Interactions.from_arrays(
        np.array([0, 0, 0, 0, 0, 1, 1]),
        np.array([0, 1, 2, 3, 4, 4, 0]),
        np.array([5.0, 1.0, 4.0, 2.0, 5.0, 5.0, 3.0]),
        timestamps=np.array([0, 0, 1, 2, 3, 1, 2]),
    )
    is_train = np.array([True, True, False, False, False, False, False])
    train, test = log.select(is_train), log.select(~is_train)
    req = build_requests(train, test, context_fraction=0.5, threshold=4.0)
    got = mask_request_items(np.zeros((req.users.size, 5)), req)
    # user 0: ⌊1.5⌋ = 1 context event (item 2) + training items 0, 1; user 1: item 4
    expected_masked = {0: {0, 1, 2}, 1: {4}}
    for b, u in enumerate(req.users):
        assert set(np.flatnonzero(np.isneginf(got[b])).tolist()) == expected_masked[int(u)]
