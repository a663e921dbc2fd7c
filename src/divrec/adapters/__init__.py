"""Adapters: divrec's re-rankers as steps of other libraries' pipelines.

* :mod:`divrec.adapters.lenskit` — `DivrecReranker`, a LensKit (2025.x) pipeline component
  (``Component[ItemList]``, ``Trainable``): item vectors / categories from the LensKit
  `Dataset`'s item attributes, ``__call__(items, n) -> ItemList``.
* :mod:`divrec.adapters.rectools` — `RecToolsReranker`, a re-ranking step over RecTools'
  recommendation tables (``user_id, item_id, score, rank``), and `DiversifiedModel`, a RecTools
  model wrapped so that ``recommend`` returns re-ranked lists.

Both run the divrec re-ranker itself (``select_batch``, the knob through
``diversity_params``), so their lists equal a direct divrec call. The libraries are the
``adapters`` extra (``pip install 'divrec[adapters]'``; LensKit and RecTools pin pandas < 3,
RecTools numpy < 2 on Python 3.11). Nothing here is imported by ``import divrec.adapters``.
"""

from divrec.adapters._common import select_lists

__all__ = ["select_lists"]
