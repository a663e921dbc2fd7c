"""divrec re-rankers as a re-ranking step for RecTools (MTS RecTools 0.19+).

RecTools models answer ``model.recommend(users, dataset, k, filter_viewed)`` with a table of
``Columns.Recommendations`` (``user_id, item_id, score, rank``) in external ids. `RecToolsReranker`
takes such a table (any first stage's, a longer ``k`` than the final list) and returns the same
schema re-ranked by any divrec re-ranker; `DiversifiedModel` wraps a RecTools model so that its
``recommend`` returns the re-ranked lists (a drop-in where RecTools code expects a model)::

    step = RecToolsReranker("mmr", {"lambda_": 0.5}, items=item_table, vectors=["v0", "v1"])
    reco = model.recommend(users, dataset, k=100, filter_viewed=True)
    diversified = step.rerank(reco, k=10)
    # or: DiversifiedModel(model, step, n_candidates=100).recommend(users, dataset, 10, True)

The item side (vectors for the similarity, categories) comes from an item table with the
same external ids (`divrec.pipeline.frames.catalogue`). Each user's candidates are taken in
decreasing score order and handed to the re-ranker's ``select_batch`` (the knob through
``diversity_params``), so the lists equal a direct divrec call.

Needs the ``adapters`` extra (``pip install 'divrec[adapters]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from divrec._extras import require

require("rectools", what="divrec.adapters.rectools")

from rectools import Columns  # noqa: E402

from divrec.adapters._common import as_reranker, group_candidates, select_lists  # noqa: E402
from divrec.pipeline.frames import catalogue  # noqa: E402

__all__ = ["DiversifiedModel", "RecToolsReranker"]


class RecToolsReranker:
    """Re-ranks RecTools recommendation tables with a divrec re-ranker.

    Args:
        reranker: a divrec re-ranker object or a registered name (``"mmr"``, ``"dpp"``, ...).
        params: hyperparameters for a name.
        items: the item table (``item_id`` plus the columns below), pandas or polars.
        vectors: the columns of each item's vector (the similarity space), or None.
        category: the column of each item's category, or None.
        diversity: the divrec knob in [0, 1] (0 = score order), or None for the re-ranker's
            own hyperparameter.

    Attributes:
        reranker_: the divrec re-ranker.
        catalogue_: the item id map and side information (`Interactions` without interactions).
    """

    def __init__(
        self,
        reranker: Any = "mmr",
        params: dict[str, Any] | None = None,
        *,
        items: Any,
        vectors: Sequence[str] | None = None,
        category: str | None = None,
        diversity: float | None = None,
    ):
        self.reranker_ = as_reranker(reranker, params)
        self.catalogue_ = catalogue(items, category=category, vectors=vectors, name="items")
        cat = self.catalogue_
        self._vectors = cat.item_features
        self._categories = cat.primary_category() if cat.item_categories is not None else None
        self.diversity = diversity

    def rerank(self, reco: pd.DataFrame, k: int) -> pd.DataFrame:
        """The top-`k` re-ranked lists of a recommendation table.

        Args:
            reco: ``user_id, item_id, score`` (RecTools' ``Columns``; ``rank`` ignored), one
                candidate list per user.
            k: list length.

        Returns:
            ``user_id, item_id, score, rank`` (rank from 1), users in first-seen order, each
            list in selection order with its input scores.

        Raises:
            ValueError: a missing column, a NaN or infinite score, an item twice in a user's
                list, an item not in the item table (one line).
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        need = [Columns.User, Columns.Item, Columns.Score]
        missing = [c for c in need if c not in reco.columns]
        if missing:
            raise ValueError(f"reco has no column {missing[0]!r}")
        scores = pd.to_numeric(reco[Columns.Score], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(scores).all():
            raise ValueError("reco: score must be finite numbers")
        if reco.duplicated([Columns.User, Columns.Item]).any():
            raise ValueError("reco: an item appears twice in one user's list")
        try:
            items = self.catalogue_.item_index(reco[Columns.Item].to_numpy())
        except KeyError as err:
            raise ValueError(f"reco: {err.args[0]}") from None
        users, ids, rel, valid, rows = group_candidates(
            reco[Columns.User].to_numpy(), items, scores
        )
        safe = np.maximum(ids, 0)
        pos = select_lists(
            self.reranker_,
            rel,
            valid,
            int(k),
            vectors=None if self._vectors is None else self._vectors[safe],
            categories=None if self._categories is None else self._categories[safe],
            diversity=self.diversity,
        )
        picked = pos >= 0
        src = np.take_along_axis(rows, np.maximum(pos, 0), axis=1)[picked]
        b = np.nonzero(picked)[0]
        return pd.DataFrame(
            {
                Columns.User: users[b],
                Columns.Item: reco[Columns.Item].to_numpy()[src],
                Columns.Score: scores[src],
                Columns.Rank: np.cumsum(picked, axis=1)[picked].astype(np.int64),
            }
        )

    def recommend(
        self, model: Any, users: Any, dataset: Any, k: int, n_candidates: int = 100, **kwargs
    ) -> pd.DataFrame:
        """``model.recommend(users, dataset, k=n_candidates, **kwargs)`` re-ranked to `k`."""
        reco = model.recommend(users, dataset, k=max(int(n_candidates), int(k)), **kwargs)
        return self.rerank(reco, k)


class DiversifiedModel:
    """A RecTools model whose ``recommend`` returns divrec-re-ranked lists.

    Args:
        model: a RecTools model (``fit(dataset)``, ``recommend(users, dataset, k, ...)``).
        step: the `RecToolsReranker`.
        n_candidates: how many of the model's items per user the re-ranker chooses from.
    """

    def __init__(self, model: Any, step: RecToolsReranker, n_candidates: int = 100):
        self.model = model
        self.step = step
        self.n_candidates = int(n_candidates)

    def fit(self, dataset: Any, *args: Any, **kwargs: Any) -> DiversifiedModel:
        self.model.fit(dataset, *args, **kwargs)
        return self

    def recommend(
        self, users: Any, dataset: Any, k: int, filter_viewed: bool, **kwargs: Any
    ) -> pd.DataFrame:
        """RecTools' ``recommend`` signature; the lists are re-ranked to `k`."""
        return self.step.recommend(
            self.model,
            users,
            dataset,
            k,
            n_candidates=self.n_candidates,
            filter_viewed=filter_viewed,
            **kwargs,
        )
