"""TotalRecall potential-users mining (PUMS): Tables 3 and 5 on MovieLens-1M, and u2i diversity.

Protocol (Sec. 5.2, App. A.7; see `pums_split`):

* all 1,000,209 ML-1M ratings binarized (every rating is a positive pair);
* the movies watched by at least 50 users (2,514) are "chosen"; for each chosen movie,
  ``max(1, round_half_up(1% of its users))`` of its users are held out (9,913 pairs — exactly
  the 5,125 + 4,788 of Table 4); the chosen movies are split in half at random, the held-out
  pairs of one half form the validation set and of the other the test set (1,257 movies each);
  everything else (990,296 pairs) is the training set;
* Table 3 (potential users of a single item): for each test movie, the top-10 users by φ(u, i)
  (Eq. 2) among users without a training interaction with it; Precision@10 / Recall@10 against
  its held-out users (App. A.7.1), averaged over test movies; distinct users over all lists;
* Table 5 (potential users of a group of items, App. A.7.2): for each of the 18 genres, the
  chosen movies of that genre ranked by their number of users; the top / middle / bottom
  ``floor(10%)`` form three groups (54 groups; Drama-top has 93 movies, Documentary-top 3, as
  in the paper). A group's potential users are the users with a held-out pair on one of its
  movies — and, under the "group" reading of App. A.7.2, no training interaction with any
  of them; under the "item" reading only the user's own seen (u, i) pairs are excluded. The
  model ranks users by the mean / max / sum over the group of exp(φ) (InfoNCE models) or
  σ(φ) (MFb), over each item's top-N candidate users or over all users, with the same
  exclusions; Precision@10 / Recall@10 are averaged over groups;
* candidate diversity (App. A.6.2 metrics): distinct items@50 and distinct genres@50 over all
  users' top-50 u2i lists (training items excluded), for the same trained models;
* in addition, the Sec. 3.6 batch path (`batch_potential_users`: top-10 items per user by
  faiss, then top-10 users per item from those pairs) is scored on the Table 3 test movies.

Run: ``python -m reproductions.totalrecall_pums --out benchmarks/results/totalrecall_pums``.
Writes ``pums.json`` and ``pums.md`` (no model files).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from divrec.metrics.groups import (
    genre_popularity_groups,
    group_metrics,
    group_truth,
    item_user_truth,
    single_item_metrics,
)
from divrec.metrics.pums import GROUP_AGGREGATIONS, u2i_diversity
from divrec.registry import create
from divrec.retrieval.two_tower import (
    TwoTowerRecommender,
    batch_potential_users,
)
from divrec.splitting.pums import PumsSplit, pums_split

#: Table 3 of the paper: Precision@10 (%), Recall@10 (%), distinct users (None: omitted)
PAPER_TABLE3 = {
    "mfb_0_8": (1.47, 5.61, None),
    "mfb_8_0": (4.44, 12.82, 2046),
    "mfb_4_4": (3.12, 9.28, None),
    "mfb_8_8": (3.02, 8.64, None),
    "tr_u2i": (1.19, 4.51, None),
    "tr_i2u": (4.35, 12.78, 2064),
    "tr_bi": (4.58, 13.82, 2202),
}
#: Table 5 of the paper: (model, aggregation) -> Precision@10 (%), Recall@10 (%), distinct users
PAPER_TABLE5 = {
    ("mfb_0_8", "mean"): (5.93, 1.52, None),
    ("mfb_8_0", "sum"): (5.93, 2.58, None),
    ("mfb_8_0", "max"): (14.63, 4.23, None),
    ("mfb_8_0", "mean"): (17.04, 4.57, 246),
    ("mfb_4_4", "mean"): (11.11, 2.63, None),
    ("mfb_8_8", "mean"): (12.78, 3.05, None),
    ("tr_u2i", "mean"): (4.63, 1.38, None),
    ("tr_i2u", "mean"): (16.85, 7.25, 262),
    ("tr_bi", "sum"): (12.41, 6.79, None),
    ("tr_bi", "max"): (16.48, 7.01, None),
    ("tr_bi", "mean"): (20.56, 7.58, 258),
}
#: Table 4 of the paper: records / movies of each part
PAPER_TABLE4 = {"train": (990296, 6040), "valid": (5125, 1257), "test": (4788, 1257)}

LABELS = {
    "mfb_0_8": "MFb [0:8]",
    "mfb_8_0": "MFb [8:0]",
    "mfb_4_4": "MFb [4:4]",
    "mfb_8_8": "MFb [8:8]",
    "tr_u2i": "TR [Uni-InfoNCE u2i]",
    "tr_i2u": "TR [Uni-InfoNCE i2u]",
    "tr_bi": "TR [Bi-InfoNCE]",
}


#: the paper's settings (Table 3 caption): MFb batch 4096, τ = 0.125; TR batch 512, τ = 0.125
def mfb_model(**params) -> TwoTowerRecommender:
    """TotalRecall's MFb: the registry preset `mfb` of `TwoTowerRecommender`."""
    return create("model", "mfb", params)


MODEL_SPECS = {
    "mfb_0_8": (mfb_model, {"negatives": "[0:8]", "batch_size": 4096, "tau": 0.125}),
    "mfb_8_0": (mfb_model, {"negatives": "[8:0]", "batch_size": 4096, "tau": 0.125}),
    "mfb_4_4": (mfb_model, {"negatives": "[4:4]", "batch_size": 4096, "tau": 0.125}),
    "mfb_8_8": (mfb_model, {"negatives": "[8:8]", "batch_size": 4096, "tau": 0.125}),
    "tr_u2i": (TwoTowerRecommender, {"loss": "u2i", "batch_size": 512, "tau": 0.125}),
    "tr_i2u": (TwoTowerRecommender, {"loss": "i2u", "batch_size": 512, "tau": 0.125}),
    "tr_bi": (TwoTowerRecommender, {"loss": "bi", "batch_size": 512, "tau": 0.125}),
}
NOTES = (
    "Data: all 1,000,209 ML-1M ratings from the shared no-timestamp file (the random PUMS "
    "split needs no timestamps), binarized. The 20 movies whose MovieID is ambiguous in that "
    "file have no genre; none of them is among the 2,514 chosen movies, so the groups are "
    "unaffected.",
    "Split: the totals of Table 4 are reproduced exactly (990,296 training pairs; 9,913 "
    "held-out = max(1, round-half-up(1%)) per chosen movie); the valid/test halves differ "
    "from the paper's (a different random halving). The paper's '3076 movies' in the "
    "training set is read as a typo for 3706.",
    "No hyperparameter search: the validation set is not used; τ, batch sizes and d = 96 "
    "are the paper's (Table 3 caption). TR uses τ = 0.125 for both tables (Table 5's "
    "caption says 0.111), so one trained model serves Tables 3, 5 and the diversity rows.",
    "Training budget: the paper gives no epoch counts; by default MFb gets 6 and TR 4 "
    "epochs, fewer than Table 1's run (MFb 12, TR 6), to keep the script near 20 minutes "
    "on 2 shared cores. This disadvantages MFb most (the paper reports it converges about "
    "16x slower).",
    "Table 5: groups are built from the 2,514 chosen movies (floor(10%) per genre gives "
    "Drama-top 93 and Documentary-top 3 movies, as in App. A.7.2), ranked by the number "
    "of users in the full data; 'middle' is the central slice. Ground truth uses the "
    "held-out pairs of both the validation and the test movies (a group spans both "
    "halves). App. A.7.2 is ambiguous about which training interactions disqualify a user: "
    "both readings are reported ('group' and 'item' scope). It does not give the per-item "
    "candidate-list size; N is a parameter (--candidates-per-item), and the all-users "
    "variant is reported too. In that variant 'sum' ranks exactly as 'mean' under the "
    "group scope (every user has G scores). The item scope with all users is listed "
    "first as the primary reading: it is the only variant whose levels and ordering match "
    "the paper (mean > max > sum for TR, i2u-capable models far above u2i-only ones), and "
    "the paper's argument against 'sum' (a user with many unseen group items accumulates "
    "a high sum) presupposes that users differ in how many group items they are scored on.",
    "Diversity@50 on ML-1M: 6,040 users x 50 slots can cover the whole catalogue, so "
    "distinct items and genres saturate quickly; the exposure Gini of the same lists is "
    "added as a finer measure.",
)

SCOPES = ("group", "item")


# --------------------------------------------------------------------------- driver
def evaluate_model(
    model: TwoTowerRecommender,
    split: PumsSplit,
    groups: list[dict],
    truths: dict[str, list[np.ndarray]],
    item_categories: sp.spmatrix,
    k: int = 10,
    candidates_per_item: int = 100,
) -> dict:
    """Table 3, Table 5, the Sec. 3.6 batch path and u2i diversity for one fitted model.

    Table 5 is computed for each seen-scope in `truths` ("group", "item"; see `group_truth`)
    and twice per scope: ``table5_<scope>`` with per-item candidate lists of
    `candidates_per_item` users, ``table5_<scope>_all_users`` scoring every user against
    every group item.
    """
    t0 = time.perf_counter()
    truth = item_user_truth(split.test, split.test_items)
    top, _ = model.potential_users(split.test_items, k=k)
    table3 = single_item_metrics(top, truth, k)
    batch_ids, _ = batch_potential_users(model, items_per_user=k, users_per_item=k)
    batch = single_item_metrics(batch_ids[split.test_items], truth, k)
    table5 = {}
    for scope, scope_truths in truths.items():
        for suffix, n_cand in (("", candidates_per_item), ("_all_users", None)):
            table5[f"table5_{scope}{suffix}"] = {
                agg: group_metrics(model, groups, scope_truths, agg, k, n_cand, scope)
                for agg in GROUP_AGGREGATIONS
            }
    diversity = u2i_diversity(model, item_categories, k=50)
    return {
        "table3": table3,
        "batch_path": batch,
        **table5,
        "diversity": diversity,
        "eval_seconds": time.perf_counter() - t0,
    }


def run(
    out: Path,
    home=None,
    dim: int = 96,
    seed: int = 0,
    mfb_epochs: float = 6.0,
    tr_epochs: float = 4.0,
    lr: float = 0.01,
    threads: int = 1,
    models: tuple[str, ...] = tuple(MODEL_SPECS),
    progress: bool = False,
    candidates_per_item: int = 100,
) -> dict:
    """Builds the split, trains each model, evaluates; writes ``pums.json`` and ``pums.md``."""
    from divrec.data.movielens import load_movielens_1m

    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = load_movielens_1m(home)
    split = pums_split(data.to_csr(binary=True), seed=seed)
    groups = genre_popularity_groups(
        split.chosen_items, data.item_categories, split.popularity, data.category_names
    )
    heldout = (split.valid + split.test).tocsr()
    truths = {
        scope: [group_truth(split.train, heldout, g["items"], scope) for g in groups]
        for scope in SCOPES
    }
    results: dict = {
        "data": {
            "source": data.name,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "chosen_movies": int(split.chosen_items.size),
            "split": split.stats(),
            "groups": [
                {
                    "group": f"{g['genre']}-{g['level']}",
                    "movies": int(g["items"].size),
                    "potential_users_group_scope": int(tg.size),
                    "potential_users_item_scope": int(ti.size),
                }
                for g, tg, ti in zip(groups, truths["group"], truths["item"], strict=True)
            ],
        },
        "settings": {
            "dim": dim,
            "seed": seed,
            "mfb_epochs": mfb_epochs,
            "tr_epochs": tr_epochs,
            "lr": lr,
            "threads": threads,
            "candidates_per_item": candidates_per_item,
        },
        "models": {},
    }
    for key in models:
        cls, spec = MODEL_SPECS[key]
        epochs = mfb_epochs if cls is mfb_model else tr_epochs
        params = {
            **spec,
            "dim": dim,
            "epochs": epochs,
            "lr": lr,
            "lr_schedule": "linear",
            "seed": seed,
            "threads": threads,
            "progress": progress,
        }
        model = cls(**params).fit(split.train)
        res = evaluate_model(
            model,
            split,
            groups,
            truths,
            data.item_categories,
            candidates_per_item=candidates_per_item,
        )
        res["train_seconds"] = model.train_seconds_
        res["examples_seen"] = model.examples_seen_
        res["params"] = {k: v for k, v in model.get_params().items() if k != "progress"}
        results["models"][key] = res
        t3 = res["table3"]
        print(
            f"{key}: train {model.train_seconds_:.0f}s eval {res['eval_seconds']:.0f}s  "
            f"P@10 {100 * t3['precision']:.2f} R@10 {100 * t3['recall']:.2f} "
            f"users {t3['distinct_users']}",
            flush=True,
        )
        (out / "pums.json").write_text(json.dumps(results, indent=2))
    results["total_seconds"] = time.perf_counter() - t_start
    (out / "pums.json").write_text(json.dumps(results, indent=2))
    (out / "pums.md").write_text(markdown(results))
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _paper(v) -> str:
    return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def markdown(results: dict) -> str:
    """Tables 3, 5, the batch path and diversity with the paper's numbers beside ours."""
    s = results["settings"]
    d = results["data"]
    ms = results["models"]
    lines = [
        "# TotalRecall PUMS — MovieLens-1M (Tables 3, 4, 5) and u2i candidate diversity",
        "",
        f"d = {s['dim']}, seed {s['seed']}; MFb {s['mfb_epochs']} epochs (batch 4096, τ 0.125), "
        f"TR {s['tr_epochs']} epochs (batch 512, τ 0.125); Adam lr 0.01 decayed linearly. "
        "Precision and recall in %.",
        "",
        "## Table 4 — split",
        "",
        "| part | records (ours) | movies (ours) | users (ours) | records (paper) | "
        "movies (paper) |",
        "|---|---|---|---|---|---|",
    ]
    for part, (rec_p, mov_p) in PAPER_TABLE4.items():
        st = d["split"][part]
        paper_movies = "3076 (sic)" if part == "train" else str(mov_p)
        lines.append(
            f"| {part} | {st['records']} | {st['movies']} | {st['users']} | {rec_p} | "
            f"{paper_movies} |"
        )
    lines += [
        "",
        "## Table 3 — potential users of a single item (test movies)",
        "",
        "| model | P@10 | R@10 | distinct users | paper P@10 | paper R@10 | paper users |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in ms.items():
        t = r["table3"]
        pp, pr, pu = PAPER_TABLE3[key]
        lines.append(
            f"| {LABELS[key]} | {_pct(t['precision'])} | {_pct(t['recall'])} | "
            f"{t['distinct_users']} | {_paper(pp)} | {_paper(pr)} | {_paper(pu)} |"
        )
    n_cand = s.get("candidates_per_item")
    scope_text = {
        "item": "potential user = held-out pair on a group item; only the user's own "
        "training (u, i) pairs are excluded from the aggregation",
        "group": "potential user = held-out pair on a group item and no training "
        "interaction with any group item; such users are excluded from the ranking",
    }
    variants = [
        ("item", "_all_users", "every user scored against every group item — primary"),
        ("item", "", f"each item's top-{n_cand} users are its candidates"),
        ("group", "_all_users", "every user scored against every group item"),
        ("group", "", f"each item's top-{n_cand} users are its candidates"),
    ]
    for scope, suffix, title in variants:
        field = f"table5_{scope}{suffix}"
        if not ms or field not in next(iter(ms.values())):
            continue
        first = next(iter(ms.values()))[field]["mean"]
        lines += [
            "",
            f"## Table 5 ({scope} scope; {title})",
            "",
            f"54 genre × popularity groups; {scope_text[scope]}. Averaged over the "
            f"{first['n_groups']} groups with potential users.",
            "",
            "| model | aggregation | P@10 | R@10 | distinct users | paper P@10 | "
            "paper R@10 | paper users |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, r in ms.items():
            for agg in GROUP_AGGREGATIONS:
                t = r[field][agg]
                pp, pr, pu = PAPER_TABLE5.get((key, agg), (None, None, None))
                lines.append(
                    f"| {LABELS[key]} | {agg} | {_pct(t['precision'])} | "
                    f"{_pct(t['recall'])} | {t['distinct_users']} | {_paper(pp)} | "
                    f"{_paper(pr)} | {_paper(pu)} |"
                )
    lines += [
        "",
        "## Sec. 3.6 batch path on the Table 3 test movies",
        "",
        "Top-10 items per user (faiss, exact), then the top-10 users of each item among the "
        "pairs that reached it, ranked by the same φ(u, i). Movies reached by fewer than 10 "
        "users keep short lists (precision still divides by 10).",
        "",
        "| model | P@10 | R@10 | distinct users | exact i2u P@10 (Table 3) |",
        "|---|---|---|---|---|",
    ]
    for key, r in ms.items():
        b = r["batch_path"]
        lines.append(
            f"| {LABELS[key]} | {_pct(b['precision'])} | {_pct(b['recall'])} | "
            f"{b['distinct_users']} | {_pct(r['table3']['precision'])} |"
        )
    lines += [
        "",
        "## u2i candidate diversity (all 6,040 users' top-50, training items excluded)",
        "",
        "| model | distinct items@50 | distinct genres@50 | exposure Gini@50 |",
        "|---|---|---|---|",
    ]
    for key, r in ms.items():
        dv = r["diversity"]
        lines.append(
            f"| {LABELS[key]} | {dv['distinct_items']} | {dv['distinct_genres']} | "
            f"{dv['exposure_gini']:.3f} |"
        )
    lines += [
        "",
        "## Training and evaluation time",
        "",
        "| model | train s | eval s |",
        "|---|---|---|",
    ]
    for key, r in ms.items():
        lines.append(f"| {LABELS[key]} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")
    if "total_seconds" in results:
        lines += ["", f"Total wall time: {results['total_seconds']:.0f} s."]
    lines += ["", "## Protocol notes and deviations from the paper", ""]
    lines += [f"- {note}" for note in NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--home", default=None, help="data home (default: DIVREC_DATA_HOME)")
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mfb-epochs", type=float, default=6.0)
    parser.add_argument("--tr-epochs", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--models", default=",".join(MODEL_SPECS), help="comma-separated subset of models"
    )
    parser.add_argument(
        "--candidates-per-item", type=int, default=100, help="Table 5 per-item candidate users"
    )
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite OUT/pums.md from OUT/pums.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads((args.out / "pums.json").read_text())
        (args.out / "pums.md").write_text(markdown(results))
        print(markdown(results))
        return
    import torch

    torch.set_num_threads(args.threads)
    results = run(
        args.out,
        home=args.home,
        dim=args.dim,
        seed=args.seed,
        mfb_epochs=args.mfb_epochs,
        tr_epochs=args.tr_epochs,
        lr=args.lr,
        threads=args.threads,
        models=tuple(m for m in args.models.split(",") if m),
        progress=args.progress,
        candidates_per_item=args.candidates_per_item,
    )
    print(markdown(results))


if __name__ == "__main__":
    main()
