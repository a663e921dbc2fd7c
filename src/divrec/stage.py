"""Declare each stage once: typed frozen configs, the stage base and the shared validators.

Every retriever, ranker and re-ranker declares its hyperparameters once, as a frozen,
keyword-only dataclass that validates itself on construction (LensKit's `config: ALSConfig`
pattern)::

    @dataclass(frozen=True, kw_only=True)
    class ALSConfig(StageConfig):
        factors: int = param(64, ge=1)
        regularization: float = param(0.01, ge=0.0)

    class ALSRecommender(Recommender):
        Config = ALSConfig

`ALSRecommender(factors=32)`, `ALSRecommender(ALSConfig(factors=32))` and
`ALSRecommender(cfg, factors=32)` all build the config (a bad value is a `ParamError`, a
`ValueError`, naming the field, at construction); the stage reads its hyperparameters as
read-only attributes (`model.factors` is `model.config.factors`). `get_params`, `repr`,
`with_params`, persistence (`save` / `divrec.load`), the CLI's typed `--param` coercion and
the results JSON all read the config. Variants that differ only in defaults are registry
presets (`divrec.registry`), not subclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from divrec.params import ParamError, coerce, to_json_value, type_name

__all__ = [
    "Configured",
    "NotFittedError",
    "ParamError",
    "StageConfig",
    "check_k",
    "config_fields",
    "param",
]


class NotFittedError(RuntimeError):
    """A model, ranker or re-ranker was used before `fit` (the one error for it)."""


def param(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A config field with optional numeric bounds, checked on construction.

    Bounds apply to numbers and to every element of a tuple of numbers; None values pass
    (declare the type `int | None` to allow None).
    """
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    kw: dict[str, Any] = {"metadata": {"bounds": bounds}}
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return dataclasses.field(**kw)


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _in_bounds(value: Any, bounds: dict[str, float]) -> bool:
    if isinstance(value, tuple | list):
        return all(_in_bounds(v, bounds) for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return True
    v = float(value)
    checks = {
        "ge": lambda b: v >= b,
        "gt": lambda b: v > b,
        "le": lambda b: v <= b,
        "lt": lambda b: v < b,
    }
    return all(checks[k](b) for k, b in bounds.items())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _admits_str(tp: Any) -> bool:
    if tp is None or tp is Any or tp is str:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return any(_admits_str(a) for a in typing.get_args(tp))
    return False


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Base of every stage's hyperparameter config (frozen, keyword-only, typed).

    On construction each field is checked against its annotation (numbers are converted
    between int and float where exact, lists become tuples, strings are not parsed) and its
    `param` bounds, then `validate` runs the cross-field checks. Errors are `ParamError`
    (a `ValueError`) with one line naming the field.
    """

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        who = type(self).__name__
        for f in fields(self):
            value = getattr(self, f.name)
            tp = hints.get(f.name)
            if isinstance(value, str) and not _admits_str(tp):
                raise ParamError(f"{who}: {f.name}={value!r}: expected {type_name(tp)}")
            try:
                checked = coerce(value, tp)
            except (ValueError, TypeError) as err:
                raise ParamError(
                    f"{who}: {f.name}={value!r}: expected {type_name(tp)} ({err})"
                ) from None
            bounds = f.metadata.get("bounds", {})
            if bounds and checked is not None and not _in_bounds(checked, bounds):
                text = " and ".join(f"{_BOUND_TEXT[k]} {b:g}" for k, b in bounds.items())
                raise ParamError(f"{who}: {f.name} must be {text}, got {value!r}")
            if isinstance(checked, float) and not math.isfinite(checked) and bounds:
                raise ParamError(f"{who}: {f.name} must be finite, got {value!r}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        try:
            self.validate()
        except ParamError:
            raise
        except ValueError as err:
            raise ParamError(f"{who}: {err}") from None

    def validate(self) -> None:
        """Cross-field checks (subclasses); raise `ValueError` naming the field."""

    def with_params(self, **changes: Any) -> StageConfig:
        """A copy with `changes` applied (validated again); unknown names are a `ParamError`."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise ParamError(
                f"{type(self).__name__} has no parameter(s) {bad}; it takes {sorted(known)}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Field name → value (shallow; tuples stay tuples)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> dict[str, Any]:
        """Field name → JSON value (tuples → lists), for results files."""
        return {k: to_json_value(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], who: str | None = None, option: str = "--param"
    ) -> StageConfig:
        """Builds a config from raw values (strings from a command line or JSON values).

        Raises:
            ParamError: an unknown field, a value that does not fit its type, or one that
                `validate` rejects; one line naming the field.
        """
        who = who or cls.__name__
        types = config_fields(cls)
        bad = sorted(set(raw) - set(types))
        if bad:
            raise ParamError(f"{who} has no parameter(s) {bad}; it takes {sorted(types)}")
        values = {}
        for name, value in raw.items():
            tp = types[name]
            try:
                values[name] = coerce(value, tp)
            except (ValueError, TypeError) as err:
                raise ParamError(
                    f"{option} {name}={value!r} for {who}: expected {type_name(tp)} ({err})"
                ) from None
        try:
            return cls(**values)
        except ParamError as err:
            msg = str(err)
            prefix = f"{cls.__name__}: "
            raise ParamError(f"{who}: {msg.removeprefix(prefix)}") from None


def config_fields(cls: type[StageConfig]) -> dict[str, Any]:
    """Field name → declared type of a config class."""
    hints = _hints(cls)
    return {f.name: hints.get(f.name) for f in fields(cls)}


class Configured:
    """Mixin of every stage: holds one `Config` instance and exposes its fields read-only.

    Subclasses set the class attribute `Config` to their `StageConfig` subclass; the mixin
    then defines one read-only property per field, so `self.factors` reads
    `self.config.factors` and `self.factors = 3` is an `AttributeError`.
    """

    Config: ClassVar[type[StageConfig]] = StageConfig
    config: StageConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cfg = cls.__dict__.get("Config")
        if cfg is None:
            return
        if not (isinstance(cfg, type) and issubclass(cfg, StageConfig)):
            raise TypeError(f"{cls.__name__}.Config must be a StageConfig subclass")
        for f in fields(cfg):
            existing = getattr(cls, f.name, None)
            if isinstance(existing, _ConfigField):
                continue
            if existing is not None:
                raise TypeError(
                    f"{cls.__name__}.{f.name} clashes with the hyperparameter {f.name!r} of "
                    f"{cfg.__name__}"
                )
            setattr(cls, f.name, _ConfigField(f.name))

    def __init__(self, config: StageConfig | None = None, /, **params: Any) -> None:
        cls = type(self).Config
        if config is None:
            known = {f.name for f in fields(cls)}
            bad = sorted(set(params) - known)
            if bad:
                raise ParamError(
                    f"{type(self).__name__} has no parameter(s) {bad}; it takes {sorted(known)}"
                )
            cfg = cls(**params)
        else:
            if not isinstance(config, cls):
                raise TypeError(
                    f"{type(self).__name__} takes a {cls.__name__}, got {type(config).__name__}"
                )
            cfg = config.with_params(**params) if params else config
        object.__setattr__(self, "config", cfg)

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters (the config's fields), scikit-learn style.

        A class that composes stages instead of declaring a config (`Pipeline`) reports its
        constructor arguments.
        """
        cfg = self.__dict__.get("config")
        if cfg is not None:
            return cfg.to_dict()
        return {n: getattr(self, n) for n in _init_names(type(self)) if hasattr(self, n)}

    def with_params(self, **changes: Any):
        """A new, unfitted stage of the same class with `changes` applied to the config."""
        return type(self)(self.config.with_params(**changes))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


@functools.cache
def _init_names(cls: type) -> tuple[str, ...]:
    import inspect

    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")


class _ConfigField:
    """Read-only attribute that reads a field of the instance's config."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.config, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(
            f"{self.name} is a hyperparameter of {type(obj).__name__}; use "
            f"with_params({self.name}=...) for a changed copy"
        )


def check_k(k: Any, name: str = "k", minimum: int = 1) -> int:
    """Validates a list length or count: an int `>= minimum` (bools and floats rejected).

    The one validator for k and list lengths (re-rankers accept 0 with `minimum=0`).

    Raises:
        ValueError: not an integer, or below `minimum`.
    """
    wanted = "positive" if minimum == 1 else f">= {minimum}"
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"{name} must be an integer {wanted}, got {k!r}")
    if k < minimum:
        raise ValueError(f"{name} must be {wanted}, got {k}")
    return int(k)
