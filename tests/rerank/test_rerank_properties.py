"""Contract properties of every re-ranker: ties, permutations, extreme relevance values.

* Ties go to the lower position (issue #9, item 6): candidates whose scores are equal in
  exact arithmetic (equal relevance, orthonormal vectors whose cosines are 0 only up to
  rounding) come out in stable relevance order; exact duplicates come out lower position
  first; permuting candidates that are not tied permutes the output accordingly.
* No input produces a duplicate (item 7): relevance values of ``±1e308``, ``±1e305``,
  denormals and mixtures give ``min(k, N)`` distinct valid positions, and ``select`` ==
  ``select_batch`` (with padding) for every re-ranker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from divrec.rerank import (
    CFDA,
    CFDM,
    MMR,
    SSD,
    CategoryCap,
    FastGreedyDPP,
    HybridUtility,
    InterestAwareMMR,
    PersonalizedDPP,
    RealtimePersonalizedDPP,
    RealtimePropensityTracker,
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _tracker() -> RealtimePropensityTracker:
    """Three users with different propensities (θ = sigmoid of their z-scores)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=4)
    tr = RealtimePropensityTracker(window=100.0)
    for t, (user, spread) in enumerate([("a", 0.1), ("b", 1.0), ("c", 3.0)] * 4):
        tr.update(user, base + spread * rng.normal(size=4), float(t))
    return tr


@dataclass
class Case:
    """A re-ranker and the extra per-request inputs it needs."""

    name: str
    make: Any
    needs: str = "vectors"  # "vectors" | "categories"
    #: CDM user-interest vector: ones keeps orthogonal item vectors orthogonal
    user_ones: bool = False

    def user(self, d: int) -> np.ndarray:
        return np.ones(d) if self.user_ones else np.linspace(0.5, 1.5, d)

    def single_kwargs(self, b: int, v: np.ndarray, cats: np.ndarray, pop: np.ndarray) -> dict:
        kw: dict[str, Any] = {"categories": cats} if self.needs == "categories" else {}
        if self.needs == "vectors":
            kw["vectors"] = v
        if self.name == "InterestAwareMMR":
            kw["user"] = self.user(v.shape[1])
        if self.name == "RealtimePersonalizedDPP":
            kw["user"] = "abc"[b % 3]
        if self.name.startswith("HybridUtility"):
            kw["popularity"] = pop
        return kw

    def batch_kwargs(self, bsz: int, v: np.ndarray, cats: np.ndarray, pop: np.ndarray) -> dict:
        kw: dict[str, Any] = {"categories": cats} if self.needs == "categories" else {}
        if self.needs == "vectors":
            kw["vectors"] = v
        if self.name == "InterestAwareMMR":
            kw["user"] = np.tile(self.user(v.shape[2]), (bsz, 1))
        if self.name == "RealtimePersonalizedDPP":
            kw["users"] = ["abc"[b % 3] for b in range(bsz)]
        if self.name.startswith("HybridUtility"):
            kw["popularity"] = pop
        return kw


CASES = [
    Case("MMR", lambda: MMR(lambda_=0.5)),
    Case("MMR-raw", lambda: MMR(lambda_=0.7, relevance_scaling="raw")),
    Case("InterestAwareMMR", lambda: InterestAwareMMR(lambda_=0.1)),
    Case("FastGreedyDPP", lambda: FastGreedyDPP(theta=0.5)),
    Case("FastGreedyDPP-raw", lambda: FastGreedyDPP(theta=0.999999, relevance_scaling="raw")),
    Case(
        "FastGreedyDPP-window", lambda: FastGreedyDPP(theta=0.7, window=3, relevance_scaling="raw")
    ),
    Case("PersonalizedDPP", lambda: PersonalizedDPP(relevance_scaling="raw")),
    Case("RealtimePersonalizedDPP", lambda: RealtimePersonalizedDPP(tracker=_tracker())),
    Case("SSD", lambda: SSD(gamma=1.0)),
    Case("SSD-raw-window", lambda: SSD(gamma=0.5, window=3, relevance_scaling="raw")),
    Case("CategoryCap", lambda: CategoryCap(max_per_category=1), needs="categories"),
    Case("CFDA", lambda: CFDA(phi=0.5)),
    Case("CFDA-raw", lambda: CFDA(phi=0.5, relevance_scaling="raw")),
    Case("CFDM", lambda: CFDM(n_factor=2)),
    Case("HybridUtility", lambda: HybridUtility(weights=(1.0, 0.5, 0.2))),
    Case(
        "HybridUtility-raw", lambda: HybridUtility(weights=(1.0, 0.5, 0.0), relevance_scaling="raw")
    ),
]
IDS = [c.name for c in CASES]

EXTREMES = [
    1e308,
    -1e308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e305,
    -1e305,
    5e-324,
    -5e-324,
    1e-300,
    0.0,
    1.0,
    0.5,
]


# --------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("case", CASES, ids=IDS)
@SETTINGS
@given(
    data=st.lists(
        st.lists(st.sampled_from(EXTREMES), min_size=1, max_size=9), min_size=1, max_size=3
    ),
    k=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_extreme_relevance_no_duplicates_and_batch_equals_select(case, data, k, seed):
    rng = np.random.default_rng(seed)
    bsz, n, d = len(data), max(len(x) for x in data), 4
    rel = np.zeros((bsz, n))
    valid = np.zeros((bsz, n), dtype=bool)
    for b, row in enumerate(data):
        rel[b, : len(row)] = row
        valid[b, : len(row)] = True
    rel[~valid] = np.nan  # padding holds garbage
    v = rng.normal(size=(bsz, n, d))
    if n > 1:
        v[:, 1] = v[:, 0]  # a duplicate item: exact ties in the similarity terms
    cats = rng.integers(0, 3, size=(bsz, n))
    pop = rng.random((bsz, n)) + 0.01
    model = case.make()
    out = model.select_batch(rel, k, valid=valid, **case.batch_kwargs(bsz, v, cats, pop))
    assert out.shape == (bsz, k)
    for b in range(bsz):
        nb = int(valid[b].sum())
        kw = case.single_kwargs(b, v[b, :nb], cats[b, :nb], pop[b, :nb])
        sel = model.select(rel[b, :nb], k, **kw)
        assert len(sel) == min(k, nb)
        assert len(set(sel.tolist())) == len(sel), f"duplicate in {sel}"
        assert np.all((sel >= 0) & (sel < nb))
        assert out[b, : len(sel)].tolist() == sel.tolist()
        assert np.all(out[b, len(sel) :] == -1)


def test_issue_example_full_minus_1e308_has_no_duplicate():
    v = np.random.default_rng(0).normal(size=(12, 4))
    dpp = FastGreedyDPP(theta=0.999999, relevance_scaling="raw")
    sel = dpp.select(np.full(12, -1e308), 5, vectors=v)
    assert len(set(sel.tolist())) == 5
    # all relevances tied: the pure diversity greedy on S, which is what θ → 0 gives
    assert sel.tolist() == FastGreedyDPP(theta=0.0).select(np.zeros(12), 5, vectors=v).tolist()


def test_minmax_scaling_survives_overflowing_span():
    # hi - lo overflows: the scaled relevance must still be (r - lo) / (hi - lo)
    r = np.array([-1e308, 1e308, 0.0, 5e307])
    v = np.eye(4)  # orthogonal: the DPP / MMR order is the relevance order
    for model in (FastGreedyDPP(theta=0.5), MMR(lambda_=0.5), SSD(gamma=1.0), CFDA(phi=0.5)):
        assert model.select(r, 4, vectors=v).tolist() == [1, 3, 2, 0], type(model).__name__
        assert model.select_batch(r[None], 4, vectors=v[None])[0].tolist() == [1, 3, 2, 0]


# --------------------------------------------------------------------------- item 6
def _orthonormal_scaled(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n ≤ d`` orthogonal rows of random norms: cosines are 0 only up to rounding."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q[:n] * rng.uniform(0.1, 10.0, size=(n, 1))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@SETTINGS
@given(
    levels=st.lists(st.sampled_from([0.2, 0.5, 0.9]), min_size=1, max_size=10),
    k=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_exact_ties_go_to_the_lower_position(case, levels, k, seed):
    """Orthogonal items, relevance with ties: every method reduces to the stable order."""
    rng = np.random.default_rng(seed)
    r = np.asarray(levels)
    n = r.size
    v = _orthonormal_scaled(rng, n, n + 2)
    cats = np.arange(n)  # CategoryCap: no cap binds
    pop = np.full(n, 0.1)  # HybridUtility: constant novelty
    case = replace(case, user_ones=True)
    model = case.make()
    expected = np.argsort(-r, kind="stable")[:k].tolist()
    sel = model.select(r, k, **case.single_kwargs(0, v, cats, pop))
    assert sel.tolist() == expected
    batch = model.select_batch(r[None], k, **case.batch_kwargs(1, v[None], cats[None], pop[None]))
    assert batch[0, : len(expected)].tolist() == expected


@pytest.mark.parametrize("theta", [0.0, 0.5])
def test_dpp_tied_diagonal_first_pick_is_lowest_position(theta):
    """The issue's reproduction: tied top relevance, normalized diagonal 1 ± rounding."""
    rng = np.random.default_rng(0)
    dpp = FastGreedyDPP(theta=theta)
    for _ in range(200):
        n = 20
        r = np.round(rng.random(n), 1)
        v = rng.normal(size=(n, 8))
        top = np.flatnonzero(r == r.max())[0] if theta > 0 else 0
        assert dpp.select(r, 3, vectors=v)[0] == top


@pytest.mark.parametrize("case", CASES, ids=IDS)
@SETTINGS
@given(
    n_groups=st.integers(1, 7),
    copies=st.lists(st.integers(1, 3), min_size=7, max_size=7),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_permutation_equivariance_and_duplicates_lower_position_first(
    case, n_groups, copies, k, seed
):
    """Permuting candidates permutes the output; exact duplicates come out in order.

    Distinct items have distinct relevance (gaps ``≥ 1/14``) and random vectors, so they
    are not tied; the copies of an item (same relevance, same vector) are exactly tied.
    The sequence of selected *items* must not depend on the order of the candidates, and
    the copies of one item must be selected lower position first.
    """
    rng = np.random.default_rng(seed)
    d = 5
    item_r = rng.permutation(14)[:n_groups] / 14.0 + 0.01
    item_v = rng.normal(size=(n_groups, d))
    item_c = rng.integers(0, 3, size=n_groups)
    item_p = rng.uniform(0.01, 1.0, size=n_groups)
    gid = np.repeat(np.arange(n_groups), copies[:n_groups])
    model = case.make()

    def run(order: np.ndarray) -> np.ndarray:
        g = gid[order]
        kw = case.single_kwargs(0, item_v[g], item_c[g], item_p[g])
        return model.select(item_r[g], k, **kw)

    ident = np.arange(gid.size)
    perm = rng.permutation(gid.size)
    sel_a, sel_b = run(ident), run(perm)
    assert gid[ident[sel_a]].tolist() == gid[perm[sel_b]].tolist()
    for order, sel in ((ident, sel_a), (perm, sel_b)):
        g = gid[order][sel]
        for grp in np.unique(g):
            pos = sel[g == grp]
            assert np.all(np.diff(pos) > 0), f"copies of item {grp} out of order: {pos}"
    if np.unique(gid).size == gid.size:  # no copies: the positions map exactly
        assert perm[sel_b].tolist() == sel_a.tolist()
