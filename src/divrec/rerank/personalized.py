"""Personalized DPP trade-offs: behaviour entropy (p-DPP) and real-time propensity.

Two ways of choosing the DPP trade-off ``θ`` per user, both plugged into the fast greedy
DPP of :mod:`divrec.rerank.dpp` (``α_u = θ_u / (2(1 − θ_u))``, WeChat Eq. 6–7):

* **p-DPP** (Wang et al. 2020, "Personalized Re-ranking for Improving Diversity in Live
  Recommender Systems", arXiv:2004.06390): users whose behaviour is spread over many
  categories get more diversity. *Reconstruction* (the paper's text is not in our corpus;
  the exact normalization is ours): with ``p_c`` the share of the user's interactions in
  category ``c`` among ``K`` categories,

      H_u = −Σ_c p_c ln p_c,    h_u = H_u / ln K ∈ [0, 1],
      θ_u = θ_high − (θ_high − θ_low) · h_u,

  so a single-category user gets ``θ_high`` (mostly relevance) and a uniform user gets
  ``θ_low`` (most diversity). Users without history get ``default_theta``.

* **Real-time propensity** (WeChat graph-exploration paper, Sec. 3.2, Eq. 2–3; NOTES.md):
  :class:`RealtimePropensityTracker` keeps, per user, the positives of a time-based
  sliding window; ``s_u`` is the mean over pairs ``i ≠ j`` of ``e_iᵀ e_j`` of their
  L2-normalized embeddings (Eq. 2) and ``θ_u = sigmoid((s_u − mean_v s_v) / std_v s_v)``
  over all users with a defined ``s`` (Eq. 3). A user who views similar items has a
  large ``s_u`` and gets a large ``θ_u`` (more relevance).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from divrec.persist import Persistable
from divrec.stage import param

from ._base import fitted_user_rows, sigmoid
from .dpp import GreedyDPPConfig, _GreedyDPPReranker, tradeoff_alpha

__all__ = [
    "PersonalizedDPP",
    "PersonalizedDPPConfig",
    "RealtimePersonalizedDPP",
    "RealtimePersonalizedDPPConfig",
    "RealtimePropensityTracker",
    "entropy_theta",
]


def entropy_theta(
    category_counts: Any,
    theta_low: float = 0.3,
    theta_high: float = 0.9,
    default_theta: float = 0.5,
) -> np.ndarray:
    """p-DPP trade-off from the entropy of a user's behaviour over categories.

    ``θ_u = θ_high − (θ_high − θ_low) · H_u / ln K`` (reconstruction of Wang et al. 2020,
    see the module docstring).

    Args:
        category_counts: ``(K,)`` or ``(B, K)`` non-negative interaction counts (or
            shares) per category, ``K ≥ 2``.
        theta_low: θ of a user with uniform behaviour (maximal entropy).
        theta_high: θ of a user with single-category behaviour (zero entropy).
        default_theta: θ of a user without any interaction.

    Returns:
        ``()`` or ``(B,)`` float64 trade-offs in ``[θ_low, θ_high]``.
    """
    c = np.asarray(category_counts, dtype=np.float64)
    if c.ndim not in (1, 2) or c.shape[-1] < 2:
        raise ValueError(f"category_counts must have shape (K,) or (B, K), K >= 2; got {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("category_counts must be finite and non-negative")
    total = c.sum(axis=-1, keepdims=True)
    p = np.divide(c, total, out=np.zeros_like(c), where=total > 0)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -plogp.sum(axis=-1) / np.log(c.shape[-1])
    h = np.clip(h, 0.0, 1.0)
    theta = theta_high - (theta_high - theta_low) * h
    return np.where(total[..., 0] > 0, theta, default_theta)


@dataclass(frozen=True, kw_only=True)
class PersonalizedDPPConfig(GreedyDPPConfig):
    """`PersonalizedDPP` hyperparameters (and those of :class:`GreedyDPPConfig`).

    Attributes:
        theta_low: p-DPP θ of a maximal-entropy user, in ``[0, 1)``.
        theta_high: p-DPP θ of a zero-entropy user, in ``[theta_low, 1)``.
        default_theta: θ in ``[0, 1]`` when neither ``theta`` nor
            ``user_category_counts`` is given.
    """

    theta_low: float = param(0.3, ge=0.0, lt=1.0)
    theta_high: float = param(0.9, ge=0.0, lt=1.0)
    default_theta: float = param(0.5, ge=0.0, le=1.0)

    def validate(self) -> None:
        """``theta_low <= theta_high``."""
        if self.theta_low > self.theta_high:
            raise ValueError(
                f"theta_low ({self.theta_low}) must be <= theta_high ({self.theta_high})"
            )


class PersonalizedDPP(_GreedyDPPReranker):
    """Fast greedy DPP with a per-request trade-off ``θ_u`` (p-DPP / WeChat Eq. 7).

    Per request, the trade-off is, in this order of precedence: the ``theta`` keyword
    (e.g. from :meth:`RealtimePropensityTracker.theta`, or the diversity knob), the p-DPP
    entropy trade-off of ``user_category_counts`` (:func:`entropy_theta`), or
    ``default_theta``. Everything else is :class:`~divrec.rerank.dpp.FastGreedyDPP`.
    Hyperparameters: :class:`PersonalizedDPPConfig`.
    """

    Config = PersonalizedDPPConfig
    _stage_inputs = ("vectors",)
    _query_extras = ("theta", "user_category_counts")

    def _fit_stage(self, train) -> None:
        """``user_category_counts_`` `(n_users, C)`: training interactions per category.

        With fewer than two categories there is no entropy to read (every user would be a
        single-category user): ``user_category_counts_`` is None and requests get
        ``default_theta`` (or their ``theta``), as without categories.
        """
        if train.item_categories is None or train.item_categories.shape[1] < 2:
            self.user_category_counts_ = None
            return
        x = train.to_csr(binary=True)
        cats = train.item_categories.astype(np.float64)
        self.user_category_counts_ = np.asarray((x @ cats).todense(), dtype=np.float64)
        self.item_categories_ = cats.tocsr()

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user_category_counts_ is None or "user_category_counts" in query.extras:
            return out
        if query.history is not None:
            x = query.history_matrix(self.item_categories_.shape[0])
            x.data[:] = 1.0
            out["user_category_counts"] = np.asarray((x @ self.item_categories_).todense())
        else:
            counts = self.user_category_counts_
            users = fitted_user_rows(query.users, counts.shape[0], "PersonalizedDPP")
            out["user_category_counts"] = counts[users]
        return out

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        counts = kwargs.get("user_category_counts")
        if counts is not None:
            return float(entropy_theta(counts, self.theta_low, self.theta_high, self.default_theta))
        return float(self.default_theta)

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> np.ndarray:
        counts = kwargs.get("user_category_counts")
        if counts is not None:
            c = np.asarray(counts)
            if c.ndim != 2 or c.shape[0] != bsz:
                raise ValueError(f"user_category_counts must have shape ({bsz}, K), got {c.shape}")
            return entropy_theta(c, self.theta_low, self.theta_high, self.default_theta)
        return float(self.default_theta)

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        theta: float | None = None,
        user_category_counts: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select with the request's θ.

        Args:
            relevance: ``(N,)`` ranking scores.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine), or None.
            similarity: ``(N, N)`` similarity, or None.
            categories: ignored.
            theta: explicit trade-off of this request, or None.
            user_category_counts: ``(K,)`` the user's interactions per category (p-DPP).

        Returns:
            ``(k',)`` int64 positions in selection order.
        """
        return super().select(
            relevance,
            k,
            vectors=vectors,
            similarity=similarity,
            categories=categories,
            theta=theta,
            user_category_counts=user_category_counts,
        )

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        theta: np.ndarray | None = None,
        user_category_counts: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection with per-request θ.

        Args:
            relevance: ``(B, N)`` ranking scores.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            theta: ``(B,)`` explicit trade-offs, or None.
            user_category_counts: ``(B, K)`` interactions per category, or None.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        return super().select_batch(
            relevance,
            k,
            vectors=vectors,
            similarity=similarity,
            categories=categories,
            valid=valid,
            theta=theta,
            user_category_counts=user_category_counts,
            constraints=kwargs.get("constraints"),
        )


class RealtimePropensityTracker(Persistable):
    """Real-time diversity propensity of the WeChat paper (Sec. 3.2, Eq. 2–3).

    Ingests events ``(user, item, timestamp, positive)``; only positive events enter the
    user's window. The window is time based: at time ``now`` a user's window holds the
    positives with ``now − window < timestamp ≤ now``. With ``e_i`` the L2-normalized
    embeddings of those items (``n ≥ 2`` of them),

        s_u = (1 / (n(n − 1))) Σ_{i ≠ j} e_iᵀ e_j = (‖Σ_i e_i‖² − n) / (n(n − 1))   (Eq. 2)
        θ_u = sigmoid((s_u − mean_v s_v) / std_v s_v)                                  (Eq. 3)

    where the mean and (population, ``ddof=0``) standard deviation run over all users
    with a defined ``s`` at ``now``. A user with fewer than 2 positives in the window has
    no ``s_u`` and gets ``default_theta`` (documented choice: the paper does not say; 0.5
    is the θ of an average user, ``z = 0``). When fewer than 2 users have a defined ``s``
    or their ``s`` are all equal, ``z = 0`` (θ = 0.5) for everybody defined.

    The clock never goes back. With ``clock_from_events`` (the default) it is the largest
    timestamp seen (events or queries); otherwise only queries and `advance` move it (a
    service drives it from request time, so one event's timestamp cannot expire every
    other user's window). Events older than ``clock − window`` are dropped on arrival,
    queries with ``now < clock`` raise ``ValueError``. Events of one user may arrive out of
    order within the window.

    Memory is bounded per user: a window holds at most ``max_per_user`` positives (the
    newest by timestamp), items given as indices are kept as indices (not vectors), and
    each user has one scheduled expiry. `forget` drops a user.

    Determinism: ``s_u`` sums the window's vectors in timestamp order (ties in arrival
    order) and the mean and standard deviation of Eq. 3 are exactly rounded sums
    (`math.fsum`), so θ does not depend on the order in which users were seen: a replay
    of the same events gives bit-identical θ.

    Args:
        window: window length, in the unit of the timestamps (> 0).
        item_vectors: ``(n_items, d)`` embeddings, used when events give item indices.
        default_theta: θ of users with fewer than 2 positives in the window.
        max_per_user: most positives kept per user window (None: no cap).
        clock_from_events: event timestamps advance the clock.
    """

    def __init__(
        self,
        window: float,
        item_vectors: np.ndarray | None = None,
        default_theta: float = 0.5,
        max_per_user: int | None = None,
        clock_from_events: bool = True,
    ) -> None:
        if not (np.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number, got {window}")
        tradeoff_alpha(default_theta)
        if max_per_user is not None and int(max_per_user) < 1:
            raise ValueError(f"max_per_user must be a positive integer, got {max_per_user}")
        self.window = float(window)
        self.default_theta = default_theta
        self.max_per_user = None if max_per_user is None else int(max_per_user)
        self.clock_from_events = bool(clock_from_events)
        self._times: dict[Hashable, list[float]] = {}
        self._vecs: dict[Hashable, list[Any]] = {}  # item index (int) or unit vector
        self._s: dict[Hashable, float] = {}
        self._expiry: list[tuple[float, int, Hashable]] = []
        self._next: dict[Hashable, float] = {}  # the user's scheduled expiry
        self._seq = 0
        self._clock = -np.inf
        self._dirty: set[Hashable] = set()
        self._stats: tuple[float, float] | None = None
        self._unit: np.ndarray | None = None
        self.item_vectors = item_vectors  # the setter: after the state it resets

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {
            "window": self.window,
            "item_vectors": self.item_vectors,
            "default_theta": self.default_theta,
            "max_per_user": self.max_per_user,
            "clock_from_events": self.clock_from_events,
        }

    def _extra_state(self) -> dict[str, Any]:
        """The events in the window (users must be ints or strings) and the clock."""
        users, times, vecs = [], [], []
        for user, ts in self._times.items():
            users.extend([user] * len(ts))
            times.extend(ts)
            vecs.extend(self._unit_of(x) for x in self._vecs[user])
        if any(not isinstance(u, int | str | np.integer) for u in users):
            raise TypeError("only a tracker keyed by int or str users can be saved")
        d = 0 if not vecs else len(vecs[0])
        return {
            "users": [u.item() if isinstance(u, np.integer) else u for u in users],
            "times": np.asarray(times, dtype=np.float64),
            "vectors": np.asarray(vecs, dtype=np.float64).reshape(len(vecs), d),
            "clock": float(self._clock) if np.isfinite(self._clock) else None,
        }

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        order = np.argsort(state["times"], kind="stable")
        from_events, self.clock_from_events = self.clock_from_events, True
        try:
            for i in order:
                self.update(state["users"][i], state["vectors"][i], float(state["times"][i]))
        finally:
            self.clock_from_events = from_events
        if state.get("clock") is not None:
            self._advance(float(state["clock"]))

    @property
    def item_vectors(self) -> np.ndarray | None:
        """``(n_items, d)`` the vectors of item indices (None: events give vectors).

        Reassigning it (e.g. the loop's re-embedded items) drops the cached unit rows and
        recomputes, at the next query, ``s_u`` of every user whose window holds item indices.
        """
        return self._item_vectors

    @item_vectors.setter
    def item_vectors(self, vectors: np.ndarray | None) -> None:
        self._item_vectors = vectors
        self._unit = None
        for user, vecs in self._vecs.items():
            if any(isinstance(x, int) for x in vecs):
                self._dirty.add(user)
                self._stats = None

    # ------------------------------------------------------------------ ingestion
    def _unit_rows(self) -> np.ndarray:
        if self._unit is None:
            v = np.asarray(self.item_vectors, dtype=np.float64)
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            self._unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        return self._unit

    def _unit_of(self, x: Any) -> np.ndarray:
        return self._unit_rows()[x] if isinstance(x, int) else x

    def _vector(self, item: Any) -> Any:
        """The stored form of an item: its index (int) or its unit vector."""
        if isinstance(item, int | np.integer):
            if self.item_vectors is None:
                raise ValueError("item indices need `item_vectors` in the constructor")
            idx = int(item)
            v = np.asarray(self.item_vectors[idx], dtype=np.float64)
            norm = float(np.linalg.norm(v))
            if not np.isfinite(norm) or norm == 0.0:
                raise ValueError("item vectors must be finite and non-zero to be L2-normalized")
            return idx
        v = np.asarray(item, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"an item vector must have shape (d,), got {v.shape}")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("item vectors must be finite and non-zero to be L2-normalized")
        return v / norm

    def _schedule(self, user: Hashable) -> None:
        times = self._times.get(user)
        if not times:
            self._next.pop(user, None)
            return
        due = times[0] + self.window
        if self._next.get(user) != due:
            self._next[user] = due
            heapq.heappush(self._expiry, (due, self._seq, user))
            self._seq += 1

    def update(self, user: Hashable, item: Any, timestamp: float, positive: bool = True) -> None:
        """Ingest one event.

        Args:
            user: any hashable user id.
            item: item index into ``item_vectors`` or an item vector ``(d,)``.
            timestamp: event time (same unit as ``window``).
            positive: only positive events count (negative ones only advance the clock).
        """
        ts = float(timestamp)
        if not np.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {timestamp}")
        if self.clock_from_events:
            self._advance(ts)
        if not positive or ts <= self._clock - self.window:
            return
        v = self._vector(item)
        times = self._times.setdefault(user, [])
        vecs = self._vecs.setdefault(user, [])
        pos = bisect.bisect_right(times, ts)
        times.insert(pos, ts)
        vecs.insert(pos, v)
        cap = self.max_per_user
        if cap is not None and len(times) > cap:
            del times[: len(times) - cap], vecs[: len(vecs) - cap]
        self._schedule(user)
        self._dirty.add(user)
        self._stats = None

    def update_many(
        self,
        users: Sequence[Hashable],
        items: Iterable[Any],
        timestamps: Iterable[float],
        positives: Iterable[bool] | None = None,
    ) -> None:
        """Ingest a sequence of events (in the given order)."""
        items = list(items)
        timestamps = list(timestamps)
        pos = [True] * len(items) if positives is None else list(positives)
        if not (len(users) == len(items) == len(timestamps) == len(pos)):
            raise ValueError("users, items, timestamps and positives must have equal lengths")
        for u, i, t, p in zip(users, items, timestamps, pos, strict=True):
            self.update(u, i, t, bool(p))

    def export_windows(self) -> dict[str, Any]:
        """The windows as arrays, exactly (for a service snapshot; `import_windows`).

        Returns:
            ``keys`` (the users, in insertion order), ``counts`` (entries per user),
            ``times``, ``items`` (item index, −1 for an entry kept as a vector), ``vectors``
            (the unit vectors of the −1 entries, in order) and ``clock``.
        """
        keys, counts, times, items, vecs = [], [], [], [], []
        for user, ts in self._times.items():
            keys.append(user)
            counts.append(len(ts))
            times.extend(ts)
            for x in self._vecs[user]:
                if isinstance(x, int):
                    items.append(x)
                else:
                    items.append(-1)
                    vecs.append(x)
        d = 0 if self.item_vectors is None else np.asarray(self.item_vectors).shape[1]
        d = len(vecs[0]) if vecs else d
        return {
            "keys": keys,
            "counts": np.asarray(counts, dtype=np.int64),
            "times": np.asarray(times, dtype=np.float64),
            "items": np.asarray(items, dtype=np.int64),
            "vectors": np.asarray(vecs, dtype=np.float64).reshape(len(vecs), d),
            "clock": float(self._clock),
        }

    def import_windows(self, state: dict[str, Any]) -> None:
        """Replaces the windows and clock with `export_windows` output (bit for bit)."""
        self._times, self._vecs, self._s = {}, {}, {}
        self._expiry, self._next, self._dirty = [], {}, set()
        self._stats = None
        self._clock = float(state["clock"])
        times = np.asarray(state["times"], dtype=np.float64).tolist()
        items = np.asarray(state["items"], dtype=np.int64).tolist()
        vecs = np.asarray(state["vectors"], dtype=np.float64)
        pos = vpos = 0
        for user, n in zip(state["keys"], np.asarray(state["counts"]).tolist(), strict=True):
            entries = []
            for x in items[pos : pos + n]:
                if x >= 0:
                    entries.append(int(x))
                else:
                    entries.append(vecs[vpos].copy())
                    vpos += 1
            self._times[user] = times[pos : pos + n]
            self._vecs[user] = entries
            pos += n
            self._schedule(user)
            self._dirty.add(user)

    def forget(self, user: Hashable) -> None:
        """Drops everything kept about `user` (its window and ``s_u``)."""
        self._times.pop(user, None)
        self._vecs.pop(user, None)
        self._next.pop(user, None)
        if self._s.pop(user, None) is not None:
            self._stats = None
        self._dirty.discard(user)

    # ------------------------------------------------------------------ clock
    def advance(self, now: float) -> None:
        """Moves the clock to `now` (no-op when `now` is not after the clock)."""
        now = float(now)
        if not np.isfinite(now):
            raise ValueError(f"now must be finite, got {now}")
        if now > self._clock:
            self._advance(now)

    def _advance(self, now: float) -> None:
        if now > self._clock:
            self._clock = now
        horizon = self._clock - self.window
        while self._expiry and self._expiry[0][0] <= self._clock:
            due, _, user = heapq.heappop(self._expiry)
            if self._next.get(user) != due:
                continue  # superseded by a later schedule (or the user was forgotten)
            del self._next[user]
            times = self._times.get(user)
            if times is None:
                continue
            cut = bisect.bisect_right(times, horizon)
            if cut:
                del times[:cut]
                del self._vecs[user][:cut]
                self._dirty.add(user)
                self._stats = None
            if not times:
                del self._times[user], self._vecs[user]
            else:
                self._schedule(user)

    def _at(self, now: float | None) -> None:
        if now is not None:
            now = float(now)
            if now < self._clock:
                raise ValueError(f"now={now} is before the tracker clock {self._clock}")
            self._advance(now)
        for user in self._dirty:
            vecs = self._vecs.get(user, [])
            n = len(vecs)
            if n >= 2:
                if all(isinstance(x, int) for x in vecs):
                    mat = self._unit_rows()[vecs]
                else:
                    mat = np.stack([self._unit_of(x) for x in vecs])
                total = np.add.reduce(mat, axis=0)  # rows in time order: replays agree
                self._s[user] = float((total @ total - n) / (n * (n - 1)))
            else:
                self._s.pop(user, None)
        self._dirty.clear()

    # ------------------------------------------------------------------ queries
    @property
    def clock(self) -> float:
        """The tracker's time (``-inf`` before any event or `advance`)."""
        return self._clock

    @property
    def n_users(self) -> int:
        """Users with at least one positive in the window."""
        return len(self._times)

    def n_positives(self, user: Hashable, now: float | None = None) -> int:
        """Number of the user's positives in the window at ``now`` (default: clock)."""
        self._at(now)
        return len(self._times.get(user, []))

    def similarity(self, user: Hashable, now: float | None = None) -> float | None:
        """``s_u`` (Eq. 2) at ``now`` (default: clock), None if undefined (< 2 positives)."""
        self._at(now)
        return self._s.get(user)

    def _z_stats(self) -> tuple[float, float]:
        if self._stats is None:
            vals = list(self._s.values())
            n = len(vals)
            mean = math.fsum(vals) / n if n else 0.0
            if n >= 2:
                std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / n)
                self._stats = (mean, std)
            else:
                self._stats = (mean, 0.0)
        return self._stats

    def theta(self, user: Hashable, now: float | None = None) -> float:
        """``θ_u`` (Eq. 3) at ``now`` (default: clock); ``default_theta`` if undefined."""
        return float(self.thetas([user], now)[0])

    def thetas(self, users: Iterable[Hashable], now: float | None = None) -> np.ndarray:
        """``θ_u`` for several users at the same ``now``, ``(B,)`` float64."""
        self._at(now)
        mean, std = self._z_stats()
        out = []
        for user in users:
            s = self._s.get(user)
            if s is None:
                out.append(float(self.default_theta))
            elif std <= 1e-12 * max(1.0, abs(mean)):
                out.append(0.5)
            else:
                out.append(float(sigmoid((s - mean) / std)))
        return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class RealtimePersonalizedDPPConfig(GreedyDPPConfig):
    """`RealtimePersonalizedDPP` hyperparameters (and those of :class:`GreedyDPPConfig`).

    Attributes:
        tracker: the propensity tracker (shared, mutable state the caller keeps feeding),
            or None: `fit` builds one from the training positives.
        propensity_window: window length ``> 0`` of a tracker built by `fit`, in the unit
            of the timestamps (default 30 days in seconds).
        default_theta: θ in ``[0, 1]`` of a user with fewer than 2 positives in the
            window of a tracker built by `fit`.
    """

    tracker: RealtimePropensityTracker | None = None
    propensity_window: float = param(30 * 86400.0, gt=0.0)
    default_theta: float = param(0.5, ge=0.0, le=1.0)


class RealtimePersonalizedDPP(_GreedyDPPReranker):
    """Fast greedy DPP whose θ comes from a :class:`RealtimePropensityTracker`.

    The WeChat re-ranker (Sec. 3.3, Eq. 7 and Algorithm 1): for a request of user ``u``
    at time ``now``, ``θ_u = tracker.theta(u, now)`` and the kernel is
    ``Diag(exp(α_u r)) S Diag(exp(α_u r))``. The tracker is shared, mutable state that
    the caller keeps feeding; this object only reads it. The diversity knob (a ``theta``
    keyword) overrides the tracker's θ_u. Hyperparameters:
    :class:`RealtimePersonalizedDPPConfig`.
    """

    Config = RealtimePersonalizedDPPConfig
    _stage_inputs = ("vectors",)

    @property
    def active_tracker(self) -> RealtimePropensityTracker:
        """The fitted tracker (`tracker_`), else the one given to the constructor."""
        tracker = getattr(self, "tracker_", None) or self.tracker
        if tracker is None:
            raise ValueError("RealtimePersonalizedDPP needs a tracker: pass one or call fit")
        return tracker

    def _fit_stage(self, train) -> None:
        """``tracker_``: the given tracker, or a new one fed the training positives.

        A new tracker uses the fitted item vectors and replays the training interactions in
        time order (those within `propensity_window` of the last one; without timestamps all
        events are at time 0), so θ_u at serving time reflects each user's latest window.
        """
        if self.tracker is not None:
            self.tracker_ = self.tracker
            return
        tracker = RealtimePropensityTracker(
            self.propensity_window, self.item_vectors_, self.default_theta
        )
        ts = train.timestamps
        ts = np.zeros(train.nnz) if ts is None else ts.astype(np.float64)
        keep = np.flatnonzero(ts > ts.max(initial=0.0) - self.propensity_window)
        keep = keep[np.argsort(ts[keep], kind="stable")]
        norms = np.linalg.norm(self.item_vectors_, axis=1)
        keep = keep[norms[train.items[keep]] > 0]  # zero vectors have no direction
        tracker.update_many(
            train.users[keep].tolist(), train.items[keep].tolist(), ts[keep].tolist()
        )
        self.tracker_ = tracker

    def _request_inputs(self, query, safe_ids: np.ndarray) -> dict[str, Any]:
        return {"users": query.users.tolist(), "now": query.now}

    def _theta_for(self, kwargs: dict[str, Any]) -> float:
        return self.active_tracker.theta(kwargs.get("user"), kwargs.get("now"))

    def _thetas_for(self, bsz: int, kwargs: dict[str, Any]) -> np.ndarray:
        users = kwargs.get("users")
        if users is None:
            raise ValueError("RealtimePersonalizedDPP.select_batch needs `users`")
        if len(users) != bsz:
            raise ValueError(f"users must have length {bsz}, got {len(users)}")
        return self.active_tracker.thetas(users, kwargs.get("now"))

    def select(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        user: Hashable = None,
        now: float | None = None,
        theta: float | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Select for ``user`` at time ``now`` (default: tracker clock).

        Args:
            relevance: ``(N,)`` ranking scores.
            k: list length.
            vectors: ``(N, d)`` item vectors (cosine), or None.
            similarity: ``(N, N)`` similarity, or None.
            categories: ignored.
            user: the user id known to the tracker.
            now: request time.
            theta: this request's θ overriding the tracker's (the diversity knob), or None.

        Returns:
            ``(k',)`` int64 positions in selection order.
        """
        return super().select(
            relevance, k, vectors=vectors, similarity=similarity, user=user, now=now, theta=theta
        )

    def select_batch(
        self,
        relevance: np.ndarray,
        k: int,
        *,
        vectors: np.ndarray | None = None,
        similarity: np.ndarray | None = None,
        categories: np.ndarray | None = None,
        valid: np.ndarray | None = None,
        users: Sequence[Hashable] | None = None,
        now: float | None = None,
        theta: np.ndarray | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectorized batch selection for ``users`` ``(B,)`` at time ``now``.

        Args:
            relevance: ``(B, N)`` ranking scores.
            k: list length.
            vectors: ``(B, N, d)`` item vectors, or None.
            similarity: ``(B, N, N)`` similarities, or None.
            categories: ignored.
            valid: ``(B, N)`` bool mask of real candidates.
            users: ``B`` user ids.
            now: request time shared by the batch.
            theta: ``(B,)`` per-request θ overriding the tracker's (the diversity knob),
                or None.

        Returns:
            ``(B, k)`` int64 positions, ``-1`` padded.
        """
        return super().select_batch(
            relevance,
            k,
            vectors=vectors,
            similarity=similarity,
            valid=valid,
            users=users,
            now=now,
            theta=theta,
            constraints=kwargs.get("constraints"),
        )
