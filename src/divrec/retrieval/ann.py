"""Approximate and exact maximum-inner-product search with faiss (two-tower serving).

Vectors are L2-normalized before indexing, so inner product equals cosine similarity
(the φ(u, i) = cos(u, i)/τ score of TotalRecall Eq. 2 up to the positive factor 1/τ, which
does not change rankings). Two index kinds:

* ``"flat"``: `faiss.IndexFlatIP`, exact brute force.
* ``"hnsw"``: `faiss.IndexHNSWFlat` with the inner-product metric (Malkov & Yashunin 2018),
  approximate; `m` links per node, `ef_construction` / `ef_search` beam widths.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalization.

    Args:
        x: `(N, D)` vectors.
        eps: floor of the norm (zero rows stay zero).

    Returns:
        `(N, D)` float32 contiguous unit-norm rows.
    """
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)


class AnnIndex:
    """A faiss inner-product index over L2-normalized vectors.

    Args:
        kind: "flat" (exact) or "hnsw" (approximate).
        m: HNSW links per node.
        ef_construction: HNSW construction beam width.
        ef_search: HNSW search beam width (raised to k when smaller).
        threads: OpenMP threads faiss may use (0: leave faiss's default).

    Attributes:
        index_: the faiss index.
        n_: number of indexed vectors.
    """

    def __init__(
        self,
        kind: str = "flat",
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        threads: int = 0,
    ):
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"kind must be 'flat' or 'hnsw', got {kind!r}")
        self.kind = kind
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.threads = threads

    def fit(self, vectors: np.ndarray) -> AnnIndex:
        """Indexes `(N, D)` vectors (normalized here); returns self."""
        import faiss

        if self.threads:
            faiss.omp_set_num_threads(self.threads)
        vecs = l2_normalize(vectors)
        if vecs.ndim != 2 or vecs.shape[0] == 0:
            raise ValueError(f"vectors must be a non-empty (N, D) array, got {vecs.shape}")
        d = vecs.shape[1]
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        else:
            index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        index.add(vecs)
        self.index_ = index
        self.n_ = vecs.shape[0]
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k indexed vectors by cosine similarity for each query.

        Args:
            queries: `(B, D)` query vectors (normalized here).
            k: neighbours per query (clipped to the index size; the rest padded).

        Returns:
            `(ids (B, k) int64, cosines (B, k) float32)`, best first; missing slots are -1
            with score -inf.
        """
        if not hasattr(self, "index_"):
            raise RuntimeError("AnnIndex is not fitted; call fit first")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        q = l2_normalize(np.atleast_2d(queries))
        kk = min(k, self.n_)
        if self.kind == "hnsw":
            self.index_.hnsw.efSearch = max(self.ef_search, kk)
        scores, ids = self.index_.search(q, kk)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if kk < k:
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        return ids, scores


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returns.

    Args:
        approx_ids: `(B, k)` ids from the approximate search.
        exact_ids: `(B, k)` ids from the exact search.
    """
    hits = [
        len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) / max(1, int((e >= 0).sum()))
        for a, e in zip(approx_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits))
