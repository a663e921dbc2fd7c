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
        r = clock.rows
        dcn_epochs = args.epochs  # upper bound: early stopping usually ends sooner
        # one seed of cdm_tables (--restricted --validate, 2 student settings on validation):
        # DCN: main + IPW + validation (80%) = 2.8 DCN-trainings; CDM joint fits with full
        # context: CDM, -InfoNCE, -CCE, validation-chosen + validation (3 student settings +
        # 3 more λ on 80%) = 4 + 6·0.8; restricted: 1; servings: 6 full + 1 restricted
        n_cdm_full = 4 + 6 * 0.8
        proj = (
            r["load + split (iALS per cut)"]["cpu_s"]
            + 2.8 * dcn_epochs * r["DCN 1 epoch"]["cpu_s"]
            + n_cdm_full * args.cdm_epochs * r["CDM 1 joint epoch (full context)"]["cpu_s"]
            + args.cdm_epochs * r["CDM 1 joint epoch (context top-50)"]["cpu_s"]
            + 6 * r["CDM serving test requests (full context)"]["cpu_s"]
            + r["CDM serving test requests (context top-50)"]["cpu_s"]
        )
        out["datasets"][name] = {
            "requests": {"train": len(tr), "test": len(te)},
            "timings": r,
            "fits_per_seed": {
                "dcn_trainings": 2.8,
                "dcn_epochs_max": dcn_epochs,
                "cdm_full_context_fits": n_cdm_full,
                "cdm_restricted_fits": 1,
                "cdm_epochs": args.cdm_epochs,
            },  # fmt: skip
            "projected_cpu_s_per_seed_upper": proj,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "full_seed_projection.json").write_text(json.dumps(out, indent=1))
    total = sum(d["projected_cpu_s_per_seed_upper"] for d in out["datasets"].values())
    out["projected_cpu_h_5_seeds_upper"] = 5 * total / 3600
    out["projected_wall_h_5_seeds_on_2_free_cores_upper"] = 5 * total / 3600 / 2
    (args.out / "full_seed_projection.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k.startswith("projected")}))


if __name__ == "__main__":
    main()
