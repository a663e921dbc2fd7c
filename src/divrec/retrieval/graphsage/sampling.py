"""GraphSAGE's samplers, in torch (PyG's need torch-sparse / torch-cluster).

Uniform neighbour sampling with replacement (the GraphSAGE minibatch tree, Hamilton et al.
2017) and weighted random walks (next node ∝ edge weight) on a CSR graph (`TorchCSR`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["TorchCSR", "random_walks", "sample_neighbors", "walk_positives", "weighted_step"]


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
