"""The recommendation pipeline: Query → retrieval → ranking → re-ranking → lists.

A `Pipeline` is itself a `Recommender`, so everything that evaluates a model (the harness,
the CLI, the benchmark, the simulator, the service) runs the same chain of stages: a number
measured offline is a number the service would produce. Under a sampled protocol the
sampled candidates (positive + negatives) enter as the `Candidates` of the request and the
whole chain runs on them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query
from divrec.retrieval.base import Recommender, check_list_length


class Pipeline(Recommender):
    """Retriever top-`n_candidates` → optional ranker → optional re-ranker → top-k.

    Stages:
        retriever: any `Recommender`; retrieves `n_candidates` items per request from the
            catalogue, or scores the candidates a request comes with (sampled protocols).
        ranker: optional `Recommender` used as a ranking stage: it re-scores and re-sorts
            the retriever's candidates (CDM- and PURS-style models, or any model). A ranker
            with `needs_retriever = True` is fitted as `ranker.fit(train, retriever=...)`.
        reranker: optional `divrec.rerank` re-ranker: selects `k` of the candidates with the
            last stage's scores as relevance. Its similarity space is `item_vectors` when
            given, else the retriever's own embedding (`retriever.item_vectors()`), else the
            reference SVD space of the training data; interest-aware MMR also gets the
            retriever's `user_vectors()`.

    Args:
        retriever: the retrieval stage (fitted by `fit`).
        ranker: the ranking stage, or None.
        reranker: the re-ranking stage, or None.
        n_candidates: N, the candidate list length handed from retrieval onwards.
        item_vectors: `(n_items, d)` vectors for the re-ranker's similarity, or None.
    """

    def __init__(
        self,
        retriever: Recommender,
        reranker=None,
        n_candidates: int = 100,
        item_vectors: np.ndarray | None = None,
        ranker: Recommender | None = None,
    ):
        self.retriever = retriever
        self.reranker = reranker
        self.n_candidates = n_candidates
        self.item_vectors = item_vectors
        self.ranker = ranker

    @property
    def _scorer(self) -> Recommender:
        """The last scoring stage: the ranker, else the retriever."""
        return self.ranker if self.ranker is not None else self.retriever

    @property
    def has_scorer(self) -> bool:  # type: ignore[override]
        """A re-ranked list has no per-item score; without a re-ranker the last stage scores."""
        if self.reranker is not None:
            return False
        return bool(getattr(self._scorer, "has_scorer", True))

    @property
    def supports_history(self) -> bool:  # type: ignore[override]
        stages = [self.retriever] + ([self.ranker] if self.ranker is not None else [])
        return all(getattr(s, "supports_history", False) for s in stages)

    def fit(self, train: Interactions | sp.spmatrix) -> Pipeline:
        """Fits every stage on `train`; returns self."""
        self._check_params()
        self.retriever.fit(train)
        if self.ranker is not None:
            if getattr(self.ranker, "needs_retriever", False):
                # a ranking model trained on the retriever's candidate lists (e.g. CDM)
                self.ranker.fit(train, retriever=self.retriever)
            else:
                self.ranker.fit(train)
        return self.use_fitted(train)

    def _check_params(self) -> None:
        if isinstance(self.n_candidates, bool) or not isinstance(self.n_candidates, int):
            raise ValueError(f"n_candidates must be a positive integer, got {self.n_candidates!r}")
        if self.n_candidates <= 0:
            raise ValueError(f"n_candidates must be positive, got {self.n_candidates}")

    def use_fitted(self, train: Interactions | sp.spmatrix) -> Pipeline:
        """Wires already fitted retrieval/ranking stages and fits the re-ranker."""
        self._check_params()
        self.user_items_ = self.retriever.user_items_
        self.n_users_, self.n_items_ = self.retriever.n_users_, self.retriever.n_items_
        if self.reranker is not None:
            if not isinstance(train, Interactions):
                raise ValueError("a pipeline with a re-ranker needs Interactions to fit on")
            vectors, users = None, None
            if self.item_vectors is not None:
                vectors = np.asarray(self.item_vectors, dtype=np.float32)
            elif hasattr(self.retriever, "item_vectors"):
                vectors = np.asarray(self.retriever.item_vectors(), dtype=np.float32)
                if hasattr(self.retriever, "user_vectors"):
                    users = np.asarray(self.retriever.user_vectors(), dtype=np.float32)
            if vectors is not None and vectors.shape[0] != self.n_items_:
                raise ValueError(
                    f"item_vectors has {vectors.shape[0]} rows for {self.n_items_} items"
                )
            self.reranker.fit(train, item_vectors=vectors, user_vectors=users)
        return self

    # ------------------------------------------------------------------ the chain
    def __call__(
        self, query: Query, candidates: Candidates | None = None, k: int | None = None
    ) -> Candidates:
        """Runs the stages on a batch of requests; returns the `(B, k)` lists.

        Scores are the last scoring stage's (ranker, else retriever); a re-ranked list
        keeps the scores of the items it picked.

        The diversity knob (``Query.diversity``) is the re-ranker's to take: a pipeline
        without a re-ranker answers every request in relevance order, whatever its knob
        (the order knob 0 gives; a service's ``method=none`` relies on this). A re-ranker
        without a knob (category cap, CF-DM, hybrid) refuses it.
        """
        self._check_fitted()
        k = check_list_length(k)
        n = max(self.n_candidates, k)
        if self.reranker is None and query.constraints is not None:
            raise ValueError("constraints need a re-ranker (MMR, a DPP, SSD, …) in the pipeline")
        # given candidates (e.g. a sampled protocol's) are ranked and cut to the top n
        cand = self.retriever(query, candidates, n)
        if self.ranker is not None:
            cand = self.ranker(query, cand, None)
        if self.reranker is None:
            out = cand.head(k)
            if query.explain:  # relevance order: every item is placed by its score
                object.__setattr__(out, "explanations", _relevance_explanations(out))
            return out
        return self.reranker(query, cand, k).head(k)

    def recommend(self, users, k: int = 10, exclude_seen=None, candidates=None, explain=False):
        """`Recommender.recommend`, plus ``explain``.

        Args:
            users, k, exclude_seen, candidates: as `Recommender.recommend` (``users`` may
                be a `Query`, with its ``constraints``).
            explain: also return, per request, one dict per returned item: its relevance
                and rank before re-ranking, its marginal gain at the step it was picked
                (relevance and diversity parts), the already-picked item that penalized
                it most and the rule (pin, minimum, boost) that placed it
                (`divrec.rerank._explain`).

        Returns:
            ``(ids, scores)``, or with ``explain`` ``(ids, scores, explanations)``.
        """
        if not explain:
            return super().recommend(users, k, exclude_seen, candidates)
        query = replace(self._as_query(users, exclude_seen), explain=True)
        cand = None if candidates is None else Candidates.from_ids(candidates)
        if cand is not None and len(cand) != len(query):
            raise ValueError(f"candidates has {len(cand)} rows for {len(query)} users")
        out = self(query, cand, check_list_length(k))
        return out.ids, out.scores, out.explanations

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return self._scorer.score_all(users)

    def _score_history(self, query: Query) -> np.ndarray:
        return self._scorer.score_query(query)

    def _score_items(self, query: Query, items: np.ndarray) -> np.ndarray:
        return self._scorer.score(query, items)


def _relevance_explanations(out: Candidates) -> tuple:
    """Explanations of lists in relevance order (no re-ranker): the score is the gain."""
    rows = []
    for b in range(len(out)):
        rows.append(
            tuple(
                {
                    "position": s,
                    "item": int(i),
                    "relevance": float(sc),
                    "rank_before": s + 1,
                    "gain": float(sc),
                    "relevance_part": float(sc),
                    "diversity_part": 0.0,
                    "penalized_by": None,
                    "rule": None,
                }
                for s, (i, sc) in enumerate(zip(out.ids[b], out.scores[b], strict=True))
                if i >= 0
            )
        )
    return tuple(rows)
