"""Exposure fairness: FA*IR top-k ranking (Zehlike et al., "FA*IR: A Fair Top-k Ranking
Algorithm", CIKM 2017).

Ranked group fairness (Zehlike Def. 3.3): a ranking of ``k`` items with ``τ_p(i)``
protected items among its first ``i`` passes the test with minimum proportion ``p`` and
significance ``α`` when, for every prefix ``i = 1 … k``,

    F(τ_p(i); i, p) > α_c,

``F`` the binomial CDF: a fair ranking (each position protected with probability ``p``)
is rejected in no prefix. Equivalently ``τ_p(i) ≥ m(i)`` with the table

    m_{α,p}(i) = min { m : F(m; i, p) > α_c }                      (Zehlike Eq. 2, Alg. 1)

(the smallest count whose CDF exceeds ``α_c``, the binomial inverse CDF). Testing ``k``
prefixes inflates the type-I error, so ``α_c`` is the multiple-testing adjustment of
Zehlike Sec. 4.2 (Alg. 3–4): the largest ``α_c ≤ α`` whose table rejects a fair ranking
(Bernoulli ``p`` at every position) with probability at most ``α``. The failure
probability of a table is computed exactly by dynamic programming over the number of
protected items (``O(k²)``) and ``α_c`` by bisection; ``adjust=False`` uses ``α_c = α``
(the unadjusted table).

The re-ranker (Zehlike Alg. 2): two queues, the protected and the non-protected candidates,
each by decreasing relevance; at position ``i`` a protected item is forced when the list
holds fewer than ``m(i)`` protected items, else the more relevant of the two heads is
taken (ties to the lower position). When the protected candidates run out the list is
completed with non-protected ones (best effort: that list can fail the test; the function
:func:`ranked_group_fairness` says so).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from divrec.stage import StageConfig, param

from ._base import (
    Reranker,
    as_positions,
    check_k,
    check_relevance_batch,
    relevance_array,
)
from ._rules import RowRules, apply_rules

__all__ = [
    "FAIR",
    "FAIRConfig",
    "adjusted_alpha",
    "fail_probability",
    "fair_mtable",
    "ranked_group_fairness",
]


def _check_p_alpha(p: float, alpha: float) -> tuple[float, float]:
    p, alpha = float(p), float(alpha)
    if not (0.0 < p < 1.0):
        raise ValueError(f"p must be in (0, 1), got {p}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return p, alpha


def _binom_pmf_rows(k: int, p: float) -> np.ndarray:
    """``pmf[i, m] = P(Bin(i, p) = m)`` for ``i, m = 0 … k`` (built by recursion)."""
    pmf = np.zeros((k + 1, k + 1))
    pmf[0, 0] = 1.0
    for i in range(1, k + 1):
        pmf[i, 1:] = pmf[i - 1, :-1] * p
        pmf[i, :] += pmf[i - 1, :] * (1.0 - p)
    return pmf


def _table(k: int, p: float, alpha_c: float) -> np.ndarray:
    cdf = np.cumsum(_binom_pmf_rows(k, p), axis=1)
    # m(i) = min{m : F(m; i, p) > α_c}; F(i; i, p) = 1 > α_c, so it exists
    return np.argmax(cdf[1:] > alpha_c, axis=1).astype(np.int64)


def fail_probability(mtable: np.ndarray, p: float) -> float:
    """Probability that a fair ranking (protected with probability ``p`` at each position)
    has ``τ_p(i) < m(i)`` in some prefix (exact dynamic programming, ``O(k²)``).

    Args:
        mtable: ``(k,)`` minimum protected counts of the prefixes ``1 … k``.
        p: the protected proportion.
    """
    m = np.asarray(mtable, dtype=np.int64)
    dist = np.zeros(m.size + 1)
    dist[0] = 1.0  # mass of the surviving rankings by protected count
    for i in range(m.size):
        nxt = dist * (1.0 - p)
        nxt[1:] += dist[:-1] * p
        nxt[: m[i]] = 0.0  # rejected at prefix i + 1
        dist = nxt
    return float(max(0.0, 1.0 - dist.sum()))


@functools.lru_cache(maxsize=256)
def adjusted_alpha(k: int, p: float, alpha: float) -> float:
    """``α_c``: the largest ``α_c ≤ α`` whose table fails a fair ranking of length ``k``
    with probability ``≤ α`` (Zehlike Sec. 4.2; bisection, 60 steps)."""
    p, alpha = _check_p_alpha(p, alpha)
    if k <= 0 or fail_probability(_table(k, p, alpha), p) <= alpha:
        return alpha
    lo, hi = 0.0, alpha  # fail(lo) = 0 ≤ α < fail(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if fail_probability(_table(k, p, mid), p) <= alpha:
            lo = mid
        else:
            hi = mid
    return lo


def fair_mtable(k: int, p: float, alpha: float, adjust: bool = True) -> np.ndarray:
    """``m(i)``, ``i = 1 … k``: the minimum number of protected items in each prefix
    (Zehlike Alg. 1, Eq. 2; with ``adjust`` at the corrected significance ``α_c``).

    Args:
        k: ranking length ``≥ 0``.
        p: minimum protected proportion in ``(0, 1)``.
        alpha: significance in ``(0, 1)``.
        adjust: apply the multiple-testing adjustment (Sec. 4.2).

    Returns:
        ``(k,)`` int64, non-decreasing.
    """
    k = check_k(k)
    p, alpha = _check_p_alpha(p, alpha)
    a = adjusted_alpha(k, p, alpha) if adjust else alpha
    return _table(k, p, a) if k else np.zeros(0, dtype=np.int64)


def ranked_group_fairness(protected: Any, p: float, alpha: float, adjust: bool = True) -> bool:
    """The ranked group fairness test (Zehlike Def. 3.3): does every prefix of the ranking
    hold at least ``m(i)`` protected items?

    Args:
        protected: ``(k,)`` bool, whether the item at each position is protected.
        p: minimum protected proportion.
        alpha: significance.
        adjust: use the adjusted significance ``α_c``.
    """
    flags = np.asarray(protected, dtype=bool).reshape(-1)
    table = fair_mtable(flags.size, p, alpha, adjust)
    return bool(np.all(np.cumsum(flags) >= table))


@dataclass(frozen=True, kw_only=True)
class FAIRConfig(StageConfig):
    """`FAIR` hyperparameters.

    Attributes:
        p: minimum proportion of protected items in ``(0, 1)``.
        alpha: significance of the test in ``(0, 1)`` (the paper: 0.1).
        adjust: multiple-testing adjustment of ``α`` (Zehlike Sec. 4.2).
        group: where the protected group of a fitted re-ranker comes from (the item
            column of :func:`divrec.metrics.groups.item_groups`): ``"popularity"`` (the
            long tail: items outside the head holding 20% of the training interactions),
            ``"category=<name>"`` (items of that category) or ``"feature:<j>"`` (items
            whose ``item_features`` column ``j`` is nonzero).
    """

    p: float = param(0.5, gt=0.0, lt=1.0)
    alpha: float = param(0.1, gt=0.0, lt=1.0)
    adjust: bool = True
    group: str = "popularity"

    def validate(self) -> None:
        """The group spec has a known form."""
        g = self.group
        if not (g == "popularity" or g.startswith("category=") or g.startswith("feature:")):
            raise ValueError(
                f"group must be 'popularity', 'category=<name>' or 'feature:<j>', got {g!r}"
            )


def fair_select(relevance: np.ndarray, protected: np.ndarray, k: int, table: np.ndarray):
    """Zehlike Alg. 2 for one request: ``(k',)`` positions, ``k' = min(k, N)``.

    Args:
        relevance: ``(N,)`` relevance.
        protected: ``(N,)`` bool.
        k: list length.
        table: ``(≥ k',)`` minimum protected counts of the prefixes.
    """
    order = np.argsort(-relevance, kind="stable")
    prot = order[protected[order]].tolist()
    rest = order[~protected[order]].tolist()
    out: list[int] = []
    n_prot = 0
    a = b = 0
    for i in range(min(k, relevance.size)):
        has_p, has_n = a < len(prot), b < len(rest)
        force = n_prot < table[i]
        if has_p and (
            force or not has_n or (relevance[prot[a]], -prot[a]) > (relevance[rest[b]], -rest[b])
        ):
            out.append(prot[a])
            a += 1
            n_prot += 1
        else:
            out.append(rest[b])
            b += 1
    return as_positions(out)


def fair_select_rules(
    relevance: np.ndarray, protected: np.ndarray, valid: np.ndarray, table: np.ndarray, rules
) -> list[int]:
    """Zehlike Alg. 2 under business rules, for one request: pins first, then each free
    slot takes the most relevant candidate the rules allow, a protected one when the
    output prefix ending at that slot would otherwise hold fewer than ``m(slot + 1)``
    protected items (and one is allowed). Without rules this is :func:`fair_select`."""
    avail = valid.copy()
    for _, j in rules.pins:
        if avail[j]:
            avail[j] = False
            rules.count(j, greedy=False)
    greedy: list[int] = []
    while len(rules.pins) + len(greedy) < rules.kb:
        ok = rules.eligible(avail)
        if not ok.any():
            break
        slot = int(rules.free_slots[rules.g])
        n_prot = rules.protected_before()
        if n_prot < table[slot] and (ok & protected).any():
            ok = ok & protected
        cand = np.flatnonzero(ok)
        j = int(cand[np.argmax(relevance[cand])])
        greedy.append(j)
        avail[j] = False
        rules.count(j, greedy=True)
    return rules.place(greedy)


class FAIR(Reranker):
    """FA*IR (Zehlike et al. 2017, Alg. 2): the most relevant list whose every prefix holds
    the protected items the ranked group fairness test requires.

    As a pipeline stage the protected group of each item is fitted from the training data
    (``group`` of :class:`FAIRConfig`, via :func:`divrec.metrics.groups.item_groups`); ``select``
    and ``select_batch`` take it as ``protected``. Hyperparameters: :class:`FAIRConfig`.
    """

    Config = FAIRConfig
    _stage_inputs: tuple[str, ...] = ()
    _per_item_kwargs = ("protected",)
    #: honours ``Query.constraints`` (python-level rules, :mod:`divrec.rerank._rules`)
    _takes_constraints = True

    def _fit_stage(self, train) -> None:
        """``item_protected_`` ``(n_items,)`` bool, from ``group``."""
        from divrec.metrics.groups import item_groups

        try:
            codes, names = item_groups(train, self.group)
        except ValueError as err:  # a column the data has not: one line naming the field
            raise ValueError(f"group: {str(err).splitlines()[0]}") from None
        # the long tail of "popularity", the items of "category=<name>" / "feature:<j>"
        self.item_protected_ = codes == names.index("tail" if self.group == "popularity" else "yes")

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        return {"protected": self.item_protected_[safe_ids]}

    def _table(self, k: int) -> np.ndarray:
        return fair_mtable(k, self.p, self.alpha, self.adjust)

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        protected: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select ``min(k, N)`` positions.

        Args:
            relevance: ``(N,)`` relevance.
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ignored.
            protected: ``(N,)`` bool, the protected candidates (required).

        Returns:
            ``(min(k, N),)`` int64 positions in selection order.
        """
        r = relevance_array(relevance)
        sel = self.select_batch(
            r[None], k, protected=None if protected is None else np.asarray(protected)[None]
        )[0]
        return as_positions(sel[sel >= 0])

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        protected: np.ndarray | None = None,
        constraints: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Batch selection; ``(B, N)`` in, ``(B, k)`` int64 out (``-1`` padded).

        Args:
            relevance: ``(B, N)`` relevance.
            k: list length.
            vectors: ignored.
            similarity: ignored.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            protected: ``(B, N)`` bool, the protected candidates (required).
            constraints: the batch's business rules resolved to positions
                (`divrec.data.constraints.ResolvedConstraints`), or None.
        """
        k = check_k(k)
        r, m = check_relevance_batch(relevance, valid)
        if protected is None:
            raise ValueError("FAIR needs `protected` (B, N) bool: the protected candidates")
        prot = np.asarray(protected)
        if prot.shape != r.shape or prot.dtype != bool:
            raise ValueError(f"protected must be a bool array of shape {r.shape}")
        out = np.full((r.shape[0], k), -1, dtype=np.int64)
        table = self._table(k)
        r, m = apply_rules(constraints, r, m)
        for b in range(r.shape[0]):
            if constraints is not None and constraints.active[b]:
                rules = RowRules(constraints, b, k, int(min(k, m[b].sum())))
                sel = fair_select_rules(r[b], prot[b] & m[b], m[b], table, rules)
                rules.check(sel, "FAIR")
                out[b, : len(sel)] = sel
                continue
            idx = np.flatnonzero(m[b])
            sel = fair_select(r[b, idx], prot[b, idx], k, table)
            out[b, : sel.size] = idx[sel]
        return out
