"""faiss HNSW vs exact (IndexFlatIP) search on two-tower embeddings: recall@k and speed.

Queries are user vectors, the base is item vectors (u2i); also the reverse (i2u: items as
queries over user vectors). With ``--model PATH`` the embeddings are a trained model saved by
`TwoTowerRecommender.save` (e.g. ``tr.npz`` from `divrec.experiments.totalrecall_table1`);
otherwise random Gaussian embeddings of ML-1M's shape (6040 users, 3706 items, d = 64).
``--large N`` adds a random base of N vectors (1000 of the user vectors as queries), the
scale at which HNSW starts to pay off; at ML-1M's 3706 items exact search is faster.

Run: ``python benchmarks/bench_ann.py --out benchmarks/results/ann.json [--model tr.npz]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from divrec.retrieval.ann import AnnIndex, recall_at_k


def _time_search(index: AnnIndex, queries: np.ndarray, k: int, repeats: int):
    index.search(queries[:16], k)  # warm-up
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        ids, _ = index.search(queries, k)
        best = min(best, time.perf_counter() - t)
    return ids, best


def bench(base: np.ndarray, queries: np.ndarray, k: int, m: int, efs: list[int], repeats: int):
    """Exact vs HNSW at several efSearch values on one (base, queries) pair."""
    t = time.perf_counter()
    flat = AnnIndex("flat", threads=2).fit(base)
    flat_build = time.perf_counter() - t
    exact, flat_s = _time_search(flat, queries, k, repeats)
    t = time.perf_counter()
    hnsw = AnnIndex("hnsw", m=m, ef_construction=200, threads=2).fit(base)
    hnsw_build = time.perf_counter() - t
    rows = []
    for ef in efs:
        hnsw.ef_search = ef
        approx, s = _time_search(hnsw, queries, k, repeats)
        rows.append(
            {
                "ef_search": ef,
                f"recall@{k}": recall_at_k(approx, exact),
                "hnsw_seconds": s,
                "speedup_vs_exact": flat_s / s,
                "queries_per_second": queries.shape[0] / s,
            }
        )
    return {
        "base": list(base.shape),
        "queries": int(queries.shape[0]),
        "k": k,
        "hnsw_m": m,
        "flat_seconds": flat_s,
        "flat_build_seconds": flat_build,
        "hnsw_build_seconds": hnsw_build,
        "hnsw": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ann.json"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--large", type=int, default=100_000, help="also a random base of this size (0: skip)"
    )
    args = parser.parse_args()
    if args.model is not None:
        from divrec.retrieval.two_tower import TwoTowerRecommender

        model = TwoTowerRecommender.load(args.model)
        users, items = model.user_factors_, model.item_factors_
        source = f"learned embeddings from {args.model}"
    else:
        rng = np.random.default_rng(args.seed)
        users = rng.normal(size=(6040, 64)).astype(np.float32)
        items = rng.normal(size=(3706, 64)).astype(np.float32)
        source = "random Gaussian embeddings of ML-1M shape (6040 x 64 users, 3706 x 64 items)"
    efs = [args.k, 2 * args.k, 4 * args.k]  # faiss needs efSearch >= k
    result = {
        "source": source,
        "note": "exact = faiss IndexFlatIP on L2-normalized vectors; 2 OpenMP threads; "
        "best of `repeats` timings; machine shared with other jobs",
        "u2i": bench(items, users, args.k, args.m, efs, args.repeats),
        "i2u": bench(users, items, args.k, args.m, efs, args.repeats),
    }
    if args.large:
        rng = np.random.default_rng(args.seed + 1)
        base = rng.normal(size=(args.large, users.shape[1])).astype(np.float32)
        result["large_random"] = bench(base, users[:1000], args.k, args.m, efs, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for side in ("u2i", "i2u", "large_random"):
        if side not in result:
            continue
        r = result[side]
        print(f"{side}: exact {r['flat_seconds']:.3f}s for {r['queries']} queries")
        for row in r["hnsw"]:
            print(
                f"  ef={row['ef_search']:>4}  recall@{args.k}={row[f'recall@{args.k}']:.4f}  "
                f"speedup={row['speedup_vs_exact']:.2f}x"
            )


if __name__ == "__main__":
    main()
