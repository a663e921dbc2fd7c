"""The 2-layer GraphSAGE model, its node features and its unsupervised training.

WeChat graph-exploration paper, Sec. 3.1, Eq. 1: two `SAGEConv` layers with the mean
aggregator on item-attribute node features, trained with the unsupervised GraphSAGE loss
(Hamilton et al. 2017, Eq. 1 there) on walk co-occurrences and degree^0.75 negatives; see
the package docstring.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.nn.train import TrainLoop
from divrec.retrieval.ann import l2_normalize
from divrec.retrieval.graphsage.config import GraphRetrieverConfig
from divrec.retrieval.graphsage.sampling import (
    TorchCSR,
    random_walks,
    sample_neighbors,
    walk_aggregate,
    walk_neighbors,
    walk_positives,
)

__all__ = ["GraphSAGEEmbedder", "item_attribute_features"]


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

    Not a pipeline stage itself: :class:`GraphRetriever` owns one, built from its own config
    (`dim`, `hidden`, `fanout1`, `fanout2`, `walk_length`, `negatives`, `temperature`,
    `cold_dropout`, `lr`, `batch_size`, `seed`), and persists its module.
    """

    def __init__(self, config: GraphRetrieverConfig) -> None:
        self.config = config

    def init(self, n_features: int, n_ids: int = 0):
        """A fresh module, sampler generator and Adam optimizer; returns self.

        The module's default layer initializations draw from torch's global RNG: call this
        inside `divrec.nn.training_scope(seed)`, which seeds it.
        """
        import torch

        cfg = self.config
        self.module = _make_module(n_features, cfg.hidden, cfg.dim, n_ids)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=cfg.lr)
        return self

    # ---------------------------------------------------------------- sampled forward
    def sample(self, graph: TorchCSR, nodes, fanout: int):
        """`(M, fanout)` neighbours of `nodes` by the configured `neighbor_sampling`."""
        cfg = self.config
        if cfg.neighbor_sampling == "walk":
            return walk_neighbors(graph, nodes, fanout, cfg.neighbor_walk_length, self.generator)
        return sample_neighbors(graph, nodes, fanout, self.generator)

    def forward_sampled(self, graph: TorchCSR, features, targets, cold=None):
        """`(B, dim)` embeddings of `targets` from the sampled 2-hop minibatch tree."""
        import torch

        f1, f2 = self.config.fanout1, self.config.fanout2
        m = self.module
        b = targets.shape[0]
        n1 = self.sample(graph, targets, f1)  # (B, f1)
        if cold is not None:
            n1 = torch.where(cold[:, None], torch.full_like(n1, -1), n1)
        d1 = torch.cat([targets, n1.reshape(-1)])  # layer-1 destinations
        n2 = self.sample(graph, d1, f2)  # (|d1|, f2)
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
        """`(n, dim)` float32 L2-normalized embeddings of every node (all neighbours).

        "uniform" sampling: each layer aggregates the plain mean of all neighbours (the
        expectation of the uniform sampler); "walk": the walk distribution's expectation
        `(1/L) Σ_s P^s h` (`walk_aggregate`), through the layers' own linear maps
        (`SAGEConv`: `lin_l(aggregate) + lin_r(h_v)`).
        """
        import torch

        if self.config.neighbor_sampling == "walk":
            length = self.config.neighbor_walk_length
            with torch.no_grad():
                m = self.module
                h0 = m.encode(features, torch.arange(features.shape[0]))
                a0 = torch.from_numpy(walk_aggregate(adjacency, h0.numpy(), length))
                h1 = torch.relu(m.conv1.lin_l(a0) + m.conv1.lin_r(h0))
                a1 = torch.from_numpy(walk_aggregate(adjacency, h1.numpy(), length))
                z = m.conv2.lin_l(a1) + m.conv2.lin_r(h1)
            return l2_normalize(z.numpy())
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
        epoch_steps: int | None = None,
        hard_pairs=None,
    ) -> dict:
        """`steps` minibatches of the unsupervised loss; starts drawn from `starts_pool`.

        Args:
            graph: the (pruned) graph.
            features: `(n, F)` float32 node features (a tensor).
            steps: minibatches.
            starts_pool: node indices the walk starts are drawn from (uniformly).
            progress: show a progress bar.
            epoch_steps: minibatches per epoch of the per-epoch losses (None: all).
            hard_pairs: `(P, 2)` int64 tensor of `(anchor, declined)` hard negatives: each
                step draws `min(P, batch_size)` of them (with replacement) and adds
                `decline_weight · mean softplus(z_aᵀ z_d / τ)` to the loss.

        Returns:
            `{"steps", "pairs", "hard_pairs", "message_edges", "seconds", "loss",
            "epoch_loss"}`: positive (walk co-occurrence) pairs trained on, hard-negative
            pairs trained on, sampled message-passing edges of both layers, wall time, the
            loss of the last step, the mean loss of each epoch.
        """
        import torch
        import torch.nn.functional as F

        cfg = self.config
        self.module.train()
        deg = graph.degree.to(torch.float64)
        noise = deg.clamp(min=0) ** 0.75
        noise = noise + (noise.sum() == 0).to(torch.float64)  # all-isolated: uniform
        pool = torch.from_numpy(np.asarray(starts_pool, dtype=np.int64))
        pairs, edges, hard_n, loss_val = 0, 0, 0, float("nan")
        use_hard = hard_pairs is not None and hard_pairs.shape[0] > 0 and cfg.decline_weight > 0
        n_hard = min(hard_pairs.shape[0], cfg.batch_size) if use_hard else 0
        epoch_steps = epoch_steps or max(steps, 1)
        t0 = time.perf_counter()
        with TrainLoop("GraphSAGE", steps, progress=progress) as loop:
            for step in range(steps):
                idx = torch.randint(0, pool.shape[0], (cfg.batch_size,), generator=self.generator)
                starts = pool[idx]
                walks = random_walks(graph, starts, cfg.walk_length, self.generator)
                pos = walk_positives(walks, self.generator)
                keep = pos >= 0
                starts, pos = starts[keep], pos[keep]
                if starts.numel() == 0:
                    loop.record(0.0, weight=0.0)  # no positive pair: no step
                else:
                    neg = torch.multinomial(
                        noise, cfg.negatives, replacement=True, generator=self.generator
                    )
                    hp = torch.zeros((0, 2), dtype=torch.int64)
                    if n_hard:
                        pick = torch.randint(
                            0, hard_pairs.shape[0], (n_hard,), generator=self.generator
                        )
                        hp = hard_pairs[pick]
                    ids = torch.cat([starts, pos, neg, hp[:, 0], hp[:, 1]])
                    cold = torch.rand(ids.shape[0], generator=self.generator) < cfg.cold_dropout
                    z = F.normalize(self.forward_sampled(graph, features, ids, cold), dim=1)
                    b, nn_ = starts.shape[0], neg.shape[0]
                    zu, zv, zn = z[:b], z[b : 2 * b], z[2 * b : 2 * b + nn_]
                    pos_logit = (zu * zv).sum(1) / cfg.temperature
                    neg_logit = zu @ zn.T / cfg.temperature
                    loss = F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean(1).mean()
                    if n_hard:
                        za = z[2 * b + nn_ : 2 * b + nn_ + n_hard]
                        zd = z[2 * b + nn_ + n_hard :]
                        hard_logit = (za * zd).sum(1) / cfg.temperature
                        loss = loss + cfg.decline_weight * F.softplus(hard_logit).mean()
                    loss_val = loop.step(self.optimizer, loss, weight=b)
                    pairs += b
                    hard_n += n_hard
                    edges += self.last_message_edges
                if (step + 1) % epoch_steps == 0 or step + 1 == steps:
                    loop.end_epoch()
        self.module.eval()
        return {
            "steps": steps,
            "pairs": pairs,
            "hard_pairs": hard_n,
            "message_edges": edges,
            "seconds": time.perf_counter() - t0,
            "loss": loss_val,
            "epoch_loss": list(loop.train_loss),
        }
