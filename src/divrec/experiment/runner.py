"""The experiment runner: tune on validation, fit N seeds, test once, compare, report.

For each dataset of an `ExperimentConfig`:

1. **Splits, before any training.** The test split is `make_split(dataset, protocol,
   seed=experiment seed)`. The validation split is carved from the training part only, by
   the same protocol applied to `split.train` ("random": a random `validation.fraction` of
   its rows; "temporal": its latest `validation.fraction`; "leave-last-one": each user's
   latest training row; "ncf": the same plus sampled negatives). All parts share one
   user/item universe. An empty dataset or split is an error naming the file and the key.
2. **Tuning** (units `tune/<entry>/<trial>`): each entry with a search space gets the same
   trial budget: a grid (every point, or a seeded sample of `trials` points when the grid is
   larger) or Optuna's TPE (`trials` trials). A trial fits the pipeline on the
   validation-train part (model seed: the first final seed) and evaluates it on the
   validation rows; the objective (a `metric@k` or a weighted sum) picks the best trial.
   An entry without a search space has one trial, its fixed config, which gives its
   validation estimate. The test split is not touched.
3. **Convergence** (unit `curve/<entry>`): a stage with an integer `iterations` (iALS, BPR)
   is refitted on validation-train with the chosen config at a schedule of iteration counts
   and its validation objective recorded per count (a fit with `t` iterations is the state
   after `t` sweeps of the same seeded fit); a stage that records `train_loss_` (the torch
   models) is checked on its per-epoch training loss from the final fits. An entry is
   flagged when the measure still improved by more than `convergence.tolerance` (relative)
   over the last `convergence.tail` share of its epochs.
4. **Final fits** (units `final/<entry>/<seed>`): the chosen config is fitted on the whole
   training split with each of the N seeds and evaluated once on the test split; every
   user's value of every metric is stored.
5. **Statistics**: per entry and metric the seed-aware summary (mean ± sd over seeds and a
   two-level bootstrap CI over seeds and users, `divrec.evaluation.stats.seed_summary`), and
   the seed-aware paired test of every entry against the baseline (`paired_seed_test`).
6. **Outputs**: `results.json`, `report.md` (tables generated from the JSON by
   `divrec.experiment.report.render_report`), `pareto.png` and `validation_curves.png`.

**Resuming.** Each finished unit is written atomically (temporary file + rename) under
`OUT/.state/units/`; a rerun of the same config on the same data skips them. Every random
choice is seeded from (experiment seed, entry, unit) and the TPE sampler of trial `t` is a
fresh sampler seeded for `t` that sees trials `0..t-1`, so an interrupted and resumed run
writes the same results as an uninterrupted one (the timing fields aside).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from divrec.atomic import write_text
from divrec.data.interactions import DataError, Interactions
from divrec.evaluation.harness import EvalConfig, evaluate
from divrec.evaluation.stats import paired_seed_test, seed_summary
from divrec.experiment.config import Entry, ExperimentConfig, ExperimentError, entry_grid
from divrec.metrics.reference import reference_item_vectors
from divrec.params import to_json_value
from divrec.pipeline.spec import PipelineSpec
from divrec.splitting.named import EVAL_PROTOCOL, make_split
from divrec.splitting.protocols import leave_last_one, ncf_split, random_holdout, temporal_split
from divrec.splitting.split import Split

__all__ = [
    "FORMAT",
    "entry_constraints",
    "Prepared",
    "carve_validation",
    "prepare",
    "run_experiment",
    "strip_volatile",
]

#: the results.json format tag
FORMAT = "divrec-experiment/1"

_PACKAGES = ("divrec", "numpy", "scipy", "pandas", "scikit-learn", "implicit", "torch",
             "optuna", "matplotlib", "faiss-cpu", "mlflow")  # fmt: skip


# --------------------------------------------------------------------------- splits
@dataclass
class Prepared:
    """One dataset's splits, ready before any training.

    Attributes:
        dataset: the dataset name (or path).
        split: the test split (train = everything the models may learn from).
        valid: the validation split carved from `split.train` (its `test` is validation).
        fingerprint: sha256 of the split's rows (train, test, negatives, ids).
    """

    dataset: str
    split: Split
    valid: Split
    fingerprint: str


def carve_validation(split: Split, protocol: str, fraction: float, seed: int) -> Split:
    """A validation split from `split.train` only, by the same protocol.

    Args:
        split: the test split.
        protocol: its protocol name (`divrec.splitting.named.PROTOCOLS`).
        fraction: the share of training rows held out (random and temporal protocols).
        seed: seeds the random hold-out and the sampled negatives.

    Returns:
        A `Split` whose `train` and `test` partition `split.train` (same universe).
    """
    train = split.train
    if protocol == "random":
        out = random_holdout(train, test_fraction=fraction, seed=seed)
    elif protocol == "temporal":
        out = temporal_split(train, test_fraction=fraction)
    elif protocol == "leave-last-one":
        out = leave_last_one(train, validation=False)
    elif protocol == "ncf":
        n_neg = 99 if split.negatives is None else int(split.negatives.shape[1])
        out = ncf_split(train, n_negatives=n_neg, seed=seed)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return Split(
        train=out.train,
        test=out.test,
        negatives=out.negatives,
        protocol=f"validation: {out.protocol} of the training rows",
    )


def _hash_split(split: Split) -> str:
    h = hashlib.sha256()
    for part in (split.train, split.test):
        for arr in (part.users, part.items, part.values, part.timestamps):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(b"|")
    if split.negatives is not None:
        h.update(np.ascontiguousarray(split.negatives).tobytes())
    for ids in (split.train.user_ids, split.train.item_ids):
        h.update("\x1f".join(map(str, ids.tolist())).encode())
    return h.hexdigest()


def prepare(
    config: ExperimentConfig, dataset: str, home=None, data: Interactions | None = None
) -> Prepared:
    """Loads `dataset` and makes the test and validation splits (no training).

    Raises:
        ExperimentError: the dataset cannot be loaded, or it or a split part is empty (one
            line naming the file and `experiment.dataset`).
    """
    where = f"{config.source}: 'experiment.dataset' {dataset!r}"
    try:
        split = make_split(
            dataset, config.protocol, home, seed=config.seed, data=data, table=config.table
        )
        valid = carve_validation(split, config.protocol, config.validation_fraction, config.seed)
    except (DataError, ValueError, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExperimentError(f"{where}: {msg}") from None
    for name, part in (("validation-train", valid.train), ("validation", valid.test)):
        if part.nnz == 0:
            raise ExperimentError(f"{where}: the {name} part of the training rows is empty")
    return Prepared(dataset, split, valid, _hash_split(split))


# --------------------------------------------------------------------------- unit store
class _Store:
    """Finished units as one JSON file each, written atomically; tied to one config + data."""

    def __init__(self, root: Path, fingerprint: dict[str, str], fresh: bool, source: str):
        self.root = root
        self.units = root / "units"
        meta = root / "meta.json"
        if fresh and root.exists():
            shutil.rmtree(root)
        if meta.exists():
            old = json.loads(meta.read_text())
            if old != fingerprint:
                raise ExperimentError(
                    f"{source}: {root.parent} holds a run of another experiment config or "
                    "dataset; pass --fresh to discard it, or choose another --out"
                )
        self.units.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            write_text(meta, json.dumps(fingerprint, indent=2), fsync=True)

    def _path(self, key: str) -> Path:
        return self.units / (key.replace("/", "__") + ".json")

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def put(self, key: str, value: dict) -> None:
        write_text(self._path(key), json.dumps(value, separators=(",", ":")), fsync=True)

    def count(self) -> int:
        return sum(1 for _ in self.units.glob("*.json"))


# --------------------------------------------------------------------------- helpers
def entry_constraints(entry: Entry, train: Interactions, where: str) -> Any:
    """An entry's `constraints` table resolved against the training data: category names
    to their indices (`Interactions.category_names`), external item ids to internal ones,
    the group column to codes (`divrec.metrics.groups.item_groups`).

    Args:
        entry: the entry (its `constraints` as parsed, or None).
        train: the training data of the split.
        where: the file and key for messages (``EXP.toml: 'entries[2].constraints``).

    Returns:
        A `divrec.data.constraints.Constraints`, or None.

    Raises:
        ExperimentError: an unknown category, item or group name (one line naming the key).
    """
    raw = entry.constraints
    if raw is None:
        return None
    from divrec.data.constraints import Constraints
    from divrec.metrics.groups import item_groups

    names = list(train.category_names or [])

    def fail(key: str, msg: str):
        raise ExperimentError(f"{where}.{key}': {msg}")

    def cat(name: str, key: str) -> int:
        if name not in names:
            fail(key, f"unknown category {name!r}" + ("" if names else " (no categories)"))
        return names.index(name)

    ids = {str(x): i for i, x in enumerate(train.item_ids.tolist())}

    def item(value: Any, key: str) -> int:
        if str(value) not in ids:
            fail(key, f"unknown item id {value!r}")
        return ids[str(value)]

    kw: dict[str, Any] = {}
    for key in ("allow_categories", "deny_categories"):
        if key in raw:
            kw[key] = [cat(c, key) for c in raw[key]]
    for key in ("min_count", "max_count"):
        if key in raw:
            kw[key] = {cat(c, f"{key}.{c}"): v for c, v in raw[key].items()}
    if "exclude" in raw:
        kw["exclude"] = [item(x, "exclude") for x in raw["exclude"]]
    if "pins" in raw:
        kw["pins"] = {item(x, f"pins.{x}"): v for x, v in raw["pins"].items()}
    if "boosts" in raw:
        kw["boosts"] = {item(x, f"boosts.{x}"): v for x, v in raw["boosts"].items()}
    if "group" in raw:
        try:
            codes, groups = item_groups(train, raw["group"])
        except ValueError as err:
            fail("group", str(err).splitlines()[0])
        if raw["protected"] not in groups:
            fail("protected", f"unknown group {raw['protected']!r} (groups: {', '.join(groups)})")
        kw.update(
            group_of=codes, protected=groups.index(raw["protected"]), min_share=raw["min_share"]
        )
    kw["best_effort"] = bool(raw.get("best_effort", False))
    try:
        return Constraints(**kw)
    except ValueError as err:
        raise ExperimentError(f"{where}': {str(err).splitlines()[0]}") from None


def _derive(*parts: Any) -> int:
    """A 31-bit seed from (experiment seed, entry, unit, ...), stable across processes."""
    text = json.dumps([to_json_value(p) for p in parts], sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _slug(index: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]
    return f"{index:02d}-{safe}"


def _finite_mean(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _json_floats(values: np.ndarray) -> list:
    return [None if not math.isfinite(x) else x for x in np.asarray(values, np.float64).tolist()]


def _array(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _iteration_stages(spec: PipelineSpec, seed: int) -> list[tuple[str, int]]:
    """(role, iterations) of the stages with an integer `iterations` hyperparameter."""
    out = []
    for role, stage in spec.stages().items():
        params = stage.build(role, seed).get_params()
        value = params.get("iterations")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            out.append((role, value))
    return out


def _schedule(total: int, tail: float) -> list[int]:
    """Iteration counts at which a convergence curve is measured (the last two decide)."""
    back = max(1, math.ceil(tail * total))
    points = {1, math.ceil(total / 4), math.ceil(total / 2), math.ceil(3 * total / 4)}
    points |= {total - back, total}
    return sorted(p for p in points if 1 <= p <= total)


def relative_gain(values: list[float], epochs: list[int], tail: float, higher: bool) -> float:
    """The relative improvement over the last `tail` share of the epochs.

    The measure at the last epoch `T` is compared with the measure at the latest recorded
    epoch `<= T - max(1, ceil(tail * T))`; improvement is an increase when `higher`, else a
    decrease (a loss). NaN when there is no earlier point.
    """
    if len(values) < 2:
        return float("nan")
    total = epochs[-1]
    cut = total - max(1, math.ceil(tail * total))
    earlier = [i for i, e in enumerate(epochs) if e <= cut]
    if not earlier:
        return float("nan")
    before, last = float(values[earlier[-1]]), float(values[-1])
    if not (math.isfinite(before) and math.isfinite(last)) or before == 0:
        return float("nan")
    gain = (last - before) if higher else (before - last)
    return gain / abs(before)


class _Fitter:
    """Fits pipelines, sharing fitted retrievers between pipelines that only differ after
    retrieval (a small LRU; fits are deterministic, so sharing changes no number)."""

    def __init__(self, size: int = 4):
        self.size = size
        self.cache: OrderedDict[str, Any] = OrderedDict()

    def fit(self, spec: PipelineSpec, train: Interactions, part: str, seed: int):
        from divrec.pipeline import Pipeline

        retriever = spec.retriever.build("retriever", seed)
        key = json.dumps(
            [part, seed, type(retriever).__name__, to_json_value(retriever.get_params())],
            sort_keys=True,
        )
        if key in self.cache:
            retriever = self.cache[key]
            self.cache.move_to_end(key)
        else:
            retriever.fit(train)
            self.cache[key] = retriever
            while len(self.cache) > self.size:
                self.cache.popitem(last=False)
        ranker = None
        if spec.ranker is not None:
            ranker = spec.ranker.build("ranker", seed)
            if getattr(ranker, "needs_retriever", False):
                ranker.fit(train, retriever=retriever)
            else:
                ranker.fit(train)
        reranker = None if spec.reranker is None else spec.reranker.build("reranker", seed)
        pipe = Pipeline(retriever, reranker, spec.n_candidates, ranker=ranker)
        return pipe.use_fitted(train)


# --------------------------------------------------------------------------- the run
class _Run:
    def __init__(
        self,
        config: ExperimentConfig,
        prep: Prepared,
        out: Path,
        fresh: bool,
        on_unit: Callable[[str], None] | None,
    ):
        self.config = config
        self.prep = prep
        self.out = out
        self.on_unit = on_unit
        fingerprint = {"config": config.fingerprint(), "dataset": prep.fingerprint}
        self.store = _Store(out / ".state", fingerprint, fresh, config.source)
        # room for every final seed and the convergence probes: entries that share a
        # retriever (a re-ranker sweep) fit it once per seed
        self.fitter = _Fitter(size=len(config.seeds) + 8)
        self.computed = 0
        self.resumed = 0
        self._vectors: dict[str, np.ndarray | None] = {}
        self.eval_config = EvalConfig(
            ks=config.ks,
            protocol=EVAL_PROTOCOL[config.protocol],
            accuracy=config.accuracy,
            diversity=config.diversity,
            relevance_threshold=config.relevance_threshold,
            n_bootstrap=0,
            seed=config.seed,
            max_users=config.max_users,
        )

    # ---------------------------------------------------------------- plumbing
    def vectors(self, part: str) -> np.ndarray | None:
        if "ilad" not in self.config.diversity:
            return None
        if part not in self._vectors:
            train = self.prep.valid.train if part == "valid" else self.prep.split.train
            self._vectors[part] = reference_item_vectors(train, seed=self.config.seed)
        return self._vectors[part]

    def unit(self, key: str, compute: Callable[[], dict]) -> dict:
        done = self.store.get(key)
        if done is not None:
            self.resumed += 1
            return done
        wall, cpu = time.perf_counter(), time.process_time()
        value = compute()
        value["wall_seconds"] = time.perf_counter() - wall
        value["cpu_seconds"] = time.process_time() - cpu
        self.store.put(key, value)
        self.computed += 1
        if self.on_unit is not None:
            self.on_unit(key)
        return value

    def evaluate(
        self, spec: PipelineSpec, part: str, seed: int, entry: Entry | None = None
    ) -> tuple[dict, Any]:
        """Fits `spec` on `part`'s training rows and evaluates it on `part`'s held-out rows
        (with the `entry`'s constraints in every request, when it has some)."""
        split = self.prep.valid if part == "valid" else self.prep.split
        t0 = time.perf_counter()
        model = self.fitter.fit(spec, split.train, part, seed)
        fit_s = time.perf_counter() - t0
        rules, recommend_fn = None, None
        if entry is not None and entry.constraints is not None:
            index = self.config.entries.index(entry)
            where = f"{self.config.source}: 'entries[{index}].constraints"
            if self.eval_config.protocol != "full":
                raise ExperimentError(f"{where}': constraints need a full-ranking protocol")
            rules = entry_constraints(entry, split.train, where)
            from divrec.data.query import Query

            def recommend_fn(users: np.ndarray, k: int) -> np.ndarray:
                return model.recommend(Query(users=users, constraints=rules), k)[0]

        result = evaluate(
            model,
            split,
            self.eval_config,
            self.vectors(part),
            progress=False,
            recommend_fn=recommend_fn,
        )
        if rules is not None:
            from divrec.data.constraints import check_list

            cats = (
                split.train.primary_category() if split.train.item_categories is not None else None
            )
            for k in self.eval_config.ks:
                bad = [
                    bool(check_list(row, rules, cats, k)) for row in result.recommendations[:, :k]
                ]
                result.system[f"constraint_violations@{k}"] = float(np.mean(bad))
        return {"fit_seconds": fit_s, "eval_seconds": time.perf_counter() - t0 - fit_s}, (
            model,
            result,
        )

    # ---------------------------------------------------------------- units
    def n_trials(self, entry: Entry) -> int:
        if not entry.search:
            return 1
        if self.config.tuning.method == "grid":
            return min(len(entry_grid(entry)), self.config.tuning.trials)
        return self.config.tuning.trials

    def plan(self) -> int:
        total = 0
        for entry in self.config.entries:
            total += self.n_trials(entry) + 1 + len(self.config.seeds)
        return total

    def tune(self, index: int, entry: Entry, advance: Callable[[], None]) -> list[dict]:
        config = self.config
        objective = config.objective(entry)
        seed0 = config.seeds[0]
        trials: list[dict] = []
        grid = None
        if entry.search and config.tuning.method == "grid":
            grid = entry_grid(entry)
            if len(grid) > config.tuning.trials:
                rng = np.random.default_rng(_derive(config.seed, entry.name, "grid"))
                pick = np.sort(rng.choice(len(grid), size=config.tuning.trials, replace=False))
                grid = [grid[i] for i in pick.tolist()]
        for t in range(self.n_trials(entry)):
            key = f"tune/{_slug(index, entry.name)}/{t:04d}"

            def compute(t=t) -> dict:
                if not entry.search:
                    params: dict[str, Any] = {}
                elif grid is not None:
                    params = dict(grid[t])
                else:
                    params = self.tpe_params(entry, trials, t)
                for prev in trials:  # TPE may propose a point twice: no refit
                    if prev["params"] == to_json_value(params):
                        return {**_strip_time(prev), "number": t, "repeat_of": prev["number"]}
                spec = entry.spec_with(params)
                times, (_, result) = self.evaluate(spec, "valid", seed0, entry)
                means = {
                    m: _finite_mean(result.per_user[m].to_numpy())
                    for m in config.metric_keys
                    if m in result.per_user
                }
                value = (
                    objective.value(means)
                    if all(m in means for m, _ in objective.terms)
                    else float("nan")
                )
                return {
                    "number": t,
                    "params": to_json_value(params),
                    "value": value if math.isfinite(value) else None,
                    "metrics": {m: (v if math.isfinite(v) else None) for m, v in means.items()},
                    "users": int(len(result.per_user)),
                    **times,
                }

            trials.append(self.unit(key, compute))
            advance()
        return trials

    def tpe_params(self, entry: Entry, trials: list[dict], t: int) -> dict[str, Any]:
        """Trial `t`'s point: a fresh TPE sampler seeded for `t` that has seen trials 0..t-1."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {}
        for d in entry.search:
            if d.kind == "categorical":
                dists[d.key] = optuna.distributions.CategoricalDistribution(
                    list(range(len(d.values)))
                )
            elif d.kind == "int":
                dists[d.key] = optuna.distributions.IntDistribution(
                    int(d.low), int(d.high), log=d.log, step=int(d.step or 1)
                )
            else:
                dists[d.key] = optuna.distributions.FloatDistribution(
                    float(d.low), float(d.high), log=d.log, step=d.step
                )
        sampler = optuna.samplers.TPESampler(
            seed=_derive(self.config.seed, entry.name, "tpe", t),
            n_startup_trials=self.config.tuning.n_startup,
        )
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for prev in trials:
            internal = {}
            for d in entry.search:
                v = prev["params"][d.key]
                internal[d.key] = (
                    [json.dumps(x) for x in d.values].index(json.dumps(v))
                    if d.kind == "categorical"
                    else v
                )
            value = prev["value"]
            study.add_trial(
                optuna.trial.create_trial(
                    params=internal,
                    distributions=dists,
                    value=value if value is not None else None,
                    state=optuna.trial.TrialState.COMPLETE
                    if value is not None
                    else optuna.trial.TrialState.FAIL,
                )
            )
        trial = study.ask(dists)
        out = {}
        for d in entry.search:
            v = trial.params[d.key]
            out[d.key] = d.values[v] if d.kind == "categorical" else v
        return out

    def curve(self, index: int, entry: Entry, params: dict) -> dict:
        config = self.config
        key = f"curve/{_slug(index, entry.name)}"
        objective = config.objective(entry)

        def compute() -> dict:
            spec = entry.spec_with(params)
            curves = []
            for role, total in _iteration_stages(spec, config.seeds[0]):
                epochs = _schedule(total, config.convergence.tail)
                values = []
                for e in epochs:
                    probe = entry.spec_with({**params, f"{role}.iterations": e})
                    _, (_, result) = self.evaluate(probe, "valid", config.seeds[0], entry)
                    means = {
                        m: _finite_mean(result.per_user[m].to_numpy())
                        for m, _ in objective.terms
                        if m in result.per_user
                    }
                    v = objective.value(means) if len(means) == len(objective.terms) else None
                    values.append(v if v is not None and math.isfinite(v) else None)
                curves.append(
                    {
                        "stage": role,
                        "model": spec.stages()[role].name,
                        "param": "iterations",
                        "measure": f"validation {objective.label}",
                        "higher_is_better": True,
                        "epochs": epochs,
                        "values": values,
                    }
                )
            return {"curves": curves}

        return self.unit(key, compute)

    def final(self, index: int, entry: Entry, params: dict, seed: int) -> dict:
        key = f"final/{_slug(index, entry.name)}/{seed}"

        def compute() -> dict:
            spec = entry.spec_with(params)
            times, (model, result) = self.evaluate(spec, "test", seed, entry)
            table = result.per_user
            losses = {}
            for role in ("retriever", "ranker"):
                stage = getattr(model, role, None)
                train_loss = getattr(stage, "train_loss_", None)
                if train_loss is not None and len(train_loss):
                    losses[role] = {
                        "train": _json_floats(np.asarray(train_loss, dtype=np.float64)),
                        "valid": _json_floats(
                            np.asarray(getattr(stage, "valid_loss_", None) or [], np.float64)
                        ),
                    }
            return {
                "seed": seed,
                "users": [int(u) for u in table["user"].tolist()],
                "per_user": {
                    m: _json_floats(table[m].to_numpy())
                    for m in self.config.metric_keys
                    if m in table
                },
                "system": {k: float(v) for k, v in result.system.items()},
                "losses": losses,
                **times,
            }

        return self.unit(key, compute)


def _strip_time(unit: dict) -> dict:
    return {k: v for k, v in unit.items() if not k.endswith("_seconds")}


def _best(trials: list[dict]) -> dict:
    scored = [t for t in trials if t["value"] is not None]
    if not scored:
        return trials[0]
    return max(scored, key=lambda t: (t["value"], -t["number"]))


# --------------------------------------------------------------------------- assembly
def _assemble(run: _Run, tuned: dict, curves: dict, finals: dict, wall: float) -> dict:
    config, prep = run.config, run.prep
    baseline = config.baseline
    metrics = [m for m in config.metric_keys if all(m in f[0]["per_user"] for f in finals.values())]
    users = finals[baseline][0]["users"]
    matrices: dict[str, dict[str, np.ndarray]] = {}
    for name, units in finals.items():
        for u in units:
            if u["users"] != users:
                raise RuntimeError(f"entry {name!r}: evaluated users differ from the baseline's")
        matrices[name] = {m: np.stack([_array(u["per_user"][m]) for u in units]) for m in metrics}
    stats_kw = {"confidence": config.confidence, "n_bootstrap": config.n_bootstrap}
    methods = {"summary": "", "paired": ""}
    entries = []
    for entry in config.entries:
        trials = tuned[entry.name]
        best = _best(trials)
        units = finals[entry.name]
        summary = {}
        vs = {}
        for m in metrics:
            s = seed_summary(matrices[entry.name][m], seed=config.seed, **stats_kw)
            methods["summary"] = methods["summary"] or s.method
            summary[m] = {
                "mean": s.mean,
                "sd": s.sd,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "n_seeds": s.n_seeds,
                "per_seed": list(s.per_seed),
            }
            if entry.name != baseline:
                c = paired_seed_test(
                    matrices[baseline][m], matrices[entry.name][m], seed=config.seed, **stats_kw
                )
                methods["paired"] = methods["paired"] or c.method
                vs[m] = {
                    "diff": c.diff,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "p_value": c.p_value,
                    "significant": c.significant,
                    "n_users": c.n_users,
                    "per_seed_diff": list(c.per_seed_diff),
                }
        objective = config.objective(entry)
        test_objective = (
            objective.value({m: summary[m]["mean"] for m, _ in objective.terms})
            if all(m in summary for m, _ in objective.terms)
            else None
        )
        spec = entry.spec_with(best["params"])
        system = {k: [u["system"][k] for u in units] for k in units[0]["system"]}
        entries.append(
            {
                "name": entry.name,
                "sanity": entry.sanity,
                "baseline": entry.name == baseline,
                "spec": spec.resolved(config.seeds[0]).to_dict(),
                "declared": entry.to_json(),
                "chosen_params": best["params"],
                "objective": objective.label,
                "tuning": {
                    "method": config.tuning.method if entry.search else "fixed",
                    "budget": config.tuning.trials if entry.search else 1,
                    "trials_run": len(trials),
                    "best_trial": best["number"],
                    "validation_objective": best["value"],
                    "validation_metrics": best["metrics"],
                    "trials": trials,
                },
                "test_objective": test_objective,
                "convergence": _convergence(config, curves[entry.name], units),
                "seeds": [u["seed"] for u in units],
                "users": users,
                "per_user": {
                    m: [_json_floats(row) for row in matrices[entry.name][m]] for m in metrics
                },
                "summary": summary,
                "vs_baseline": vs,
                "system": system,
                "timing": {
                    "tuning_wall_seconds": sum(t.get("wall_seconds", 0.0) for t in trials),
                    "tuning_cpu_seconds": sum(t.get("cpu_seconds", 0.0) for t in trials),
                    "curve_wall_seconds": curves[entry.name].get("wall_seconds", 0.0),
                    "final_wall_seconds": [u["wall_seconds"] for u in units],
                    "final_cpu_seconds": [u["cpu_seconds"] for u in units],
                    "final_fit_seconds": [u["fit_seconds"] for u in units],
                    "final_eval_seconds": [u["eval_seconds"] for u in units],
                },
            }
        )
    wall_units = sum(
        t.get("wall_seconds", 0.0) for e in entries for t in e["tuning"]["trials"]
    ) + sum(
        sum(e["timing"]["final_wall_seconds"]) + e["timing"]["curve_wall_seconds"] for e in entries
    )
    cpu_units = sum(
        e["timing"]["tuning_cpu_seconds"] + sum(e["timing"]["final_cpu_seconds"]) for e in entries
    )
    return {
        "format": FORMAT,
        "experiment": config.to_json(),
        "source": config.source,
        "dataset": {
            "name": prep.dataset,
            "fingerprint": prep.fingerprint,
            "split": prep.split.summary(),
            "validation": prep.valid.summary(),
        },
        "metrics": metrics,
        "baseline": baseline,
        "statistics": {
            "summary": methods["summary"],
            "paired": methods["paired"],
            "confidence": config.confidence,
            "n_bootstrap": config.n_bootstrap,
            "bootstrap_seed": config.seed,
        },
        "environment": _environment(),
        "entries": entries,
        "timing": {"compute_wall_seconds": wall_units, "compute_cpu_seconds": cpu_units},
        "run": {
            "wall_seconds": wall,
            "units_computed": run.computed,
            "units_resumed": run.resumed,
        },
    }


def _convergence(config: ExperimentConfig, curve: dict, units: list[dict]) -> dict:
    tol, tail = config.convergence.tolerance, config.convergence.tail
    checks = []
    for c in curve.get("curves", []):
        gain = relative_gain(c["values"], c["epochs"], tail, higher=True)
        checks.append(
            {
                **c,
                "relative_gain": gain if math.isfinite(gain) else None,
                "still_improving": bool(math.isfinite(gain) and gain > tol),
            }
        )
    for role in sorted({r for u in units for r in u["losses"]}):
        per_seed = []
        for u in units:
            loss = u["losses"].get(role)
            if not loss:
                continue
            values = [np.nan if v is None else v for v in loss["train"]]
            epochs = list(range(1, len(values) + 1))
            gain = relative_gain(values, epochs, tail, higher=False)
            per_seed.append(
                {
                    "seed": u["seed"],
                    "epochs": epochs,
                    "values": loss["train"],
                    "relative_gain": gain if math.isfinite(gain) else None,
                    "still_improving": bool(math.isfinite(gain) and gain > tol),
                }
            )
        checks.append(
            {
                "stage": role,
                "measure": "training loss per epoch (final fits)",
                "higher_is_better": False,
                "per_seed": per_seed,
                "still_improving": any(s["still_improving"] for s in per_seed),
            }
        )
    if not checks:
        status = "not iterative"
    elif any(c["still_improving"] for c in checks):
        status = "still improving"
    else:
        status = "converged"
    return {"status": status, "tolerance": tol, "tail": tail, "checks": checks}


def _environment() -> dict:
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
    }


def strip_volatile(results: Any) -> Any:
    """`results` without what differs between two runs of the same work: every key ending
    in `_seconds`, and `run` (this invocation's wall time and resumed-unit counts)."""
    if isinstance(results, dict):
        return {
            k: strip_volatile(v)
            for k, v in results.items()
            if not k.endswith("_seconds") and k != "run"
        }
    if isinstance(results, list):
        return [strip_volatile(v) for v in results]
    return results


# --------------------------------------------------------------------------- entry point
def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    home=None,
    *,
    progress: bool = True,
    fresh: bool = False,
    data: Interactions | None = None,
    on_unit: Callable[[str], None] | None = None,
) -> list[dict]:
    """Runs (or resumes) an experiment; writes its outputs under `out`.

    With one dataset the outputs (`results.json`, `report.md`, `pareto.png`,
    `validation_curves.png`) go to `out`; with several, to `out/<dataset>/` each. Finished
    units are kept under `.state/` and skipped by a rerun of the same config on the same data.

    Args:
        config: a validated `ExperimentConfig` (`load_experiment`).
        out: the output folder.
        home: the data home (None: `$DIVREC_DATA_HOME` or the cache directory).
        progress: show a progress bar with an ETA.
        fresh: discard saved units first.
        data: an in-memory log to use instead of loading the (single) dataset.
        on_unit: called with each unit's key after it is computed and saved (tests use it to
            interrupt a run).

    Returns:
        The results dictionaries written (one per dataset).

    Raises:
        ExperimentError: a dataset that cannot be loaded or is empty (before any training),
            or an output folder holding units of another config.
    """
    from divrec.experiment.report import write_outputs

    out = Path(out)
    if data is not None and len(config.datasets) != 1:
        raise ExperimentError(f"{config.source}: in-memory data needs exactly one dataset")
    targets = list(zip(config.datasets, _dataset_folders(out, config.datasets), strict=True))
    prepared = [prepare(config, name, home, data) for name, _ in targets]  # before training
    results = []
    for prep, (_, folder) in zip(prepared, targets, strict=True):
        results.append(_run_one(config, prep, folder, progress, fresh, on_unit))
        write_outputs(results[-1], folder)
    if len(targets) > 1:
        write_text(out / "index.md", _index(config, targets), fsync=True)
    if config.tracking == "auto":
        from divrec.experiment.tracking import log_to_mlflow

        for res, (_, folder) in zip(results, targets, strict=True):
            log_to_mlflow(res, folder)
    return results


def _dataset_folders(out: Path, datasets: tuple[str, ...]) -> list[Path]:
    """`out` for one dataset; else `out/<name>` (a file's stem), numbered if names repeat."""
    if len(datasets) == 1:
        return [out]
    stems = []
    for name in datasets:
        stem = Path(name).stem if ("/" in name or "." in Path(name).name) else name
        stems.append("".join(c if c.isalnum() or c in "-_" else "-" for c in stem) or "data")
    if len(set(stems)) < len(stems):
        stems = [f"{i:02d}-{s}" for i, s in enumerate(stems)]
    return [out / s for s in stems]


def _index(config: ExperimentConfig, targets) -> str:
    lines = [f"# {config.name}", ""]
    for name, folder in targets:
        lines.append(f"- [{name}]({folder.name}/report.md)")
    return "\n".join(lines) + "\n"


def _run_one(config, prep, out: Path, progress: bool, fresh: bool, on_unit) -> dict:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    start = time.perf_counter()
    run = _Run(config, prep, out, fresh, on_unit)
    for index, entry in enumerate(config.entries):  # bad rules: one line, nothing trained
        if entry.constraints is not None:
            where = f"{config.source}: 'entries[{index}].constraints"
            if run.eval_config.protocol != "full":
                raise ExperimentError(f"{where}': constraints need a full-ranking protocol")
            entry_constraints(entry, prep.split.train, where)
    total = run.plan()
    done = run.store.count()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    tuned: dict[str, list[dict]] = {}
    curves: dict[str, dict] = {}
    finals: dict[str, list[dict]] = {}
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{config.name} on {prep.dataset}", total=total, completed=done)
        seen = {"n": 0}

        def advance() -> None:
            seen["n"] += 1
            if seen["n"] > done:  # resumed units were counted at the start
                bar.advance(task)

        for index, entry in enumerate(config.entries):
            bar.update(task, description=f"tuning {entry.name}")
            tuned[entry.name] = run.tune(index, entry, advance)
            params = _best(tuned[entry.name])["params"]
            bar.update(task, description=f"convergence {entry.name}")
            curves[entry.name] = run.curve(index, entry, params)
            advance()
            finals[entry.name] = []
            for seed in config.seeds:
                bar.update(task, description=f"{entry.name}, seed {seed}")
                finals[entry.name].append(run.final(index, entry, params, seed))
                advance()
    return _assemble(run, tuned, curves, finals, time.perf_counter() - start)
