"""Python-level eligibility of one request's business rules, for the numpy re-rankers
(:class:`~divrec.rerank.calibration.CalibratedReranker`, :class:`~divrec.rerank.fairness.FAIR`).

The rules arrive resolved to position space (:class:`~divrec.data.constraints.
ResolvedConstraints`, ``divrec.data.constraints.resolve_batch``) and mean what they mean for
the compiled kernels (see :mod:`divrec.data.constraints`): filters and boosts are applied
before the greedy (:func:`apply_rules`); pinned candidates enter the selected set first and
sit at their slots; a candidate whose category is at its maximum is skipped; once the
greedy slots left equal the unmet minimums only candidates of unmet categories are
eligible; when a non-protected pick would leave some later prefix unable to reach its
protected floor, only protected candidates are. When nothing is eligible the share rule
is relaxed first, then the minimums (the maximums never: the list is shorter). A list that
still breaks a rule is a one-line ``ValueError`` naming the rule, unless the request asked
for ``best_effort``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RowRules", "apply_rules"]


def apply_rules(rc: Any, relevance: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(relevance + boosts, valid & filters)`` of a batch with resolved rules ``rc``."""
    if rc is None:
        return relevance, valid
    r = relevance if rc.boost is None else relevance + np.where(valid, rc.boost, 0.0)
    return r, valid & rc.keep


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
        self.gsl = np.concatenate([[0], np.cumsum(~pinned)]).astype(np.int64)
        ppin = np.concatenate([[0], np.cumsum(pinned & self._prot_at(slots))]).astype(np.int64)
        self.rneed = self.floor[: k + 1] - ppin
        self.free_slots = np.flatnonzero(~pinned)
        self.cnt = np.zeros(self.min_c.shape[0], dtype=np.int64)
        self.g = 0  # greedy picks so far
        self.x = 0  # protected greedy picks so far

    def _prot_at(self, slots: np.ndarray) -> np.ndarray:
        return np.where(slots >= 0, self.prot[np.maximum(slots, 0)], False)

    def count(self, j: int, greedy: bool) -> None:
        """Count the pick of candidate ``j`` (its category; a greedy pick in the state)."""
        c = int(self.cat[j])
        if c >= 0:
            self.cnt[c] += 1
        if greedy:
            self.g += 1
            self.x += int(self.prot[j])

    def protected_before(self) -> int:
        """Protected items in the output slots before the next greedy pick's slot."""
        slot = int(self.free_slots[self.g]) if self.g < self.free_slots.size else self.kb
        return self.x + sum(1 for s, p in self.pins if s < slot and self.prot[p])

    def eligible(self, avail: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: ``avail`` candidates the rules allow for the next greedy pick."""
        left = self.kb - len(self.pins) - self.g
        unmet = int(np.maximum(self.min_c - self.cnt, 0).sum())
        g, x = self.g, self.x
        p = np.arange(1, self.kb + 1)
        gsl, rneed = self.gsl[p], self.rneed[p]
        ponly = bool(np.any((gsl >= g + 1) & (x + gsl - g - 1 < rneed)))
        nmin = unmet > 0 and unmet >= left
        c = self.cat
        safe = np.maximum(c, 0)
        at_max = (c >= 0) & (self.cnt[safe] >= self.max_c[safe])
        met = (c < 0) | (self.cnt[safe] >= self.min_c[safe])
        base = avail & ~at_max
        for relax in range(3):
            ok = base
            if nmin and relax < 2:
                ok = ok & ~met
            if ponly and relax < 1:
                ok = ok & self.prot
            if ok.any() or not ((nmin and relax < 2) or (ponly and relax < 1)):
                return ok
        return np.zeros_like(avail)

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
