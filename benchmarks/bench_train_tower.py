"""Two-tower training speed: sparse (row-wise) table updates vs dense Adam (issue "Speed" item 5).

TotalRecall's Table 1 TR model on ML-1M (NCF protocol): Bi-InfoNCE with logQ and accidental-
hit removal, d = 128, τ = 0.111, batch 512, lr 0.01 decayed linearly, one torch thread.

``--speed``: examples/s of short fits (``--speed-epochs``), each leg in its own process,
legs interleaved ``--repeats`` times (medians compared within one run):

* ``current``: the code of ``--baseline-rev`` (`git archive` of its ``src/``; dense Adam over
  both full tables, (B, B) one-hot / bool masks);
* ``adam``: this tree with ``optimizer="adam"`` (dense Adam, sparse accidental-hit pairs);
* ``sparse_adam``: this tree's default (``nn.Embedding(sparse=True)`` + `torch.optim.SparseAdam`
  for the tables, sparse accidental-hit pairs);
* ``minimal``: a hand-written loop (sparse embeddings + SparseAdam, the same loss with a plain
  ``ids[:, None] == ids[None, :]`` mask), no divrec code in the loop.

``--seq-speed``: the same for `SequentialRecommender` (YouTube DNN: mean encoder, sampled
softmax with 1,280 shared negatives, d = 64, batch 128, on the ML-1M log in time order):
``seq_current`` (the former code), ``seq_adam`` and ``seq_sparse_adam``.

Examples/s are positives consumed per second of the fit, by CPU time (`time.process_time`,
one thread: robust to other processes on a shared machine) and by wall time.

``--hr``: HR@10 / NDCG@10 (sampled protocol, 99 negatives) of full fits (``--epochs``, the
paper's 6) with ``optimizer="adam"`` and ``"sparse_adam"`` for ``--seeds`` seeds each.

``--tune``: dense and lazy (row-wise) Adam are different optimizers, so each gets its own lr,
chosen on validation carved from the training log (never the test split): `validation_split`
holds out one training row per user (uniformly random: this NCF training log has no
timestamps) with 99 negatives (`divrec.splitting.ncf_split`); for each of ``--optimizers`` and
each lr of ``--lrs`` (default 0.005, 0.01, 0.02) one fit (seed ``--tune-seed``, ``--epochs``,
SETTINGS otherwise) on the rest gives validation HR@10; the best lr (first on ties) is then
fitted on the full training log for ``--seeds`` seeds and scored on the test split as in
``--hr``. Results go to ``quality_tuned`` of ``--out`` (grid, chosen lr, per-seed test rows,
means, seed std, paired sparse - dense differences, CPU seconds and loadavg per fit), saved
after every fit under a file lock; fits already there are skipped, so a run resumes, and runs
with different ``--optimizers`` may share one file in parallel.

Run: ``DIVREC_DATA_HOME=... nice -n 10 python benchmarks/bench_train_tower.py --speed --hr``
(``--tune --optimizers adam`` and ``--tune --optimizers sparse_adam`` in two processes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = {
    "dim": 128,
    "loss": "bi",
    "tau": 0.111,
    "batch_size": 512,
    "lr": 0.01,
    "lr_schedule": "linear",
    "threads": 1,
}
LEGS = ("current", "adam", "sparse_adam", "minimal")
SEQ_LEGS = ("seq_current", "seq_adam", "seq_sparse_adam")
# the sequential model's legs: YouTube DNN (mean encoder, sampled softmax with 1,280 shared
# negatives, d = 64, batch 128) on the ML-1M log in time order
SEQ_SETTINGS = {"encoder": "mean", "loss": "ssm", "dim": 64, "batch_size": 128, "threads": 1}


def _load():
    from divrec.data.ncf import load_ncf_ml1m

    return load_ncf_ml1m()[0]


def minimal_fit(matrix, seed: int, epochs: float) -> tuple[int, float, float]:
    """A hand-written Bi-InfoNCE loop; returns (examples, cpu seconds, wall seconds)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    coo = matrix.tocoo()
    users, items = coo.row.astype(np.int64), coo.col.astype(np.int64)
    n_users, n_items = matrix.shape
    n, b, tau, lr = users.size, SETTINGS["batch_size"], SETTINGS["tau"], SETTINGS["lr"]
    lq_u = torch.from_numpy(np.log(np.maximum(np.bincount(users, minlength=n_users), 1) / n))
    lq_i = torch.from_numpy(np.log(np.maximum(np.bincount(items, minlength=n_items), 1) / n))
    lq_u, lq_i = lq_u.float(), lq_i.float()
    user = torch.nn.Embedding(n_users, SETTINGS["dim"], sparse=True)
    item = torch.nn.Embedding(n_items, SETTINGS["dim"], sparse=True)
    with torch.no_grad():
        user.weight.normal_(0.0, 0.1)
        item.weight.normal_(0.0, 0.1)
    opt = torch.optim.SparseAdam([user.weight, item.weight], lr=lr)
    rng = np.random.default_rng(seed)
    target = int(round(epochs * n))
    done = 0
    c0, w0 = time.process_time(), time.perf_counter()
    while done < target:
        order = rng.permutation(n)
        for s in range(0, n, b):
            if done >= target:
                break
            idx = order[s : s + min(b, target - done)]
            for g in opt.param_groups:
                g["lr"] = lr * (1.0 - done / target)
            done += idx.size
            bu, bi = torch.from_numpy(users[idx]), torch.from_numpy(items[idx])
            u = F.normalize(user(bu), dim=-1)
            i = F.normalize(item(bi), dim=-1)
            s_ui = u @ i.T / tau
            ar = torch.arange(idx.size)
            loss = 0.0
            for z, lq, ids in ((s_ui, lq_i[bi], bi), (s_ui.T, lq_u[bu], bu)):
                hit = ids[:, None] == ids[None, :]
                hit.fill_diagonal_(False)
                loss = loss + F.cross_entropy((z - lq).masked_fill(hit, float("-inf")), ar)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return done, time.process_time() - c0, time.perf_counter() - w0


def run_leg(leg: str, seed: int, epochs: float) -> dict:
    """One timed fit (in this process)."""
    import torch

    # the first optimizer of a process imports torch._dynamo (~2 s): not part of any leg
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    if leg.startswith("seq_"):
        from divrec.data import load_movielens_1m
        from divrec.retrieval.sequential import SequentialRecommender

        params = dict(SEQ_SETTINGS, seed=seed, epochs=epochs)
        if leg != "seq_current":
            params["optimizer"] = leg[4:]
        model = SequentialRecommender(**params)
        data = load_movielens_1m()
        c0, w0 = time.process_time(), time.perf_counter()
        model.fit(data)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        n = int(model.examples_seen_)
        return {"examples": n, "cpu_s": cpu, "wall_s": wall, "ex_per_cpu_s": n / cpu}
    split = _load()
    if leg == "minimal":
        n, cpu, wall = minimal_fit(split.train.to_csr(binary=True), seed, epochs)
    else:
        from divrec.retrieval.two_tower import TwoTowerRecommender

        params = dict(SETTINGS, seed=seed, epochs=epochs)
        if leg != "current":
            params["optimizer"] = leg
        model = TwoTowerRecommender(**params)
        c0, w0 = time.process_time(), time.perf_counter()
        model.fit(split.train)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        n = int(model.examples_seen_)
    return {"examples": n, "cpu_s": cpu, "wall_s": wall, "ex_per_cpu_s": n / cpu}


def speed(args, legs=LEGS, ref="current", new="sparse_adam") -> dict:
    head = Path(tempfile.mkdtemp(prefix="divrec_baseline_"))
    subprocess.run(
        f"git archive {args.baseline_rev} src | tar -x -C {head}", shell=True, check=True
    )
    runs: dict[str, list[dict]] = {leg: [] for leg in legs}
    load = [os.getloadavg()]
    for rep in range(args.repeats):
        for leg in legs:
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            src = head / "src" if leg == ref else Path(__file__).parents[1] / "src"
            env["PYTHONPATH"] = str(src)
            cmd = [sys.executable, __file__, "--leg", leg, "--speed-epochs", str(args.speed_epochs)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            runs[leg].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rep, leg, runs[leg][-1], flush=True)
        load.append(os.getloadavg())
    med = {leg: float(np.median([r["ex_per_cpu_s"] for r in runs[leg]])) for leg in legs}
    med_wall = {
        leg: float(np.median([r["examples"] / r["wall_s"] for r in runs[leg]])) for leg in legs
    }
    return {
        "baseline_rev": args.baseline_rev,
        "epochs_per_fit": args.speed_epochs,
        "examples_per_cpu_s_median": med,
        "examples_per_wall_s_median": med_wall,
        "over_the_former_code": {leg: med[leg] / med[ref] for leg in legs},
        f"{new}_over_each": {leg: med[new] / med[leg] for leg in legs},
        "runs": runs,
        "loadavg_before_and_after_each_round": load,
    }


def _eval_config():
    from divrec.evaluation.harness import EvalConfig

    # the curve config of reproductions/totalrecall_table1.py (sampled protocol, HR / NDCG)
    return EvalConfig(protocol="sampled", accuracy=("hr", "ndcg"), diversity=(), n_bootstrap=0)


def fit_eval(split, opt: str, seed: int, epochs: float, lr: float | None = None) -> dict:
    """Fits TR (SETTINGS, `lr` if given) on `split.train`; HR@10 / NDCG@10 on `split.test`."""
    from divrec.evaluation.harness import evaluate
    from divrec.retrieval.two_tower import TwoTowerRecommender

    params = dict(SETTINGS, seed=seed, epochs=epochs, optimizer=opt)
    if lr is not None:
        params["lr"] = lr
    model = TwoTowerRecommender(**params)
    c0 = time.process_time()
    model.fit(split.train)
    cpu = time.process_time() - c0
    mean = evaluate(model, split, _eval_config(), progress=False).aggregate
    mean = mean.set_index("metric")["mean"]
    return {
        "optimizer": opt,
        "seed": seed,
        "lr": params["lr"],
        "hr@10": float(mean["hr"]),
        "ndcg@10": float(mean["ndcg"]),
        "train_cpu_s": cpu,
        "train_wall_s": model.train_seconds_,
        "eval_cpu_s": time.process_time() - c0 - cpu,
        "loadavg": os.getloadavg(),
    }


def quality(args) -> dict:
    split = _load()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for opt in args.optimizers:
            rows.append(fit_eval(split, opt, seed, args.epochs))
            print(json.dumps(rows[-1]), flush=True)
    return summarize(rows, args.epochs)


def validation_split(split, seed: int = 0):
    """Train minus one held-out training row per user; that row + 99 negatives to validate on.

    The NCF protocol applied to the training log alone (`divrec.splitting.ncf_split`:
    per-user leave-last-one, 99 uniform negatives among the user's non-training items, `seed`),
    so the held-out test item and its negatives are never read. `leave_last_one` orders a
    user's rows by timestamp, else by row position; the NCF training log rebuilt from the
    shared layout has no timestamps and its rows are sorted by (user, item rank), so the rows
    are first put in a uniformly random order (`seed`): each user's validation row is then a
    uniformly random training row (with timestamps it is the latest, as for the test item).
    """
    from divrec.splitting import ncf_split

    train = split.train
    if train.timestamps is None:
        train = train.select(np.random.default_rng(seed).permutation(train.nnz))
    return ncf_split(train, n_negatives=99, seed=seed)


def _locked_update(path: Path, update) -> dict:
    """Read-modify-write of the JSON at `path` under an exclusive lock (parallel --tune runs)."""
    import fcntl

    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = json.loads(path.read_text()) if path.exists() else {}
        update(out)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)
        return out


def _same_fit(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("phase", "optimizer", "seed", "lr", "epochs"))


def tune(args) -> dict:
    """Each optimizer's lr by validation HR@10 (seed 0), then test fits at the chosen lr.

    Saves after every fit into ``quality_tuned`` of ``--out`` and skips fits already there, so
    an interrupted run resumes and runs for different ``--optimizers`` can share one file.
    """
    split = _load()
    valid = None
    key = args.tune_key

    def done() -> list[dict]:
        out = json.loads(args.out.read_text()) if args.out.exists() else {}
        return out.get(key, {}).get("runs", [])

    def record(row: dict) -> dict:
        def update(out):
            block = out.setdefault(key, {})
            runs = [r for r in block.get("runs", []) if not _same_fit(r, row)] + [row]
            out[key] = summarize_tuned(runs, args)
            note = out[key]["notes"][0]
            if key == "quality_tuned" and note not in out.setdefault("notes", []):
                out["notes"].append(note)

        return _locked_update(args.out, update)

    def run(phase: str, opt: str, seed: int, lr: float) -> dict:
        nonlocal valid
        want = {"phase": phase, "optimizer": opt, "seed": seed, "lr": lr, "epochs": args.epochs}
        have = [r for r in done() if _same_fit(r, want)]
        if have:
            print("skip (in the JSON)", json.dumps(want), flush=True)
            return have[0]
        if phase == "valid" and valid is None:
            valid = validation_split(split)
        row = fit_eval(valid if phase == "valid" else split, opt, seed, args.epochs, lr)
        row = dict(want, **row)
        record(row)
        print(json.dumps(row), flush=True)
        return row

    for opt in args.optimizers:
        grid = [run("valid", opt, args.tune_seed, lr) for lr in args.lrs]
        best = max(grid, key=lambda r: r["hr@10"])["lr"]  # ties: the first in --lrs order
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run("test", opt, seed, best)
    return json.loads(args.out.read_text())[key]


def summarize_tuned(runs: list[dict], args) -> dict:
    """Validation grid, chosen lr, test rows at it, means, seed std and paired differences."""
    valid = [r for r in runs if r["phase"] == "valid"]
    grid: dict[str, dict[str, float]] = {}
    for r in valid:
        grid.setdefault(r["optimizer"], {})[str(r["lr"])] = r["hr@10"]
    chosen = {}
    for opt, by_lr in grid.items():
        if all(str(lr) in by_lr for lr in args.lrs):
            chosen[opt] = max(args.lrs, key=lambda lr: by_lr[str(lr)])
    test = [
        r
        for r in runs
        if r["phase"] == "test" and r["optimizer"] in chosen and r["lr"] == chosen[r["optimizer"]]
    ]
    per_opt = {}
    for opt in sorted(chosen):
        rows = sorted((r for r in test if r["optimizer"] == opt), key=lambda r: r["seed"])
        hr = np.array([r["hr@10"] for r in rows])
        nd = np.array([r["ndcg@10"] for r in rows])
        per_opt[opt] = {
            "lr": chosen[opt],
            "seeds": [r["seed"] for r in rows],
            "hr@10": hr.tolist(),
            "hr@10_mean": float(hr.mean()) if hr.size else None,
            "hr@10_seed_std": float(hr.std(ddof=1)) if hr.size > 1 else None,
            "ndcg@10_mean": float(nd.mean()) if nd.size else None,
            "train_cpu_s_mean": float(np.mean([r["train_cpu_s"] for r in rows])) if rows else None,
        }
    out = {
        "protocol": (
            f"lr per optimizer chosen by validation HR@10 (seed {args.tune_seed}) on the NCF "
            "training log minus one held-out training row per user (validation_split: the "
            "training log has no timestamps here, so a uniformly random row per user, then "
            "divrec.splitting.ncf_split: leave-last-one + 99 negatives, seed 0; the test split "
            "is never read); then test "
            "HR@10 / NDCG@10 (sampled, 99 published negatives) of fits on the full training "
            "log at the chosen lr. SETTINGS otherwise unchanged (linear decay, 1 thread)."
        ),
        "epochs": args.epochs,
        "lr_grid": list(args.lrs),
        "validation_hr@10": grid,
        "chosen_lr": chosen,
        "test": per_opt,
        "runs": runs,
        "notes": [
            "lr does not change the work per step, so the examples/s of 'speed' hold at any lr "
            "(not re-measured)",
        ],
    }
    if {"adam", "sparse_adam"} <= per_opt.keys():
        a = {r["seed"]: r["hr@10"] for r in test if r["optimizer"] == "adam"}
        s_ = {r["seed"]: r["hr@10"] for r in test if r["optimizer"] == "sparse_adam"}
        paired = {str(k): s_[k] - a[k] for k in sorted(a.keys() & s_.keys())}
        diffs = np.array(list(paired.values()))
        out["hr@10_paired_diff_sparse_minus_adam"] = paired
        if diffs.size:
            out["hr@10_mean_paired_diff"] = float(diffs.mean())
            out["hr@10_paired_diff_std"] = float(diffs.std(ddof=1)) if diffs.size > 1 else None
            out["within_0.005"] = bool(abs(diffs.mean()) <= 0.005)
    return out


def summarize(rows: list[dict], epochs: float) -> dict:
    """Mean and seed standard deviation of HR@10 / NDCG@10 per optimizer."""
    summary = {}
    for opt in sorted({r["optimizer"] for r in rows}):
        hr = np.array([r["hr@10"] for r in rows if r["optimizer"] == opt])
        nd = np.array([r["ndcg@10"] for r in rows if r["optimizer"] == opt])
        summary[opt] = {
            "seeds": int(hr.size),
            "hr@10_mean": float(hr.mean()),
            "hr@10_seed_std": float(hr.std(ddof=1)) if hr.size > 1 else None,
            "ndcg@10_mean": float(nd.mean()),
        }
    out = {"epochs": epochs, "runs": rows, "summary": summary}
    if {"adam", "sparse_adam"} <= summary.keys():
        out["hr@10_diff_sparse_minus_adam"] = (
            summary["sparse_adam"]["hr@10_mean"] - summary["adam"]["hr@10_mean"]
        )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--hr", action="store_true")
    ap.add_argument("--seq-speed", action="store_true", help="the sequential model's legs")
    ap.add_argument("--leg", choices=LEGS + SEQ_LEGS, help=argparse.SUPPRESS)
    ap.add_argument("--speed-epochs", type=float, default=0.3)
    ap.add_argument("--speed-key", default="speed", help="the JSON key --speed writes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--optimizers", nargs="+", default=["adam", "sparse_adam"])
    ap.add_argument(
        "--merge-hr",
        nargs="+",
        type=Path,
        help="files of '--hr' output lines (one JSON row each) to summarize into --out",
    )
    ap.add_argument("--tune", action="store_true", help="lr per optimizer on validation")
    ap.add_argument("--lrs", nargs="+", type=float, default=[0.005, 0.01, 0.02])
    ap.add_argument("--tune-seed", type=int, default=0)
    ap.add_argument("--tune-key", default="quality_tuned")
    ap.add_argument("--baseline-rev", default="6240387")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_tower.json"))
    args = ap.parse_args(argv)
    if args.leg:
        print(json.dumps(run_leg(args.leg, 0, args.speed_epochs)))
        return
    if args.tune:  # writes --out itself after every fit (no whole-file write at the end)
        res = tune(args)
        print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=1))
        return
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["settings"] = SETTINGS
    out["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if args.speed:
        out[args.speed_key] = speed(args)
    if args.seq_speed:
        out["sequential_settings"] = SEQ_SETTINGS
        out["sequential_speed"] = speed(args, SEQ_LEGS, "seq_current", "seq_sparse_adam")
    if args.hr:
        out["quality"] = quality(args)
    if args.merge_hr:
        rows = [
            json.loads(line)
            for f in args.merge_hr
            for line in f.read_text().splitlines()
            if line.startswith('{"optimizer"')
        ]
        out["quality"] = summarize(rows, args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
