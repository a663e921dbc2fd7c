"""The readout of an online A/B experiment (or of its simulator pre-flight) from its log.

Input: an `ABLog` — the lists served to each user with the arm that served them
(impressions) and the feedback attributed to the impression that served the item — built
from the service's event log (`ab_log_from_rows` over `divrec.serve.events.read_ab_log`) or
written by the pre-flight (`divrec.simulate.ab`). Nothing here imports the service.

Attribution: a click, like, dislike or rating of item `i` by user `u` at time `t` belongs to
the latest impression of `u` served at or before `t` that holds `i` (its arm, its list);
feedback with no such impression is counted as unattributed and left out. Forced-arm
impressions (``?arm=``, debug traffic) are left out.

Unit of analysis: the user within an arm (users are assigned to arms, so users are the
independent units). Per arm:

* ``users``, ``impressions`` (lists), ``items_shown``;
* ``ctr`` = clicks / items shown, ``clicks_per_user``, ``likes_per_user`` (``like`` events
  and ratings ≥ `like_threshold`);
* ``ilad``: mean over served lists of ILAD (mean pairwise ``1 − cos``, CDM Eq. 21 /
  `divrec.metrics.ilad`) in a fixed item space given by the caller — the readout of
  `divrec report ab` uses the model directory's reference SVD space (`reference_item_vectors`
  of the training data, the same for every arm), never an arm's own embedding;
* ``coverage``: distinct items shown / catalogue, ``gini``: Gini of the exposure counts over
  the catalogue (`gini_of_counts`) — both grow or shrink with an arm's size, so compare
  arms of equal shares;
* ``between_user_diversity``: `divrec.metrics.between_user_diversity` of each user's first
  list in the arm (comparable across arms: the same point of each user's stay);
* ``miscalibration``: per user ``C_KL(p(·|u), q̃(·|u))`` (Steck 2018 Eq. 5, α = 0.01,
  `divrec.metrics.calibration`) of the category mix of everything the user was shown
  (counted with repeats) against the user's history (the model's training row), averaged
  over users with a categorised history.

Differences: each arm minus control, with a user-level bootstrap: each replicate resamples
the users of every arm independently with replacement (the arms are independent samples);
ratio metrics are ratios of resampled sums; coverage and Gini are recomputed from the
resampled exposure counts. The interval is the percentile interval widened by
`divrec.evaluation.stats.small_sample_factor` (the `(n−1)/n` and t tails of the smaller
arm). Between-user diversity gets no interval (a pairwise statistic).

Sample-ratio mismatch: Pearson's χ² of the users per arm against the shares (p < 0.001 is
flagged: the assignment or the logging is broken, and no difference should be trusted).

Sequential testing: the intervals are fixed-horizon. Looking at the readout repeatedly and
stopping at the first interval that excludes 0 raises the false-positive rate well above
α; decide the duration (or the number of users) before starting and read the result once.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats as sps

from divrec.evaluation._bootstrap import multinomial_counts, seed_state
from divrec.evaluation.stats import _interval
from divrec.metrics.calibration import category_shares, kl_miscalibration, user_distribution
from divrec.metrics.diversity import between_user_diversity, gini_of_counts

__all__ = [
    "RATIO_METRICS",
    "ABLog",
    "ab_log_from_rows",
    "readout",
    "readout_markdown",
    "write_readout",
]

#: metric → (numerator, denominator) of its per-user sums
RATIO_METRICS = {
    "ctr": ("clicks", "shown"),
    "clicks_per_user": ("clicks", "one"),
    "likes_per_user": ("likes", "one"),
    "ilad": ("ilad_sum", "ilad_lists"),
    "miscalibration": ("mc", "mc_one"),
}
SYSTEM_METRICS = ("coverage", "gini")
FEEDBACK = ("click", "like", "dislike", "rating")


@dataclass
class ABLog:
    """Served lists and attributed feedback of one experiment.

    Attributes:
        arms: arm names (arm indices below index this).
        control: the control arm's name.
        shares: `(A,)` planned traffic shares.
        user_ids: external user ids (user indices below index this).
        n_items: catalogue size.
        imp_user: `(L,)` user index of each served list.
        imp_arm: `(L,)` arm index of each served list.
        imp_time: `(L,)` serve time.
        imp_items: `(L, K)` item indices in served order, −1 padded.
        fb_imp: `(F,)` the impression each feedback event is attributed to.
        fb_type: `(F,)` event types (``click``, ``like``, ``dislike``, ``rating``).
        fb_value: `(F,)` event values (NaN: none).
        record: the experiment's definition (name, salt, …).
        n_unattributed: feedback events without a serving impression (left out).
        n_forced: forced-arm impressions (left out).
        fb_item: `(F,)` the item of each feedback event (None: not recorded).
    """

    arms: list[str]
    control: str
    shares: np.ndarray
    user_ids: list[str]
    n_items: int
    imp_user: np.ndarray
    imp_arm: np.ndarray
    imp_time: np.ndarray
    imp_items: np.ndarray
    fb_imp: np.ndarray
    fb_type: np.ndarray
    fb_value: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)
    n_unattributed: int = 0
    n_forced: int = 0
    fb_item: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.control not in self.arms:
            raise ValueError(f"control {self.control!r} is not one of the arms {self.arms}")
        self.imp_items = np.asarray(self.imp_items, dtype=np.int64).reshape(len(self.imp_user), -1)
        if self.imp_items.size and self.imp_items.max() >= self.n_items:
            raise ValueError("imp_items holds an item index outside the catalogue")


def ab_log_from_rows(
    record: dict[str, Any],
    impressions: list,
    events: list,
    item_index: dict[str, int],
) -> ABLog:
    """An `ABLog` from the rows of `divrec.serve.events.read_ab_log`, feedback attributed.

    Args:
        record: the experiment's record (``arms`` with ``name`` and ``share``, ``control``).
        impressions: ``(request_id, arm, user_id, [item ids], forced, time)`` in log order.
        events: ``(user_id, item_id, type, value, received)`` feedback in log order.
        item_index: item id → index (the catalogue of the served model).

    Raises:
        ValueError: an impression of an arm not in the record, or an item id not in the
            catalogue (one line).
    """
    arms = [a["name"] for a in record["arms"]]
    arm_pos = {a: k for k, a in enumerate(arms)}
    users: dict[str, int] = {}
    iu, ia, it, rows = [], [], [], []
    n_forced = 0
    # (user, item) → serve times and impression positions, in serve order
    served: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for _rid, arm, user, items, forced, t in impressions:
        if forced:
            n_forced += 1
            continue
        if arm not in arm_pos:
            raise ValueError(f"impression of arm {arm!r}, not an arm of {record.get('name')!r}")
        unknown = [i for i in items if i not in item_index]
        if unknown:
            raise ValueError(f"impression item {unknown[0]!r} is not in the catalogue")
        k = len(iu)
        iu.append(users.setdefault(user, len(users)))
        ia.append(arm_pos[arm])
        it.append(float(t))
        rows.append([item_index[i] for i in items])
        for i in set(items):
            times, pos = served.setdefault((user, i), ([], []))
            times.append(float(t))
            pos.append(k)
    width = max((len(r) for r in rows), default=0)
    mat = np.full((len(rows), width), -1, dtype=np.int64)
    for k, r in enumerate(rows):
        mat[k, : len(r)] = r
    fb_imp, fb_type, fb_value, fb_item = [], [], [], []
    unattributed = 0
    for user, item, typ, value, received in events:
        if typ not in FEEDBACK:
            continue
        hit = served.get((user, item))
        j = -1 if hit is None else bisect.bisect_right(hit[0], float(received)) - 1
        if j < 0:
            unattributed += 1
            continue
        fb_imp.append(hit[1][j])
        fb_item.append(item_index[item])
        fb_type.append(typ)
        fb_value.append(np.nan if value is None else float(value))
    return ABLog(
        arms=arms,
        control=record["control"],
        shares=np.array([float(a["share"]) for a in record["arms"]]),
        user_ids=list(users),
        n_items=len(item_index),
        imp_user=np.array(iu, dtype=np.int64),
        imp_arm=np.array(ia, dtype=np.int64),
        imp_time=np.array(it, dtype=np.float64),
        imp_items=mat,
        fb_imp=np.array(fb_imp, dtype=np.int64),
        fb_type=np.array(fb_type, dtype=object),
        fb_value=np.array(fb_value, dtype=np.float64),
        record=record,
        n_unattributed=unattributed,
        n_forced=n_forced,
        fb_item=np.array(fb_item, dtype=np.int64),
    )


def _list_ilad(items: np.ndarray, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per list ILAD in the unit-row space and whether it is defined (≥ 2 items)."""
    valid = items >= 0
    n = valid.sum(axis=1).astype(np.float64)
    v = unit[np.maximum(items, 0)] * valid[..., None]
    s = v.sum(axis=1)
    pair = (s * s).sum(axis=1) - (v * v).sum(axis=(1, 2))
    ok = n >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        val = np.where(ok, 1.0 - pair / np.maximum(n * (n - 1), 1.0), 0.0)
    return np.clip(val, 0.0, 2.0), ok


def _units(log: ABLog, item_vectors, item_categories, history, like_threshold: float):
    """Per (user, arm) unit sums, the unit exposure matrix and the units' first lists."""
    key = log.imp_user * len(log.arms) + log.imp_arm
    uniq, unit_of = np.unique(key, return_inverse=True)
    n_units = uniq.size
    unit_arm = uniq % len(log.arms)
    unit_user = uniq // len(log.arms)
    valid = log.imp_items >= 0
    shown = np.bincount(unit_of, weights=valid.sum(axis=1), minlength=n_units)
    sums: dict[str, np.ndarray] = {"shown": shown, "one": np.ones(n_units)}
    is_click = log.fb_type == "click"
    is_like = (log.fb_type == "like") | (
        (log.fb_type == "rating") & (np.nan_to_num(log.fb_value, nan=-np.inf) >= like_threshold)
    )
    fb_unit = unit_of[log.fb_imp] if log.fb_imp.size else np.zeros(0, dtype=np.int64)
    sums["clicks"] = np.bincount(fb_unit[is_click], minlength=n_units).astype(np.float64)
    sums["likes"] = np.bincount(fb_unit[is_like], minlength=n_units).astype(np.float64)
    if item_vectors is not None:
        vec = np.asarray(item_vectors, dtype=np.float64)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        unit = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
        val, ok = _list_ilad(log.imp_items, unit)
        sums["ilad_sum"] = np.bincount(unit_of, weights=val * ok, minlength=n_units)
        sums["ilad_lists"] = np.bincount(unit_of, weights=ok, minlength=n_units)
    r = np.repeat(unit_of, valid.sum(axis=1))
    exposure = sp.csr_matrix(
        (np.ones(r.size), (r, log.imp_items[valid])), shape=(n_units, log.n_items)
    )
    if item_categories is not None and history is not None:
        shares = category_shares(item_categories)  # p(g|i), Steck Sec. 2
        p = user_distribution(sp.csr_matrix(history)[unit_user], shares)  # Steck Eq. 1
        q = np.asarray((exposure @ shares).todense())  # Eq. 2 over everything shown
        q = np.divide(q, shown[:, None], out=np.zeros_like(q), where=shown[:, None] > 0)
        mc = kl_miscalibration(p, q, alpha=0.01)  # Eq. 5
        fin = np.isfinite(mc)
        sums["mc"] = np.where(fin, mc, 0.0)
        sums["mc_one"] = fin.astype(np.float64)
    first = np.full(n_units, -1, dtype=np.int64)
    order = np.argsort(log.imp_time, kind="stable")
    seen = np.zeros(n_units, dtype=bool)
    for k in order:  # each unit's first list by serve time
        u = unit_of[k]
        if not seen[u]:
            seen[u] = True
            first[u] = k
    return unit_arm, unit_of, sums, exposure, first


def _system(exposure_w: np.ndarray) -> dict[str, float]:
    """Coverage and Gini of `(n_items,)` (weighted) exposure counts."""
    return {
        "coverage": float(np.mean(exposure_w > 0)),
        "gini": float(gini_of_counts(exposure_w)),
    }


def readout(
    log: ABLog,
    item_vectors: np.ndarray | None = None,
    item_categories=None,
    history=None,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    bins: int = 12,
    like_threshold: float = 4.0,
    space: str = "",
) -> dict[str, Any]:
    """Per-arm metrics, differences from control with user-level bootstrap CIs, the
    sample-ratio-mismatch check and per-time-bin curves (see the module docstring).

    Args:
        log: the experiment log.
        item_vectors: `(n_items, d)` the fixed space of ILAD (None: no ILAD).
        item_categories: `(n_items, C)` multi-hot categories (miscalibration).
        history: `(len(log.user_ids), n_items)` each user's history (miscalibration;
            None: no miscalibration).
        n_bootstrap: bootstrap replicates.
        confidence: interval coverage.
        seed: bootstrap seed.
        bins: time bins of the curves.
        like_threshold: a rating at least this is a like.
        space: a description of `item_vectors`' space, copied into the output.

    Returns:
        A JSON-ready dict: ``arms`` (per-arm metrics), ``differences`` (arm → metric →
        ``diff``, ``low``, ``high``, ``relative``, ``excludes_zero``), ``srm``,
        ``over_time``, ``feedback``, ``settings`` and ``notes``.

    Raises:
        ValueError: a bad setting, or a log without impressions (one line).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) < 10:
        raise ValueError(f"n_bootstrap must be at least 10, got {n_bootstrap}")
    if log.imp_user.size == 0:
        raise ValueError("the log holds no (unforced) impression of the experiment")
    if history is not None and sp.csr_matrix(history).shape[0] != len(log.user_ids):
        raise ValueError("history must have one row per user of the log")
    unit_arm, unit_of, sums, exposure, first = _units(
        log, item_vectors, item_categories, history, like_threshold
    )
    metrics = [m for m, (num, den) in RATIO_METRICS.items() if num in sums and den in sums]
    arms = log.arms
    ctrl = arms.index(log.control)
    rng = np.random.default_rng(seed)
    out_arms: dict[str, dict[str, Any]] = {}
    reps: dict[int, dict[str, np.ndarray]] = {}
    n_users = np.bincount(unit_arm, minlength=len(arms))
    for a, name in enumerate(arms):
        rows = np.flatnonzero(unit_arm == a)
        st: dict[str, Any] = {
            "users": int(rows.size),
            "impressions": int(np.sum(log.imp_arm == a)),
            "items_shown": int(sums["shown"][rows].sum()),
            "clicks": int(sums["clicks"][rows].sum()),
            "likes": int(sums["likes"][rows].sum()),
            "share_planned": float(log.shares[a]),
        }
        for m in metrics:
            num, den = RATIO_METRICS[m]
            d = sums[den][rows].sum()
            st[m] = float(sums[num][rows].sum() / d) if d > 0 else None
        if rows.size:
            st.update(_system(np.asarray(exposure[rows].sum(axis=0)).ravel()))
            lists = log.imp_items[first[rows]]
            st["between_user_diversity"] = _nan_none(
                between_user_diversity(lists, log.n_items, max_pairs=20_000, seed=seed)
            )
        out_arms[name] = st
        reps[a] = _replicates(rows, sums, exposure, metrics, n_bootstrap, rng)
    total = n_users.sum()
    for a, name in enumerate(arms):
        out_arms[name]["share_observed"] = float(n_users[a] / total) if total else None
    differences: dict[str, dict[str, Any]] = {}
    for a, name in enumerate(arms):
        if a == ctrl:
            continue
        n_small = int(min(n_users[a], n_users[ctrl]))
        diffs = {}
        for m in [*metrics, *SYSTEM_METRICS]:
            pa, pc = out_arms[name].get(m), out_arms[log.control].get(m)
            if pa is None or pc is None or m not in reps[a] or m not in reps[ctrl]:
                continue
            d = pa - pc
            lo, hi = _interval(reps[a][m] - reps[ctrl][m], d, confidence, max(n_small, 2))
            diffs[m] = {
                "diff": d,
                "low": lo,
                "high": hi,
                "relative": d / pc if pc else None,
                "excludes_zero": bool(lo > 0 or hi < 0),
            }
        bud_a = out_arms[name].get("between_user_diversity")
        bud_c = out_arms[log.control].get("between_user_diversity")
        if bud_a is not None and bud_c is not None:
            diffs["between_user_diversity"] = {"diff": bud_a - bud_c, "low": None, "high": None}
        differences[name] = diffs
    return {
        "experiment": log.record,
        "arms": out_arms,
        "differences": differences,
        "srm": srm_check(n_users, log.shares),
        "over_time": _over_time(log, unit_of, sums, item_vectors, bins),
        "feedback": {
            "attributed": int(log.fb_imp.size),
            "unattributed": int(log.n_unattributed),
            "forced_impressions": int(log.n_forced),
        },
        "settings": {
            "n_bootstrap": int(n_bootstrap),
            "confidence": confidence,
            "seed": seed,
            "ilad_space": space or ("given item vectors" if item_vectors is not None else None),
            "miscalibration": "Steck 2018 Eq. 5, alpha = 0.01, history = the model's training "
            "row, q = category mix of everything shown"
            if "miscalibration" in metrics
            else None,
            "like_threshold": like_threshold,
        },
        "notes": [
            "Fixed-horizon intervals: reading the result repeatedly and stopping at the first "
            "interval that excludes 0 inflates the false-positive rate; fix the duration first.",
            "Coverage and Gini depend on an arm's size: compare arms of equal shares.",
        ],
    }


def _nan_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def srm_check(n_users: np.ndarray, shares: np.ndarray, threshold: float = 1e-3) -> dict:
    """Pearson's χ² of users per arm against the planned shares (arms of share 0 must have
    no user: any is a mismatch)."""
    n = np.asarray(n_users, dtype=np.float64)
    total = n.sum()
    pos = shares > 0
    expected = total * shares
    chi2 = float((((n - expected) ** 2)[pos] / expected[pos]).sum()) if total else 0.0
    dof = int(pos.sum() - 1)
    p = float(sps.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    if np.any(n[~pos] > 0):
        p = 0.0
    return {
        "users": [int(x) for x in n],
        "expected": [float(x) for x in expected],
        "chi2": chi2,
        "dof": dof,
        "p_value": p,
        "mismatch": bool(p < threshold),
        "threshold": threshold,
    }


def _replicates(rows, sums, exposure, metrics, n_bootstrap, rng) -> dict[str, np.ndarray]:
    """`(n_bootstrap,)` replicates of every metric of one arm (users resampled)."""
    out: dict[str, np.ndarray] = {}
    if rows.size == 0:
        return out
    w = np.empty((n_bootstrap, rows.size))
    multinomial_counts(w, seed_state(rng))
    for m in metrics:
        num, den = RATIO_METRICS[m]
        nn, dd = w @ sums[num][rows], w @ sums[den][rows]
        out[m] = np.divide(nn, dd, out=np.full_like(nn, np.nan), where=dd > 0)
    ew = np.asarray(exposure[rows].T @ w.T).T  # (B, n_items) resampled exposure counts
    out["coverage"] = np.mean(ew > 0, axis=1)
    out["gini"] = np.array([gini_of_counts(row) for row in ew])
    return out


def _over_time(log: ABLog, unit_of, sums, item_vectors, bins: int) -> dict[str, Any]:
    """CTR, mean list ILAD and cumulative users per arm in equal time bins."""
    t = log.imp_time
    lo, hi = float(t.min()), float(t.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    shown = (log.imp_items >= 0).sum(axis=1)
    clicks = np.zeros(t.size)
    np.add.at(clicks, log.fb_imp[log.fb_type == "click"], 1.0)
    ilad_v = ok = None
    if item_vectors is not None:
        vec = np.asarray(item_vectors, dtype=np.float64)
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        ilad_v, ok = _list_ilad(
            log.imp_items, np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
        )
    out: dict[str, Any] = {"edges": [float(e - lo) for e in edges], "start": lo}
    for a, name in enumerate(log.arms):
        m = log.imp_arm == a
        s = np.bincount(b[m], weights=shown[m], minlength=bins)
        c = np.bincount(b[m], weights=clicks[m], minlength=bins)
        rate = c / np.maximum(s, 1)
        cur: dict[str, list] = {
            "ctr": [float(x) if y > 0 else None for x, y in zip(rate, s, strict=True)],
            "impressions": np.bincount(b[m], minlength=bins).astype(int).tolist(),
        }
        if ilad_v is not None:
            n_ok = np.bincount(b[m], weights=ok[m], minlength=bins)
            il = np.bincount(b[m], weights=(ilad_v * ok)[m], minlength=bins)
            cur["ilad"] = [float(x / y) if y > 0 else None for x, y in zip(il, n_ok, strict=True)]
        users_seen: set[int] = set()
        cum = []
        for k in range(bins):
            users_seen.update(log.imp_user[m & (b == k)].tolist())
            cum.append(len(users_seen))
        cur["users"] = cum
        out[name] = cur
    return out


# ---------------------------------------------------------------------------- outputs
_LABELS = {
    "ctr": "CTR",
    "clicks_per_user": "clicks / user",
    "likes_per_user": "likes / user",
    "ilad": "ILAD",
    "coverage": "coverage",
    "gini": "Gini of exposure",
    "between_user_diversity": "between-user diversity",
    "miscalibration": "miscalibration (KL)",
}


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}"


def readout_markdown(res: dict[str, Any], title: str = "A/B readout") -> str:
    """The readout as Markdown (per-arm table, differences with CIs, SRM, notes)."""
    arms = list(res["arms"])
    exp = res.get("experiment", {})
    lines = [f"# {title}: {exp.get('name', '')}", ""]
    lines.append(
        f"Salt `{exp.get('salt')}`, control `{exp.get('control')}`; "
        f"{res['settings']['n_bootstrap']} user-level bootstrap replicates, "
        f"{res['settings']['confidence']:.0%} intervals. ILAD space: "
        f"{res['settings']['ilad_space']}."
    )
    lines += ["", "| metric | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    rows = ["users", "share_planned", "share_observed", "impressions", "items_shown", "clicks"]
    rows += [m for m in _LABELS if any(m in res["arms"][a] for a in arms)]
    for r in rows:
        cells = [_fmt(res["arms"][a].get(r)) for a in arms]
        lines.append(f"| {_LABELS.get(r, r)} | " + " | ".join(cells) + " |")
    ctrl = exp.get("control")
    for arm, diffs in res["differences"].items():
        lines += ["", f"## {arm} − {ctrl}", "", "| metric | difference | CI | relative |"]
        lines.append("|---|---|---|---|")
        for m, d in diffs.items():
            ci = "–" if d.get("low") is None else f"[{_fmt(d['low'])}, {_fmt(d['high'])}]"
            star = " *" if d.get("excludes_zero") else ""
            rel = d.get("relative")
            rel_s = "–" if rel is None else f"{rel:+.1%}"
            lines.append(f"| {_LABELS.get(m, m)} | {_fmt(d['diff'])}{star} | {ci} | {rel_s} |")
    srm = res["srm"]
    lines += [
        "",
        f"Sample-ratio check: users {srm['users']} vs expected "
        f"{[round(x, 1) for x in srm['expected']]}, χ² = {srm['chi2']:.3g} "
        f"(dof {srm['dof']}), p = {srm['p_value']:.3g}"
        + (" — **MISMATCH: do not trust the differences**" if srm["mismatch"] else " (ok)."),
        "",
        f"Feedback: {res['feedback']['attributed']:,} events attributed to a served list, "
        f"{res['feedback']['unattributed']:,} without one; "
        f"{res['feedback']['forced_impressions']:,} forced-arm lists left out.",
        "",
        "\\* the interval excludes 0.",
        "",
    ]
    if res["settings"].get("miscalibration"):
        lines.append(f"Miscalibration: {res['settings']['miscalibration']}.")
    lines += [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def write_readout(res: dict[str, Any], out: str | Path, title: str = "A/B readout") -> list[Path]:
    """Writes ``readout.md``, ``readout.json`` and ``over_time.png`` into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "readout.md"
    md.write_text(readout_markdown(res, title))
    js = out / "readout.json"
    js.write_text(json.dumps(res, indent=1, default=float))
    ot = res["over_time"]
    panels = [k for k in ("ctr", "ilad", "users") if k in ot[next(iter(res["arms"]))]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    axes = np.atleast_1d(axes)
    mid = [(a + b) / 2 for a, b in zip(ot["edges"][:-1], ot["edges"][1:], strict=True)]
    for ax, key in zip(axes, panels, strict=True):
        for arm in res["arms"]:
            ys = [np.nan if y is None else y for y in ot[arm][key]]
            ax.plot(mid, ys, marker="o", ms=3, label=arm)
        ax.set_title({"users": "users so far"}.get(key, _LABELS.get(key, key)))
        ax.set_xlabel(res["settings"].get("time_axis", "seconds since start"))
    axes[0].legend()
    fig.tight_layout()
    png = out / "over_time.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return [md, js, png]
