"""Evaluation metrics: accuracy (top-K, AUC, PR operating points) and beyond-accuracy
(diversity, coverage, exposure concentration, novelty, unexpectedness), calibration
(Steck 2018 miscalibration) and item-group exposure fairness.

Conventions: ``recommended`` is a ``(U, K)`` int64 batch of item indices with ``-1`` as
padding (never a hit, never an item); ground truth is a ``scipy.sparse`` ``(U, n_items)``
matrix whose nonzeros are the relevant items. Per-user metrics return ``(U,)`` float64
vectors (NaN where undefined; aggregate with ``np.nanmean``).
"""

from .accuracy import (
    auc,
    hit_rate_at_k,
    hits_matrix,
    map_at_k,
    mean_average_precision,
    mrr_at_k,
    ndcg_at_k,
    per_user_auc,
    precision_at_k,
    precision_at_recall,
    recall_at_k,
    recall_at_precision,
    relevance_metrics,
    relevant_counts,
)
from .calibration import (
    category_shares,
    kl_miscalibration,
    list_distribution,
    miscalibration,
    user_distribution,
)
from .diversity import (
    between_user_diversity,
    category_coverage,
    category_ild,
    distinct_categories,
    distinct_ids,
    distinct_items,
    distinct_users,
    exposure_counts,
    exposure_entropy,
    exposure_gini,
    hi_diversity,
    hi_diversity_summary,
    ilad,
    item_coverage,
    novelty,
    unexpectedness,
    unexpectedness_scores,
    user_category_coverage,
)
from .groups import (
    average_recommendation_popularity,
    exposure_share,
    item_groups,
    popularity_groups,
    popularity_lift,
    position_discount,
)
from .reference import reference_item_vectors, reference_vectors
from .system import (
    between_user_distance,
    pairwise_jaccard,
    system_diversity,
    union_concentration,
)

__all__ = [
    "auc",
    "average_recommendation_popularity",
    "between_user_distance",
    "between_user_diversity",
    "category_coverage",
    "category_ild",
    "category_shares",
    "distinct_categories",
    "distinct_ids",
    "distinct_items",
    "distinct_users",
    "exposure_counts",
    "exposure_entropy",
    "exposure_gini",
    "exposure_share",
    "hi_diversity",
    "hi_diversity_summary",
    "hit_rate_at_k",
    "hits_matrix",
    "ilad",
    "item_coverage",
    "item_groups",
    "kl_miscalibration",
    "list_distribution",
    "map_at_k",
    "mean_average_precision",
    "miscalibration",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "pairwise_jaccard",
    "per_user_auc",
    "popularity_groups",
    "popularity_lift",
    "position_discount",
    "precision_at_k",
    "precision_at_recall",
    "recall_at_k",
    "recall_at_precision",
    "reference_item_vectors",
    "reference_vectors",
    "relevance_metrics",
    "relevant_counts",
    "system_diversity",
    "unexpectedness",
    "unexpectedness_scores",
    "union_concentration",
    "user_category_coverage",
    "user_distribution",
]
