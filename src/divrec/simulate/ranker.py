"""The loop's ranking stage: a click model fitted on the loop's own exposures.

WeChat graph-exploration paper, Sec. 3.3: the DPP kernel `L = Diag(r) S Diag(r)` takes
"relevance scores (usually the ranked score)" of the ranking stage, which in the paper sits
between graph retrieval and the re-ranker. divrec's trained rankers (`divrec.ranking`:
DIN, DCN, …) learn from a labelled log with ID embeddings; the simulator has none to start
from (its starting log holds positives only) and new items arrive every round. So the loop
ranks with a light logistic click model refitted every round on every exposure so far
(click = 1, exposed but not clicked = 0), on features a production ranker has:

* `retrieval`: the retriever's cosine of the candidate to the user's query;
* `affinity`: cosine between the item's attribute vector and the user's attribute profile
  (sum of the attribute vectors of the user's positives: starting log and clicks);
* `recent`: cosine between the item's attribute vector and those of the user's clicks of
  the previous round (short-term saturation);
* `ctr`: the item's smoothed click-through logit `log((c + a μ) / (e − c + a (1 − μ)))`
  (`c` clicks, `e` exposures, `μ` the global rate, `a` = `prior` pseudo-exposures);
* `exposure`: `log(1 + e)`.

Model: `P(click) = σ(w₀ + wᵀ x̃)`, `x̃` the features standardized on the training rows,
fitted by Newton's method (IRLS) with an L2 penalty `l2 ‖w‖²/2` (bias unpenalized). Its
logit `w₀ + wᵀ x̃` is the ranking score. Before any exposure the ranker passes the
retrieval score through.
"""

from __future__ import annotations

import numpy as np

from divrec.data.query import Candidates

__all__ = ["FEATURES", "ExposureRanker", "fit_logistic", "roc_auc"]

#: Feature names, in column order.
FEATURES = ("retrieval", "affinity", "recent", "ctr", "exposure")


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    l2: float = 1.0,
    iters: int = 25,
    tol: float = 1e-8,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """L2-penalized logistic regression by Newton's method.

    Minimizes `Σ_n log(1 + exp(−s_n (w₀ + wᵀ x_n))) + l2 ‖w‖² / 2`, `s_n = 2 y_n − 1`.

    Args:
        x: `(n, d)` features.
        y: `(n,)` labels in {0, 1}.
        l2: penalty on `w` (not on the bias `w₀`), ≥ 0.
        iters: most Newton steps.
        tol: stop when the largest step component is below `tol`.
        init: `(d + 1,)` starting point (warm start; None: zeros).

    Returns:
        `(d + 1,)` `[w₀, w…]`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    a = np.concatenate([np.ones((n, 1)), x], axis=1)
    reg = np.full(d + 1, float(l2))
    reg[0] = 0.0
    sign = 2.0 * y - 1.0

    def objective(v: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -sign * (a @ v)).sum() + 0.5 * np.sum(reg * v * v))

    w = np.zeros(d + 1) if init is None else np.array(init, dtype=np.float64)
    f = objective(w)
    for _ in range(iters):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a @ w)))  # σ, overflow-free
        grad = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, grad)
        t = 1.0  # backtracking (Armijo): Newton from a far start can overshoot
        while t > 1e-10:
            f_new = objective(w - t * step)
            if f_new <= f - 1e-4 * t * float(grad @ step):
                break
            t *= 0.5
        w = w - t * step
        f = f_new
        if np.abs(t * step).max() < tol:
            break
    return w


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # average ranks of ties (1-based)
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _cos_rows(items: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """`(B, N)` cosine of each candidate's row of `items` `(B, N, A)` to `profile` `(B, A)`."""
    num = np.einsum("bna,ba->bn", items, profile)
    den = np.linalg.norm(items, axis=2) * np.linalg.norm(profile, axis=1)[:, None]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class ExposureRanker:
    """The loop's ranker (see the module docstring).

    Args:
        attributes: `(n_items, A)` item attribute vectors.
        profiles: `(n_users, A)` starting attribute profiles (sum over each user's
            starting positives).
        prior: `a`, pseudo-exposures of the smoothed CTR.
        l2: L2 penalty of the logistic fit.

    Attributes:
        weights_: `(1 + len(FEATURES),)` the last fit (None before any exposure).
    """

    def __init__(
        self, attributes: np.ndarray, profiles: np.ndarray, prior: float = 10.0, l2: float = 1.0
    ) -> None:
        self.attributes = np.asarray(attributes, dtype=np.float64)
        self.profiles = np.array(profiles, dtype=np.float64)
        self.recent = np.zeros_like(self.profiles)
        self.prior = float(prior)
        self.l2 = float(l2)
        self.clicks = np.zeros(self.attributes.shape[0])
        self.exposures = np.zeros(self.attributes.shape[0])
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self.weights_: np.ndarray | None = None
        self._mu = np.zeros(len(FEATURES))
        self._sd = np.ones(len(FEATURES))

    def features(self, users: np.ndarray, cand: Candidates) -> np.ndarray:
        """`(B, N, len(FEATURES))` features of each request's candidates (0 at padding)."""
        ids = np.maximum(cand.ids, 0)
        g = self.attributes[ids]
        rate = self.clicks.sum() / max(self.exposures.sum(), 1.0)
        c, e = self.clicks[ids], self.exposures[ids]
        a = self.prior
        ctr = np.log((c + a * rate + 1e-6) / (e - c + a * (1 - rate) + 1e-6))
        retr = np.where(cand.ids >= 0, np.nan_to_num(cand.scores, neginf=0.0), 0.0)
        x = np.stack(
            [
                retr,
                _cos_rows(g, self.profiles[users]),
                _cos_rows(g, self.recent[users]),
                ctr,
                np.log1p(e),
            ],
            axis=2,
        )
        return np.where((cand.ids >= 0)[..., None], x, 0.0)

    def score(self, x: np.ndarray) -> np.ndarray:
        """The ranking score (the click logit) of features `x` `(..., len(FEATURES))`;
        the retrieval score before the first fit."""
        if self.weights_ is None:
            return x[..., 0]
        return self.weights_[0] + ((x - self._mu) / self._sd) @ self.weights_[1:]

    def rank(self, users: np.ndarray, cand: Candidates) -> tuple[Candidates, np.ndarray]:
        """The candidates re-ordered by ranking score (the scores replaced), and their
        features `(B, N, F)` in the new order."""
        x = self.features(users, cand)
        s = np.where(cand.ids >= 0, self.score(x), -np.inf)
        order = np.argsort(-s, axis=1, kind="stable")
        ids = np.take_along_axis(cand.ids, order, axis=1)
        out = Candidates(ids, np.take_along_axis(s, order, axis=1))
        return out, np.take_along_axis(x, order[..., None], axis=1)

    def observe(
        self, users: np.ndarray, lists: np.ndarray, clicked: np.ndarray, x: np.ndarray
    ) -> None:
        """Records one round: `lists` `(B, K)` the exposed feeds, `clicked` `(B, K)` bool,
        `x` `(B, K, F)` their features at ranking time; updates the counts, profiles and
        the previous-round click profiles, then refits."""
        ok = lists >= 0
        self._x.append(x[ok])
        self._y.append(clicked[ok].astype(np.float64))
        np.add.at(self.exposures, lists[ok], 1.0)
        hit = ok & clicked
        np.add.at(self.clicks, lists[hit], 1.0)
        g = self.attributes[np.maximum(lists, 0)] * hit[..., None]
        self.recent[users] = g.sum(axis=1)
        self.profiles[users] += self.recent[users]
        xs, ys = np.concatenate(self._x), np.concatenate(self._y)
        if 0 < ys.sum() < ys.size:
            self._mu = xs.mean(axis=0)
            self._sd = np.where(xs.std(axis=0) > 0, xs.std(axis=0), 1.0)
            self.weights_ = fit_logistic(
                (xs - self._mu) / self._sd, ys, self.l2, init=self.weights_
            )  # warm start: the same optimum (strictly convex), fewer Newton steps
