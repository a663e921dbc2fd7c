"""Constraints inside the greedy kernels (issue 27, item 1).

* the constrained kernels equal a brute-force pure-python constrained greedy (the method's
  gain recomputed from scratch at every step, the rules applied by an independent
  implementation) on small random cases;
* every returned list satisfies every feasible rule (`check_list`);
* rules without count/pin/share parts (filters) equal the unconstrained kernel on the
  filtered candidates, and no rules at all is the unconstrained code path;
* infeasible requests: one-line ValueError naming the rule, or the best-effort list with
  its violations; the stage call (`Query.constraints`) end to end.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from divrec.data.constraints import Constraints, check_list, resolve_batch
from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.rerank import MMR, SSD, FastGreedyDPP, InterestAwareMMR
from divrec.rerank._base import scale_relevance, tie_argmax
from divrec.rerank.dpp import tradeoff_alpha

TIE = 1e-9


# --------------------------------------------------------------------------- brute force
def _prot(rule, cats):
    """``(N,)`` protected flags of the candidates (positions = items here)."""
    if rule.protected is None:
        return np.zeros(cats.size, dtype=bool)
    groups = cats if rule.group_of is None else rule.group_of
    return np.asarray(groups) == rule.protected


def _completions(avail, key, r):
    """Every way to pick ``r`` more candidates among ``avail``, as ``{type: count}`` over
    the candidates' types ``key[i]`` (candidates of one type are interchangeable)."""
    pool = [key[i] for i in np.flatnonzero(avail)]
    types = sorted(set(pool))
    have = [pool.count(t) for t in types]
    for counts in itertools.product(*[range(h + 1) for h in have]):
        if sum(counts) == r:
            yield dict(zip(types, counts, strict=True))


def _room(avail, cats, cnt, rule):
    """How many more candidates the maximums let the list take."""
    ids = np.flatnonzero(avail)
    free = sum(1 for i in ids if int(cats[i]) not in rule.max_count)
    return free + sum(
        max(0, min(m - cnt.get(c, 0), int(np.sum(cats[ids] == c))))
        for c, m in rule.max_count.items()
    )


def _over(add, cnt, rule):
    """Whether the further picks ``add`` (``{category: count}``) break a maximum (a
    maximum the pins already broke only forbids more items of its category)."""
    return any(add.get(c, 0) > max(m - cnt.get(c, 0), 0) for c, m in rule.max_count.items())


def _feasible_after(j, avail, cats, prot, cnt, rule, r, g, x, slots_g, need, tlen):
    """Exhaustive search: after picking ``j``, do ``r`` further picks exist that meet every
    minimum and maximum and, in some order, the protected floor of every prefix still
    open (every placement of the protected picks among the further greedy slots)?"""
    cnt2 = dict(cnt)
    cnt2[int(cats[j])] = cnt2.get(int(cats[j]), 0) + 1
    av = avail.copy()
    av[j] = False
    g1, x1 = g + 1, x + int(prot[j])
    key = [(int(c), bool(q)) for c, q in zip(cats, prot, strict=True)]
    open_ = [
        (min(slots_g[p] - g1, r), need.get(p, 0) - x1)
        for p in range(1, tlen + 1)
        if slots_g[p] >= g1
    ]
    for comp in _completions(av, key, r):
        add: dict[int, int] = {}
        for (c, _), m in comp.items():
            add[c] = add.get(c, 0) + m
        if any(cnt2.get(c, 0) + add.get(c, 0) < m for c, m in rule.min_count.items()):
            continue
        if _over(add, cnt2, rule):
            continue
        n_prot = sum(m for (_, q), m in comp.items() if q)
        for place in itertools.combinations(range(r), n_prot):
            flags = np.zeros(r, dtype=np.int64)
            flags[list(place)] = 1
            done = np.concatenate([[0], np.cumsum(flags)])
            if all(done[h] >= nd for h, nd in open_):
                return True
    return False


def _shortfall(avail, cats, cnt, rule, r):
    """The fewest minimum units left unmet over every choice of ``r`` more picks within
    the maximums (exhaustive)."""
    best = None
    for comp in _completions(avail, [int(c) for c in cats], r):
        if _over(comp, cnt, rule):
            continue
        short = sum(max(m - cnt.get(c, 0) - comp.get(c, 0), 0) for c, m in rule.min_count.items())
        best = short if best is None else min(best, short)
    return best


def _eligible(avail, cats, prot, cnt, rule, g, x, slots_g, need, tlen, npins):
    """Independent implementation of the eligibility rules (module docstring of
    divrec.data.constraints): a candidate is eligible when some completion of the list to
    its reachable length ``tlen`` still meets every rule (exhaustive search, decided per
    candidate type); when none is, the share rule is dropped and the candidates that keep
    the fewest minimum units unmet are (the maximums always hold)."""
    n = avail.size
    under = np.array(
        [avail[i] and cnt.get(int(cats[i]), 0) < rule.max_count.get(int(cats[i]), 1 << 30)
         for i in range(n)]
    )  # fmt: skip
    left = tlen - npins - g  # greedy picks still to make, this one included
    verdict: dict = {}
    ok = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(under):
        t = (int(cats[i]), bool(prot[i]))
        if t not in verdict:
            verdict[t] = _feasible_after(
                i, avail, cats, prot, cnt, rule, left - 1, g, x, slots_g, need, tlen
            )
        ok[i] = verdict[t]
    if ok.any():
        return ok
    before = _shortfall(avail, cats, cnt, rule, left)
    for i in np.flatnonzero(under):
        av = avail.copy()
        av[i] = False
        cnt2 = dict(cnt)
        cnt2[int(cats[i])] = cnt2.get(int(cats[i]), 0) + 1
        ok[i] = _shortfall(av, cats, cnt2, rule, left - 1) == before
    return ok


def _gains(method, rs, unit, sel, lam):
    """The method's gain of every candidate given the picks ``sel`` (from scratch)."""
    if method == "mmr":
        if not sel:
            return rs.copy(), 0.0
        sim = unit @ unit[sel].T
        return lam * rs - (1 - lam) * sim.max(axis=1), (1 - lam) * np.abs(sim).max()
    if method == "ssd":
        if sel:
            q, _ = np.linalg.qr(unit[sel].T)
            res = unit - (unit @ q) @ q.T
            norms = np.linalg.norm(res, axis=1)
        else:
            norms = np.linalg.norm(unit, axis=1)
        return rs + lam * norms, lam
    raise AssertionError(method)


def brute(method, rel, vec, k, rule, cats, lam):
    """Pure-python constrained greedy on one request (all candidates valid)."""
    n = rel.size
    keep = np.ones(n, dtype=bool)
    if rule.exclude.size:
        keep &= ~np.isin(np.arange(n), rule.exclude)
    if rule.deny_categories:
        keep &= ~np.isin(cats, list(rule.deny_categories))
    r = rel.astype(np.float64).copy()
    for i, bst in rule.boosts.items():
        r[i] += bst
    idx = np.flatnonzero(keep)
    rs = np.zeros(n)
    rs[idx] = scale_relevance(r[idx], "minmax")
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    kb = min(k, idx.size)
    pins = sorted((pos, it) for it, pos in rule.pins.items())
    pinned_slots = {pos for pos, _ in pins}
    greedy_slots = [s for s in range(kb) if s not in pinned_slots]
    slots_g = {p: sum(1 for s in greedy_slots if s < p) for p in range(1, kb + 1)}
    need = {}
    if rule.protected is not None:
        for p in range(1, kb + 1):
            pp = sum(1 for pos, it in pins if pos < p and _prot(rule, cats)[it])
            need[p] = math.floor(rule.min_share * p + 1e-9) - pp
    avail = keep.copy()
    prot = _prot(rule, cats)
    sel: list[int] = []
    cnt: dict[int, int] = {}
    g = x = 0
    tlen = kb
    for t in range(kb):
        if t < len(pins):
            j = pins[t][1]
        else:
            if t == len(pins):  # the reachable length, once the pins are in
                tlen = min(kb, len(pins) + _room(avail, cats, cnt, rule))
            ok = _eligible(avail, cats, prot, cnt, rule, g, x, slots_g, need, tlen, len(pins))
            if not ok.any():
                break
            if method == "mmr" and not sel:
                j = int(np.flatnonzero(ok)[np.argmax(rs[ok])])
            else:
                score, scale = _gains(method, rs, unit, sel, lam)
                j = tie_argmax(score, ok, scale)
            g += 1
            x += int(prot[j])
        sel.append(j)
        avail[j] = False
        cnt[int(cats[j])] = cnt.get(int(cats[j]), 0) + 1
    # output order: pins at their slots, the greedy picks in the other slots
    return _place(sel, pins)


def _place(sel, pins):
    """Output order: pins at their slots, the greedy picks in the other slots in order,
    pins beyond a short list's length in the slots left at its end."""
    out = [-1] * len(sel)
    for pos, it in pins:
        if pos < len(out):
            out[pos] = it
    rest = iter(sel[len(pins) :])
    out = [s if s >= 0 else next(rest, -1) for s in out]
    late = iter([it for pos, it in pins if pos >= len(out)])
    out = [s if s >= 0 else next(late, -1) for s in out]
    return [s for s in out if s >= 0]


@st.composite
def cases(draw):
    n = draw(st.integers(3, 11))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, 3, n)
    rel = np.round(rng.random(n), draw(st.sampled_from([1, 6])))  # some exact ties
    vec = rng.normal(size=(n, 3))
    kw: dict = {}
    kmin = min(k, n)
    counts = np.bincount(cats, minlength=3)
    budget = kmin
    mins = {}
    for c in range(3):
        if draw(st.booleans()) and budget > 0:
            m = draw(st.integers(0, int(min(counts[c], budget, 2))))
            mins[c] = m
            budget -= m
    maxs = {c: draw(st.integers(mins.get(c, 0), 3)) for c in range(3) if draw(st.booleans())}
    kw["min_count"], kw["max_count"] = mins, maxs
    if draw(st.booleans()):
        it = draw(st.integers(0, n - 1))
        kw["pins"] = {it: draw(st.integers(0, kmin - 1))}
    if draw(st.booleans()):
        kw["boosts"] = {draw(st.integers(0, n - 1)): draw(st.floats(-1, 1))}
    if draw(st.booleans()):
        kw["protected"] = int(draw(st.integers(0, 2)))
        kw["min_share"] = draw(st.sampled_from([0.2, 0.34, 0.5]))
    kw["best_effort"] = True
    return rel, vec, cats, k, Constraints(**kw)


def _run(model, rel, vec, cats, k, rule):
    ids = np.arange(rel.size)[None]
    rc = resolve_batch([rule], ids, k, cats, 3)
    out = model.select_batch(rel[None], k, vectors=vec[None], constraints=rc)[0]
    return [int(p) for p in out if p >= 0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_mmr_equals_brute_force(case):
    rel, vec, cats, k, rule = case
    got = _run(MMR(lambda_=0.6), rel, vec, cats, k, rule)
    assert got == brute("mmr", rel, vec, k, rule, cats, 0.6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_ssd_equals_brute_force(case):
    rel, vec, cats, k, rule = case
    got = _run(SSD(gamma=0.7), rel, vec, cats, k, rule)
    assert got == brute("ssd", rel, vec, k, rule, cats, 0.7)


def brute_dpp(rel, vec, k, rule, cats, theta, eps=1e-10):
    """Constrained greedy DPP MAP from explicit Schur complements (log det gains)."""
    n = rel.size
    keep = np.ones(n, dtype=bool)
    r = rel.astype(np.float64).copy()
    for i, bst in rule.boosts.items():
        r[i] += bst
    rs = scale_relevance(r, "minmax")
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    u = vec / norms
    s = u @ u.T
    w = 2.0 * float(tradeoff_alpha(theta))
    kb = min(k, n)
    pins = sorted((pos, it) for it, pos in rule.pins.items())
    pinned_slots = {pos for pos, _ in pins}
    greedy_slots = [q for q in range(kb) if q not in pinned_slots]
    slots_g = {p: sum(1 for q in greedy_slots if q < p) for p in range(1, kb + 1)}
    need = {}
    if rule.protected is not None:
        for p in range(1, kb + 1):
            pp = sum(1 for pos, it in pins if pos < p and _prot(rule, cats)[it])
            need[p] = math.floor(rule.min_share * p + 1e-9) - pp
    avail = keep.copy()
    prot = _prot(rule, cats)
    sel: list[int] = []
    basis: list[int] = []  # picks that entered the kernel state
    cnt: dict[int, int] = {}
    g = x = 0
    tlen = kb
    exhausted = False

    def d2(i):
        if not basis:
            return s[i, i]
        a = s[np.ix_(basis, basis)]
        b = s[basis, i]
        return s[i, i] - b @ np.linalg.solve(a, b)

    for t in range(kb):
        if t < len(pins):
            j = pins[t][1]
        else:
            if t == len(pins):
                tlen = min(kb, len(pins) + _room(avail, cats, cnt, rule))
            ok = _eligible(avail, cats, prot, cnt, rule, g, x, slots_g, need, tlen, len(pins))
            if not ok.any():
                break
            j = -1
            if not exhausted:
                dd = np.array([d2(i) if ok[i] else -1.0 for i in range(n)])
                el = ok & (dd > eps)
                if el.any():
                    sc = np.full(n, -np.inf)
                    sc[el] = w * rs[el] + np.log(dd[el])
                    best = sc.max()
                    j = int(np.flatnonzero(el & (sc >= best - TIE * (abs(best) + 1)))[0])
                else:
                    exhausted = True
            if j < 0:
                j = int(np.flatnonzero(ok)[np.argmax(rs[ok])])
            g += 1
            x += int(prot[j])
        sel.append(j)
        avail[j] = False
        cnt[int(cats[j])] = cnt.get(int(cats[j]), 0) + 1
        if not exhausted and d2(j) > eps:
            basis.append(j)
    return _place(sel, pins)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_dpp_equals_brute_force(case):
    rel, vec, cats, k, rule = case
    rule = Constraints(
        min_count=rule.min_count, max_count=rule.max_count, pins=rule.pins, boosts=rule.boosts,
        protected=rule.protected, min_share=rule.min_share, best_effort=True,
    )  # fmt: skip
    got = _run(FastGreedyDPP(theta=0.6), rel, vec, cats, k, rule)
    assert got == brute_dpp(rel, vec, k, rule, cats, 0.6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_feasible_rules_always_hold(case):
    rel, vec, cats, k, rule = case
    ids = np.arange(rel.size)[None]
    rc = resolve_batch([rule], ids, k, cats, 3)
    # feasible by construction unless pins / share fight the minimums: check with the
    # brute force's verdict (a list satisfying every rule exists among the greedy's)
    for model in (MMR(lambda_=0.4), FastGreedyDPP(theta=0.4), SSD(gamma=1.0)):
        out = model.select_batch(rel[None], k, vectors=vec[None], constraints=rc)[0]
        got = check_list(out, rule, cats, k)
        if rule.protected is None and not rule.pins:
            assert got == [], (type(model).__name__, got)
        else:  # only the rules a greedy can be forced to give up may break
            allowed = {"min_count", "min_share", "pins"}
            for c, m in rule.max_count.items():  # pins above a maximum: infeasible
                if sum(1 for it in rule.pins if cats[it] == c) > m:
                    allowed.add("max_count")
            assert {v.field for v in got} <= allowed
        mx = {c: int(np.sum(cats[out[out >= 0]] == c)) for c in rule.max_count}
        pinned_over = {c: sum(1 for it in rule.pins if cats[it] == c) for c in rule.max_count}
        for c, m in rule.max_count.items():
            assert mx[c] <= max(m, pinned_over[c])  # a maximum is never exceeded by a pick


def test_filters_only_equal_the_filtered_unconstrained_kernel():
    rng = np.random.default_rng(3)
    rel = rng.random((3, 40))
    vec = rng.normal(size=(3, 40, 8))
    cats = rng.integers(0, 4, 40)
    rule = Constraints(exclude=[1, 5, 7], deny_categories=[2])
    ids = np.tile(np.arange(40), (3, 1))
    rc = resolve_batch([rule] * 3, ids, 10, cats)
    assert not rc.active.any()
    for model in (MMR(), FastGreedyDPP(), SSD(), InterestAwareMMR(lambda_=0.2)):
        kw = {"user": rng.normal(size=(3, 8))} if isinstance(model, InterestAwareMMR) else {}
        a = model.select_batch(rel, 10, vectors=vec, constraints=rc, **kw)
        b = model.select_batch(rel, 10, vectors=vec, valid=rc.keep, **kw)
        np.testing.assert_array_equal(a, b)
        c = model.select_batch(rel, 10, vectors=vec, **kw)
        d = model.select_batch(rel, 10, vectors=vec, constraints=None, **kw)
        np.testing.assert_array_equal(c, d)


def test_hand_case_max_min_pin():
    # 6 items, categories [0, 0, 0, 1, 1, 2]; relevance decreasing; identical directions
    # within a category (MMR λ = 1: relevance order under the rules)
    rel = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    vec = np.eye(6)
    cats = np.array([0, 0, 0, 1, 1, 2])
    m = MMR(lambda_=1.0)
    # at most 1 of category 0 → 0, 3, 4, 5
    assert _run(m, rel, vec, cats, 4, Constraints(max_count={0: 1})) == [0, 3, 4, 5]
    # at least 1 of category 2 in 3 slots → 0, 1, then the reserved slot: 5
    assert _run(m, rel, vec, cats, 3, Constraints(min_count={2: 1})) == [0, 1, 5]
    # item 4 pinned at slot 0, the rest in relevance order
    assert _run(m, rel, vec, cats, 3, Constraints(pins={4: 0})) == [4, 0, 1]
    # a boost lifts item 5 to the top
    assert _run(m, rel, vec, cats, 2, Constraints(boosts={5: 10.0})) == [5, 0]
    # protected category 1 with share 0.5: floor(0.5 i) protected in every prefix
    got = _run(m, rel, vec, cats, 4, Constraints(protected=1, min_share=0.5))
    assert got == [0, 3, 1, 4]


def _fitted(model):
    cats = sp.csr_matrix(np.eye(3)[[0, 0, 0, 1, 1, 2]])
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 3, 4, 5])
    data = Interactions.from_arrays(users, items).with_item_side_info(
        item_categories=cats, category_names=("a", "b", "c")
    )
    return model.fit(data, item_vectors=np.eye(6))


def test_stage_call_strict_and_best_effort():
    model = _fitted(MMR(lambda_=1.0))
    cand = Candidates(np.array([[0, 1, 2, 3, 4]]), np.array([[5.0, 4.0, 3.0, 2.0, 1.0]]))
    # category 2 (item 5) is not among the candidates: min_count cannot be met
    q = Query(np.array([0]), exclude_seen=False, constraints=Constraints(min_count={2: 1}))
    with pytest.raises(ValueError, match=r"^min_count: infeasible for request 0") as e:
        model(q, cand, 3)
    assert "\n" not in str(e.value)
    q = Query(
        np.array([0]), exclude_seen=False,
        constraints=Constraints(min_count={2: 1}, max_count={0: 1}, best_effort=True),
    )  # fmt: skip
    out = model(q, cand, 3)
    assert out.ids[0].tolist() == [0, 3, 4]
    assert [v.field for v in out.violations[0]] == ["min_count"]
    # unknown category, pin outside the list: one line naming the field
    with pytest.raises(ValueError, match=r"^max_count: unknown category 9"):
        model(Query(np.array([0]), constraints=Constraints(max_count={9: 1})), cand, 3)
    with pytest.raises(ValueError, match=r"^pins: item 1 at position 3"):
        model(Query(np.array([0]), constraints=Constraints(pins={1: 3})), cand, 3)
    # knob 0 rows with rules go through the kernel (rules kept)
    q = Query(
        np.array([0]), exclude_seen=False, diversity=np.array([0.0]),
        constraints=Constraints(max_count={0: 1}),
    )  # fmt: skip
    assert model(q, cand, 3).ids[0].tolist() == [0, 3, 4]


def test_reranker_without_rules_support_refuses():
    from divrec.rerank import CategoryCap

    model = _fitted(CategoryCap())
    cand = Candidates(np.array([[0, 1, 2]]), np.array([[3.0, 2.0, 1.0]]))
    with pytest.raises(ValueError, match="does not take Query.constraints"):
        model(Query(np.array([0]), constraints=Constraints(max_count={0: 1})), cand, 2)
