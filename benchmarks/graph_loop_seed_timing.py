"""Cost of one seed of the graph loop's full settings (ML-1M world, 1000 users): the world,
the GraphSAGE fit, the reference SVD and 3 rounds of each Table-1 variant, plus the
ranker's refit on 300k exposures (its size at round 30). Writes
benchmarks/results/graph_loop_quick/full_settings_timing.json (with the load average).

    nice -n 10 python benchmarks/graph_loop_seed_timing.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from divrec.metrics.reference import reference_item_vectors  # noqa: E402
from divrec.simulate import SimConfig, fit_retriever, run_simulation  # noqa: E402
from divrec.simulate.datasets import load_sim_dataset  # noqa: E402
from divrec.simulate.ranker import fit_logistic  # noqa: E402
from reproductions.graph_loop import TABLE1, world_for  # noqa: E402

OUT = ROOT / "benchmarks/results/graph_loop_quick/full_settings_timing.json"


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def main() -> None:
    out = {"load_before": os.getloadavg()}
    data = load_sim_dataset("ml-1m")
    world, out["world_s"] = timed(lambda: world_for(data, 0, 1000))
    ret, out["fit_s"] = timed(lambda: fit_retriever(world, {"epochs": 5, "seed": 0}))
    ref, out["ref_s"] = timed(lambda: reference_item_vectors(world.full_log))
    for p in TABLE1:
        cfg = SimConfig(rounds=3, seed=0)
        r, sec = timed(lambda p=p, cfg=cfg: run_simulation(world, p, cfg, ret, None, ref))
        out[p] = {"seconds": sec, "per_round": [x["seconds"] for x in r["rounds"]]}
        print(p, sec, flush=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300_000, 5))
    y = (rng.random(300_000) < 0.06).astype(float)
    w, out["ranker_fit_300k_cold_s"] = timed(lambda: fit_logistic(x, y))
    _, out["ranker_fit_300k_warm_s"] = timed(lambda: fit_logistic(x, y, init=w))
    out["load_after"] = os.getloadavg()
    OUT.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
