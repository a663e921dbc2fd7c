"""GraphSAGE item embeddings on the co-occurrence graph and the graph retrieval stage.

WeChat graph-exploration paper, Sec. 3.1, Eq. 1 (NOTES.md): two GraphSAGE layers with the
mean aggregator (`torch_geometric.nn.SAGEConv`),

    h_v^(l) = σ(W^(l) · concat(h_v^(l−1), mean{h_u^(l−1) : u ∈ N(v)})),

(`SAGEConv` computes `W_1 h_v + W_2 mean(h_u)`, the same linear map of the concatenation),
on node features built from item attributes (categories / genres, year, …) so that an item
without edges (a new item) is embedded inductively from its features alone. Training is the
unsupervised GraphSAGE loss (Hamilton et al. 2017, Eq. 1 there):

    J(z_u) = −log σ(z_uᵀ z_v / τ) − Σ_{n ∼ P_n} log σ(−z_uᵀ z_n / τ),

with `v` co-occurring with `u` on a short weighted random walk, negatives from the
degree^0.75 distribution, L2-normalized `z` and a temperature `τ`.

The samplers are our own, in torch (PyG's need torch-sparse / torch-cluster): uniform
neighbour sampling with replacement (`fanouts` per layer, the GraphSAGE minibatch tree) and
weighted random walks (next node ∝ edge weight). `cold_dropout` removes all neighbours of
a share of the training targets so that the model learns to embed featureless-graph (new)
items. Inference aggregates all neighbours of the (optionally pruned) graph.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.retrieval.ann import AnnIndex, l2_normalize
from divrec.retrieval.base import Recommender, check_list_length, top_k
from divrec.retrieval.graph import ItemGraph, prune_top_neighbors

__all__ = [
    "GraphRetriever",
    "GraphSAGEEmbedder",
    "TorchCSR",
    "item_attribute_features",
    "random_walks",
    "sample_neighbors",
]


# --------------------------------------------------------------------------- samplers
class TorchCSR:
    """A weighted graph in CSR form as torch tensors (for the samplers).

    Attributes:
        indptr: `(n + 1,)` int64. indices: `(nnz,)` int64. cumw: `(nnz,)` float64 global
        cumulative sum of the edge weights. degree: `(n,)` int64.
    """

    def __init__(self, adjacency: sp.csr_matrix) -> None:
        import torch

        a = adjacency.tocsr()
        a.sort_indices()
        self.n = a.shape[0]
        self.indptr = torch.from_numpy(a.indptr.astype(np.int64))
        self.indices = torch.from_numpy(a.indices.astype(np.int64))
        w = np.asarray(a.data, dtype=np.float64)
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("edge weights must be finite and non-negative")
        self.cumw = torch.from_numpy(np.cumsum(w))
        self.degree = self.indptr[1:] - self.indptr[:-1]


def sample_neighbors(graph: TorchCSR, nodes, fanout: int, generator) -> object:
    """`fanout` neighbours per node, uniformly with replacement (GraphSAGE minibatches).

    Args:
        graph: the graph.
        nodes: `(M,)` int64 node indices; −1 entries give −1 rows.
        fanout: samples per node.
        generator: a `torch.Generator`.

    Returns:
        `(M, fanout)` int64 neighbours; rows of nodes without neighbours are −1.
    """
    import torch

    nodes = torch.as_tensor(nodes, dtype=torch.int64)
    ok = nodes >= 0
    safe = torch.where(ok, nodes, torch.zeros_like(nodes))
    deg = torch.where(ok, graph.degree[safe], torch.zeros_like(nodes))
    u = torch.rand((nodes.shape[0], fanout), generator=generator, dtype=torch.float64)
    off = torch.floor(u * deg[:, None].to(torch.float64)).to(torch.int64)
    off = torch.minimum(off, (deg[:, None] - 1).clamp(min=0))
    pos = graph.indptr[safe][:, None] + off
    out = graph.indices[pos.clamp(max=max(graph.indices.shape[0] - 1, 0))] if pos.numel() else pos
    return torch.where((deg > 0)[:, None], out, torch.full_like(pos, -1))


def weighted_step(graph: TorchCSR, nodes, generator):
    """One random-walk step: next node ∝ edge weight; −1 for −1 or isolated nodes."""
    import torch

    ok = nodes >= 0
    safe = torch.where(ok, nodes, torch.zeros_like(nodes))
    start, end = graph.indptr[safe], graph.indptr[safe + 1]
    ok = ok & (end > start)
    cum = graph.cumw
    if cum.numel() == 0:
        return torch.full_like(nodes, -1)
    base = torch.where(start > 0, cum[(start - 1).clamp(min=0)], torch.zeros_like(cum[:1]))
    total = cum[(end - 1).clamp(min=0)] - base
    u = torch.rand(nodes.shape[0], generator=generator, dtype=torch.float64)
    target = base + u * total
    pos = torch.searchsorted(cum, target, right=True)
    pos = torch.minimum(torch.maximum(pos, start), (end - 1).clamp(min=0))
    return torch.where(
        ok, graph.indices[pos.clamp(max=cum.numel() - 1)], torch.full_like(nodes, -1)
    )


def random_walks(graph: TorchCSR, starts, length: int, generator):
    """Weighted random walks: `P(next = j | i) = w_ij / Σ_k w_ik`.

    Args:
        graph: the graph.
        starts: `(M,)` int64 start nodes.
        length: steps per walk.
        generator: a `torch.Generator`.

    Returns:
        `(M, length + 1)` int64 walks (column 0 = the start); after a dead end, −1.
    """
    import torch

    cur = torch.as_tensor(starts, dtype=torch.int64)
    out = [cur]
    for _ in range(length):
        cur = weighted_step(graph, cur, generator)
        out.append(cur)
    return torch.stack(out, dim=1)


def walk_positives(walks, generator):
    """One positive per walk: a uniformly chosen visited node other than the start (−1 if
    the walk visited none). Returns `(M,)` int64."""
    import torch

    visited = walks[:, 1:]
    ok = (visited >= 0) & (visited != walks[:, :1])
    u = torch.rand(visited.shape, generator=generator)
    u = torch.where(ok, u, torch.full_like(u, -1.0))
    best = u.argmax(dim=1)
    pick = visited[torch.arange(walks.shape[0]), best]
    return torch.where(ok.any(dim=1), pick, torch.full_like(pick, -1))


# --------------------------------------------------------------------------- features
def item_attribute_features(data: Interactions) -> np.ndarray:
    """`(n_items, F)` float32 node features: the item categories (multi-hot) and the dense
    `item_features` of `data`, concatenated; a constant column so every item has one."""
    parts = [np.ones((data.n_items, 1), dtype=np.float32)]
    if data.item_categories is not None:
        parts.append(np.asarray(data.item_categories.todense(), dtype=np.float32))
    if data.item_features is not None:
        parts.append(np.asarray(data.item_features, dtype=np.float32))
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------- model
def _make_module(n_features: int, hidden: int, dim: int, n_ids: int = 0):
    import torch
    from torch_geometric.nn import SAGEConv

    class SAGE(torch.nn.Module):
        """Feature layer (+ optional ID embedding) → SAGEConv(mean) → ReLU → SAGEConv(mean)
        (Eq. 1, two layers)."""

        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(n_features, hidden)
            self.ids = torch.nn.Embedding(max(n_ids, 1), hidden) if n_ids else None
            if self.ids is not None:
                torch.nn.init.normal_(self.ids.weight, std=0.01)
            self.conv1 = SAGEConv(hidden, hidden, aggr="mean")
            self.conv2 = SAGEConv(hidden, dim, aggr="mean")

        def encode(self, x, ids=None, cold=None):
            h = self.inp(x)
            if self.ids is not None and ids is not None:
                known = ids < self.ids.num_embeddings
                if cold is not None:
                    known = known & ~cold
                e = self.ids(torch.where(known, ids, torch.zeros_like(ids)))
                h = h + e * known[:, None]
            return torch.relu(h)

    return SAGE()


class GraphSAGEEmbedder:
    """Trains and applies the 2-layer GraphSAGE model (see the module docstring).

    Not a pipeline stage itself: :class:`GraphRetriever` owns one and persists its module.
    """

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 64,
        fanouts: tuple[int, int] = (10, 5),
        walk_length: int = 3,
        negatives: int = 64,
        temperature: float = 0.2,
        cold_dropout: float = 0.2,
        lr: float = 0.01,
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.fanouts = fanouts
        self.walk_length = walk_length
        self.negatives = negatives
        self.temperature = temperature
        self.cold_dropout = cold_dropout
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def init(self, n_features: int, n_ids: int = 0):
        import torch

        torch.manual_seed(self.seed)
        self.module = _make_module(n_features, self.hidden, self.dim, n_ids)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr)
        return self

    # ---------------------------------------------------------------- sampled forward
    def forward_sampled(self, graph: TorchCSR, features, targets, cold=None):
        """`(B, dim)` embeddings of `targets` from the sampled 2-hop minibatch tree."""
        import torch

        f1, f2 = self.fanouts
        m = self.module
        b = targets.shape[0]
        n1 = sample_neighbors(graph, targets, f1, self.generator)  # (B, f1)
        if cold is not None:
            n1 = torch.where(cold[:, None], torch.full_like(n1, -1), n1)
        d1 = torch.cat([targets, n1.reshape(-1)])  # layer-1 destinations
        n2 = sample_neighbors(graph, d1, f2, self.generator)  # (|d1|, f2)
        if cold is not None:
            n2[:b] = torch.where(cold[:, None], torch.full_like(n2[:b], -1), n2[:b])
        valid2 = n2 >= 0
        src_ids = n2[valid2]
        dst2 = torch.arange(d1.shape[0]).repeat_interleave(f2).reshape(-1, f2)[valid2]
        d1c = d1.clamp(min=0)
        cold1 = (
            None if cold is None else torch.cat([cold, torch.zeros(d1.shape[0] - b, dtype=bool)])
        )
        h0_dst = m.encode(features[d1c], d1c, cold1)
        h0_src = m.encode(features[src_ids], src_ids)
        ei1 = torch.stack([torch.arange(src_ids.shape[0]), dst2])
        h1 = torch.relu(m.conv1((h0_src, h0_dst), ei1, size=(src_ids.shape[0], d1.shape[0])))
        valid1 = n1.reshape(-1) >= 0
        src1 = torch.arange(b, d1.shape[0])[valid1]
        dst1 = torch.arange(b).repeat_interleave(f1)[valid1]
        ei2 = torch.stack([src1 - b, dst1])
        self.last_message_edges = int(ei1.shape[1] + ei2.shape[1])
        return m.conv2((h1[b:], h1[:b]), ei2, size=(d1.shape[0] - b, b))

    def embed_all(self, adjacency: sp.csr_matrix, features) -> np.ndarray:
        """`(n, dim)` float32 L2-normalized embeddings of every node (all neighbours)."""
        import torch

        a = adjacency.tocoo()
        ei = torch.from_numpy(np.stack([a.col, a.row]).astype(np.int64))  # src → dst
        with torch.no_grad():
            m = self.module
            h0 = m.encode(features, torch.arange(features.shape[0]))
            h1 = torch.relu(m.conv1(h0, ei))
            z = m.conv2(h1, ei)
        return l2_normalize(z.numpy())

    # ---------------------------------------------------------------- training
    def train_steps(
        self,
        graph: TorchCSR,
        features,
        steps: int,
        starts_pool: np.ndarray,
        progress: bool = False,
    ) -> dict:
        """`steps` minibatches of the unsupervised loss; starts drawn from `starts_pool`.

        Returns:
            `{"steps", "pairs", "message_edges", "seconds", "loss"}`: positive (walk
            co-occurrence) pairs trained on, sampled message-passing edges of both layers,
            wall time, the loss of the last step.
        """
        import torch
        import torch.nn.functional as F

        self.module.train()
        deg = graph.degree.to(torch.float64)
        noise = deg.clamp(min=0) ** 0.75
        noise = noise + (noise.sum() == 0).to(torch.float64)  # all-isolated: uniform
        pool = torch.from_numpy(np.asarray(starts_pool, dtype=np.int64))
        pairs, edges, loss_val = 0, 0, float("nan")
        t0 = time.perf_counter()
        from rich.progress import track

        for _ in track(range(steps), description="GraphSAGE", disable=not progress):
            idx = torch.randint(0, pool.shape[0], (self.batch_size,), generator=self.generator)
            starts = pool[idx]
            walks = random_walks(graph, starts, self.walk_length, self.generator)
            pos = walk_positives(walks, self.generator)
            keep = pos >= 0
            starts, pos = starts[keep], pos[keep]
            if starts.numel() == 0:
                continue
            neg = torch.multinomial(
                noise, self.negatives, replacement=True, generator=self.generator
            )
            ids = torch.cat([starts, pos, neg])
            cold = torch.rand(ids.shape[0], generator=self.generator) < self.cold_dropout
            z = F.normalize(self.forward_sampled(graph, features, ids, cold), dim=1)
            b = starts.shape[0]
            zu, zv, zn = z[:b], z[b : 2 * b], z[2 * b :]
            pos_logit = (zu * zv).sum(1) / self.temperature
            neg_logit = zu @ zn.T / self.temperature
            loss = F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean(1).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            pairs += b
            edges += self.last_message_edges
            loss_val = float(loss.detach())
        self.module.eval()
        return {
            "steps": steps,
            "pairs": pairs,
            "message_edges": edges,
            "seconds": time.perf_counter() - t0,
            "loss": loss_val,
        }


# --------------------------------------------------------------------------- retrieval
class GraphRetriever(Recommender):
    """Graph retrieval: the user's recent positives → top-N items by cosine of GraphSAGE
    embeddings (WeChat graph-exploration paper, Sec. 3.1; faiss for the search).

    The user's query vector is the mean of the L2-normalized embeddings of the last
    `n_recent` positives (fresh `Query.history`, else the latest training positives), and
    the score of item `j` is the cosine between `j` and that mean (`aggregate="mean"`: the
    mean cosine to the positives up to a per-user positive factor; retrieval is a faiss search
    of the mean), or the largest cosine to any of them (`aggregate="max"`, exact numpy).

    Args:
        dim: embedding size.
        hidden: hidden width of the feature layer and of the first SAGEConv.
        fanout1: neighbours sampled per node in the first hop during training.
        fanout2: neighbours sampled per node in the second hop.
        walk_length: random-walk length of the positive sampler.
        negatives: negatives per minibatch (shared).
        temperature: τ of the loss.
        cold_dropout: share of training targets whose neighbours are dropped.
        epochs: passes over the nodes with edges (one walk start each per epoch).
        batch_size: walk starts per minibatch.
        lr: Adam learning rate.
        session_gap: seconds that end a session (graph construction).
        window: co-occurrence window within a session (None: all pairs).
        min_value: positives are events with value ≥ this (e.g. 4 for 1–5 ratings).
        max_neighbors: keep each node's heaviest edges for the GNN (None: all).
        n_recent: recent positives per user forming the query.
        aggregate: "mean" or "max" over the recent positives.
        index: faiss index kind ("flat" exact or "hnsw").
        id_embeddings: add a learned ID embedding of the items present at `fit` to the
            features (transductive part; items added later and `cold_dropout` targets have
            none, so they are embedded from attributes and edges only).
        seed: seed of the samplers and of the initialization.

    Attributes:
        graph_: the `ItemGraph`.
        features_: `(n_items, F)` float32 node features.
        embeddings_: `(n_items, dim)` float32 L2-normalized item embeddings.
        module_: the torch GraphSAGE module.
        recent_: `(n_users, n_recent)` int64 latest training positives, −1 padded.
        train_stats_: pairs, seconds, edges of the last training call.
    """

    supports_history = True

    def __init__(
        self,
        dim: int = 64,
        hidden: int = 64,
        fanout1: int = 10,
        fanout2: int = 5,
        walk_length: int = 3,
        negatives: int = 64,
        temperature: float = 0.2,
        cold_dropout: float = 0.2,
        epochs: int = 5,
        batch_size: int = 512,
        lr: float = 0.01,
        session_gap: float | None = 3600.0,
        window: int | None = 5,
        min_value: float | None = 4.0,
        max_neighbors: int | None = 64,
        n_recent: int = 10,
        aggregate: Literal["mean", "max"] = "mean",
        index: Literal["flat", "hnsw"] = "flat",
        id_embeddings: bool = True,
        seed: int = 0,
    ) -> None:
        if aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate must be 'mean' or 'max', got {aggregate!r}")
        if index not in ("flat", "hnsw"):
            raise ValueError(f"index must be 'flat' or 'hnsw', got {index!r}")
        for name, v in (("dim", dim), ("hidden", hidden), ("epochs", epochs),
                        ("batch_size", batch_size), ("n_recent", n_recent),
                        ("fanout1", fanout1), ("fanout2", fanout2)):  # fmt: skip
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= cold_dropout < 1.0:
            raise ValueError(f"cold_dropout must be in [0, 1), got {cold_dropout}")
        self.dim = dim
        self.hidden = hidden
        self.fanout1 = fanout1
        self.fanout2 = fanout2
        self.walk_length = walk_length
        self.negatives = negatives
        self.temperature = temperature
        self.cold_dropout = cold_dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.session_gap = session_gap
        self.window = window
        self.min_value = min_value
        self.max_neighbors = max_neighbors
        self.n_recent = n_recent
        self.aggregate = aggregate
        self.index = index
        self.id_embeddings = id_embeddings
        self.seed = seed

    _transient = ("_embedder", "_index", "_tgraph")

    # ---------------------------------------------------------------- fitting
    def _embedder_obj(self) -> GraphSAGEEmbedder:
        emb = getattr(self, "_embedder", None)
        if emb is None:
            emb = GraphSAGEEmbedder(
                self.dim, self.hidden, (self.fanout1, self.fanout2), self.walk_length,
                self.negatives, self.temperature, self.cold_dropout, self.lr,
                self.batch_size, self.seed,
            )  # fmt: skip
            self._embedder = emb
        return emb

    def _fit(self, matrix: sp.csr_matrix, data: Interactions | None) -> None:
        import torch

        torch.set_num_threads(1)
        if data is None:
            raise ValueError("GraphRetriever needs Interactions (sessions, item attributes)")
        self.graph_ = ItemGraph(self.session_gap, self.window, self.min_value).fit(data)
        self.features_ = item_attribute_features(data)
        emb = self._embedder_obj().init(
            self.features_.shape[1], data.n_items if self.id_embeddings else 0
        )
        self.module_ = emb.module
        self._refresh_graph()
        pool = np.flatnonzero(self.graph_.degrees() > 0)
        steps = 0 if pool.size == 0 else self.epochs * max(1, -(-pool.size // self.batch_size))
        stats = {"steps": 0, "pairs": 0, "message_edges": 0, "seconds": 0.0, "loss": float("nan")}
        if steps:
            stats = emb.train_steps(self._tgraph, self._features_t(), steps, pool)
        stats["edges"] = self.graph_.n_edges
        self.train_stats_ = stats
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
    ) -> dict:
        """Incremental update (warm start): new edges from `sessions`, new nodes with
        `new_features` `(n_new, F)`, `steps` more minibatches (half of the walk starts from
        the endpoints of the new edges), then re-embedding of all items.

        Returns:
            Training stats with `"seconds"` of the whole update.
        """
        t0 = time.perf_counter()
        self._check_fitted()
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
        if steps and pool.size:
            n_focus = int(round(focus_share * pool.size)) if touched.size else 0
            reps = max(1, n_focus // max(touched.size, 1)) if n_focus else 0
            mix = np.concatenate([pool, np.repeat(touched, reps)]) if reps else pool
            stats = emb.train_steps(self._tgraph, self._features_t(), steps, mix)
        self._reembed()
        stats["seconds_total"] = time.perf_counter() - t0
        stats["edges"] = self.graph_.n_edges
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
