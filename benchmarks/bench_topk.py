"""`Recommender.recommend` against implicit's `recommend` on the same factors (issue "Speed").

Both answer the same request: top-k (k=10) of every item for every user, training items
excluded (implicit: ``filter_already_liked_items=True`` with the users' CSR rows), one
thread (BLAS and implicit). The factors are divrec's iALS (`ALSRecommender`); implicit's
`AlternatingLeastSquares` gets the same ``user_factors`` / ``item_factors``. The lists are
asserted identical before timing. Also timed: plain numpy (matmul, mask, one argpartition,
sort of the k) as a reference, and `top_k` alone, new (a bound on each row's first columns,
one pass, the exact k-th among the candidates) against the former implementation
(`argpartition` with two cut points, reproduced here), on the same masked score block.

Workloads: ML-1M (all users in one call; the same in blocks of ``--block`` users; and
``--single-users`` one-user calls, where Python overhead dominates) and a synthetic
100k-user catalogue (20k items, iALS on a random Zipf-like log; blocks of ``--block`` users,
as an evaluator does, since one 100k × N float32 score matrix would take 8 GB).

Timings are interleaved (A, B, C, A, B, C, ...) and the medians compared within one run;
``os.getloadavg()`` is recorded before and after (the machine is shared).

Run: ``DIVREC_DATA_HOME=... python benchmarks/bench_topk.py --out benchmarks/results/topk.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from divrec.retrieval import ALSRecommender
from divrec.retrieval.base import top_k


def old_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The former `top_k` (argpartition at k−1 and k), for the comparison."""
    b, n = scores.shape
    kk = min(k, n)
    full = np.argpartition(-scores, [kk - 1, kk], axis=1)
    part = full[:, :kk]
    boundary = np.take_along_axis(scores, full[:, kk - 1 : kk + 1], axis=1)
    split_tie = boundary[:, 0] == boundary[:, 1]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(part_scores, order, axis=1)
    if split_tie.any():
        _fix_boundary_ties(scores, ids, vals, np.flatnonzero(split_tie))
    ids = np.where(np.isneginf(vals), -1, ids)
    return ids, vals.astype(np.float32)


def _fix_boundary_ties(scores, ids, vals, rows):
    """The former per-row re-resolution of a tie cut by argpartition."""
    for r in rows:
        kth = vals[r, -1]
        above = np.flatnonzero(scores[r] > kth)
        tied = np.flatnonzero(scores[r] == kth)[: ids.shape[1] - above.size]
        cols = np.r_[above, tied]
        order = np.lexsort((cols, -scores[r, cols]))
        ids[r] = cols[order]
        vals[r] = scores[r, cols[order]]


def numpy_floor(user_f, item_f, user_items, users, k):
    """Matmul, mask the training items, one argpartition, sort the k."""
    scores = user_f[users] @ item_f.T
    rows = user_items[users]
    r = np.repeat(np.arange(users.size), np.diff(rows.indptr))
    scores[r, rows.indices] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    names = list(fns)
    times = {n: [] for n in names}
    for fn in fns.values():
        fn()  # warm-up
    for i in range(repeats):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
    return times


def _summary(times: dict[str, list[float]], ref: str) -> dict:
    med = {n: float(np.median(t)) for n, t in times.items()}
    return {
        "median_s": med,
        "min_s": {n: float(np.min(t)) for n, t in times.items()},
        "over_implicit": {n: med[n] / med[ref] for n in med},
        "repeats": len(times[ref]),
    }


def workload(name: str, model: ALSRecommender, k: int, block: int, repeats: int) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares

    imp = AlternatingLeastSquares(factors=model.user_factors_.shape[1], num_threads=1)
    imp.user_factors = model.user_factors_
    imp.item_factors = model.item_factors_
    ui = model.user_items_.tocsr()
    n_users = model.n_users_
    blocks = [np.arange(s, min(s + block, n_users)) for s in range(0, n_users, block)]

    def run_divrec():
        return [model.recommend(b, k=k) for b in blocks]

    rows = [ui[b] for b in blocks]  # the users' CSR rows, sliced outside the timing

    def run_implicit():
        return [
            imp.recommend(b, r, N=k, filter_already_liked_items=True)
            for b, r in zip(blocks, rows, strict=True)
        ]

    def run_numpy():
        return [numpy_floor(model.user_factors_, model.item_factors_, ui, b, k) for b in blocks]

    # identical lists (ids) before timing
    ours, theirs = run_divrec(), run_implicit()
    ids_a = np.concatenate([o[0] for o in ours])
    ids_b = np.concatenate([t[0] for t in theirs])
    same = bool(np.array_equal(ids_a, ids_b))
    assert same, f"{name}: lists differ in {(ids_a != ids_b).any(axis=1).sum()} rows"
    # top_k alone on the first block's masked scores, new vs former
    scores = model.score_all(blocks[0])
    model._mask_excluded(model._as_query(blocks[0], True), scores, None)
    assert np.array_equal(top_k(scores, k)[0], old_top_k(scores, k)[0])
    load_before = os.getloadavg()
    t_rec = _interleaved(
        {"divrec": run_divrec, "implicit": run_implicit, "numpy": run_numpy}, repeats
    )
    t_topk = _interleaved(
        {"top_k_new": lambda: top_k(scores, k), "top_k_former": lambda: old_top_k(scores, k)},
        repeats * 3,
    )
    load_after = os.getloadavg()
    out = {
        "workload": name,
        "n_users": int(n_users),
        "n_items": int(model.n_items_),
        "factors": int(model.user_factors_.shape[1]),
        "k": k,
        "block_users": block,
        "identical_lists": same,
        "recommend": _summary(t_rec, "implicit"),
        "top_k_block": {
            "shape": list(scores.shape),
            "median_s": {n: float(np.median(t)) for n, t in t_topk.items()},
            "former_over_new": float(
                np.median(t_topk["top_k_former"]) / np.median(t_topk["top_k_new"])
            ),
        },
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(json.dumps(out, indent=1))
    return out


def single_user(model: ALSRecommender, k: int, n: int, seed: int = 0) -> dict:
    """Per-call time of one-user requests (Python overhead dominates), interleaved."""
    from implicit.cpu.als import AlternatingLeastSquares

    imp = AlternatingLeastSquares(factors=model.user_factors_.shape[1], num_threads=1)
    imp.user_factors = model.user_factors_
    imp.item_factors = model.item_factors_
    users = np.random.default_rng(seed).choice(model.n_users_, size=n, replace=False)
    rows = [model.user_items_[[u]] for u in users]
    times: dict[str, list[float]] = {"divrec": [], "implicit": []}
    for i, (u, r) in enumerate(zip(users, rows, strict=True)):
        calls = {
            "divrec": lambda u=u: model.recommend(np.array([u]), k=k),
            "implicit": lambda u=u, r=r: imp.recommend(u, r, N=k),
        }
        a = model.recommend(np.array([u]), k=k)[0][0]
        b = imp.recommend(u, r, N=k)[0]
        assert np.array_equal(a, b), f"user {u}: lists differ"
        for name in sorted(calls, reverse=bool(i % 2)):
            t = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t)
    med = {name: float(np.median(t)) * 1e6 for name, t in times.items()}
    return {
        "workload": "ml-1m single-user calls",
        "calls": n,
        "median_us": med,
        "divrec_over_implicit": med["divrec"] / med["implicit"],
        "loadavg": os.getloadavg(),
    }


def _lenskit_pipeline(model: ALSRecommender, data):
    """A LensKit top-N pipeline whose ALS scorer holds divrec's factors.

    The pipeline (``topn_pipeline``: training-history lookup, unrated-items candidate
    selector, scorer, `TopNRanker`) is trained on the same log with one ALS epoch, then the
    scorer's embeddings are replaced by divrec's (rows in LensKit's vocabulary order) and
    ``user_embeddings="prefer"`` makes it score with the stored user vectors (no fold-in).
    """
    import pandas as pd
    from lenskit.als import ImplicitMFScorer
    from lenskit.data import from_interactions_df
    from lenskit.pipeline import topn_pipeline

    frame = pd.DataFrame({"user_id": data.users, "item_id": data.items})
    dataset = from_interactions_df(frame, user_col="user_id", item_col="item_id")
    f = model.user_factors_.shape[1]
    scorer = ImplicitMFScorer(embedding_size=f, epochs=1, user_embeddings="prefer")
    pipe = topn_pipeline(scorer)
    pipe.train(dataset)
    scorer.user_embeddings = np.ascontiguousarray(model.user_factors_[scorer.users.ids()])
    scorer.item_embeddings = np.ascontiguousarray(model.item_factors_[scorer.items.ids()])
    return pipe


def peers(model: ALSRecommender, data, k: int, n_users: int, repeats: int) -> dict:
    """divrec, implicit, RecTools and LensKit on the same factors and the same users.

    RecTools: `rectools.models.rank.ImplicitRanker` (the ranker of its ALS / factor models,
    `Distance.DOT`, one thread, the users' training rows as ``filter_pairs_csr``). LensKit:
    `lenskit.batch.recommend` of `_lenskit_pipeline` (one job). Lists checked equal first.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    users = np.arange(min(n_users, model.n_users_))
    rows = model.user_items_.tocsr()[users]
    imp = AlternatingLeastSquares(factors=model.user_factors_.shape[1], num_threads=1)
    imp.user_factors = model.user_factors_
    imp.item_factors = model.item_factors_
    fns = {
        "divrec": lambda: model.recommend(users, k=k)[0],
        "implicit": lambda: imp.recommend(users, rows, N=k, filter_already_liked_items=True)[0],
    }
    missing = {}
    try:
        from rectools.models.rank import Distance, ImplicitRanker

        ranker = ImplicitRanker(
            Distance.DOT, model.user_factors_, model.item_factors_, num_threads=1
        )

        def run_rectools():
            _, reco, _ = ranker.rank(users, k=k, filter_pairs_csr=rows)
            return np.asarray(reco).reshape(users.size, k)

        fns["rectools"] = run_rectools
    except ImportError as err:
        missing["rectools"] = str(err)
    try:
        from lenskit.batch import recommend as lk_recommend

        pipe = _lenskit_pipeline(model, data)

        def run_lenskit():
            lists = lk_recommend(pipe, users, n=k, n_jobs=1)
            return np.stack([lists.lookup(int(u)).ids() for u in users])

        fns["lenskit"] = run_lenskit
    except ImportError as err:
        missing["lenskit"] = str(err)
    ref = fns["divrec"]()
    differing = {}
    for name, fn in fns.items():
        got = np.asarray(fn())
        differing[name] = int((got != ref).any(axis=1).sum())
    load_before = os.getloadavg()
    times = _interleaved(fns, repeats)
    med = {n: float(np.median(t)) for n, t in times.items()}
    return {
        "workload": f"ml-1m, the first {users.size} users in one call",
        "k": k,
        "factors": int(model.user_factors_.shape[1]),
        "rows_differing_from_divrec": differing,
        "median_s": med,
        "divrec_over_peer": {n: med["divrec"] / med[n] for n in med},
        "repeats": repeats,
        "not_installed": missing,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def synthetic_log(n_users: int, n_items: int, per_user: int, seed: int = 0) -> sp.csr_matrix:
    """A random implicit log with popularity skew (Zipf-like item draws)."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    lens = rng.integers(max(1, per_user // 4), per_user * 2, size=n_users)
    rows = np.repeat(np.arange(n_users), lens)
    cols = rng.choice(n_items, size=rows.size, p=pop)
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), (n_users, n_items))
    m.data[:] = 1.0
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/topk.json")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--synthetic-users", type=int, default=100_000)
    parser.add_argument("--synthetic-items", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--skip-ml1m", action="store_true")
    parser.add_argument("--single-users", type=int, default=500)
    parser.add_argument(
        "--peer-users", type=int, default=1024, help="users of the RecTools / LensKit comparison"
    )
    parser.add_argument(
        "--only-peers", action="store_true", help="ML-1M peers comparison only (no other rows)"
    )
    args = parser.parse_args()
    results = []
    if args.only_peers:  # add / replace the peers row of an existing results file
        from divrec.data import load_movielens_1m

        with threadpool_limits(1):
            data = load_movielens_1m()
            model = ALSRecommender(factors=64, iterations=15, threads=1).fit(data)
            row = peers(model, data, args.k, args.peer_users, args.repeats)
        print(json.dumps(row, indent=1))
        path = Path(args.out)
        old = json.loads(path.read_text()) if path.exists() else {"meta": {}, "results": []}
        keep = [r for r in old["results"] if not r["workload"].startswith("ml-1m, the first")]
        old["results"] = keep + [row]
        path.write_text(json.dumps(old, indent=1) + "\n")
        return
    with threadpool_limits(1):
        if not args.skip_ml1m:
            from divrec.data import load_movielens_1m

            data = load_movielens_1m()
            model = ALSRecommender(factors=64, iterations=15, threads=1).fit(data)
            # one call of all users (as in the issue), and evaluator-sized blocks
            results.append(workload("ml-1m", model, args.k, model.n_users_, args.repeats))
            results.append(workload("ml-1m", model, args.k, args.block, args.repeats))
            results.append(single_user(model, args.k, args.single_users))
            print(json.dumps(results[-1], indent=1))
            results.append(peers(model, data, args.k, args.peer_users, args.repeats))
            print(json.dumps(results[-1], indent=1))
        if args.synthetic_users:
            log = synthetic_log(args.synthetic_users, args.synthetic_items, 40)
            model = ALSRecommender(factors=64, iterations=3, threads=1).fit(log)
            results.append(
                workload("synthetic", model, args.k, args.block, max(3, args.repeats // 2))
            )
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "threads": 1,
        "note": "shared 2-core machine; ratios are within one interleaved run",
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
