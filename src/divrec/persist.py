"""One persistence convention for every model, re-ranker and `Pipeline`.

`obj.save(path)` writes one numpy `.npz` file; `divrec.load(path)` reads it back and
dispatches on the stored class name. The file holds

* ``__meta__``: a JSON document with the format tag, the divrec version, the class as
  ``"module:Class"``, its constructor parameters (JSON values; nested divrec objects such as
  a pipeline's stages are stored recursively under a key prefix) and the fitted scalars;
* one array per fitted array attribute (``a/<prefix><name>``), sparse matrices as their CSR
  parts (``s/<prefix><name>/data|indices|indptr|shape``) and torch modules as their
  ``state_dict`` tensors (``t/<prefix><name>/<key>``).

Nothing is ever unpickled: arrays are read with ``allow_pickle=False`` and torch weights are
rebuilt from plain arrays (no ``torch.load``), so a model file cannot execute code. Classes
are only instantiated when they are divrec classes (``divrec.*`` modules) that subclass
`Persistable`. A corrupted, truncated or foreign file is a one-line `ValueError`.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.atomic import open_atomic

FORMAT = "divrec-model/1"

__all__ = ["FORMAT", "Persistable", "load"]


class Persistable:
    """Mixin: `save(path)` of constructor parameters and fitted attributes (names ending `_`).

    Fitted attributes may be numpy arrays, scipy sparse matrices, JSON scalars (int, float,
    bool, str, None) and lists/tuples/dicts of them, torch modules, or other `Persistable`
    objects. Classes holding anything else (or torch modules, which need an architecture)
    override `_rebuild_module` / `_extra_state` / `_set_extra_state`.
    """

    #: fitted attributes that are not saved (caches rebuilt on demand)
    _transient: tuple[str, ...] = ()

    def save(self, path: str | Path) -> Path:
        """Writes this object (fitted or not) to `path` (`.npz` appended when missing).

        Returns:
            The path written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays: dict[str, np.ndarray] = {}
        meta = {"format": FORMAT, "version": _version(), **_encode_object(self, "", arrays)}
        with open_atomic(path, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    # hooks ----------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        """Extra fitted state as plain arrays/JSON values (default: none)."""
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores `_extra_state` (default: nothing)."""

    def _rebuild_module(self, name: str, state: dict[str, np.ndarray]):
        """A torch module for attribute `name` with the architecture of `state`."""
        raise ValueError(f"{type(self).__name__} cannot rebuild torch module {name!r}")

    @classmethod
    def load(cls, path: str | Path):
        """Reads an object written by `save`; it must be an instance of this class."""
        obj = load(path)
        if not isinstance(obj, cls):
            raise ValueError(f"{path}: holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj


def _version() -> str:
    from divrec._version import __version__

    return __version__


# ---------------------------------------------------------------------- encoding
def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _encode_value(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """A parameter or scalar state value → JSON (nested objects stored under `key/`)."""
    if isinstance(value, Persistable):
        return {"__object__": _encode_object(value, key + "/", arrays)}
    if isinstance(value, np.ndarray):
        arrays[f"a/{key}"] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode_value(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode_value(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot save {key}: dict keys must be strings")
        return {"__dict__": {k: _encode_value(v, f"{key}.{k}", arrays) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot save {key!r}: unsupported type {type(value).__name__}")


def _encode_object(obj: Persistable, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    params = {}
    getter = getattr(obj, "get_params", None)
    raw = getter() if getter is not None else {}
    for name, value in raw.items():
        params[name] = _encode_value(value, f"{prefix}param.{name}", arrays)
    fitted: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if not name.endswith("_") or name.startswith("_") or name in obj._transient:
            continue
        key = f"{prefix}{name}"
        if sp.issparse(value):
            m = value.tocsr()
            arrays[f"s/{key}/data"] = m.data
            arrays[f"s/{key}/indices"] = m.indices
            arrays[f"s/{key}/indptr"] = m.indptr
            arrays[f"s/{key}/shape"] = np.asarray(m.shape, dtype=np.int64)
            fitted[name] = {"__sparse__": key}
        elif _is_torch_module(value):
            for k, t in value.state_dict().items():
                arrays[f"t/{key}/{k}"] = t.detach().cpu().numpy()
            fitted[name] = {"__module__": key}
        else:
            fitted[name] = _encode_value(value, key, arrays)
    extra = {
        k: _encode_value(v, f"{prefix}extra.{k}", arrays) for k, v in obj._extra_state().items()
    }
    return {"class": _class_path(obj), "params": params, "fitted": fitted, "extra": extra}


def _is_torch_module(value: Any) -> bool:
    mod = type(value).__module__
    if not mod.startswith("torch") and "torch.nn" not in str(type(value).__mro__):
        return False
    import torch

    return isinstance(value, torch.nn.Module)


# ---------------------------------------------------------------------- decoding
def load(path: str | Path):
    """Reads any divrec object written by `save` (a model, a re-ranker, a `Pipeline`).

    Raises:
        ValueError: the file is missing, corrupted, not a divrec model file, or names a class
            outside divrec.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: corrupted or foreign model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise ValueError(f"{path}: not a divrec model file (no __meta__)")
            meta = json.loads(str(z["__meta__"]))
            if not isinstance(meta, dict):
                kind = type(meta).__name__
                raise ValueError(f"{path}: not a divrec model file (metadata is a JSON {kind})")
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a divrec model file (format {meta.get('format')!r})")
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: corrupted or foreign model file ({type(err).__name__})"
        ) from None
    try:
        return _decode_object(meta, arrays)
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        msg = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path}: corrupted model file ({type(err).__name__}: {msg})") from None
    except ValueError as err:
        msg = str(err).splitlines()[0] if str(err) else "ValueError"
        raise ValueError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


#: Classes that became registry presets ("declare each stage once"): a file saved under the
#: old class loads as the preset's class with the values the old subclass fixed (the file's
#: own parameters win where it stored them).
_SEQ = "divrec.retrieval.sequential:SequentialRecommender"
RENAMED_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "divrec.retrieval.two_tower:MFbRecommender": (
        "divrec.retrieval.two_tower:TwoTowerRecommender",
        {"loss": "mfb", "tau": 0.125, "batch_size": 4096, "epochs": 20.0},
    ),
    "divrec.retrieval.sequential:YouTubeDNN": (_SEQ, {"encoder": "mean"}),
    "divrec.retrieval.sequential:TRYouTube": (
        _SEQ,
        {"encoder": "mean", "loss": "bi", "l2_norm": True},
    ),
    "divrec.retrieval.sequential:ComiRecSA": (_SEQ, {"encoder": "sa"}),
    "divrec.retrieval.sequential:ComiRecDR": (_SEQ, {"encoder": "dr"}),
    "divrec.ranking.dcn:IPWRanker": ("divrec.ranking.dcn:DCNRanker", {"weighting": "ipw"}),
    "divrec.ranking.hi_nn:CFNNRecommender": (
        "divrec.ranking.hi_nn:HINNRecommender",
        {"p2p_only": True},
    ),
}


def _resolve_saved_class(path: str) -> tuple[type, dict[str, Any]]:
    """The class a file names, and the parameters a renamed class implies."""
    fixed: dict[str, Any] = {}
    if path in RENAMED_CLASSES:
        path, fixed = RENAMED_CLASSES[path]
    module, _, name = path.partition(":")
    if not (module == "divrec" or module.startswith("divrec.")) or not name:
        raise ValueError(f"refusing to load class {path!r}: not a divrec class")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f"unknown class {path!r} (saved by another divrec version?)") from None
    if not isinstance(cls, type) or not issubclass(cls, Persistable):
        raise ValueError(f"refusing to load class {path!r}: not a divrec persistable class")
    return cls, dict(fixed)


def _decode_value(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode_value(v, arrays) for v in value]
    if isinstance(value, dict):
        if "__object__" in value:
            return _decode_object(value["__object__"], arrays)
        if "__array__" in value:
            return arrays[f"a/{value['__array__']}"]
        if "__tuple__" in value:
            return tuple(_decode_value(v, arrays) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode_value(v, arrays) for k, v in value["__dict__"].items()}
        raise TypeError(f"unknown encoded value {sorted(value)}")
    return value


def _decode_object(meta: dict, arrays: dict[str, np.ndarray]):
    cls, fixed = _resolve_saved_class(meta["class"])
    params = {**fixed, **{k: _decode_value(v, arrays) for k, v in meta["params"].items()}}
    try:
        obj = cls(**params)
    except (TypeError, ValueError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"cannot rebuild {meta['class']} from its saved parameters: {msg}"
        ) from None
    modules = {}
    params_of = getattr(obj, "get_params", None)
    hyper = set(params_of()) if params_of is not None else set()
    for name, value in meta["fitted"].items():
        if name in hyper:  # older files also stored hyperparameters ending in "_" (lambda_)
            continue
        if isinstance(value, dict) and "__module__" in value:
            modules[name] = value["__module__"]
        elif isinstance(value, dict) and "__sparse__" in value:
            key = value["__sparse__"]
            shape = tuple(int(s) for s in arrays[f"s/{key}/shape"])
            parts = (arrays[f"s/{key}/data"], arrays[f"s/{key}/indices"], arrays[f"s/{key}/indptr"])
            matrix = sp.csr_matrix(parts, shape=shape)
            try:  # indices inside the shape, a non-decreasing indptr
                matrix.check_format(full_check=True)
            except ValueError as err:
                raise ValueError(f"corrupted model file: {meta['class']} {name}: {err}") from None
            setattr(obj, name, matrix)
        else:
            setattr(obj, name, _decode_value(value, arrays))
    _check_fitted_shapes(meta["class"], obj, meta["fitted"])
    for name, key in modules.items():  # after the arrays: architectures read them
        pre = f"t/{key}/"
        state = {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}
        setattr(obj, name, _load_module(obj, name, state))
    extra = {k: _decode_value(v, arrays) for k, v in meta.get("extra", {}).items()}
    if extra:
        obj._set_extra_state(extra)
    if hasattr(obj, "_after_load"):
        obj._after_load()
    return obj


def _check_fitted_shapes(cls: str, obj: Any, fitted: dict) -> None:
    """Refuses fitted state whose shapes disagree (they would fail later, with `IndexError`,
    at the first request): by the naming convention of fitted attributes, `user_*_` arrays
    have one row per user and `item_*_` arrays one row per item (`n_users_`, `n_items_`,
    else `user_items_`'s shape, else the first such array), and the factor pairs
    (`user_factors_` / `item_factors_`, `user_vectors_` / `item_vectors_`) share a width."""
    arrays = {}
    for name in fitted:
        value = getattr(obj, name, None)
        if isinstance(value, np.ndarray | sp.spmatrix) and value.ndim >= 1:
            arrays[name] = value
    sizes: dict[str, int | None] = {}
    for side in ("user", "item"):
        n = getattr(obj, f"n_{side}s_", None) if f"n_{side}s_" in fitted else None
        if not isinstance(n, int | np.integer) and "user_items_" in arrays:
            n = arrays["user_items_"].shape[0 if side == "user" else 1]
        sizes[side] = None if not isinstance(n, int | np.integer) else int(n)
    for name, value in arrays.items():
        if name == "user_items_":
            want = (sizes["user"], sizes["item"])
            if None not in want and value.shape != want:
                raise ValueError(
                    f"corrupted model file: {cls} {name} has shape {value.shape}, expected {want}"
                )
            continue
        side = name.split("_", 1)[0]
        if side not in sizes or not name.endswith("_"):
            continue
        if sizes[side] is None:
            sizes[side] = value.shape[0]
        elif value.shape[0] != sizes[side]:
            raise ValueError(
                f"corrupted model file: {cls} {name} has {value.shape[0]} rows for "
                f"{sizes[side]} {side}s"
            )
    for a, b in (("user_factors_", "item_factors_"), ("user_vectors_", "item_vectors_")):
        if a in arrays and b in arrays and arrays[a].ndim == arrays[b].ndim == 2:
            if arrays[a].shape[1] != arrays[b].shape[1]:
                raise ValueError(
                    f"corrupted model file: {cls} {a} and {b} have widths "
                    f"{arrays[a].shape[1]} and {arrays[b].shape[1]}"
                )


def _load_module(obj: Persistable, name: str, state: dict[str, np.ndarray]):
    import torch

    module = obj._rebuild_module(name, state)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    module.eval()
    return module
