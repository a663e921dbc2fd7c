"""Evaluation harness: any recommender on any split, accuracy and diversity, with CIs.

Two protocols:

* **full** ranking: every test user gets a top-K list over all items (training items
  excluded); relevant items are the user's test items (optionally only those rated at or
  above a threshold).
* **sampled**: each test row's positive is ranked among its sampled negatives
  (`Split.negatives`, e.g. the NCF protocol's 99). Ties between the positive and a negative
  count against the positive ("pessimistic"), as in the NCF reference code, whose
  `heapq.nlargest` keeps the earlier-inserted negatives ahead of the positive appended last.
  A negative equal to the positive (156 lines of the published ML-1M file) is ignored, as the
  reference code's score dict also collapses it.

Per-user values of every metric at every K go into a table; aggregates are means with
percentile-bootstrap 95% confidence intervals over users (seeded). System-level metrics
(coverage, exposure concentration, between-user diversity) are computed once over all lists.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from divrec import metrics as M
from divrec.evaluation import _fast
from divrec.retrieval.base import Recommender
from divrec.splitting import Split

ACCURACY = ("hr", "recall", "precision", "ndcg", "mrr", "map")
DIVERSITY = (
    "ilad", "category_ild", "user_category_coverage", "novelty", "miscalibration", "arp"
)  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate.

    Attributes:
        ks: list lengths to report.
        protocol: "full" (rank all items) or "sampled" (rank among `Split.negatives`).
        accuracy: accuracy metrics among `ACCURACY`.
        diversity: per-list diversity metrics among `DIVERSITY`; each is skipped when its
            input (item vectors, categories) is missing.
        relevance_threshold: test rows with value ≥ this are relevant (None: all rows).
        exclude_seen: drop training items from full-ranking lists.
        n_bootstrap: bootstrap resamples for the confidence intervals (0: none).
        confidence: CI level.
        batch_size: users scored at once.
        max_users: evaluate a seeded random sample of this many test users (None: all).
        seed: seed of the bootstrap and the user sample.
        between_user_pairs: user pairs sampled for the between-user diversity.
    """

    ks: tuple[int, ...] = (10,)
    protocol: str = "full"
    accuracy: tuple[str, ...] = ACCURACY
    diversity: tuple[str, ...] = DIVERSITY
    relevance_threshold: float | None = None
    exclude_seen: bool = True
    n_bootstrap: int = 1000
    confidence: float = 0.95
    batch_size: int = 1024
    max_users: int | None = None
    seed: int = 0
    between_user_pairs: int = 200_000

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) <= 0:
            raise ValueError(f"ks must be positive list lengths, got {self.ks}")
        if self.protocol not in ("full", "sampled"):
            raise ValueError(f"protocol must be 'full' or 'sampled', got {self.protocol!r}")
        bad = set(self.accuracy) - set(ACCURACY) | set(self.diversity) - set(DIVERSITY)
        if bad:
            raise ValueError(f"unknown metric(s) {sorted(bad)}; known: {ACCURACY + DIVERSITY}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)):
            raise ValueError(f"batch_size must be an integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_users is not None and self.max_users < 1:
            raise ValueError(f"max_users must be >= 1 (or None), got {self.max_users}")
        if self.n_bootstrap < 0 or self.between_user_pairs < 0:
            raise ValueError("n_bootstrap and between_user_pairs must be >= 0")
        if self.relevance_threshold is not None and not np.isfinite(self.relevance_threshold):
            raise ValueError(f"relevance_threshold must be finite, got {self.relevance_threshold}")


@dataclass
class EvalResult:
    """Outcome of `evaluate`.

    Attributes:
        per_user: one row per evaluated user (or test row, sampled protocol), a column
            per `metric@k`.
        aggregate: rows (metric, k, mean, ci_low, ci_high, n).
        system: system-level values, keyed `metric@k`.
        recommendations: `(U, max K)` lists that were evaluated (internal item ids).
        config: the `EvalConfig` used.
    """

    per_user: pd.DataFrame
    aggregate: pd.DataFrame
    system: dict[str, float]
    recommendations: np.ndarray
    config: EvalConfig
    info: dict = field(default_factory=dict)

    def mean(self, metric: str, k: int) -> float:
        """Aggregate mean of `metric@k`."""
        row = self.aggregate[(self.aggregate.metric == metric) & (self.aggregate.k == k)]
        if row.empty:
            raise KeyError(f"{metric}@{k} was not evaluated")
        return float(row["mean"].iloc[0])

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-user rows)."""
        return {
            "config": asdict(self.config),
            "aggregate": self.aggregate.to_dict(orient="records"),
            "system": self.system,
            "info": self.info,
        }


def evaluate(
    model: Recommender,
    split: Split,
    config: EvalConfig | None = None,
    item_vectors: np.ndarray | None = None,
    progress: bool = True,
    recommend_fn: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> EvalResult:
    """Evaluates a fitted model on a split.

    Args:
        model: a fitted recommender.
        split: the split it was fitted on (`split.train`).
        config: an `EvalConfig` (default: full ranking at K = 10).
        item_vectors: `(n_items, d)` reference item vectors for ILAD; the same vectors should
            be used for every model compared (None: ILAD skipped).
        progress: show a progress bar.
        recommend_fn: optional `(users (B,), k) -> ids (B, k)` replacing
            `model.recommend` in the full protocol (e.g. a pipeline with a re-ranker).

    Returns:
        An `EvalResult`.
    """
    config = config or EvalConfig()
    kmax = max(config.ks)
    if config.protocol == "full":
        users, recs, hits, n_rel, extra = _full(model, split, config, kmax, progress, recommend_fn)
    else:
        users, recs, hits, n_rel, extra = _sampled(model, split, config, kmax, progress)
    return _evaluate(split, config, item_vectors, users, recs, hits, n_rel, extra)


def _evaluate(split, config, item_vectors, users, recs, hits, n_rel, extra) -> EvalResult:
    per_user = {"user": users}
    popularity = _item_popularity(split.train) if "novelty" in config.diversity else None
    # each list sorted once per k, shared by ILAD, miscalibration and between-user diversity
    lists = {k: _fast.sorted_lists(recs[:, :k]) for k in config.ks}
    for k in config.ks:
        per_user.update(_accuracy(config.accuracy, hits, n_rel, k))
        per_user.update(
            _diversity(
                config.diversity, recs[:, :k], split, item_vectors, popularity, k, users, lists[k]
            )
        )
    per_user.update(extra)
    table = pd.DataFrame(per_user)
    aggregate = _aggregate(table, config)
    system = _system(recs, split, config, lists)
    system.update(_group_exposure(recs, split, config, users))
    info = {"users": int(len(users)), "protocol": split.protocol or config.protocol}
    return EvalResult(table, aggregate, system, recs, config, info)


# Views of a split's logs that every `evaluate` on that split needs (the binary training CSR,
# its item popularity, the relevance CSR of the test log): built on first use and kept for as
# long as the log object lives, so a comparison of several models on one split builds them
# once (as each model builds its training matrix once, at fit). `Interactions` are immutable
# by contract (frozen fields; arrays are not to be written in place), and the cached arrays
# are made read-only, so a metric cannot alter them by accident.
_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _views(log) -> dict:
    try:
        return _VIEWS.setdefault(log, {})
    except TypeError:  # not weak-referenceable (not an `Interactions`): nothing is kept
        return {}


def _frozen_csr(mat):
    for arr in (mat.data, mat.indices, mat.indptr):
        arr.flags.writeable = False
    return mat


def _train_csr(train):
    """`train.to_csr(binary=True)` (read-only), built once per training log."""
    views = _views(train)
    if "csr" not in views:
        views["csr"] = _frozen_csr(train.to_csr(binary=True))
    return views["csr"]


def _relevant_csr(test, threshold):
    """`test.to_csr(binary=True, threshold=threshold)` (read-only), built once per test log
    and threshold."""
    views = _views(test)
    key = ("relevant", threshold)
    if key not in views:
        views[key] = _frozen_csr(test.to_csr(binary=True, threshold=threshold))
    return views[key]


def _item_popularity(train) -> np.ndarray:
    """`train.item_popularity()` (distinct users per item) from the shared binary CSR; a
    fresh (writable) copy."""
    views = _views(train)
    if "popularity" not in views:
        csr = _train_csr(train)
        views["popularity"] = np.bincount(csr.indices, minlength=csr.shape[1]).astype(np.int64)
    return views["popularity"].copy()


# --------------------------------------------------------------------------- protocols
def _sample_users(users: np.ndarray, config: EvalConfig) -> np.ndarray:
    if config.max_users is not None and users.size > config.max_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, size=config.max_users, replace=False))
    return users


def _full(model, split, config, kmax, progress, recommend_fn):
    relevant = _relevant_csr(split.test, config.relevance_threshold)
    n_rel_all = np.diff(relevant.indptr)
    users = _sample_users(np.flatnonzero(n_rel_all > 0), config)
    if users.size == 0:
        raise ValueError(
            f"split {split.protocol!r}: no test user has a relevant item (no test rows)"
        )
    recs = np.empty((users.size, kmax), dtype=np.int64)
    for sl in _batches(users.size, config.batch_size, progress, "evaluating"):
        if recommend_fn is None:
            recs[sl] = model.recommend(users[sl], kmax, exclude_seen=config.exclude_seen)[0]
        else:
            recs[sl] = recommend_fn(users[sl], kmax)
    hits = _fast.hits_matrix(recs, relevant, users)
    return users, recs, hits, n_rel_all[users], {}


def _sampled(model, split, config, kmax, progress):
    """Each test row's positive among its negatives, ranked by the model's whole chain.

    The request's candidates are the negatives followed by the positive (a negative equal
    to the positive is dropped), so `recommend`'s tie rule (the earlier candidate first)
    counts ties against the positive, as the NCF reference code does. A re-ranking pipeline
    re-ranks exactly these candidates.
    """
    if split.negatives is None:
        raise ValueError(f"split {split.protocol!r} has no negatives for the sampled protocol")
    rows = np.arange(split.test.nnz)
    if config.relevance_threshold is not None:
        rows = rows[split.test.values[rows] >= config.relevance_threshold]
    rows = _sample_users(rows, config)
    if rows.size == 0:
        raise ValueError(f"split {split.protocol!r}: no test row to evaluate")
    users = split.test.users[rows]
    cand = split.candidates()[rows]
    pos = cand[:, :1]
    dup = cand[:, 1:] == pos
    request = np.concatenate([np.where(dup, -1, cand[:, 1:]), pos], axis=1)
    recs = np.empty((rows.size, kmax), dtype=np.int64)
    for sl in _batches(rows.size, config.batch_size, progress, "ranking candidates"):
        recs[sl] = model.recommend(users[sl], kmax, exclude_seen=False, candidates=request[sl])[0]
    hits = recs == pos
    extra = {}
    if getattr(model, "has_scorer", True):
        scores = np.empty(cand.shape, dtype=np.float32)
        for sl in _batches(rows.size, config.batch_size, False, "scoring candidates"):
            scores[sl] = model.score(users[sl], cand[sl])
        valid = np.concatenate([np.ones((rows.size, 1), bool), ~dup], axis=1)
        labels = np.zeros(cand.shape, dtype=bool)
        labels[:, 0] = True
        extra["auc"] = M.per_user_auc(np.where(valid, scores, 0.0), labels, valid)
    return users, recs, hits, np.ones(rows.size, dtype=np.int64), extra


def _batches(n: int, size: int, progress: bool, label: str):
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=n)
        for start in range(0, n, size):
            stop = min(start + size, n)
            yield slice(start, stop)
            bar.advance(task, stop - start)


# --------------------------------------------------------------------------- metrics
def _accuracy(names, hits, n_rel, k) -> dict[str, np.ndarray]:
    """The public accuracy metrics' values; all but NDCG from one compiled pass."""
    return _fast.accuracy(names, hits, n_rel, k)


def _diversity(
    names, recs, split, item_vectors, popularity, k, users, lists=None
) -> dict[str, np.ndarray]:
    train = split.train
    cats = train.item_categories
    out = {}
    for name in names:
        if name == "ilad" and item_vectors is not None:
            out[f"ilad@{k}"] = _fast.ilad(recs, item_vectors, lists)
        elif name == "category_ild" and cats is not None:
            out[f"category_ild@{k}"] = _fast.category_ild(recs, cats, lists)
        elif name == "user_category_coverage" and cats is not None:
            out[f"user_category_coverage@{k}"] = _fast.user_category_coverage(recs, cats)
        elif name == "novelty":
            out[f"novelty@{k}"] = _fast.novelty(recs, popularity, train.n_users)
        elif name == "miscalibration" and cats is not None:  # Steck 2018 C_KL, α = 0.01
            out[f"miscalibration@{k}"] = _fast.miscalibration(
                recs, _train_csr(train), users, cats, lists=lists
            )
        elif name == "arp":  # share of training users, Abdollahpouri et al. 2019
            share = _item_popularity(train) / max(train.n_users, 1)
            out[f"arp@{k}"] = _fast.average_recommendation_popularity(recs, share)
    return out


def _group_exposure(recs, split, config, users) -> dict[str, float]:
    """System-level exposure fairness: the long tail's share of the position-discounted
    exposure (items outside the head holding 20% of the training interactions) and the
    popularity lift of the lists over the users' training rows."""
    train = split.train
    pop = _item_popularity(train)
    tail = M.popularity_groups(pop)
    csr = _train_csr(train)
    out: dict[str, float] = {}
    for k in config.ks:
        out[f"tail_exposure@{k}"] = float(_fast.exposure_share(recs[:, :k], tail, 2)[1])
        out[f"popularity_lift@{k}"] = _fast.popularity_lift(recs[:, :k], csr, users, pop)
    return out


def _system(recs, split, config, lists=None) -> dict[str, float]:
    n_items = split.train.n_items
    cats = split.train.item_categories
    out: dict[str, float] = {}
    from divrec.metrics.diversity import entropy_of_counts, gini_of_counts

    for k in config.ks:
        r = recs[:, :k]
        # one exposure count serves the four catalogue metrics (the public functions each
        # recount; the values are the same)
        counts = M.exposure_counts(r, n_items)
        distinct = int(np.count_nonzero(counts))
        out[f"item_coverage@{k}"] = distinct / n_items
        out[f"distinct_items@{k}"] = float(distinct)
        out[f"exposure_gini@{k}"] = gini_of_counts(counts)
        out[f"exposure_entropy@{k}"] = entropy_of_counts(counts)
        out[f"between_user_diversity@{k}"] = _fast.between_user_diversity(
            r,
            n_items,
            max_pairs=config.between_user_pairs,
            seed=config.seed,
            lists=None if lists is None else lists[k],
        )
        if cats is not None:
            coverage, distinct_cats = _fast.category_coverage(r, cats)
            out[f"category_coverage@{k}"] = coverage
            out[f"distinct_categories@{k}"] = float(distinct_cats)
    return out


def _aggregate(table: pd.DataFrame, config: EvalConfig) -> pd.DataFrame:
    """Means and percentile-bootstrap CIs of every column.

    One set of resample indices is drawn (seeded) and shared by all complete columns, so
    every metric is resampled over the same bootstrap replicates of users (the usual paired
    bootstrap) at the cost of one draw; a column with missing values gets its own draw over
    its defined users.
    """
    rng = np.random.default_rng(config.seed)
    alpha = (1 - config.confidence) / 2
    cols = [c for c in table.columns if c != "user"]
    values = {c: table[c].to_numpy(dtype=np.float64) for c in cols}
    complete = [c for c in cols if not np.isnan(values[c]).any()]
    bounds: dict[str, tuple[float, float]] = {}
    if complete:
        stacked = np.stack([values[c] for c in complete])  # (M, U)
        lows, highs = _bootstrap_many(stacked, config.n_bootstrap, alpha, rng)
        bounds = {c: (lo, hi) for c, lo, hi in zip(complete, lows, highs, strict=True)}
    rows = []
    for col in cols:
        metric, _, k = col.partition("@")
        v = values[col]
        v = v[~np.isnan(v)]
        mean = float(v.mean()) if v.size else float("nan")
        low, high = (
            bounds[col] if col in bounds else bootstrap_ci(v, config.n_bootstrap, alpha, rng)
        )
        rows.append(
            {
                "metric": metric,
                "k": int(k) if k else None,
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "n": int(v.size),
            }
        )
    return pd.DataFrame(rows)


def _bootstrap_many(values: np.ndarray, n_bootstrap: int, alpha: float, rng):
    """`bootstrap_ci` of every row of `values (M, U)` over one shared set of resamples
    (drawn by the compiled kernel of `divrec.evaluation._bootstrap`)."""
    from divrec.evaluation._bootstrap import bootstrap_means

    m, u = values.shape
    if n_bootstrap <= 0 or u < 2:
        return [float("nan")] * m, [float("nan")] * m
    means = bootstrap_means(values, n_bootstrap, rng)
    q = np.quantile(means, [alpha, 1 - alpha], axis=1)
    return [float(x) for x in q[0]], [float(x) for x in q[1]]


def bootstrap_ci(
    values: np.ndarray, n_bootstrap: int, alpha: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: the alpha and 1−alpha quantiles of the
    means of `n_bootstrap` resamples (with replacement) of `values` (the resampling of
    `_bootstrap_many`, for one column)."""
    lows, highs = _bootstrap_many(
        np.asarray(values, dtype=np.float64)[None], n_bootstrap, alpha, rng
    )
    return lows[0], highs[0]


def examples_to_reach(curve: list[tuple[int, float]], fraction: float = 0.95) -> int:
    """Training examples consumed when HR first reaches `fraction` of the curve's best.

    Args:
        curve: `(examples, hr)` points in training order.
        fraction: share of the best value to reach.
    """
    best = max(hr for _, hr in curve)
    return next(n for n, hr in curve if hr >= fraction * best)
