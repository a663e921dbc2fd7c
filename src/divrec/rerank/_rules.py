"""Python-level eligibility of one request's business rules, for the numpy re-rankers
(:class:`~divrec.rerank.calibration.CalibratedReranker`, :class:`~divrec.rerank.fairness.FAIR`)
and the explanations (:mod:`divrec.rerank._explain`): the numpy twin of the compiled
kernels' ``con_setup`` / ``con_eligible`` (:mod:`divrec.rerank._kernels`).

The rules arrive resolved to position space (:class:`~divrec.data.constraints.
ResolvedConstraints`, ``divrec.data.constraints.resolve_batch``) and mean what they mean for
the compiled kernels (see :mod:`divrec.data.constraints`): filters and boosts are applied
before the greedy (:func:`apply_rules`); pinned candidates enter the selected set first and
sit at their slots; then a candidate is eligible when, after taking it, the rules can all
still be met together in the slots left (:func:`eligible`): its category is below its
maximum, and some completion of the list to its reachable length meets every unmet
minimum and the protected floor of every later prefix, within the maximums and the
candidates left. When no candidate keeps the request feasible, the share rule is dropped
and the minimums are met as far as they can be (the maximums never relax: the list is
shorter). A list that still breaks a rule is a one-line ``ValueError`` naming the rule,
unless the request asked for ``best_effort``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RowRules", "apply_rules", "eligible", "reach", "rule_setup"]


def apply_rules(rc: Any, relevance: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(relevance + boosts, valid & filters)`` of a batch with resolved rules ``rc``."""
    if rc is None:
        return relevance, valid
    r = relevance if rc.boost is None else relevance + np.where(valid, rc.boost, 0.0)
    return r, valid & rc.keep


def rule_setup(kb: int, pins: np.ndarray, prot: np.ndarray, floor: np.ndarray) -> tuple:
    """``(gsl, rneed)``, ``(kb + 1,)`` each: the greedy (unpinned) slots among the first
    ``p`` output slots and the protected items the greedy picks must bring to them (the
    floor of prefix ``p`` minus the protected pins inside it); ``pins`` ``(k,)``: the
    candidate pinned at each slot (−1: none)."""
    gsl = np.zeros(kb + 1, dtype=np.int64)
    rneed = np.zeros(kb + 1, dtype=np.int64)
    g = pp = 0
    for p in range(1, kb + 1):
        s = p - 1
        if s < pins.size and pins[s] >= 0:
            pp += int(prot[pins[s]])
        else:
            g += 1
        gsl[p] = g
        rneed[p] = floor[p] - pp if p < floor.size else 0
    return gsl, rneed


def _type_counts(avail: np.ndarray, cat: np.ndarray, prot: np.ndarray, nc: int) -> np.ndarray:
    """``(nc + 1, 2)`` available candidates per (category code + 1, protected)."""
    t = 2 * (cat[avail] + 1) + prot[avail].astype(np.int64)
    return np.bincount(t, minlength=2 * (nc + 1)).reshape(nc + 1, 2)


def reach(kb: int, npins: int, avail, cat, prot, cmax, cnt) -> int:
    """The reachable list length once the ``npins`` pins are counted in ``cnt``:
    ``min(kb, npins + Σ room below each maximum, at most its candidates in avail)``."""
    a = _type_counts(avail, cat, prot, cnt.shape[0]).sum(axis=1)
    room = np.maximum(np.minimum(cmax - cnt, a[1:]), 0)
    return int(min(kb, npins + int(a[0]) + int(room.sum())))


def eligible(avail, cat, prot, cmin, cmax, cnt, g, x, tlen, npins, gsl, rneed) -> np.ndarray:
    """``(N,)`` bool: the ``avail`` candidates the rules allow for the next greedy pick.

    Args:
        avail: ``(N,)`` candidates not picked yet.
        cat: ``(N,)`` compact category codes (−1: none); prot: ``(N,)`` protected flags.
        cmin, cmax, cnt: ``(C,)`` minimum, maximum and current counts (pins included).
        g, x: greedy picks so far and protected ones among them.
        tlen, npins: the reachable list length (:func:`reach`) and the pins.
        gsl, rneed: :func:`rule_setup`.

    A candidate type (category × protected) is eligible when after one pick of it, ``r``
    further picks (``tlen − npins − g − 1``, at most the room left) can meet every unmet
    minimum within the maximums and the candidates left with enough protected ones for
    every later prefix floor: per category the picks ``y_u ∈ [lo_u, ub_u]``, at most
    ``min(y_u, a1_u)`` protected, so the most protected picks are ``Σ min(lo_u, a1_u)``
    plus the spare picks spent on protected room first (placed first, they serve every
    prefix). Infeasible from here: no share rule; when the unmet minimum units that still
    have candidates fill the slots left, only candidates of unmet categories.
    """
    nc = cnt.shape[0]
    a = _type_counts(avail, cat, prot, nc)  # (nc + 1, 2)
    tot = a.sum(axis=1)
    lo = np.concatenate([[0], cmin - cnt])
    hi = np.concatenate([[tot[0]], cmax - cnt])
    under = hi > 0
    left = tlen - npins - g  # greedy picks still to make, this one included
    # the further protected picks the open prefixes need, for a pick that is / is not
    # protected, and whether their slots suffice
    p = np.arange(1, tlen + 1)
    open_ = gsl[p] >= g + 1
    d = rneed[p][open_] - x
    room = gsl[p][open_] - g - 1
    need = np.array([max(0, int(d.max(initial=0)) - q) for q in (0, 1)])
    fits_room = np.array([bool(np.all(d - q <= room)) for q in (0, 1)])

    def terms(lo_, hi_, a0, a1):
        lo_ = np.maximum(lo_, 0)
        ub = np.maximum(np.minimum(hi_, a0 + a1), 0)
        return lo_, ub, np.minimum(lo_, a1), np.maximum(np.minimum(ub, a1) - lo_, 0)

    lo0, ub0, base0, pcap0 = terms(lo, hi, a[:, 0], a[:, 1])
    bad0 = lo0 > ub0
    tok = np.zeros((nc + 1, 2), dtype=bool)
    for q in (0, 1):
        lo1, ub1, base1, pcap1 = terms(lo - 1, hi - 1, a[:, 0] - (1 - q), a[:, 1] - q)
        slo = lo0.sum() - lo0 + lo1
        cap = ub0.sum() - ub0 + ub1
        base = base0.sum() - base0 + base1
        pcap = pcap0.sum() - pcap0 + pcap1
        bad = (bad0.sum() - bad0 + (lo1 > ub1)) > 0
        r = np.minimum(left - 1, cap)
        fit = ~bad & (slo <= r) & (base + np.minimum(r - slo, pcap) >= need[q])
        tok[:, q] = under & (a[:, q] > 0) & fits_room[q] & fit
    ok = avail & tok[cat + 1, prot.astype(np.int64)]
    if ok.any():
        return ok
    safe = np.maximum(cat, 0)
    capped = avail & ~((cat >= 0) & (cnt[safe] >= cmax[safe]))
    unmet = lo[1:] > 0
    reach_min = int(np.minimum(lo[1:], tot[1:])[unmet].sum())
    if reach_min > 0 and reach_min >= left:
        return capped & (cat >= 0) & (cnt[safe] < cmin[safe])
    return capped


class RowRules:
    """The rules of request ``b`` of a resolved batch and the greedy's count state.

    Args:
        rc: the batch's `ResolvedConstraints`.
        b: the request's row.
        k: the list length asked for.
        kb: the list length the request can reach (``min(k, eligible candidates)``).
    """

    def __init__(self, rc: Any, b: int, k: int, kb: int) -> None:
        self.cat = rc.cat[b]
        self.min_c = rc.min_c[b]
        self.max_c = rc.max_c[b]
        self.prot = rc.prot[b]
        self.floor = rc.floor[b]  # (k + 1,)
        self.best_effort = bool(rc.best_effort[b])
        self.missing = list(rc.missing_pins[b])
        self.kb = kb
        slots = rc.pin_slot[b][:k]
        self.pins = [(s, int(p)) for s, p in enumerate(slots.tolist()) if p >= 0]
        pinned = slots >= 0
        # gsl[p]: greedy (unpinned) slots among the first p; rneed[p]: the floor of prefix p
        # minus the protected pins inside it
        self.gsl, self.rneed = rule_setup(kb, slots, self.prot, self.floor)
        self.free_slots = np.flatnonzero(~pinned)
        self.cnt = np.zeros(self.min_c.shape[0], dtype=np.int64)
        self.g = 0  # greedy picks so far
        self.x = 0  # protected greedy picks so far
        self.npins = 0  # pins counted
        self.tlen = -1  # the reachable list length, set at the first greedy step

    def count(self, j: int, greedy: bool) -> None:
        """Count the pick of candidate ``j`` (its category; a greedy pick in the state)."""
        c = int(self.cat[j])
        if c >= 0:
            self.cnt[c] += 1
        if greedy:
            self.g += 1
            self.x += int(self.prot[j])
        else:
            self.npins += 1

    def protected_before(self) -> int:
        """Protected items in the output slots before the next greedy pick's slot."""
        slot = int(self.free_slots[self.g]) if self.g < self.free_slots.size else self.kb
        return self.x + sum(1 for s, p in self.pins if s < slot and self.prot[p])

    def eligible(self, avail: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: ``avail`` candidates the rules allow for the next greedy pick
        (:func:`eligible`; the pins counted first)."""
        if self.tlen < 0:
            self.tlen = reach(self.kb, self.npins, avail, self.cat, self.prot, self.max_c, self.cnt)
        return eligible(
            avail, self.cat, self.prot, self.min_c, self.max_c, self.cnt, self.g, self.x,
            self.tlen, self.npins, self.gsl, self.rneed,
        )  # fmt: skip

    def place(self, greedy: list[int]) -> list[int]:
        """The output order: each pin at its slot, the greedy picks in the other slots in
        order; holes of a short list closed up."""
        n = len(self.pins) + len(greedy)
        out: list[int | None] = [None] * max(n, max((s + 1 for s, _ in self.pins), default=0))
        late = []
        for s, p in self.pins:
            if s < len(out):
                out[s] = p
            else:
                late.append(p)
        it = iter(greedy)
        for s in range(len(out)):
            if out[s] is None:
                out[s] = next(it, None)
        return [p for p in out if p is not None] + late

    def check(self, out: list[int], who: str) -> None:
        """Raise the one-line ``ValueError`` of the first rule ``out`` breaks (unless the
        request is best effort)."""
        if self.best_effort:
            return
        if self.missing:
            raise ValueError(f"pins: item {self.missing[0]} is not among the candidates ({who})")
        for s, p in self.pins:
            if s >= len(out) or out[s] != p:
                raise ValueError(f"pins: position {s} is outside the list it could fill ({who})")
        cnt = np.zeros_like(self.cnt)
        for j in out:
            if self.cat[j] >= 0:
                cnt[self.cat[j]] += 1
        short = np.flatnonzero(cnt < self.min_c)
        if short.size:
            c = int(short[0])
            raise ValueError(
                f"min_count: only {int(cnt[c])} of the required {int(self.min_c[c])} items of a "
                f"constrained category could be placed ({who})"
            )
        prot = np.cumsum(self.prot[np.asarray(out, dtype=np.int64)]) if out else np.zeros(0)
        floor = self.floor[1 : len(out) + 1]
        miss = np.flatnonzero(prot < floor)
        if miss.size:
            i = int(miss[0]) + 1
            raise ValueError(
                f"min_share: prefix {i} holds {int(prot[i - 1])} protected items, minimum "
                f"{int(floor[i - 1])} ({who})"
            )
