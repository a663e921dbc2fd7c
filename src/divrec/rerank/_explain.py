"""Per-item explanations of re-ranked lists (``Query.explain`` / ``explain=True``).

Computed after the kernel has run, from the returned lists alone (the kernels' hot loops
do nothing extra: an explanation costs nothing unless asked for). For every returned item:

* ``item``: the item index; ``position``: its 0-based place in the list;
* ``relevance``: its upstream score (the candidates' score the re-ranker received) and
  ``rank_before``: its 1-based rank among the request's candidates by that score (ties by
  position, as :meth:`Candidates.sorted`);
* ``gain``: its marginal gain at the greedy step that picked it (selection order: pins
  first, then the other items in list order), split as ``relevance_part +
  diversity_part``, the two terms of the method's objective:

  - MMR (Carbonell & Goldstein 1998): ``λ · r_i`` and ``−(1 − λ) · max_{j∈S} cos(i, j)``;
  - interest-aware MMR (CDM Eq. 2–3): ``r_i`` and ``−λ · max_{j∈S} σ(e_{i,u} · e_{j,u})``;
  - the DPPs (Chen et al. 2018; WeChat Eq. 5): ``2α · r_i`` and ``log d_i²``, the log
    Schur complement of ``i`` given the picks (the window's, with a window);
  - SSD (Huang et al. 2021): ``r_i`` and ``γ · ‖v_i^⊥‖``;

  with ``r`` the relevance after boosts and the re-ranker's scaling, and ``S`` the items
  picked before it (the first pick of MMR / interest-aware MMR is by relevance: its
  diversity part is 0);
* ``penalized_by``: the already-picked item most similar to it (largest similarity, the
  one that penalized it most; None for the first pick);
* ``rule``: ``"pin"`` (a pinned item), ``"minimum"`` (picked while the eligible
  candidates were restricted to reserve a minimum count or the protected share),
  ``"boost"`` (a boosted item that would not have won its step without the boost), or
  None.
"""

from __future__ import annotations

import numpy as np

from ._rules import eligible, reach, rule_setup

__all__ = ["explain_lists", "row_param_of", "residual_sq", "unit_rows"]


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to unit length (zero rows stay zero)."""
    n = np.sqrt(np.einsum("nd,nd->n", v, v))[:, None]
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0.0)


def row_param_of(reranker, query, b: int, name: str, kw: dict, knob) -> float:
    """The trade-off parameter ``name`` of request ``b``: the knob's (``knob(d)`` maps the
    request's ``Query.diversity``), a per-request keyword's, else the re-ranker's own."""
    if query.diversity is not None:
        return float(knob(float(query.diversity[b])))
    if kw.get(name) is not None:
        return float(np.asarray(kw[name], dtype=np.float64).reshape(-1)[b])
    return float(getattr(reranker.config, name))


def residual_sq(v: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """``‖v_i − P v_i‖²`` with ``P`` the projection on the span of ``picked`` (rows)."""
    if picked.shape[0] == 0:
        return np.einsum("nd,nd->n", v, v)
    q, rr = np.linalg.qr(picked.T)
    keep = np.abs(np.diag(rr)) > 1e-10 * max(float(np.abs(rr).max()), 1e-300)
    q = q[:, keep]
    res = v - (v @ q) @ q.T
    return np.einsum("nd,nd->n", res, res)


def explain_lists(reranker, query, candidates, pos, relevance, valid, kw, rc, rules) -> tuple:
    """``(B,)`` tuple of per-request tuples of explanation dicts (module docstring).

    Args:
        reranker: the re-ranker that produced ``pos``.
        query: the `Query`.
        candidates: the `(B, N)` candidates it received.
        pos: ``(B, k)`` picked positions in output order (−1 padded).
        relevance: ``(B, N)`` relevance it was given (before boosts).
        valid: ``(B, N)`` real candidates.
        kw: the keyword inputs it was given (``vectors``, ``user``, …).
        rc: the resolved rules (position space) or None; rules: the `Constraints` or None.
    """
    out = []
    for b in range(pos.shape[0]):
        keep = valid[b] if rc is None else valid[b] & rc.keep[b]
        idx = np.flatnonzero(keep)
        where = {int(p): i for i, p in enumerate(idx)}
        boost = np.zeros(len(idx)) if rc is None or rc.boost is None else rc.boost[b, idx]
        r0 = relevance[b, idx]
        terms = reranker._explain_terms(query, b, kw, idx, r0 + boost)
        plain = reranker._explain_terms(query, b, kw, idx, r0) if boost.any() else terms
        listed = [int(p) for p in pos[b] if p >= 0]
        k = pos.shape[1]
        pins = rc.pin_slot[b] if rc is not None and rc.active[b] else np.full(k, -1)
        pinned = [int(p) for p in pins if p >= 0 and int(p) in listed]
        order = pinned + [p for p in listed if p not in pinned]  # selection order
        # the candidates' order by upstream score (ties by position)
        sc = candidates.scores[b].astype(np.float64)
        key = np.where(valid[b], -sc, np.inf)
        rank = np.empty(sc.size, dtype=np.int64)
        rank[np.argsort(key, kind="stable")] = np.arange(1, sc.size + 1)
        cons = rc is not None and rc.active[b]
        if cons:  # the kernels' rule state (divrec.rerank._rules, their numpy twin)
            kb = min(k, int(keep.sum()))
            cnt = np.zeros(rc.min_c.shape[1], dtype=np.int64)
            ng = nx = 0  # greedy picks so far, protected ones among them
            tlen = -1
            gsl, rneed = rule_setup(kb, rc.pin_slot[b], rc.prot[b], rc.floor[b])
        avail = keep.copy()
        info: dict[int, dict] = {}
        first_by_relevance = reranker._explain_first_by_relevance
        for t, p in enumerate(order):
            sel = np.array([where[q] for q in order[:t]], dtype=np.int64)
            i = where[p]
            rel_p, div_p, sim = terms(sel)
            if t == 0 and first_by_relevance:
                div_p = np.zeros(len(idx))
            rule = None
            okm = avail[idx]
            if p in pinned:
                rule = "pin"
            elif cons:
                cat, prot, mx = rc.cat[b], rc.prot[b], rc.max_c[b]
                if tlen < 0:  # the reachable length, once the pins are counted
                    tlen = reach(kb, len(pinned), avail, cat, prot, mx, cnt)
                ok = eligible(
                    avail, cat, prot, rc.min_c[b], mx, cnt, ng, nx, tlen, len(pinned), gsl, rneed
                )
                safe = np.maximum(cat, 0)
                if not np.array_equal(ok, avail & ~((cat >= 0) & (cnt[safe] >= mx[safe]))):
                    rule = "minimum"  # restricted beyond the maximums: a reservation
                okm = ok[idx]
            if rule is None and boost[i] != 0.0:
                rp, dp, _ = plain(sel)
                if t == 0 and first_by_relevance:
                    dp = np.zeros(len(idx))
                unboosted = np.where(okm, rp + dp, -np.inf)
                if int(np.argmax(unboosted)) != i:
                    rule = "boost"
            pen = None
            if len(sel):
                pen = int(candidates.ids[b, idx[sel[int(np.argmax(sim[i]))]]])
            info[p] = {
                "item": int(candidates.ids[b, p]),
                "relevance": float(candidates.scores[b, p]),
                "rank_before": int(rank[p]),
                "gain": float(rel_p[i] + div_p[i]),
                "relevance_part": float(rel_p[i]),
                "diversity_part": float(div_p[i]),
                "penalized_by": pen,
                "rule": rule,
            }
            avail[p] = False
            if cons:
                c = rc.cat[b, p]
                if c >= 0:
                    cnt[c] += 1
                if p not in pinned:
                    ng += 1
                    nx += int(rc.prot[b, p])
        out.append(tuple({"position": s, **info[p]} for s, p in enumerate(listed)))
    return tuple(out)
