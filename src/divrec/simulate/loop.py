"""The closed loop: retrieve → rank → re-rank → simulated feedback → updates, per round.

Each round `t = 1..T`, for every simulated user at once:

1. new items of round `t` enter the pool (attributes only): the graph retriever gets their
   features and embeds them inductively;
2. the `Pipeline`'s stages run on a `Query` with the user's last `n_recent` clicks/positives
   as `history`, everything the user consumed as `exclude`, `now = t`: retrieval of
   `n_candidates`, the optional ranker, the re-ranker selects the `k`-item feed;
3. the choice model (:mod:`divrec.simulate.environment`) clicks;
4. clicks go to the real-time propensity tracker (positive events at time `t`), into the
   users' histories, and, as one session per user (click order, the graph's window), into
   the item graph; the GraphSAGE model takes `update_steps` warm-start minibatches and all
   items are re-embedded; re-rankers in the graph space get the new embeddings.

Metrics per round (:func:`round_metrics`): see the docstring there.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.metrics.diversity import exposure_gini, ilad
from divrec.simulate.environment import ChoiceModel
from divrec.simulate.world import World

__all__ = ["PIPELINES", "SimConfig", "fit_retriever", "make_reranker", "run_simulation"]

#: re-ranking variants of the WeChat paper's Table 1 (plus ablations)
PIPELINES = ("base", "fast-dpp", "p-dpp", "ours", "graph-dpp", "none")


@dataclass
class SimConfig:
    """Loop and user-model settings (defaults: the committed reproduction).

    Attributes:
        rounds: T.
        k: feed length.
        n_candidates: retrieval size N.
        n_recent: recent positives in the query history.
        update_steps: GraphSAGE warm-start minibatches per round (0: no retraining; the
            new edges still change the aggregation).
        propensity_window: tracker window in rounds.
        theta: θ of the fixed-trade-off DPPs.
        cap: items per primary category for Base.
        seed: seeds the choice model's draws and the metric samplers.
        choice: keyword arguments of :class:`ChoiceModel`.
        jaccard_pairs: user pairs sampled for the between-user Jaccard.
        exclude_last_feed: also exclude the items of the user's previous feed (impression
            discounting: shown-but-ignored items are not shown again next round).
    """

    rounds: int = 30
    k: int = 10
    n_candidates: int = 100
    n_recent: int = 10
    update_steps: int = 5
    propensity_window: float = 3.0
    theta: float = 0.5
    cap: int = 2
    seed: int = 0
    choice: dict = field(default_factory=dict)
    jaccard_pairs: int = 20_000
    exclude_last_feed: bool = False


def fit_retriever(world: World, params: dict | None = None):
    """A `GraphRetriever` fitted on the world's starting log (fit once, copy per variant)."""
    from divrec.retrieval.graphsage import GraphRetriever

    p = {"min_value": None, "seed": 0, **(params or {})}
    return GraphRetriever(**p).fit(world.start_log)


def _fit_log(world: World) -> Interactions:
    s = world.start_log
    return Interactions(
        users=s.users,
        items=s.items,
        values=s.values,
        user_ids=s.user_ids,
        item_ids=world.full_log.item_ids,
        timestamps=s.timestamps,
        item_categories=world.category_matrix,
        category_names=s.category_names,
    )


def make_reranker(name: str, world: World, embeddings: np.ndarray, cfg: SimConfig, tracker):
    """The fitted re-ranker of variant `name` (None for "none") and its similarity space.

    Returns:
        `(reranker, space)` with `space` "graph" (vectors follow the embeddings), "genre"
        or None.
    """
    from divrec.rerank import CategoryCap, FastGreedyDPP, PersonalizedDPP
    from divrec.rerank.personalized import RealtimePersonalizedDPP

    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    log = _fit_log(world)
    graph = np.zeros((world.n_items, embeddings.shape[1]), dtype=np.float32)
    graph[: embeddings.shape[0]] = embeddings
    if name == "none":
        return None, None
    if name == "base":
        return CategoryCap(max_per_category=cfg.cap).fit(log, item_vectors=world.attributes), None
    if name == "fast-dpp":
        return FastGreedyDPP(theta=cfg.theta).fit(log, item_vectors=world.attributes), "genre"
    if name == "p-dpp":
        return PersonalizedDPP().fit(log, item_vectors=world.attributes), "genre"
    if name == "graph-dpp":
        return FastGreedyDPP(theta=cfg.theta).fit(log, item_vectors=graph), "graph"
    return RealtimePersonalizedDPP(tracker=tracker).fit(log, item_vectors=graph), "graph"


def _padded(m: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    sub = m[rows]
    lens = np.diff(sub.indptr)
    out = np.full((rows.size, max(int(lens.max(initial=0)), 1)), -1, dtype=np.int64)
    r = np.repeat(np.arange(rows.size), lens)
    c = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], lens)
    out[r, c] = sub.indices
    return out


def between_user_jaccard(lists: np.ndarray, n_items: int, pairs: int, seed: int) -> float:
    """Mean Jaccard similarity `|L_u ∩ L_v| / |L_u ∪ L_v|` of the item sets of user pairs
    (T-RECS RecSimilarity), over `pairs` uniformly sampled pairs `u ≠ v` (all pairs when
    fewer); NaN with fewer than 2 users."""
    b = lists.shape[0]
    if b < 2:
        return float("nan")
    r = np.repeat(np.arange(b), lists.shape[1])
    c = lists.reshape(-1)
    ok = c >= 0
    m = sp.csr_matrix((np.ones(ok.sum()), (r[ok], c[ok])), shape=(b, n_items))
    m.data[:] = 1.0
    size = np.diff(m.indptr).astype(np.float64)
    if b * (b - 1) // 2 <= pairs:
        u, v = np.triu_indices(b, 1)
    else:
        rng = np.random.default_rng(seed)
        u = rng.integers(0, b, pairs)
        v = rng.integers(0, b - 1, pairs)
        v = v + (v >= u)
    inter = np.asarray(m[u].multiply(m[v]).sum(axis=1)).ravel()
    union = size[u] + size[v] - inter
    return float(np.mean(np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)))


def _quantiles(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {}
    q = np.quantile(x, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        **{
            f"q{int(p * 100)}": float(v)
            for p, v in zip([0.1, 0.25, 0.5, 0.75, 0.9], q, strict=True)
        },
    }


def round_metrics(
    lists: np.ndarray,
    retrieved: np.ndarray,
    clicks: np.ndarray,
    streak: np.ndarray,
    spaces: dict[str, np.ndarray],
    n_pool: int,
    n_start: int,
    jaccard_pairs: int,
    seed: int,
) -> dict:
    """Metrics of one round.

    * `ilad_<space>`: mean over users of ILAD (NOTES Eq. 9: mean pairwise `1 − cos`) of the
      exposed `k`-item feed, in the graph embedding used at exposure time, the genre space and the
      reference SVD space of the whole real log (independent of the system);
    * `rd_<space>`: retrieval diversity, the same mean-over-users ILAD computed over each
      user's `N` retrieved candidates (before ranking / re-ranking) — system-level in that
      it reflects the retrieval graph the loop has grown;
    * `jaccard`: between-user similarity of the feeds (:func:`between_user_jaccard`);
    * `coverage`: distinct exposed items / items in the pool; `retrieval_coverage`: the
      same for the retrieved candidates; `gini`: exposure Gini over the pool;
    * `new_item_share`: share of exposures that are churned-in (new) items;
    * `clicks`: clicks per user in the round (the VV analog); `session_length`: mean over
      users of the current streak of consecutive rounds with at least one click.
    """
    out = {}
    for name, vec in spaces.items():
        out[f"ilad_{name}"] = float(np.nanmean(ilad(lists, vec)))
        out[f"rd_{name}"] = float(np.nanmean(ilad(retrieved, vec)))
    out["jaccard"] = between_user_jaccard(lists, n_pool, jaccard_pairs, seed)
    ex = lists[lists >= 0]
    out["coverage"] = float(np.unique(ex).size / n_pool)
    rv = retrieved[retrieved >= 0]
    out["retrieval_coverage"] = float(np.unique(rv).size / n_pool)
    out["gini"] = exposure_gini(lists, n_pool)
    out["new_item_share"] = float(np.mean(ex >= n_start)) if ex.size else float("nan")
    out["clicks"] = float(clicks.mean())
    out["session_length"] = float(streak.mean())
    return out


def _theta_values(name: str, reranker, query: Query, world: World) -> np.ndarray:
    if name == "ours":
        return reranker.active_tracker.thetas(query.users.tolist(), query.now)
    if name == "p-dpp":
        from divrec.rerank.personalized import entropy_theta

        counts = reranker._request_inputs(query, None)["user_category_counts"]
        return entropy_theta(counts, reranker.theta_low, reranker.theta_high)
    return np.full(len(query), np.nan)


def run_simulation(
    world: World,
    pipeline: str,
    cfg: SimConfig,
    retriever=None,
    retriever_params: dict | None = None,
    reference_vectors: np.ndarray | None = None,
    progress: bool = False,
) -> dict:
    """Runs the loop for one re-ranking variant.

    Args:
        world: the world (:func:`divrec.simulate.make_world`).
        pipeline: one of `PIPELINES`.
        cfg: the settings.
        retriever: a fitted `GraphRetriever` to start from (deep-copied: the caller's is
            not modified), or None to fit one with `retriever_params`.
        retriever_params: `GraphRetriever` parameters when fitting here.
        reference_vectors: `(n_items, d)` the reference SVD space (None: computed from
            `world.full_log`).
        progress: show a progress bar over rounds.

    Returns:
        `{"pipeline", "rounds": [per-round metrics + "theta" quantiles + "seconds" by
        stage], "config"}`.
    """
    from rich.progress import track

    from divrec.metrics.reference import reference_item_vectors
    from divrec.pipeline import Pipeline
    from divrec.rerank.personalized import RealtimePropensityTracker

    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    if isinstance(cfg.rounds, bool) or cfg.rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {cfg.rounds}")
    rng = np.random.default_rng(cfg.seed)
    ret = (
        copy.deepcopy(retriever)
        if retriever is not None
        else fit_retriever(world, retriever_params)
    )
    if reference_vectors is None:
        reference_vectors = reference_item_vectors(world.full_log)
    env = ChoiceModel(world.preferences, world.attributes, **cfg.choice)
    n_users = world.n_users
    users = np.arange(n_users)
    # histories: the starting log's latest positives; consumed: everything seen so far
    hist = np.full((n_users, cfg.n_recent), -1, dtype=np.int64)
    start_recent = ret.recent_
    w = min(cfg.n_recent, start_recent.shape[1])
    hist[:, -w:] = start_recent[:, -w:]
    s = world.start_log
    consumed = sp.csr_matrix(
        (np.ones(s.nnz), (s.users, s.items)), shape=(n_users, world.n_items)
    ).tocsr()
    tracker = RealtimePropensityTracker(cfg.propensity_window, ret.embeddings_)
    for u in users:
        for t, i in enumerate(hist[u][hist[u] >= 0]):
            tracker.update(int(u), int(i), 0.0 + 1e-6 * t)
    reranker, space = make_reranker(pipeline, world, ret.embeddings_, cfg, tracker)
    pipe = Pipeline(ret, reranker=reranker, n_candidates=cfg.n_candidates)
    streak = np.zeros(n_users, dtype=np.int64)
    last_feed = None
    records = []
    for r in track(range(1, cfg.rounds + 1), description=pipeline, disable=not progress):
        sec = {}
        t0 = time.perf_counter()
        n_pool = world.pool_size(r)
        if n_pool > ret.n_items_:
            ret.update(new_features=world.features[ret.n_items_ : n_pool], steps=0)
        if space == "graph":
            reranker.item_vectors_ = ret.embeddings_
        tracker.item_vectors = ret.embeddings_
        sec["pool"] = time.perf_counter() - t0
        excl = _padded(consumed[:, :n_pool], users)
        if cfg.exclude_last_feed and last_feed is not None:
            excl = np.concatenate([excl, last_feed], axis=1)
        query = Query(
            users=users,
            history=hist,
            exclude=excl,
            exclude_seen=True,
            now=float(r),
        )
        t0 = time.perf_counter()
        cand = pipe.retriever(query, None, max(cfg.n_candidates, cfg.k))
        sec["retrieve"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ranked = cand if pipe.ranker is None else pipe.ranker(query, cand, None)
        sec["rank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        thetas = np.full(n_users, np.nan)
        if reranker is None:
            lists = ranked.head(cfg.k).ids
        else:
            thetas = _theta_values(pipeline, reranker, query, world)
            lists = reranker(query, ranked, cfg.k).head(cfg.k).ids
        sec["rerank"] = time.perf_counter() - t0
        last_feed = lists
        t0 = time.perf_counter()
        order = env.respond(users, lists, rng)
        sec["feedback"] = time.perf_counter() - t0
        exposed_space = ret.embeddings_  # graph-space metrics: the space at exposure time
        # updates
        t0 = time.perf_counter()
        cu, cp = np.nonzero(order >= 0)
        step = order[cu, cp]
        o = np.lexsort((step, cu))
        cu, ci = cu[o], lists[cu[o], cp[o]]
        n_click = np.bincount(cu, minlength=n_users)
        for u, i in zip(cu.tolist(), ci.tolist(), strict=True):
            tracker.update(u, i, float(r))
        tracker.update(-1, 0, float(r), positive=False)  # advance the clock
        sec["tracker"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for u in np.flatnonzero(n_click):
            new = ci[cu == u] if n_click[u] > 0 else ci[:0]
            hist[u] = np.concatenate([hist[u], new])[-cfg.n_recent :]
        consumed = consumed + sp.csr_matrix((np.ones(cu.size), (cu, ci)), shape=consumed.shape)
        splits = np.split(ci, np.cumsum(n_click)[:-1])
        sessions = [x.tolist() for x in splits if x.size >= 2]
        stats = ret.update(sessions=sessions, steps=cfg.update_steps)
        sec["graph_update"] = time.perf_counter() - t0
        streak = np.where(n_click > 0, streak + 1, 0)
        t0 = time.perf_counter()
        spaces = {
            "graph": exposed_space,
            "genre": world.attributes[:n_pool],
            "svd": reference_vectors[:n_pool],
        }
        rec = round_metrics(
            lists, cand.ids, n_click, streak, spaces, n_pool, world.n_start,
            cfg.jaccard_pairs, cfg.seed * 1000 + r,
        )  # fmt: skip
        sec["metrics"] = time.perf_counter() - t0
        sec["total"] = float(sum(sec.values()))
        rec.update(
            round=r,
            pool=n_pool,
            edges=stats["edges"],
            new_edges_sessions=len(sessions),
            train_pairs=stats["pairs"],
            train_seconds=stats["seconds"],
            theta=_quantiles(thetas),
            seconds=sec,
        )
        records.append(rec)
    return {"pipeline": pipeline, "rounds": records, "n_users": n_users}
