"""The closed loop: retrieve → rank → re-rank → simulated feedback → updates, per round.

Each round `t = 1..T`, for every simulated user at once:

1. new items of round `t` enter the pool (attributes only): the graph retriever gets their
   features and embeds them inductively;
2. the graph retriever runs on a `Query` with the user's last `n_recent` clicks/positives
   as `history`, everything the user consumed as `exclude`, `now = t` and returns
   `n_candidates`; the ranking stage (`SimConfig.ranker`: the click model of
   :mod:`divrec.simulate.ranker`, refitted every round on every exposure so far) orders
   them and its scores are the relevance `r` of the re-ranker, which selects the `k`-item
   feed;
3. the choice model (:mod:`divrec.simulate.environment`) clicks;
4. clicks go to the real-time propensity tracker (positive events at time `t`), into the
   users' histories, and, as one session per user (click order, the graph's window), into
   the item graph; declines (exposed, not clicked) go to the retriever as hard negatives
   `(anchor from the request's history, declined item)` (`SimConfig.learn_declines`); the
   GraphSAGE model (random-walk neighbour sampling, `neighbor_sampling="walk"`) takes
   `update_steps` warm-start minibatches and all items are re-embedded; re-rankers in the
   graph space and the tracker (`item_vectors`, which refreshes its s_u) get the new
   embeddings; the ranker records the exposures and refits.

Metrics per round (:func:`round_metrics`): see the docstring there. Diversity headlines are
in fixed spaces (reference SVD, genre); RD is the paper's system-level notion (between-user).
`rank_auc` / `retrieval_auc`: AUC of the ranker's score / the retrieval cosine over the
round's exposures (clicked vs declined), both at exposure time.

Deviations from the WeChat paper, stated:

* the ranking stage is a light logistic click model on five features (retrieval cosine,
  attribute affinity to the user's profile and to the previous round's clicks, the item's
  smoothed CTR, log exposures), not the paper's production ranker; it orders all
  `n_candidates` = 100 retrieved items for the DPP (the paper's ranker sifts thousands to
  "dozens"); before the first exposures it passes the retrieval cosine through. Its logit
  reaches the DPP min-max scaled per request (the re-rankers' default
  `relevance_scaling="minmax"`), so that θ means the same for every request; the paper
  does not say how its scores are scaled;
* learning from declines is ours: the paper trains the graph embeddings "by using
  real-time feedback from users" and adds edges for positives only; here declines are
  extra negatives of the unsupervised loss (`decline_weight`), not edges or edge removals;
* random-walk neighbour sampling follows the paper's one sentence ("Random walk is adopted
  to sample neighbours of each node"); the walk length (`neighbor_walk_length` = 2) and the
  inference rule (aggregating the walk distribution's expectation, PinSage-like without its
  top-T cut) are ours;
* the propensity window is 10 rounds (`SimConfig.propensity_window`; the paper gives no
  length).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.metrics.diversity import exposure_gini, ilad
from divrec.params import coerce_params, to_json_value
from divrec.pipeline.spec import PipelineSpec, StageSpec
from divrec.registry import preset_params, resolve
from divrec.simulate.environment import ChoiceModel
from divrec.simulate.world import World

__all__ = [
    "PIPELINES",
    "RETRIEVER",
    "SPACES",
    "SimConfig",
    "fit_retriever",
    "make_reranker",
    "pipeline_spec",
    "run_simulation",
]

#: The retrieval stage of every variant: the GraphSAGE i2i graph retriever on every event
#: (no rating threshold) with random-walk neighbour sampling (the paper's). The loop fits it
#: once per world (`fit_retriever`) and copies it.
RETRIEVER = StageSpec("graph", {"min_value": None, "seed": 0, "neighbor_sampling": "walk"})


def _variant(label: str, reranker: StageSpec | None) -> PipelineSpec:
    return PipelineSpec(RETRIEVER, None, reranker, label=label)


#: The re-ranking variants of the WeChat paper's Table 1 (plus ablations), by name: Base
#: (at most 2 items per primary category), fast greedy DPP at θ = 0.5 in the genre space,
#: p-DPP (θ_u from the user's genre entropy), "ours" (real-time personalized DPP in the graph
#: space), graph-space DPP at θ = 0.5, no re-ranking, and two sanity rows: "random" (`k` of
#: the ranked candidates uniformly at random, `RandomK`, seed 0, each request's draw keyed by
#: its relevance vector, so a new draw every round and user) and "popular" (the candidates by
#: popularity, `PopularK`: distinct users in the world's *starting* log, learned once when the
#: loop fits the re-ranker — the loop never refits re-rankers, so the popularity does not
#: follow the loop's clicks and items that enter during the loop have 0; ties by the ranker's
#: order). The loop's `SimConfig.n_candidates` replaces their `n_candidates`.
PIPELINES: dict[str, PipelineSpec] = {
    "base": _variant("base", StageSpec("category-cap", {"max_per_category": 2})),
    "fast-dpp": _variant("fast-dpp", StageSpec("dpp", {"theta": 0.5})),
    "p-dpp": _variant("p-dpp", StageSpec("pdpp")),
    "ours": _variant("ours", StageSpec("rt-dpp")),
    "graph-dpp": _variant("graph-dpp", StageSpec("dpp", {"theta": 0.5})),
    "none": _variant("none", None),
    "random": _variant("random", StageSpec("random-k")),
    "popular": _variant("popular", StageSpec("popular-k")),
}

#: The item space each variant's re-ranker measures similarity in: "genre" (the world's
#: attribute vectors) or "graph" (the retriever's embeddings, which follow every update).
#: The sanity rows read no similarity; "genre" only gives their `fit` its item vectors.
SPACES: dict[str, str | None] = {
    "base": "genre",
    "fast-dpp": "genre",
    "p-dpp": "genre",
    "ours": "graph",
    "graph-dpp": "graph",
    "none": None,
    "random": "genre",
    "popular": "genre",
}


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
        propensity_window: tracker window in rounds (Eq. 2's time-based sliding window; the
            paper gives no length). 10: at the measured ≈ 0.6 clicks per user and round
            (ML-1M world, 300 users) a user then has ≈ 6 positives in the window; with the
            former 3, once the starting history expired (round 4) only ≈ 33% of users had the
            2 positives Eq. 2 needs, the rest got `default_theta` = 0.5, so θ_u's median was
            exactly 0.5 and "ours" ≈ graph-DPP at θ = 0.5. With 10 every user has an s_u and
            θ_u spreads (10th/90th percentiles ≈ 0.23/0.80 over rounds 1–8).
        seed: seeds the choice model's draws and the metric samplers.
        choice: keyword arguments of :class:`ChoiceModel`.
        jaccard_pairs: user pairs sampled for the between-user Jaccard.
        exclude_last_feed: also exclude the items of the user's previous feed (impression
            discounting: shown-but-ignored items are not shown again next round).
        ranker: rank the retrieved candidates with the loop's click model
            (:class:`divrec.simulate.ranker.ExposureRanker`, refitted every round on every
            exposure so far) and feed its scores to the re-ranker; False: the re-ranker
            gets the retrieval cosine (the former loop).
        learn_declines: the retriever's per-round update also takes the round's declines
            (exposed, not clicked) as hard negatives `(anchor, declined)`, the anchor drawn
            uniformly from the user's query history of that round
            (`GraphRetriever.update(negative_pairs=…)`); False: clicks only.
    """

    rounds: int = 30
    k: int = 10
    n_candidates: int = 100
    n_recent: int = 10
    update_steps: int = 5
    propensity_window: float = 10.0
    seed: int = 0
    choice: dict = field(default_factory=dict)
    jaccard_pairs: int = 20_000
    exclude_last_feed: bool = False
    ranker: bool = True
    learn_declines: bool = True


def fit_retriever(world: World, params: dict | None = None):
    """A `GraphRetriever` (the `RETRIEVER` stage with `params` over its config values) fitted
    on the world's starting log (fit once, copy per variant)."""
    stage = StageSpec(RETRIEVER.name, {**RETRIEVER.params, **(params or {})})
    return stage.build("retriever").fit(world.start_log)


def pipeline_spec(pipeline: str | PipelineSpec, cfg: SimConfig) -> tuple[PipelineSpec, str | None]:
    """The variant `pipeline` (a name of `PIPELINES`, or any spec over the graph retriever
    without a ranking stage) with `cfg.n_candidates`, and the space of its re-ranker.

    A spec's re-ranker works in the graph space; a named variant's in `SPACES[name]`.

    Raises:
        ValueError: an unknown name, another retriever, or a ranking stage.
    """
    if isinstance(pipeline, str):
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
        spec, space = PIPELINES[pipeline], SPACES[pipeline]
    else:
        spec, space = pipeline, "graph" if pipeline.reranker is not None else None
        if spec.retriever.name != RETRIEVER.name:
            raise ValueError(
                f"the simulator retrieves with {RETRIEVER.name!r}, not {spec.retriever.name!r}"
            )
        if spec.ranker is not None:
            raise ValueError(
                "the simulator's ranking stage is SimConfig.ranker; drop the spec's ranker"
            )
    return dataclasses.replace(spec, n_candidates=cfg.n_candidates), space


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


def make_reranker(
    pipeline: str | PipelineSpec, world: World, embeddings: np.ndarray, tracker, space=None
):
    """The fitted re-ranker of a variant (None without one) and its similarity space.

    The re-ranker is built from the spec's registry name and config values; the world's
    inputs are given here: the item vectors of its space (`world.attributes` for "genre",
    the graph `embeddings` padded to the whole catalogue for "graph") and, for a real-time
    personalized DPP, the loop's propensity `tracker`.

    Args:
        pipeline: a name of `PIPELINES` or a `PipelineSpec` (see `pipeline_spec`).
        world: the world.
        embeddings: the retriever's current item embeddings.
        tracker: the loop's `RealtimePropensityTracker`.
        space: "genre" or "graph" (None: the variant's own, see `pipeline_spec`).

    Returns:
        `(reranker, space)`, `(None, None)` without a re-ranker.
    """
    from divrec.rerank.personalized import RealtimePersonalizedDPP

    spec, own = pipeline_spec(pipeline, SimConfig())
    stage = spec.reranker
    if stage is None:
        return None, None
    space = space or own
    if space not in ("genre", "graph"):
        raise ValueError(f"space must be 'genre' or 'graph', got {space!r}")
    cls = resolve("re-ranker", stage.name)
    raw = {**preset_params("re-ranker", stage.name), **dict(stage.params)}
    params = coerce_params(cls, raw, f"re-ranker {stage.name!r}")
    if isinstance(cls, type) and issubclass(cls, RealtimePersonalizedDPP):
        params["tracker"] = tracker
    reranker = cls(**params)
    if space == "graph":
        vectors = np.zeros((world.n_items, embeddings.shape[1]), dtype=np.float32)
        vectors[: embeddings.shape[0]] = embeddings
    else:
        vectors = world.attributes
    return reranker.fit(_fit_log(world), item_vectors=vectors), space


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
    fewer); NaN with fewer than 2 users.

    The loop's own copy of :func:`divrec.metrics.pairwise_jaccard`, kept so that committed
    simulator numbers do not move: with sampled pairs (more than `pairs` user pairs, e.g.
    the 1,000-user runs) the two are bit-identical (same pair sampler), but with all pairs
    (small runs, e.g. ``--quick``) `pairwise_jaccard` sums in another order (last-bit
    differences), and a user with an empty set counts here as similarity 0 to everyone
    while `pairwise_jaccard` leaves such users out."""
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

    Every headline is in a fixed, model-independent space — "svd" (the reference SVD of the
    whole real log) and "genre" (the world's attributes); "graph" (the variant's own,
    evolving embedding at exposure time) is a labelled secondary column only.

    * `ilad_<space>`: mean over users of ILAD (NOTES Eq. 9: mean pairwise `1 − cos`) of the
      exposed `k`-item feed;
    * `rd`: the paper's **system-level** retrieval diversity (NOTES (9): how different the
      retrieval results are *across users*), `1 − J` with `J` the mean between-user Jaccard
      of the `N`-item retrieval sets (:func:`between_user_jaccard`, sampled pairs: the
      loop's copy of :func:`divrec.metrics.pairwise_jaccard`, bit-identical to it with
      sampled pairs); `retrieval_jaccard` is `J`;
    * `rd_<space>`: system-level RD in a space: the mean between-user cross-list distance of
      the retrieval sets (:func:`divrec.metrics.between_user_distance`, `1 − m_u · m_v`);
    * `between_<space>`: the same between-user distance of the exposed feeds;
    * `retrieval_ilad_<space>`: the per-user notion formerly called RD: mean over users of
      the ILAD of each user's own `N` retrieved candidates (not system-level);
    * `retrieval_gini`: Gini of how many users' retrieval sets hold each pool item;
    * `jaccard`: between-user similarity of the feeds (:func:`between_user_jaccard`);
    * `coverage`: distinct exposed items / items in the pool; `retrieval_coverage`: the
      same for the retrieved candidates; `gini`: exposure Gini over the pool;
    * `new_item_share`: share of exposures that are churned-in (new) items;
    * `clicks`: clicks per user in the round (the VV analog); `session_length`: mean over
      users of the current streak of consecutive rounds with at least one click.
    """
    from divrec.metrics.system import between_user_distance, union_concentration

    out = {}
    for name, vec in spaces.items():
        out[f"ilad_{name}"] = float(np.nanmean(ilad(lists, vec)))
        out[f"retrieval_ilad_{name}"] = float(np.nanmean(ilad(retrieved, vec)))
        out[f"rd_{name}"] = between_user_distance(retrieved, vec)
        out[f"between_{name}"] = between_user_distance(lists, vec)
    out["retrieval_jaccard"] = between_user_jaccard(retrieved, n_pool, jaccard_pairs, seed)
    out["rd"] = 1.0 - out["retrieval_jaccard"]
    out["retrieval_gini"] = union_concentration(retrieved, n_pool)["gini"]
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


def _theta_values(reranker, query: Query) -> np.ndarray:
    """Each request's θ: the tracker's (real-time p-DPP), the entropy θ (p-DPP), else NaN."""
    from divrec.rerank.personalized import (
        PersonalizedDPP,
        RealtimePersonalizedDPP,
        entropy_theta,
    )

    if isinstance(reranker, RealtimePersonalizedDPP):
        return reranker.active_tracker.thetas(query.users.tolist(), query.now)
    if isinstance(reranker, PersonalizedDPP):
        counts = reranker._request_inputs(query, None)["user_category_counts"]
        return entropy_theta(counts, reranker.theta_low, reranker.theta_high)
    return np.full(len(query), np.nan)


def run_simulation(
    world: World,
    pipeline: str | PipelineSpec,
    cfg: SimConfig,
    retriever=None,
    retriever_params: dict | None = None,
    reference_vectors: np.ndarray | None = None,
    progress: bool = False,
) -> dict:
    """Runs the loop for one re-ranking variant.

    Args:
        world: the world (:func:`divrec.simulate.make_world`).
        pipeline: a name of `PIPELINES`, or a `PipelineSpec` over the graph retriever (its
            re-ranker works in the graph space; see `pipeline_spec`).
        cfg: the settings.
        retriever: a fitted `GraphRetriever` to start from (deep-copied: the caller's is
            not modified), or None to fit the spec's retriever with `retriever_params` over
            its config values.
        retriever_params: `GraphRetriever` parameters when fitting here.
        reference_vectors: `(n_items, d)` the reference SVD space (None: computed from
            `world.full_log`).
        progress: show a progress bar over rounds.

    Returns:
        `{"pipeline": name, "spec": the pipeline with every stage's full config (the
        retriever as started from), "rounds": [per-round metrics + "theta" quantiles +
        "seconds" by stage], "n_users"}`.
    """
    from rich.progress import track

    from divrec.metrics.reference import reference_item_vectors
    from divrec.pipeline import Pipeline
    from divrec.rerank.personalized import RealtimePropensityTracker

    spec, space = pipeline_spec(pipeline, cfg)
    name = pipeline if isinstance(pipeline, str) else spec.name
    if isinstance(cfg.rounds, bool) or cfg.rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {cfg.rounds}")
    rng = np.random.default_rng(cfg.seed)
    if retriever is not None:
        ret = copy.deepcopy(retriever)
    else:
        stage = StageSpec(
            spec.retriever.name, {**spec.retriever.params, **(retriever_params or {})}
        )
        ret = stage.build("retriever").fit(world.start_log)
    stored = PipelineSpec(
        StageSpec(spec.retriever.name, to_json_value(ret.get_params())),
        None,
        None if spec.reranker is None else spec.reranker.resolved("reranker"),
        spec.n_candidates,
        spec.label,
    ).to_dict()
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
    reranker, space = make_reranker(spec, world, ret.embeddings_, tracker, space)
    ranker = None
    if cfg.ranker:
        from divrec.simulate.ranker import ExposureRanker

        profiles = np.zeros((n_users, world.attributes.shape[1]))
        np.add.at(profiles, s.users, world.attributes[s.items])
        ranker = ExposureRanker(world.attributes, profiles)
    decline_rng = np.random.default_rng([cfg.seed, 7])  # the choice model's stream untouched
    pipe = Pipeline(ret, reranker=reranker, n_candidates=spec.n_candidates)
    streak = np.zeros(n_users, dtype=np.int64)
    last_feed = None
    records = []
    for r in track(range(1, cfg.rounds + 1), description=name, disable=not progress):
        sec = {}
        t0 = time.perf_counter()
        n_pool = world.pool_size(r)
        if n_pool > ret.n_items_:
            ret.update(new_features=world.features[ret.n_items_ : n_pool], steps=0)
        if space == "graph":
            reranker.item_vectors_ = ret.embeddings_
        tracker.item_vectors = ret.embeddings_  # the setter refreshes s_u (new space)
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
        ranked, rx = (cand, None) if ranker is None else ranker.rank(users, cand)
        sec["rank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        thetas = np.full(n_users, np.nan)
        # Eq. 2's s_u of every user at this round (None → NaN: < 2 positives in the window,
        # θ_u = default_theta); fed for every variant, so the diagnostic is comparable
        s_u = np.array(
            [np.nan if (v := tracker.similarity(int(u), float(r))) is None else v for u in users]
        )
        if reranker is None:
            lists = ranked.head(cfg.k).ids
        else:
            thetas = _theta_values(reranker, query)
            lists = reranker(query, ranked, cfg.k).head(cfg.k).ids
        sec["rerank"] = time.perf_counter() - t0
        last_feed = lists
        t0 = time.perf_counter()
        order = env.respond(users, lists, rng)
        sec["feedback"] = time.perf_counter() - t0
        exposed_space = ret.embeddings_  # graph-space metrics: the space at exposure time
        clicked = order >= 0
        aucs = {}
        if ranker is not None:
            t0 = time.perf_counter()
            # features of the exposed items, from the ranked candidates (B, K, N) match
            at = np.argmax(lists[:, :, None] == ranked.ids[:, None, :], axis=2)
            xl = np.take_along_axis(rx, at[..., None], axis=1)
            ok = lists >= 0
            from divrec.simulate.ranker import roc_auc

            aucs = {
                "rank_auc": roc_auc(ranker.score(xl)[ok], clicked[ok]),
                "retrieval_auc": roc_auc(xl[..., 0][ok], clicked[ok]),
            }
            ranker.observe(users, lists, clicked, xl)
            sec["rank"] += time.perf_counter() - t0
        neg_pairs = None
        if cfg.learn_declines:
            rows, cols = np.nonzero((lists >= 0) & ~clicked)
            anchors = np.full(rows.size, -1, dtype=np.int64)
            for u in np.unique(rows):
                valid = hist[u][hist[u] >= 0]
                if valid.size:
                    sel = rows == u
                    anchors[sel] = decline_rng.choice(valid, int(sel.sum()))
            keep = anchors >= 0
            neg_pairs = np.stack([anchors[keep], lists[rows[keep], cols[keep]]], axis=1)
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
        stats = ret.update(sessions=sessions, steps=cfg.update_steps, negative_pairs=neg_pairs)
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
        rec["theta_defined"] = float(np.isfinite(s_u).mean())
        rec.update(aucs)
        rec["declines_trained"] = int(stats.get("hard_pairs", 0))
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
            s_u=_quantiles(s_u),
            seconds=sec,
        )
        records.append(rec)
    return {"pipeline": name, "spec": stored, "rounds": records, "n_users": n_users}
