"""CDM (Li et al., KDD 2024) Table 2, Table 3 and Fig. 4 on public request-level candidate sets.

Protocol (ours; the paper's JingDong / KuaiShou logs with real pre-ranker candidates are not
public), see `divrec.splitting.candidate_requests`:

- Data: ML-1M users 1–2999 (the timestamped subset; categories = 18 genres; user side
  features gender / age / occupation from users.dat) and Amazon Grocery (ReChorus 5-core
  training part; 57 categories; no user side features).
- Requests: global time cuts at the 70% / 85% quantiles of the timestamps: training requests
  = users with history before t0 and interactions in [t0, t1); test requests = history
  before t1, targets in [t1, end]. `--train-cuts n`: training requests from n sliding cuts
  (quantiles evenly spaced in [--first-cut, 0.7], each with the next 15% of the log as
  labels, the pre-ranker refitted on each cut's history; a user has one request per cut;
  `divrec.evaluation.candidate_requests.sliding_requests`); nothing at or after t1 is read.
  Pre-ranker: iALS (64 factors) fitted on each side's
  history; N = 200 candidates per request (history items excluded); labels = target items.
- Models (all trained on the training requests only; the DCN serving history of test
  requests is the log before t1; its "last 100 items" are the most recent by time):
  DCN-v2 (Wang et al. 2021; the paper cites DCN v1 — a stated deviation; the library has
  v1 as `DCNConfig.cross_version="v1"`, not used here) (dim 16, 2
  full-rank cross layers, MLP 128-64-32, dropout 0.25, Adam 3e-3, batch 8 requests, early
  stopping patience 2 on 10% held-out requests); IPW = the same DCN with inverse category
  propensity weights on positives;
  DPP (fast greedy, θ), SSD (γ), MMR (classic, λ) and IA-MMR (the interest-aware MMR
  teacher, λ, on unit-normalized e_i ⊙ u) re-ranking the DCN's top-200 by its
  probabilities, with the DCN's item-id embeddings as their item space (16-d: the DPP's
  kernel has rank ≤ 16, so past 16 items the greedy MAP has no positive determinant left and
  the rest of a K = 20 list is filled by relevance); CDM = the DCN
  backbone (copied) + the student trained jointly (teacher = IA-MMR λ = 0.25 on
  unit-normalized e_i ⊙ u, top-20; k = 10 context items per side, β1 = 1, β2 = 0.1,
  t = 0.5, τ 1 → 0.1), served as f + γ·y_stu.
- Sanity rows: Popularity (distinct users of each candidate in the log before t1) and
  Random (seeded uniform scores), over the same 200 candidates.
- Metrics on the test requests: Recall@K, MRR@K over all target items (also those the
  pre-ranker missed), ILAD@K (Eq. 21) in two spaces no model trained: the reference SVD
  space (`divrec.metrics.reference_item_vectors`, 64-d truncated SVD of the log before t1)
  and the genre/category multi-hot vectors, CC@K (Eq. 22, system level), for K = 5, 20.
  95% CIs: percentile bootstrap over test requests (500 resamples; CC 200).

Run: `python -m reproductions.run reproductions/cdm_tables.toml` (5 seeds, validation choice,
sliding cuts → benchmarks/results/cdm_seeds; `--quick` for the smoke variant). The script's
own defaults (one seed, one cut, `--out benchmarks/results/cdm_single`) are the former
single-run protocol; benchmarks/results/cdm/ holds that former run (superseded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from divrec.evaluation.candidate_requests import (
    genre_vectors,
    list_metrics,
    request_split,
    summarize,
)
from divrec.metrics.reference import reference_item_vectors
from reproductions.cdm_diagnosis import teacher_only
from reproductions.claims import cdm_claims
from reproductions.units import run_units

KS = (5, 20)
GAMMAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0)


def _val_gammas(args) -> tuple[float, ...]:
    """The γ grid of the validation choice (`--val-gammas`; GAMMAS by default)."""
    return tuple(args.val_gammas or GAMMAS)


# The paper's Table 2 (JingDong @5, KuaiShou @20) and Table 3 (JD @5, KS @50).
PAPER_T2 = {
    "JD@5": {
        "DCN": (0.0653, 0.1124, 0.2464, 0.7210), "IPW": (0.0658, 0.1138, 0.2477, 0.7311),
        "DPP": (0.0471, 0.0830, 0.3025, 0.8329), "SSD": (0.0598, 0.0902, 0.2718, 0.8016),
        "MMR": (0.0637, 0.1104, 0.2609, 0.7642), "CDM": (0.0713, 0.1192, 0.2785, 0.7874),
    },
    "KS@20": {
        "DCN": (0.1057, 0.0638, 0.3922, 0.7418), "IPW": (0.1006, 0.0594, 0.4019, 0.7629),
        "DPP": (0.0842, 0.0513, 0.4917, 0.8942), "SSD": (0.0891, 0.0507, 0.4555, 0.8007),
        "MMR": (0.1083, 0.0652, 0.4268, 0.8248), "CDM": (0.1205, 0.0720, 0.4426, 0.8461),
    },
}  # fmt: skip
PAPER_T3 = {
    "JD@5": {"CDM": (0.0713, 0.1192, 0.2785, 0.7874), "-InfoNCE": (0.0677, 0.1139, 0.2693, 0.7785),
             "-CCE": (0.0624, 0.1110, 0.2792, 0.7862)},
    "KS@50": {"CDM": (0.2219, 0.0894, 0.5503, 0.9147), "-InfoNCE": (0.2095, 0.0803, 0.5257, 0.8920),
              "-CCE": (0.2036, 0.0786, 0.5223, 0.8884)},
}  # fmt: skip

# Re-ranker grids (trade-off curves); the first value of each is the headline row (fixed a
# priori, not chosen on the test requests).
GRIDS = {
    "MMR": ("lambda_", (0.7, 0.9, 0.8, 0.5)),
    "IA-MMR": ("lambda_", (0.25, 0.1, 0.5, 1.0)),
    "DPP": ("theta", (0.7, 0.9, 0.5)),
    "SSD": ("gamma", (0.25, 0.1, 1.0)),
}
HEADLINE_GAMMA = 0.1


def _load(name: str, home):
    from divrec.data.movielens import load_movielens_1m, ml1m_user_features
    from divrec.data.rechorus import load_grocery_rechorus

    if name == "ml-1m":
        data = load_movielens_1m(home, require_timestamps=True)
        return data, ml1m_user_features(data.user_ids, home)
    if name == "amazon-grocery":
        return load_grocery_rechorus(home), None
    raise ValueError(f"unknown dataset {name!r}")


def _topk_lists(scores: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    s = np.where(cand >= 0, scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cand, order, axis=1)
    return np.where(np.take_along_axis(s, order, axis=1) > -np.inf, out, -1)


def _overlap(lists: np.ndarray, teacher: np.ndarray, k: int = 20) -> float:
    """Mean over requests of `|top-k(lists) ∩ teacher top-k| / |teacher top-k|`."""
    vals = []
    for a, b in zip(lists[:, :k], teacher[:, :k], strict=True):
        tb = set(b[b >= 0].tolist())
        if tb:
            vals.append(len(set(a[a >= 0].tolist()) & tb) / len(tb))
    return float(np.mean(vals)) if vals else float("nan")


def _rerank(method: str, param: float, f, cand, e, u, k: int) -> np.ndarray:
    from divrec.rerank.dpp import FastGreedyDPP
    from divrec.rerank.mmr import MMR, InterestAwareMMR
    from divrec.rerank.ssd import SSD

    valid = cand >= 0
    rel = np.where(valid, f, 0.0).astype(np.float64)
    if method == "IA-MMR":
        pos = InterestAwareMMR(lambda_=param).select_batch(rel, k, vectors=e, user=u, valid=valid)
    else:
        cls = {"MMR": MMR, "DPP": FastGreedyDPP, "SSD": SSD}[method]
        name = GRIDS[method][0]
        pos = cls(**{name: param}).select_batch(rel, k, vectors=e, valid=valid)
    return np.where(pos >= 0, np.take_along_axis(cand, np.maximum(pos, 0), axis=1), -1)


def run_dataset(name: str, args, log) -> dict:
    import torch

    from divrec.ranking.cdm import CDMRanker, teacher_inputs
    from divrec.ranking.dcn import DCNRanker

    torch.set_num_threads(1)
    t_start = time.time()
    data, ufeat = _load(name, args.home)
    split = request_split(
        data, (0.7, 0.85), "ials", {"factors": 64}, n_candidates=args.n_candidates,
        max_train=args.max_train, max_test=args.max_test, seed=args.seed,
        train_cuts=args.train_cuts, first_cut=args.first_cut,
    )  # fmt: skip
    tr, te = split["train"], split["test"]
    log(f"{name}: requests train {len(tr)} test {len(te)} ({time.time() - t_start:.0f}s)")
    t1 = split["periods"]["test"][0]
    hist = data.select(data.timestamps < t1)
    spaces = {
        "svd": reference_item_vectors(hist, dim=64, seed=args.seed),
        "genre": genre_vectors(data.item_categories),
    }
    cats = data.item_categories
    kmax = max(KS)
    kw = dict(dim=16, max_epochs=args.epochs, patience=2, seed=args.seed)
    results: dict[str, dict] = {}
    lists_by: dict[str, np.ndarray] = {}

    def record(label: str, lists: np.ndarray) -> None:
        m = list_metrics(lists, te, KS, spaces, cats)
        results[label] = summarize(m, lists, cats, n_bootstrap=args.n_bootstrap, seed=args.seed)
        lists_by[label] = lists

    cand = te.candidates
    safe = np.maximum(cand, 0)
    record("pre-ranker (iALS)", _topk_lists(te.prescores, cand, kmax))
    # sanity rows: training-history popularity (distinct users) and seeded uniform scores
    pop = hist.item_popularity().astype(np.float64)
    record("Popularity", _topk_lists(pop[safe], cand, kmax))
    rand = np.random.default_rng([args.seed, 0x5A17]).random(cand.shape)
    record("Random", _topk_lists(rand, cand, kmax))
    dcn = DCNRanker(**kw).fit(hist, requests=tr, user_features=ufeat)
    log(f"{name}: DCN best epoch {dcn.best_epoch_} ({time.time() - t_start:.0f}s)")
    f = dcn.score(te.users, safe)
    record("DCN", _topk_lists(f, cand, kmax))
    if not args.skip_baselines:
        ipw = DCNRanker(**kw, weighting="ipw").fit(hist, requests=tr, user_features=ufeat)
        record("IPW", _topk_lists(ipw.score(te.users, safe), cand, kmax))
    _, e = dcn.embeddings(te.users, safe)
    u_int = dcn.interest_vectors(te.users)
    e_t, u_t = teacher_inputs(e, u_int, True)
    grid_rows: dict[str, list] = {}
    grids = {} if args.skip_baselines else GRIDS
    for method, (pname, values) in grids.items():
        for j, val in enumerate(values):
            if method == "IA-MMR":
                lists = _rerank(method, val, f, cand, e_t, u_t, kmax)
            else:
                lists = _rerank(method, val, f, cand, e, u_int, kmax)
            label = method if j == 0 else f"{method} ({pname}={val})"
            record(label, lists)
            grid_rows.setdefault(method, []).append(label)
    log(f"{name}: re-rankers done ({time.time() - t_start:.0f}s)")
    # distillation check: the teacher's top-20 on the test requests (IA-MMR at the teacher's
    # λ on the pre-trained backbone, as the training labels are made)
    teacher20 = _rerank("IA-MMR", args.teacher_lambda, f, cand, e_t, u_t, 20)
    agreement: dict[str, float] = {"DCN (backbone alone)": _overlap(lists_by["DCN"], teacher20)}
    # the teacher's items outside the DCN's top 20 (its diversity moves) that a list recovers
    teacher20_ind = np.zeros(cand.shape, dtype=np.float32)
    for r, row in enumerate(teacher20):
        teacher20_ind[r] = np.isin(cand[r], row[row >= 0]) & (cand[r] >= 0)
    moved: dict[str, float] = {}
    cdm_kw = dict(
        kw, teacher_k=20, teacher_lambda=args.teacher_lambda, n_context=10,
        cdm_epochs=args.cdm_epochs, **args.cdm_params,
    )  # fmt: skip
    variants = {"CDM": {}, "-InfoNCE": {"beta2": 0.0}, "-CCE": {"context": "plain"}}
    if args.skip_baselines:
        variants = {"CDM": {}}
    if args.restricted:
        variants["CDM (context top-50)"] = {"context_size": 50}
    for lam in args.lambda_grid:
        variants[f"CDM (λ={lam:g})"] = {"teacher_lambda": lam}
    chosen = None
    if args.validate:
        t0 = int(split["periods"]["train"][0])
        chosen = validation_choice(data, tr, t0, hist, ufeat, kw, cdm_kw, args, log)
        variants["CDM (validation-chosen)"] = {"teacher_lambda": chosen["lambda"],
                                               **chosen["student"]}  # fmt: skip
    gamma_curves: dict[str, dict] = {}
    extra: dict[str, float] = {}
    for vname, vkw in variants.items():
        t0 = time.time()
        cdm = CDMRanker(**{**cdm_kw, **vkw}).fit(hist, requests=tr, backbone=dcn)
        extra[f"{vname} teacher_rate"] = cdm.teacher_rate_
        extra[f"{vname} train_seconds"] = time.time() - t0
        fc, y = cdm.request_scores(te.users, cand)
        sweep = vname == "CDM" or vname.startswith("CDM (λ=")
        head = chosen["gamma"] if vname == "CDM (validation-chosen)" else HEADLINE_GAMMA
        for g in GAMMAS if sweep else (head,):
            lists = _topk_lists(fc + g * y, cand, kmax)
            label = vname if g == head else f"{vname} (γ={g})"
            if vname.startswith("CDM (λ="):
                label = f"{vname[:-1]}, γ={g})"
            record(label, lists)
            if vname == "CDM":
                gamma_curves[str(g)] = results[label]
            if g == head:
                agreement[label] = _overlap(lists, teacher20)
                moved[label] = teacher_only(fc + g * y, f, cand, teacher20_ind)
        # the student's own ranking (y_stu alone), against the teacher's top-20
        agreement[f"{vname}: student y_stu alone"] = _overlap(_topk_lists(y, cand, kmax), teacher20)
        agreement[f"{vname}: its backbone f_cdm alone"] = _overlap(
            _topk_lists(fc, cand, kmax), teacher20
        )
        moved[f"{vname}: student y_stu alone"] = teacher_only(y, f, cand, teacher20_ind)
        log(f"{name}: {vname} done ({time.time() - t0:.0f}s)")
    return {
        "dataset": name,
        "table1": split["stats"],
        "periods": split["periods"],
        "results": results,
        "gamma_curve": gamma_curves,
        "grids": grid_rows,
        "extra": extra,
        "teacher_agreement@20": agreement,
        "teacher_only_recovered@20": moved,
        "validation_choice": chosen,
        "dcn_val_losses": dcn.val_losses_,
        "seconds": time.time() - t_start,
    }


def validation_choice(data, tr, t0, hist, ufeat, kw, cdm_kw, args, log) -> dict:
    """The student's settings, teacher λ and serving γ of CDM chosen on validation requests,
    never on the test ones.

    The requests of a seeded 20% of the training users (all their cuts) are held out; a DCN
    is fitted on the others. Then (1) each student setting of `args.val_student` (name →
    CDMConfig overrides; the command-line settings first) is fitted at the a-priori λ and
    scored on the held-out requests (their own histories; ILAD in a reference space of the
    log before the training cut t0) by the objective fixed a priori
    `recall@20 + args.val_weight · ilad_svd@20` at its best γ ∈ `args.val_gammas` (default
    GAMMAS), ties to the first; (2) with the chosen setting, each λ of `VAL_LAMBDAS` × γ; the
    best pair is returned. Teacher agreement@20 of each fit on the held-out requests is
    recorded too.
    `args.val_context > 0`: these validation fits use the restricted top-m context (cost).
    """
    from divrec.ranking.cdm import CDMRanker
    from divrec.ranking.dcn import DCNRanker, request_hist_rows
    from reproductions.cdm_diagnosis import backbone_and_teacher, overlap

    rng = np.random.default_rng(args.seed)
    users = np.unique(tr.users)
    val_users = rng.choice(users, size=max(1, users.size // 5), replace=False)
    is_val = np.isin(tr.users, val_users)
    val, fit = tr.take(np.flatnonzero(is_val)), tr.take(np.flatnonzero(~is_val))
    hrows = request_hist_rows(val, np.arange(len(val)))
    before = data.select(data.timestamps < t0)
    spaces = {"svd": reference_item_vectors(before, dim=64, seed=args.seed)}
    dcn = DCNRanker(**kw).fit(hist, requests=fit, user_features=ufeat)
    cand = val.candidates
    # the a-priori teacher on the held-out requests (for the agreement column)
    _, tea = backbone_and_teacher(dcn, val, float(cdm_kw["teacher_lambda"]), 20)

    def score(over: dict, lam: float) -> list[dict]:
        ctx = {"context_size": args.val_context} if args.val_context else {}
        cdm = CDMRanker(**{**cdm_kw, **ctx, **over, "teacher_lambda": lam})
        cdm.fit(hist, requests=fit, backbone=dcn)
        f, y = cdm.request_scores(val.users, cand, val.history, hrows)
        rows = []
        for g in _val_gammas(args):
            lists = _topk_lists(f + g * y, cand, 20)
            m = list_metrics(lists, val, (20,), spaces, None)
            rec, div = float(np.nanmean(m["recall@20"])), float(np.nanmean(m["ilad_svd@20"]))
            rows.append({"lambda": lam, "gamma": g, "recall@20": rec, "ilad_svd@20": div,
                         "objective": rec + args.val_weight * div,
                         "teacher_agreement@20": overlap(f + g * y, cand, tea)})  # fmt: skip
        rows[0]["student_alone_agreement@20"] = overlap(y, cand, tea)
        return rows

    lam0 = float(cdm_kw["teacher_lambda"])
    student_grid = {}
    for name, over in {"as configured": {}, **args.val_student}.items():
        student_grid[name] = {"overrides": over, "grid": score(over, lam0)}
    best_name = max(
        student_grid, key=lambda n: max(r["objective"] for r in student_grid[n]["grid"])
    )
    student = student_grid[best_name]["overrides"]
    log(f"validation: student setting {best_name!r}")
    grid = []
    for lam in VAL_LAMBDAS:
        if lam == lam0:
            grid += student_grid[best_name]["grid"]
        else:
            grid += score(student, lam)
    best = max(grid, key=lambda r: r["objective"])
    log(f"validation choice: λ={best['lambda']} γ={best['gamma']} ({len(val)} requests)")
    return {"lambda": best["lambda"], "gamma": best["gamma"], "weight": args.val_weight,
            "student": student, "student_setting": best_name, "student_grid": student_grid,
            "validation_requests": len(val), "grid": grid}  # fmt: skip


#: teacher λ values searched on validation (`--validate`)
VAL_LAMBDAS = (0.1, 0.25, 0.5, 1.0)


def _kv(text: str) -> tuple[str, object]:
    """`KEY=VALUE` with VALUE read as JSON where it parses (numbers, true/false)."""
    key, _, val = text.partition("=")
    try:
        return key.strip(), json.loads(val)
    except json.JSONDecodeError:
        return key.strip(), val


def _fmt(entry: dict) -> str:
    lo, hi = entry["low"], entry["high"]
    if np.isfinite(lo):
        return f"{entry['mean']:.4f} [{lo:.4f}, {hi:.4f}]"
    return f"{entry['mean']:.4f}"


def goal_check(res: dict) -> list[str]:
    """Does some γ of CDM reach MMR's ILAD@K within 5% with Recall@K ≥ MMR's?"""
    lines = []
    r = res["results"]
    for ref in ("MMR", "IA-MMR"):
        if ref not in r:
            continue
        for k in KS:
            for space in ("svd", "genre"):
                il, rc = f"ilad_{space}@{k}", f"recall@{k}"
                ref_il, ref_rc = r[ref][il]["mean"], r[ref][rc]["mean"]
                ok = [
                    g
                    for g, m in res["gamma_curve"].items()
                    if m[il]["mean"] >= 0.95 * ref_il and m[rc]["mean"] >= ref_rc
                ]
                verdict = "met at γ ∈ {" + ", ".join(ok) + "}" if ok else "not met"
                lines.append(
                    f"- vs {ref} @{k} ({space} ILAD {ref_il:.4f}, recall {ref_rc:.4f}): {verdict}"
                )
    return lines


def write_markdown(all_res: list[dict], out: Path, args) -> None:
    lines = ["# CDM reproduction: Table 2, Table 3, Fig. 4 on public request-level candidates", ""]
    lines.append(__doc__.split("Run:")[0].strip())
    lines += ["", f"Settings: {vars(args)}", ""]
    lines += ["## Table 1 (request statistics)", ""]
    lines.append("| dataset | side | requests | candidates/request | positives/request | "
                 "targets/request | pre-ranker recall |")  # fmt: skip
    lines.append("|---|---|---|---|---|---|---|")
    for res in all_res:
        for side, s in res["table1"].items():
            lines.append(
                f"| {res['dataset']} | {side} | {s['requests']} | {s['candidates_per_request']:.0f}"
                f" | {s['positives_per_request']:.2f} | {s['targets_per_request']:.2f} | "
                f"{s['pre_ranker_recall']:.4f} |"
            )
    cols = ["recall", "mrr", "ilad_svd", "ilad_genre", "cc"]
    for res in all_res:
        for k in KS:
            paper = PAPER_T2["JD@5" if k == 5 else "KS@20"]
            ptitle = "JingDong@5" if k == 5 else "KuaiShou@20"
            lines += [
                "",
                f"## Table 2: {res['dataset']} @ {k} (95% CI); paper {ptitle} beside "
                "(Recall, MRR, ILAD, CC)",
                "",
            ]
            lines.append("| model | " + " | ".join(f"{c}@{k}" for c in cols) + " | paper |")
            lines.append("|---" * (len(cols) + 2) + "|")
            for label, m in res["results"].items():
                base = label.split(" (")[0]
                p = paper.get(base, None) if label == base else None
                ptxt = " / ".join(f"{x:.4f}" for x in p) if p else ""
                lines.append(
                    f"| {label} | " + " | ".join(_fmt(m[f"{c}@{k}"]) for c in cols) + f" | {ptxt} |"
                )
    lines += ["", "## Table 3 (ablations, γ = 0.1)", ""]
    for res in all_res:
        for k in KS:
            pk = "JD@5" if k == 5 else "KS@50"
            lines.append(f"**{res['dataset']} @ {k}** (paper {pk} beside)")
            lines.append("")
            lines.append("| variant | " + " | ".join(f"{c}@{k}" for c in cols) + " | paper |")
            lines.append("|---" * (len(cols) + 2) + "|")
            for v in ("CDM", "-InfoNCE", "-CCE", "CDM (context top-50)"):
                if v in res["results"]:
                    p = PAPER_T3[pk].get(v)
                    ptxt = " / ".join(f"{x:.4f}" for x in p) if p else ""
                    m = res["results"][v]
                    lines.append(
                        f"| {v} | " + " | ".join(_fmt(m[f"{c}@{k}"]) for c in cols) + f" | {ptxt} |"
                    )
            lines.append("")
    lines += ["## Goal check (CDM within 5% of MMR's ILAD@K with Recall@K ≥ MMR's)", ""]
    for res in all_res:
        lines.append(f"**{res['dataset']}** (γ grid {list(GAMMAS)} chosen on the test requests)")
        lines += goal_check(res)
        lines.append("")
    lines += ["## Fig. 4", "", "![gamma sweep](fig4_gamma.png)", "",
              "![trade-off](tradeoff.png)", ""]  # fmt: skip
    (out / "cdm_tables.md").write_text("\n".join(lines) + "\n")


def plot(all_res: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["recall@20", "mrr@20", "ilad_svd@20", "cc@20"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(16, 3.6))
    for res in all_res:
        gs = [float(g) for g in res["gamma_curve"]]
        for ax, met in zip(axes, metrics, strict=True):
            vals = np.array([res["gamma_curve"][str(g)][met]["mean"] for g in gs])
            ax.plot(gs, vals - vals.max(), marker="o", label=res["dataset"])
            ax.set_xscale("symlog", linthresh=0.05)
            ax.set_title(f"Δ{met} (vs best γ)")
            ax.set_xlabel("γ")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "fig4_gamma.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(all_res), figsize=(6.5 * len(all_res), 4.5), squeeze=False)
    for ax, res in zip(axes[0], all_res, strict=True):
        for label, m in res["results"].items():
            x, y = m["ilad_svd@20"]["mean"], m["recall@20"]["mean"]
            base = label.split(" (")[0]
            style = {"CDM": "r", "MMR": "b", "IA-MMR": "c", "DPP": "g", "SSD": "m"}.get(base, "k")
            ax.plot(x, y, "o", color=style)
            ax.annotate(label, (x, y), fontsize=6)
        ax.set_xlabel("ILAD@20 (reference SVD space)")
        ax.set_ylabel("Recall@20")
        ax.set_title(res["dataset"])
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cdm_single"))
    ap.add_argument("--home", default=None)
    ap.add_argument("--datasets", default="ml-1m,amazon-grocery")
    ap.add_argument("--n-candidates", type=int, default=200)
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--cdm-epochs", type=int, default=3)
    ap.add_argument("--teacher-lambda", type=float, default=0.25)
    ap.add_argument("--n-bootstrap", type=int, default=500)
    ap.add_argument("--restricted", action="store_true", help="also a top-50 context CDM")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="reuse per-dataset JSON in --out")
    ap.add_argument(
        "--lambda-grid", type=float, nargs="*", default=[], help="extra teacher λ values"
    )
    ap.add_argument("--skip-baselines", action="store_true", help="only DCN and CDM rows")
    ap.add_argument(
        "--seeds", type=int, nargs="*", default=None,
        help="several seeds: one JSON per (dataset, seed) in OUT/seeds (reused on a re-run: "
        "resumable), then mean ± 95%% t-interval over seeds in OUT/seeds.json / seeds.md",
    )  # fmt: skip
    ap.add_argument(
        "--validate", action="store_true",
        help="also a CDM row with teacher λ and γ chosen on held-out training requests",
    )  # fmt: skip
    ap.add_argument(
        "--val-weight", type=float, default=0.5,
        help="validation objective recall@20 + w · ILAD_svd@20 (fixed a priori)",
    )  # fmt: skip
    ap.add_argument(
        "--val-gammas", type=float, nargs="+", default=None,
        help="the γ grid searched on validation (default: the test sweep's grid, 0 … 2)",
    )  # fmt: skip
    ap.add_argument(
        "--val-context", type=int, default=0,
        help="context size of the validation fits (0: as configured; 50: the restricted "
        "top-50 context, ~3x cheaper at N = 200 — a cost reduction)",
    )  # fmt: skip
    ap.add_argument(
        "--jobs", type=int, default=1,
        help="(dataset, seed) runs in parallel processes (torch threads 1 each)",
    )  # fmt: skip
    ap.add_argument(
        "--train-cuts", type=int, default=1,
        help="training requests from this many sliding time cuts (1: the single cut t0)",
    )  # fmt: skip
    ap.add_argument("--first-cut", type=float, default=0.2, help="quantile of the first cut")
    ap.add_argument(
        "--cdm", action="append", default=[], metavar="KEY=VALUE",
        help="CDMConfig override for every CDM row (e.g. freeze_backbone=true, beta1=10)",
    )  # fmt: skip
    ap.add_argument(
        "--val-student", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="a student setting tried on the validation requests (--validate)",
    )  # fmt: skip
    ap.add_argument(
        "--quick", action="store_true",
        help="smoke variant: ml-1m, 150/150 requests, N = 100, 2 + 1 epochs, seed 0",
    )  # fmt: skip
    args = ap.parse_args(argv)
    args.cdm_params = dict(_kv(x) for x in args.cdm)
    args.val_student = {
        x.split(":", 1)[0]: dict(_kv(y) for y in x.split(":", 1)[1].split(","))
        for x in args.val_student
    }
    if args.quick:
        args.datasets, args.max_train, args.max_test, args.n_candidates = "ml-1m", 150, 150, 100
        args.epochs, args.cdm_epochs, args.n_bootstrap = 2, 1, 50
        args.seeds = args.seeds or [0]
    args.out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.seeds:
        run_seeds(args, log)
        return

    all_res = []
    for name in args.datasets.split(","):
        cache = args.out / f"cdm_{name}.json"
        if args.reuse and cache.exists():
            all_res.append(json.loads(cache.read_text()))
            continue
        res = run_dataset(name, args, log)
        cache.write_text(json.dumps(res, indent=1))
        all_res.append(res)
    serial = {**vars(args), "out": str(args.out)}
    (args.out / "cdm_tables.json").write_text(
        json.dumps({"args": serial, "datasets": all_res}, indent=1)
    )
    write_markdown(all_res, args.out, args)
    plot(all_res, args.out)


def _run_one(args, name: str, seed: int) -> dict:
    """One (dataset, seed) into OUT/seeds/cdm_<dataset>_seed<s>.json (a pool worker)."""
    import copy
    import os

    args = copy.copy(args)
    args.seed = seed
    t0, c0 = time.time(), time.process_time()
    res = run_dataset(name, args, lambda msg: print(f"[{name} {seed}] {msg}", flush=True))
    res["seed"], res["wall_seconds"] = seed, time.time() - t0
    res["cpu_seconds"] = time.process_time() - c0  # one torch thread: its wall on a free core
    res["loadavg"] = list(os.getloadavg())
    (args.out / "seeds" / f"cdm_{name}_seed{seed}.json").write_text(json.dumps(res, indent=1))
    return res


def run_seeds(args, log) -> None:
    """Every (dataset, seed) into OUT/seeds/cdm_<dataset>_seed<s>.json (skipped when
    present), then the mean ± 95% t-interval over seeds of every row's metric means."""

    from divrec.simulate.report import _mean_ci

    seed_dir = args.out / "seeds"
    seed_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"args": {**vars(args), "out": str(args.out)}, "datasets": {}}
    md = ["# CDM tables over seeds" + (" (QUICK smoke run, not a result)" if args.quick else ""),
          "", f"Seeds {args.seeds}; mean ± 95% t-interval over seeds of the per-seed means.",
          ""]  # fmt: skip
    todo = [(name, seed) for name in args.datasets.split(",") for seed in args.seeds
            if not (seed_dir / f"cdm_{name}_seed{seed}.json").exists()]  # fmt: skip
    for _ in run_units(_run_one, [(args, name, seed) for name, seed in todo], args.jobs):
        pass
    for name in args.datasets.split(","):
        per_seed = []
        for seed in args.seeds:
            f = seed_dir / f"cdm_{name}_seed{seed}.json"
            per_seed.append(json.loads(f.read_text()))
            if (name, seed) not in todo:
                log(f"{name} seed {seed}: reused {f}")
        rows: dict = {}
        for label in per_seed[0]["results"]:
            rows[label] = {}
            for metric in per_seed[0]["results"][label]:
                vals = [r["results"][label][metric]["mean"] for r in per_seed]
                mean, ci = _mean_ci(np.array(vals))
                rows[label][metric] = {"mean": mean, "ci": ci, "per_seed": vals}
        agree, moved = {}, {}
        for field, dest in (("teacher_agreement@20", agree), ("teacher_only_recovered@20", moved)):
            for key in per_seed[0].get(field, {}):
                vals = [r[field][key] for r in per_seed]
                mean, ci = _mean_ci(np.array(vals))
                dest[key] = {"mean": mean, "ci": ci, "per_seed": vals}
        summary["datasets"][name] = {
            "seeds": list(args.seeds),
            "rows": rows,
            "teacher_agreement@20": agree,
            "teacher_only_recovered@20": moved,
            "validation_choice": [
                r.get("validation_choice")
                and {
                    k: r["validation_choice"][k]
                    for k in ("lambda", "gamma", "student_setting")
                    if k in r["validation_choice"]
                }
                for r in per_seed
            ],
            "seconds_per_seed": [r.get("wall_seconds", r["seconds"]) for r in per_seed],
        }
        cols = [c for c in ("recall@20", "mrr@20", "ilad_svd@20", "ilad_genre@20", "cc@20")
                if c in rows.get("DCN", {})]  # fmt: skip
        md += [f"## {name}", "", "| row | " + " | ".join(cols) + " |",
               "|---" * (len(cols) + 1) + "|"]  # fmt: skip
        for label, e in rows.items():
            if "=" in label:
                continue  # grid points: in the JSON
            cells = []
            for c in cols:
                ci = e[c]["ci"]
                cells.append(
                    f"{e[c]['mean']:.4f}" + ("" if not np.isfinite(ci) else f" ± {ci:.4f}")
                )
            md.append(f"| {label} | " + " | ".join(cells) + " |")
        md += ["", "Agreement with the teacher's top-20 on the test requests (share of the "
               "teacher's items in the list's top 20):", ""]  # fmt: skip
        md += [f"- {k}: {v['mean']:.3f}" for k, v in agree.items()]
        md += ["", "Share of the teacher's items outside the DCN's top 20 (its diversity moves) "
               "that the list's top 20 recovers:", ""]  # fmt: skip
        md += [f"- {k}: {v['mean']:.3f}" for k, v in moved.items()]
        md.append("")
        claims = cdm_claims(summary["datasets"][name], args.n_candidates, PAPER_T2["KS@20"],
                            gammas=_val_gammas(args), dataset=name)  # fmt: skip
        summary["datasets"][name]["claims"] = claims
        md += claims
    (args.out / "seeds.json").write_text(json.dumps(summary, indent=1))
    (args.out / "seeds.md").write_text("\n".join(md))
    log("\n".join(md))


if __name__ == "__main__":
    main()
