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
* ``"auto"``: exact below `AUTO_EXACT_BELOW` vectors; above, every kind of `auto_kinds`
  (default exact and IVF-SQ8) is built, the approximate ones tuned to `target_recall`
  (default 0.95), and the one with the lowest single-query p99 latency among those whose
  held-out recall meets the target is kept, by measurement at build time (`auto_report_`).

**Target recall.** HNSW with fixed parameters loses recall as the catalogue grows (m=32,
efSearch=128 on Gaussian 64-d vectors: recall@100 0.976 at 10k items, 0.794 at 100k, 0.484
at 1M). With ``target_recall`` set, `fit` measures recall@`recall_k` against exact search on
a query sample and raises efSearch (HNSW) or nprobe (IVF) until the target is met: the
sample is split in a tuning half (the setting is the smallest one whose tuning recall is at
least the target plus three standard errors) and a held-out half, on which the reported
`recall_` is measured. The sample is drawn from `fit`'s ``queries`` (pass the real query
distribution, e.g. user vectors for an item index). Without it, the sample is synthesized
(`synthetic_queries`), never the indexed vectors themselves: a query equal to an indexed
vector finds itself and its graph neighbourhood easily, and tuning HNSW on such queries to
0.95 gave 0.891 on fresh queries at 100k items. Half of the synthetic queries are fresh
draws from a Gaussian fitted to the vectors (mean and covariance), half perturbed indexed
vectors (halfway to such a draw); the target must be met on each half separately.

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
AUTO_KINDS = ("flat", "ivf-sq8")
"""Kinds `kind="auto"` builds and times above `AUTO_EXACT_BELOW` (HNSW is left out by
default: its single-core build takes ~70 s at 100k vectors, against ~3 s for IVF-SQ8)."""
AUTO_LATENCY_QUERIES = 200
"""Single-query searches per kind that `kind="auto"` times (interleaved) to pick one."""


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
            exact re-scoring) or "auto" (the fastest of `auto_kinds` meeting the target,
            measured at build time; see the module docstring).
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
        auto_kinds: the kinds "auto" builds, tunes and times (default `AUTO_KINDS`).

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
        auto_report_: "auto" above `AUTO_EXACT_BELOW`: per candidate kind, its held-out
            recall, whether it meets the target, single-query p50 / p99 (ms) and build /
            tune seconds (None otherwise).
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
        auto_kinds: tuple[str, ...] = AUTO_KINDS,
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
        bad = [k for k in auto_kinds if k not in KINDS or k == "auto"]
        if bad or not auto_kinds:
            raise ValueError(f"auto_kinds must be non-empty kinds of {KINDS[:-1]}, got {bad}")
        self.auto_kinds = tuple(auto_kinds)

    # ------------------------------------------------------------------ building
    def fit(self, vectors: np.ndarray, queries: np.ndarray | None = None) -> AnnIndex:
        """Indexes `(N, D)` vectors (normalized here); returns self.

        Args:
            vectors: the base vectors.
            queries: optional `(Q, D)` sample of the query distribution for the recall
                tuning (default: `synthetic_queries` of `vectors`).
        """
        from divrec._extras import require

        faiss = require("faiss", what="AnnIndex")
        vecs = l2_normalize(vectors)
        if vecs.ndim != 2 or vecs.shape[0] == 0:
            raise ValueError(f"vectors must be a non-empty (N, D) array, got {vecs.shape}")
        n, d = vecs.shape
        self.n_ = n
        target = self.target_recall
        kind = self.kind
        self.auto_report_ = None
        if kind == "auto":
            target = 0.95 if target is None else target
            if n >= AUTO_EXACT_BELOW:
                return self._fit_auto(vecs, queries, target)
            kind = "flat"
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
        return self

    def _fit_auto(self, vecs: np.ndarray, queries: np.ndarray | None, target: float):
        """Builds every kind of `auto_kinds`, keeps the fastest meeting `target` (p99)."""
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        params.pop("_ivf", None)
        candidates: dict[str, AnnIndex] = {}
        report: dict[str, dict] = {}
        for kind in self.auto_kinds:
            index = AnnIndex(**{**params, "kind": kind, "target_recall": target})
            index.fit(vecs, queries)
            candidates[kind] = index
            report[kind] = {
                "recall": index.recall_,
                "meets_target": kind == "flat" or index.recall_ >= target,
                "build_seconds": index.build_seconds_,
                "tune_seconds": index.tune_seconds_,
            }
        # time single queries of the held-out distribution (a draw the tuning did not use)
        rng = np.random.default_rng([self.seed, 1])
        timing_q, _ = self._query_sample(vecs, queries, AUTO_LATENCY_QUERIES, rng)
        times = _interleaved_latency(candidates, timing_q, min(self.recall_k, vecs.shape[0]))
        for kind, sec in times.items():
            report[kind]["p50_ms"] = float(np.percentile(sec, 50) * 1e3)
            report[kind]["p99_ms"] = float(np.percentile(sec, 99) * 1e3)
        ok = [k for k in candidates if report[k]["meets_target"]]
        if not ok:  # no approximate kind met the target and exact search was not offered
            ok = [max(candidates, key=lambda k: report[k]["recall"])]
        best = min(ok, key=lambda k: report[k]["p99_ms"])
        chosen = candidates[best]
        for name, value in vars(chosen).items():
            if name.endswith("_") or name == "_ivf":
                setattr(self, name, value)
        if best == "flat":
            self.recall_ = self.tune_recall_ = 1.0
        self.build_seconds_ = sum(r["build_seconds"] for r in report.values())
        self.tune_seconds_ = sum(r["tune_seconds"] for r in report.values())
        self.auto_report_ = report
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
        sample, groups = self._query_sample(vecs, queries, self.tune_queries, rng)
        size = sample.shape[0]
        if size < 2:
            raise ValueError("the recall tuning needs at least 2 queries")
        tune_q, held_q = sample[: size // 2], sample[size // 2 :]
        tune_groups = groups[: size // 2]
        k = min(self.recall_k, self.n_)
        _, exact = faiss.knn(sample, vecs, k, faiss.METRIC_INNER_PRODUCT)
        tune_exact, held_exact = exact[: size // 2], exact[size // 2 :]

        def enough(per_query: np.ndarray) -> bool:
            for g in np.unique(tune_groups):  # synthetic queries: each kind on its own
                x = per_query[tune_groups == g]
                se = x.std(ddof=1) / math.sqrt(x.size) if x.size > 1 else 0
                if x.mean() < min(target + 3 * se, 1.0):
                    return False
            return True

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

    def _query_sample(self, vecs: np.ndarray, queries: np.ndarray | None, size: int, rng):
        """`(sample (S, D), groups (S,))`: `size` queries drawn from `queries` (group 0) or
        synthesized by `synthetic_queries` (groups 0 and 1, interleaved)."""
        if queries is not None:
            pool = l2_normalize(queries)
            size = min(size, pool.shape[0])
            sample = pool[rng.choice(pool.shape[0], size=size, replace=False)]
            return sample, np.zeros(size, dtype=np.int64)
        return synthetic_queries(vecs, size, rng)

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


def synthetic_queries(
    vecs: np.ndarray, size: int, rng: np.random.Generator, fit_sample: int = 20_000
) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in queries for tuning an index of `vecs` when no real queries are given.

    Never the indexed vectors themselves. With μ, Σ the mean and covariance of (a sample of)
    the vectors and z ~ N(0, Σ): group 0 are fresh draws μ + z; group 1 perturbed indexed
    vectors μ + (x − μ)/√2 + z/√2 (the same covariance, halfway between an item and a fresh
    draw). Both normalized; the groups alternate.

    Args:
        vecs: `(N, D)` the indexed (normalized) vectors.
        size: how many queries.
        rng: the random generator.
        fit_sample: vectors used to estimate μ and Σ.

    Returns:
        `(queries (size, D) float32 unit rows, groups (size,) int64)`.
    """
    n, d = vecs.shape
    fit = vecs if n <= fit_sample else vecs[rng.choice(n, size=fit_sample, replace=False)]
    mu = fit.mean(axis=0, dtype=np.float64)
    cov = np.atleast_2d(np.cov(fit, rowvar=False)) if fit.shape[0] > 1 else np.eye(d)
    scale = max(float(np.trace(cov)) / d, 1e-12)
    chol = np.linalg.cholesky(cov + 1e-6 * scale * np.eye(d))
    z = rng.standard_normal((size, d)) @ chol.T
    groups = np.arange(size) % 2
    out = mu + z
    pert = groups == 1
    src = vecs[rng.choice(n, size=int(pert.sum()))].astype(np.float64)
    out[pert] = mu + (src - mu) / math.sqrt(2) + z[pert] / math.sqrt(2)
    return l2_normalize(out), groups.astype(np.int64)


def _interleaved_latency(indexes: dict, queries: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Single-query search seconds of several indexes, interleaved query by query in
    rotating order (all see the same machine load)."""
    names = list(indexes)
    for index in indexes.values():
        index.search(queries[:3], k)  # warm-up
    times = {name: np.empty(queries.shape[0]) for name in names}
    for i in range(queries.shape[0]):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            indexes[name].search(queries[i : i + 1], k)
            times[name][i] = time.perf_counter() - t
    return times


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
