"""Aggregation over seeds (mean, 95% t-interval), plots over rounds, Markdown tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "METRICS",
    "REPORT_COLUMNS",
    "SECONDARY",
    "check_out_folder",
    "column_label",
    "plot_rounds",
    "summarize",
    "write_outputs",
]

#: metrics reported per round (keys of `round_metrics`): fixed-space headlines (svd, genre)
#: first; the variant's own "graph" space is a secondary column. `rd` is the system-level
#: retrieval diversity (1 − between-user Jaccard of the retrieval sets), `rd_<space>` the
#: between-user distance of the retrieval sets, `retrieval_ilad_<space>` the per-user notion.
METRICS = (
    "ilad_svd",
    "ilad_genre",
    "ilad_graph",
    "rd",
    "rd_svd",
    "rd_genre",
    "between_svd",
    "between_genre",
    "retrieval_ilad_svd",
    "retrieval_ilad_genre",
    "retrieval_ilad_graph",
    "retrieval_gini",
    "theta_defined",
    "jaccard",
    "coverage",
    "retrieval_coverage",
    "gini",
    "new_item_share",
    "clicks",
    "session_length",
)

#: secondary columns and what their label says: the variant's own, evolving embedding space
#: and the per-user retrieval ILAD (formerly "RD"; not the system-level `rd`)
SECONDARY = {
    "ilad_graph": "own space",
    "retrieval_ilad_svd": "per-user",
    "retrieval_ilad_genre": "per-user",
    "retrieval_ilad_graph": "per-user, own space",
}
#: the report table's column order: fixed-space and system-level metrics first, then the
#: labelled `SECONDARY` columns
REPORT_COLUMNS = (
    *(m for m in METRICS if m not in SECONDARY),
    *(m for m in METRICS if m in SECONDARY),
)


def column_label(metric: str) -> str:
    """A metric's column header: `SECONDARY` columns say their space, e.g. "ilad_graph (own
    space)"; the others are the metric key."""
    return f"{metric} ({SECONDARY[metric]})" if metric in SECONDARY else metric


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _mean_ci(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    t = _T975.get(x.size - 1, 1.96)
    return float(x.mean()), float(t * x.std(ddof=1) / np.sqrt(x.size))


def summarize(runs: list[dict]) -> dict:
    """`runs`: outputs of `run_simulation` (any pipelines, any seeds) →
    `{pipeline: {metric: {"mean": [per round], "ci": [per round]}, "final": {...},
    "theta": {...}}}` with 95% t-intervals over seeds."""
    by: dict[str, list[dict]] = {}
    for run in runs:
        by.setdefault(run["pipeline"], []).append(run)
    out = {}
    for name, rs in by.items():
        n_rounds = min(len(r["rounds"]) for r in rs)
        entry: dict = {"seeds": len(rs), "rounds": n_rounds}
        final = {}
        for m in METRICS:
            vals = np.array([[r["rounds"][t][m] for t in range(n_rounds)] for r in rs])
            stats = [_mean_ci(vals[:, t]) for t in range(n_rounds)]
            entry[m] = {"mean": [s[0] for s in stats], "ci": [s[1] for s in stats]}
            final[m] = {"mean": stats[-1][0], "ci": stats[-1][1]}
        for q in ("q10", "q50", "q90", "mean", "std"):
            vals = np.array(
                [[r["rounds"][t]["theta"].get(q, np.nan) for t in range(n_rounds)] for r in rs]
            )
            entry[f"theta_{q}"] = [float(np.nanmean(c)) if np.isfinite(c).any() else None
                                   for c in vals.T]  # fmt: skip
        secs = [r["rounds"][t]["seconds"] for r in rs for t in range(n_rounds)]
        entry["seconds"] = {k: float(np.mean([s[k] for s in secs])) for k in secs[0]}
        entry["final"] = final
        out[name] = entry
    return out


def plot_rounds(summary: dict, out: Path, metrics=METRICS) -> list[Path]:
    """One PNG per metric (mean over seeds, 95% band) plus the θ_u distribution plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in metrics:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for name, e in summary.items():
            mean = np.array(e[m]["mean"], dtype=float)
            ci = np.nan_to_num(np.array(e[m]["ci"], dtype=float))
            x = np.arange(1, mean.size + 1)
            ax.plot(x, mean, label=name)
            ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
        ax.set_xlabel("round")
        ax.set_ylabel(m)
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"{m}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, e in summary.items():
        if e.get("theta_q50") and e["theta_q50"][0] is not None:
            x = np.arange(1, len(e["theta_q50"]) + 1)
            lo = np.array(e["theta_q10"], dtype=float)
            hi = np.array(e["theta_q90"], dtype=float)
            ax.plot(x, e["theta_q50"], label=f"{name} median")
            ax.fill_between(x, lo, hi, alpha=0.2, label=f"{name} 10–90%")
    ax.set_xlabel("round")
    ax.set_ylabel("θ_u")
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "theta.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def final_table(summary: dict, metrics=REPORT_COLUMNS) -> str:
    """Markdown table of the final-round means ± 95% CI; `SECONDARY` columns are labelled
    (:func:`column_label`)."""
    head = "| pipeline | " + " | ".join(column_label(m) for m in metrics) + " |"
    sep = "|---" * (len(metrics) + 1) + "|"
    rows = [head, sep]
    for name, e in summary.items():
        cells = []
        for m in metrics:
            f = e["final"][m]
            ci = "" if not np.isfinite(f["ci"]) else f" ± {f['ci']:.4f}"
            cells.append(f"{f['mean']:.4f}{ci}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


#: what `write_outputs` writes (an existing `out` may hold only these)
OUTPUT_SUFFIXES = (".md", ".json", ".png")


def check_out_folder(out: Path) -> None:
    """Fails (`ValueError`, one line) when `write_outputs` could not replace `out` whole.

    `out` may be missing or a folder of an earlier report (Markdown, JSON and PNG files only);
    its parent (or the nearest existing ancestor) must take new entries.
    """
    import os
    import tempfile

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if out.is_dir():
        other = [p.name for p in out.iterdir() if p.is_dir() or p.suffix not in OUTPUT_SUFFIXES]
        if other:
            raise ValueError(
                f"--out {out} holds other files than a simulation report ({other[0]}); "
                "give a new or a report folder"
            )
    probe = out.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ValueError(f"--out {out}: cannot write there")
    try:  # e.g. a read-only mount accepts os.access but no new files
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".divrec-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror})") from None


def write_outputs(runs: list[dict], out: Path, title: str, notes: str = "") -> dict:
    """Writes `summary.json`, `runs.json`, `report.md` and the plots into `out`, whole or not
    at all: they are written to a temporary sibling folder that then replaces `out` (an
    earlier report there goes; an interrupt leaves the old folder untouched)."""
    import os
    import shutil
    import tempfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1))
        (tmp / "runs.json").write_text(json.dumps(runs))
        plot_rounds(summary, tmp)
        md = [f"# {title}", "", notes, "", "## Final round (mean ± 95% CI over seeds)", ""]
        md.append(final_table(summary))
        md += [
            "",
            "Fixed-space (reference SVD, genre) and system-level columns first (`rd`: 1 − "
            "between-user Jaccard of the retrieval sets); the labelled columns at the end are "
            "secondary: `(own space)` is each variant's own evolving graph embedding, "
            "`(per-user)` the ILAD of each user's own retrieved candidates (formerly 'RD').",
        ]
        md += ["", "Plots: " + ", ".join(f"[{m}]({m}.png)" for m in (*METRICS, "theta")), ""]
        (tmp / "report.md").write_text("\n".join(md))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a report is an ordinary folder
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / out.name)
        tmp.rename(out)
    except BaseException:
        if old is not None and not out.exists():
            (old / out.name).rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return summary


def paired_relative(
    runs: list[dict], baseline: str, metrics=("ilad_graph", "rd_graph", "clicks"), at: int = -1
) -> dict:
    """Per-seed paired relative change (%) of each pipeline against `baseline` at round
    `at` (runs of one seed share the world), as mean ± 95% t-interval over seeds.

    Runs are paired by their position among the runs of their pipeline (seed order).
    """
    by: dict[str, list[dict]] = {}
    for run in runs:
        by.setdefault(run["pipeline"], []).append(run)
    if baseline not in by:
        raise ValueError(f"no runs of the baseline {baseline!r}")
    base = by[baseline]
    out = {}
    for name, rs in by.items():
        if len(rs) != len(base):
            continue
        entry = {}
        for m in metrics:
            rel = [
                100.0 * (r["rounds"][at][m] / b["rounds"][at][m] - 1.0)
                for r, b in zip(rs, base, strict=True)
            ]
            mean, ci = _mean_ci(np.array(rel))
            entry[m] = {"mean": mean, "ci": ci}
        out[name] = entry
    return out


def relative_table(rel: dict, metrics=("ilad_graph", "rd_graph", "clicks")) -> str:
    """Markdown table of :func:`paired_relative` (percent vs the baseline)."""
    rows = ["| pipeline | " + " | ".join(f"{m} (%)" for m in metrics) + " |"]
    rows.append("|---" * (len(metrics) + 1) + "|")
    for name, e in rel.items():
        cells = []
        for m in metrics:
            f = e[m]
            ci = "" if not np.isfinite(f["ci"]) else f" ± {f['ci']:.1f}"
            cells.append(f"{f['mean']:+.1f}{ci}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
