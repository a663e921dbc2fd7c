"""Business rules (`divrec.data.constraints`) in the calibrated and FA*IR re-rankers:
brute-force enumeration of the constrained greedy, every feasible rule kept, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data.constraints import Constraints, check_list, resolve_batch
from divrec.metrics import kl_miscalibration
from divrec.rerank.calibration import CalibratedReranker
from divrec.rerank.fairness import FAIR


def _complete(prefix, free, cand, k, valid_fn):
    """Whether some completion of the free slots from `cand` gives a valid full list."""
    need = len(free) - len(prefix)
    for rest in itertools.permutations(cand, need):
        if valid_fn([*prefix, *rest]):
            return True
    return False


def brute_greedy(score_fn, n, k, rule: Constraints, cats):
    """The constrained greedy by enumeration: pins fixed at their slots, then each free
    slot takes the best candidate for which a valid completion of the list exists."""
    excl = set(rule.exclude.tolist())
    pins = dict(rule.pins)  # item -> slot
    slot_item = {s: i for i, s in pins.items()}
    free = [s for s in range(k) if s not in slot_item]
    cand = [i for i in range(n) if i not in excl and i not in pins]

    def assemble(greedy):
        out, it = [], iter(greedy)
        for s in range(k):
            out.append(slot_item[s] if s in slot_item else next(it))
        return out

    def valid_fn(greedy):
        return not check_list(assemble(greedy), rule, cats, k)

    if not _complete([], free, cand, k, valid_fn):
        return None
    greedy: list[int] = []
    for _ in free:
        best, best_v = None, -math.inf
        for i in cand:
            if i in greedy or not _complete([*greedy, i], free, cand, k, valid_fn):
                continue
            v = score_fn(list(pins), greedy, i)
            if v > best_v + 1e-12:
                best, best_v = i, v
        greedy.append(best)
    return assemble(greedy)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    family=st.sampled_from(["counts", "share"]),
    lam=st.sampled_from([0.0, 0.3, 0.7]),
)
def test_calibrated_constrained_greedy_equals_brute_force(seed, family, lam):
    rng = np.random.default_rng(seed)
    n, k, c = int(rng.integers(3, 7)), int(rng.integers(1, 4)), 3
    k = min(k, n)
    r = rng.permutation(n) / n + rng.random(n) * 1e-3
    cats = rng.integers(0, c, n)
    shares = np.eye(c)[cats]
    p = rng.dirichlet(np.ones(c))
    kw: dict = {}
    if rng.random() < 0.5:
        kw["pins"] = {int(rng.integers(n)): int(rng.integers(k))}
    if rng.random() < 0.3:
        kw["exclude"] = [int(rng.integers(n))]
        if "pins" in kw and next(iter(kw["pins"])) in kw["exclude"]:
            del kw["exclude"]
    if family == "counts":
        g = int(rng.integers(c))
        kw["min_count"] = {g: int(rng.integers(0, 2))}
        kw["max_count"] = {int((g + 1) % c): int(rng.integers(0, 2))}
    else:
        kw["group_of"] = (rng.random(n) < 0.5).astype(np.int64)
        kw["protected"] = 1
        kw["min_share"] = float(rng.choice([0.3, 0.5, 1.0]))
    rule = Constraints(**kw)

    def score(pins, greedy, i):
        s = [*pins, *greedy, i]
        q = shares[s].mean(axis=0)
        return (1 - lam) * r[i] - lam * float(kl_miscalibration(p, q))

    want = brute_greedy(score, n, k, rule, cats)
    if want is None:  # infeasible: an error naming a rule, or best effort
        return
    rc = resolve_batch([rule], np.arange(n)[None], k, cats, n_categories=c)
    got = CalibratedReranker(lambda_=lam, relevance_scaling="raw").select_batch(
        r[None], k, shares=shares[None], target=p[None], constraints=rc
    )[0]
    assert got.tolist() == want
    assert check_list(got, rule, cats, k) == []


def test_no_rules_is_bit_for_bit_unchanged():
    rng = np.random.default_rng(0)
    r = rng.random((6, 20))
    cats = rng.integers(0, 4, (6, 20))
    target = rng.dirichlet(np.ones(4), 6)
    rr = CalibratedReranker(lambda_=0.6)
    plain = rr.select_batch(r, 8, categories=cats, target=target)
    rules = [None] * 6
    ids = np.tile(np.arange(20), (6, 1))
    rc = resolve_batch(rules, ids, 8, np.zeros(20, dtype=np.int64))
    same = rr.select_batch(r, 8, categories=cats, target=target, constraints=rc)
    assert np.array_equal(plain, same)
    prot = rng.random((6, 20)) < 0.4
    f = FAIR(p=0.4)
    assert np.array_equal(
        f.select_batch(r, 8, protected=prot), f.select_batch(r, 8, protected=prot, constraints=rc)
    )


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_fair_lists_keep_feasible_rules(seed):
    rng = np.random.default_rng(seed)
    n, k = 12, 6
    r = rng.random(n)
    cats = rng.integers(0, 3, n)
    prot = rng.random(n) < 0.5
    rule = Constraints(
        max_count={0: 2},
        min_count={1: 1} if (cats == 1).any() else None,
        pins={int(rng.integers(n)): int(rng.integers(k))},
        best_effort=True,
    )
    rc = resolve_batch([rule], np.arange(n)[None], k, cats, n_categories=3)
    got = FAIR(p=0.3, alpha=0.1).select_batch(r[None], k, protected=prot[None], constraints=rc)[0]
    got = got[got >= 0]
    # feasible whenever enough candidates exist outside category 0: the rules hold
    if (cats != 0).sum() + 2 >= k:
        assert check_list(got, rule, cats, k) == []


def test_infeasible_is_one_line_naming_the_rule_or_best_effort():
    r = np.array([0.9, 0.8, 0.7, 0.1])
    cats = np.array([0, 0, 0, 1])
    shares = np.eye(2)[cats]
    target = np.array([0.5, 0.5])
    rr = CalibratedReranker(lambda_=0.5)
    ids = np.arange(4)[None]
    rule = Constraints(min_count={1: 2})  # only one candidate of category 1
    rc = resolve_batch([rule], ids, 3, cats)
    with pytest.raises(ValueError, match="min_count"):
        rr.select_batch(r[None], 3, shares=shares[None], target=target[None], constraints=rc)
    soft = resolve_batch([Constraints(min_count={1: 2}, best_effort=True)], ids, 3, cats)
    got = rr.select_batch(r[None], 3, shares=shares[None], target=target[None], constraints=soft)
    assert 3 in got[0].tolist() and (got[0] >= 0).sum() == 3
    missing = resolve_batch([Constraints(pins={9: 0})], np.array([[0, 1, 2, 3]]), 3, None)
    with pytest.raises(ValueError, match="pins"):
        rr.select_batch(r[None], 3, shares=shares[None], target=target[None], constraints=missing)
    share = Constraints(group_of=np.array([0, 0, 0, 0]), protected=1, min_share=0.5)
    rc = resolve_batch([share], ids, 3, cats)
    with pytest.raises(ValueError, match="min_share"):
        FAIR().select_batch(r[None], 3, protected=np.zeros((1, 4), bool), constraints=rc)


def test_stage_call_passes_query_constraints():
    from divrec.data import Interactions
    from divrec.data.query import Candidates, Query

    users = np.repeat(np.arange(4), 3)
    items = np.array([0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5])
    cats = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    import scipy.sparse as sp

    data = Interactions.from_arrays(users, items).with_item_side_info(
        item_categories=sp.csr_matrix(cats), category_names=("a", "b", "c")
    )
    cand = Candidates(np.array([[0, 1, 2, 3, 4, 5]]), np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]))
    rule = Constraints(max_count={0: 1}, pins={5: 0})
    for rr in (
        CalibratedReranker(lambda_=0.5).fit(data, item_vectors=np.eye(6)),
        FAIR(p=0.5, group="category=c").fit(data, item_vectors=np.eye(6)),
    ):
        got = rr(Query(users=np.array([0]), constraints=rule), cand, 3).ids[0]
        assert got[0] == 5 and check_list(got, rule, data.primary_category(), 3) == []
        with pytest.raises(ValueError, match="min_count"):
            rr(Query(users=np.array([0]), constraints=Constraints(min_count={0: 3})), cand, 3)
