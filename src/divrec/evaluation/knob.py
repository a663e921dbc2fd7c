"""Choosing the diversity knob under an accuracy budget (`divrec tune`).

Every re-ranker with a knob maps `Query.diversity` (0 = relevance order, 1 = its most diverse
setting) onto its own trade-off parameter, so one fitted pipeline evaluates a whole grid of
knob values at the cost of the re-ranking alone: the candidates are retrieved (and ranked)
once per user and re-ranked once per knob value, which gives exactly the lists
`Pipeline.__call__` gives for that knob.

Protocol (`tune_knob`):

1. **Validation** is carved from the training split only, by the same protocol applied to
   `split.train` ("random": a random `validation_fraction` of its rows; "temporal": its
   latest `validation_fraction`; "leave-last-one": each user's latest row). The pipeline is
   fitted on the validation-train part and every knob `d` of the grid is evaluated on the
   validation users (those with a validation row; a seeded sample of `max_users` of them when
   given), full ranking with training items excluded.
2. **Choice**: the relative accuracy loss of `d` is `1 − acc(d) / acc(0)` (mean accuracy over
   the validation users; `acc(0)` is relevance-only). Among the knobs with loss ≤ `max_loss`
   (`d = 0` always is), the one with the highest mean diversity is chosen; ties go to the
   smaller knob.
3. **Test**: the pipeline is refitted on the whole training split, and the test users get the
   lists at the chosen knob and at 0. The report holds the accuracy and diversity at both,
   the relative loss with a paired percentile-bootstrap CI over users (one resample of users
   shared by both knobs), and two verdicts: the point estimate within the cap, and the CI's
   upper bound within the cap.

Per-segment knob (`segments="activity:S"`): users are split into `S` quantile groups of their
training-history length (on the log the pipeline is fitted on: cut points at the `1/S, …`
quantiles of the history length of the users with training rows; a user with a history
length equal to a cut point falls in the lower group), and one knob per segment is chosen on
validation under the same *global* cap: the combined assignment's global accuracy loss
`1 − Σ_s Σ_{u∈s} acc_u(d_s) / Σ_u acc_u(0)` must be ≤ `max_loss`, and the global mean
diversity is maximized. With `|grid|^S ≤ 200,000` every assignment is enumerated (exact);
above that a coordinate search starts from the global choice (one segment's knob changed at a
time, the best feasible improvement taken, until none is left). Ties go to the smallest sum of
knobs, then the lexicographically smallest assignment. The global choice (every segment at
the global knob) is feasible, so the per-segment optimum is at least as diverse on
validation. The test report evaluates the per-segment assignment too (segments recomputed on
the full training split).

Metrics are written `name@k`: accuracy among `ACCURACY` (hr, recall, precision, ndcg, mrr,
map) and diversity among `DIVERSITY` (ilad, category_ild, user_category_coverage, novelty).
ILAD is measured in the reference SVD space of the training log the lists come from
(`divrec.metrics.reference_item_vectors`, seeded), as the harness does.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from divrec import metrics as M
from divrec.data.interactions import DataError, Interactions
from divrec.data.query import Candidates, Query
from divrec.evaluation._bootstrap import bootstrap_means
from divrec.evaluation.harness import ACCURACY, DIVERSITY
from divrec.pipeline.spec import PipelineSpec
from divrec.splitting import Split
from divrec.splitting.protocols import leave_last_one, random_holdout, temporal_split

__all__ = [
    "DEFAULT_GRID",
    "KnobChoice",
    "RULES",
    "TUNE_PROTOCOLS",
    "cap_verdict",
    "check_tune_inputs",
    "choice_markdown",
    "choose_knob",
    "choose_segment_knobs",
    "format_ci",
    "knob_params",
    "parse_metric",
    "parse_segments",
    "plot_choice",
    "segment_users",
    "tune_knob",
    "validation_split",
]

#: the default knob grid: 0, 0.05, …, 1.0
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 10) for i in range(21))
#: split protocols `tune_knob` can carve a validation split with (full-ranking protocols)
TUNE_PROTOCOLS = ("random", "temporal", "leave-last-one")
#: what is held to the cap on validation: the point loss, or its bootstrap CI's upper bound
RULES = ("point", "upper")
#: at most this many per-segment assignments are enumerated exhaustively
_MAX_ENUMERATION = 200_000
_CATEGORY_METRICS = ("category_ild", "user_category_coverage")

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- inputs
def parse_metric(text: str, kind: str) -> tuple[str, int]:
    """`"ndcg@10"` → `("ndcg", 10)`.

    Args:
        text: `name@k`.
        kind: "accuracy" (names in `ACCURACY`) or "diversity" (names in `DIVERSITY`).

    Raises:
        ValueError: not `name@k`, an unknown name, or `k` not a positive integer.
    """
    known = ACCURACY if kind == "accuracy" else DIVERSITY
    name, sep, k = str(text).partition("@")
    if not sep or not k.strip().isdigit():
        raise ValueError(
            f"{kind} metric {text!r} must be name@k, e.g. {known[0]}@10 (known: {', '.join(known)})"
        )
    if name not in known:
        raise ValueError(f"unknown {kind} metric {name!r}; known: {', '.join(known)}")
    kk = int(k)
    if kk <= 0:
        raise ValueError(f"{kind} metric {text!r}: k must be a positive integer")
    return name, kk


def parse_segments(text: str | None) -> tuple[str, int] | None:
    """`"activity:3"` → `("activity", 3)`; None → None.

    Raises:
        ValueError: another form, another segmentation than "activity", or a count outside
            [2, 10].
    """
    if text is None:
        return None
    by, sep, n = str(text).partition(":")
    if by != "activity" or not sep or not n.strip().isdigit():
        raise ValueError(
            f"segments {text!r} must be activity:S (S quantile groups), e.g. activity:3"
        )
    count = int(n)
    if not 2 <= count <= 10:
        raise ValueError(f"segments {text!r}: the number of groups must be in [2, 10]")
    return by, count


def _check_grid(grid: Sequence[float] | None) -> tuple[float, ...]:
    values = DEFAULT_GRID if grid is None else tuple(float(g) for g in grid)
    if not values:
        raise ValueError("the knob grid is empty")
    if not all(math.isfinite(g) and 0.0 <= g <= 1.0 for g in values):
        raise ValueError(f"knob grid values must be in [0, 1], got {list(values)}")
    return tuple(sorted(set(values) | {0.0}))


def knob_params(spec: PipelineSpec, diversity: float, seed: int = 0) -> dict[str, float]:
    """The re-ranker's own parameter(s) equivalent to the knob value `diversity`.

    E.g. DPP `{"theta": 1 − d}`, MMR `{"lambda_": 1 − d}`, SSD `{"gamma": d / (1 − d)}`.

    Raises:
        ValueError: the spec has no re-ranker, or one without a diversity knob.
    """
    if spec.reranker is None:
        raise ValueError("the pipeline has no re-ranker, so it has no diversity knob to tune")
    reranker = spec.reranker.build("reranker", seed)
    params = reranker.diversity_params(np.array([float(diversity)]))
    return {name: float(np.asarray(value).reshape(-1)[0]) for name, value in params.items()}


def check_tune_inputs(
    spec: PipelineSpec,
    *,
    diversity_metric: str = "ilad@10",
    accuracy_metric: str = "ndcg@10",
    max_loss: float = 0.05,
    grid: Sequence[float] | None = None,
    segments: str | None = None,
    validation_fraction: float = 0.2,
    protocol: str = "random",
    max_users: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    rule: str = "upper",
    split: Split | None = None,
) -> dict[str, Any]:
    """Validates everything `tune_knob` takes, before any data is split or model fitted.

    Returns:
        The parsed inputs: `accuracy` and `diversity` `(name, k)`, `grid`, `segments`.

    Raises:
        ValueError: an unknown metric, `max_loss` outside (0, 1), a bad grid, segments,
            fraction, protocol, user count or bootstrap setting, a pipeline without a
            re-ranker or with one that has no diversity knob (`"... has no diversity knob"`),
            a category metric on data without categories, or an empty split.
    """
    acc = parse_metric(accuracy_metric, "accuracy")
    div = parse_metric(diversity_metric, "diversity")
    if isinstance(max_loss, bool) or not (0.0 < float(max_loss) < 1.0):
        raise ValueError(f"max_loss must be in (0, 1), got {max_loss}")
    values = _check_grid(grid)
    seg = parse_segments(segments)
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if protocol not in TUNE_PROTOCOLS:
        raise ValueError(
            f"tuning needs a full-ranking protocol, one of {', '.join(TUNE_PROTOCOLS)}; "
            f"got {protocol!r}"
        )
    if max_users is not None and (isinstance(max_users, bool) or int(max_users) <= 0):
        raise ValueError(f"max_users must be a positive number of users, got {max_users}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if rule == "upper" and n_bootstrap <= 0:
        raise ValueError("the 'upper' rule needs bootstrap resamples (n_bootstrap > 0)")
    spec.check()
    knob_params(spec, 0.5)  # raises "... has no diversity knob"
    if split is not None:
        if split.train.nnz == 0:
            raise DataError("the split has no training rows")
        if split.test.nnz == 0:
            raise DataError("the split has no test rows")
        if div[0] in _CATEGORY_METRICS and split.train.item_categories is None:
            raise ValueError(f"diversity metric {div[0]} needs item categories; the data has none")
    return {"accuracy": acc, "diversity": div, "grid": values, "segments": seg}


def validation_split(
    train: Interactions, protocol: str = "random", fraction: float = 0.2, seed: int = 0
) -> Split:
    """The validation split carved from a training log by the test split's own protocol.

    Args:
        train: the training log of the test split.
        protocol: "random" (a random `fraction` of the rows), "temporal" (the latest
            `fraction`) or "leave-last-one" (each user's latest row, users with ≥ 3 rows).
        fraction: validation share for "random" and "temporal".
        seed: seed of the random hold-out.

    Raises:
        ValueError: another protocol.
        DataError: the carved split has no training or no validation rows.
    """
    if protocol == "random":
        val = random_holdout(train, test_fraction=fraction, seed=seed)
    elif protocol == "temporal":
        val = temporal_split(train, test_fraction=fraction)
    elif protocol == "leave-last-one":
        val = leave_last_one(train, validation=False)
    else:
        raise ValueError(
            f"tuning needs a full-ranking protocol, one of {', '.join(TUNE_PROTOCOLS)}; "
            f"got {protocol!r}"
        )
    if val.test.nnz == 0 or val.train.nnz == 0:
        raise DataError(
            f"{train.name}: the validation split carved from the training rows is empty "
            "(too few interactions)"
        )
    return val


# --------------------------------------------------------------------------- segments
def segment_users(train: Interactions, n_segments: int) -> tuple[np.ndarray, list[float]]:
    """Activity segments: quantile groups of each user's training-history length.

    Args:
        train: the training log.
        n_segments: number of groups S.

    Returns:
        `(segment (n_users,) int64 in [0, S), cut points (S − 1 history lengths))`; a user
        whose length equals a cut point falls in the lower group.
    """
    counts = train.user_counts().astype(np.float64)
    active = counts[counts > 0]
    if active.size == 0:
        raise DataError("no user has training rows to segment by activity")
    qs = np.arange(1, n_segments) / n_segments
    edges = np.quantile(active, qs)
    seg = np.searchsorted(edges, counts, side="left").astype(np.int64)
    return seg, [float(e) for e in edges]


# --------------------------------------------------------------------------- lists
class _KnobLists:
    """The lists of one fitted pipeline for a set of users at any knob values.

    The candidates (retrieval, then the ranker) are computed once; each knob value costs
    one re-ranking, with the same stage calls as `Pipeline.__call__`.
    """

    def __init__(self, pipe, users: np.ndarray, k: int, batch_size: int = 1024) -> None:
        self.pipe, self.users, self.k = pipe, users, k
        n = max(pipe.n_candidates, k)
        self.slices = [
            slice(s, min(s + batch_size, users.size)) for s in range(0, users.size, batch_size)
        ]
        self.cands: list[Candidates] = []
        for sl in self.slices:
            query = Query(users=users[sl])
            cand = pipe.retriever(query, None, n)
            if pipe.ranker is not None:
                cand = pipe.ranker(query, cand, None)
            self.cands.append(cand)

    def lists(self, diversity: np.ndarray) -> np.ndarray:
        """`(U, k)` lists at per-user knob values `diversity` `(U,)`."""
        out = np.full((self.users.size, self.k), -1, dtype=np.int64)
        for sl, cand in zip(self.slices, self.cands, strict=True):
            query = Query(users=self.users[sl], diversity=diversity[sl])
            got = self.pipe.reranker(query, cand, self.k).head(self.k).ids
            out[sl, : got.shape[1]] = got
        return out


class _Scorer:
    """Per-user accuracy and diversity of lists, for one training log and its eval users."""

    def __init__(self, train: Interactions, relevant, users, acc, div, seed: int) -> None:
        self.users = users
        self.acc_name, self.acc_k = acc
        self.div_name, self.div_k = div
        self.relevant = relevant[users]
        self.n_rel = np.diff(self.relevant.indptr)
        self.train = train
        self.vectors = None
        if self.div_name == "ilad":
            self.vectors = M.reference_item_vectors(train, seed=seed)
        self.popularity = train.item_popularity() if self.div_name == "novelty" else None

    def accuracy(self, recs: np.ndarray) -> np.ndarray:
        k = self.acc_k
        hits = M.hits_matrix(recs[:, :k], self.relevant)
        name = self.acc_name
        if name == "hr":
            return M.hit_rate_at_k(hits, k)
        if name == "precision":
            return M.precision_at_k(hits, k)
        if name == "mrr":
            return M.mrr_at_k(hits, k)
        fn = {"recall": M.recall_at_k, "ndcg": M.ndcg_at_k, "map": M.map_at_k}[name]
        return fn(hits, self.n_rel, k)

    def diversity(self, recs: np.ndarray) -> np.ndarray:
        r = recs[:, : self.div_k]
        cats = self.train.item_categories
        if self.div_name == "ilad":
            return M.ilad(r, self.vectors)
        if self.div_name == "category_ild":
            return M.category_ild(r, cats)
        if self.div_name == "user_category_coverage":
            return M.user_category_coverage(r, cats)
        return M.novelty(r, self.popularity, self.train.n_users)


def _eval_users(log: Interactions, max_users: int | None, seed: int):
    relevant = log.to_csr(binary=True)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if max_users is not None and users.size > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    if users.size == 0:
        raise DataError("no user has a held-out row to evaluate")
    return relevant, users


# --------------------------------------------------------------------------- choices
def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    cnt = np.sum(np.isfinite(x), axis=axis)
    tot = np.nansum(x, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def choose_knob(
    grid: Sequence[float],
    accuracy: Sequence[float],
    diversity: Sequence[float],
    max_loss: float,
    bound: Sequence[float] | None = None,
) -> tuple[int, np.ndarray]:
    """The max-diversity knob whose relative accuracy loss is within the cap.

    Args:
        grid: knob values, `grid[0] == 0` (relevance only), increasing.
        accuracy: mean accuracy at each knob.
        diversity: mean diversity at each knob.
        max_loss: the cap on `1 − accuracy[i] / accuracy[0]`.
        bound: what is held to the cap instead of the point loss (the "upper" rule: the
            bootstrap CI's upper bound of each knob's loss), or None.

    Returns:
        `(index of the chosen knob, relative losses (G,))`; ties in diversity go to the
        smaller knob; knob 0 is always feasible.

    Raises:
        ValueError: the relevance-only accuracy is not positive (no relative loss).
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    div = np.asarray(diversity, dtype=np.float64)
    if grid[0] != 0.0:
        raise ValueError("the knob grid must start at 0 (relevance only)")
    if not acc[0] > 0:
        raise ValueError(
            f"the relevance-only accuracy is {acc[0]:g}: the relative loss is undefined "
            "(too little data, or a model that finds nothing)"
        )
    loss = 1.0 - acc / acc[0]
    held = loss if bound is None else np.asarray(bound, dtype=np.float64)
    feasible = held <= max_loss
    feasible[0] = True
    best = 0
    for i in range(1, len(grid)):
        if feasible[i] and div[i] > div[best]:  # strict: ties keep the smaller knob
            best = i
    return best, loss


def choose_segment_knobs(
    seg: np.ndarray,
    n_segments: int,
    acc: np.ndarray,
    div: np.ndarray,
    max_loss: float,
    start: int = 0,
    reps: np.ndarray | None = None,
    confidence: float = 0.95,
) -> tuple[tuple[int, ...], dict[str, Any]]:
    """One knob per segment, maximizing global mean diversity under the global loss cap.

    Args:
        seg: `(U,)` segment of each evaluated user.
        n_segments: S.
        acc: `(U, G)` per-user accuracy at each knob (column 0: knob 0).
        div: `(U, G)` per-user diversity (NaN: undefined, left out of means).
        max_loss: the global cap on `1 − Σ acc_u(d_seg(u)) / Σ acc_u(0)`.
        start: the global choice's index (the coordinate search starts there).
        reps: `(S, G, B)` bootstrap replicates of each segment's accuracy sum at each knob
            (one user resample per replicate, shared by all): the "upper" rule holds the
            upper bound of the loss's percentile CI to the cap instead of the point loss.
        confidence: the CI level of the "upper" rule.

    Returns:
        `(knob index per segment, {"method": "exhaustive" | "coordinate", "accuracy",
        "diversity", "relative_loss", "relative_loss_ci_high"})`.
    """
    u, g = acc.shape
    acc_sum = np.zeros((n_segments, g))
    div_sum = np.zeros((n_segments, g))
    div_cnt = np.zeros((n_segments, g))
    fin = np.isfinite(div)
    for s in range(n_segments):
        rows = seg == s
        acc_sum[s] = acc[rows].sum(axis=0)
        div_sum[s] = np.where(fin[rows], div[rows], 0.0).sum(axis=0)
        div_cnt[s] = fin[rows].sum(axis=0)
    acc0 = acc_sum[:, 0].sum()
    if not acc0 > 0:
        raise ValueError("the relevance-only accuracy is 0: the relative loss is undefined")

    def value(assign: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # assign: (C, S) knob indices → (accuracy, diversity, loss) of each assignment
        idx = np.arange(n_segments)
        a = acc_sum[idx, assign].sum(axis=1) / u
        cnt = div_cnt[idx, assign].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(cnt > 0, div_sum[idx, assign].sum(axis=1) / np.maximum(cnt, 1), -np.inf)
        return a, d, 1.0 - a * u / acc0

    def upper(assign: np.ndarray) -> np.ndarray:
        # the percentile-CI upper bound of each assignment's loss over the replicates
        assert reps is not None
        idx = np.arange(n_segments)
        base = reps[:, 0, :].sum(axis=0)
        out = np.empty(assign.shape[0])
        for start_row in range(0, assign.shape[0], 2048):
            part = assign[start_row : start_row + 2048]
            rep = reps[idx, part].sum(axis=1)  # (C, B)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start_row : start_row + 2048] = np.quantile(
                    1.0 - rep / base, 1 - (1 - confidence) / 2, axis=1
                )
        return out

    def pick(assign: np.ndarray) -> int:
        _, d, loss = value(assign)
        ok = (loss if reps is None else upper(assign)) <= max_loss
        ok |= (assign == 0).all(axis=1)
        d = np.where(ok, d, -np.inf)
        best = d.max()
        tied = np.flatnonzero(d == best)
        sums = assign[tied].sum(axis=1)
        tied = tied[sums == sums.min()]
        return int(tied[0])  # rows are in lexicographic order

    if g**n_segments <= _MAX_ENUMERATION:
        method = "exhaustive"
        assign = np.array(list(itertools.product(range(g), repeat=n_segments)), dtype=np.int64)
        current = assign[pick(assign)]
    else:
        method = "coordinate"
        current = np.full(n_segments, start, dtype=np.int64)
        for _ in range(100):
            moves = [current.copy()]
            for s in range(n_segments):
                for j in range(g):
                    if j != current[s]:
                        m = current.copy()
                        m[s] = j
                        moves.append(m)
            arr = np.array(sorted(moves, key=tuple), dtype=np.int64)
            nxt = arr[pick(arr)]
            if np.array_equal(nxt, current):
                break
            current = nxt
    a, d, loss = value(current[None, :])
    info = {
        "method": method,
        "accuracy": float(a[0]),
        "diversity": float(d[0]),
        "relative_loss": float(loss[0]),
        "relative_loss_ci_high": None if reps is None else float(upper(current[None, :])[0]),
    }
    return tuple(int(x) for x in current), info


# --------------------------------------------------------------------------- test report
def _ci(reps: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    if reps.size == 0:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _compare(
    acc_d: np.ndarray,
    acc_0: np.ndarray,
    div_d: np.ndarray,
    div_0: np.ndarray,
    max_loss: float,
    n_bootstrap: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Accuracy and diversity at the chosen knob(s) and at 0, relative loss with a paired
    bootstrap CI over users (one resample shared by every quantity)."""
    a_d, a_0 = float(np.mean(acc_d)), float(np.mean(acc_0))
    d_d, d_0 = float(_nanmean(div_d)), float(_nanmean(div_0))
    loss = 1.0 - a_d / a_0 if a_0 > 0 else float("nan")
    out: dict[str, Any] = {
        "users": int(acc_d.size),
        "accuracy": {"chosen": {"mean": a_d}, "relevance": {"mean": a_0}},
        "diversity": {"chosen": {"mean": d_d}, "relevance": {"mean": d_0}},
        "relative_loss": {"mean": loss, "ci_low": None, "ci_high": None},
        "diversity_gain": {"mean": d_d / d_0 - 1.0 if d_0 > 0 else None},
        "confidence": confidence,
        "n_bootstrap": n_bootstrap,
    }
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        # NaN diversity (a list under 2 items) counts as 0 in the resampled means; the point
        # estimates above leave such users out (they are rare: a user with < 2 candidates)
        vals = np.vstack([acc_d, acc_0, np.nan_to_num(div_d), np.nan_to_num(div_0)])
        reps = bootstrap_means(vals, n_bootstrap, rng)
        for row, (group, which) in enumerate(
            [("accuracy", "chosen"), ("accuracy", "relevance"),
             ("diversity", "chosen"), ("diversity", "relevance")]
        ):  # fmt: skip
            lo, hi = _ci(reps[row], confidence)
            out[group][which].update(ci_low=lo, ci_high=hi)
        ok = reps[1] > 0
        lo, hi = _ci(1.0 - reps[0][ok] / reps[1][ok], confidence)
        out["relative_loss"].update(ci_low=lo, ci_high=hi)
        ok = reps[3] > 0
        lo, hi = _ci(reps[2][ok] / reps[3][ok] - 1.0, confidence)
        out["diversity_gain"].update(ci_low=lo, ci_high=hi)
    hi = out["relative_loss"]["ci_high"]
    out["within_cap"] = bool(loss <= max_loss)
    out["ci_upper_within_cap"] = None if hi is None else bool(hi <= max_loss)
    return out


# --------------------------------------------------------------------------- result
@dataclass
class KnobChoice:
    """What `tune_knob` chose and how the choice does on test.

    Attributes:
        knob: the chosen global knob value `d`.
        params: the re-ranker parameter(s) equivalent to `knob` (e.g. `{"theta": 1 − d}`).
        spec: the pipeline tuned (the re-ranker with its configured parameters).
        accuracy_metric: e.g. "ndcg@10".
        diversity_metric: e.g. "ilad@10".
        max_loss: the cap on the relative accuracy loss.
        grid: the knob values evaluated on validation.
        validation: one dict per grid point: `knob`, `accuracy`, `diversity`,
            `relative_loss`, `feasible`, `chosen`.
        validation_info: the carved split and the users evaluated.
        test: the test report at `knob` against 0 (see the module docstring).
        segments: the per-segment choice and its test report, or None.
        seed: the seed of the split carving, the stages, the ILAD space and the bootstrap.
        timings: seconds per phase.
        info: anything else (dataset name, fingerprint, the test split), set by the caller.
    """

    knob: float
    params: dict[str, float]
    spec: PipelineSpec
    accuracy_metric: str
    diversity_metric: str
    max_loss: float
    grid: tuple[float, ...]
    validation: list[dict[str, Any]]
    validation_info: dict[str, Any]
    test: dict[str, Any]
    segments: dict[str, Any] | None = None
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def tuned_spec(self) -> PipelineSpec:
        """The pipeline with the re-ranker's parameter set to the chosen knob's equivalent."""
        from divrec.params import to_json_value
        from divrec.pipeline.spec import StageSpec

        spec = self.spec
        for role, stage in self.spec.stages().items():
            # the given parameters as typed values (CLI flags arrive as strings)
            given = dict(stage.params)
            if role == "reranker":
                given.update(self.params)
            built = StageSpec(stage.name, given).build(role, self.seed).get_params()
            typed = {k: to_json_value(built[k]) if k in built else v for k, v in given.items()}
            spec = spec.with_stage(role, StageSpec(stage.name, typed))
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every validation point, the choice, the test report, the spec."""
        from divrec.params import to_json_value

        return {
            "knob": self.knob,
            "reranker_params": self.params,
            "accuracy_metric": self.accuracy_metric,
            "diversity_metric": self.diversity_metric,
            "max_loss": self.max_loss,
            "grid": list(self.grid),
            "validation": self.validation,
            "validation_info": self.validation_info,
            "test": self.test,
            "segments": self.segments,
            "pipeline": to_json_value(self.tuned_spec().resolved(self.seed).to_dict()),
            "seed": self.seed,
            "timings": self.timings,
            **self.info,
        }

    def train_config(
        self,
        dataset: str,
        *,
        columns: dict[str, str] | None = None,
        min_rating: float | None = None,
    ) -> str:
        """A `divrec train` config (TOML) of the tuned pipeline on `dataset`.

        The service takes the knob per request (`diversity=`, default `divrec serve
        --default-diversity`); the re-ranker's parameter is set to the knob's equivalent so
        that the config describes the tuned pipeline on its own too.
        """
        from divrec.params import to_json_value

        spec = self.tuned_spec()
        lines = [
            f"# written by divrec tune: {self.diversity_metric} maximized with at most "
            f"{self.max_loss:g} relative {self.accuracy_metric} loss (validation)",
            f"# chosen knob d = {self.knob:g}; serve it with "
            f"`divrec serve --default-diversity {self.knob:g}` (or diversity= per request)",
        ]
        if self.segments is not None:
            knobs = ", ".join(f"{k:g}" for k in self.segments["knobs"])
            lines.append(f"# per-segment knobs ({self.segments['by']}): {knobs} (see tune.json)")
        lines += [f"seed = {int(self.seed)}", "", "[data]", f"dataset = {_toml_value(dataset)}"]
        if columns:
            lines.append(f"columns = {_toml_value(dict(columns))}")
        if min_rating is not None:
            lines.append(f"min_rating = {_toml_value(float(min_rating))}")
        for role, stage in spec.stages().items():
            lines += ["", f"[{role}]", f"name = {_toml_value(stage.name)}"]
            if stage.params:
                lines.append(f"params = {_toml_value(to_json_value(dict(stage.params)))}")
        lines += ["", "[pipeline]", f"n_candidates = {spec.n_candidates}"]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML value (inline tables for dicts; TOML has no null: None is written "none", which
    the typed parameter coercion reads back as None)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '"none"'
    return json.dumps(value)


# --------------------------------------------------------------------------- the tuner
def tune_knob(
    split: Split,
    spec: PipelineSpec,
    *,
    diversity_metric: str = "ilad@10",
    accuracy_metric: str = "ndcg@10",
    max_loss: float = 0.05,
    grid: Sequence[float] | None = None,
    segments: str | None = None,
    protocol: str = "random",
    validation_fraction: float = 0.2,
    seed: int = 0,
    max_users: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    rule: str = "upper",
    progress: Progress | None = None,
) -> KnobChoice:
    """Chooses the diversity knob on validation and reports it on test (module docstring).

    Args:
        split: the test split (`split.train` is all the tuning sees before the test report).
        spec: the pipeline; its re-ranker must have a diversity knob.
        diversity_metric: maximized, `name@k`.
        accuracy_metric: the budgeted metric, `name@k`.
        max_loss: the cap on the relative accuracy loss against relevance-only, in (0, 1).
        grid: knob values (default 0, 0.05, …, 1; 0 is always added).
        segments: "activity:S" for one knob per activity segment, or None.
        protocol: how validation is carved from `split.train` (`TUNE_PROTOCOLS`).
        validation_fraction: validation share ("random", "temporal").
        seed: seeds the carving, the stages, the ILAD space, the user sample, the bootstrap.
        max_users: evaluate a seeded sample of this many validation users (None: all).
        n_bootstrap: bootstrap resamples of the CIs (0: none): the test report's, and the
            validation losses' (paired over the validation users).
        confidence: CI level.
        rule: "point" holds each knob's validation loss to the cap (the protocol of the
            module docstring); "upper" holds the upper bound of its paired bootstrap CI
            instead (a more conservative choice, for a test loss within the cap with
            confidence rather than a point estimate at the edge of the cap).
        progress: `progress(label, done, total)`, called as the phases advance.

    Returns:
        A `KnobChoice`.

    Raises:
        ValueError: bad inputs (checked before any fitting, see `check_tune_inputs`), or a
            relevance-only validation accuracy of 0.
        DataError: an empty split or validation split.
    """
    parsed = check_tune_inputs(
        spec,
        diversity_metric=diversity_metric,
        accuracy_metric=accuracy_metric,
        max_loss=max_loss,
        grid=grid,
        segments=segments,
        validation_fraction=validation_fraction,
        protocol=protocol,
        max_users=max_users,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        rule=rule,
        split=split,
    )
    acc_m, div_m, values, seg = (
        parsed["accuracy"], parsed["diversity"], parsed["grid"], parsed["segments"]
    )  # fmt: skip
    kmax = max(acc_m[1], div_m[1])
    tell = progress or (lambda label, done, total: None)
    timings: dict[str, float] = {}

    # ---- validation: carve, fit, evaluate the grid
    t0 = time.perf_counter()
    val = validation_split(split.train, protocol, validation_fraction, seed)
    tell("fitting on validation-train", 0, 1)
    pipe = spec.build(seed).fit(val.train)
    tell("fitting on validation-train", 1, 1)
    timings["validation_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    relevant, users = _eval_users(val.test, max_users, seed)
    scorer = _Scorer(val.train, relevant, users, acc_m, div_m, seed)
    lists = _KnobLists(pipe, users, kmax)
    acc = np.empty((users.size, len(values)))
    div = np.empty((users.size, len(values)))
    for j, d in enumerate(values):
        tell("validation grid", j, len(values))
        recs = lists.lists(np.full(users.size, d))
        acc[:, j] = scorer.accuracy(recs)
        div[:, j] = scorer.diversity(recs)
    tell("validation grid", len(values), len(values))
    mean_acc, mean_div = acc.mean(axis=0), _nanmean(div)
    loss_ci = np.full((len(values), 2), np.nan)
    if n_bootstrap > 0:  # paired over validation users: one resample for every knob
        reps = bootstrap_means(acc.T, n_bootstrap, np.random.default_rng(seed))
        with np.errstate(invalid="ignore", divide="ignore"):
            loss_reps = 1.0 - reps / reps[0]
        alpha = (1 - confidence) / 2
        loss_ci = np.quantile(loss_reps, [alpha, 1 - alpha], axis=1).T
    bound = loss_ci[:, 1] if rule == "upper" else None
    best, loss = choose_knob(values, mean_acc, mean_div, max_loss, bound)
    held = loss if bound is None else bound
    points = [
        {
            "knob": d,
            "accuracy": float(mean_acc[j]),
            "diversity": float(mean_div[j]),
            "relative_loss": float(loss[j]),
            "relative_loss_ci_low": None if n_bootstrap == 0 else float(loss_ci[j, 0]),
            "relative_loss_ci_high": None if n_bootstrap == 0 else float(loss_ci[j, 1]),
            "feasible": bool(j == 0 or held[j] <= max_loss),
            "chosen": j == best,
        }
        for j, d in enumerate(values)
    ]
    knob = float(values[best])
    timings["validation_grid_s"] = time.perf_counter() - t0
    val_info = {
        "protocol": val.protocol,
        "fraction": validation_fraction if protocol != "leave-last-one" else None,
        "train_rows": val.train.nnz,
        "validation_rows": val.test.nnz,
        "users": int(users.size),
        "max_users": max_users,
        "rule": rule,
        "confidence": confidence,
    }

    seg_report: dict[str, Any] | None = None
    seg_knobs: tuple[float, ...] | None = None
    if seg is not None:
        t0 = time.perf_counter()
        seg_all, edges = segment_users(val.train, seg[1])
        seg_reps = None
        if rule == "upper":  # the same resamples as the grid's (same seed, same draws)
            member = seg_all[users][None, :] == np.arange(seg[1])[:, None]  # (S, U)
            rows = (member[:, None, :] * acc.T[None, :, :]).reshape(-1, users.size)
            seg_reps = bootstrap_means(rows, n_bootstrap, np.random.default_rng(seed))
            seg_reps = seg_reps.reshape(seg[1], len(values), n_bootstrap)
        choice, info = choose_segment_knobs(
            seg_all[users], seg[1], acc, div, max_loss, best, seg_reps, confidence
        )
        seg_knobs = tuple(float(values[c]) for c in choice)
        seg_report = {
            "by": seg[0],
            "n": seg[1],
            "knobs": list(seg_knobs),
            "validation": {
                **info,
                "edges": edges,
                "users": [int(np.sum(seg_all[users] == s)) for s in range(seg[1])],
            },
            "note": "the service takes one knob per request; serve the segments by sending "
            "each user's segment knob as diversity=",
        }
        timings["segments_s"] = time.perf_counter() - t0

    # ---- test: refit on the whole training split
    t0 = time.perf_counter()
    tell("fitting on the training split", 0, 1)
    full = spec.build(seed).fit(split.train)
    tell("fitting on the training split", 1, 1)
    timings["test_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    relevant, tusers = _eval_users(split.test, None, seed)
    tscorer = _Scorer(split.train, relevant, tusers, acc_m, div_m, seed)
    tlists = _KnobLists(full, tusers, kmax)
    tell("test", 0, 3 if seg_knobs else 2)
    recs0 = tlists.lists(np.zeros(tusers.size))
    acc0, div0 = tscorer.accuracy(recs0), tscorer.diversity(recs0)
    tell("test", 1, 3 if seg_knobs else 2)
    recs = tlists.lists(np.full(tusers.size, knob))
    test = _compare(
        tscorer.accuracy(recs), acc0, tscorer.diversity(recs), div0,
        max_loss, n_bootstrap, confidence, seed,
    )  # fmt: skip
    test["knob"] = knob
    if seg_knobs is not None and seg_report is not None:
        tseg, tedges = segment_users(split.train, len(seg_knobs))
        per_user = np.asarray(seg_knobs)[tseg[tusers]]
        recs = tlists.lists(per_user)
        seg_report["test"] = _compare(
            tscorer.accuracy(recs), acc0, tscorer.diversity(recs), div0,
            max_loss, n_bootstrap, confidence, seed,
        )  # fmt: skip
        seg_report["test"]["edges"] = tedges
        seg_report["test"]["segment_users"] = [
            int(np.sum(tseg[tusers] == s)) for s in range(len(seg_knobs))
        ]
        tell("test", 3, 3)
    else:
        tell("test", 2, 2)
    timings["test_eval_s"] = time.perf_counter() - t0
    return KnobChoice(
        knob=knob,
        params=knob_params(spec, knob, seed),
        spec=spec,
        accuracy_metric=f"{acc_m[0]}@{acc_m[1]}",
        diversity_metric=f"{div_m[0]}@{div_m[1]}",
        max_loss=float(max_loss),
        grid=values,
        validation=points,
        validation_info=val_info,
        test=test,
        segments=seg_report,
        seed=seed,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


# --------------------------------------------------------------------------- reports
def format_ci(entry: dict[str, Any], digits: int = 4) -> str:
    """`"0.1234 [0.1200, 0.1270]"` of a `{"mean", "ci_low", "ci_high"}` entry."""
    mean = entry.get("mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean:.{digits}f}"
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    if lo is not None and hi is not None:
        text += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def cap_verdict(test: dict[str, Any], cap: float) -> str:
    """Both verdicts of a test report: the point estimate and the CI's upper bound vs the cap."""
    point = "within" if test["within_cap"] else "above"
    hi = test["relative_loss"]["ci_high"]
    if hi is None:
        return f"point estimate {point} the cap {cap:g} (no CI: bootstrap off)"
    upper = "within" if test["ci_upper_within_cap"] else "above"
    return f"point estimate {point} the cap {cap:g}; CI upper bound {hi:.4f} {upper} the cap"


def choice_markdown(result: dict[str, Any]) -> str:
    """A Markdown report of a `KnobChoice.to_dict()`."""
    acc, div, cap = result["accuracy_metric"], result["diversity_metric"], result["max_loss"]
    test = result["test"]
    conf = int(round(100 * test["confidence"]))
    rr = result["pipeline"].get("reranker", {})
    lines = [
        f"# divrec tune: {result.get('dataset', '')}".rstrip(),
        "",
        f"Maximize **{div}** subject to a relative **{acc}** loss of at most **{cap:g}** "
        "against relevance-only (knob 0), on a validation split carved from the training "
        "split; then refit on the whole training split and report on test.",
        "",
        (
            "Rule: the validation **point** loss of a knob is held to the cap."
            if result["validation_info"].get("rule", "point") == "point"
            else "Rule: the **upper bound** of each knob's validation loss CI "
            f"({int(round(100 * result['validation_info']['confidence']))}% paired bootstrap "
            "over validation users) is held to the cap."
        ),
        "",
        f"- pipeline: {result['pipeline'].get('retriever', {}).get('name')} → "
        f"{rr.get('name')} (n_candidates {result['pipeline']['n_candidates']})",
        f"- validation: {result['validation_info']['protocol']}, "
        f"{result['validation_info']['users']:,} users"
        + (
            f" (a sample of {result['validation_info']['max_users']:,})"
            if result["validation_info"].get("max_users")
            else ""
        ),
        f"- **chosen knob d = {result['knob']:g}** (re-ranker parameter "
        + ", ".join(f"{k} = {v:.6g}" for k, v in result["reranker_params"].items())
        + ")",
        f"- seed {result['seed']}; timings (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:g}" for k, v in result["timings"].items()),
        "",
        f"## Test ({test['users']:,} users, {conf}% paired bootstrap CIs, "
        f"{test['n_bootstrap']} resamples)",
        "",
        "| | knob 0 (relevance) | chosen knob |",
        "|---|---|---|",
        f"| {acc} | {format_ci(test['accuracy']['relevance'])} | "
        f"{format_ci(test['accuracy']['chosen'])} |",
        f"| {div} | {format_ci(test['diversity']['relevance'])} | "
        f"{format_ci(test['diversity']['chosen'])} |",
        "",
        f"- relative {acc} loss: **{format_ci(test['relative_loss'])}** (cap {cap:g}): "
        f"{cap_verdict(test, cap)}",
        f"- relative {div} gain: {format_ci(test['diversity_gain'])}",
    ]
    seg = result.get("segments")
    if seg is not None:
        st = seg["test"]
        lines += [
            "",
            f"## Per-segment knobs ({seg['by']}, {seg['n']} quantile groups of training-history "
            "length)",
            "",
            f"- knobs by segment (least → most active): {', '.join(f'{k:g}' for k in seg['knobs'])}"
            f" (cut points {', '.join(f'{e:g}' for e in seg['validation']['edges'])} on "
            f"validation-train; {seg['validation']['method']} search)",
            f"- validation: {div} {seg['validation']['diversity']:.4f}, relative {acc} loss "
            f"{seg['validation']['relative_loss']:.4f}",
            f"- test: {acc} {format_ci(st['accuracy']['chosen'])}, {div} "
            f"{format_ci(st['diversity']['chosen'])}",
            f"- test relative {acc} loss: **{format_ci(st['relative_loss'])}**: "
            f"{cap_verdict(st, cap)}",
            "- the written `train.toml` carries the global knob (the service takes one knob per "
            "request; send each user's segment knob as `diversity=`)",
        ]
    lines += [
        "",
        "## Validation grid",
        "",
        f"| knob | {acc} | {div} | relative loss [CI] | feasible |",
        "|---:|---:|---:|---:|:---:|",
    ]
    for p in result["validation"]:
        mark = " **(chosen)**" if p["chosen"] else ""
        entry = {
            "mean": p["relative_loss"],
            "ci_low": p.get("relative_loss_ci_low"),
            "ci_high": p.get("relative_loss_ci_high"),
        }
        lines.append(
            f"| {p['knob']:g}{mark} | {p['accuracy']:.4f} | {p['diversity']:.4f} | "
            f"{format_ci(entry)} | {'yes' if p['feasible'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plot_choice(result: dict[str, Any], path) -> None:
    """Saves a PNG to `path`: left, the validation trade-off curve (relative accuracy loss
    against diversity per knob, with the loss CIs when computed), the cap and the chosen
    point; right, the test relative loss of the choice (and of the per-segment choice) with
    its CI against the cap. Test diversity is measured in the full training split's reference
    space, so it is not drawn on the validation axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["validation"]
    cap = result["max_loss"]
    loss = np.array([p["relative_loss"] for p in pts])
    div = np.array([p["diversity"] for p in pts])
    knobs = [p["knob"] for p in pts]
    feas = np.array([p["feasible"] for p in pts])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    ax.plot(loss, div, "-", color="0.6", zorder=1)
    hi = [p.get("relative_loss_ci_high") for p in pts]
    if all(h is not None for h in hi):
        lo = np.array([p["relative_loss_ci_low"] for p in pts])
        ax.errorbar(
            loss, div, xerr=[loss - lo, np.array(hi) - loss], fmt="none", ecolor="tab:blue",
            alpha=0.35, capsize=2, zorder=1,
        )  # fmt: skip
    ax.scatter(loss[feas], div[feas], color="tab:blue", label="feasible", zorder=2)
    ax.scatter(loss[~feas], div[~feas], color="tab:gray", label="over the cap", zorder=2)
    for x, y, d in zip(loss, div, knobs, strict=True):
        ax.annotate(f"{d:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    chosen = next(i for i, p in enumerate(pts) if p["chosen"])
    ax.scatter(
        [loss[chosen]], [div[chosen]], s=160, facecolors="none", edgecolors="tab:red",
        linewidths=2, label=f"chosen d = {knobs[chosen]:g}", zorder=3,
    )  # fmt: skip
    seg = result.get("segments")
    if seg is not None:
        sv = seg["validation"]
        ax.scatter(
            [sv["relative_loss"]], [sv["diversity"]], marker="*", s=160, color="tab:purple",
            label="per-segment knobs", zorder=3,
        )  # fmt: skip
    ax.axvline(cap, color="tab:red", linestyle="--", label=f"cap {cap:g}")
    ax.set_xlabel(f"relative {result['accuracy_metric']} loss vs knob 0 (validation)")
    ax.set_ylabel(f"{result['diversity_metric']} (validation)")
    rule = result["validation_info"].get("rule", "point")
    title = " ".join(x for x in ("divrec tune", result.get("dataset", "")) if x)
    ax.set_title(f"{title}: validation trade-off (rule: {rule})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    rows = [(f"d = {result['knob']:g}", result["test"])]
    if seg is not None and "test" in seg:
        rows.append(("segments " + "/".join(f"{k:g}" for k in seg["knobs"]), seg["test"]))
    for y, (_, test) in enumerate(rows):
        tl = test["relative_loss"]
        color = "tab:green" if test["within_cap"] else "tab:orange"
        if tl["ci_low"] is not None:
            bx.errorbar(
                [tl["mean"]], [y], xerr=[[tl["mean"] - tl["ci_low"]], [tl["ci_high"] - tl["mean"]]],
                fmt="D", color=color, capsize=5,
            )  # fmt: skip
        else:
            bx.scatter([tl["mean"]], [y], marker="D", color=color)
    bx.axvline(cap, color="tab:red", linestyle="--")
    bx.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    bx.set_ylim(-0.7, len(rows) - 0.3)
    bx.set_xlabel(f"relative {result['accuracy_metric']} loss (test, CI)")
    bx.set_title(f"test ({result['test']['users']:,} users)", fontsize=10)
    bx.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
