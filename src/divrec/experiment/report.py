"""An experiment's outputs: results.json, the Markdown report (generated from the JSON) and
the plots (accuracy–diversity Pareto front with CIs; validation curves).

`render_report(results)` reads nothing but the results dictionary, so
`render_report(json.loads(Path("results.json").read_text()))` gives the committed
`report.md` byte for byte.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from divrec.atomic import publish

__all__ = [
    "dumps_results",
    "pareto_front",
    "plot_curves",
    "plot_pareto",
    "render_report",
    "write_outputs",
]

OUTPUTS = ("results.json", "report.md", "pareto.png", "validation_curves.png")


# --------------------------------------------------------------------------- JSON
def _clean(obj: Any) -> Any:
    """JSON values: non-finite floats become null, tuples lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and type(obj).__module__ == "numpy":
        return _clean(obj.item())
    return obj


def dumps_results(results: dict) -> str:
    """The results as JSON text: nested structure indented, lists of numbers on one line
    (floats written exactly, `repr`), non-finite numbers as null."""

    def dump(obj: Any, depth: int) -> str:
        pad, inner = "  " * depth, "  " * (depth + 1)
        if isinstance(obj, dict):
            if not obj:
                return "{}"
            items = [f"{inner}{json.dumps(k)}: {dump(v, depth + 1)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(obj, list):
            if all(not isinstance(v, dict | list) for v in obj):
                return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            items = [f"{inner}{dump(v, depth + 1)}" for v in obj]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(obj, ensure_ascii=False)

    return dump(_clean(results), 0) + "\n"


def write_outputs(results: dict, folder: str | Path) -> None:
    """Writes results.json, report.md and the two plots into `folder`.

    All four are written to a temporary folder first and moved in only when complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = dumps_results(results)
    clean = json.loads(text)  # the report is generated from exactly what the JSON holds
    with tempfile.TemporaryDirectory(dir=folder, prefix=".outputs-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "results.json").write_text(text, encoding="utf-8")
        (tmp_path / "report.md").write_text(render_report(clean), encoding="utf-8")
        plot_pareto(clean, tmp_path / "pareto.png")
        plot_curves(clean, tmp_path / "validation_curves.png")
        publish(tmp_path, folder, OUTPUTS)


# --------------------------------------------------------------------------- helpers
def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _signed(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}"


def _p(p: Any) -> str:
    if p is None:
        return "p = –"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _params(params: dict) -> str:
    if not params:
        return "fixed config"
    return ", ".join(f"{k}={_value(v)}" for k, v in params.items())


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _label(e: dict) -> str:
    tags = []
    if e.get("baseline"):
        tags.append("baseline")
    if e.get("sanity"):
        tags.append("sanity")
    return e["name"] + (f" ({', '.join(tags)})" if tags else "")


def plot_axes(results: dict) -> tuple[str, str | None]:
    """(accuracy metric, diversity metric) of the Pareto plot: the experiment objective's
    first accuracy term (else the first accuracy metric) at the first K, and the first
    diversity metric at that K (None without diversity metrics)."""
    exp = results["experiment"]
    metrics = results["metrics"]
    k = exp["ks"][0]
    obj = exp["tuning"]["objective"]
    first = obj if isinstance(obj, str) else next(iter(obj))
    acc = first if first.split("@")[0] in exp["accuracy"] else f"{exp['accuracy'][0]}@{k}"
    k = int(acc.split("@")[1])
    div = next((f"{d}@{k}" for d in exp["diversity"] if f"{d}@{k}" in metrics), None)
    return acc, div


#: metrics where lower is better (Steck's miscalibration, the lists' mean popularity)
LOWER_IS_BETTER = ("miscalibration", "arp")


def _sign(metric: str) -> float:
    """-1 for a lower-is-better `metric@k`, else 1."""
    return -1.0 if metric.split("@")[0] in LOWER_IS_BETTER else 1.0


def pareto_front(results: dict, acc: str, div: str) -> list[str]:
    """Names of the entries (sanity rows left out) that no other entry beats on both `acc`
    and `div` (means; a lower-is-better `div`, e.g. miscalibration, counts negated)."""
    pts = {}
    for e in results["entries"]:
        if e.get("sanity"):
            continue
        a, d = e["summary"].get(acc, {}).get("mean"), e["summary"].get(div, {}).get("mean")
        if a is not None and d is not None:
            pts[e["name"]] = (a, _sign(div) * d)
    return [
        n
        for n, (a, d) in pts.items()
        if not any(a2 >= a and d2 >= d and (a2, d2) != (a, d) for a2, d2 in pts.values())
    ]


# --------------------------------------------------------------------------- report
def render_report(results: dict) -> str:
    """The Markdown report, every number read from `results` (the results.json content)."""
    exp = results["experiment"]
    data = results["dataset"]
    split, valid = data["split"], data["validation"]
    stats = results["statistics"]
    metrics = results["metrics"]
    entries = results["entries"]
    baseline = results["baseline"]
    seeds = exp["seeds"]
    tuning = exp["tuning"]
    objective = tuning["objective"]
    obj_label = objective if isinstance(objective, str) else json.dumps(objective)
    conf = f"{stats['confidence']:.0%}"
    lines = [
        f"# Experiment: {exp['name']}",
        "",
        f"Dataset **{data['name']}** (fingerprint `{data['fingerprint'][:16]}`), protocol "
        f"**{exp['protocol']}** ({split['protocol']}): {split['train']:,} training and "
        f"{split['test']:,} test interactions, {split['users']:,} users, {split['items']:,} "
        "items.",
        "",
        f"Validation is carved from the training rows only ({valid['protocol']}): "
        f"{valid['train']:,} rows to fit on, {valid['test']:,} to validate on. Every entry "
        f"is tuned there ({tuning['method']}, a budget of {tuning['trials']} trials per entry "
        f"with a search space; TPE start-up trials: {tuning['startup']}; objective "
        f"`{obj_label}` unless the entry names its own); the test split is used once, by the "
        f"final fits of the chosen configs with {len(seeds)} seeds ({', '.join(map(str, seeds))}).",
        "",
        f"Summaries: mean ± sd over seeds of the per-seed means, and a {conf} CI: "
        f"{stats['summary']}. Comparisons with the baseline **{baseline}**: {stats['paired']}.",
        "",
        "## Results",
        "",
        "| entry | chosen hyperparameters | trials | objective | validation | test (mean over "
        "seeds) | convergence |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        t = e["tuning"]
        trials = "fixed" if t["method"] == "fixed" else f"{t['trials_run']}/{t['budget']}"
        lines.append(
            f"| {_label(e)} | {_params(e['chosen_params'])} | {trials} | {e['objective']} | "
            f"{_f(t['validation_objective'])} | {_f(e['test_objective'])} | "
            f"{e['convergence']['status']} |"
        )
    lines += [
        "",
        "*validation*: the objective of the chosen trial on the validation split (the best of "
        "the trials, so optimistic by construction when there were several); *test*: the "
        "same objective on the test split, mean over the seeds. The two columns come from "
        "different held-out sets (validation models learn from fewer rows, and users hold "
        "out fewer validation than test rows), so compare entries within a column; the gap "
        "between the columns is not the selection optimism.",
        "",
        f"## Metrics on the test split (mean ± sd over seeds [{conf} CI])",
        "",
        "| entry | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for e in entries:
        cells = []
        for m in metrics:
            s = e["summary"][m]
            cells.append(f"{_f(s['mean'])} ± {_f(s['sd'])} [{_f(s['ci_low'])}, {_f(s['ci_high'])}]")
        lines.append(f"| {_label(e)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Paired comparison with the baseline {baseline}",
        "",
        f"Difference entry − {baseline} (mean over seeds of the per-seed mean difference over "
        f"the same users) [{conf} CI], p-value. Test: {stats['paired']}. "
        "**Bold**: the interval excludes 0.",
        "",
        "| entry | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for e in entries:
        if e["name"] == baseline:
            continue
        cells = []
        for m in metrics:
            c = e["vs_baseline"][m]
            text = f"{_signed(c['diff'])} [{_signed(c['ci_low'])}, {_signed(c['ci_high'])}]"
            text = f"**{text}**" if c["significant"] else text
            cells.append(f"{text}, {_p(c['p_value'])}")
        lines.append(f"| {_label(e)} | " + " | ".join(cells) + " |")
    lines += ["", "## Sanity rows", ""] + _sanity_lines(results) + [""]
    acc, div = plot_axes(results)
    if div is not None:
        front = pareto_front(results, acc, div)
        lines += [
            f"## Accuracy–diversity ({acc} against {div})",
            "",
            "![Pareto front](pareto.png)",
            "",
            f"Pareto front (means, sanity rows left out): {', '.join(front)}. Error bars: the "
            f"seed-aware {conf} CIs.",
            "",
        ]
    lines += _seed_table(results) + [""] + _convergence_lines(results) + [""]
    lines += _trial_lines(results) + _setup_lines(results)
    return "\n".join(lines).rstrip() + "\n"


def _sanity_lines(results: dict) -> list[str]:
    exp = results["experiment"]
    entries = {e["name"]: e for e in results["entries"]}
    sanity = [e for e in results["entries"] if e.get("sanity")]
    pop = entries.get("popularity")
    if pop is None:
        pop = next(
            (
                e
                for e in results["entries"]
                if e["spec"]["retriever"]["name"] == "popularity"
                and "reranker" not in e["spec"]
                and "ranker" not in e["spec"]
            ),
            None,
        )
    out = [
        "Random and training-popularity rows run under the same protocol"
        + (
            f" ({', '.join(e['name'] for e in sanity)} added by the runner)."
            if sanity
            else " (both are entries of the file)."
        ),
        "",
    ]
    if pop is None:
        return out + ["No popularity row (disabled with `sanity = false`)."]
    acc_metrics = [m for m in results["metrics"] if m.split("@")[0] in exp["accuracy"]]
    beaten = []
    for e in results["entries"]:
        if e is pop or e.get("sanity"):
            continue
        lost = [m for m in acc_metrics if pop["summary"][m]["mean"] >= e["summary"][m]["mean"]]
        if lost:
            beaten.append(f"{e['name']} ({', '.join(lost)})")
    if beaten:
        out.append(
            "**Popularity matches or beats** "
            + "; ".join(beaten)
            + " on mean accuracy: under this protocol those entries learn nothing popularity "
            "does not."
        )
    else:
        out.append("Every entry beats training popularity on every accuracy metric (means).")
    rnd = entries.get("random")
    if rnd is not None:
        worse = [
            e["name"]
            for e in results["entries"]
            if e is not rnd
            and not e.get("sanity")
            and any(rnd["summary"][m]["mean"] >= e["summary"][m]["mean"] for m in acc_metrics)
        ]
        out += [
            "",
            (
                f"**Random matches or beats** {', '.join(worse)} on some accuracy metric."
                if worse
                else "Every entry beats random on every accuracy metric (means)."
            ),
        ]
    return out


def _seed_table(results: dict) -> list[str]:
    seeds = results["experiment"]["seeds"]
    out = [
        "## Per-seed values (test split, mean over users)",
        "",
        "| entry | metric | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for e in results["entries"]:
        for m in results["metrics"]:
            per_seed = e["summary"][m]["per_seed"]
            out.append(f"| {e['name']} | {m} | " + " | ".join(_f(v) for v in per_seed) + " |")
    return out


def _convergence_lines(results: dict) -> list[str]:
    conv = results["experiment"]["convergence"]
    out = [
        "## Convergence",
        "",
        "What was measured, per model: a stage with an integer `iterations` (iALS, BPR) is "
        "refitted on the validation-train rows with the chosen config at a schedule of "
        "iteration counts, and its validation objective recorded at each; a stage that "
        "records a per-epoch training loss (the torch models) is checked on that loss in "
        "each final fit; other stages (random, popularity, item-kNN, closed-form models and "
        "re-rankers) are not iterative. A stage is flagged *still improving* when the measure "
        f"gained more than {conv['tolerance']:.1%} (relative) over the last "
        f"{conv['tail']:.0%} of its epochs (at least one epoch).",
        "",
        "![validation curves](validation_curves.png)",
        "",
        "| entry | stage | measure | epochs | values | best at | relative gain over the tail "
        "| flag |",
        "|---|---|---|---|---|---|---|---|",
    ]
    any_check = False
    for e in results["entries"]:
        for c in e["convergence"]["checks"]:
            any_check = True
            if "per_seed" in c:
                gains = [s["relative_gain"] for s in c["per_seed"]]
                epochs = c["per_seed"][0]["epochs"][-1] if c["per_seed"] else 0
                out.append(
                    f"| {e['name']} | {c['stage']} | {c['measure']} | {epochs} | per seed | – | "
                    + ", ".join(_signed(g, 4) for g in gains)
                    + f" | {'still improving' if c['still_improving'] else 'converged'} |"
                )
            else:
                values = ", ".join(
                    f"{ep}: {_f(v)}" for ep, v in zip(c["epochs"], c["values"], strict=True)
                )
                scored = [(v, ep) for ep, v in zip(c["epochs"], c["values"], strict=True) if v]
                best = f"epoch {max(scored)[1]}" if scored else "–"
                out.append(
                    f"| {e['name']} | {c['stage']} ({c['model']}) | {c['measure']} | "
                    f"{c['epochs'][-1]} | {values} | {best} | {_signed(c['relative_gain'])} | "
                    f"{'still improving' if c['still_improving'] else 'converged'} |"
                )
    if not any_check:
        out.append("| – | – | no iterative stage | – | – | – | – | – |")
    return out


def _trial_lines(results: dict) -> list[str]:
    out = ["## Tuning trials (validation split)", ""]
    for e in results["entries"]:
        t = e["tuning"]
        if t["method"] == "fixed":
            continue
        out += [
            f"**{e['name']}** ({t['method']}, {t['trials_run']} of {t['budget']} trials, "
            f"objective {e['objective']}; chosen: trial {t['best_trial']})",
            "",
            "| trial | hyperparameters | objective |",
            "|---|---|---|",
        ]
        for tr in t["trials"]:
            mark = " ◀" if tr["number"] == t["best_trial"] else ""
            rep = f" (repeat of {tr['repeat_of']})" if "repeat_of" in tr else ""
            out.append(
                f"| {tr['number']} | {_params(tr['params'])}{rep} | {_f(tr['value'])}{mark} |"
            )
        out.append("")
    if len(out) == 2:
        out += ["No entry has a search space.", ""]
    return out


def _setup_lines(results: dict) -> list[str]:
    env = results["environment"]
    timing = results.get("timing", {})
    pk = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    out = [
        "## Setup",
        "",
        f"Python {env['python']} on {env['platform']}; {pk}.",
        "",
    ]
    if timing:
        out.append(
            f"Compute time over all units: {timing.get('compute_wall_seconds', 0):.1f} s wall, "
            f"{timing.get('compute_cpu_seconds', 0):.1f} s CPU."
        )
        run = results.get("run")
        if run:
            out[-1] += (
                f" The invocation that wrote these files: {run['wall_seconds']:.1f} s wall, "
                f"{run['units_computed']} units computed, {run['units_resumed']} resumed from an "
                "earlier invocation."
            )
        out.append("")
    out.append(
        "Every row's `spec` in results.json rebuilds it: "
        "`PipelineSpec.from_dict(entry['spec']).build(seed)`; `per_user` holds each seed's "
        "value for every evaluated user (`users`, internal ids)."
    )
    return out


# --------------------------------------------------------------------------- plots
def plot_pareto(results: dict, path: Path) -> None:
    """Accuracy against diversity, one point per entry with the seed-aware CIs on both axes;
    the Pareto front as a dashed line; sanity rows grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc, div = plot_axes(results)
    fig, ax = plt.subplots(figsize=(8, 6))
    if div is None:
        ax.text(0.5, 0.5, "no diversity metric measured", ha="center", va="center")
        ax.set_axis_off()
    else:
        front = set(pareto_front(results, acc, div))
        cmap = plt.get_cmap("tab10")
        pts = []
        for i, e in enumerate(results["entries"]):
            a, d = e["summary"][acc], e["summary"][div]
            if a["mean"] is None or d["mean"] is None:
                continue
            color = "0.55" if e.get("sanity") else cmap(i % 10)
            xerr = _err(d)
            yerr = _err(a)
            ax.errorbar(d["mean"], a["mean"], xerr=xerr, yerr=yerr, fmt="o", color=color,
                        capsize=3, ms=7, mec="black" if e["name"] in front else color,
                        label=_label(e))  # fmt: skip
            ax.annotate(e["name"], (d["mean"], a["mean"]), textcoords="offset points",
                        xytext=(5, 5), fontsize=8, color="0.3")  # fmt: skip
            if e["name"] in front:
                pts.append((d["mean"], a["mean"]))
        if pts:
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(xs, ys, "k--", lw=0.8, alpha=0.6)
        better = " (lower is better)" if _sign(div) < 0 else ""
        ax.set_xlabel(f"{div}{better} (test, mean over seeds)")
        ax.set_ylabel(f"{acc} (test, mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(
            f"{results['experiment']['name']}: Pareto front (dashed, black edge); "
            f"{results['statistics']['confidence']:.0%} CIs",
            fontsize=10,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _err(s: dict):
    if s["ci_low"] is None or s["ci_high"] is None:
        return None
    return [[max(0.0, s["mean"] - s["ci_low"])], [max(0.0, s["ci_high"] - s["mean"])]]


def plot_curves(results: dict, path: Path) -> None:
    """Left: validation objective per epoch (iteration-count refits) and training loss per
    epoch (normalized to its first epoch); right: each entry's tuning trials on validation
    with the running best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    cmap = plt.get_cmap("tab10")
    drawn = False
    loss_ax = None
    for i, e in enumerate(results["entries"]):
        for c in e["convergence"]["checks"]:
            drawn = True
            flag = " (still improving)" if c["still_improving"] else ""
            if "per_seed" in c:
                loss_ax = loss_ax or left.twinx()
                for s in c["per_seed"][:1]:
                    v = [x for x in s["values"] if x is not None]
                    if v:
                        label = f"{e['name']} {c['stage']} train loss{flag}"
                        xs, ys = s["epochs"][: len(v)], [x / v[0] for x in v]
                        loss_ax.plot(xs, ys, "--", color=cmap(i % 10), label=label)
            else:
                left.plot(c["epochs"], c["values"], "o-", color=cmap(i % 10),
                          label=f"{e['name']}: {c['measure']}{flag}")  # fmt: skip
    if not drawn:
        left.text(0.5, 0.5, "no iterative stage", ha="center", va="center")
    left.set_xlabel("epochs / iterations")
    left.set_ylabel("validation objective")
    left.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    if loss_ax is not None:
        loss_ax.set_ylabel("training loss / first epoch")
        h2, l2 = loss_ax.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        left.legend(handles, labels, fontsize=7, frameon=False)
    left.set_title("convergence (chosen configs)", fontsize=10)
    tuned = False
    for i, e in enumerate(results["entries"]):
        t = e["tuning"]
        if t["method"] == "fixed":
            continue
        values = [tr["value"] for tr in t["trials"]]
        xs = [tr["number"] for tr in t["trials"]]
        best, run = [], -math.inf
        for v in values:
            run = max(run, v if v is not None else -math.inf)
            best.append(run if math.isfinite(run) else None)
        right.plot(xs, values, "o", color=cmap(i % 10), alpha=0.6)
        right.plot(xs, best, "-", color=cmap(i % 10), label=f"{e['name']} ({e['objective']})")
        tuned = True
    if not tuned:
        right.text(0.5, 0.5, "no search space", ha="center", va="center")
    else:
        right.legend(fontsize=7, frameon=False)
    right.set_xlabel("trial")
    right.set_ylabel("validation objective")
    right.grid(alpha=0.3)
    right.set_title("tuning trials (dots) and running best (line)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
