"""Checks the compiled Gaussian mean shift against the former batched torch one and a
converged reference on real ML-1M training histories (writes
`benchmarks/results/purs_quick/purs_mean_shift_check.json`).

For 2,560 random ML-1M training windows (10-item histories) in two item spaces — the
unit-normalized 32-d SVD reference vectors and PURS's initial embeddings (N(0, 0.1²)) — the
clusters (Gaussian kernel, radius 0.35 × median pairwise history distance) of

* the former implementation (commit 6545318: all requests of a batch step together until the
  largest move in the batch is < 1e-5, at most 100 steps, float32),
* the compiled one (each trajectory until its move is < 1e-5, at most 100 / 300 / 1000 steps),

are compared with a converged reference (former implementation in float64, tol 1e-9, 3000
steps): share of requests whose cluster count / cluster sizes differ, and the difference of
PURS Eq. 3 for 20 random items per request. CPU ms per 256-request batch are recorded
(process time; the load average is recorded too).

Run: `python -m reproductions.purs_mean_shift_check`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from divrec.metrics.reference import reference_item_vectors
from divrec.ranking import unexpected as new_impl
from divrec.splitting.windows import window_split
from reproductions.purs_tables import load

FORMER = "6545318"


def former_module():
    src = subprocess.run(
        ["git", "show", f"{FORMER}:src/divrec/ranking/unexpected.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "unexpected_former.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("unexpected_former", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(out="benchmarks/results/purs_quick/purs_mean_shift_check.json", n_batches=10):
    torch.set_num_threads(1)
    old = former_module()
    data, thr = load("MovieLens", 10**9)
    split = window_split(data, 10, 1, thr, 0.1, 0.2, seed=0)
    rng = np.random.default_rng(0)
    hist = split.train.history[rng.permutation(len(split.train))[: 256 * n_batches]]
    ref = reference_item_vectors(split.train_log, dim=32, seed=0)
    norm = np.linalg.norm(ref, axis=1, keepdims=True)
    ref = np.divide(ref, norm, out=np.zeros_like(ref), where=norm > 0)
    gen = torch.Generator().manual_seed(0)
    spaces = {
        "svd32": torch.tensor(ref, dtype=torch.float32),
        "init_normal_0.1": torch.randn(data.n_items + 1, 32, generator=gen) * 0.1,
    }
    items = torch.from_numpy(rng.integers(0, data.n_items, (len(hist), 20)))

    def run(mod, emb, **kw):
        outs, t0 = [], time.process_time()
        for s in range(0, len(hist), 256):
            h = torch.from_numpy(hist[s : s + 256])
            mask = h >= 0
            pts = emb[h.clamp_min(0)]
            bw = mod.median_bandwidth(pts, mask, 0.35)
            outs.append(mod.mean_shift(pts, mask, bw, "gaussian", **kw))
        ms = (time.process_time() - t0) / n_batches * 1e3
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), ms

    res = {"requests": len(hist), "former_commit": FORMER}
    new_impl.mean_shift(*[torch.zeros(1, 2, 2), None], 1.0, "gaussian")  # compile
    for name, emb in spaces.items():
        c_ref, w_ref, _ = run(old, emb.double(), tol=1e-9, max_iter=3000)
        u_ref = new_impl.unexpectedness(emb.double()[items], (c_ref, w_ref))
        k_ref = (w_ref > 0).sum(1)
        row = {"clusters_per_request_converged": float(k_ref.float().mean())}
        cases = {"former (batch stop, 100 steps)": (old, 100)}
        cases.update(
            {f"compiled (per trajectory, {m} steps)": (new_impl, m) for m in (100, 300, 1000)}
        )
        for case, (mod, cap) in cases.items():
            c, w, ms = run(mod, emb, tol=1e-5, max_iter=cap)
            u = new_impl.unexpectedness(emb[items], (c, w)).double()
            same = (torch.sort(w, 1).values == torch.sort(w_ref.to(w.dtype), 1).values).all(1)
            row[case] = {
                "cpu_ms_per_256_requests": ms,
                "share_cluster_count_differs": float(((w > 0).sum(1) != k_ref).float().mean()),
                "share_cluster_sizes_differ": float((~same).float().mean()),
                "eq3_mean_abs_diff": float((u - u_ref).abs().mean()),
                "eq3_max_abs_diff": float((u - u_ref).abs().max()),
            }
        res[name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    res["loadavg"] = list(os.getloadavg())
    res["command"] = "python -m reproductions.purs_mean_shift_check"
    Path(out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:2])
