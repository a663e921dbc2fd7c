"""The recommendation pipeline: candidate generation → scoring → re-ranking.

A `Pipeline` is itself a `Recommender`, so everything that evaluates a model (the harness,
the CLI, the benchmark) evaluates a pipeline the same way.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.retrieval.base import Recommender


class Pipeline(Recommender):
    """A retriever's top-`n_candidates` list, re-ranked to `k` items by a `divrec.rerank`
    re-ranker.

    The retriever's scores are the relevance of each candidate; item vectors for the
    re-ranker's similarity come from `item_vectors` when given, else from the retriever's
    own embedding (`retriever.item_vectors()`), else from a truncated SVD of the training
    matrix (`divrec.experiments.setup.reference_item_vectors`); the first category of each
    item (when the training data has categories) is passed to category-based re-rankers.

    Args:
        retriever: a `Recommender` (fitted by `fit`).
        reranker: a re-ranker with `select_batch(relevance (B, N), k, *, vectors, categories,
            valid)`, or None for the retriever's own order.
        n_candidates: N, the candidate list length.
        item_vectors: `(n_items, d)` vectors for the re-ranker, or None (see above).

    Attributes:
        item_vectors_: `(n_items, d)` float32 vectors used for similarity, or None.
        item_category_: `(n_items,)` first category id per item (−1 none), or None.
    """

    def __init__(
        self,
        retriever: Recommender,
        reranker=None,
        n_candidates: int = 100,
        item_vectors: np.ndarray | None = None,
    ):
        self.retriever = retriever
        self.reranker = reranker
        self.n_candidates = n_candidates
        self.item_vectors = item_vectors

    def fit(self, train: Interactions | sp.spmatrix) -> Pipeline:
        """Fits the retriever (the re-rankers have nothing to learn); returns self."""
        if self.n_candidates <= 0:
            raise ValueError(f"n_candidates must be positive, got {self.n_candidates}")
        self.retriever.fit(train)
        return self.use_fitted(train)

    def use_fitted(self, train: Interactions | sp.spmatrix) -> Pipeline:
        """Wires an already fitted retriever (e.g. to sweep re-rankers without refitting)."""
        self.user_items_ = self.retriever.user_items_
        self.n_users_, self.n_items_ = self.retriever.n_users_, self.retriever.n_items_
        if self.item_vectors is not None:
            vectors = np.asarray(self.item_vectors, dtype=np.float32)
        elif hasattr(self.retriever, "item_vectors"):
            vectors = np.asarray(self.retriever.item_vectors(), dtype=np.float32)
        elif isinstance(train, Interactions):
            from divrec.experiments.setup import reference_item_vectors

            vectors = reference_item_vectors(train)
        else:
            vectors = None
        if vectors is not None and vectors.shape[0] != self.n_items_:
            raise ValueError(f"item_vectors has {vectors.shape[0]} rows for {self.n_items_} items")
        self.item_vectors_ = vectors
        has_cats = isinstance(train, Interactions) and train.item_categories is not None
        self.item_category_ = train.primary_category() if has_cats else None
        return self

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self.retriever.score_all(users)

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, candidates=None):
        """Top-k after re-ranking the retriever's top-`n_candidates`.

        Returns:
            `(ids (B, k) int64, scores (B, k) float32)`: the re-ranked items (−1 padded) and
            their retriever scores.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        n = max(self.n_candidates, k)
        cand, scores = self.retriever.recommend(users, n, exclude_seen, candidates)
        if self.reranker is None:
            return cand[:, :k], scores[:, :k]
        valid = cand >= 0
        safe = np.maximum(cand, 0)
        kwargs = {"valid": valid}
        if self.item_vectors_ is not None:
            kwargs["vectors"] = self.item_vectors_[safe]
        if self.item_category_ is not None:
            kwargs["categories"] = self.item_category_[safe]
        relevance = np.where(valid, scores, 0.0)
        pos = self.reranker.select_batch(relevance, k, **kwargs)
        picked = pos >= 0
        safe_pos = np.maximum(pos, 0)
        ids = np.where(picked, np.take_along_axis(cand, safe_pos, axis=1), -1)
        out = np.where(picked, np.take_along_axis(scores, safe_pos, axis=1), -np.inf)
        return ids, out.astype(np.float32)
