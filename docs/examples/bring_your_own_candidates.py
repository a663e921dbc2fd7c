"""Bring your own candidates: from a CSV of scored candidates to diversified lists and a report
of what changed (the code of docs/tutorial_bring_your_own_candidates.md; a test runs it).

    python docs/examples/bring_your_own_candidates.py candidates.csv items.csv \\
        --k 10 --method mmr --diversity 0.5 --out diversified/

Inputs:
    candidates.csv  ``user_id, item_id, score``: each user's candidate list from your own
                    retrieval / ranking (any order; higher score = better).
    items.csv       ``item_id, category, v0, v1, ...``: each item's category and a vector
                    (any embedding; the similarity the re-ranker diversifies in).
    --history       optional ``user_id, item_id`` table of what each user consumed, the
                    reference of miscalibration (default: the user's candidate pool).

Outputs (in --out):
    lists.csv       the diversified lists, ``user_id, item_id, score, rank``.
    report.json     before (the top-k by score) and after: mean ILAD, category coverage per
                    list and over all lists, item coverage, miscalibration, and the
                    rank-biased overlap of the new lists with the input order.
    report.md       the same as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from divrec.metrics.overlap import rank_biased_overlap
from divrec.pipeline.frames import catalogue, evaluate_frame, rerank_frame
from divrec.registry import create


def diversify(
    candidates: pd.DataFrame,
    items: pd.DataFrame,
    k: int = 10,
    method: str = "mmr",
    diversity: float = 0.5,
    history: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The diversified lists and the before/after report (see the module docstring)."""
    vectors = [c for c in items.columns if c.startswith("v") and c[1:].isdigit()]
    # 1. the id maps and item side information: an `Interactions` without interactions
    cat = catalogue(
        items, users=candidates["user_id"].unique(), category="category", vectors=vectors
    )
    # 2. any registered re-ranker, its similarity space the item vectors
    reranker = create("re-ranker", method).fit(cat, item_vectors=cat.item_features)
    # 3. before: the input order (diversity 0 = by score); after: the diversified lists
    before = rerank_frame(reranker, candidates, k, cat, diversity=0.0)
    after = rerank_frame(reranker, candidates, k, cat, diversity=diversity)
    # 4. what changed, per list and over all lists
    reference = candidates[["user_id", "item_id"]] if history is None else history
    report: dict = {"k": k, "method": method, "diversity": diversity, "users": 0}
    for name, lists in (("before", before), ("after", after)):
        per_user = evaluate_frame(lists, cat, k=k, history=reference)
        report["users"] = len(per_user)
        report[name] = {
            "ilad": float(np.nanmean(per_user["ilad"])),
            "category_coverage": float(per_user["category_coverage"].mean()),
            "miscalibration": float(np.nanmean(per_user["miscalibration"])),
            "system_category_coverage": per_user.attrs["system"]["category_coverage"],
            "item_coverage": per_user.attrs["system"]["item_coverage"],
        }
    users = pd.Index(pd.unique(before["user_id"]))
    item_codes = pd.Index(cat.item_ids)
    report["rbo_with_input_order"] = float(
        np.nanmean(
            rank_biased_overlap(
                _lists(before, users, item_codes, k), _lists(after, users, item_codes, k)
            )
        )
    )
    return after, report


def _lists(frame: pd.DataFrame, users: pd.Index, items: pd.Index, k: int) -> np.ndarray:
    """``(U, k)`` item positions in `items` (−1 padded) of a list table, rows as `users`."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    row = users.get_indexer(frame["user_id"])
    out[row, frame["rank"].to_numpy() - 1] = items.get_indexer(frame["item_id"])
    return out


def markdown(report: dict) -> str:
    rows = [
        ("ILAD (mean distance within a list)", "ilad"),
        ("categories per list (coverage)", "category_coverage"),
        ("categories over all lists", "system_category_coverage"),
        ("items over all lists (coverage)", "item_coverage"),
        ("miscalibration (KL, lower = closer)", "miscalibration"),
    ]
    lines = [
        f"# {report['method']} at diversity {report['diversity']}, k = {report['k']}, "
        f"{report['users']} users",
        "",
        "| metric | before | after |",
        "|---|---:|---:|",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {report['before'][key]:.4f} | {report['after'][key]:.4f} |")
    lines += ["", f"Rank-biased overlap with the input order: {report['rbo_with_input_order']:.4f}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Diversify your own candidate lists.")
    parser.add_argument("candidates", type=Path)
    parser.add_argument("items", type=Path)
    parser.add_argument("--history", type=Path, default=None)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--method", default="mmr")
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("diversified"))
    args = parser.parse_args(argv)
    history = None if args.history is None else pd.read_csv(args.history)
    lists, report = diversify(
        pd.read_csv(args.candidates),
        pd.read_csv(args.items),
        k=args.k,
        method=args.method,
        diversity=args.diversity,
        history=history,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    lists.to_csv(args.out / "lists.csv", index=False)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
