"""The graph retrieval stage: its config, fit / incremental update and scoring.

WeChat graph-exploration paper, Sec. 3.1: the user's recent positives → top-N items by
cosine of the GraphSAGE embeddings (`divrec.retrieval.graphsage.embedder`), faiss for the
search.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.nn.train import training_scope
from divrec.retrieval.ann import AnnIndex, l2_normalize
from divrec.retrieval.base import Recommender, check_list_length, top_k
from divrec.retrieval.graph import ItemGraph, prune_top_neighbors
from divrec.retrieval.graphsage.config import GraphRetrieverConfig
from divrec.retrieval.graphsage.embedder import (
    GraphSAGEEmbedder,
    _make_module,
    item_attribute_features,
)
from divrec.retrieval.graphsage.sampling import TorchCSR

__all__ = ["GraphRetriever", "GraphRetrieverConfig"]


class GraphRetriever(Recommender):
    """Graph retrieval: the user's recent positives → top-N items by cosine of GraphSAGE
    embeddings (WeChat graph-exploration paper, Sec. 3.1; faiss for the search).

    The user's query vector is the mean of the L2-normalized embeddings of the last
    `n_recent` positives (fresh `Query.history`, else the latest training positives), and
    the score of item `j` is the cosine between `j` and that mean (`aggregate="mean"`: the
    mean cosine to the positives up to a per-user positive factor; retrieval is a faiss search
    of the mean), or the largest cosine to any of them (`aggregate="max"`, exact numpy).

    Hyperparameters: `GraphRetrieverConfig`.

    Attributes:
        graph_: the `ItemGraph`.
        features_: `(n_items, F)` float32 node features.
        embeddings_: `(n_items, dim)` float32 L2-normalized item embeddings.
        module_: the torch GraphSAGE module.
        recent_: `(n_users, n_recent)` int64 latest training positives, −1 padded.
        train_stats_: pairs, seconds, edges, per-epoch losses of the last training call.
        train_loss_: mean training loss of each epoch of `fit`.
    """

    Config = GraphRetrieverConfig
    supports_history = True
    _transient = ("_embedder", "_index", "_tgraph")

    # ---------------------------------------------------------------- fitting
    def _embedder_obj(self) -> GraphSAGEEmbedder:
        emb = getattr(self, "_embedder", None)
        if emb is None:
            emb = GraphSAGEEmbedder(self.config)
            self._embedder = emb
        return emb

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        if data is None:
            raise ValueError("GraphRetriever needs Interactions (sessions, item attributes)")
        with training_scope(self.seed, self.threads, self.device):
            self._train(data)

    def _train(self, data: Interactions) -> None:
        """The fit, inside `training_scope` (torch's global RNG is seeded with `seed`)."""
        self.graph_ = ItemGraph(
            session_gap=self.session_gap, window=self.window, min_value=self.min_value
        ).fit(data)
        self.features_ = item_attribute_features(data)
        emb = self._embedder_obj().init(
            self.features_.shape[1], data.n_items if self.id_embeddings else 0
        )
        self.module_ = emb.module
        self._refresh_graph()
        pool = np.flatnonzero(self.graph_.degrees() > 0)
        epoch_steps = max(1, -(-pool.size // self.batch_size))
        steps = 0 if pool.size == 0 else self.epochs * epoch_steps
        stats = {"steps": 0, "pairs": 0, "message_edges": 0, "seconds": 0.0, "loss": float("nan")}
        stats["epoch_loss"] = []
        if steps:
            stats = emb.train_steps(
                self._tgraph, self._features_t(), steps, pool, self.progress, epoch_steps
            )
        stats["edges"] = self.graph_.n_edges
        self.train_stats_ = stats
        self.train_loss_ = list(stats["epoch_loss"])
        self.recent_ = _recent_positives(data, self.n_recent, self.min_value)
        self._reembed()

    def _features_t(self):
        import torch

        return torch.from_numpy(self.features_)

    def _refresh_graph(self) -> None:
        self.pruned_ = prune_top_neighbors(self.graph_.adjacency_, self.max_neighbors)
        self._tgraph = TorchCSR(self.pruned_)

    def _reembed(self) -> None:
        emb = self._embedder_obj()
        emb.module = self.module_
        self.embeddings_ = emb.embed_all(self.pruned_, self._features_t())
        self._index = None

    def update(
        self,
        sessions: list[list[int]] | None = None,
        new_features: np.ndarray | None = None,
        steps: int = 5,
        focus_share: float = 0.5,
        negative_pairs: np.ndarray | None = None,
    ) -> dict:
        """Incremental update (warm start): new edges from `sessions`, new nodes with
        `new_features` `(n_new, F)`, `steps` more minibatches (half of the walk starts from
        the endpoints of the new edges), then re-embedding of all items. Runs inside
        `training_scope` (torch's threads and global RNG are restored afterwards).

        `negative_pairs` `(P, 2)` are declines, `(anchor, declined)`: an item shown for
        `anchor` (e.g. one of the positives the request was retrieved from) and not
        clicked. Each minibatch then also draws `min(P, batch_size)` of them and adds the
        hard-negative term `decline_weight · mean log(1 + exp(z_aᵀ z_d / τ))` to the
        unsupervised loss (the same form as its degree^0.75 negatives), pushing the
        declined item from its anchor. Declines add no edge and remove none.

        Returns:
            Training stats with `"seconds"` of the whole update (`"hard_pairs"`: declines
            trained on).
        """
        t0 = time.perf_counter()
        self._check_fitted()
        if negative_pairs is not None:
            negative_pairs = np.asarray(negative_pairs, dtype=np.int64).reshape(-1, 2)
            n_after = self.n_items_ + (0 if new_features is None else len(new_features))
            if negative_pairs.size and (
                negative_pairs.min() < 0 or negative_pairs.max() >= n_after
            ):
                raise ValueError(f"negative_pairs: item index out of range [0, {n_after})")
        with training_scope(self.seed, self.threads, self.device):
            stats = self._update(sessions, new_features, steps, focus_share, negative_pairs)
        stats["seconds_total"] = time.perf_counter() - t0
        stats["edges"] = self.graph_.n_edges
        return stats

    def _update(
        self, sessions, new_features, steps: int, focus_share: float, negative_pairs=None
    ) -> dict:
        if new_features is not None:
            nf = np.asarray(new_features, dtype=np.float32)
            if nf.ndim != 2 or nf.shape[1] != self.features_.shape[1]:
                raise ValueError(f"new_features must have shape (n_new, {self.features_.shape[1]})")
            self.features_ = np.concatenate([self.features_, nf])
            n = self.features_.shape[0]
            self.graph_._grow(n)
            self.n_items_ = n
            self.user_items_ = sp.csr_matrix(
                (self.user_items_.data, self.user_items_.indices, self.user_items_.indptr),
                shape=(self.n_users_, n),
            )
        touched = np.zeros(0, dtype=np.int64)
        if sessions:
            self.graph_.add_sessions(sessions)
            touched = np.unique(np.concatenate([np.asarray(s, np.int64) for s in sessions]))
        self._refresh_graph()
        emb = self._embedder_obj()
        if not hasattr(emb, "optimizer"):  # loaded from a file: fresh optimizer, same weights
            import torch

            emb.module = self.module_
            emb.generator = torch.Generator().manual_seed(self.seed)
            emb.optimizer = torch.optim.Adam(self.module_.parameters(), lr=self.lr)
        deg = self.graph_.degrees()
        pool = np.flatnonzero(deg > 0)
        touched = touched[deg[touched] > 0] if touched.size else touched
        stats = {"steps": 0, "pairs": 0, "message_edges": 0, "seconds": 0.0, "loss": float("nan")}
        stats["hard_pairs"] = 0
        if steps and pool.size:
            n_focus = int(round(focus_share * pool.size)) if touched.size else 0
            reps = max(1, n_focus // max(touched.size, 1)) if n_focus else 0
            mix = np.concatenate([pool, np.repeat(touched, reps)]) if reps else pool
            hard = None
            if negative_pairs is not None and negative_pairs.size and self.decline_weight > 0:
                import torch

                hard = torch.from_numpy(negative_pairs)
            stats = emb.train_steps(
                self._tgraph, self._features_t(), steps, mix, self.progress, hard_pairs=hard
            )
        self._reembed()
        return stats

    # ---------------------------------------------------------------- scoring
    def item_vectors(self) -> np.ndarray:
        """`(n_items, dim)` the graph embeddings (the re-ranker's similarity space)."""
        return self.embeddings_

    def _query_items(self, query: Query) -> np.ndarray:
        if query.history is not None:
            h = query.history[:, -self.n_recent :]
            if query.history_values is not None and self.min_value is not None:
                hv = query.history_values[:, -self.n_recent :]
                h = np.where(hv >= self.min_value, h, -1)
            return h
        return self.recent_[query.users]

    def _query_vectors(self, recent: np.ndarray) -> np.ndarray:
        e = self.embeddings_
        valid = recent >= 0
        vec = (e[np.maximum(recent, 0)] * valid[..., None]).sum(1)
        return l2_normalize(vec)  # zero rows (no recent positive) stay zero

    def _scores(self, recent: np.ndarray) -> np.ndarray:
        e = self.embeddings_
        if self.aggregate == "mean":
            return self._query_vectors(recent) @ e.T
        out = np.full((recent.shape[0], e.shape[0]), 0.0, dtype=np.float32)
        valid = recent >= 0
        sims = np.einsum("bld,nd->bln", e[np.maximum(recent, 0)], e)
        sims = np.where(valid[..., None], sims, -np.inf)
        out = sims.max(1)
        return np.where(np.isfinite(out), out, 0.0)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self._scores(self.recent_[users])

    def _score_history(self, query: Query) -> np.ndarray:
        return self._scores(self._query_items(query))

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        recent = self._query_items(query)
        e = self.embeddings_
        cand = e[items]  # (B, C, d)
        if self.aggregate == "mean":
            return np.einsum("bcd,bd->bc", cand, self._query_vectors(recent))
        valid = recent >= 0
        sims = np.einsum("bcd,bld->bcl", cand, e[np.maximum(recent, 0)])
        sims = np.where(valid[:, None, :], sims, -np.inf).max(2)
        return np.where(np.isfinite(sims), sims, 0.0)

    def __call__(
        self, query: Query, candidates: Candidates | None = None, k: int | None = None
    ) -> Candidates:
        """Retrieval by faiss search of the query vectors (mean aggregate); ranking of given
        candidates and the "max" aggregate go through the base class."""
        if candidates is not None or self.aggregate != "mean":
            return super().__call__(query, candidates, k)
        if not isinstance(query, Query):
            raise TypeError(f"query must be a Query, got {type(query).__name__}")
        k = check_list_length(k)
        self._check_fitted()
        if query.history is None:
            self._check_users(query.users)
        recent = self._query_items(query)
        if query.history is not None and query.history.size:
            if query.history.max() >= self.n_items_:
                raise ValueError(f"history: item index out of range [0, {self.n_items_})")
        seen = None
        if query.history is None and query.exclude_seen:
            seen = self.user_items_[query.users]
        excl = (
            query.excluded_items(self.n_items_, seen)
            if (query.exclude_seen or query.exclude is not None)
            else sp.csr_matrix((len(query), self.n_items_))
        )
        extra = int(np.diff(excl.indptr).max(initial=0))
        kk = min(self.n_items_, k + extra)
        if self._index is None:
            self._index = AnnIndex(self.index).fit(self.embeddings_)
        qv = self._query_vectors(recent)
        has = np.linalg.norm(qv, axis=1) > 0
        ids, sc = self._index.search(np.where(has[:, None], qv, 1.0), kk)
        sc = sc.astype(np.float64)
        sc[~has] = 0.0  # no recent positive: every item scores 0 (ties by index)
        if (~has).any():
            ids[~has] = np.arange(kk)
        if excl.nnz:
            from divrec.retrieval.base import _is_seen

            sc[_is_seen(excl, np.arange(len(query)), np.maximum(ids, 0))] = -np.inf
        sc[ids < 0] = -np.inf
        pos, top = top_k(sc, k)
        out = np.where(pos >= 0, np.take_along_axis(ids, np.maximum(pos, 0), axis=1), -1)
        return Candidates(out, top)

    def _rebuild_module(self, name: str, state: dict):
        if name != "module_":
            return super()._rebuild_module(name, state)
        n_ids = state["ids.weight"].shape[0] if "ids.weight" in state else 0
        return _make_module(state["inp.weight"].shape[1], self.hidden, self.dim, n_ids)

    def _after_load(self) -> None:
        self._embedder = None
        self._index = None
        if hasattr(self, "pruned_"):  # a fitted model (an unfitted one saves no graph)
            self._tgraph = TorchCSR(self.pruned_)


def _recent_positives(data: Interactions, n: int, min_value: float | None) -> np.ndarray:
    """`(n_users, n)` each user's last `n` positives by time (oldest → newest), −1 padded."""
    keep = np.ones(data.nnz, dtype=bool) if min_value is None else data.values >= min_value
    users, items = data.users[keep], data.items[keep]
    ts = data.timestamps[keep] if data.timestamps is not None else np.arange(users.size)
    order = np.lexsort((np.arange(users.size), ts, users))
    users, items = users[order], items[order]
    out = np.full((data.n_users, n), -1, dtype=np.int64)
    if users.size == 0:
        return out
    counts = np.bincount(users, minlength=data.n_users)
    ends = np.cumsum(counts)
    rank_from_end = ends[users] - 1 - np.arange(users.size)  # 0 = newest
    sel = rank_from_end < n
    col = n - 1 - rank_from_end[sel]
    short = np.maximum(n - counts, 0)  # left-align short histories: shift by the padding
    col = col - short[users[sel]]
    out[users[sel], col] = items[sel]
    return out
