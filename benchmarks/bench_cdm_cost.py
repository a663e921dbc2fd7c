"""Cost of diversity at ranking-stage sizes: CDM serving vs MMR / fast-DPP re-ranking.

Usage::

    python benchmarks/bench_cdm_cost.py --out benchmarks/results/cdm_cost_fair.json
    python benchmarks/bench_cdm_cost.py --quick --out /tmp/cdm_cost.json

Per-request wall time (batched: `batch` requests per call, time / batch), for
N ∈ {500, 1000, 2000} candidates and K ∈ {100, 500, N} (K = N: a full re-ordering);
`--quick`: N ∈ {200, 500}, K ∈ {100, N}. **Every path includes the backbone**: MMR and DPP
re-rank the backbone's scores, so they pay for it too (issue 25: the former version counted
the backbone for CDM only).

* backbone: the DCN-v2 forward pass over the N candidates + a hard top-K (torch) — the
  common floor;
* cdm: backbone + the student (context attention over all N candidates, hard top-k context
  selection, Eq. 11–17) + top-K of f + γ·y_stu;
* cdm_restricted50: the same with a restricted context (the top-m = 50 candidates by
  backbone score as keys: O(N·m·d) instead of O(N²·d));
* mmr_total: backbone + the embeddings `e_i` and interest vector `u` + interest-aware MMR
  (CDM's teacher, `divrec.rerank.InterestAwareMMR.select_batch`, λ = 0.25) selecting K;
* fast_dpp_total: backbone + embeddings + `divrec.rerank.FastGreedyDPP.select_batch`
  (θ = 0.7) selecting K.

`summary_largest_N` gives, at the largest N, the total ratios (cdm / mmr_total) and the
*added* cost ratios over the backbone ((cdm − backbone) / (mmr_total − backbone)).
Torch threads are set after the model fits (a fit's training scope sets its own) and
recorded per row. Models: a `CDMRanker` (dim 16, the reproduction's architecture) fitted for
one epoch on a synthetic catalogue of 6,000 items (its weights do not matter for timing).
Candidates are random item ids. Each cell is the minimum over `repeats` runs (half as many
for N ≥ 2000). Only ratios measured in this run are reported; nothing is asserted.
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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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


def _k_values(n: int, ks: tuple[str, ...]) -> list[int]:
    """The list lengths of one N: the numeric ones below N, and N itself for "N"."""
    out = [int(k) for k in ks if k != "N" and int(k) < n]
    if "N" in ks:
        out.append(n)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cdm_cost_fair.json"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ns = (200, 500) if args.quick else (500, 1000, 2000)
    ks = ("100", "N") if args.quick else ("100", "500", "N")
    full, restricted = build_models(6000, args.seed)
    # after the fits: a fit's training scope sets and restores its own thread count
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in ns:
        batch = max(2, min(16, 8000 // n))
        users = rng.integers(0, full.n_users_, batch)
        cand = np.stack([rng.choice(full.n_items_, n, replace=False) for _ in range(batch)])
        for k in _k_values(n, ks):
            reps = max(2, args.repeats // 2) if n >= 2000 else args.repeats
            times = measure(full, restricted, users, cand, k, reps)
            row = {"N": n, "K": k, "K_is_N": k == n, "batch": batch}
            row.update({f"{m}_ms": 1000 * t / batch for m, t in times.items()})
            row["torch_threads"] = torch.get_num_threads()
            rows.append(row)
            print(row, flush=True)
    summary = {}
    for r in rows:
        if r["N"] != max(ns):
            continue
        bb = r["backbone_ms"]
        mmr_added = r["mmr_total_ms"] - bb
        key = "K=N" if r["K_is_N"] else f"K={r['K']}"
        summary[key] = {
            "N": r["N"],
            "K": r["K"],
            # totals: both sides include the backbone forward pass over the N candidates
            "cdm_over_mmr_total": r["cdm_ms"] / r["mmr_total_ms"],
            "cdm_restricted50_over_mmr_total": r["cdm_restricted50_ms"] / r["mmr_total_ms"],
            # added cost on top of the backbone: the student vs MMR's inputs + selection
            "cdm_added_over_mmr_added": (r["cdm_ms"] - bb) / mmr_added,
            "cdm_restricted50_added_over_mmr_added": (r["cdm_restricted50_ms"] - bb) / mmr_added,
            "fast_dpp_total_over_cdm": r["fast_dpp_total_ms"] / r["cdm_ms"],
        }
    out = {
        "machine": {
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "loadavg": _loadavg(),
        },
        "rows": rows,
        "summary_largest_N": summary,
        "quick": bool(args.quick),
        "notes": (
            "per-request ms = batch time / batch; min over repeats (half for N >= 2000). "
            "Every *_total and cdm column includes the backbone's forward pass over the N "
            "candidates: MMR and fast DPP need its scores too (mmr_total = backbone + the "
            "embeddings e_i and interest vector u + the greedy selection of K). K = N is a "
            "full re-ordering."
        ),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    plot(rows, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=1))


def _loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def measure(full, restricted, users, cand, k: int, reps: int) -> dict[str, float]:
    """Batch wall times (s) of the serving paths for one (N, K) cell, backbone included in
    every path (`backbone` alone is the common floor)."""
    from divrec.rerank.dpp import FastGreedyDPP
    from divrec.rerank.mmr import InterestAwareMMR

    valid = np.ones(cand.shape, dtype=bool)
    q = _Q(users)

    def top(s):
        if k >= s.shape[1]:
            return np.argsort(-s, axis=1)
        return np.argpartition(-s, k - 1, axis=1)[:, :k]

    def backbone():
        return top(full.backbone_logits(q, cand))

    def cdm(model):
        fc, y = model.request_scores(users, cand)
        top(fc + model.gamma * y)

    def mmr_total():
        rel = sigmoid(full.backbone_logits(q, cand)).astype(np.float64)
        _, e = full.embeddings(users, cand)
        u = full.interest_vectors(users)
        InterestAwareMMR(lambda_=0.25).select_batch(rel, k, vectors=e, user=u, valid=valid)

    def dpp_total():
        rel = sigmoid(full.backbone_logits(q, cand)).astype(np.float64)
        _, e = full.embeddings(users, cand)
        FastGreedyDPP(theta=0.7).select_batch(rel, k, vectors=e, valid=valid)

    return {
        "backbone": _timeit(backbone, reps),
        "cdm": _timeit(lambda: cdm(full), reps),
        "cdm_restricted50": _timeit(lambda: cdm(restricted), reps),
        "mmr_total": _timeit(mmr_total, reps),
        "fast_dpp_total": _timeit(dpp_total, reps),
    }


class _Q:
    """A minimal stand-in for `Query` (users only) for `backbone_logits`."""

    def __init__(self, users):
        self.users = users
        self.history = None

    def __len__(self) -> int:
        return len(self.users)


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"N" if r["K_is_N"] else str(r["K"]) for r in rows}
    groups = sorted(names, key=lambda g: (g == "N", int(g) if g != "N" else 0))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, g in zip(axes[0], groups, strict=True):
        sel = [r for r in rows if ("N" if r["K_is_N"] else str(r["K"])) == g]
        for m in ("backbone", "cdm", "cdm_restricted50", "mmr_total", "fast_dpp_total"):
            ax.loglog([r["N"] for r in sel], [r[f"{m}_ms"] for r in sel], marker="o", label=m)
        ax.set_title(f"K = {g}")
        ax.set_xlabel("N candidates")
        ax.set_ylabel("ms per request (backbone included)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
