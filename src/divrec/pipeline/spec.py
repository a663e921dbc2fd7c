"""`PipelineSpec`: the one declaration of a pipeline (stages as registry names + config values).

Every place that names a pipeline parses this: `divrec train` configs, the benchmark, the
simulator, `divrec evaluate`'s flags, `divrec spark`, and experiment files. The plain dict
(and TOML) form is::

    n_candidates = 100
    [retriever]
    name = "ials"
    params = {factors = 64}
    [ranker]                 # optional
    name = "cdm"
    [reranker]               # optional
    name = "dpp"
    params = {theta = 0.5}

Results JSON stores `spec.to_dict()` (the full config of every stage, defaults included, with
`resolved()`), so any row can be rebuilt with `PipelineSpec.from_dict(row).build(seed)`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from divrec.params import ParamError, signature_types, to_json_value
from divrec.registry import create, preset_params, resolve

__all__ = ["PipelineSpec", "SpecError", "StageSpec"]

_KINDS = {"retriever": "model", "ranker": "ranker", "reranker": "re-ranker"}
_STAGE_KEYS = {"name", "params"}
_SPEC_KEYS = {"retriever", "ranker", "reranker", "n_candidates", "label"}


class SpecError(ParamError):
    """A bad pipeline declaration; the one-line message names the offending key."""


@dataclass(frozen=True)
class StageSpec:
    """One stage: a registered name and its config values (JSON values or CLI strings).

    Attributes:
        name: the registry name (`divrec.registry`), e.g. "ials", "cdm", "dpp".
        params: config overrides over the registered class's (or preset's) defaults.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self, role: str, seed: int | None = None, option: str = "--param") -> Any:
        """The unfitted stage (`role`: "retriever", "ranker" or "reranker")."""
        return create(_KINDS[role], self.name, dict(self.params), seed=seed, option=option)

    def resolved(self, role: str, seed: int | None = None) -> StageSpec:
        """The same stage with every config field spelled out (preset and defaults)."""
        stage = self.build(role, seed)
        return StageSpec(self.name, to_json_value(stage.get_params()))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.params:
            out["params"] = to_json_value(dict(self.params))
        return out

    @classmethod
    def from_dict(cls, raw: Any, key: str) -> StageSpec:
        if isinstance(raw, str):
            return cls(raw)
        table = _table(raw, key)
        _known(table, _STAGE_KEYS, f"{key}.")
        if "name" not in table:
            raise SpecError(f"missing key '{key}.name'")
        name = table["name"]
        if not isinstance(name, str) or not name:
            raise SpecError(f"'{key}.name' must be a non-empty string, got {name!r}")
        params = dict(_table(table.get("params", {}), f"{key}.params"))
        return cls(name, params)


@dataclass(frozen=True)
class PipelineSpec:
    """Retriever → optional ranker → optional re-ranker, as registry names + config values.

    Attributes:
        retriever: the retrieval stage (a registered model).
        ranker: the ranking stage (a registered model re-scoring the candidates), or None.
        reranker: the re-ranking stage (a registered re-ranker), or None.
        n_candidates: N, the candidates handed from retrieval onwards.
        label: a display name (reports, plots); `name` falls back to the stage names.
    """

    retriever: StageSpec
    ranker: StageSpec | None = None
    reranker: StageSpec | None = None
    n_candidates: int = 100
    label: str | None = None

    def __post_init__(self) -> None:
        n = self.n_candidates
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise SpecError(f"'n_candidates' must be a positive integer, got {n!r}")
        for role in _KINDS:
            stage = getattr(self, role)
            if isinstance(stage, str):
                object.__setattr__(self, role, StageSpec(stage))

    @classmethod
    def of(
        cls,
        retriever: str,
        reranker: str | None = None,
        ranker: str | None = None,
        *,
        retriever_params: Mapping[str, Any] | None = None,
        ranker_params: Mapping[str, Any] | None = None,
        reranker_params: Mapping[str, Any] | None = None,
        n_candidates: int = 100,
        label: str | None = None,
    ) -> PipelineSpec:
        """A spec from names and parameter dicts (the CLI flags' form)."""

        def stage(name, params):
            return None if name is None else StageSpec(name, dict(params or {}))

        return cls(
            StageSpec(retriever, dict(retriever_params or {})),
            stage(ranker, ranker_params),
            stage(reranker, reranker_params),
            n_candidates,
            label,
        )

    @property
    def name(self) -> str:
        """The label, or "retriever→ranker→reranker"."""
        if self.label:
            return self.label
        return "→".join(s.name for s in (self.retriever, self.ranker, self.reranker) if s)

    def stages(self) -> dict[str, StageSpec]:
        """Role → stage spec of the stages present."""
        return {r: getattr(self, r) for r in _KINDS if getattr(self, r) is not None}

    def check(self) -> PipelineSpec:
        """Resolves every name and coerces every parameter without building anything heavy.

        Raises:
            SpecError: an unknown stage name or parameter, or a value of the wrong type.
        """
        for role, stage in self.stages().items():
            kind = _KINDS[role]
            try:
                cls = resolve(kind, stage.name)
                known = signature_types(cls)
                raw = {**preset_params(kind, stage.name), **dict(stage.params)}
                bad = sorted(set(raw) - set(known))
                if bad:
                    raise SpecError(
                        f"{role} {stage.name!r} has no parameter(s) {bad}; it takes {sorted(known)}"
                    )
            except SpecError:
                raise
            except ParamError as err:
                raise SpecError(f"{role}: {err}") from None
        return self

    def build(self, seed: int | None = 0, item_vectors: Any = None):
        """The unfitted `Pipeline` (stages built by the registry; `seed` seeds each stage
        whose config has a `seed` that `params` does not set)."""
        from divrec.pipeline.pipeline import Pipeline

        stages = {}
        for role, stage in self.stages().items():
            try:
                stages[role] = stage.build(role, seed)
            except SpecError:
                raise
            except ParamError as err:
                raise SpecError(f"{role}: {err}") from None
        return Pipeline(
            stages["retriever"],
            reranker=stages.get("reranker"),
            n_candidates=self.n_candidates,
            item_vectors=item_vectors,
            ranker=stages.get("ranker"),
        )

    def with_stage(self, role: str, stage: StageSpec | str | None) -> PipelineSpec:
        """A copy with one stage replaced (None removes a ranker or re-ranker)."""
        if role not in _KINDS:
            raise SpecError(f"unknown stage role {role!r}; known: {', '.join(_KINDS)}")
        if isinstance(stage, str):
            stage = StageSpec(stage)
        values = {r: getattr(self, r) for r in _KINDS}
        values[role] = stage
        return PipelineSpec(**values, n_candidates=self.n_candidates, label=self.label)

    def resolved(self, seed: int | None = 0) -> PipelineSpec:
        """The same spec with every stage's full config spelled out (for results JSON)."""
        values = {r: (s.resolved(r, seed) if s else None) for r, s in self.stages().items()}
        return PipelineSpec(
            values["retriever"],
            values.get("ranker"),
            values.get("reranker"),
            self.n_candidates,
            self.label,
        )

    # ------------------------------------------------------------------ plain forms
    def to_dict(self) -> dict[str, Any]:
        """The plain dict form (JSON / TOML values)."""
        out: dict[str, Any] = {"n_candidates": self.n_candidates}
        if self.label:
            out["label"] = self.label
        for role, stage in self.stages().items():
            out[role] = stage.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: Any, where: str = "pipeline") -> PipelineSpec:
        """Parses the plain dict form; every problem is a one-line `SpecError` naming the key.

        A stage may be given as a bare name (`retriever = "ials"`).
        """
        table = _table(raw, where)
        _known(table, _SPEC_KEYS, "")
        if "retriever" not in table:
            raise SpecError("missing key 'retriever'")
        stages = {
            role: StageSpec.from_dict(table[role], role) if role in table else None
            for role in _KINDS
        }
        n = table.get("n_candidates", 100)
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise SpecError(f"'n_candidates' must be a positive integer, got {n!r}")
        label = table.get("label")
        if label is not None and not isinstance(label, str):
            raise SpecError(f"'label' must be a string, got {label!r}")
        return cls(stages["retriever"], stages["ranker"], stages["reranker"], n, label).check()

    def to_toml(self) -> str:
        """The TOML form (inline tables for the parameters)."""
        lines = [f"n_candidates = {self.n_candidates}"]
        if self.label:
            lines.append(f"label = {json.dumps(self.label, ensure_ascii=False)}")
        for role, stage in self.stages().items():
            lines += ["", f"[{role}]", f"name = {json.dumps(stage.name)}"]
            if stage.params:
                items = ", ".join(
                    f"{k} = {_toml_value(to_json_value(v))}" for k, v in stage.params.items()
                )
                lines.append(f"params = {{{items}}}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> PipelineSpec:
        """Parses the TOML form."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"pipeline TOML: {str(err).splitlines()[0]}") from None
        return cls.from_dict(raw)

    @classmethod
    def load(cls, path: str | Path) -> PipelineSpec:
        """Reads a `.toml` or `.json` pipeline file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(f"pipeline file {path}: {str(err).splitlines()[0]}") from None
        if path.suffix.lower() == ".json":
            try:
                return cls.from_dict(json.loads(text))
            except json.JSONDecodeError as err:
                raise SpecError(f"pipeline file {path}: {str(err).splitlines()[0]}") from None
        return cls.from_toml(text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:  # TOML has no null; typed coercion reads "none" back as None
        return '"none"'
    return json.dumps(value)


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"'{key}' must be a table, got {type(value).__name__}")
    return value


def _known(table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise SpecError(f"unknown key '{prefix}{key}' (known: {', '.join(sorted(allowed))})")
