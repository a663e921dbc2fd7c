"""Cost of diversity at ranking-stage sizes: CDM serving vs MMR / fast-DPP re-ranking.

Usage::

    python benchmarks/bench_cdm_cost.py --out benchmarks/results/cdm_cost.json
    python benchmarks/bench_cdm_cost.py --quick --out /tmp/cdm_cost.json

Per-request wall time (batched: `batch` requests per call, time / batch), for
N ∈ {100, 200, 500, 1000, 2000, 5000} candidates and K ∈ {10, 50, 100}:

* backbone: the DCN-v2 forward pass over the N candidates + a hard top-K (torch);
* CDM serving: backbone + the student (context attention over all N candidates, hard
  top-k context selection, Eq. 11–17) + top-K of f + γ·y_stu;
* CDM serving with a restricted context (the top-m = 50 candidates by backbone score as
  keys: O(N·m·d) instead of O(N²·d));
* MMR: interest-aware MMR (CDM's teacher, `divrec.rerank.InterestAwareMMR.select_batch`)
  re-ranking the N backbone scores to K (re-ranking only, backbone excluded);
* fast DPP: `divrec.rerank.FastGreedyDPP.select_batch` (θ = 0.7), re-ranking only.

Models: a `CDMRanker` (dim 16, the reproduction's architecture) fitted for one epoch on a
synthetic catalogue of 6,000 items (its weights do not matter for timing). Candidates are
random item ids. Each cell is the minimum over `repeats` runs (half as many for
N ≥ 2000). Scaling exponents: least squares slope of log time vs log N (per K) and vs
log K (per N). Only ratios measured in this run are reported; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch


def _timeit(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _slope(x, y) -> float:
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


def build_models(n_items: int, seed: int):
    from divrec.data.synthetic import SyntheticConfig, make_synthetic
    from divrec.ranking.cdm import CDMRanker

    data = make_synthetic(
        SyntheticConfig(n_users=300, n_items=n_items, n_topics=20, seed=seed)
    ).interactions
    kw = dict(dim=16, max_epochs=1, cdm_epochs=1, teacher_k=10, n_context=10, seed=seed)
    full = CDMRanker(**kw).fit(data)
    restricted = CDMRanker(**{**kw, "context_size": 50}).fit(data, backbone=full)
    return full, restricted


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cdm_cost.json"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ns = (100, 200, 500) if args.quick else (100, 200, 500, 1000, 2000, 5000)
    ks = (10, 50) if args.quick else (10, 50, 100)
    full, restricted = build_models(6000, args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in ns:
        batch = max(2, min(16, 8000 // n))
        users = rng.integers(0, full.n_users_, batch)
        cand = np.stack([rng.choice(full.n_items_, n, replace=False) for _ in range(batch)])
        f, _ = full.request_scores(users, cand)
        _, e = full.embeddings(users, cand)
        u = full.interest_vectors(users)
        for k in ks:
            if k > n:
                continue

            reps = max(2, args.repeats // 2) if n >= 2000 else args.repeats
            times = measure(full, restricted, users, cand, f, e, u, k, reps)
            row = {"N": n, "K": k, "batch": batch}
            row.update({f"{m}_ms": 1000 * t / batch for m, t in times.items()})
            rows.append(row)
            print(row, flush=True)
    methods = ["backbone", "cdm", "cdm_restricted50", "mmr", "fast_dpp"]
    exps: dict = {"N": {}, "K": {}}
    for m in methods:
        for k in ks:
            sel = [r for r in rows if r["K"] == k]
            if len(sel) >= 2:
                exps["N"].setdefault(m, {})[str(k)] = _slope(
                    [r["N"] for r in sel], [r[f"{m}_ms"] for r in sel]
                )
        for n in ns:
            sel = [r for r in rows if r["N"] == n]
            if len(sel) >= 2:
                exps["K"].setdefault(m, {})[str(n)] = _slope(
                    [r["K"] for r in sel], [r[f"{m}_ms"] for r in sel]
                )
    goal = next((r for r in rows if r["N"] == 2000 and r["K"] == 100), None)
    summary = {}
    if goal is not None:
        summary = {
            "N": 2000, "K": 100,
            "mmr_over_cdm": goal["mmr_ms"] / goal["cdm_ms"],
            "mmr_over_cdm_restricted50": goal["mmr_ms"] / goal["cdm_restricted50_ms"],
            "backbone_plus_mmr_over_cdm": (goal["mmr_ms"] + goal["backbone_ms"]) / goal["cdm_ms"],
            "fast_dpp_over_cdm": goal["fast_dpp_ms"] / goal["cdm_ms"],
        }  # fmt: skip
    out = {
        "machine": {
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        },
        "rows": rows,
        "exponents": exps,
        "goal_N2000_K100": summary,
        "notes": "per-request ms = batch time / batch; min over repeats (half for N >= 2000)",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    plot(rows, ks, args.out.with_suffix(".png"))
    print(json.dumps({"exponents": exps, "goal": summary}, indent=1))


def measure(full, restricted, users, cand, f, e, u, k: int, reps: int) -> dict[str, float]:
    """Batch wall times (s) of the five serving paths for one (N, K) cell."""
    from divrec.rerank.dpp import FastGreedyDPP
    from divrec.rerank.mmr import InterestAwareMMR

    valid = np.ones(cand.shape, dtype=bool)
    rel = f.astype(np.float64)

    def backbone():
        s = full.backbone_logits(_Q(users), cand)
        np.argpartition(-s, k - 1, axis=1)[:, :k]

    def cdm(model):
        fc, y = model.request_scores(users, cand)
        np.argpartition(-(fc + model.gamma * y), k - 1, axis=1)[:, :k]

    def mmr():
        InterestAwareMMR(lambda_=0.25).select_batch(rel, k, vectors=e, user=u, valid=valid)

    def dpp():
        FastGreedyDPP(theta=0.7).select_batch(rel, k, vectors=e, valid=valid)

    return {
        "backbone": _timeit(backbone, reps),
        "cdm": _timeit(lambda: cdm(full), reps),
        "cdm_restricted50": _timeit(lambda: cdm(restricted), reps),
        "mmr": _timeit(mmr, reps),
        "fast_dpp": _timeit(dpp, reps),
    }


class _Q:
    """A minimal stand-in for `Query` (users only) for `backbone_logits`."""

    def __init__(self, users):
        self.users = users
        self.history = None

    def __len__(self) -> int:
        return len(self.users)


def plot(rows, ks, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ks), figsize=(5 * len(ks), 4), squeeze=False)
    for ax, k in zip(axes[0], ks, strict=True):
        sel = [r for r in rows if r["K"] == k]
        for m in ("backbone", "cdm", "cdm_restricted50", "mmr", "fast_dpp"):
            ax.loglog([r["N"] for r in sel], [r[f"{m}_ms"] for r in sel], marker="o", label=m)
        ax.set_title(f"K = {k}")
        ax.set_xlabel("N candidates")
        ax.set_ylabel("ms per request")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
