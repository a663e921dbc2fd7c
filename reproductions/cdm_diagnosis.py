"""Why does CDM's student not distil its teacher? One factor at a time (issue 25).

Small, fast setting on ML-1M (timestamped users): requests at the training cut `(t0, t1)`
(quantiles 0.7 / 0.85) and, for more requests, sliding cuts at quantiles evenly spaced in
`[first_cut, 0.7]` (each user's history before the cut, the iALS pre-ranker refitted on it,
the next 15% of the log as labels; `divrec.evaluation.candidate_requests.sliding_requests`).
A seeded 20% of the users at the `(t0, t1)` cut are **validation users**: none of their
requests (at any cut) is trained on; their requests at every cut are the held-out requests.
Nothing at or after t1 (the test period of `cdm_tables`) is read.

Per setting: the DCN-v2 backbone is pre-trained on the training requests (shared by all
student settings of the same request set), the teacher is interest-aware MMR (λ = 0.25,
unit-normalized `e_i ⊙ u`, top-20) on that backbone — as the training labels are made —
and on the held-out requests we report the share of the teacher's top 20 recovered by:
the backbone alone (`f`), the student alone (`y_stu`), CDM's own jointly trained backbone
(`f_cdm`), and CDM as served (`f_cdm + γ·y_stu`, γ = 0.1, and the best γ of the grid on
these validation requests); also `y_stu` alone on 300 *training* requests (fit vs
generalization). The teacher's top 20 overlaps the backbone's in most items, so agreement
mostly measures relevance; "teacher-only items recovered" is the share of the teacher's items
*outside* the backbone's top 20 (its diversity moves, what distillation must add) that a list
recovers (0 for the backbone by construction). The joint phase also moves the backbone
(`f_cdm` ≠ `f`), so the same is reported against the teacher recomputed on CDM's own backbone
("own-backbone teacher": MMR of `f_cdm`, what `f_cdm + γ·y_stu` is meant to imitate).

Run: `python -m reproductions.cdm_diagnosis --out benchmarks/results` (resumable: one entry per
setting in OUT/cdm_diagnosis.json, reused on a re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

GAMMAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

#: name → (request set, CDMConfig overrides); the first is the reference (cdm_tables' CDM)
SETTINGS: dict[str, tuple[str, dict]] = {
    "reference (1 cut)": ("one", {}),
    "requests: sliding cuts": ("many", {}),
    "capacity: FFN hidden 128": ("one", {"student_hidden": 128}),
    "capacity: k = 20 context": ("one", {"n_context": 20}),
    "temperature: tau 1 -> 1": ("one", {"tau_start": 1.0, "tau_end": 1.0}),
    "temperature: tau 0.1 -> 0.1": ("one", {"tau_start": 0.1, "tau_end": 0.1}),
    "temperature: tau 5 -> 0.5": ("one", {"tau_start": 5.0, "tau_end": 0.5}),
    "top-k: hard (no relaxation)": ("one", {"topk": "hard"}),
    "loss: beta1 = 10": ("one", {"beta1": 10.0}),
    "loss: beta1 = 0.1": ("one", {"beta1": 0.1}),
    "loss: beta2 = 0": ("one", {"beta2": 0.0}),
    "loss: beta1 = beta2 = 0 (backbone BCE only)": ("one", {"beta1": 0.0, "beta2": 0.0}),
    "joint: backbone frozen": ("one", {"freeze_backbone": True}),
    "joint: 3x epochs": ("one", {"cdm_epochs_x": 3}),
    "joint: teacher refreshed per epoch": ("one", {"teacher_refresh": True}),
    "sliding cuts + teacher refreshed": ("many", {"teacher_refresh": True}),
    "sliding cuts + frozen + beta1 = 10": ("many", {"freeze_backbone": True, "beta1": 10.0}),
    "sliding cuts + frozen": ("many", {"freeze_backbone": True}),
}


def overlap(scores: np.ndarray, cand: np.ndarray, teacher: np.ndarray, k: int = 20) -> float:
    """Mean share of the teacher's selected candidates (`teacher` `(R, N)` 0/1) among the
    top-k of `scores` `(R, N)` (padding never selected)."""
    s = np.where(cand >= 0, scores, -np.inf)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(teacher, top, axis=1).sum(1)
    n = teacher.sum(1)
    return float(np.mean(hit[n > 0] / n[n > 0]))


def teacher_only(
    scores: np.ndarray, f: np.ndarray, cand: np.ndarray, teacher: np.ndarray, k: int = 20
) -> float:
    """Share of the teacher's items *outside the backbone's top-k* (its diversity moves)
    that the top-k of `scores` recovers (0 for `scores = f`); requests with none skipped."""

    def top(x):
        s = np.where(cand >= 0, x, -np.inf)
        out = np.zeros(cand.shape, dtype=bool)
        np.put_along_axis(out, np.argsort(-s, axis=1, kind="stable")[:, :k], True, 1)
        return out

    moved = (teacher > 0) & ~top(f)
    n = moved.sum(1)
    hit = (moved & top(scores)).sum(1)
    return float(np.mean(hit[n > 0] / n[n > 0])) if (n > 0).any() else float("nan")


def backbone_and_teacher(model, req, lam: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`f` `(R, N)` of a fitted DCN/CDM backbone on `req` (each request's own history) and the
    interest-aware MMR teacher's top-k indicator on it (as `CDMRanker._teacher`)."""
    import torch

    from divrec.ranking.cdm import teacher_inputs, teacher_labels
    from divrec.ranking.dcn import batches, sigmoid

    f = np.zeros(req.labels.shape)
    tea = np.zeros(req.labels.shape, dtype=np.float32)
    model.net_.eval()
    with torch.no_grad():
        for rows in batches(np.arange(len(req)), 128):
            f[rows] = sigmoid(model._logits(req, rows).numpy()) * req.valid[rows]
            u = model._interest(model._req_inputs(req, rows)).numpy()
            e = model.net_.item_emb(torch.as_tensor(np.maximum(req.candidates[rows], 0))).numpy()
            e, u = teacher_inputs(e, u, True)
            tea[rows] = teacher_labels(f[rows], e, u, req.valid[rows], k, lam)
    return f, tea


def main(argv=None) -> None:
    import torch

    from divrec.data.movielens import load_movielens_1m
    from divrec.evaluation.candidate_requests import request_split
    from divrec.ranking.cdm import CDMRanker
    from divrec.ranking.dcn import DCNRanker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--home", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-candidates", type=int, default=100)
    ap.add_argument("--cuts", type=int, default=8)
    ap.add_argument("--first-cut", type=float, default=0.2)
    ap.add_argument("--max-train", type=int, default=3000, help="cap of the sliding set")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--cdm-epochs", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="run these settings only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out_json = args.out / "cdm_diagnosis.json"
    done = json.loads(out_json.read_text()) if out_json.exists() else {}
    results = done.get("settings", {})
    key = f"seed{args.seed}"
    t_all = time.time()
    data = load_movielens_1m(args.home, require_timestamps=True)
    split = request_split(
        data, (0.7, 0.85), "ials", {"factors": 64}, n_candidates=args.n_candidates,
        seed=args.seed, train_cuts=args.cuts, first_cut=args.first_cut,
    )  # fmt: skip
    req = split["train"]
    t0, t1 = split["periods"]["train"]
    last = np.flatnonzero(req.cuts == t0)
    rng = np.random.default_rng(args.seed)
    last_users = np.unique(req.users[last])
    val_users = rng.choice(last_users, size=len(last_users) // 5, replace=False)
    is_val_user = np.isin(req.users, val_users)
    val = req.take(np.flatnonzero(is_val_user))  # their requests at every cut
    sets = {"one": req.take(last[~np.isin(req.users[last], val_users)])}
    many = np.flatnonzero(~is_val_user)
    if many.size > args.max_train:
        many = np.sort(rng.choice(many, size=args.max_train, replace=False))
    sets["many"] = req.take(many)
    hist = data.select(data.timestamps < t1)
    info = {
        "requests": {k: len(v) for k, v in sets.items()},
        "validation_requests": len(val),
        "cuts": split["periods"]["train_cuts"],
        "split_seconds": time.time() - t_all,
    }
    print(info, flush=True)
    kw = dict(dim=16, max_epochs=args.epochs, patience=2, seed=args.seed)
    cdm_kw = dict(kw, teacher_k=20, teacher_lambda=0.25, n_context=10, cdm_epochs=args.cdm_epochs)
    dcns: dict[str, tuple] = {}
    for name, (which, over) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        if key in results.get(name, {}):
            continue
        t_start = time.time()
        tr = sets[which]
        if which not in dcns:
            dcn = DCNRanker(**kw).fit(hist, requests=tr)
            f_val, tea_val = backbone_and_teacher(dcn, val, 0.25, 20)
            fit_rows = np.sort(rng.choice(len(tr), size=min(300, len(tr)), replace=False))
            tr_sub = tr.take(fit_rows)
            f_tr, tea_tr = backbone_and_teacher(dcn, tr_sub, 0.25, 20)
            dcns[which] = (dcn, f_val, tea_val, tr_sub, f_tr, tea_tr, time.time() - t_start)
        dcn, f_val, tea_val, tr_sub, f_tr, tea_tr, dcn_sec = dcns[which]
        over = dict(over)
        if "cdm_epochs_x" in over:
            over["cdm_epochs"] = args.cdm_epochs * over.pop("cdm_epochs_x")
        t_cdm = time.time()
        cdm = CDMRanker(**{**cdm_kw, **over}).fit(hist, requests=tr, backbone=dcn)
        cdm_sec = time.time() - t_cdm
        fc, y = cdm.request_scores(val.users, val.candidates, val.history, val.hist_rows)
        _, y_tr = cdm.request_scores(tr_sub.users, tr_sub.candidates, tr_sub.history,
                                     tr_sub.hist_rows)  # fmt: skip
        cand = val.candidates
        # the teacher on CDM's own (jointly trained) backbone: MMR of f_cdm
        _, tea_own = backbone_and_teacher(cdm, val, 0.25, 20)
        by_gamma = {str(g): overlap(fc + g * y, cand, tea_val) for g in GAMMAS}
        best_g = max(by_gamma, key=by_gamma.get)
        row = {
            "backbone f alone": overlap(f_val, cand, tea_val),
            "student y_stu alone": overlap(y, cand, tea_val),
            "CDM backbone f_cdm alone": overlap(fc, cand, tea_val),
            "CDM f_cdm + 0.1 y_stu": by_gamma["0.1"],
            "CDM best gamma (validation)": by_gamma[best_g],
            "best gamma": float(best_g),
            "agreement by gamma": by_gamma,
            "student y_stu alone, training requests": overlap(y_tr, tr_sub.candidates, tea_tr),
            "teacher-only items recovered: student alone": teacher_only(y, f_val, cand, tea_val),
            "teacher-only items recovered: CDM f_cdm + 0.1 y_stu": teacher_only(
                fc + 0.1 * y, f_val, cand, tea_val
            ),
            "teacher-only items recovered, training requests: student alone": teacher_only(
                y_tr, f_tr, tr_sub.candidates, tea_tr
            ),
            "own-backbone teacher: f_cdm alone": overlap(fc, cand, tea_own),
            "own-backbone teacher: student alone": overlap(y, cand, tea_own),
            "own-backbone teacher: f_cdm + 0.1 y_stu": overlap(fc + 0.1 * y, cand, tea_own),
            "own-backbone teacher: teacher-only recovered by f_cdm + 0.1 y_stu": teacher_only(
                fc + 0.1 * y, fc, cand, tea_own
            ),
            "teacher_rate": cdm.teacher_rate_,
            "joint_val_losses": cdm.joint_val_losses_,
            "joint_train_losses": cdm.joint_train_losses_,
            "training_requests": len(tr),
            "dcn_seconds": dcn_sec,
            "cdm_seconds": cdm_sec,
            "loadavg": list(os.getloadavg()),
            "overrides": over,
        }
        results.setdefault(name, {})[key] = row
        print(name, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)
        payload = {"protocol": __doc__, "args": {**vars(args), "out": str(args.out)},
                   "data": {key: info}, "settings": results}  # fmt: skip
        if "data" in done:
            payload["data"] = {**done["data"], key: info}
        args.out.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(payload, indent=1))
    if out_json.exists():
        write_markdown(out_json)


COLUMNS = {
    "backbone f alone": "f",
    "student y_stu alone": "y_stu",
    "CDM backbone f_cdm alone": "f_cdm",
    "CDM f_cdm + 0.1 y_stu": "f_cdm+0.1y",
    "CDM best gamma (validation)": "best γ",
    "student y_stu alone, training requests": "y_stu (train)",
    "teacher-only items recovered: student alone": "moves: y_stu",
    "teacher-only items recovered, training requests: student alone": "moves: y_stu (train)",
    "teacher-only items recovered: CDM f_cdm + 0.1 y_stu": "moves: f_cdm+0.1y",
    "own-backbone teacher: f_cdm alone": "own: f_cdm",
    "own-backbone teacher: student alone": "own: y_stu",
    "own-backbone teacher: f_cdm + 0.1 y_stu": "own: f_cdm+0.1y",
}


def write_markdown(path: Path) -> None:
    """OUT/cdm_diagnosis.md: the mean over seeds of every column; text below a line
    `## Findings` in an existing file is kept."""
    d = json.loads(path.read_text())
    md_path = path.with_suffix(".md")
    keep = ""
    if md_path.exists() and "## Findings" in md_path.read_text():
        keep = "## Findings" + md_path.read_text().split("## Findings", 1)[1]
    seeds = sorted({k for v in d["settings"].values() for k in v})
    lines = [
        "# Why CDM's student does not distil its teacher (ML-1M, one factor at a time)",
        "",
        __doc__.split("Run:")[0].strip(),
        "",
        f"Seeds {seeds} (mean over seeds; per-seed values in cdm_diagnosis.json). Requests: "
        + "; ".join(
            f"{k}: {v['requests']}, validation {v['validation_requests']}"
            for k, v in d["data"].items()
        )  # fmt: skip
        + ". Teacher agreement@20 = share of the teacher's top 20 in the list's top 20; "
        "'moves' = share of the teacher's items outside the backbone's top 20 recovered "
        "(a uniformly random top 20 of N = 100 recovers 0.20); 'own' = against MMR on "
        "CDM's own backbone.",
        "",
        "| setting | requests | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, per in d["settings"].items():
        rows = list(per.values())
        cells = [f"{np.mean([r[c] for r in rows]):.3f}" for c in COLUMNS]
        lines.append(f"| {name} | {rows[0]['training_requests']} | " + " | ".join(cells) + " |")
    loads = [r["loadavg"][0] for per in d["settings"].values() for r in per.values()]
    lines += [
        "",
        f"Load average (1 min) during the runs: {min(loads):.1f}–{max(loads):.1f} "
        "(2 cores shared); times in the JSON are wall seconds under that load.",
        "",
    ]
    md_path.write_text("\n".join(lines) + ("\n" + keep if keep else ""))


if __name__ == "__main__":
    main()
