"""Projected cost of one full `cdm_tables.toml` seed, from a partial run (issue 25).

Per dataset: the request split at the full settings (sliding training cuts), one DCN epoch,
one joint CDM epoch (full context and the top-50 restricted one), the student's serving on
the test requests; each timed in process CPU seconds (torch threads 1, so CPU seconds are
the wall time on one free core) and in wall seconds with the load recorded. The projection
multiplies by the counts one seed of `cdm_tables` runs (`fits_per_seed`), stated in the JSON.

Run: `python -m reproductions.cdm_projection --out benchmarks/results/cdm_quick`
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


class _Clock:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def __call__(self, name: str):
        clock = self

        class _Ctx:
            def __enter__(self):
                self.c, self.w = time.process_time(), time.time()

            def __exit__(self, *exc):
                clock.rows[name] = {
                    "cpu_s": time.process_time() - self.c,
                    "wall_s": time.time() - self.w,
                    "loadavg": list(os.getloadavg()),
                }
                print(name, clock.rows[name], flush=True)

        return _Ctx()


def main(argv=None) -> None:
    import torch

    from divrec.evaluation.candidate_requests import request_split
    from divrec.ranking.cdm import CDMRanker
    from divrec.ranking.dcn import DCNRanker
    from reproductions.cdm_tables import _load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cdm_quick"))
    ap.add_argument("--home", default=None)
    ap.add_argument("--datasets", default="ml-1m,amazon-grocery")
    ap.add_argument("--n-candidates", type=int, default=200)
    ap.add_argument("--train-cuts", type=int, default=8)
    ap.add_argument("--first-cut", type=float, default=0.2)
    ap.add_argument("--max-train", type=int, default=3000)
    ap.add_argument("--max-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--cdm-epochs", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out: dict = {"args": {**vars(args), "out": str(args.out)}, "datasets": {}}
    for name in args.datasets.split(","):
        clock = _Clock()
        with clock("load + split (iALS per cut)"):
            data, ufeat = _load(name, args.home)
            split = request_split(
                data, (0.7, 0.85), "ials", {"factors": 64}, n_candidates=args.n_candidates,
                max_train=args.max_train, max_test=args.max_test, seed=0,
                train_cuts=args.train_cuts, first_cut=args.first_cut,
            )  # fmt: skip
        tr, te = split["train"], split["test"]
        hist = data.select(data.timestamps < split["periods"]["test"][0])
        kw = dict(dim=16, max_epochs=1, patience=None, seed=0)
        with clock("DCN 1 epoch"):
            dcn = DCNRanker(**kw).fit(hist, requests=tr, user_features=ufeat)
        cdm_kw = dict(kw, teacher_k=20, teacher_lambda=0.25, n_context=10, cdm_epochs=1)
        variants = {"CDM 1 joint epoch (full context)": {},
                    "CDM 1 joint epoch (context top-50)": {"context_size": 50}}  # fmt: skip
        for label, extra in variants.items():
            with clock(label):
                cdm = CDMRanker(**cdm_kw, **extra).fit(hist, requests=tr, backbone=dcn)
            with clock(label.replace("1 joint epoch", "serving test requests")):
                cdm.request_scores(te.users, np.asarray(te.candidates))
        out["datasets"][name] = {
            "requests": {"train": len(tr), "test": len(te)},
            "timings": clock.rows,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "full_seed_projection.json").write_text(json.dumps(out, indent=1))
    add_projection(out, args.epochs, args.cdm_epochs)
    (args.out / "full_seed_projection.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k.startswith("projected")}))


def add_projection(out: dict, dcn_epochs: int, cdm_epochs: int) -> None:
    """Projected CPU seconds of one `cdm_tables.toml` seed per dataset and of 5 seeds.

    One seed (--restricted --validate, 2 extra student settings on validation) trains the
    DCN 2.8 times (main, IPW, validation on 80%) for at most `dcn_epochs` epochs (an upper
    bound: early stopping usually ends sooner), CDM with full context 4 times (CDM, −InfoNCE,
    −CCE, validation-chosen) + 6 times on 80% for validation (3 student settings + 3 more
    λ), CDM with the top-50 context once, each `cdm_epochs` epochs, and serves 6 + 1 CDMs.
    `--val-context 50` moves the 6 validation fits to the top-50 context. Not counted: the
    re-rankers and the bootstrap CIs (seconds, not timed here).
    """
    totals = {"as configured": 0.0, "--val-context 50": 0.0}
    for d in out["datasets"].values():
        r = d["timings"]
        full = r["CDM 1 joint epoch (full context)"]["cpu_s"]
        top50 = r["CDM 1 joint epoch (context top-50)"]["cpu_s"]
        base = (
            r["load + split (iALS per cut)"]["cpu_s"]
            + 2.8 * dcn_epochs * r["DCN 1 epoch"]["cpu_s"]
            + 4 * cdm_epochs * full
            + cdm_epochs * top50
            + 6 * r["CDM serving test requests (full context)"]["cpu_s"]
            + r["CDM serving test requests (context top-50)"]["cpu_s"]
        )
        d["projected_cpu_s_per_seed_upper"] = {
            "as configured": base + 6 * 0.8 * cdm_epochs * full,
            "--val-context 50": base + 6 * 0.8 * cdm_epochs * top50,
        }
        for k, v in d["projected_cpu_s_per_seed_upper"].items():
            totals[k] += v
    out["projected_cpu_h_5_seeds_upper"] = {k: 5 * v / 3600 for k, v in totals.items()}
    out["projected_wall_h_5_seeds_2_free_cores_jobs_2_upper"] = {
        k: 5 * v / 3600 / 2 for k, v in totals.items()
    }
