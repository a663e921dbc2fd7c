"""TotalRecall Table 2 and Fig. 4-6: sequential candidate generation on the ComiRec protocol.

The paper's Amazon Books and Taobao files are not available here; this runs on the S3-Rec
Amazon Beauty / Sports / Toys sets (item attributes as categories) and Yelp. For each dataset
and seed: `comirec_split` (users 80/10/10, held-out sequences cut at 80%: history → targets),
every Table 2 method trained on the training users' sequences, and the test users' top-50
lists (full ranking through each model's faiss retrieval stage, history items not excluded,
as in ComiRec) scored by Recall@N / HitRate@N (App. A.6.2 Eq. 14, 16) and distinct items@N /
distinct categories@N (N = 20, 50), and NDCG@N. Training follows ComiRec's code: cuts from
history length 4 (``--min-history 4``: its data iterator's ``k >= 4``), ComiRec-DR with one
capsule map per position (``--dr-weights position``: ``bilinear_type=2``), and each model
trained until its validation Recall@50 stops improving (``--patience`` evaluations every
``--eval-every`` epochs on the split's validation users, best weights kept, at most
``--epochs``); the epochs run and the best epoch of every run are in the JSON and the table.
Reductions for the 2-core budget: ``--epochs`` (the cap) and ``--train-users`` (a seeded share
of the training users); ``--jobs 2`` trains two runs at once (1 torch thread each). Also:

* Fig. 4: validation metrics@50 against (pseudo-user, target) pairs consumed, seed 0;
* Fig. 5: TR-Youtube Bi-InfoNCE with next-n prediction, n ∈ {1, 3, 5, 7, 10}: Recall@50 and
  HitRate@50 against n (the Table 2 "next-n" row uses the n with the best mean validation
  Recall@50);
* Fig. 6: KL(p_test ‖ p_data,n) between the test-target item marginal and the next-n
  training-target marginal, against n.

Outputs in ``--out``: ``table2.json`` (every run, written as it goes), ``table2.md``,
``fig4_<dataset>.png``, ``fig5.png``, ``fig6.png``; and ``--throughput`` JSON (training
pairs/s per model, seed 0 of the first dataset; with ``--throughput-bench``: one epoch of
every model, wall and CPU seconds, to project the full run).

Run: ``python -m reproductions.run reproductions/totalrecall_table2.toml`` (the committed run,
into ``benchmarks/results/totalrecall_table2_v3``; ``totalrecall_table2/`` is the superseded
first run); ``python -m reproductions.totalrecall_table2 --report-only --out
benchmarks/results/totalrecall_table2_v3`` rebuilds the Markdown, the claims and the plots from
the JSON. Resumable: every finished (dataset, method, seed) run is kept in ``table2.json`` and
skipped on a re-run. Smoke variant: ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from divrec.data.s3rec import load_s3rec
from divrec.evaluation.sequential import evaluate_sequences
from divrec.registry import create
from divrec.retrieval.baselines import PopularityRecommender, RandomRecommender
from divrec.splitting.comirec import (
    comirec_split,
    kl_divergence,
    next_n_target_marginal,
)
from reproductions.units import run_units

#: Table 2, Amazon Books column (Recall@50, HitRate@50, in %)
PAPER_BOOKS = {
    "random": ("–", "–"),  # a sanity row of divrec's, not in the paper
    "popular": (2.400, 5.226),
    "youtube-ssm": (7.312, 15.894),
    "comirec-sa": (8.467, 17.202),
    "comirec-dr": (8.106, 17.583),
    "youtube-ssm-l2": (9.37, 19.25),
    "tr-u2i": (10.34, 21.15),
    "tr-bi": (10.12, 20.554),
    "tr-next-n": (11.571, 23.221),
}
LABELS = {
    "random": "Random",
    "popular": "Popular",
    "youtube-ssm": "YouTube [SSM w/o l2-norm]",
    "comirec-sa": "ComiRec-SA",
    "comirec-dr": "ComiRec-DR",
    "youtube-ssm-l2": "YouTube [SSM with l2-norm]",
    "tr-u2i": "TR-Youtube [Uni-InfoNCE u2i]",
    "tr-bi": "TR-Youtube [Bi-InfoNCE]",
    "tr-next-n": "TR-Youtube [next-n, Bi-InfoNCE]",
}
NEXT_N = (1, 3, 5, 7, 10)
#: the sanity rows without training (no validation stopping, no curves, no claims)
UNTRAINED = ("random", "popular")
DATASETS = ("beauty", "toys", "sports", "yelp")


def methods(common: dict) -> dict:
    """Method name → constructor of a fresh model (the n-sweep is added separately)."""
    return {
        "random": lambda: RandomRecommender(),
        "popular": lambda: PopularityRecommender(),
        "youtube-ssm": lambda: create("model", "youtube", {"l2_norm": False, **common}),
        "comirec-sa": lambda: create("model", "comirec-sa", common),
        "comirec-dr": lambda: create("model", "comirec-dr", common),
        "youtube-ssm-l2": lambda: create("model", "youtube", {"l2_norm": True, **common}),
        "tr-u2i": lambda: create("model", "tr-youtube", {"loss": "u2i", **common}),
        "tr-bi": lambda: create("model", "tr-youtube", {"loss": "bi", **common}),
        **{
            f"next-{n}": (
                lambda n=n: create("model", "tr-youtube", {"loss": "bi", "next_n": n, **common})
            )
            for n in NEXT_N[1:]
        },
        # control: next-1 trained on as many (pseudo-user, target) pairs as next-5 consumes
        "tr-bi-5x": lambda: create(
            "model", "tr-youtube", {"loss": "bi", **common, "epochs": 5 * common["epochs"]}
        ),
    }


def evaluate_with_ndcg(model, split, part: str, ns) -> dict:
    """`evaluate_sequences` plus NDCG@N (binary gains over the held-out targets, App. A.6
    Eq. 15 generalized to several targets), from one recommendation pass."""
    from divrec.evaluation.sequential import recommend_sequences, sequence_metrics, target_matrix
    from divrec.metrics import hits_matrix, ndcg_at_k, relevant_counts

    history = getattr(split, f"{part}_history")
    targets = getattr(split, f"{part}_targets")
    rec = recommend_sequences(model, history, max(ns))
    out = sequence_metrics(rec, targets, split.item_categories, ns)
    rel = target_matrix(targets, split.n_items)
    hits, n_rel = hits_matrix(rec, rel), relevant_counts(rel)
    for n in ns:
        out[f"ndcg@{n}"] = float(np.nanmean(ndcg_at_k(hits, n_rel, n)))
    return out


def common_params(args) -> dict:
    """The model hyperparameters shared by every Table 2 method (from the CLI)."""
    common = {
        "dim": args.dim,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "tau": args.tau,
        "max_len": args.max_len,
        "n_interests": args.n_interests,
        "min_history": args.min_history,
        "threads": 1,
    }
    if args.patience:
        common.update(patience=args.patience, eval_every=args.eval_every, valid_k=50)
    return common


def model_for(name: str, args):
    common = common_params(args)
    if name == "comirec-dr":
        return create("model", "comirec-dr", {**common, "dr_weights": args.dr_weights})
    return methods(common)[name]()


def subsample_train(split, fraction: float, seed: int):
    """The split with a seeded `fraction` of its training users kept (validation and test
    users unchanged): the reduction option for the 2-core budget."""
    if fraction >= 1.0:
        return split
    import dataclasses

    users = np.unique(split.train.users)
    rng = np.random.default_rng([seed, 0x7AB1E2])
    keep = rng.choice(users, max(1, int(round(fraction * users.size))), replace=False)
    return dataclasses.replace(split, train=split.train.select(np.isin(split.train.users, keep)))


def train_one(args, dataset: str, seed: int, name: str, curve: bool) -> dict:
    """One (dataset, method, seed) run: fit (early stopping on the split's validation users'
    Recall@50 with `--patience`), then test and validation metrics of the kept weights."""
    import torch

    torch.set_num_threads(1)
    split = subsample_train(
        comirec_split(load_s3rec(dataset, args.home), seed=seed), args.train_users, seed
    )
    model = model_for(name, args)
    if "seed" in model.get_params():
        model = model.with_params(seed=seed)
    kwargs = {}
    if name not in UNTRAINED and args.patience:
        kwargs["valid"] = (split.valid_history, split.valid_targets)
    if curve and name not in UNTRAINED:
        lengths = np.bincount(split.train.users)
        per_epoch = int(np.maximum(lengths - args.min_history, 0).sum())
        if args.patience:
            every = max(1, int(args.eval_every * per_epoch))
        else:
            every = max(1, int(args.epochs * per_epoch / max(args.curve_points, 1)))
        if name.startswith("next-"):
            every *= int(name.split("-")[1])

        def cb(m, _split=split):
            return evaluate_sequences(m, _split, "valid", (50,), max_users=1000)

        kwargs.update(callback=cb, callback_every=every)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(split.train, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "fit_cpu_seconds": cpu,
        "test": evaluate_with_ndcg(model, split, "test", (20, 50)),
        "valid": evaluate_sequences(model, split, "valid", (50,)),
        "wall_seconds": wall,
        "train_seconds": getattr(model, "train_seconds_", wall),
        "examples_seen": getattr(model, "examples_seen_", 0),
        "epochs_run": getattr(model, "epochs_run_", None),
        "best_epoch": getattr(model, "best_epoch_", None),
        "stopped_early": getattr(model, "stopped_early_", None),
        "valid_recall_curve": [list(p) for p in getattr(model, "valid_recall_", [])],
        "epoch_seconds": (
            getattr(model, "train_seconds_", 0.0) / model.epochs_run_
            if getattr(model, "epochs_run_", 0)
            else None
        ),
        "curve": [(int(n), r) for n, r in model.history_] if "callback" in kwargs else [],
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def run(args) -> dict:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table2.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}, "kl": {}}
    common = common_params(args)
    settings = {
        **common,
        "seeds": args.seeds,
        "ssm_negatives": 1280,
        "dr_weights": args.dr_weights,
        "train_users": args.train_users,
    }
    if results.get("settings") and results["runs"]:
        old = {k: v for k, v in results["settings"].items() if k != "seeds"}
        new = {k: v for k, v in settings.items() if k != "seeds"}
        if old != new:
            raise SystemExit(
                f"{path} holds runs with other settings ({old}); use another --out to resume"
            )
    results["settings"] = settings
    names = methods(common)
    chosen = args.methods.split(",") if args.methods else list(names)
    if args.patience and not args.methods:
        chosen.remove("tr-bi-5x")  # the longer-training control is moot when runs converge
    tasks = []
    for dataset in args.datasets.split(","):
        if dataset not in results["kl"]:
            data = load_s3rec(dataset, args.home)
            split = comirec_split(data, seed=args.seeds[0])
            p_test = np.bincount(
                split.test_targets[split.test_targets >= 0], minlength=data.n_items
            ).astype(np.float64)
            results["kl"][dataset] = {
                str(n): kl_divergence(p_test, next_n_target_marginal(split.train, n))
                for n in NEXT_N
            }
            results.setdefault("data", {})[dataset] = {
                "users": data.n_users,
                "items": data.n_items,
                "interactions": data.nnz,
                "categories": int(np.unique(data.item_categories.indices).size),
                "train_users": int(np.unique(split.train.users).size),
                "test_users": int(split.test_users.size),
            }
            path.write_text(json.dumps(results, indent=1))
        for seed in args.seeds:
            for name in chosen:
                key = f"{dataset}/{name}/{seed}"
                if key not in results["runs"]:
                    curve = seed == args.seeds[0] and args.curve_points > 0
                    tasks.append((key, dataset, seed, name, curve))

    def done(key: str, run_: dict) -> None:
        results["runs"][key] = run_
        t = run_["test"]
        ep = run_["epochs_run"]
        print(
            f"{key}: R@50 {t['recall@50']:.4f} HR@50 {t['hitrate@50']:.4f} "
            f"NDCG@50 {t['ndcg@50']:.4f} items@50 {t['distinct_items@50']:.0f} "
            f"cats@50 {t['distinct_categories@50']:.0f} "
            f"epochs {'–' if ep is None else f'{ep:.1f}'} "
            f"(best {run_['best_epoch']}) ({run_['wall_seconds']:.0f} s)",
            flush=True,
        )
        path.write_text(json.dumps(results, indent=1))

    for i, run_ in run_units(train_one, [(args, *t[1:]) for t in tasks], args.jobs):
        done(tasks[i][0], run_)
    return results


# --------------------------------------------------------------------------- report
def _stats(results: dict, dataset: str, name: str, part: str, metric: str):
    vals = [
        r[part][metric]
        for k, r in results["runs"].items()
        if k.split("/")[0] == dataset and k.split("/")[1] == name and metric in r[part]
    ]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def best_next_n(results: dict, dataset: str) -> int | None:
    """The n ∈ NEXT_N with the best mean validation Recall@50 (n = 1 is tr-bi)."""
    best, best_n = -1.0, None
    for n in NEXT_N:
        s = _stats(results, dataset, "tr-bi" if n == 1 else f"next-{n}", "valid", "recall@50")
        if s is not None and s[0] > best:
            best, best_n = s[0], n
    return best_n


def _row_name(name: str, results: dict, dataset: str) -> str:
    if name != "tr-next-n":
        return name
    n = best_next_n(results, dataset)
    return "tr-bi" if n in (None, 1) else f"next-{n}"


def markdown(results: dict) -> str:
    datasets = [d for d in DATASETS if any(k.startswith(d + "/") for k in results["runs"])]
    s = results.get("settings", {})
    lines = [
        "# TotalRecall Table 2 — sequential candidate generation (ComiRec protocol)",
        "",
        "**Data substitution**: the paper uses Amazon Books and Taobao (ComiRec's files), which",
        "are not available here. These rows are on the S3-Rec Amazon Beauty / Toys / Sports and",
        "Yelp sets (item attributes as categories; Amazon attributes mix categories and brand).",
        "The paper's Amazon Books numbers (Recall@50 / HitRate@50, %) are shown for reference",
        "only; they are a different dataset and not comparable in absolute value.",
        "",
        "Protocol: users split 80/10/10 (seeded); training users' whole sequences are the",
        "training data; a test user's first 80% is the history, the last 20% the targets; full",
        "ranking through each model's faiss retrieval stage; history items not excluded",
        "(as ComiRec). Metrics in %, distinct counts over all test users' top-50 lists.",
        "Mean ± std over the seeds listed per dataset (population std).",
        "",
        _training_text(s),
        "",
    ]
    for d in datasets:
        info = results.get("data", {}).get(d, {})
        lines += [
            f"## {d} ({info.get('users', '?'):,} users, {info.get('items', '?'):,} items, "
            f"{info.get('interactions', '?'):,} interactions, {info.get('categories', '?')} "
            f"categories; {info.get('test_users', '?'):,} test users)",
            "",
            "| Method | Recall@50 | HitRate@50 | NDCG@50 | Distinct items@50 | Distinct cates@50 "
            "| Recall@20 | HitRate@20 | Epochs best / run (capped) "
            "| Books R@50 / HR@50 (paper) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, label in LABELS.items():
            row = _row_name(name, results, d)
            cells = []
            for metric, scale in (
                ("recall@50", 100),
                ("hitrate@50", 100),
                ("ndcg@50", 100),
                ("distinct_items@50", 1),
                ("distinct_categories@50", 1),
                ("recall@20", 100),
                ("hitrate@20", 100),
            ):
                st = _stats(results, d, row, "test", metric)
                if st is None:
                    cells.append("–")
                else:
                    fmt = "{:.2f} ± {:.2f}" if scale == 100 else "{:.0f} ± {:.0f}"
                    cells.append(fmt.format(st[0] * scale, st[1] * scale))
            cells.append(_epochs_cell(results, d, row))
            if name == "tr-next-n":
                n = best_next_n(results, d)
                label = label.replace("next-n", f"next-{n}")
            pr, ph = PAPER_BOOKS[name]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {pr} / {ph} |")
        lines.append("")
        n_seeds = [
            _stats(results, d, n, "test", "recall@50")[2]
            for n in LABELS
            if n != "tr-next-n" and _stats(results, d, n, "test", "recall@50")
        ]
        seeds = sorted({int(k.split("/")[2]) for k in results["runs"] if k.startswith(d + "/")})
        lines.append(
            f"Seeds {seeds}; runs per row: {min(n_seeds) if n_seeds else 0}–"
            f"{max(n_seeds) if n_seeds else 0}. The next-n row uses the n with the best mean "
            "validation Recall@50 among the n that were run."
        )
        lines.append("")
        lines += _goals(results, d)
        kl = results["kl"].get(d)
        if kl:
            lines += [
                "",
                "Next-n (Fig. 5, 6): "
                + "; ".join(
                    f"n={n}: R@50 {_fmt(_stats(results, d, _n_name(n), 'test', 'recall@50'))}, "
                    f"KL {kl[str(n)]:.4f}"
                    for n in NEXT_N
                ),
                "",
            ]
    lines += _long_section(results)
    return "\n".join(lines) + "\n"


def _long_section(results: dict) -> list[str]:
    """Runs trained longer (``results["long"]``, from a separate ``--epochs`` run)."""
    long = results.get("long")
    if not long:
        return []
    ep = results.get("long_settings", {}).get("epochs")
    lines = [
        f"## Longer training check ({ep} epochs, seed 0)",
        "",
        "The 1-epoch curves (fig4_*.png) are still moving: ComiRec's distinct items fall and",
        "TR's rise with training. These runs train longer to see where they settle.",
        "",
        "| run | Recall@50 | HitRate@50 | Distinct items@50 | Distinct cates@50 | pairs |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in long.items():
        t = r["test"]
        lines.append(
            f"| {key} | {100 * t['recall@50']:.2f} | {100 * t['hitrate@50']:.2f} | "
            f"{t['distinct_items@50']:.0f} | {t['distinct_categories@50']:.0f} | "
            f"{r['examples_seen']:,} |"
        )
    best = max(long, key=lambda k: long[k]["test"]["distinct_items@50"])
    lines += [
        "",
        f"Highest distinct items@50 after longer training: {best} (Recall@50 "
        f"{100 * long[best]['test']['recall@50']:.2f}%).",
    ]
    return [*lines, ""]


def _training_text(s: dict) -> str:
    head = (
        f"Batch {s.get('batch_size')} sequences, Adam lr {s.get('lr')}, d = {s.get('dim')}, "
        f"L = {s.get('max_len')}, K = {s.get('n_interests')} interests, τ = {s.get('tau')}, "
        f"SSM with {s.get('ssm_negatives')} uniform negatives per batch; 1 epoch = one sampled "
        "sequence cut per training example of the training users. "
        f"Training cuts from history length {s.get('min_history', 1)} "
        + (
            "(ComiRec's data iterator: k ≥ 4). "
            if s.get("min_history") == 4
            else "(**deviation**: ComiRec's data iterator cuts from length 4). "
        )
        + (
            "ComiRec-DR has one map per position and interest (ComiRec's code, bilinear_type=2). "
            if s.get("dr_weights") == "position"
            else "**Deviation**: ComiRec-DR shares its maps across positions (ComiRec's code "
            "has one per position, bilinear_type=2). "
        )
    )
    if s.get("train_users", 1.0) < 1.0:
        head += (
            f"**Reduced**: {100 * s['train_users']:.0f}% of the training users (seeded); "
            "validation and test users unchanged. "
        )
    if s.get("patience"):
        return head + (
            "**Trained until the validation Recall@50 stops improving** (ComiRec's train.py "
            f"rule): Recall@50 of the split's validation users every {s.get('eval_every')} "
            f"epoch(s), stop after {s.get('patience')} evaluations without a better one, the "
            f"best evaluation's weights kept; at most {s.get('epochs')} epochs (a run that "
            "reaches the cap is counted in the 'capped' column and may not have converged). "
            "ComiRec evaluates every 1,000 steps with patience 50."
        )
    return head + (
        f"**Fixed training length**: {s.get('epochs')} epoch(s), no early stopping "
        "(the paper trains far longer: Fig. 4, ~2·10⁷ examples on Amazon Books)."
    )


def _epochs_cell(results: dict, dataset: str, name: str) -> str:
    runs = [
        r
        for k, r in results["runs"].items()
        if k.split("/")[0] == dataset and k.split("/")[1] == name and r.get("epochs_run")
    ]
    if not runs:
        return "–"
    run_ = np.mean([r["epochs_run"] for r in runs])
    best = [r["best_epoch"] for r in runs if r.get("best_epoch") is not None]
    capped = sum(1 for r in runs if r.get("best_epoch") is not None and not r["stopped_early"])
    b = f"{np.mean(best):.1f}" if best else "–"
    return f"{b} / {run_:.1f} ({capped}/{len(runs)})"


def _epochs_to(results: dict, dataset: str, name: str, share: float = 0.95):
    """Mean epochs until the validation Recall@50 first reaches `share` of its best."""
    out = []
    for k, r in results["runs"].items():
        if k.split("/")[0] != dataset or k.split("/")[1] != name:
            continue
        curve = r.get("valid_recall_curve") or []
        if curve:
            top = max(v for _, v in curve)
            out.append(next(e for e, v in curve if v >= share * top))
    return float(np.mean(out)) if out else None


def _n_name(n: int) -> str:
    return "tr-bi" if n == 1 else f"next-{n}"


def _fmt(st) -> str:
    return "–" if st is None else f"{100 * st[0]:.2f}%"


def _goals(results: dict, d: str) -> list[str]:
    """The paper's three claims checked against this dataset's numbers.

    The verdicts are also stored as `results["claims"][d]` (claim → True/False, with the
    numbers they were judged on), which the README's generated row reads."""
    out = ["Claims (judged on the mean over seeds of the test metrics):"]
    verdict: dict = {}
    results.setdefault("claims", {})[d] = verdict
    runs = [r for k, r in results["runs"].items() if k.startswith(d + "/")]
    with_valid = [r for r in runs if r.get("best_epoch") is not None]
    capped = sum(1 for r in with_valid if not r.get("stopped_early"))
    verdict["runs_stopped_on_validation"] = [len(with_valid) - capped, len(with_valid)]
    verdict["seeds"] = sorted(
        {int(k.rsplit("/", 1)[1]) for k in results["runs"] if k.startswith(d + "/")}
    )
    if with_valid:
        out.append(
            f"- Convergence: {len(with_valid) - capped} of {len(with_valid)} runs stopped on "
            f"their validation Recall@50; {capped} reached the epoch cap "
            + (
                "(all converged by this rule)."
                if capped == 0
                else "(**not converged**: the claims below are not judged on converged models)."
            )
        )
    else:
        out.append("- Fixed training length, no validation stopping: not converged models.")

    def mean(name, metric):
        st = _stats(results, d, name, "test", metric)
        return None if st is None else st[0]

    rows = [n for n in LABELS if n != "tr-next-n" and n not in UNTRAINED]
    rec = {n: mean(n, "recall@50") for n in rows}
    rows = [n for n in rows if rec[n] is not None]
    if "tr-bi" in rows:
        r_bi = rec["tr-bi"]
        # i) comparable accuracy: Bi-InfoNCE within 10% (relative) of SSM-l2 / Uni-InfoNCE
        ref = {n: rec[n] for n in ("youtube-ssm-l2", "tr-u2i") if n in rows}
        if ref:
            best_ref = max(ref.values())
            ok = r_bi >= 0.9 * best_ref
            verdict["i_comparable_recall"] = ok
            verdict["recall@50"] = {n: rec[n] for n in (*ref, "tr-bi")}
            verdict["paper_books_recall@50_pct"] = {n: PAPER_BOOKS[n][0] for n in (*ref, "tr-bi")}
            out.append(
                f"- (i) comparable accuracy (Bi-InfoNCE Recall@50 ≥ 90% of the best of SSM-l2 "
                f"and Uni-InfoNCE): {'holds' if ok else 'does not hold'} "
                f"({100 * r_bi:.2f}% vs "
                + ", ".join(f"{LABELS[n]} {100 * v:.2f}%" for n, v in ref.items())
                + ")."
            )
        # ii) diversity at comparable recall: among the methods whose Recall@50 is at least
        # 90% of Bi-InfoNCE's, is Bi-InfoNCE's distinct items@50 (cates@50) the highest? The
        # paper's claim is "most diverse at comparable recall", so it holds only where
        # Bi-InfoNCE's own Recall@50 is comparable too (claim (i)); where it is not, the
        # most distinct items are reported as such, not as the claim holding.
        comparable = verdict.get("i_comparable_recall", True)
        peers = [n for n in rows if rec[n] >= 0.9 * r_bi]
        for metric, what in (("distinct_items@50", "items"), ("distinct_categories@50", "cates")):
            vals = {n: _stats(results, d, n, "test", metric) for n in peers}
            vals = {n: v for n, v in vals.items() if v is not None}
            if "tr-bi" not in vals:
                continue
            top = max(vals, key=lambda n: vals[n][0])
            others = {n: v for n, v in vals.items() if n != "tr-bi"}
            margin = ""
            if top == "tr-bi" and others:
                second = max(others, key=lambda n: others[n][0])
                gap = vals["tr-bi"][0] - others[second][0]
                spread = vals["tr-bi"][1] + others[second][1]
                n_seeds = min(vals["tr-bi"][2], others[second][2])
                margin = f"; ahead of {LABELS[second]} by {gap:.0f} " + (
                    "(one seed: no spread to compare with)"
                    if n_seeds < 2
                    else f"({'more' if gap > spread else 'less'} than the two seed stds "
                    f"summed, {spread:.0f})"
                )
            excluded = {
                n: v
                for n, v in ((n, _stats(results, d, n, "test", metric)) for n in rows)
                if v is not None and n not in peers and v[0] > vals["tr-bi"][0]
            }
            if excluded:
                margin += "; more diverse but below 90% of its Recall@50: " + ", ".join(
                    f"{LABELS[n]} {v[0]:.0f} at Recall@50 {100 * rec[n]:.2f}%"
                    for n, v in excluded.items()
                )
            holds = top == "tr-bi" and comparable
            verdict[f"ii_most_diverse_{what}"] = holds
            verdict[f"ii_top_distinct_{what}"] = top == "tr-bi"
            verdict[f"distinct_{what}@50"] = {n: v[0] for n, v in vals.items()}
            if holds:
                said = "holds"
            elif top == "tr-bi":
                said = (
                    f"does not hold: most distinct {what}, but Bi-InfoNCE's own Recall@50 is "
                    "not comparable (claim (i) does not hold)"
                )
            else:
                said = "does not hold" + (
                    "" if comparable else " (nor is its Recall@50 comparable)"
                )
            out.append(
                f"- (ii) Bi-InfoNCE most diverse (distinct {what}@50) at comparable recall: its "
                f"Recall@50 comparable (i) and the highest distinct {what}@50 among the methods "
                f"with comparable or better Recall@50 (≥ 90% of Bi-InfoNCE's: "
                f"{', '.join(LABELS[n] for n in peers)}): "
                f"{said} (highest: {LABELS[top]} "
                f"{vals[top][0]:.0f}, Bi-InfoNCE {vals['tr-bi'][0]:.0f}{margin})."
            )
        # the appendix's narrower wording: Bi-InfoNCE surpasses Uni-InfoNCE and SSM
        comp = {
            n: mean(n, "distinct_items@50")
            for n in ("tr-u2i", "youtube-ssm", "youtube-ssm-l2")
            if n in rows
        }
        i_bi = mean("tr-bi", "distinct_items@50")
        if comp and i_bi is not None:
            ok = all(i_bi > v for v in comp.values())
            verdict["ii_prime_above_uni_and_ssm"] = ok
            out.append(
                "- (ii') Bi-InfoNCE distinct items@50 above Uni-InfoNCE and SSM (Fig. 4): "
                f"{'holds' if ok else 'does not hold'} (Bi {i_bi:.0f}; "
                + ", ".join(f"{LABELS[n]} {v:.0f}" for n, v in comp.items())
                + ")."
            )
    # iii) faster convergence: epochs to 95% of the run's best validation Recall@50
    conv = {
        n: _epochs_to(results, d, n) for n in ("youtube-ssm", "youtube-ssm-l2", "tr-u2i", "tr-bi")
    }
    if all(v is not None for v in conv.values()):
        ok = conv["youtube-ssm-l2"] < conv["youtube-ssm"] and conv["tr-bi"] <= conv["tr-u2i"]
        verdict["iii_faster_convergence"] = ok
        out.append(
            "- (iii) faster convergence with l2-norm and with Bi-InfoNCE (epochs to 95% of the "
            f"best validation Recall@50, seed mean): {'holds' if ok else 'does not hold'} "
            f"(SSM {conv['youtube-ssm']:.1f} → SSM-l2 {conv['youtube-ssm-l2']:.1f}; "
            f"Uni-InfoNCE {conv['tr-u2i']:.1f} vs Bi-InfoNCE {conv['tr-bi']:.1f})."
        )
    a, b = mean("youtube-ssm-l2", "recall@50"), mean("youtube-ssm", "recall@50")
    if a is not None and b is not None:
        out.append(
            "- l2-norm + τ raises SSM Recall@50 (Table 2): "
            f"{'holds' if a > b else 'does not hold'} "
            f"({100 * b:.2f}% → {100 * a:.2f}%)."
        )
    kl = results["kl"].get(d)
    r1 = mean("tr-bi", "recall@50")
    if kl and r1 is not None:
        parts = []
        for n in (3, 5):
            rn = mean(f"next-{n}", "recall@50")
            if rn is None:
                continue
            parts.append(
                f"n={n}: Recall@50 {100 * r1:.2f}% → {100 * rn:.2f}% "
                f"({'up' if rn > r1 else 'down'}), KL {kl['1']:.3f} → {kl[str(n)]:.3f} "
                f"({'falls' if kl[str(n)] < kl['1'] else 'rises'})"
            )
        if parts:
            out.append("- next-n (n ≤ 5) vs next-1 (Bi-InfoNCE): " + "; ".join(parts) + ".")
        r5x = mean("tr-bi-5x", "recall@50")
        r5 = mean("next-5", "recall@50")
        if r5x is not None and r5 is not None:
            ex = [
                r["examples_seen"]
                for k, r in results["runs"].items()
                if k.startswith(f"{d}/tr-bi-5x/") or k.startswith(f"{d}/next-5/")
            ]
            out.append(
                f"- Control (more training pairs): next-1 trained 5x longer reaches Recall@50 "
                f"{100 * r5x:.2f}% vs next-5 {100 * r5:.2f}% "
                f"({'next-5 still ahead' if r5 > r5x else 'the gain is explained by more pairs'}; "
                f"pairs consumed {min(ex):,}–{max(ex):,})."
            )
    return out


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any(k.startswith(d + "/") for k in results["runs"])]
    metrics = ("recall@50", "hitrate@50", "distinct_items@50", "distinct_categories@50")
    for d in datasets:
        if not any(r["curve"] for k, r in results["runs"].items() if k.startswith(d + "/")):
            continue  # curves are recorded on one dataset's first seed only
        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        for key, r in results["runs"].items():
            ds, name, _ = key.split("/")
            if ds != d or not r["curve"] or name.startswith("next-"):
                continue
            xs = [n for n, _ in r["curve"]]
            for ax, m in zip(axes, metrics, strict=True):
                ax.plot(xs, [v[m] for _, v in r["curve"]], marker=".", label=LABELS.get(name, name))
        for ax, m in zip(axes, metrics, strict=True):
            ax.set_xlabel("training (pseudo-user, target) pairs consumed")
            ax.set_title(f"{d}: validation {m}")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"fig4_{d}.png", dpi=110)
        plt.close(fig)
    if results.get("long"):
        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        for key, r in results["long"].items():
            xs = [n for n, _ in r["curve"]]
            for ax, m in zip(axes, metrics, strict=True):
                ax.plot(xs, [v[m] for _, v in r["curve"]], marker=".", label=key)
        for ax, m in zip(axes, metrics, strict=True):
            ax.set_xlabel("training (pseudo-user, target) pairs consumed")
            ax.set_title(f"longer training: validation {m}")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "fig4_long.png", dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for d in datasets:
        for ax, m in zip(axes, ("recall@50", "hitrate@50"), strict=True):
            pts = [
                (n, _stats(results, d, "tr-bi" if n == 1 else f"next-{n}", "test", m))
                for n in NEXT_N
            ]
            pts = [(n, s) for n, s in pts if s is not None]
            if pts:
                ax.errorbar(
                    [n for n, _ in pts],
                    [100 * s[0] for _, s in pts],
                    yerr=[100 * s[1] for _, s in pts],
                    marker="o",
                    capsize=3,
                    label=d,
                )
            ax.set_xlabel("n (next-n prediction)")
            ax.set_ylabel(f"test {m} (%)")
            ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fig. 5: TR-Youtube Bi-InfoNCE, next-n prediction")
    fig.tight_layout()
    fig.savefig(out / "fig5.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for d, kl in results["kl"].items():
        ax.plot([int(n) for n in kl], list(kl.values()), marker="o", label=d)
    ax.set_xlabel("n (next-n prediction)")
    ax.set_ylabel("KL(p_test ‖ p_data,n)")
    ax.set_title("Fig. 6: test vs next-n training item marginal")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig6.png", dpi=110)
    plt.close(fig)


def throughput_bench(args, path: Path) -> None:
    """One epoch of every model (no validation, no early stopping) in this one process, on
    the first dataset at the run's settings: seconds per epoch, to project the full run."""
    dataset = args.datasets.split(",")[0]
    split = subsample_train(
        comirec_split(load_s3rec(dataset, args.home), seed=args.seeds[0]),
        args.train_users,
        args.seeds[0],
    )
    rows = {}
    chosen = args.methods.split(",") if args.methods else list(methods(common_params(args)))
    for name in chosen:
        if name in UNTRAINED or name == "tr-bi-5x":
            continue
        model = model_for(name, args).with_params(epochs=1.0, patience=None)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(split.train)
        cpu = time.process_time() - c0
        valid_s, c1 = time.perf_counter(), time.process_time()
        model._valid_recall(model.net_, split.valid_history, split.valid_targets)
        valid_s = time.perf_counter() - valid_s
        rows[name] = {
            "epoch_seconds": model.train_seconds_,
            "epoch_cpu_seconds": cpu,
            "validation_cpu_seconds": time.process_time() - c1,
            "fit_wall_seconds": time.perf_counter() - t0 - valid_s,
            "validation_seconds": valid_s,
            "pairs": model.examples_seen_,
            "pairs_per_second": model.examples_seen_ / model.train_seconds_,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        }
        print(name, f"{model.train_seconds_:.0f} s/epoch, validation {valid_s:.1f} s", flush=True)
        path.write_text(
            json.dumps(
                {
                    "what": "one training epoch of each model (1 torch thread) and one "
                    "validation Recall@50 evaluation, in turn in one process, on the 2-core "
                    "machine shared with other jobs (loadavg per row): wall seconds inflate "
                    "with the load, CPU seconds (process_time, 1 thread) approximate an "
                    "unloaded core",
                    "dataset": dataset,
                    "seed": args.seeds[0],
                    "settings": {**common_params(args), "dr_weights": args.dr_weights},
                    "models": rows,
                },
                indent=2,
            )
        )


def throughput(results: dict, path: Path, dataset: str, seed: int) -> None:
    rows = {}
    for key, r in results["runs"].items():
        ds, name, s = key.split("/")
        if ds == dataset and int(s) == seed and r["examples_seen"]:
            rows[name] = {
                "pairs_per_second": r["examples_seen"] / r["train_seconds"],
                "train_seconds": r["train_seconds"],
                "pairs": r["examples_seen"],
            }
    path.write_text(
        json.dumps(
            {
                "what": "training (pseudo-user, target) pairs per second, 1 torch thread, "
                "machine shared with other jobs: compare as ratios within this run only",
                "dataset": dataset,
                "seed": seed,
                "settings": results.get("settings"),
                "models": rows,
            },
            indent=2,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--home", default=None)
    parser.add_argument("--datasets", default="beauty")
    parser.add_argument("--methods", default="")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=float, default=30.0, help="most epochs (the cap with --patience)"
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="validation evaluations without a better Recall@50 before stopping (0: none, "
        "train every --epochs)",
    )
    parser.add_argument(
        "--eval-every", type=float, default=1.0, help="epochs between validation evaluations"
    )
    parser.add_argument(
        "--min-history",
        type=int,
        default=4,
        help="shortest training history (ComiRec's data iterator: 4; 1: every prefix)",
    )
    parser.add_argument(
        "--dr-weights",
        choices=("position", "shared"),
        default="position",
        help="ComiRec-DR maps: per position (ComiRec's bilinear_type=2) or shared",
    )
    parser.add_argument(
        "--train-users",
        type=float,
        default=1.0,
        help="reduction: seeded share of the training users kept (valid/test unchanged)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained in parallel (1 torch thread each)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--n-interests", type=int, default=4)
    parser.add_argument("--curve-points", type=int, default=6)
    parser.add_argument("--throughput", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--throughput-bench", action="store_true", help="only time every model into --throughput"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke variant: beauty, seed 0, at most 0.3 epoch with a validation every 0.1 "
        "(patience 2), random / popular / youtube-ssm / comirec-sa / comirec-dr / tr-bi, no curves",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.epochs, args.curve_points = "beauty", [0], 0.3, 0
        args.eval_every, args.patience = 0.1, 2
        args.methods = args.methods or "random,popular,youtube-ssm,comirec-sa,comirec-dr,tr-bi"
    import torch

    torch.set_num_threads(1)
    if args.throughput_bench:
        throughput_bench(args, args.throughput)
        return
    if args.report_only:
        results = json.loads((args.out / "table2.json").read_text())
    else:
        results = run(args)
    quick = (
        "**QUICK smoke run (≤ 0.3 epoch, validation every 0.1, 1 seed, 5 methods): "
        "not a result.**\n\n"
    )
    (args.out / "table2.md").write_text((quick if args.quick else "") + markdown(results))
    # markdown() filled results["claims"] (the verdicts the README row reads)
    (args.out / "table2.json").write_text(json.dumps(results, indent=1))
    plots(results, args.out)
    if args.throughput:
        throughput(results, args.throughput, args.datasets.split(",")[0], args.seeds[0])
    print(markdown(results))


if __name__ == "__main__":
    main()
