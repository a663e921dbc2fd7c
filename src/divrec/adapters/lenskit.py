"""divrec re-rankers as a LensKit pipeline component (LensKit 2025.x, ``lenskit.pipeline``).

`DivrecReranker` is a ``Component[ItemList]`` and ``Trainable``: configured once
(`DivrecRerankerConfig`: a registered divrec re-ranker and its hyperparameters, the item
attributes that hold vectors and categories, the list length, the diversity knob), trained on
a LensKit `Dataset` (it reads those item attributes and the item vocabulary), and called as
``component(items, n) -> ItemList`` on a scored candidate list, LensKit's re-ranking contract
(as ``lenskit.reranking.FAIRReranker``)::

    from lenskit.pipeline import topn_pipeline  # or a PipelineBuilder
    rerank = DivrecReranker(method="mmr", params={"lambda_": 0.5}, vectors="embedding", n=10)
    rerank.train(dataset)
    diversified = rerank(scored_candidates, n=10)

The candidates are taken in decreasing score order and handed to the divrec re-ranker's
``select_batch`` (with the knob through ``diversity_params``), so the list equals a direct
divrec call on the same scores and vectors. A re-ranker object can be given instead of a name
(``DivrecReranker(reranker=MMR(lambda_=0.4), vectors=...)``).

Needs the ``adapters`` extra (``pip install 'divrec[adapters]'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from divrec._extras import require

require("lenskit", what="divrec.adapters.lenskit")

from lenskit.data import Dataset, ItemList  # noqa: E402
from lenskit.pipeline import Component  # noqa: E402
from lenskit.training import TrainingOptions  # noqa: E402

from divrec.adapters._common import as_reranker, select_lists  # noqa: E402

__all__ = ["DivrecReranker", "DivrecRerankerConfig"]


@dataclass
class DivrecRerankerConfig:
    """Configuration of `DivrecReranker`.

    Attributes:
        method: a registered divrec re-ranker (``divrec.registry.RERANKERS``: ``"mmr"``,
            ``"dpp"``, ``"ssd"``, ``"category-cap"``, ...).
        params: its hyperparameters (names of its ``Config``).
        n: default list length (None: the whole candidate list, re-ordered).
        vectors: the item vector attribute (dense or sparse) of the training `Dataset` (the
            similarity space), or None.
        category: the scalar item attribute holding each item's category, or None.
        diversity: the divrec knob in [0, 1] (0 = relevance order), or None for the
            re-ranker's own hyperparameter.
    """

    method: str = "mmr"
    params: dict[str, Any] = field(default_factory=dict)
    n: int | None = None
    vectors: str | None = None
    category: str | None = None
    diversity: float | None = None


class DivrecReranker(Component[ItemList]):
    """A divrec re-ranker as a LensKit pipeline component (see the module docstring).

    Args:
        config: the `DivrecRerankerConfig` (or its fields as keyword arguments).
        reranker: a divrec re-ranker object to use instead of ``config.method``.

    Attributes:
        reranker_: the divrec re-ranker.
        vocab_: the training items' LensKit vocabulary (after `train`).
        vectors_: ``(n_items, d)`` float64 item vectors, or None.
        categories_: ``(n_items,)`` int64 category codes (−1 none), or None.
    """

    config: DivrecRerankerConfig

    def __init__(
        self, config: DivrecRerankerConfig | None = None, *, reranker: Any = None, **kwargs: Any
    ):
        super().__init__(config, **kwargs)
        self.reranker_ = (
            as_reranker(reranker)
            if reranker is not None
            else as_reranker(self.config.method, self.config.params)
        )

    def train(self, data: Dataset, options: TrainingOptions | None = None) -> None:
        """Reads the item vocabulary and the configured item attributes of `data`."""
        items = data.entities("item")
        self.vocab_ = items.vocabulary
        self.vectors_ = None
        self.categories_ = None
        for name in (self.config.vectors, self.config.category):
            if name is not None and name not in items.attributes:
                raise ValueError(f"the dataset's items have no attribute {name!r}")
        if self.config.vectors is not None:
            attr = items.attribute(self.config.vectors)
            raw = attr.scipy().toarray() if attr.is_sparse else attr.numpy()
            vecs = np.asarray(raw, dtype=np.float64)
            if vecs.ndim != 2 or not np.isfinite(vecs).all():
                raise ValueError(
                    f"item attribute {self.config.vectors!r} must be finite (n_items, d) vectors"
                )
            self.vectors_ = vecs
        if self.config.category is not None:
            raw = items.attribute(self.config.category).numpy()
            codes, _ = pd.factorize(pd.Series(raw), sort=True)
            self.categories_ = codes.astype(np.int64)

    def is_trained(self) -> bool:
        return hasattr(self, "vocab_")

    def __call__(self, items: ItemList, n: int | None = None) -> ItemList:
        """Selects `n` of the scored candidates `items`; returns them as an ordered list.

        Args:
            items: the candidates with scores (e.g. a scorer's output), any order.
            n: list length (default: ``config.n``, else every candidate).

        Returns:
            the selected items in selection order (``ordered=True``), with their scores.

        Raises:
            ValueError: no scores, a NaN or infinite score, an item twice, an item the
                training data does not know (one line).
        """
        if not self.is_trained():
            raise ValueError("DivrecReranker is not trained; call train(dataset) first")
        size = len(items)
        n = n if n is not None else (self.config.n if self.config.n is not None else size)
        if size == 0 or n <= 0:
            return ItemList(items[np.zeros(0, dtype=np.int64)], ordered=True)
        scores = items.scores()
        if scores is None:
            raise ValueError("items: the candidates carry no scores (run a scorer first)")
        scores = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(scores).all():
            raise ValueError("items: scores must be finite numbers")
        nums = np.asarray(items.numbers(vocabulary=self.vocab_, missing="negative"))
        if (nums < 0).any():
            bad = items.ids()[int(np.flatnonzero(nums < 0)[0])]
            raise ValueError(f"items: item id {bad!r} is not in the training data")
        if np.unique(nums).shape[0] != size:
            raise ValueError("items: an item appears twice in the candidate list")
        order = np.argsort(-scores, kind="stable")
        picked = nums[order]
        pos = select_lists(
            self.reranker_,
            scores[order][None, :],
            np.ones((1, size), dtype=bool),
            min(n, size),
            vectors=None if self.vectors_ is None else self.vectors_[picked][None],
            categories=None if self.categories_ is None else self.categories_[picked][None],
            diversity=self.config.diversity,
        )[0]
        pos = pos[pos >= 0]
        return ItemList(items[order[pos]], ordered=True)
