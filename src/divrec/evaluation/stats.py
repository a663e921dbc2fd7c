"""Seed-aware statistics: summaries and paired comparisons over seeds *and* users.

A divrec experiment runs every entry (a pipeline with its settings) under several seeds
(split, model initialisation, sampling) and scores every user under every seed, so each
metric of each entry is an `(S, U)` array: `S` seeds by `U` users. Two sources of noise
move a metric's mean: which users were evaluated, and which seed was drawn. A bootstrap
over users alone (`divrec.evaluation.harness.bootstrap_ci`, what the published results
used) sees only the first; from one seed to the next some metrics move more than the gaps
between methods, and a test that pools the `S·U` (seed, user) pairs as independent
requests (`request_level_test`, kept for contrast) calls such seed noise a difference.

The seed-aware functions here treat seeds as the top-level sampling unit:

* **Confidence intervals** come from a two-level (hierarchical) bootstrap (Davison &
  Hinkley 1997, *Bootstrap Methods and their Application*, Sec. 3.8): each replicate
  resamples the `S` seeds with replacement, then the `U` users with replacement, one user
  index set shared by every seed row of the replicate (users are crossed with seeds: user
  `u` is the same person under every seed, cf. Owen 2007, "The pigeonhole bootstrap",
  *Ann. Appl. Stat.* 1(2)). The replicate's statistic is the mean over the resampled seeds
  of each seed's mean over the resampled users. Resampling both levels with replacement
  counts the seed-by-user noise more than once (Owen 2007), so the interval errs on the wide
  side where that noise is large next to the seed-to-seed spread: in the tests' null
  scenario (5 seeds, 500 users, per-request noise 10× the seed sd) it excludes 0 in ~1% of
  runs where the t-test below rejects in ~5%.
* With few seeds a plain percentile interval is too narrow: the bootstrap variance of a
  mean of `n` units is `(n−1)/n` of the usual estimate, and a normal quantile stands in for
  a `t_{n−1}` one (with `S = 5` seeds a plain 95% percentile interval covers ~85%).
  Hesterberg's (2015, "What teachers should know about the bootstrap", *Am. Stat.* 69(4))
  *expanded percentile* interval reads the quantiles farther out for this; with a handful
  of seeds those far quantiles are just the most extreme seed, so the intervals here keep
  the central quantiles and widen them about the estimate instead:
  `θ̂ + k·(q_{α/2} − θ̂)`, `θ̂ + k·(q_{1−α/2} − θ̂)` with
  `k = √(n/(n−1)) · t_{n−1, 1−α/2} / z_{1−α/2}` and `n` the number of top-level units
  (seeds; users when there is one seed). For a normal bootstrap distribution this is the
  same interval as Hesterberg's; it keeps the bootstrap distribution's asymmetry. With
  `S = 2` seeds `k ≈ 9`: two seeds are too few to say much, and the interval shows it.
* **p-values** of a paired comparison come from a two-sided paired t-test of the `S`
  per-seed mean differences (Student 1908; `scipy.stats.ttest_1samp` against 0): the seeds
  are the independent replicates, each seed's mean over its users one observation.

Missing values (a user not scored under a seed) are NaN: each seed's mean is the mean of
its finite values. Only numpy, scipy and the compiled multinomial kernel of
`divrec.evaluation._bootstrap` are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from divrec.evaluation._bootstrap import multinomial_counts, seed_state

__all__ = [
    "PairedComparison",
    "SeedSummary",
    "paired_seed_test",
    "request_level_test",
    "seed_summary",
    "small_sample_factor",
]

# user-count rows drawn per block of replicates: `_BLOCK_CELLS / U` rows (≤ 16 MiB of counts)
_BLOCK_CELLS = 1 << 21


@dataclass(frozen=True)
class SeedSummary:
    """One metric of one entry over seeds.

    Attributes:
        mean: mean of the per-seed means.
        sd: standard deviation of the per-seed means across seeds (ddof=1; NaN with one seed).
        ci_low: lower bound of the two-level bootstrap interval of `mean`.
        ci_high: upper bound of it.
        n_seeds: `S`, the number of seeds.
        per_seed: each seed's mean over its users (NaN-skipping).
        method: a sentence naming the interval, for reports; with one seed it says the
            interval degrades to a bootstrap over users only (it cannot see seed noise).
    """

    mean: float
    sd: float
    ci_low: float
    ci_high: float
    n_seeds: int
    per_seed: tuple[float, ...]
    method: str = ""


@dataclass(frozen=True)
class PairedComparison:
    """Entry B minus baseline A on the same users and seeds.

    Attributes:
        diff: mean over seeds of each seed's mean of `b − a` over users.
        ci_low: lower bound of the bootstrap interval of `diff`.
        ci_high: upper bound of it.
        p_value: two-sided p-value of the test named by `method` (NaN where it has none).
        n_seeds: `S`, the number of seeds.
        n_users: users with at least one finite paired value.
        per_seed_diff: each seed's mean of `b − a` over its users.
        method: a sentence naming the test, for reports.
        significant: the interval excludes 0 at the confidence level.
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_seeds: int
    n_users: int
    per_seed_diff: tuple[float, ...]
    method: str
    significant: bool


def _matrix(x, name: str) -> np.ndarray:
    """`x` as a float64 `(S, U)` array (a 1-D array is one seed), checked."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (S seeds, U users) array, got shape {arr.shape}")
    s, u = arr.shape
    if s < 1:
        raise ValueError(f"{name} has no seeds (shape {arr.shape})")
    if u < 1:
        raise ValueError(f"{name} has fewer than 1 user (shape {arr.shape})")
    if np.isinf(arr).any():
        raise ValueError(f"{name} has infinite values (use NaN for a missing user)")
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError(f"{name} is non-finite everywhere (shape {arr.shape})")
    empty = np.flatnonzero(~finite.any(axis=1))
    if empty.size:
        raise ValueError(f"{name}: seed row {int(empty[0])} has no finite value")
    return arr


def _check_options(confidence: float, n_bootstrap: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")


def _seed_means(values: np.ndarray) -> np.ndarray:
    """Each row's mean over its finite values (every row has one: `_matrix` checks)."""
    finite = np.isfinite(values)
    return np.where(finite, values, 0.0).sum(axis=1) / finite.sum(axis=1)


def small_sample_factor(confidence: float, n_units: int) -> float:
    """The widening `k = √(n/(n−1)) · t_{n−1, 1−α/2} / z_{1−α/2}` of a percentile interval.

    `α = 1 − confidence`, `n` the number of independent top-level units resampled; it puts
    back the `(n−1)/n` the bootstrap variance of a mean misses and the `t_{n−1}` tails
    (the normal-theory form of Hesterberg's 2015 expanded percentile interval). `n ≤ 1`: 1.

    Args:
        confidence: the nominal coverage, in (0, 1).
        n_units: `n`, the number of top-level units (seeds, or users with one seed).

    Returns:
        `k ≥ 1` (about 1.58 for 5 seeds at 95%, 9.2 for 2 seeds, → 1 as `n` grows).
    """
    if n_units <= 1:
        return 1.0
    upper = 1.0 - (1.0 - confidence) / 2.0
    t = sps.t.ppf(upper, df=n_units - 1)
    return float(math.sqrt(n_units / (n_units - 1)) * t / sps.norm.ppf(upper))


def _two_level_replicates(
    values: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """`(n_bootstrap,)` two-level bootstrap replicates of the mean of per-seed means.

    Replicate `b` draws seed counts `c ~ Multinomial(S; 1/S…)` and user counts
    `w ~ Multinomial(U; 1/U…)` (one `w` for every seed row): seed `s`'s resampled mean is
    `Σ_u w_u x_su / Σ_u w_u` over its finite `x_su`, and the replicate is the `c`-weighted
    mean of those over the seeds whose resampled users include a finite value (a seed whose
    drawn users are all missing is left out of that replicate). With `S = 1` this is the
    user bootstrap.
    """
    s, u = values.shape
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    mask = finite.astype(np.float64)
    if s > 1:
        seed_counts = rng.multinomial(s, np.full(s, 1.0 / s), size=n_bootstrap).astype(float)
    else:
        seed_counts = np.ones((n_bootstrap, 1))
    state = seed_state(rng)
    block = max(1, min(n_bootstrap, _BLOCK_CELLS // u))
    counts = np.empty((block, u))
    out = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, block):
        rows = min(block, n_bootstrap - start)
        w = counts[:rows]
        multinomial_counts(w, state)
        num = filled @ w.T  # (S, rows)
        den = mask @ w.T
        ok = den > 0
        means = np.divide(num, den, out=np.zeros_like(num), where=ok)
        c = seed_counts[start : start + rows].T * ok  # (S, rows), seeds with a finite mean
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + rows] = (c * means).sum(axis=0) / c.sum(axis=0)
    return out


def _interval(
    replicates: np.ndarray, point: float, confidence: float, n_units: int
) -> tuple[float, float]:
    """The percentile interval of `replicates` (NaN ones dropped) widened about `point` by
    `small_sample_factor(confidence, n_units)`."""
    reps = replicates[np.isfinite(replicates)]
    if reps.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    k = small_sample_factor(confidence, n_units)
    return float(point + k * (lo - point)), float(point + k * (hi - point))


def seed_summary(
    per_seed_user: np.ndarray, confidence: float = 0.95, n_bootstrap: int = 2000, seed: int = 0
) -> SeedSummary:
    """Mean, spread across seeds and a seed-aware interval of one metric of one entry.

    The interval is the percentile interval of a two-level bootstrap (Davison & Hinkley
    1997, Sec. 3.8), widened for few seeds by `small_sample_factor` (after Hesterberg 2015;
    see the module docstring): seeds resampled with replacement, then
    users with replacement, one user index set for every seed of a replicate. With one seed
    (`S == 1`) it degrades to the percentile bootstrap over users and cannot see seed noise;
    `method` says so.

    Args:
        per_seed_user: `(S, U)` values, NaN for a user missing under a seed (a 1-D array is
            one seed).
        confidence: nominal coverage of the interval.
        n_bootstrap: bootstrap replicates (0: no interval, bounds NaN).
        seed: seed of the bootstrap.

    Returns:
        The `SeedSummary`.

    Raises:
        ValueError: not 2-D, no user, infinite values, a seed row (or everything) non-finite,
            or a bad option.
    """
    values = _matrix(per_seed_user, "per_seed_user")
    _check_options(confidence, n_bootstrap)
    s, u = values.shape
    per_seed = _seed_means(values)
    mean = float(per_seed.mean())
    sd = float(per_seed.std(ddof=1)) if s > 1 else float("nan")
    if n_bootstrap > 0:
        reps = _two_level_replicates(values, n_bootstrap, np.random.default_rng(seed))
        low, high = _interval(reps, mean, confidence, s if s > 1 else u)
    else:
        low = high = float("nan")
    if s > 1:
        method = (
            f"two-level bootstrap over {s} seeds and {u} users (Davison & Hinkley 1997, "
            f"Sec. 3.8), percentile {confidence:.0%} interval widened for {s} seeds "
            "(Hesterberg 2015)"
        )
    else:
        method = (
            f"one seed: percentile bootstrap over {u} users only ({confidence:.0%}); "
            "the interval cannot see seed noise"
        )
    return SeedSummary(mean, sd, low, high, s, tuple(float(x) for x in per_seed), method)


def _paired_diff(a, b) -> np.ndarray:
    """`b − a` as an `(S, U)` array, NaN where either is missing, checked."""
    a_arr = _matrix(a, "a")
    b_arr = _matrix(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must have the same (seeds, users) shape, got {a_arr.shape} and {b_arr.shape}"
        )
    d = b_arr - a_arr
    finite = np.isfinite(d)
    if not finite.any():
        raise ValueError("a and b share no finite (seed, user) value")
    empty = np.flatnonzero(~finite.any(axis=1))
    if empty.size:
        raise ValueError(f"a and b share no finite value under seed row {int(empty[0])}")
    return d


def _t_p_value(x: np.ndarray) -> float:
    """Two-sided one-sample t-test p-value of `mean(x) = 0` (`len(x) ≥ 2`)."""
    scale = float(np.abs(x).max())
    if np.ptp(x) <= 1e-12 * scale:  # no spread beyond rounding: t is 0/0 or ±inf
        return 1.0 if scale == 0.0 else 0.0
    return float(sps.ttest_1samp(x, 0.0).pvalue)


def _excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0.0 or high < 0.0))


def paired_seed_test(
    a: np.ndarray,
    b: np.ndarray,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Seed-aware paired comparison of entry `b` against baseline `a`.

    The interval of `diff = mean_s mean_u (b − a)` is the percentile interval of a two-level
    paired bootstrap (Davison & Hinkley 1997, Sec. 3.8), widened for few seeds by
    `small_sample_factor` (after Hesterberg 2015): seeds, then users, resampled with
    replacement, the same indices for `a` and `b` (the bootstrap of the `(S, U)`
    differences). The p-value is a two-sided paired t-test of the `S` per-seed mean
    differences (`scipy.stats.ttest_1samp` against 0, `S − 1` degrees of freedom). The two
    can disagree near the boundary: the interval is the more conservative (module docstring).
    With one seed there is no test across seeds: `p_value` is NaN and the interval is the
    percentile bootstrap over users only (blind to seed noise), as `method` says.

    Args:
        a: `(S, U)` per-seed per-user values of the baseline (NaN: missing).
        b: `(S, U)` values of the entry, paired with `a` by seed row and user column.
        confidence: nominal coverage of the interval; `significant` is at `1 − confidence`.
        n_bootstrap: bootstrap replicates (0: no interval, bounds NaN, never significant).
        seed: seed of the bootstrap (the same seed draws the same resamples, so swapping
            `a` and `b` negates `diff` and the interval).

    Returns:
        The `PairedComparison`.

    Raises:
        ValueError: shapes differ, no user, infinite values, nothing finite in common (or
            under some seed), or a bad option.
    """
    d = _paired_diff(a, b)
    _check_options(confidence, n_bootstrap)
    s, u = d.shape
    per_seed = _seed_means(d)
    diff = float(per_seed.mean())
    n_users = int(np.isfinite(d).any(axis=0).sum())
    if n_bootstrap > 0:
        reps = _two_level_replicates(d, n_bootstrap, np.random.default_rng(seed))
        low, high = _interval(reps, diff, confidence, s if s > 1 else u)
    else:
        low = high = float("nan")
    if s > 1:
        p_value = _t_p_value(per_seed)
        method = (
            f"seed-aware paired test: two-sided paired t-test of {s} per-seed mean "
            f"differences ({s - 1} df); {confidence:.0%} interval from a two-level paired "
            f"bootstrap over seeds then {n_users} users (Davison & Hinkley 1997, Sec. 3.8), "
            f"percentile, widened for {s} seeds (Hesterberg 2015)"
        )
    else:
        p_value = float("nan")
        method = (
            f"one seed: the test degrades to users only; {confidence:.0%} percentile "
            f"bootstrap interval over {n_users} paired users, no p-value (seed noise unseen)"
        )
    return PairedComparison(
        diff=diff,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        n_seeds=s,
        n_users=n_users,
        per_seed_diff=tuple(float(x) for x in per_seed),
        method=method,
        significant=_excludes_zero(low, high),
    )


def request_level_test(
    a: np.ndarray,
    b: np.ndarray,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """The naive test, for contrast: every (seed, user) pair an independent request.

    This is what the published reports did with one seed, applied to all seeds pooled: the
    interval is the plain percentile bootstrap of the mean of the `N` finite paired
    differences `b − a` resampled independently, and the p-value a two-sided one-sample
    t-test of those `N` differences (`N − 1` degrees of freedom). Seed-to-seed variation is
    treated as if it were user noise averaged over `S·U` draws, so differences that are seed
    noise come out "significant" far more often than `1 − confidence`.

    Args:
        a: `(S, U)` per-seed per-user values of the baseline (NaN: missing).
        b: `(S, U)` values of the entry, paired with `a`.
        confidence: nominal coverage of the interval.
        n_bootstrap: bootstrap replicates (0: no interval).
        seed: seed of the bootstrap.

    Returns:
        The `PairedComparison` (`diff` is the pooled mean of the differences).

    Raises:
        ValueError: as `paired_seed_test`.
    """
    d = _paired_diff(a, b)
    _check_options(confidence, n_bootstrap)
    s, u = d.shape
    pooled = d[np.isfinite(d)]
    n = pooled.size
    diff = float(pooled.mean())
    alpha = (1.0 - confidence) / 2.0
    if n_bootstrap > 0:
        reps = _two_level_replicates(pooled[None, :], n_bootstrap, np.random.default_rng(seed))
        low, high = (float(x) for x in np.quantile(reps, [alpha, 1.0 - alpha]))
    else:
        low = high = float("nan")
    p_value = _t_p_value(pooled) if n > 1 else float("nan")
    return PairedComparison(
        diff=diff,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        n_seeds=s,
        n_users=int(np.isfinite(d).any(axis=0).sum()),
        per_seed_diff=tuple(float(x) for x in _seed_means(d)),
        method=(
            f"request-level test (naive): {n} (seed, user) pairs pooled as independent "
            f"requests; two-sided paired t-test ({n - 1} df) and {confidence:.0%} percentile "
            "bootstrap over pairs; blind to seed-to-seed variation"
        ),
        significant=_excludes_zero(low, high),
    )
