"""Excluded items of a request: the pair path against a brute force over Python sets."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data.query import Query


def _brute(users, exclude, history, negatives, seen, exclude_seen, n_items):
    out = []
    for b, _u in enumerate(users):
        s = set()
        if exclude is not None:
            s |= {int(i) for i in exclude[b] if 0 <= i < n_items}
        if exclude_seen:
            if history is not None:
                s |= {int(i) for i in history[b] if 0 <= i < n_items}
                if negatives is not None:
                    s |= {int(i) for i in negatives[b] if 0 <= i < n_items}
            else:
                s |= set(seen[users[b]].indices.tolist())
        out.append(s)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 6),
    mode=st.sampled_from(["seen", "history", "history+neg"]),
    with_exclude=st.booleans(),
    exclude_seen=st.booleans(),
)
def test_excluded_pairs_match_sets(seed, b, mode, with_exclude, exclude_seen):
    rng = np.random.default_rng(seed)
    n_users, n_items = 7, 12
    seen = sp.random(n_users, n_items, density=0.3, random_state=seed, format="csr")
    seen.data[:] = 1.0
    users = rng.integers(0, n_users, b)
    lists = lambda: rng.integers(-1, n_items + 2, (b, 4))  # noqa: E731  (padding, out of range)
    exclude = lists() if with_exclude else None
    history = lists() if mode != "seen" else None
    negatives = lists() if mode == "history+neg" else None
    q = Query(users=users, exclude=exclude, exclude_seen=exclude_seen)
    if history is not None:
        q = Query(
            users=users, history=history, negatives=negatives, exclude=exclude,
            exclude_seen=exclude_seen,
        )  # fmt: skip
    want = _brute(users, exclude, history, negatives, seen, exclude_seen, n_items)
    rows, cols = q.excluded_pairs(n_items, seen, users)
    got = [set(cols[rows == r].tolist()) for r in range(b)]
    assert got == want
    dense = q.excluded_items(n_items, seen[users]).toarray()
    assert [set(np.flatnonzero(row).tolist()) for row in dense] == want
