"""Helpers for the two-tower tests: planted group data and hit rate at 10."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def planted_groups(n_users=240, n_items=120, n_groups=6, per_user=12, seed=0):
    """Users and items in n_groups blocks; users interact only inside their block.
    One interaction per user is held out."""
    rng = np.random.default_rng(seed)
    size = n_items // n_groups
    rows, cols, test = [], [], np.empty(n_users, dtype=np.int64)
    for u in range(n_users):
        g = u % n_groups
        its = g * size + rng.choice(size, size=per_user + 1, replace=False)
        rows += [u] * per_user
        cols += its[:per_user].tolist()
        test[u] = its[-1]
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return train, test


def hr_at_10(model, train, test):
    ids, _ = model.recommend(np.arange(train.shape[0]), 10)
    return float(np.mean([test[u] in ids[u] for u in range(train.shape[0])]))
