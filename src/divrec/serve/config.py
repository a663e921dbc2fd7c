"""The `divrec train` configuration: a small TOML or JSON document, validated key by key.

    seed = 0
    [data]
    dataset = "ml-100k"        # a registered dataset, a CSV/TSV/Parquet path, or "synthetic"
    columns = {user = "uid", item = "mid", rating = "stars", timestamp = "ts"}  # files only
    min_rating = 4.0           # keep rows rated at least this (None: keep all)
    synthetic = {n_users = 300, n_items = 200}   # SyntheticConfig fields, dataset = "synthetic"
    items = "items.csv"        # optional item metadata: columns item, title, genres ("|" list)
    [retriever]
    name = "ials"
    params = {factors = 64}
    [ranker]                   # optional ranking stage
    name = "itemknn"
    [reranker]                 # optional; dpp, mmr and ssd are always fitted for `method=`
    name = "dpp"
    params = {theta = 0.5}
    [pipeline]
    n_candidates = 100

The stage part (`[retriever]`, `[ranker]`, `[reranker]`, `[pipeline] n_candidates`) is the
one pipeline declaration, `divrec.pipeline.PipelineSpec` (`TrainConfig.pipeline`): stage
names and parameters are checked against the registry here, before any data is read. Every
problem is a `ConfigError` (a `ValueError`) whose one-line message names the key.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divrec.pipeline.spec import PipelineSpec, SpecError

__all__ = ["ConfigError", "TrainConfig", "load_config", "parse_config"]


class ConfigError(ValueError):
    """A bad `divrec train` configuration; the message names the offending key."""


@dataclass(frozen=True)
class TrainConfig:
    """A validated training configuration (see the module docstring).

    Attributes:
        dataset: a registered dataset name, a resolved file path, or "synthetic".
        pipeline: the stages and `n_candidates` (the one `PipelineSpec`).
        columns: column role → column name of a data file.
        min_rating: keep rows rated at least this (None: keep all).
        synthetic: `SyntheticConfig` fields for `dataset = "synthetic"`.
        items: a resolved item metadata file, or None.
        seed: seeds data generation and every stage whose parameters set no seed.
        source: the config document as read (JSON values), stored in the manifest.
    """

    dataset: str
    pipeline: PipelineSpec
    columns: dict[str, str] = field(default_factory=dict)
    min_rating: float | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    items: str | None = None
    seed: int = 0
    source: dict[str, Any] = field(default_factory=dict)


_TOP = {"seed", "data", "retriever", "ranker", "reranker", "pipeline"}
_DATA = {"dataset", "columns", "min_rating", "synthetic", "items"}
_STAGES = ("retriever", "ranker", "reranker")
_PIPELINE = {"n_candidates"}
_ROLES = {"user", "item", "rating", "timestamp", "session"}


def load_config(path: str | Path) -> TrainConfig:
    """Reads and validates a `.toml` or `.json` config file.

    Raises:
        ConfigError: the file is missing or unreadable, or a key is bad (one line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: {str(err).splitlines()[0]}") from None
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            raw = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path}: {str(err).splitlines()[0]}") from None
    return parse_config(raw, base=path.parent)


def parse_config(raw: Any, base: Path | None = None) -> TrainConfig:
    """Validates a parsed config document; relative file paths resolve against `base`.

    Raises:
        ConfigError: one line naming the offending key.
    """
    table = _table(raw, "config")
    _known(table, _TOP, "")
    data = _table(table.get("data"), "data") if "data" in table else None
    if data is None:
        raise ConfigError("config: missing key 'data'")
    _known(data, _DATA, "data.")
    if "dataset" not in data:
        raise ConfigError("config: missing key 'data.dataset'")
    dataset = _string(data["dataset"], "data.dataset")
    columns = {}
    if "columns" in data:
        cols = _table(data["columns"], "data.columns")
        for role, col in cols.items():
            if role not in _ROLES:
                raise ConfigError(
                    f"config: unknown key 'data.columns.{role}' "
                    f"(roles: {', '.join(sorted(_ROLES))})"
                )
            columns[role] = _string(col, f"data.columns.{role}")
    min_rating = None
    if "min_rating" in data:
        min_rating = _number(data["min_rating"], "data.min_rating")
    synthetic = {}
    if "synthetic" in data:
        synthetic = dict(_table(data["synthetic"], "data.synthetic"))
        if dataset != "synthetic":
            raise ConfigError("config: 'data.synthetic' needs data.dataset = \"synthetic\"")
    items = None
    if "items" in data:
        items = _string(data["items"], "data.items")
        items = str(_resolve(items, base))
    if dataset not in ("synthetic",) and (
        dataset.endswith((".csv", ".tsv", ".gz", ".parquet")) or "/" in dataset
    ):
        dataset = str(_resolve(dataset, base))
    seed = _int(table["seed"], "seed") if "seed" in table else 0
    return TrainConfig(
        dataset=dataset,
        pipeline=_pipeline(table),
        columns=columns,
        min_rating=min_rating,
        synthetic=synthetic,
        items=items,
        seed=seed,
        source=json.loads(json.dumps(table)),
    )


def _pipeline(table: dict[str, Any]) -> PipelineSpec:
    """The stage keys of a config as a checked `PipelineSpec`.

    Stages are tables here (the spec's bare-name shorthand is not part of this format), and
    `n_candidates` lives under `[pipeline]`; the rest is `PipelineSpec.from_dict`.
    """
    if "retriever" not in table:
        raise ConfigError("config: missing key 'retriever'")
    spec: dict[str, Any] = {role: _table(table[role], role) for role in _STAGES if role in table}
    if "pipeline" in table:
        pipe = _table(table["pipeline"], "pipeline")
        _known(pipe, _PIPELINE, "pipeline.")
        if "n_candidates" in pipe:
            n = _int(pipe["n_candidates"], "pipeline.n_candidates")
            if n <= 0:
                raise ConfigError("config: 'pipeline.n_candidates' must be positive")
            spec["n_candidates"] = n
    try:
        return PipelineSpec.from_dict(spec)
    except SpecError as err:
        raise ConfigError(f"config: {str(err).splitlines()[0]}") from None


def _resolve(value: str, base: Path | None) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"config: '{key}' must be a table, got {type(value).__name__}")
    return value


def _known(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"config: unknown key '{prefix}{key}' (known: {', '.join(sorted(allowed))})"
            )


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config: '{key}' must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"config: '{key}' must be a number, got {value!r}")
    return float(value)


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config: '{key}' must be an integer, got {value!r}")
    return int(value)
