"""The model-independent item space in which ILAD is measured (and re-rankers fall back to).

Every model in a comparison is measured in one space, so ILAD differences come from the lists,
not from each model's own embedding.
"""

from __future__ import annotations

import numpy as np

from divrec.data.interactions import Interactions

__all__ = ["reference_item_vectors", "reference_vectors"]


def reference_vectors(
    train: Interactions, dim: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Item and user vectors of a rank-`dim` truncated SVD of the item×user matrix.

    With `X ≈ U Σ Vᵀ` (items × users), items are `U Σ` and users `V`, so `item · user`
    approximates the training matrix (used as the user-interest vector by interest-aware MMR
    when the retriever has none).

    Returns:
        `(items (n_items, dim'), users (n_users, dim'))` float32, `dim' = min(dim, rank − 1)`;
        items with no training data are zero (cosine 0 with everything).
    """
    from sklearn.decomposition import TruncatedSVD

    mat = train.to_csr(binary=True).T.tocsr()
    if min(mat.shape) < 2 or mat.nnz == 0:
        raise ValueError(
            f"the reference item space needs at least 2 users and 2 items with data, got "
            f"{mat.shape[1]} users × {mat.shape[0]} items"
        )
    dim = max(1, min(dim, min(mat.shape) - 1))
    svd = TruncatedSVD(n_components=dim, random_state=seed, algorithm="randomized")
    items = svd.fit_transform(mat).astype(np.float32)
    return items, np.ascontiguousarray(svd.components_.T, dtype=np.float32)


def reference_item_vectors(train: Interactions, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Model-independent item vectors for ILAD: a truncated SVD of the item×user matrix.

    Rows are the left singular vectors scaled by the singular values (`(n_items, dim)`;
    items with no training data are zero and count as maximally distant, cosine 0).
    """
    return reference_vectors(train, dim, seed)[0]
