"""`GraphRetrieverConfig`: the hyperparameters of the GraphSAGE retriever (its own module, so
the embedder and the retriever both import it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from divrec.nn.train import TrainingConfig, supports
from divrec.stage import param

__all__ = ["GraphRetrieverConfig"]


@dataclass(frozen=True, kw_only=True)
class GraphRetrieverConfig(TrainingConfig):
    """`GraphRetriever` hyperparameters (graph, GraphSAGE training and serving).

    Attributes:
        dim: embedding size.
        hidden: hidden width of the feature layer and of the first SAGEConv.
        fanout1: neighbours sampled per node in the first hop during training.
        fanout2: neighbours sampled per node in the second hop.
        walk_length: random-walk length of the positive sampler.
        neighbor_sampling: how the GraphSAGE minibatch tree samples neighbours: "uniform"
            (among the node's neighbours, with replacement, Hamilton et al. 2017) or "walk"
            (the WeChat paper's: the node reached after `s ~ U{1..neighbor_walk_length}`
            weighted random-walk steps; inference then aggregates the walk distribution's
            expectation `(1/L) Σ_s P^s` instead of the plain neighbour mean).
        neighbor_walk_length: L of the "walk" neighbour sampler.
        negatives: negatives per minibatch (shared), drawn ∝ degree^0.75.
        decline_weight: weight of the hard-negative term of `update(negative_pairs=…)`
            (declined items pushed from the items they were recommended for); 0: ignored.
        temperature: τ of the loss.
        cold_dropout: share of training targets whose neighbours are dropped.
        epochs: passes over the nodes with edges (one walk start each per epoch).
        batch_size: walk starts per minibatch.
        lr: Adam learning rate.
        session_gap: seconds that end a session (graph construction; `ItemGraph`).
        window: co-occurrence window within a session (None: all pairs).
        min_value: positives are events with value ≥ this (e.g. 4 for 1–5 ratings).
        max_neighbors: keep each node's heaviest edges for the GNN (None: all).
        n_recent: recent positives per user forming the query.
        aggregate: "mean" or "max" over the recent positives.
        index: faiss index kind ("flat" exact or "hnsw").
        id_embeddings: add a learned ID embedding of the items present at `fit` to the
            features (transductive part; items added later and `cold_dropout` targets have
            none, so they are embedded from attributes and edges only).
        threads: torch intra-op threads during `fit` and `update` (None: the
            `divrec.threads` policy; 0: every available core).
    """

    dim: int = param(64, ge=1)
    hidden: int = param(64, ge=1)
    fanout1: int = param(10, ge=1)
    fanout2: int = param(5, ge=1)
    walk_length: int = param(3, ge=1)
    neighbor_sampling: Literal["uniform", "walk"] = "uniform"
    neighbor_walk_length: int = param(2, ge=1)
    negatives: int = param(64, ge=1)
    decline_weight: float = param(1.0, ge=0.0)
    temperature: float = param(0.2, gt=0.0)
    cold_dropout: float = param(0.2, ge=0.0, lt=1.0)
    epochs: int = param(5, ge=1)
    batch_size: int = param(512, ge=1)
    lr: float = param(0.01, gt=0.0)
    session_gap: float | None = param(3600.0, ge=0.0)
    window: int | None = param(5, ge=1)
    min_value: float | None = 4.0
    max_neighbors: int | None = param(64, ge=0)
    n_recent: int = param(10, ge=1)
    aggregate: Literal["mean", "max"] = "mean"
    index: Literal["flat", "hnsw"] = "flat"
    id_embeddings: bool = True
    threads: int | None = param(1, ge=0)

    def validate(self) -> None:
        super().validate()
        supports(self, "GraphRetriever")  # no early stopping, CPU only
