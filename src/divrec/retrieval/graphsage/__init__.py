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
neighbour sampling with replacement (`fanouts` per layer, the GraphSAGE minibatch tree) or,
with `neighbor_sampling="walk"`, random-walk neighbour sampling (the WeChat paper's: each
sampled neighbour is where a weighted walk of `U{1..L}` steps ends), and weighted random
walks (next node ∝ edge weight) for the positive pairs. `cold_dropout` removes all neighbours of
a share of the training targets so that the model learns to embed featureless-graph (new)
items. Inference aggregates all neighbours of the (optionally pruned) graph.

Layout: `.sampling` (the torch samplers), `.embedder` (node features, the GraphSAGE module
and its training), `.model` (`GraphRetrieverConfig`, `GraphRetriever`: config, fit,
incremental update, scoring and faiss retrieval).
"""

from divrec.retrieval.graphsage.embedder import GraphSAGEEmbedder, item_attribute_features
from divrec.retrieval.graphsage.model import GraphRetriever, GraphRetrieverConfig
from divrec.retrieval.graphsage.sampling import (
    TorchCSR,
    random_walks,
    sample_neighbors,
    walk_aggregate,
    walk_neighborhood_matrix,
    walk_neighbors,
    walk_positives,
    weighted_step,
)

__all__ = [
    "GraphRetriever",
    "GraphRetrieverConfig",
    "GraphSAGEEmbedder",
    "TorchCSR",
    "item_attribute_features",
    "random_walks",
    "sample_neighbors",
    "walk_aggregate",
    "walk_neighborhood_matrix",
    "walk_neighbors",
    "walk_positives",
    "weighted_step",
]
