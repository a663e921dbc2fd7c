"""GraphSAGE's samplers, in torch (PyG's need torch-sparse / torch-cluster).

Uniform neighbour sampling with replacement (the GraphSAGE minibatch tree, Hamilton et al.
2017), random-walk neighbour sampling (the WeChat paper, Sec. 3.1: "Random walk is adopted
to sample neighbours of each node"; `walk_neighbors`) and weighted random walks (next node
∝ edge weight) on a CSR graph (`TorchCSR`). `walk_neighborhood` is the expected
neighbourhood of the walk sampler, `(1/L) Σ_{s=1..L} P^s` with `P = D^-1 W`, used for the
full-neighbourhood aggregation at inference.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "TorchCSR",
    "random_walks",
    "sample_neighbors",
    "walk_aggregate",
    "walk_neighborhood_matrix",
    "walk_neighbors",
    "walk_positives",
    "weighted_step",
]


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


def walk_neighbors(graph: TorchCSR, nodes, fanout: int, length: int, generator):
    """`fanout` neighbours per node sampled by weighted random walks (WeChat Sec. 3.1).

    Each sample is the node a weighted random walk from the target reaches after `s` steps,
    `s` uniform in `{1, …, length}` (one walk per sample), so a neighbour `j` of `u` is drawn
    with probability `M_uj = (1/L) Σ_{s=1..L} (P^s)_uj`, `P = D^-1 W` the weighted transition
    matrix: heavier co-occurrences and multi-hop "importance" (PinSage's random-walk
    neighbourhoods, without its top-T cut). A walk can return to the target (`s ≥ 2`), which
    then counts as its own neighbour. `length = 1` is one weighted hop.

    Args:
        graph: the graph (symmetric weights: a walk from a non-isolated node never dies).
        nodes: `(M,)` int64 node indices; −1 entries give −1 rows.
        fanout: samples per node.
        length: L ≥ 1.
        generator: a `torch.Generator`.

    Returns:
        `(M, fanout)` int64 neighbours; rows of −1 or isolated nodes are −1.
    """
    import torch

    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    nodes = torch.as_tensor(nodes, dtype=torch.int64)
    m = nodes.shape[0]
    starts = nodes.repeat_interleave(fanout)
    walks = random_walks(graph, starts, length, generator)  # (M·fanout, L + 1)
    step = torch.randint(1, length + 1, (starts.shape[0],), generator=generator)
    out = walks[torch.arange(starts.shape[0]), step]
    return out.reshape(m, fanout)


def walk_neighborhood_matrix(adjacency: sp.csr_matrix, length: int) -> sp.csr_matrix:
    """`M = (1/L) Σ_{s=1..L} P^s`, `P = D^-1 W` (rows of isolated nodes zero): the
    distribution `walk_neighbors` samples from, as a sparse matrix (tests, small graphs)."""
    p = _transition(adjacency)
    acc = sp.csr_matrix(p.shape, dtype=np.float64)
    cur = sp.identity(p.shape[0], format="csr", dtype=np.float64)
    for _ in range(length):
        cur = (cur @ p).tocsr()
        acc = acc + cur
    return (acc / length).tocsr()


def _transition(adjacency: sp.csr_matrix) -> sp.csr_matrix:
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    return (sp.diags(inv) @ a).tocsr()


def walk_aggregate(adjacency: sp.csr_matrix, x: np.ndarray, length: int) -> np.ndarray:
    """`M x` with `M` of `walk_neighborhood_matrix` (never formed: `L` sparse products
    `P (P (… x))`): the expectation of the mean over `walk_neighbors` samples.

    Args:
        adjacency: `(n, n)` symmetric non-negative weights.
        x: `(n, d)` node features.
        length: L ≥ 1.

    Returns:
        `(n, d)` float32 (rows of isolated nodes zero).
    """
    p = _transition(adjacency).astype(np.float32)
    cur = np.asarray(x, dtype=np.float32)
    acc = np.zeros_like(cur)
    for _ in range(length):
        cur = p @ cur
        acc += cur
    return acc / length
