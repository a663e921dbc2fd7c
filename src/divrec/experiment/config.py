"""Experiment files: parsing and validation, before anything is trained.

An experiment file (TOML, or the same structure as JSON) has one `[experiment]` table and a
list of `[[entries]]`::

    [experiment]
    name = "ml100k-example"
    dataset = "ml-100k"            # a registered name or a CSV/TSV/Parquet path (or a list)
    protocol = "random"            # divrec.splitting.named.PROTOCOLS
    ks = [10]
    metrics = ["ndcg", "recall", "ilad", "novelty"]   # accuracy + diversity
    seeds = 5                      # model seeds 0..4 (or a list of seeds)
    seed = 0                       # split, validation carve, samplers
    baseline = "ials"              # an entry name
    validation = {fraction = 0.2}
    tuning = {method = "tpe", trials = 8, objective = "ndcg@10"}
    convergence = {tolerance = 0.01, tail = 0.1}

    [[entries]]
    name = "ials+dpp"
    pipeline = {retriever = "ials", reranker = {name = "dpp"}, n_candidates = 100}
    search = {"reranker.theta" = {low = 0.1, high = 0.9}, "retriever.factors" = [32, 64]}
    objective = {"ndcg@10" = 1.0, "ilad@10" = 0.5}   # optional, overrides tuning.objective

Every problem (an unknown key, model or parameter, a search space of the wrong type, a bad
objective, a baseline that is not an entry) is a `ValueError` whose one-line message names
the file and the key, e.g. `EXP.toml: unknown key 'entries[1].foo'` (entries are counted
from 0).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from divrec.data.datasets import TableSpec
from divrec.evaluation.harness import ACCURACY, DIVERSITY
from divrec.params import ParamError, coerce, signature_types, to_json_value, type_name
from divrec.pipeline.spec import PipelineSpec
from divrec.registry import resolve
from divrec.splitting.named import PROTOCOLS

__all__ = [
    "ConvergenceConfig",
    "Entry",
    "ExperimentConfig",
    "ExperimentError",
    "Objective",
    "SANITY_ROWS",
    "SearchDim",
    "TuningConfig",
    "load_experiment",
    "parse_experiment",
]

#: rows every experiment gets (unless an entry already is one): registry name → spec
SANITY_ROWS = ("random", "popularity")

_KIND = {"retriever": "model", "ranker": "ranker", "reranker": "re-ranker"}
_EXPERIMENT_KEYS = {
    "name", "dataset", "protocol", "ks", "metrics", "seeds", "seed", "baseline", "validation",
    "tuning", "convergence", "max_users", "n_bootstrap", "confidence", "sanity", "columns",
    "min_rating", "tracking", "relevance_threshold",
}  # fmt: skip
_ENTRY_KEYS = {"name", "pipeline", "search", "objective", "constraints"}
#: keys of an entry's `constraints` table (`divrec.data.constraints.Constraints`, by name)
CONSTRAINT_KEYS = {
    "exclude", "allow_categories", "deny_categories", "min_count", "max_count", "pins",
    "boosts", "group", "protected", "min_share", "best_effort",
}  # fmt: skip
_RANGE_KEYS = {"low", "high", "log", "step", "type"}


class ExperimentError(ValueError):
    """A bad experiment file; the one-line message names the file and the key."""


# --------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Objective:
    """What tuning maximizes: one `metric@k`, or a weighted sum of several.

    Attributes:
        terms: `(metric@k, weight)` pairs; the objective is `Σ weight · mean(metric@k)`.
    """

    terms: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        """`ndcg@10`, or `1·ndcg@10 + 0.5·ilad@10`."""
        if len(self.terms) == 1 and self.terms[0][1] == 1.0:
            return self.terms[0][0]
        return " + ".join(f"{w:g}·{m}" for m, w in self.terms)

    def value(self, means: Mapping[str, float]) -> float:
        """The objective of a set of metric means (keyed `metric@k`)."""
        return float(sum(w * float(means[m]) for m, w in self.terms))

    def to_json(self) -> Any:
        if len(self.terms) == 1 and self.terms[0][1] == 1.0:
            return self.terms[0][0]
        return {m: w for m, w in self.terms}


@dataclass(frozen=True)
class SearchDim:
    """One searched hyperparameter.

    Attributes:
        key: `"<role>.<param>"` (role: retriever, ranker, reranker) or `"n_candidates"`.
        kind: "categorical" (a list of values), "float" or "int" (a range).
        values: the categorical values (coerced to the parameter's type).
        low: the range's lower end.
        high: the range's upper end.
        log: sample the range on a log scale (TPE).
        step: the grid's (and TPE's) step over a range, or None.
    """

    key: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None

    @property
    def role(self) -> str | None:
        """The stage role the key names (None for `n_candidates`)."""
        return None if self.key == "n_candidates" else self.key.split(".", 1)[0]

    @property
    def param(self) -> str:
        """The parameter name."""
        return self.key.split(".", 1)[-1]

    def grid(self) -> list[Any]:
        """The points of a grid search over this dimension."""
        if self.kind == "categorical":
            return list(self.values)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        if self.kind == "int":
            return [int(self.low + i * step) for i in range(n)]
        return [float(round(self.low + i * step, 12)) for i in range(n)]

    def to_json(self) -> Any:
        if self.kind == "categorical":
            return [to_json_value(v) for v in self.values]
        out: dict[str, Any] = {"low": self.low, "high": self.high, "type": self.kind}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Entry:
    """One compared pipeline: a spec with fixed values, and optional search dimensions.

    Attributes:
        name: the entry's name (unique in the experiment).
        spec: the pipeline with its fixed values.
        search: the searched hyperparameters (empty: the spec is used as it is).
        objective: this entry's tuning objective (None: the experiment's).
        sanity: a row the runner added (random, training popularity).
        constraints: the business rules of every request of this entry, as written in the
            file (categories by name, items by external id; resolved against the data by
            the runner, `divrec.experiment.runner.entry_constraints`), or None.
    """

    name: str
    spec: PipelineSpec
    search: tuple[SearchDim, ...] = ()
    objective: Objective | None = None
    sanity: bool = False
    constraints: dict[str, Any] | None = None

    def spec_with(self, params: Mapping[str, Any]) -> PipelineSpec:
        """The spec with searched values (`{"reranker.theta": 0.3, ...}`) applied."""
        spec = self.spec
        for key, value in params.items():
            if key == "n_candidates":
                spec = PipelineSpec(
                    spec.retriever, spec.ranker, spec.reranker, int(value), spec.label
                )
                continue
            role, _, name = key.partition(".")
            stage = spec.stages()[role]
            stage = type(stage)(stage.name, {**dict(stage.params), name: value})
            spec = spec.with_stage(role, stage)
        return spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "pipeline": self.spec.to_dict()}
        if self.search:
            out["search"] = {d.key: d.to_json() for d in self.search}
        if self.objective is not None:
            out["objective"] = self.objective.to_json()
        if self.sanity:
            out["sanity"] = True
        if self.constraints is not None:
            out["constraints"] = self.constraints
        return out


@dataclass(frozen=True)
class TuningConfig:
    """How each entry is tuned on the validation split.

    Attributes:
        method: "grid" (every grid point, or a seeded sample of `trials` of them when the
            grid is larger) or "tpe" (Optuna's TPE sampler, `trials` trials).
        trials: the trial budget of every entry that has a search space.
        objective: what is maximized on validation.
        startup: TPE's random start-up trials (None: `min(10, max(2, trials // 3))`).
    """

    method: str = "tpe"
    trials: int = 10
    objective: Objective = Objective((("ndcg@10", 1.0),))
    startup: int | None = None

    @property
    def n_startup(self) -> int:
        """The TPE start-up trials in effect."""
        return self.startup if self.startup is not None else min(10, max(2, self.trials // 3))


@dataclass(frozen=True)
class ConvergenceConfig:
    """When a learned model counts as still improving at its last epoch.

    Attributes:
        tolerance: the relative gain (validation objective up, or training loss down) over
            the last `tail` share of the epochs above which an entry is flagged.
        tail: the share of the epochs the gain is measured over (at least one epoch).
    """

    tolerance: float = 0.01
    tail: float = 0.1


@dataclass(frozen=True)
class ExperimentConfig:
    """A parsed, validated experiment file.

    Attributes:
        name: the experiment's name.
        datasets: dataset names or table paths (each run as its own experiment).
        protocol: the split protocol (`divrec.splitting.named.PROTOCOLS`).
        ks: list lengths.
        accuracy: accuracy metrics (`divrec.evaluation.harness.ACCURACY`).
        diversity: diversity metrics (`divrec.evaluation.harness.DIVERSITY`).
        seeds: the model seeds of the final fits.
        seed: the experiment seed (split, validation carve, samplers, bootstrap).
        baseline: the entry every other entry is compared with.
        validation_fraction: the share of the training rows carved out as validation (random
            and temporal protocols; leave-last-one and NCF hold out each user's last row).
        tuning: the tuning settings.
        convergence: the convergence check's settings.
        entries: the compared entries, the sanity rows last.
        max_users: evaluate a seeded sample of this many users (None: all).
        n_bootstrap: bootstrap resamples of the seed-aware CIs.
        confidence: the CI level.
        relevance_threshold: test rows rated at least this are relevant (None: all).
        table: how to read a table file dataset.
        tracking: "auto" (log to MLflow when it is installed) or "off".
        source: the file it was read from (for messages).
    """

    name: str
    datasets: tuple[str, ...]
    protocol: str
    ks: tuple[int, ...]
    accuracy: tuple[str, ...]
    diversity: tuple[str, ...]
    seeds: tuple[int, ...]
    seed: int
    baseline: str
    validation_fraction: float
    tuning: TuningConfig
    convergence: ConvergenceConfig
    entries: tuple[Entry, ...]
    max_users: int | None = None
    n_bootstrap: int = 2000
    confidence: float = 0.95
    relevance_threshold: float | None = None
    table: TableSpec | None = None
    tracking: str = "auto"
    source: str = "experiment"

    def entry(self, name: str) -> Entry:
        """The entry called `name`."""
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no entry {name!r}")

    def objective(self, entry: Entry) -> Objective:
        """The tuning objective of `entry`."""
        return entry.objective or self.tuning.objective

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """Every per-user metric the runner stores, `metric@k`."""
        return tuple(f"{m}@{k}" for k in self.ks for m in self.accuracy + self.diversity)

    def to_json(self) -> dict[str, Any]:
        """The normalized config (what the fingerprint and results.json hold)."""
        return {
            "name": self.name,
            "datasets": list(self.datasets),
            "protocol": self.protocol,
            "ks": list(self.ks),
            "accuracy": list(self.accuracy),
            "diversity": list(self.diversity),
            "seeds": list(self.seeds),
            "seed": self.seed,
            "baseline": self.baseline,
            "validation": {"fraction": self.validation_fraction},
            "tuning": {
                "method": self.tuning.method,
                "trials": self.tuning.trials,
                "objective": self.tuning.objective.to_json(),
                "startup": self.tuning.n_startup,
            },
            "convergence": {
                "tolerance": self.convergence.tolerance,
                "tail": self.convergence.tail,
            },
            "max_users": self.max_users,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "relevance_threshold": self.relevance_threshold,
            "table": None
            if self.table is None
            else {
                "columns": [list(c) for c in self.table.columns],
                "min_rating": self.table.min_rating,
            },
            "entries": [e.to_json() for e in self.entries],
        }

    def fingerprint(self) -> str:
        """sha256 of the normalized config: a run's saved units belong to this config only."""
        text = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- loading
def load_experiment(path: str | Path) -> ExperimentConfig:
    """Reads and validates a `.toml` (or `.json`) experiment file.

    Raises:
        ExperimentError: the file cannot be read or parsed, or any key is bad (one line
            naming the file and the key).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExperimentError(f"{source}: {str(err).splitlines()[0]}") from None
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raw = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ExperimentError(f"{source}: {str(err).splitlines()[0]}") from None
    return parse_experiment(raw, source)


def parse_experiment(raw: Any, source: str = "experiment") -> ExperimentConfig:
    """Validates the plain dict form of an experiment file (see the module docstring).

    Args:
        raw: the parsed TOML / JSON.
        source: how to name the file in messages.

    Raises:
        ExperimentError: one line naming `source` and the offending key.
    """
    p = _Parser(source)
    top = p.table(raw, "the file")
    p.known(top, {"experiment", "entries"}, "")
    exp = p.table(top.get("experiment"), "experiment", required=True)
    p.known(exp, _EXPERIMENT_KEYS, "experiment.")

    name = p.string(exp.get("name", "experiment"), "experiment.name")
    datasets = _datasets(p, exp)
    protocol = p.string(exp.get("protocol", "random"), "experiment.protocol")
    if protocol not in PROTOCOLS:
        p.fail(f"'experiment.protocol' is {protocol!r}; known: {', '.join(PROTOCOLS)}")
    ks = tuple(p.int_list(exp.get("ks", [10]), "experiment.ks", minimum=1))
    accuracy, diversity = _metrics(p, exp)
    seeds = _seeds(p, exp.get("seeds", 5))
    seed = p.integer(exp.get("seed", 0), "experiment.seed", minimum=0)
    max_users = exp.get("max_users")
    if max_users is not None:
        max_users = p.integer(max_users, "experiment.max_users", minimum=1)
    n_bootstrap = p.integer(exp.get("n_bootstrap", 2000), "experiment.n_bootstrap", minimum=0)
    confidence = p.number(exp.get("confidence", 0.95), "experiment.confidence")
    if not 0 < confidence < 1:
        p.fail(f"'experiment.confidence' must be in (0, 1), got {confidence!r}")
    threshold = exp.get("relevance_threshold")
    if threshold is not None:
        threshold = p.number(threshold, "experiment.relevance_threshold")
    sanity = exp.get("sanity", True)
    if not isinstance(sanity, bool):
        p.fail(f"'experiment.sanity' must be true or false, got {sanity!r}")
    tracking = p.string(exp.get("tracking", "auto"), "experiment.tracking")
    if tracking not in ("auto", "off"):
        p.fail(f"'experiment.tracking' must be 'auto' or 'off', got {tracking!r}")
    table = _table_spec(p, exp)

    val = p.table(exp.get("validation", {}), "experiment.validation")
    p.known(val, {"fraction"}, "experiment.validation.")
    fraction = p.number(val.get("fraction", 0.2), "experiment.validation.fraction")
    if not 0 < fraction < 1:
        p.fail(f"'experiment.validation.fraction' must be in (0, 1), got {fraction!r}")

    metric_keys = {f"{m}@{k}" for k in ks for m in accuracy + diversity}
    tuning = _tuning(p, exp.get("tuning", {}), metric_keys, ks)
    conv = p.table(exp.get("convergence", {}), "experiment.convergence")
    p.known(conv, {"tolerance", "tail"}, "experiment.convergence.")
    tol = p.number(conv.get("tolerance", 0.01), "experiment.convergence.tolerance")
    tail = p.number(conv.get("tail", 0.1), "experiment.convergence.tail")
    if tol < 0:
        p.fail(f"'experiment.convergence.tolerance' must be >= 0, got {tol!r}")
    if not 0 < tail <= 1:
        p.fail(f"'experiment.convergence.tail' must be in (0, 1], got {tail!r}")

    raw_entries = top.get("entries")
    if raw_entries is None:
        p.fail("missing key 'entries' (one [[entries]] table per compared pipeline)")
    if not isinstance(raw_entries, list) or not raw_entries:
        p.fail("'entries' must be a non-empty list of tables ([[entries]])")
    entries = [_entry(p, e, i, metric_keys) for i, e in enumerate(raw_entries)]
    names = [e.name for e in entries]
    for i, n in enumerate(names):
        if names.index(n) != i:
            p.fail(f"'entries[{i}].name' {n!r} is used twice")
    if tuning.method == "grid":
        for i, e in enumerate(entries):
            for d in e.search:
                if d.kind == "float" and d.step is None:
                    p.fail(
                        f"'entries[{i}].search.{d.key}': a grid search needs a list of values "
                        "or a range with a step"
                    )
    if sanity:
        entries += _sanity_rows(p, entries)
    baseline = exp.get("baseline", entries[0].name)
    baseline = p.string(baseline, "experiment.baseline")
    if baseline not in {e.name for e in entries}:
        p.fail(
            f"'experiment.baseline' {baseline!r} is not an entry; entries: "
            f"{', '.join(e.name for e in entries)}"
        )
    return ExperimentConfig(
        name=name,
        datasets=datasets,
        protocol=protocol,
        ks=ks,
        accuracy=accuracy,
        diversity=diversity,
        seeds=seeds,
        seed=seed,
        baseline=baseline,
        validation_fraction=float(fraction),
        tuning=tuning,
        convergence=ConvergenceConfig(float(tol), float(tail)),
        entries=tuple(entries),
        max_users=max_users,
        n_bootstrap=n_bootstrap,
        confidence=float(confidence),
        relevance_threshold=threshold,
        table=table,
        tracking=tracking,
        source=source,
    )


# --------------------------------------------------------------------------- pieces
class _Parser:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> typing.NoReturn:
        raise ExperimentError(f"{self.source}: {message}")

    def table(self, value: Any, key: str, required: bool = False) -> dict[str, Any]:
        if value is None and required:
            self.fail(f"missing key '{key}'")
        if not isinstance(value, dict):
            self.fail(f"'{key}' must be a table, got {type(value).__name__}")
        return value

    def known(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"unknown key '{prefix}{key}' (known: {', '.join(sorted(allowed))})")

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(f"'{key}' must be a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, key: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"'{key}' must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(f"'{key}' must be >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            self.fail(f"'{key}' must be a number, got {value!r}")
        return float(value)

    def int_list(self, value: Any, key: str, minimum: int) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(f"'{key}' must be a non-empty list of integers, got {value!r}")
        out = [self.integer(v, f"{key}[{i}]", minimum) for i, v in enumerate(value)]
        if len(set(out)) != len(out):
            self.fail(f"'{key}' lists a value twice: {out}")
        return out


def _datasets(p: _Parser, exp: dict) -> tuple[str, ...]:
    if "dataset" not in exp:
        p.fail("missing key 'experiment.dataset'")
    value = exp["dataset"]
    values = value if isinstance(value, list) else [value]
    if not values:
        p.fail("'experiment.dataset' must name at least one dataset")
    out = tuple(p.string(v, "experiment.dataset") for v in values)
    if len(set(out)) != len(out):
        p.fail(f"'experiment.dataset' lists a dataset twice: {list(out)}")
    return out


def _metrics(p: _Parser, exp: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    value = exp.get("metrics", ["ndcg", "recall", "ilad", "novelty"])
    if not isinstance(value, list) or not value:
        p.fail("'experiment.metrics' must be a non-empty list of metric names")
    accuracy, diversity = [], []
    for i, m in enumerate(value):
        m = p.string(m, f"experiment.metrics[{i}]")
        if m in ACCURACY:
            accuracy.append(m)
        elif m in DIVERSITY:
            diversity.append(m)
        else:
            p.fail(f"'experiment.metrics[{i}]' is {m!r}; known: {', '.join(ACCURACY + DIVERSITY)}")
    if not accuracy:
        p.fail(f"'experiment.metrics' needs an accuracy metric ({', '.join(ACCURACY)})")
    if len(set(accuracy + diversity)) != len(accuracy + diversity):
        p.fail("'experiment.metrics' lists a metric twice")
    return tuple(accuracy), tuple(diversity)


def _seeds(p: _Parser, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            p.fail(f"'experiment.seeds' must be >= 1, got {value}")
        return tuple(range(value))
    return tuple(p.int_list(value, "experiment.seeds", minimum=0))


def _table_spec(p: _Parser, exp: dict) -> TableSpec | None:
    if "columns" not in exp and "min_rating" not in exp:
        return None
    columns = exp.get("columns")
    if columns is not None:
        columns = p.string(columns, "experiment.columns")
    min_rating = exp.get("min_rating")
    if min_rating is not None:
        min_rating = p.number(min_rating, "experiment.min_rating")
    try:
        return TableSpec.parse(columns, min_rating)
    except ValueError as err:
        p.fail(f"'experiment.columns': {str(err).splitlines()[0]}")


def _objective(p: _Parser, value: Any, key: str, metric_keys: set[str]) -> Objective:
    if isinstance(value, str):
        terms = [(value, 1.0)]
    elif isinstance(value, dict) and value:
        terms = [(m, p.number(w, f"{key}.{m}")) for m, w in value.items()]
    else:
        p.fail(f"'{key}' must be 'metric@k' or a table {{'metric@k' = weight}}, got {value!r}")
    for m, _ in terms:
        if m not in metric_keys:
            p.fail(f"'{key}' names {m!r}, which is not measured; measured: {sorted(metric_keys)}")
    return Objective(tuple(terms))


def _tuning(p: _Parser, raw: Any, metric_keys: set[str], ks: tuple[int, ...]) -> TuningConfig:
    t = p.table(raw, "experiment.tuning")
    p.known(t, {"method", "trials", "objective", "startup"}, "experiment.tuning.")
    method = p.string(t.get("method", "tpe"), "experiment.tuning.method")
    if method not in ("grid", "tpe"):
        p.fail(f"'experiment.tuning.method' must be 'grid' or 'tpe', got {method!r}")
    trials = p.integer(t.get("trials", 10), "experiment.tuning.trials", minimum=1)
    startup = t.get("startup")
    if startup is not None:
        startup = p.integer(startup, "experiment.tuning.startup", minimum=1)
    default = f"ndcg@{ks[0]}" if f"ndcg@{ks[0]}" in metric_keys else sorted(metric_keys)[0]
    objective = _objective(
        p, t.get("objective", default), "experiment.tuning.objective", metric_keys
    )
    if method == "tpe":
        try:
            import optuna  # noqa: F401
        except ImportError:
            p.fail(
                "'experiment.tuning.method' = 'tpe' needs optuna (pip install 'divrec[tune]'); "
                "'grid' needs nothing"
            )
    return TuningConfig(method, trials, objective, startup)


def _entry(p: _Parser, raw: Any, i: int, metric_keys: set[str]) -> Entry:
    where = f"entries[{i}]"
    e = p.table(raw, where)
    p.known(e, _ENTRY_KEYS, f"{where}.")
    if "name" not in e:
        p.fail(f"missing key '{where}.name'")
    name = p.string(e["name"], f"{where}.name")
    if "pipeline" not in e:
        p.fail(f"missing key '{where}.pipeline'")
    try:
        spec = PipelineSpec.from_dict(e["pipeline"], f"{where}.pipeline")
    except ParamError as err:
        p.fail(f"'{where}.pipeline': {str(err).splitlines()[0]}")
    for role, stage in spec.stages().items():
        try:  # coerces and range-checks every fixed value (builds nothing heavy)
            stage.build(role, 0, option=f"'{where}.pipeline.{role}.params'")
        except ParamError as err:
            p.fail(str(err).splitlines()[0])
    search = p.table(e.get("search", {}), f"{where}.search")
    dims = tuple(_dim(p, spec, k, v, f"{where}.search") for k, v in search.items())
    objective = None
    if "objective" in e:
        objective = _objective(p, e["objective"], f"{where}.objective", metric_keys)
    constraints = None
    if "constraints" in e:
        constraints = _constraints(p, e["constraints"], f"{where}.constraints")
    return Entry(name, spec, dims, objective, constraints=constraints)


def _constraints(p: _Parser, raw: Any, where: str) -> dict[str, Any]:
    """An entry's `constraints` table, checked for keys and types (names and item ids are
    resolved against the data by the runner)."""
    t = p.table(raw, where)
    p.known(t, CONSTRAINT_KEYS, f"{where}.")
    out: dict[str, Any] = {}
    for key in ("allow_categories", "deny_categories"):
        if key in t:
            vals = t[key]
            if not isinstance(vals, list):
                p.fail(f"'{where}.{key}' must be a list of category names, got {vals!r}")
            out[key] = [p.string(v, f"{where}.{key}[{i}]") for i, v in enumerate(vals)]
    if "exclude" in t:
        if not isinstance(t["exclude"], list):
            p.fail(f"'{where}.exclude' must be a list of item ids, got {t['exclude']!r}")
        out["exclude"] = list(t["exclude"])
    for key in ("min_count", "max_count"):
        if key in t:
            table = p.table(t[key], f"{where}.{key}")
            out[key] = {c: p.integer(v, f"{where}.{key}.{c}", 0) for c, v in table.items()}
    for c, lo in out.get("min_count", {}).items():
        hi = out.get("max_count", {}).get(c)
        if hi is not None and lo > hi:
            p.fail(f"'{where}.min_count.{c}' = {lo} exceeds '{where}.max_count.{c}' = {hi}")
    if "pins" in t:
        table = p.table(t["pins"], f"{where}.pins")
        out["pins"] = {i: p.integer(v, f"{where}.pins.{i}", 0) for i, v in table.items()}
        if len(set(out["pins"].values())) != len(out["pins"]):
            p.fail(f"'{where}.pins' pins one position twice")
    if "boosts" in t:
        table = p.table(t["boosts"], f"{where}.boosts")
        out["boosts"] = {}
        for i, v in table.items():
            b = p.number(v, f"{where}.boosts.{i}")
            if not math.isfinite(b):
                p.fail(f"'{where}.boosts.{i}' must be finite, got {v!r}")
            out["boosts"][i] = b
    if "group" in t or "protected" in t or "min_share" in t:
        for key in ("group", "protected", "min_share"):
            if key not in t:
                p.fail(f"missing key '{where}.{key}' (group, protected and min_share go together)")
        group = p.string(t["group"], f"{where}.group")
        if not (group in ("popularity", "category") or group.startswith(("category=", "feature:"))):
            p.fail(
                f"'{where}.group' must be 'popularity', 'category', 'category=<name>' or "
                f"'feature:<j>', got {group!r}"
            )
        share = p.number(t["min_share"], f"{where}.min_share")
        if not 0.0 < share <= 1.0:
            p.fail(f"'{where}.min_share' must be in (0, 1], got {share!r}")
        out.update(
            group=group, protected=p.string(t["protected"], f"{where}.protected"), min_share=share
        )
    if "best_effort" in t:
        if not isinstance(t["best_effort"], bool):
            p.fail(f"'{where}.best_effort' must be true or false, got {t['best_effort']!r}")
        out["best_effort"] = t["best_effort"]
    return out


def _stage_type(p: _Parser, spec: PipelineSpec, key: str, where: str) -> tuple[Any, str | None]:
    """The declared type of the searched parameter, and its stage role."""
    if key == "n_candidates":
        return int, None
    role, dot, param = key.partition(".")
    if not dot or role not in _KIND or not param:
        p.fail(
            f"'{where}' key {key!r} must be '<stage>.<parameter>' (stage: retriever, ranker, "
            "reranker) or 'n_candidates'"
        )
    stage = spec.stages().get(role)
    if stage is None:
        p.fail(f"'{where}.{key}' names the {role}, and the pipeline has none")
    cls = resolve(_KIND[role], stage.name)
    known = signature_types(cls)
    if param not in known:
        p.fail(f"unknown parameter '{where}.{key}': {role} {stage.name!r} takes {sorted(known)}")
    return known[param][0], role


def _numeric(tp: Any) -> str | None:
    """ "int", "float" or None for a declared type (Optional stripped)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        kinds = {_numeric(a) for a in args}
        if "float" in kinds:
            return "float"
        return "int" if "int" in kinds else None
    if tp is float:
        return "float"
    if tp is int:
        return "int"
    return None


def _check_value(p: _Parser, spec: PipelineSpec, key: str, value: Any, where: str) -> Any:
    """Builds the stage with `value` (type and range checks of its config)."""
    try:
        probe = Entry("probe", spec).spec_with({key: value})
        probe.build(0)
    except ParamError as err:
        p.fail(f"'{where}.{key}' value {value!r}: {str(err).splitlines()[0]}")
    return value


def _dim(p: _Parser, spec: PipelineSpec, key: str, raw: Any, where: str) -> SearchDim:
    tp, _ = _stage_type(p, spec, key, where)
    full = f"{where}.{key}"
    if isinstance(raw, list):
        if not raw:
            p.fail(f"'{full}' is an empty list of values")
        values = []
        for j, v in enumerate(raw):
            if isinstance(v, dict | list):
                p.fail(f"'{full}[{j}]' must be a plain value, got {type(v).__name__}")
            try:
                c = coerce(v, tp)
            except (ValueError, TypeError) as err:
                p.fail(f"'{full}[{j}]' = {v!r}: expected {type_name(tp)} ({err})")
            values.append(to_json_value(c))
        for v in values:
            _check_value(p, spec, key, v, where)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            p.fail(f"'{full}' lists a value twice")
        return SearchDim(key, "categorical", tuple(values))
    if not isinstance(raw, dict):
        p.fail(
            f"'{full}' must be a list of values or a table {{low, high, log, step, type}}, "
            f"got {type(raw).__name__}"
        )
    p.known(raw, _RANGE_KEYS, f"{full}.")
    declared = _numeric(tp)
    if declared is None:
        p.fail(f"'{full}' is a range, and the parameter is {type_name(tp)}: give a list of values")
    kind = raw.get("type", declared)
    if kind not in ("int", "float"):
        p.fail(f"'{full}.type' must be 'int' or 'float', got {kind!r}")
    if kind == "float" and declared == "int":
        p.fail(f"'{full}.type' is 'float', and the parameter is an integer")
    for end in ("low", "high"):
        if end not in raw:
            p.fail(f"missing key '{full}.{end}'")
        v = raw[end]
        if kind == "int":
            p.integer(v, f"{full}.{end}")
        else:
            p.number(v, f"{full}.{end}")
    low, high = raw["low"], raw["high"]
    if kind == "float":
        low, high = float(low), float(high)
    if not low < high:
        p.fail(f"'{full}': low must be < high, got low={low!r}, high={high!r}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        p.fail(f"'{full}.log' must be true or false, got {log!r}")
    if log and low <= 0:
        p.fail(f"'{full}': a log range needs low > 0, got {low!r}")
    step = raw.get("step")
    if step is not None:
        step = (
            p.integer(step, f"{full}.step", 1) if kind == "int" else p.number(step, f"{full}.step")
        )
        if step <= 0:
            p.fail(f"'{full}.step' must be > 0, got {step!r}")
        if log:
            p.fail(f"'{full}': give either log or step, not both")
    for v in (low, high):
        _check_value(p, spec, key, v, where)
    return SearchDim(key, kind, (), low, high, log, step)


def _sanity_rows(p: _Parser, entries: list[Entry]) -> list[Entry]:
    """Random and training-popularity rows, unless an entry already is one."""
    out = []
    for name in SANITY_ROWS:
        bare = [
            e
            for e in entries
            if e.spec.retriever.name == name and e.spec.ranker is None and e.spec.reranker is None
        ]
        if bare:
            continue
        if any(e.name == name for e in entries):
            p.fail(f"entry name {name!r} is reserved for the {name} sanity row")
        out.append(Entry(name, PipelineSpec.from_dict({"retriever": name}), sanity=True))
    return out


def entry_grid(entry: Entry) -> list[dict[str, Any]]:
    """Every point of `entry`'s grid (`{key: value}` dicts, the first dimension slowest)."""
    points: list[dict[str, Any]] = [{}]
    for dim in entry.search:
        points = [{**pt, dim.key: v} for pt in points for v in dim.grid()]
    return points
