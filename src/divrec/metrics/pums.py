"""Model-level metrics of the TotalRecall potential-users experiment (PUMS, App. A.6–A.7).

`group_metrics` (in `divrec.metrics.groups`) ranks the potential users of an item group by
aggregating per-item scores; `GROUP_AGGREGATIONS` names the aggregations it accepts.
`u2i_diversity` measures the candidate diversity of a model's user-to-item lists.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.metrics.diversity import distinct_categories, distinct_items, exposure_gini

__all__ = ["GROUP_AGGREGATIONS", "u2i_diversity"]

#: how a group's per-item scores of a user are combined (App. A.7.2): mean, max or sum
GROUP_AGGREGATIONS = ("mean", "max", "sum")


def u2i_diversity(model, item_categories: sp.spmatrix, k: int = 50, chunk: int = 1024) -> dict:
    """Candidate diversity of all users' top-k u2i lists (App. A.6.2).

    Distinct items@k and distinct genres@k over the lists of every user, plus the Gini
    coefficient of item exposure in those lists (0 = every item equally often; see
    `exposure_gini`).

    Args:
        model: fitted model with `n_users_`, `n_items_` and `recommend(users, k)` returning
            `(ids, scores)`, ids `(len(users), k)` with -1 as padding; the lists should exclude
            each user's training items.
        item_categories: `(n_items, G)` multi-hot genres.
        k: list length.
        chunk: users scored at once.

    Returns:
        {"distinct_items", "distinct_genres", "exposure_gini", "k"}.
    """
    lists = [
        model.recommend(np.arange(s, min(s + chunk, model.n_users_)), k)[0]
        for s in range(0, model.n_users_, chunk)
    ]
    rec = np.vstack(lists)
    return {
        "distinct_items": distinct_items(rec),
        "distinct_genres": distinct_categories(rec, item_categories),
        "exposure_gini": exposure_gini(rec, model.n_items_),
        "k": k,
    }
