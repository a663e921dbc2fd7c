"""Per-request business rules for the greedy re-rankers: filters, category counts, pins,
boosts, a group-fairness floor, and the checker of a list against them.

A :class:`Constraints` is one request's rules, in internal indices (the `Interactions`
item and category indices, like every `Query` field). It is frozen and validated on
construction: a bad value is one ``ValueError`` line naming the field (``min_count``,
``pins``, ``boosts`` …), nothing computed. A `Query` carries them in
``Query.constraints`` (one `Constraints` broadcast to every request, or one per request,
None for a request without rules); the greedy re-rankers (MMR, interest-aware MMR,
FastGreedyDPP, PersonalizedDPP, RealtimePersonalizedDPP, SSD) honour them inside their
compiled kernels. Semantics, for a list of length ``k`` chosen from one request's
candidates:

* **filters** remove candidates before anything else: ``exclude`` (item indices),
  ``allow_categories`` (only items whose category is listed), ``deny_categories`` (never
  items of these categories) and ``allowed`` (an ``(n_items,)`` bool mask, for attribute
  predicates resolved upstream, e.g. ``allowed = catalogue.year >= 2000``);
* **category counts** ``min_count`` / ``max_count`` (``{category: count}``): an item's
  category is its *primary* category (``Interactions.primary_category()``, the first one;
  −1: none, never counted). A candidate that would exceed a maximum is skipped; minimums
  are reserved (see *reservations* below);
* **pins** ``{item: position}`` (0-based positions in the returned list): the pinned items
  enter the selected set first (so the greedy state, e.g. MMR's similarity penalty or the
  DPP's Cholesky factor, accounts for them) and sit at their positions in the output; the
  greedy picks fill the other slots in order. Pins count towards the category counts;
* **boosts** ``{item: b}``: ``b`` is added to the item's relevance (the upstream score,
  before the re-ranker's relevance scaling) — a business push, not a filter;
* **group fairness** (FA*IR-style, Zehlike et al. 2017): with ``protected`` set, every
  prefix of length ``i`` of the returned list holds at least ``floor(min_share · i)``
  items of the protected group. Groups are ``group_of`` (an ``(n_items,)`` int array of
  group codes: provider, popularity bucket, any attribute) or, when it is None, the
  primary categories;
* **reservations**: the minimums, the protected floors of every later prefix and the
  pins are reserved together: a candidate is eligible only if, after taking it, some
  completion of the list to its reachable length (``k``, or shorter where the filters
  and maximums leave fewer candidates; the floors of prefixes beyond it do not apply)
  still meets every rule within the maximums and the candidates left. So a request
  that some list satisfies always gets a list that satisfies it (the greedy never
  paints itself into a corner); when none does, the share rule is dropped and the
  minimums are met as far as they can be (maximums are never broken by a pick);
* **infeasible requests** (minimums above ``k``, too few candidates of a required
  category or group, a pinned item that is not a candidate, …): a one-line ``ValueError``
  naming the constraint, or with ``best_effort=True`` the best list the greedy finds and
  the violations reported (:class:`ConstraintViolation`, :func:`check_list`).

A maximum that leaves fewer than ``k`` eligible candidates is not a violation: the list is
shorter, as it is when there are fewer than ``k`` candidates.

Example::

    from divrec.data.constraints import Constraints
    c = Constraints(max_count={HORROR: 3}, min_count={INDIE: 2}, pins={item_42: 0},
                    boosts={item_7: 0.1}, exclude=[item_13])
    pipe.recommend(Query(users, constraints=c), k=10)        # one rule set for every request
    pipe.recommend(Query(users, constraints=[c, None]), k=10)  # one per request

:meth:`Constraints.resolve` turns a batch's rules into the position-space arrays the
kernels read (:class:`ResolvedConstraints`); :func:`check_list` checks a returned list
(used by the tests and by the best-effort report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ConstraintViolation",
    "Constraints",
    "ResolvedConstraints",
    "check_list",
    "fairness_floor",
    "resolve_batch",
]


def _int_key(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer):
        raise ValueError(f"{name}: keys must be integer indices, got {x!r}")
    if int(x) < 0:
        raise ValueError(f"{name}: indices must be >= 0, got {int(x)}")
    return int(x)


def _count_map(value: Any, name: str) -> Mapping[int, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping {{category: count}}")
    out: dict[int, int] = {}
    for key, cnt in value.items():
        c = _int_key(key, name)
        if isinstance(cnt, bool) or not isinstance(cnt, int | np.integer):
            raise ValueError(f"{name}[{c}] must be an integer count, got {cnt!r}")
        if int(cnt) < 0:
            raise ValueError(f"{name}[{c}] must be >= 0, got {int(cnt)}")
        out[c] = int(cnt)
    return out


def _items(value: Any, name: str) -> np.ndarray:
    if value is None:
        return np.zeros(0, dtype=np.int64)
    a = np.asarray(list(value) if not isinstance(value, np.ndarray) else value).reshape(-1)
    if a.size and (a.dtype == bool or not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold integer indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError(f"{name}: indices must be >= 0, got {int(a.min())}")
    return np.unique(a)


@dataclass(frozen=True, eq=False)
class Constraints:
    """One request's business rules (see the module docstring for the semantics).

    Attributes:
        exclude: item indices never to return.
        allow_categories: only items whose primary category is one of these (None: all).
        deny_categories: never items whose primary category is one of these.
        allowed: ``(n_items,)`` bool mask of returnable items (an attribute predicate
            resolved upstream), or None.
        min_count: ``{category: minimum count}`` in the returned list.
        max_count: ``{category: maximum count}`` in the returned list.
        pins: ``{item: position}``, 0-based positions in the returned list (each item and
            each position at most once; a position must be below ``k``, checked per call).
        boosts: ``{item: additive relevance boost}`` (finite).
        group_of: ``(n_items,)`` int group codes for the fairness rule, or None: the
            primary categories.
        protected: the protected group code, or None: no fairness rule.
        min_share: minimum share ``p ∈ (0, 1]`` of the protected group in every prefix
            (``floor(p · i)`` items among the first ``i``).
        best_effort: an infeasible request returns the best list found plus the reported
            violations instead of raising.
    """

    exclude: Any = None
    allow_categories: Any = None
    deny_categories: Any = None
    allowed: Any = None
    min_count: Any = None
    max_count: Any = None
    pins: Any = None
    boosts: Any = None
    group_of: Any = None
    protected: int | None = None
    min_share: float = 0.0
    best_effort: bool = False
    # derived: position-free summaries used by the resolver
    _categories_used: frozenset = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "exclude", _items(self.exclude, "exclude"))
        if self.allow_categories is not None:
            s(
                self,
                "allow_categories",
                frozenset(_items(self.allow_categories, "allow_categories").tolist()),
            )
        s(
            self,
            "deny_categories",
            frozenset(_items(self.deny_categories, "deny_categories").tolist()),
        )
        if self.allowed is not None:
            m = np.asarray(self.allowed)
            if m.ndim != 1 or m.dtype != bool:
                raise ValueError(
                    f"allowed must be an (n_items,) bool mask, got {m.dtype} {m.shape}"
                )
            s(self, "allowed", m)
        mins = _count_map(self.min_count, "min_count")
        maxs = _count_map(self.max_count, "max_count")
        for c, lo in mins.items():
            if c in maxs and lo > maxs[c]:
                raise ValueError(f"min_count[{c}] = {lo} exceeds max_count[{c}] = {maxs[c]}")
            if self.allow_categories is not None and lo > 0 and c not in self.allow_categories:
                raise ValueError(f"min_count[{c}]: category {c} is not in allow_categories")
            if lo > 0 and c in self.deny_categories:
                raise ValueError(f"min_count[{c}]: category {c} is in deny_categories")
        s(self, "min_count", dict(sorted(mins.items())))
        s(self, "max_count", dict(sorted(maxs.items())))
        pins = self.pins
        if pins is None:
            pins = {}
        pairs = list(pins.items()) if isinstance(pins, Mapping) else list(pins)
        seen_items: set[int] = set()
        seen_pos: dict[int, int] = {}
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ValueError(
                    "pins must be a mapping {item: position} or (item, position) pairs"
                )
            item = _int_key(pair[0], "pins")
            pos = pair[1]
            if isinstance(pos, bool) or not isinstance(pos, int | np.integer) or int(pos) < 0:
                raise ValueError(f"pins[{item}]: position must be an integer >= 0, got {pos!r}")
            if item in seen_items:
                raise ValueError(f"pins: item {item} pinned twice")
            if int(pos) in seen_pos:
                raise ValueError(
                    f"pins: position {int(pos)} pinned twice "
                    f"(items {seen_pos[int(pos)]} and {item})"
                )
            if item in set(self.exclude.tolist()):
                raise ValueError(f"pins: item {item} is also in exclude")
            seen_items.add(item)
            seen_pos[int(pos)] = item
        s(self, "pins", dict(sorted(((i, p) for p, i in seen_pos.items()), key=lambda x: x[1])))
        boosts = {} if self.boosts is None else self.boosts
        if not isinstance(boosts, Mapping):
            raise ValueError("boosts must be a mapping {item: boost}")
        bmap: dict[int, float] = {}
        for key, val in boosts.items():
            item = _int_key(key, "boosts")
            try:
                b = float(val)
            except (TypeError, ValueError):
                raise ValueError(f"boosts[{item}] must be a number, got {val!r}") from None
            if not math.isfinite(b):
                raise ValueError(f"boosts[{item}] must be finite, got {b}")
            bmap[item] = b
        s(self, "boosts", bmap)
        if self.group_of is not None:
            g = np.asarray(self.group_of)
            if g.ndim != 1 or g.dtype == bool or not np.issubdtype(g.dtype, np.integer):
                raise ValueError(
                    f"group_of must be an (n_items,) int array, got {g.dtype} {g.shape}"
                )
            s(self, "group_of", g.astype(np.int64, copy=False))
        share = self.min_share
        try:
            share = float(share)
        except (TypeError, ValueError):
            raise ValueError(f"min_share must be a number in [0, 1], got {share!r}") from None
        if not (0.0 <= share <= 1.0):  # NaN fails
            raise ValueError(f"min_share must be in [0, 1], got {share}")
        s(self, "min_share", share)
        if self.protected is not None:
            if isinstance(self.protected, bool) or not isinstance(self.protected, int | np.integer):
                raise ValueError(f"protected must be an integer group code, got {self.protected!r}")
            s(self, "protected", int(self.protected))
        elif share > 0.0:
            raise ValueError("min_share needs a protected group (protected=...)")
        if self.group_of is not None and self.protected is None:
            raise ValueError("group_of needs a protected group (protected=...)")
        if not isinstance(self.best_effort, bool):
            raise ValueError(f"best_effort must be a bool, got {self.best_effort!r}")
        used = set(mins) | set(maxs)
        s(self, "_categories_used", frozenset(used))

    # ------------------------------------------------------------------ summaries
    @property
    def has_filters(self) -> bool:
        """Whether some candidate may be removed."""
        return bool(
            self.exclude.size
            or self.allow_categories is not None
            or self.deny_categories
            or self.allowed is not None
        )

    @property
    def has_counts(self) -> bool:
        """Whether the kernels must track category counts, pins or the fairness floor."""
        return bool(
            any(v > 0 for v in self.min_count.values())
            or self.max_count
            or self.pins
            or (self.protected is not None and self.min_share > 0.0)
        )

    def check_catalogue(self, n_items: int, n_categories: int | None) -> None:
        """Raise a one-line ``ValueError`` naming the field that refers outside the catalogue
        (an item ``>= n_items``, a category ``>= n_categories``, a mask of the wrong size)."""
        for name, items in (
            ("exclude", self.exclude),
            ("pins", np.fromiter(self.pins, np.int64, len(self.pins))),
            ("boosts", np.fromiter(self.boosts, np.int64, len(self.boosts))),
        ):
            if items.size and items.max() >= n_items:
                raise ValueError(
                    f"{name}: item {int(items.max())} is outside the catalogue ({n_items} items)"
                )
        if self.allowed is not None and self.allowed.shape != (n_items,):
            raise ValueError(f"allowed must have shape ({n_items},), got {self.allowed.shape}")
        if self.group_of is not None and self.group_of.shape != (n_items,):
            raise ValueError(f"group_of must have shape ({n_items},), got {self.group_of.shape}")
        needs_cats = bool(
            self._categories_used
            or self.allow_categories is not None
            or self.deny_categories
            or (self.protected is not None and self.group_of is None)
        )
        if needs_cats and n_categories is None:
            raise ValueError("constraints on categories need item categories (none were fitted)")
        if n_categories is not None:
            for name, cats in (
                ("min_count", self.min_count),
                ("max_count", self.max_count),
                ("allow_categories", self.allow_categories or ()),
                ("deny_categories", self.deny_categories),
            ):
                bad = [c for c in cats if c >= n_categories]
                if bad:
                    raise ValueError(
                        f"{name}: unknown category {bad[0]} ({n_categories} categories)"
                    )


def fairness_floor(share: float, length: int) -> np.ndarray:
    """``(length + 1,)`` int64 minimum protected counts of every prefix: ``floor(p · i)``
    (``i = 0 … length``), rounded so that ``p · i`` within 1e-9 of an integer counts it."""
    i = np.arange(length + 1, dtype=np.float64)
    return np.floor(share * i + 1e-9).astype(np.int64)


# --------------------------------------------------------------------------- checking
@dataclass(frozen=True)
class ConstraintViolation:
    """One broken rule of one returned list (the best-effort report).

    Attributes:
        request: the row of the batch.
        field: the constraint's field name (``min_count``, ``max_count``, ``pins``,
            ``exclude``, ``allow_categories``, ``deny_categories``, ``allowed``,
            ``min_share``).
        detail: one line saying what is wrong.
    """

    request: int
    field: str
    detail: str

    def __str__(self) -> str:
        return f"request {self.request}: {self.field}: {self.detail}"


def check_list(
    items: Any,
    constraints: Constraints | None,
    item_category: np.ndarray | None,
    k: int,
    request: int = 0,
) -> list[ConstraintViolation]:
    """The rules ``items`` breaks (empty: it satisfies every one).

    Args:
        items: ``(L,)`` returned item indices in order (−1 padding ignored).
        constraints: the request's rules (None: none).
        item_category: ``(n_items,)`` primary category per item (−1: none), or None.
        k: the requested list length (pins at positions ``>= len(items)`` count as missing).
        request: row number written into the violations.

    Returns:
        One :class:`ConstraintViolation` per broken rule (the first offending place).
    """
    out: list[ConstraintViolation] = []
    if constraints is None:
        return out
    c = constraints
    ids = np.asarray(items, dtype=np.int64).reshape(-1)
    ids = ids[ids >= 0]

    def bad(fieldname: str, detail: str) -> None:
        out.append(ConstraintViolation(request, fieldname, detail))

    cats = None if item_category is None else np.asarray(item_category)[ids]
    excl = set(c.exclude.tolist())
    hit = [i for i in ids.tolist() if i in excl]
    if hit:
        bad("exclude", f"item {hit[0]} is excluded")
    if c.allowed is not None:
        off = ids[~c.allowed[ids]]
        if off.size:
            bad("allowed", f"item {int(off[0])} is not allowed")
    if cats is not None:
        if c.allow_categories is not None:
            off = [int(i) for i, g in zip(ids, cats, strict=True) if g not in c.allow_categories]
            if off:
                bad("allow_categories", f"item {off[0]} has a category not allowed")
        off = [int(i) for i, g in zip(ids, cats, strict=True) if g in c.deny_categories]
        if off:
            bad("deny_categories", f"item {off[0]} has a denied category")
        counts = dict.fromkeys(c._categories_used, 0)
        for g in cats.tolist():
            if g in counts:
                counts[g] += 1
        for g, lo in c.min_count.items():
            if counts[g] < lo:
                bad("min_count", f"category {g}: {counts[g]} items, minimum {lo}")
        for g, hi in c.max_count.items():
            if counts[g] > hi:
                bad("max_count", f"category {g}: {counts[g]} items, maximum {hi}")
    elif c._categories_used:
        bad("min_count" if c.min_count else "max_count", "no item categories to count")
    full = np.asarray(items, dtype=np.int64).reshape(-1)
    for item, pos in c.pins.items():
        if pos < k and (pos >= full.size or full[pos] != item):
            bad("pins", f"item {item} is not at position {pos}")
    if c.protected is not None and c.min_share > 0.0:
        groups = c.group_of[ids] if c.group_of is not None else cats
        if groups is None:
            bad("min_share", "no groups to count")
        else:
            prot = np.cumsum(groups == c.protected)
            floor = fairness_floor(c.min_share, ids.size)[1:]
            short = np.flatnonzero(prot < floor)
            if short.size:
                i = int(short[0]) + 1
                bad(
                    "min_share",
                    f"prefix {i}: {int(prot[i - 1])} protected items, minimum {int(floor[i - 1])}",
                )
    return out


# --------------------------------------------------------------------------- resolving
class ResolvedConstraints(NamedTuple):
    """A batch's rules in the position space of its candidates (what the kernels read).

    Category codes are compacted per batch: code ``c < C`` is the ``c``-th constrained
    category; −1 an item whose category has no count rule.

    Attributes:
        keep: ``(B, N)`` bool, candidates that pass the filters (and are valid).
        boost: ``(B, N)`` float64 additive relevance boosts (0: none), or None.
        active: ``(B,)`` bool, requests whose kernel must track counts / pins / shares.
        cat: ``(B, N)`` int64 compact category code of every candidate (−1: unconstrained).
        min_c: ``(B, C)`` int64 minimum counts (0: none).
        max_c: ``(B, C)`` int64 maximum counts (``k``: none).
        pin_slot: ``(B, k)`` int64 candidate position pinned at every output slot (−1).
        prot: ``(B, N)`` bool, candidates of the protected group.
        floor: ``(B, k + 1)`` int64 minimum protected count of every prefix length.
        best_effort: ``(B,)`` bool.
        missing_pins: per request, the pinned items that are not candidates.
    """

    keep: np.ndarray
    boost: np.ndarray | None
    active: np.ndarray
    cat: np.ndarray
    min_c: np.ndarray
    max_c: np.ndarray
    pin_slot: np.ndarray
    prot: np.ndarray
    floor: np.ndarray
    best_effort: np.ndarray
    missing_pins: list


def resolve_batch(
    rules: Sequence[Constraints | None],
    ids: np.ndarray,
    k: int,
    item_category: np.ndarray | None,
    n_categories: int | None = None,
) -> ResolvedConstraints:
    """Resolve per-request rules against the candidate ids ``(B, N)`` (−1 padded).

    Checks what needs the catalogue and ``k`` (a pin position ``>= k``, the minimums
    summing above ``k``, unknown items or categories): one-line ``ValueError`` naming the
    field. Feasibility against the candidates is left to the kernels and
    :func:`check_list`. Requests sharing one `Constraints` object (a rule set broadcast
    to a batch) are resolved together: the item-level masks are built once per object.
    """
    bsz, n = ids.shape
    if len(rules) != bsz:
        raise ValueError(f"constraints has {len(rules)} entries for {bsz} requests")
    valid = ids >= 0
    safe = np.maximum(ids, 0)
    used: list[int] = sorted({g for r in rules if r is not None for g in r._categories_used})
    code = {g: i for i, g in enumerate(used)}
    ncode = len(used)
    keep = valid.copy()
    boost = None
    active = np.zeros(bsz, dtype=bool)
    cat = np.full((bsz, n), -1, dtype=np.int64)
    min_c = np.zeros((bsz, max(ncode, 1)), dtype=np.int64)
    max_c = np.full((bsz, max(ncode, 1)), k, dtype=np.int64)
    pin_slot = np.full((bsz, k), -1, dtype=np.int64)
    prot = np.zeros((bsz, n), dtype=bool)
    floor = np.zeros((bsz, k + 1), dtype=np.int64)
    best = np.zeros(bsz, dtype=bool)
    missing: list[list[int]] = [[] for _ in range(bsz)]
    if item_category is not None:
        item_category = np.asarray(item_category)
        n_items = item_category.shape[0]
        if n_categories is None:
            n_categories = int(item_category.max(initial=-1)) + 1
    else:
        n_items = max(int(ids.max(initial=-1)) + 1, 1)
    groups: dict[int, tuple[Constraints, list[int]]] = {}
    for b, r in enumerate(rules):
        if r is not None:
            groups.setdefault(id(r), (r, []))[1].append(b)
    for r, members in groups.values():
        rows = np.asarray(members, dtype=np.int64)
        if item_category is not None:
            r.check_catalogue(n_items, n_categories)
        elif r._categories_used or r.allow_categories is not None or r.deny_categories:
            raise ValueError("constraints on categories need item categories (none were fitted)")
        if sum(r.min_count.values()) > k:
            raise ValueError(
                f"min_count: the minimums sum to {sum(r.min_count.values())} > k = {k}"
            )
        for item, pos in r.pins.items():
            if pos >= k:
                raise ValueError(
                    f"pins: item {item} at position {pos} is outside the list (k = {k})"
                )
        best[rows] = r.best_effort
        sg, vg = safe[rows], valid[rows]
        if r.has_filters:  # item-level mask, once per rule object
            ok = np.ones(n_items, dtype=bool)
            ok[r.exclude[r.exclude < n_items]] = False
            if r.allowed is not None:
                if r.allowed.shape[0] < n_items:
                    raise ValueError(
                        f"allowed must cover every candidate item ({r.allowed.shape[0]} entries)"
                    )
                ok &= r.allowed[:n_items]
            if item_category is not None:
                if r.allow_categories is not None:
                    ok &= np.isin(item_category, list(r.allow_categories))
                if r.deny_categories:
                    ok &= ~np.isin(item_category, list(r.deny_categories))
            keep[rows] &= ok[sg]
        if r.boosts:
            if boost is None:
                boost = np.zeros((bsz, n))
            bi = np.zeros(n_items)
            for item, val in r.boosts.items():
                if item < n_items:
                    bi[item] = val
            boost[rows] = np.where(vg, bi[sg], 0.0)
        if not r.has_counts:
            continue
        active[rows] = True
        if r._categories_used:
            codes = np.full(n_items, -1, dtype=np.int64)
            for g in r._categories_used:
                codes[item_category == g] = code[g]
            cat[rows] = np.where(vg, codes[sg], -1)
            for g in r._categories_used:
                min_c[rows, code[g]] = r.min_count.get(g, 0)
                max_c[rows, code[g]] = min(r.max_count.get(g, k), k)
        kr = keep[rows]
        for item, pos in r.pins.items():
            hit = (ids[rows] == item) & kr
            has = hit.any(axis=1)
            pin_slot[rows[has], pos] = np.argmax(hit[has], axis=1)
            for b in rows[~has]:
                missing[int(b)].append(item)
        if r.protected is not None and r.min_share > 0.0:
            if r.group_of is not None:
                gi = r.group_of
            elif item_category is not None:
                gi = item_category
            else:
                raise ValueError("min_share: no groups (give group_of or fit item categories)")
            prot[rows] = (gi[sg] == r.protected) & vg
            floor[rows] = fairness_floor(r.min_share, k)
    return ResolvedConstraints(
        keep, boost, active, cat, min_c, max_c, pin_slot, prot, floor, best, missing
    )
