"""The recommendation service core: a loaded model + the in-memory state of the event log.

No HTTP here (that is `divrec.serve.app`): `Service.recommend` answers a batch of requests
(the library is batch-first, so concurrent HTTP requests are answered together),
`Service.apply` folds committed feedback events into the per-user state, `Service.rebuild`
replays the whole log on start.

Every list is the chain of a fitted `divrec.pipeline.Pipeline`, `pipeline(query, None, k)`:
the service turns each request and the user's state into a `Query` (user, fresh history and
its values, negatives, exclusions, the per-request diversity knob) and runs the pipeline of
the request's `method=` (`ModelBundle.pipelines`: one per fitted re-ranker plus ``"none"``,
sharing the fitted retriever and ranker), so an answer is the list `Pipeline.recommend` gives
for that query. What stays outside the chain: choosing θ_u for ``diversity=auto``, the
Gumbel-top-k sample of ``explore=`` (drawn from the pipeline's top `pool` list) and the
answer's metadata, ILAD and coverage.

How feedback changes the next answer:

* likes, clicks and ratings ≥ `like_threshold` are fresh positives: the user's history for
  the retriever (`Query.history`: iALS fold-in, item-kNN, HI-RT, the two-tower history
  tower) is the training row plus these, newest last; dislikes and low ratings are
  `Query.negatives` (HI-RT's Y row);
* every clicked, liked, disliked or rated item is excluded from later lists (consumed);
* positives feed the real-time propensity tracker (WeChat Eq. 2–3), so ``diversity=auto``
  follows θ_u;
* with `writeback_seconds` > 0, served items and impressions are excluded for that long.

Users unknown to the model are created by their first event; until they have a positive
(or always, when the retriever cannot answer a fresh history) they get the training
popularity order, re-ranked like everyone else's list: the pipeline of
`ModelBundle.cold_start` (`ColdStartPopularity` → the same re-ranker).
"""

from __future__ import annotations

import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from divrec.data.query import Query
from divrec.serve.events import Event
from divrec.serve.model_dir import ModelBundle

__all__ = ["RecRequest", "ServeSettings", "Service", "UserState", "gumbel_top_k"]

POSITIVE = ("click", "like")


@dataclass(frozen=True)
class ServeSettings:
    """Service behaviour (CLI flags of `divrec serve`)."""

    like_threshold: float = 4.0
    writeback_seconds: float = 0.0
    max_history: int = 500
    default_diversity: float | str = "auto"


def _ints() -> array:
    return array("q")


def _floats() -> array:
    return array("d")


@dataclass
class UserState:
    """What the event log says about one user.

    The state is kept out of the cyclic garbage collector's walk, which otherwise pauses the
    service on every full collection (~13 ms over 200k applied events with lists and sets):
    the event lists are `array.array`s and the consumed items a dict of int → None (CPython
    stops tracking a dict that holds only ints; it cannot do so for a set).
    """

    index: int
    positives: array = field(default_factory=_ints)
    values: array = field(default_factory=_floats)
    negatives: array = field(default_factory=_ints)
    consumed: dict[int, None] = field(default_factory=dict)
    served: dict[int, float] = field(default_factory=dict)
    n_events: int = 0


@dataclass(frozen=True)
class RecRequest:
    """One recommendation request.

    Attributes:
        user_id: external user id, or None for an anonymous request with `history`.
        n: list length.
        diversity: knob in [0, 1], "auto" (θ_u of the propensity tracker) or None (the
            service default).
        method: a fitted re-ranker name, or "none".
        explore: Gumbel-top-k temperature (0: the re-ranked list as it is).
        history: internal item indices of an anonymous user's history.
        seed: RNG seed of the exploration sample (None: fresh entropy).
    """

    user_id: str | None
    n: int = 10
    diversity: float | str | None = None
    method: str | None = None
    explore: float = 0.0
    history: tuple[int, ...] = ()
    seed: int | None = None


def gumbel_top_k(m: int, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Samples `n` of `m` ranked positions without replacement (Gumbel-top-k).

    The logit of position j (0 = best) is `−log(j + 1) / temperature`, so the sample is a
    Plackett–Luce draw with weights `(j + 1)^(−1/T)`: T → 0 returns the ranked order,
    T = 1 picks the first item with probability ∝ 1/(j + 1), T → ∞ is uniform.

    Returns:
        `(min(n, m),)` positions in sampled order.
    """
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    logits = -np.log1p(np.arange(m, dtype=np.float64)) / max(float(temperature), 1e-12)
    keys = logits + rng.gumbel(size=m)
    return np.argsort(-keys, kind="stable")[: min(n, m)].astype(np.int64)


class Service:
    """A model bundle plus per-user state; thread-safe (`lock` guards the state)."""

    def __init__(self, bundle: ModelBundle, settings: ServeSettings | None = None) -> None:
        self.bundle = bundle
        self.settings = settings or ServeSettings()
        self.lock = threading.RLock()
        self.users: dict[str, UserState] = {}
        self.last_seq = 0
        self.n_applied = 0
        ret = bundle.pipeline.retriever
        self.supports_history = bool(bundle.pipeline.supports_history)
        self.n_candidates = int(bundle.pipeline.n_candidates)
        self._tracker = getattr(bundle.propensity, "tracker_", None)
        self._retriever = ret
        self._n_categories = len(bundle.category_names)
        ref = np.asarray(bundle.reference, dtype=np.float64)
        norms = np.linalg.norm(ref, axis=1, keepdims=True)
        self._ref_unit = np.divide(ref, norms, out=np.zeros_like(ref), where=norms > 0)
        cats = bundle.item_categories.tocsr()
        self._item_cats = [
            frozenset(cats.indices[cats.indptr[i] : cats.indptr[i + 1]].tolist())
            for i in range(bundle.n_items)
        ]
        self._item_meta = [
            {"item_id": it["id"], "title": it["title"], "categories": it["categories"]}
            for it in bundle.items
        ]

    @property
    def methods(self) -> list[str]:
        return sorted(self.bundle.rerankers) + ["none"]

    # ------------------------------------------------------------------ events
    def _tracker_key(self, user_id: str, state: UserState):
        return state.index if state.index >= 0 else f"new:{user_id}"

    def _state(self, user_id: str) -> UserState:
        st = self.users.get(user_id)
        if st is None:
            st = UserState(self.bundle.user_index.get(user_id, -1))
            self.users[user_id] = st
        return st

    def apply(self, events: list[Event]) -> None:
        """Folds committed events (log order) into the state; unknown items are skipped."""
        wb = self.settings.writeback_seconds
        with self.lock:
            for e in events:
                if e.seq and e.seq <= self.last_seq:
                    continue  # already applied (a replay overlapping the live feed)
                self.last_seq = max(self.last_seq, e.seq)
                item = self.bundle.item_index.get(e.item_id)
                if item is None:
                    continue
                st = self._state(e.user_id)
                st.n_events += 1
                self.n_applied += 1
                if e.type == "impression":
                    if wb > 0:
                        st.served[item] = max(st.served.get(item, 0.0), time.time() + wb)
                    continue
                st.consumed[item] = None
                positive = e.type in POSITIVE or (
                    e.type == "rating"
                    and e.value is not None
                    and e.value >= self.settings.like_threshold
                )
                if positive:
                    st.positives.append(item)
                    st.values.append(float(e.value) if e.type == "rating" else 1.0)
                    if len(st.positives) > self.settings.max_history:
                        del st.positives[0], st.values[0]
                    if self._tracker is not None:
                        try:
                            self._tracker.update(
                                self._tracker_key(e.user_id, st), item, e.timestamp
                            )
                        except ValueError:
                            pass  # e.g. a zero item vector: no direction to count
                else:
                    st.negatives.append(item)
                    if len(st.negatives) > self.settings.max_history:
                        del st.negatives[0]

    def rebuild(self, log) -> int:
        """Replays the log (after `last_seq`) into the state; returns the events read."""
        batch: list[Event] = []
        n = 0
        for e in log.iter_events(after=self.last_seq):
            batch.append(e)
            if len(batch) >= 10_000:
                self.apply(batch)
                n += len(batch)
                batch = []
        self.apply(batch)
        return n + len(batch)

    # ------------------------------------------------------------------ recommend
    def resolve_method(self, method: str | None) -> str:
        m = self.bundle.default_method if method is None else method
        if m != "none" and m not in self.bundle.rerankers:
            raise ValueError(f"method: unknown method {m!r}; known: {', '.join(self.methods)}")
        return m

    def theta(self, user_id: str | None) -> float | None:
        """θ_u of the propensity tracker (None without a tracker)."""
        if self._tracker is None:
            return None
        with self.lock:
            st = self.users.get(user_id) if user_id is not None else None
            if st is None:
                idx = self.bundle.user_index.get(user_id, -1) if user_id is not None else -1
                key = idx if idx >= 0 else f"new:{user_id}"
            else:
                key = self._tracker_key(user_id, st)
            return float(self._tracker.theta(key))

    def warm_up(self) -> None:
        """Runs every method once on a known and an anonymous request, so that lazily
        compiled kernels and caches exist before the first real request (and before the
        server freezes its heap); records nothing (no write-back, no user state)."""
        reqs = []
        for m in self.methods:
            if self.bundle.user_ids:
                reqs.append(RecRequest(self.bundle.user_ids[0], 10, 0.5, m))
            reqs.append(RecRequest(None, 10, 0.5, m, explore=1.0, history=(0,), seed=0))
            reqs.append(RecRequest("", 10, 0.5, m))  # no such user id: the cold start
        self.recommend(reqs, write_back=False)

    def recommend(
        self, requests: list[RecRequest], write_back: bool = True
    ) -> list[dict[str, Any]]:
        """Answers a batch of requests; raises ValueError (one line) on a bad request.

        Args:
            requests: the batch.
            write_back: record the served items (when `writeback_seconds` > 0).
        """
        if not requests:
            return []
        b = len(requests)
        now = time.time()
        n_cand = self.n_candidates
        methods = [self.resolve_method(r.method) for r in requests]
        users = np.full(b, -1, dtype=np.int64)
        hist: list[list[int] | None] = [None] * b
        vals: list[list[float] | None] = [None] * b
        negs: list[list[int]] = [[] for _ in range(b)]
        excl: list[list[int]] = [[] for _ in range(b)]
        div = np.zeros(b)
        thetas: list[float | None] = [None] * b
        with self.lock:
            for i, r in enumerate(requests):
                d = self.settings.default_diversity if r.diversity is None else r.diversity
                if d == "auto":
                    th = self.theta(r.user_id)
                    thetas[i] = th
                    d = 0.5 if th is None else 1.0 - th
                div[i] = float(d)
                if r.user_id is None:
                    hist[i] = list(r.history)
                    continue
                idx = self.bundle.user_index.get(r.user_id, -1)
                users[i] = idx
                st = self.users.get(r.user_id)
                if st is None:
                    continue
                excl[i] = sorted(st.consumed)
                if st.served:
                    for item, until in list(st.served.items()):
                        if until <= now:
                            del st.served[item]
                    excl[i] += list(st.served)
                if st.positives or st.negatives:
                    base = []
                    if idx >= 0:  # the training row (CSR slice: no scipy row object)
                        ui = self.bundle.pipeline.user_items_
                        base = ui.indices[ui.indptr[idx] : ui.indptr[idx + 1]].tolist()
                    hist[i] = base + st.positives.tolist()
                    vals[i] = [1.0] * len(base) + st.values.tolist()
                    negs[i] = st.negatives.tolist()

        # who answers: (0) known users, training row; (1) fresh histories; (2) cold start
        group = np.zeros(b, dtype=np.int64)
        for i in range(b):
            has_pos = hist[i] is not None and len(hist[i]) > 0
            if hist[i] is not None and self.supports_history and (has_pos or users[i] >= 0):
                group[i] = 1
            elif users[i] >= 0:
                group[i] = 0
            else:
                group[i] = 2
        out_ids: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * b
        out_sc: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * b
        pool = [min(n_cand, max(3 * r.n, r.n + 10)) if r.explore > 0 else r.n for r in requests]
        for g, m in sorted(set(zip(group.tolist(), methods, strict=True))):
            rows = [i for i in range(b) if group[i] == g and methods[i] == m]
            k = min(max(pool[i] for i in rows), n_cand)
            q = self._query(rows, users, hist if g else None, vals, negs, excl, div)
            pipe = self.bundle.cold_start[m] if g == 2 else self.bundle.pipelines[m]
            sel = pipe(q, None, k)
            for j, i in enumerate(rows):
                out_ids[i], out_sc[i] = sel.ids[j], sel.scores[j]
        results = []
        for i, r in enumerate(requests):
            keep = out_ids[i] >= 0
            lst, sc = out_ids[i][keep], out_sc[i][keep]
            if r.explore > 0:
                rng = np.random.default_rng(r.seed)
                pick = gumbel_top_k(lst.size, r.n, r.explore, rng)
                lst, sc = lst[pick], sc[pick]
            else:
                lst, sc = lst[: r.n], sc[: r.n]
            results.append(self._answer(r, lst, sc, methods[i], float(div[i]), thetas[i]))
        wb = self.settings.writeback_seconds
        if wb > 0 and write_back:
            with self.lock:
                for r, res in zip(requests, results, strict=True):
                    if r.user_id is not None:
                        st = self._state(r.user_id)
                        for it in res["_items"]:
                            st.served[int(it)] = now + wb
        for res in results:
            res.pop("_items")
        return results

    def _query(self, rows, users, hist, vals, negs, excl, div) -> Query:
        """The `Query` of requests `rows` (all of one answer group).

        Args:
            rows: request positions.
            users: `(B,)` internal user indices (−1: unknown).
            hist: per request the fresh history (training row + positives, or an anonymous
                request's items; None: none), or None for the group answered from the
                training rows.
            vals: per request the history values (None: every item counts 1).
            negs: per request the negatives.
            excl: per request the consumed and written-back items.
            div: `(B,)` diversity knob.
        """
        h = hv = neg = None
        if hist is not None:
            h = [hist[i] or [] for i in rows]
            hv = np.ones((len(rows), max((len(x) for x in h), default=0)), dtype=np.float32)
            for j, i in enumerate(rows):
                if vals[i] is not None:
                    hv[j, : len(vals[i])] = vals[i]
            if any(negs[i] for i in rows):
                neg = [negs[i] for i in rows]
        ex = [excl[i] for i in rows] if any(excl[i] for i in rows) else None
        return Query(
            users=users[rows],
            history=h,
            history_values=hv,
            negatives=neg,
            exclude=ex,
            exclude_seen=True,
            diversity=div[rows],
        )

    def list_ilad(self, lst: np.ndarray) -> float | None:
        """ILAD of one list in the reference space (CDM Eq. 21; `metrics.ilad` for one list):
        the mean `1 − cos` over its pairs, zero vectors at cosine 0; None below 2 items."""
        n = lst.size
        if n < 2:
            return None
        v = self._ref_unit[lst]
        s = v.sum(axis=0)
        pair_sum = float(s @ s - np.einsum("nd,nd->", v, v))
        return float(min(max(1.0 - pair_sum / (n * (n - 1)), 0.0), 2.0))

    def _answer(self, r, lst, sc, method, diversity, theta) -> dict[str, Any]:
        meta = self._item_meta
        items = [
            {"rank": rank, **meta[it], "score": s}
            for rank, (it, s) in enumerate(zip(lst.tolist(), sc.tolist(), strict=True), 1)
        ]
        lil = self.list_ilad(lst)
        cov = None
        if self._n_categories and lst.size:
            cov = len(frozenset().union(*(self._item_cats[i] for i in lst.tolist())))
            cov /= self._n_categories
        return {
            "user_id": r.user_id,
            "known_user": r.user_id is not None and r.user_id in self.bundle.user_index,
            "method": method,
            "diversity": diversity,
            "theta": theta,
            "explore": r.explore,
            "items": items,
            "ilad": lil,
            "category_coverage": cov,
            "_items": lst.tolist(),
        }

    # ------------------------------------------------------------------ i2i, i2u
    def similar(self, item: int, n: int) -> list[dict[str, Any]]:
        """The `n` items closest to `item` by cosine in the re-ranker's embedding."""
        unit = self.bundle.unit_vectors
        sims = unit @ unit[item]
        sims[item] = -np.inf
        n = min(n, sims.size - 1)
        top = np.argpartition(-sims, n - 1)[:n] if n > 0 else np.zeros(0, dtype=np.int64)
        top = top[np.lexsort((top, -sims[top]))]
        return [
            {
                "item_id": self.bundle.items[j]["id"],
                "title": self.bundle.items[j]["title"],
                "categories": self.bundle.items[j]["categories"],
                "score": float(sims[j]),
            }
            for j in top.tolist()
        ]

    def potential_users(self, item: int, n: int) -> list[dict[str, Any]]:
        """i2u: the users most likely to want `item` (TotalRecall; factor models: u·v_i),
        excluding users who interacted with it in training."""
        ret = self._retriever
        if hasattr(ret, "potential_users"):
            uids, usc = ret.potential_users(np.array([item]), k=n)
            pairs = [(int(u), float(s)) for u, s in zip(uids[0], usc[0], strict=True) if u >= 0]
        elif hasattr(ret, "user_vectors") and hasattr(ret, "item_vectors"):
            s = ret.user_vectors() @ ret.item_vectors()[item]
            s = np.asarray(s, dtype=np.float64)
            seen = self.bundle.pipeline.user_items_[:, item].nonzero()[0]
            s[seen] = -np.inf
            kk = min(n, int(np.isfinite(s).sum()))
            top = np.argpartition(-s, kk - 1)[:kk] if kk > 0 else np.zeros(0, dtype=np.int64)
            top = top[np.lexsort((top, -s[top]))]
            pairs = [(int(u), float(s[u])) for u in top]
        else:
            raise LookupError(f"{type(ret).__name__} has no user embedding for potential users")
        return [{"user_id": self.bundle.user_ids[u], "score": sc} for u, sc in pairs]

    def training_items(self, user_id: str) -> list[str]:
        idx = self.bundle.user_index.get(user_id)
        if idx is None:
            return []
        row = self.bundle.pipeline.user_items_[idx]
        return [self.bundle.items[i]["id"] for i in row.indices.tolist()]
