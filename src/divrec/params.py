"""Typed hyperparameters: values from the CLI, config files and results JSON are coerced
through each class's declared constructor types, so a wrong value is one line naming the
parameter and the expected type (LensKit / RecTools typed configs, without pydantic).
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import inspect
import math
import numbers
import types
import typing
from typing import Any, Literal, Union

__all__ = ["ParamError", "coerce_params", "parse_pairs", "signature_types", "to_json_value"]


class ParamError(ValueError):
    """A hyperparameter that is unknown or does not fit its declared type."""


def parse_pairs(pairs: list[str] | None, option: str = "--param") -> dict[str, str]:
    """`["factors=128", "alpha=2.0"]` → `{"factors": "128", "alpha": "2.0"}` (raw strings)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"{option} {pair!r} is not of the form name=value")
        out[key.strip()] = raw.strip()
    return out


def signature_types(cls: type) -> dict[str, tuple[Any, Any]]:
    """Hyperparameters of `cls` → (declared type or None, default or `inspect._empty`).

    A stage with a typed `Config` (`divrec.stage`) is read from its config's fields; any
    other class from its constructor's signature.
    """
    config = getattr(cls, "Config", None)
    own_init = getattr(cls.__init__, "__qualname__", "") != "Configured.__init__"
    if isinstance(config, type) and dataclasses.is_dataclass(config) and not own_init:
        hints = typing.get_type_hints(config)
        out = {}
        for f in dataclasses.fields(config):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = inspect.Parameter.empty
            out[f.name] = (hints.get(f.name), default)
        return out
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable forward references: fall back to the defaults' types
        hints = {}
    out = {}
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = hints.get(name)
        if tp is None and p.default is not inspect.Parameter.empty and p.default is not None:
            tp = type(p.default)
        out[name] = (tp, p.default)
    return out


def coerce_params(cls: type, raw: dict[str, Any], who: str, option: str = "--param") -> dict:
    """Coerces `raw` (strings from a command line, or JSON values) to `cls`'s declared types.

    Args:
        cls: the class whose constructor declares the types.
        raw: parameter name → raw value.
        who: how to name the object in errors, e.g. "model 'ials'".
        option: how to name the option in errors, e.g. "--param".

    Raises:
        ParamError: an unknown parameter or a value that does not fit its type.
    """
    types_ = signature_types(cls)
    bad = sorted(set(raw) - set(types_))
    if bad:
        raise ParamError(f"{who} has no parameter(s) {bad}; it takes {sorted(types_)}")
    out = {}
    for name, value in raw.items():
        tp, _ = types_[name]
        try:
            out[name] = coerce(value, tp)
        except (ValueError, TypeError) as err:
            raise ParamError(
                f"{option} {name}={value!r} for {who}: expected {type_name(tp)} ({err})"
            ) from None
    return out


def type_name(tp: Any) -> str:
    """A short readable name of a type annotation."""
    if tp is None or tp is Any:
        return "a Python literal"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = type_name(args[0]) if args else "value"
        return f"a comma-separated list of {inner}"
    if origin is collections.abc.Mapping:
        return "name:value pairs"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any) -> Any:
    """Coerces one value to `tp` (strings parsed; other values checked); raises ValueError."""
    if tp is None or tp is Any or tp is inspect.Parameter.empty:
        if isinstance(value, str):
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or _is_none_str(value)):
            return None
        errors = []
        for arg in sorted((a for a in args if a is not type(None)), key=_try_order):
            try:
                return coerce(value, arg)
            except (ValueError, TypeError) as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors) or "no matching type")
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"not among {typing.get_args(tp)}")
    if origin is collections.abc.Mapping or tp in (dict, collections.abc.Mapping):
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else None
        if isinstance(value, dict):
            return {str(k): coerce(v, vt) for k, v in value.items()}
        if isinstance(value, str) and ":" in value:
            pairs = [p.partition(":") for p in value.strip().strip("{}").split(",") if p.strip()]
            return {k.strip().strip("'\""): coerce(v.strip(), vt) for k, _, v in pairs}
        raise ValueError("not a mapping (name:value,...)")
    if origin is collections.abc.Sequence or tp is collections.abc.Sequence:
        origin = tuple
    if origin in (tuple, list) or tp in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else None
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            items = [v.strip() for v in text.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        elif type(value).__module__ == "numpy" and hasattr(value, "tolist"):
            items = list(value.tolist()) if getattr(value, "ndim", 0) else [value.item()]
        else:
            items = [value]
        conv = [coerce(v, inner) for v in items]
        return tuple(conv) if (origin or tp) is tuple else conv
    if tp is bool:
        if isinstance(value, bool):
            return value
        if type(value).__name__ == "bool_" and type(value).__module__ == "numpy":
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError("not a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError("a boolean is not an integer")
        if isinstance(value, numbers.Integral) and type(value).__name__ != "bool_":
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise ValueError("not an integer") from None
        raise ValueError(f"not an integer: {type(value).__name__}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError("not a number") from None
        if math.isnan(out):
            raise ValueError("NaN is not allowed")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"not a string: {type(value).__name__}")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError(f"cannot build {type_name(tp)} from {value!r}")


def _is_none_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("none", "null")


def _try_order(tp: Any) -> int:
    # bool before int before float before anything else before str
    order = {bool: 0, int: 1, float: 2}
    return order.get(tp, 4 if tp is str else 3)


def to_json_value(value: Any) -> Any:
    """A hyperparameter value as a JSON value (tuples → lists, numpy scalars → Python)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    if hasattr(value, "get_params"):
        return {"class": type(value).__name__, "params": to_json_value(value.get_params())}
    return repr(value)
