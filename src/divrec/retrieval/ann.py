"""Approximate and exact maximum-inner-product search with faiss (two-tower serving).

Vectors are L2-normalized before indexing, so inner product equals cosine similarity
(the φ(u, i) = cos(u, i)/τ score of TotalRecall Eq. 2 up to the positive factor 1/τ, which
does not change rankings). Index kinds:

* ``"flat"``: `faiss.IndexFlatIP`, exact brute force.
* ``"hnsw"``: `faiss.IndexHNSWFlat` with the inner-product metric (Malkov & Yashunin 2018),
  approximate; `m` links per node, `ef_construction` / `ef_search` beam widths.
* ``"ivf"``: `faiss.IndexIVFFlat` (spherical k-means into `nlist` lists, default
  ≈ 4·sqrt(N)); a query scans the `nprobe` lists nearest to it, with exact scores.
* ``"ivf-sq8"``: the same lists with 8-bit scalar-quantized codes (a quarter of the bytes a
  query scans), the best `k · refine_factor` re-scored exactly on the float vectors
  (`faiss.IndexRefineFlat`). At 1M Gaussian 64-d vectors and the same recall it answers a
  single query in ~0.6× the time of IVF-Flat.
* ``"auto"``: exact below `AUTO_EXACT_BELOW` vectors; above, IVF-SQ8 tuned to
  `target_recall` (default 0.95), falling back to exact when the tuned IVF would scan more
  than `AUTO_MAX_SCAN` (40%) of the catalogue anyway.

**Target recall.** HNSW with fixed parameters loses recall as the catalogue grows (m=32,
efSearch=128 on Gaussian 64-d vectors: recall@100 0.976 at 10k items, 0.794 at 100k, 0.484
at 1M). With ``target_recall`` set, `fit` measures recall@`recall_k` against exact search on
a query sample and raises efSearch (HNSW) or nprobe (IVF) until the target is met: the
sample is split in a tuning half (the setting is the smallest one whose tuning recall is at
least the target plus three standard errors) and a held-out half, on which the reported
`recall_` is measured. The sample is drawn from `fit`'s ``queries`` (pass the real query
distribution, e.g. user vectors for an item index) or, without it, from the indexed vectors.

Threads follow `divrec.threads`: a search of fewer than `divrec.threads.SMALL_BATCH`
queries (one request) runs single-threaded, larger batches and builds use the thread budget
(``DIVREC_THREADS``, default 1), unless ``threads`` is given explicitly.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from divrec.stage import NotFittedError
from divrec.threads import faiss_threads, resolve_threads

KINDS = ("flat", "hnsw", "ivf", "ivf-sq8", "auto")
AUTO_EXACT_BELOW = 20_000
"""`kind="auto"` indexes fewer vectors than this exactly (single-query exact search of
20k × 64 floats takes ~0.2 ms)."""
AUTO_MAX_SCAN = 0.4
"""`kind="auto"` falls back to exact search when the tuned IVF scores more than this fraction
of the catalogue per query. Single query, 64-d Gaussian vectors, recall@100 0.95: IVF-Flat
scanning 50% of 100k items took 1.3x the exact time, 37% of 1M 0.65x; IVF-SQ8 scanning 43%
of 300k took 0.75x and 37% of 1M 0.51x (p99 7.3 ms against 17.9 ms exact). Above ~40% the
saving is small, and exact search is exact."""


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


def default_nlist(n: int) -> int:
    """IVF list count ≈ 4·sqrt(N), kept to at least 39 training points per list."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


class AnnIndex:
    """A faiss inner-product index over L2-normalized vectors.

    Args:
        kind: "flat" (exact), "hnsw", "ivf" (IVF-Flat), "ivf-sq8" (IVF with 8-bit codes and
            exact re-scoring) or "auto" (see the module docstring).
        m: HNSW links per node.
        ef_construction: HNSW construction beam width.
        ef_search: HNSW search beam width (raised to k when smaller; with `target_recall`,
            the tuned value replaces it).
        threads: OpenMP threads faiss may use: None (default) follows `divrec.threads`
            (1 for requests of fewer than `SMALL_BATCH` queries, else the thread budget);
            n >= 1 always n; 0 every available core.
        nlist: IVF lists (None: `default_nlist`).
        nprobe: IVF lists scanned per query (with `target_recall`, the tuned value replaces
            it).
        target_recall: None (no tuning; "auto" then uses 0.95) or the recall@`recall_k` to
            reach on the query sample, in (0, 1].
        recall_k: the k of the tuned recall (clipped to the index size).
        tune_queries: size of the query sample (half tuning, half held out).
        seed: seeds the query sample and the IVF k-means.
        refine_factor: "ivf-sq8": candidates re-scored exactly, as a multiple of k.

    Attributes:
        index_: the faiss index.
        n_: number of indexed vectors.
        kind_: the index kind built (differs from `kind` for "auto").
        ef_search_: efSearch used by searches (HNSW).
        nprobe_: nprobe used by searches (IVF).
        nlist_: IVF lists.
        recall_: recall@`recall_k` on the held-out half of the query sample (None without
            tuning; 1.0 for an exact index).
        tune_recall_: the same on the tuning half.
        build_seconds_: wall time of building (training + adding) the index.
        tune_seconds_: wall time of the recall tuning.
    """

    def __init__(
        self,
        kind: str = "flat",
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        threads: int | None = None,
        nlist: int | None = None,
        nprobe: int = 8,
        target_recall: float | None = None,
        recall_k: int = 100,
        tune_queries: int = 1000,
        seed: int = 0,
        refine_factor: float = 2.0,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if target_recall is not None and not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        if not (math.isfinite(refine_factor) and refine_factor >= 1):
            raise ValueError(f"refine_factor must be a number >= 1, got {refine_factor}")
        self.kind = kind
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.threads = threads
        self.nlist = nlist
        self.nprobe = nprobe
        self.target_recall = target_recall
        self.recall_k = recall_k
        self.tune_queries = tune_queries
        self.seed = seed
        self.refine_factor = refine_factor

    # ------------------------------------------------------------------ building
    def fit(self, vectors: np.ndarray, queries: np.ndarray | None = None) -> AnnIndex:
        """Indexes `(N, D)` vectors (normalized here); returns self.

        Args:
            vectors: the base vectors.
            queries: optional `(Q, D)` sample of the query distribution for the recall
                tuning (default: a sample of `vectors`).
        """
        import faiss

        vecs = l2_normalize(vectors)
        if vecs.ndim != 2 or vecs.shape[0] == 0:
            raise ValueError(f"vectors must be a non-empty (N, D) array, got {vecs.shape}")
        n, d = vecs.shape
        self.n_ = n
        target = self.target_recall
        kind = self.kind
        if kind == "auto":
            target = 0.95 if target is None else target
            kind = "flat" if n < AUTO_EXACT_BELOW else "ivf-sq8"
        self.kind_ = kind
        self.ef_search_ = self.ef_search
        self.nprobe_ = self.nprobe
        self.nlist_ = None
        self.recall_ = self.tune_recall_ = None
        self.tune_seconds_ = 0.0
        start = time.perf_counter()
        with faiss_threads(resolve_threads(self.threads)):
            if kind == "flat":
                index = faiss.IndexFlatIP(d)
                index.add(vecs)
            elif kind == "hnsw":
                index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = self.ef_construction
                index.add(vecs)
            else:
                nlist = self.nlist or default_nlist(n)
                if not 1 <= nlist <= n:
                    raise ValueError(f"nlist must be in [1, {n}], got {nlist}")
                quantizer = faiss.IndexFlatIP(d)
                if kind == "ivf":
                    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                    ivf = index
                else:
                    ivf = faiss.IndexIVFScalarQuantizer(
                        quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                        faiss.METRIC_INNER_PRODUCT,
                    )  # fmt: skip
                ivf.cp.seed = self.seed
                ivf.train(vecs)
                if kind == "ivf-sq8":
                    index = faiss.IndexRefineFlat(ivf)  # keeps the float vectors to re-score
                    index.k_factor = float(self.refine_factor)
                # the IVF part (the wrapper does not own a Python reference to it)
                self._ivf = ivf
                index.add(vecs)
                self.nlist_ = nlist
                self.nprobe_ = min(self.nprobe, nlist)
            self.index_ = index
            self.build_seconds_ = time.perf_counter() - start
            if kind == "flat":
                if target is not None:
                    self.recall_ = self.tune_recall_ = 1.0
            elif target is not None:
                t = time.perf_counter()
                self._tune(vecs, queries, target)
                self.tune_seconds_ = time.perf_counter() - t
                if self.kind == "auto" and self._ivf_scan_fraction() > AUTO_MAX_SCAN:
                    # the tuned IVF scans most of the catalogue: exact search is as fast
                    exact = faiss.IndexFlatIP(d)
                    exact.add(vecs)
                    self.index_, self.kind_ = exact, "flat"
                    self.recall_ = self.tune_recall_ = 1.0
        return self

    def _ivf_scan_fraction(self) -> float:
        """Vectors an IVF query scores (centroids + probed lists), as a fraction of N."""
        if self.kind_ not in ("ivf", "ivf-sq8"):
            return 1.0
        return (self.nlist_ + self.n_ * self.nprobe_ / self.nlist_) / self.n_

    def _tune(self, vecs: np.ndarray, queries: np.ndarray | None, target: float) -> None:
        """Smallest efSearch / nprobe reaching `target` on the tuning half; held-out recall."""
        import faiss

        rng = np.random.default_rng(self.seed)
        pool = vecs if queries is None else l2_normalize(queries)
        size = min(self.tune_queries, pool.shape[0])
        if size < 2:
            raise ValueError("the recall tuning needs at least 2 queries")
        sample = pool[rng.choice(pool.shape[0], size=size, replace=False)]
        tune_q, held_q = sample[: size // 2], sample[size // 2 :]
        k = min(self.recall_k, self.n_)
        _, exact = faiss.knn(sample, vecs, k, faiss.METRIC_INNER_PRODUCT)
        tune_exact, held_exact = exact[: size // 2], exact[size // 2 :]

        def enough(per_query: np.ndarray) -> bool:
            se = per_query.std(ddof=1) / math.sqrt(per_query.size) if per_query.size > 1 else 0
            return per_query.mean() >= min(target + 3 * se, 1.0)

        if self.kind_ in ("ivf", "ivf-sq8"):
            per_probe = self._ivf_recall_curve(tune_q, tune_exact, vecs)  # (nq, nlist)
            means_ok = [enough(per_probe[:, p]) for p in range(self.nlist_)]
            self.nprobe_ = int(np.argmax(means_ok)) + 1 if any(means_ok) else self.nlist_
            if self.kind_ == "ivf-sq8":
                # the curve is exact for exact list scoring; the 8-bit codes may lose a few
                # neighbours before the re-scoring: verify by searching, widen by 5% steps
                while self.nprobe_ < self.nlist_:
                    got, _ = self.search(tune_q, k)
                    if enough(_per_query_recall(got, tune_exact)):
                        break
                    self.nprobe_ = min(self.nlist_, int(math.ceil(self.nprobe_ * 1.05)))
        else:
            ef = max(k, 16)
            cap = max(k, min(self.n_, 4096))
            while True:
                self.ef_search_ = ef
                got, _ = self.search(tune_q, k)
                if enough(_per_query_recall(got, tune_exact)) or ef >= cap:
                    break
                ef = min(cap, int(math.ceil(ef * 1.25)))
        got, _ = self.search(tune_q, k)
        self.tune_recall_ = recall_at_k(got, tune_exact)
        got, _ = self.search(held_q, k)
        self.recall_ = recall_at_k(got, held_exact)

    def _ivf_recall_curve(self, q: np.ndarray, exact: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """Per-query recall of IVF-Flat at every nprobe, `(nq, nlist)`.

        IVF-Flat scores the probed lists exactly, so a true neighbour is returned iff its
        list is among the `nprobe` lists nearest to the query: recall(nprobe) follows from
        the rank of each neighbour's list, without searching at every nprobe.
        """
        quantizer = self._ivf.quantizer
        _, order = quantizer.search(q, self.nlist_)  # lists by centroid score, per query
        rank = np.empty_like(order)
        rows = np.arange(order.shape[0])[:, None]
        rank[rows, order] = np.arange(self.nlist_)[None, :]
        ok = exact >= 0
        _, lists = quantizer.search(vecs[np.maximum(exact, 0).ravel()], 1)
        need = np.take_along_axis(rank, lists.reshape(exact.shape), axis=1)  # probes needed
        nq, nlist = q.shape[0], self.nlist_
        flat = (np.arange(nq)[:, None] * nlist + need)[ok]
        counts = np.bincount(flat, minlength=nq * nlist).reshape(nq, nlist)
        return np.cumsum(counts, axis=1) / np.maximum(ok.sum(axis=1), 1)[:, None]

    # ------------------------------------------------------------------ searching
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
            raise NotFittedError("AnnIndex is not fitted; call fit first")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        q = l2_normalize(np.atleast_2d(queries))
        kk = min(k, self.n_)
        if self.kind_ == "hnsw":
            self.index_.hnsw.efSearch = max(self.ef_search_, kk)
        elif self.kind_ in ("ivf", "ivf-sq8"):
            self._ivf.nprobe = self.nprobe_
        with faiss_threads(resolve_threads(self.threads, batch=q.shape[0])):
            scores, ids = self.index_.search(q, kk)
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if kk < k:
            ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        return ids, scores

    def search_excluding(
        self,
        queries: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        margin: int | None = None,
        rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query after dropping excluded ids (e.g. a user's training items).

        Fetches in rounds instead of k + the longest exclusion list for every row: first
        k + `margin` for all rows, then only the rows left with fewer than k ids re-search,
        grouped by their own need (k + their exclusion count, rounded up to a power of two),
        which is always enough. With an exact index the result equals filtering one search
        of k + the longest exclusion list (up to float rounding of near-ties).

        Args:
            queries: `(B, D)` query vectors.
            k: ids per query.
            exclude: CSR whose stored entries are the ids to exclude, one row per query (or
                indexed by `rows`); None: plain search.
            margin: first-round extra fetch (None: per row, max(8, half its exclusions)).
            rows: `(B,)` the row of `exclude` for each query (None: row b for query b), so a
                caller need not slice a large matrix per request.

        Returns:
            `(ids (B, k), cosines (B, k))`, best first, padded with -1 / -inf.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        q = np.atleast_2d(queries)
        if exclude is None:
            return self.search(q, k)
        if not sp.issparse(exclude) or exclude.format != "csr":
            exclude = sp.csr_matrix(exclude)
        rows = np.arange(q.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.shape != (q.shape[0],):
            raise ValueError("exclude needs one row per query")
        counts = (exclude.indptr[rows + 1] - exclude.indptr[rows]).astype(np.int64)
        if not counts.any():
            return self.search(q, k)
        if q.shape[0] == 1:  # one request: the same rounds, less bookkeeping
            lo, hi = exclude.indptr[rows[0]], exclude.indptr[rows[0] + 1]
            excluded = exclude.indices[lo:hi]
            if not exclude.has_sorted_indices:
                excluded = np.sort(excluded)
            return self._search_one_excluding(q, k, excluded, margin)
        keys, width = _exclusion_keys(exclude, rows, counts, self.n_)
        starts = np.cumsum(counts) - counts  # row b's keys are keys[starts[b]:][:counts[b]]
        need = np.minimum(k + counts, self.n_)  # a fetch that always leaves k (or all) ids
        extra = (
            np.maximum(8, (counts * _MARGIN_FRACTION).astype(np.int64))
            if margin is None
            else np.full(counts.size, margin)
        )
        first = np.minimum(k + extra, need)
        # rows are searched in groups of equal fetch, rounded up to keep the groups few
        fetch = np.minimum(_bucket(first), need.max()) if q.shape[0] > 1 else first
        out_ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        out_cos = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        todo = np.arange(q.shape[0])
        while todo.size:
            for f in np.unique(fetch[todo]):
                group = todo[fetch[todo] == f] if todo.size > 1 else todo
                ids, cos = self.search(q[group], int(f))
                exhausted = ids[:, -1] < 0  # the index has no more candidates for the row
                keep = ~_excluded(ids, group, keys, starts, counts, width)
                kept = keep.sum(axis=1)
                # faiss returns each row best first: dropping ids keeps the order
                order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
                ok = np.take_along_axis(keep, order, axis=1)
                ids = np.where(ok, np.take_along_axis(ids, order, axis=1), -1)
                cos = np.where(ok, np.take_along_axis(cos, order, axis=1), -np.inf)
                done = (kept >= k) | (need[group] <= f) | exhausted
                out_ids[group[done], : ids.shape[1]] = ids[done]
                out_cos[group[done], : ids.shape[1]] = cos[done]
                retry = group[~done]  # lost too many ids: re-search with a sufficient fetch
                fetch[retry] = np.minimum(_bucket(need[retry]), need.max())
                fetch[group[done]] = 0
            todo = todo[fetch[todo] > 0]
        return out_ids, out_cos

    def _search_one_excluding(self, q, k: int, excluded: np.ndarray, margin: int | None):
        count = excluded.size
        need = min(k + count, self.n_)
        extra = max(8, int(count * _MARGIN_FRACTION)) if margin is None else margin
        fetch = min(k + extra, need)
        while True:
            ids, cos = self.search(q, fetch)
            pos = np.minimum(np.searchsorted(excluded, ids[0]), count - 1)
            keep = (excluded[pos] != ids[0]) & (ids[0] >= 0)
            if keep.sum() >= k or fetch >= need or ids[0, -1] < 0:
                break
            fetch = need
        ids, cos = ids[:, keep][:, :k], cos[:, keep][:, :k]
        if ids.shape[1] < k:
            ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values=-1)
            cos = np.pad(cos, ((0, 0), (0, k - cos.shape[1])), constant_values=-np.inf)
        return ids, cos


_GROWTH = 2.0
"""Fetch sizes are rounded up to powers of this, so rows fall in few search groups."""
_MARGIN_FRACTION = 0.5
"""Default first-round extra fetch: this fraction of the row's exclusion count (at least 8)."""


def _bucket(x: np.ndarray) -> np.ndarray:
    """x rounded up to the next ceil(_GROWTH ** j)."""
    x = np.maximum(np.asarray(x, dtype=np.int64), 1)
    j = np.ceil(np.log(x) / np.log(_GROWTH) - 1e-9)
    v = np.ceil(_GROWTH**j).astype(np.int64)
    return np.where(v < x, np.ceil(_GROWTH ** (j + 1)).astype(np.int64), v)


def _excluded(ids, group, keys, starts, counts, width) -> np.ndarray:
    """`(G, f)` bool: ids[g, j] is excluded for query group[g] (or is a -1 pad)."""
    cnt = counts[group]
    total = int(cnt.sum())
    if total == 0:
        return ids < 0
    if group.size * width <= 1 << 25:  # a dense mask is cheaper than binary search
        offsets = np.cumsum(cnt) - cnt
        flat = np.repeat(starts[group] - offsets, cnt) + np.arange(total, dtype=np.int64)
        mask = np.zeros((group.size, int(width)), dtype=bool)
        mask[np.repeat(np.arange(group.size), cnt), keys[flat] % width] = True
        hit = np.take_along_axis(mask, np.maximum(ids, 0), axis=1)
    else:
        query_keys = group[:, None] * width + ids
        pos = np.minimum(np.searchsorted(keys, query_keys), keys.size - 1)
        hit = keys[pos] == query_keys
    return hit | (ids < 0)


def _exclusion_keys(exclude: sp.csr_matrix, rows: np.ndarray, counts: np.ndarray, n: int):
    """Sorted keys b · width + id of the excluded ids of query b (no scipy slicing)."""
    width = np.int64(max(exclude.shape[1], n, 1))
    starts = exclude.indptr[rows].astype(np.int64)
    offsets = np.cumsum(counts) - counts
    flat = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    keys = np.repeat(np.arange(rows.size, dtype=np.int64), counts) * width
    keys += exclude.indices[flat]
    if not exclude.has_sorted_indices:
        keys.sort()
    return keys, width


def _per_query_recall(approx_ids: np.ndarray, exact_ids: np.ndarray) -> np.ndarray:
    """`(B,)` fraction of each query's exact top-k ids that the approximate top-k returns."""
    return np.array(
        [
            len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) / max(1, int((e >= 0).sum()))
            for a, e in zip(approx_ids, exact_ids, strict=True)
        ]
    )


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returns.

    Args:
        approx_ids: `(B, k)` ids from the approximate search.
        exact_ids: `(B, k)` ids from the exact search.
    """
    return float(np.mean(_per_query_recall(approx_ids, exact_ids)))
