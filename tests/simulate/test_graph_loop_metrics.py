"""Graph-loop round metrics: RD is system-level (between users), fixed-space headlines, and the
propensity tracker follows the loop's embeddings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from divrec.rerank.personalized import RealtimePropensityTracker
from divrec.simulate.loop import round_metrics
from divrec.simulate.report import METRICS


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def test_rd_is_between_user_and_the_per_user_notion_is_renamed():
    rng = np.random.default_rng(0)
    n_pool = 12
    retrieved = np.array([[0, 1, 2, 3], [2, 3, 4, 5], [6, 7, 8, -1]])
    lists = retrieved[:, :2]
    svd = rng.normal(size=(n_pool, 3))
    genre = (rng.random((n_pool, 4)) < 0.5).astype(float)
    spaces = {"svd": svd, "genre": genre, "graph": rng.normal(size=(n_pool, 2))}
    out = round_metrics(
        lists, retrieved, np.ones(3), np.ones(3), spaces, n_pool, n_pool, 1000, seed=0
    )
    sets = [set(r[r >= 0].tolist()) for r in retrieved]
    jac = np.mean([len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)])
    assert out["retrieval_jaccard"] == pytest.approx(jac)
    assert out["rd"] == pytest.approx(1 - jac)
    rows = [r[r >= 0] for r in retrieved]
    for name in ("svd", "genre"):
        v = spaces[name]
        want = np.mean(
            [
                1 - np.mean([_cos(v[x], v[y]) for x in a for y in b])
                for a, b in itertools.combinations(rows, 2)
            ]
        )
        assert out[f"rd_{name}"] == pytest.approx(want)
        # per-user ILAD of the retrieved set, under its own name
        per_user = [1 - np.mean([_cos(v[x], v[y]) for x in r for y in r if x != y]) for r in rows]
        assert out[f"retrieval_ilad_{name}"] == pytest.approx(np.mean(per_user))
    # every reported metric but the loop's own θ diagnostic comes out of round_metrics
    assert set(METRICS) - {"theta_defined"} <= set(out)
    assert METRICS[:2] == ("ilad_svd", "ilad_genre")  # fixed-space headlines first


def test_tracker_follows_new_embeddings_and_new_items():
    old = np.eye(3)
    tr = RealtimePropensityTracker(10.0, old)
    tr.update(0, 0, 1.0)
    tr.update(0, 1, 1.0)
    assert tr.similarity(0, 1.0) == pytest.approx(0.0)  # orthogonal
    new = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # a 4th item entered
    tr.item_vectors = new  # the tracker's setter drops its cached unit rows
    tr.update(0, 3, 2.0)  # index beyond the old table
    # items 0, 1, 3 are now parallel: s_u = 1
    assert tr.similarity(0, 2.0) == pytest.approx(1.0)
