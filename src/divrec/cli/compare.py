"""`divrec compare` (registered on the main app by `register(app)`).

Compares one entry of one experiment run (`A`, the baseline) with one entry of another (`B`,
or of the same file) on the users and seeds both share, metric by metric, with the
seed-aware statistics of `divrec.evaluation.stats`: each entry's mean ± sd across seeds, and
the paired difference `B − A` with its two-level bootstrap interval and the p-value of a
paired t-test over seeds.

The input is the `results.json` that `divrec experiment run` writes; this command reads only::

    {"entries": [{"name": str, "spec": {...}, "seeds": [int, ...], "users": [id, ...],
                  "per_user": {"<metric>@<k>": [[value per user] per seed]}}, ...]}

A value may be `null` (or `NaN`) for a user not scored under a seed. Seeds pair by their
value (seed 3 of `A` with seed 3 of `B`: the same split and initialisation), users by id.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from divrec.atomic import write_text
from divrec.cli._common import guarded

__all__ = ["load_run", "register"]


class _Entry:
    """One entry of a run: its seeds, user ids and `(S, U)` per-user values per metric."""

    def __init__(self, source: str, name: str, seeds: list, users: list, per_user: dict):
        self.source = source
        self.name = name
        self.seeds = seeds
        self.users = users
        self.per_user = per_user


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a results.json file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text)") from None


def _parse_entry(source: str, raw: Any, index: int) -> _Entry:
    where = f"{source}: entries[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} has no name (a non-empty string)")
    where = f"{source}: entry {name!r}"
    seeds, users, per_user = raw.get("seeds"), raw.get("users"), raw.get("per_user")
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"{where}: 'seeds' must be a non-empty list")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{where}: 'seeds' must be integers")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: 'seeds' has duplicates")
    if not isinstance(users, list) or not users:
        raise ValueError(f"{where}: 'users' must be a non-empty list")
    if not all(isinstance(u, int | str) and not isinstance(u, bool) for u in users):
        raise ValueError(f"{where}: 'users' must be integer (or string) ids")
    if len(set(users)) != len(users):
        raise ValueError(f"{where}: 'users' has duplicates")
    if not isinstance(per_user, dict) or not per_user:
        raise ValueError(f"{where}: 'per_user' must be a non-empty object of metrics")
    for metric, rows in per_user.items():
        if not isinstance(rows, list) or len(rows) != len(seeds):
            got = len(rows) if isinstance(rows, list) else type(rows).__name__
            raise ValueError(
                f"{where}: per_user[{metric!r}] must have one row per seed ({len(seeds)}), "
                f"got {got}"
            )
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(users):
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise ValueError(
                    f"{where}: per_user[{metric!r}][{i}] must have one value per user "
                    f"({len(users)}), got {got}"
                )
            if not all(
                v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in row
            ):
                raise ValueError(f"{where}: per_user[{metric!r}][{i}] has a non-number")
    return _Entry(source, name, seeds, users, per_user)


def load_run(path: Path) -> list[_Entry]:
    """The entries of one `results.json` (checked; errors are one-line `ValueError`s)."""
    payload = _load_json(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("entries"), list):
        raise ValueError(f"{path}: not a divrec experiment results file (no 'entries' list)")
    if not payload["entries"]:
        raise ValueError(f"{path}: has no entries")
    entries = [_parse_entry(str(path), raw, i) for i, raw in enumerate(payload["entries"])]
    names = [e.name for e in entries]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"{path}: two entries are named {dup!r}")
    return entries


def _pick(entries: list[_Entry], name: str | None, path: Path, option: str) -> _Entry:
    by_name = {e.name: e for e in entries}
    if name is not None:
        if name not in by_name:
            raise ValueError(f"{path}: unknown entry {name!r}; entries: {', '.join(by_name)}")
        return by_name[name]
    if len(entries) == 1:
        return entries[0]
    raise ValueError(
        f"{path} has {len(entries)} entries ({', '.join(by_name)}); pick one with {option}"
    )


def _matrix(entry: _Entry, metric: str, seed_rows: list[int], user_cols: list[int]):
    import numpy as np

    rows = entry.per_user[metric]
    return np.array(
        [[math.nan if rows[s][u] is None else rows[s][u] for u in user_cols] for s in seed_rows],
        dtype=np.float64,
    )


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _fmt(x: float, digits: int = 4) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def _write(path: Path, text: str) -> None:
    if path.exists() and path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file path")
    write_text(path, text)


def compare_entries(
    a: _Entry,
    b: _Entry,
    metrics: list[str] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict:
    """The comparison of entry `b` with baseline `a` on their shared seeds and users.

    Returns:
        A JSON-ready dict: the shared seeds and users (counts), and per metric both summaries,
        the seed-aware paired comparison and the naive request-level one for contrast.

    Raises:
        ValueError: no shared seeds, users or metrics, or an unknown `metrics` name.
    """
    from dataclasses import asdict

    from divrec.evaluation.stats import paired_seed_test, request_level_test, seed_summary

    b_seed = {s: i for i, s in enumerate(b.seeds)}
    seeds = [s for s in a.seeds if s in b_seed]
    if not seeds:
        raise ValueError(
            f"no shared seeds: {a.name!r} ran {a.seeds}, {b.name!r} ran {b.seeds} "
            "(seeds pair by value)"
        )
    b_user = {u: i for i, u in enumerate(b.users)}
    users = [u for u in a.users if u in b_user]
    if not users:
        raise ValueError(f"no shared users between {a.name!r} and {b.name!r}")
    shared = [m for m in a.per_user if m in b.per_user]
    if metrics:
        unknown = [m for m in metrics if m not in shared]
        if unknown:
            raise ValueError(
                f"metric {unknown[0]!r} is not in both entries; "
                f"shared: {', '.join(shared) or 'none'}"
            )
        shared = list(dict.fromkeys(metrics))
    if not shared:
        raise ValueError(f"no shared metrics between {a.name!r} and {b.name!r}")
    a_rows = [a.seeds.index(s) for s in seeds]
    b_rows = [b_seed[s] for s in seeds]
    a_user = {u: i for i, u in enumerate(a.users)}
    a_cols = [a_user[u] for u in users]
    b_cols = [b_user[u] for u in users]
    opts = {"confidence": confidence, "n_bootstrap": n_bootstrap, "seed": seed}
    out_metrics = {}
    for metric in shared:
        xa = _matrix(a, metric, a_rows, a_cols)
        xb = _matrix(b, metric, b_rows, b_cols)
        try:
            out_metrics[metric] = {
                "a": asdict(seed_summary(xa, **opts)),
                "b": asdict(seed_summary(xb, **opts)),
                "paired": asdict(paired_seed_test(xa, xb, **opts)),
                "request_level": asdict(request_level_test(xa, xb, **opts)),
            }
        except ValueError as err:
            raise ValueError(f"{metric}: {err}") from None
    return {
        "a": {"file": a.source, "entry": a.name, "seeds": a.seeds, "n_users": len(a.users)},
        "b": {"file": b.source, "entry": b.name, "seeds": b.seeds, "n_users": len(b.users)},
        "shared_seeds": seeds,
        "n_shared_users": len(users),
        "confidence": confidence,
        "n_bootstrap": n_bootstrap,
        "bootstrap_seed": seed,
        "metrics": out_metrics,
    }


def _print(report: dict) -> None:
    a, b = report["a"], report["b"]
    s, u = len(report["shared_seeds"]), report["n_shared_users"]
    typer.echo(f"A (baseline): {a['entry']} in {a['file']}")
    typer.echo(f"B:            {b['entry']} in {b['file']}")
    typer.echo(
        f"shared: {s} seeds of {len(a['seeds'])} (A) / {len(b['seeds'])} (B) "
        f"{report['shared_seeds']}; {u} users of {a['n_users']} (A) / {b['n_users']} (B)"
    )
    level = f"{report['confidence']:.0%}"
    header = ["metric", "A mean ± sd", "B mean ± sd", f"B − A [{level} CI]", "p", ""]
    rows = []
    for metric, res in report["metrics"].items():
        pa, pb, d = res["a"], res["b"], res["paired"]
        rows.append(
            [
                metric,
                f"{_fmt(pa['mean'])} ± {_fmt(pa['sd'])}",
                f"{_fmt(pb['mean'])} ± {_fmt(pb['sd'])}",
                f"{d['diff']:+.4f} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]",
                _fmt_p(d["p_value"]),
                "*" if d["significant"] else "",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    first = next(iter(report["metrics"].values()))["paired"]
    typer.echo(f"test: {first['method']}")
    typer.echo(
        f"*: the {level} interval of B − A excludes 0; B − A is over the (seed, user) cells "
        "scored in both, the means over each entry's own cells"
    )


def register(app: typer.Typer) -> None:
    """Adds `compare` to the main `divrec` app."""

    @app.command("compare")
    @guarded
    def compare(
        run_a: Annotated[Path, typer.Argument(help="Baseline run's results.json (A).")],
        run_b: Annotated[Path, typer.Argument(help="Other run's results.json (B; may be A).")],
        entry: Annotated[
            str | None,
            typer.Option("--entry", "-e", help="Entry of A (needed when A has several)."),
        ] = None,
        entry_b: Annotated[
            str | None,
            typer.Option(
                "--entry-b",
                help="Entry of B (default: B's entry named like A's, else B's only entry).",
            ),
        ] = None,
        metric: Annotated[
            list[str] | None,
            typer.Option("--metric", "-m", help="Metric@k to compare; repeatable (default all)."),
        ] = None,
        confidence: Annotated[
            float, typer.Option(help="Confidence level of the intervals.")
        ] = 0.95,
        bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates (>= 1).")] = 2000,
        seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
        ] = None,
    ) -> None:
        """Entry B against baseline A, per metric, with seed-aware statistics.

        Prints each entry's mean ± sd across seeds and the paired difference B − A on the
        seeds (by value) and users (by id) both runs share: a two-level bootstrap interval
        (seeds, then users) and a paired t-test over the per-seed mean differences.
        """
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"--confidence must be in (0, 1), got {confidence}")
        if bootstrap < 1:
            raise ValueError(f"--bootstrap must be >= 1, got {bootstrap}")
        if json_out is not None and json_out.exists() and json_out.is_dir():
            raise ValueError(f"{json_out}: is a directory, expected a file path")
        entries_a = load_run(run_a)
        entries_b = entries_a if run_b.resolve() == run_a.resolve() else load_run(run_b)
        a = _pick(entries_a, entry, run_a, "--entry")
        if (
            entry_b is None
            and any(e.name == a.name for e in entries_b)
            and (entries_b is not entries_a or len(entries_b) == 1)
        ):
            entry_b = a.name
        b = _pick(entries_b, entry_b, run_b, "--entry-b")
        report = compare_entries(a, b, metric, confidence, bootstrap, seed)
        _print(report)
        if json_out is not None:
            _write(json_out, json.dumps(_clean(report), indent=2, allow_nan=False) + "\n")
