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

Run: ``DIVREC_DATA_HOME=... nice -n 10 python benchmarks/bench_train_tower.py --speed --hr``
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


def quality(args) -> dict:
    from divrec.evaluation.harness import EvalConfig, evaluate
    from divrec.retrieval.two_tower import TwoTowerRecommender

    # the curve config of reproductions/totalrecall_table1.py (sampled protocol, HR / NDCG)
    config = EvalConfig(protocol="sampled", accuracy=("hr", "ndcg"), diversity=(), n_bootstrap=0)

    split = _load()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for opt in args.optimizers:
            model = TwoTowerRecommender(**SETTINGS, seed=seed, epochs=args.epochs, optimizer=opt)
            c0 = time.process_time()
            model.fit(split.train)
            cpu = time.process_time() - c0
            mean = evaluate(model, split, config, progress=False).aggregate
            mean = mean.set_index("metric")["mean"]
            rows.append(
                {
                    "optimizer": opt,
                    "seed": seed,
                    "hr@10": float(mean["hr"]),
                    "ndcg@10": float(mean["ndcg"]),
                    "train_cpu_s": cpu,
                    "train_wall_s": model.train_seconds_,
                    "loadavg": os.getloadavg(),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return summarize(rows, args.epochs)


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
    ap.add_argument("--baseline-rev", default="6240387")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_tower.json"))
    args = ap.parse_args(argv)
    if args.leg:
        print(json.dumps(run_leg(args.leg, 0, args.speed_epochs)))
        return
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["settings"] = SETTINGS
    out["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if args.speed:
        out["speed"] = speed(args)
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
