"""Shared simulator fixtures: a tiny world and its GraphSAGE retriever, fitted once per
session (`run_simulation` deep-copies the retriever, so tests cannot change it)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.simulate import make_world


def tiny_world(seed=0):
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 60
    cats = np.zeros((n_items, 4))
    cats[np.arange(n_items), np.arange(n_items) % 4] = 1
    users = np.repeat(np.arange(n_users), 12)
    items = (rng.integers(0, 15, users.size) * 4 + users % 4) % n_items
    data = Interactions.from_arrays(
        users, items, np.full(users.size, 5.0), np.arange(users.size), dedupe="last"
    )
    cm = sp.csr_matrix(cats[data.item_ids])
    data = data.with_item_side_info(cm, ("a", "b", "c", "d"))
    return make_world(data, new_item_share=0.2, min_item_count=2, release_rounds=2, factors=8)


@pytest.fixture(scope="session")
def world_and_retriever():
    from divrec.simulate import fit_retriever

    w = tiny_world()
    params = dict(dim=8, hidden=8, epochs=2, batch_size=32, negatives=8, seed=0)
    return w, fit_retriever(w, params)
