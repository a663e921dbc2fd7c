"""Contract checks a user can run on their own stage (LensKit's `lenskit.testing` idea).

divrec's own test suite runs these over every registered model and re-ranker
(`tests/test_contract.py`); a user who writes a retriever, ranker or re-ranker can call them
on it::

    from divrec.testing import check_config_round_trip, check_fit_keeps_global_state

    def test_my_stage(data):
        check_config_round_trip(MyRecommender(factors=8))
        check_fit_keeps_global_state(lambda: MyRecommender(factors=8), data)

Each check raises `AssertionError` with a message naming what broke.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from divrec.params import signature_types
from divrec.stage import Configured, StageConfig

__all__ = [
    "check_config_round_trip",
    "check_declared_once",
    "check_fit_keeps_global_state",
    "cli_string",
]


def cli_string(value: Any) -> str:
    """How a value is written on a command line (`--param name=VALUE`)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(cli_string(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{cli_string(v)}" for k, v in value.items())
    return str(value)


def check_config_round_trip(stage: Configured) -> None:
    """The stage's config survives every form it is written in.

    Checks: the constructor from `get_params()`; the config object itself; `with_params()`;
    the JSON form (`to_json` → `from_dict`); the command-line form (every value as a
    string, coerced through the declared types); `save` / `divrec.load` of the unfitted
    stage; hyperparameters are read-only; and `repr` names the class.
    """
    from divrec.persist import load

    cls = type(stage)
    cfg = stage.config
    name = cls.__name__
    assert isinstance(cfg, StageConfig), f"{name}.config is not a StageConfig"
    assert cls(**stage.get_params()).config == cfg, f"{name}(**get_params()) differs"
    assert cls(cfg).config == cfg, f"{name}(config) differs"
    copy = stage.with_params()
    assert copy is not stage and copy.config == cfg, f"{name}.with_params() differs"
    as_json = json.loads(json.dumps(cfg.to_json()))
    assert type(cfg).from_dict(as_json) == cfg, f"{name}: JSON round trip differs"
    as_cli = {k: cli_string(v) for k, v in cfg.to_dict().items()}
    assert type(cfg).from_dict(as_cli) == cfg, f"{name}: command-line round trip differs"
    with tempfile.TemporaryDirectory() as tmp:
        back = load(stage.save(Path(tmp) / "stage"))
    assert type(back) is cls and back.config == cfg, f"{name}: save/load differs"
    for f in dataclasses.fields(cfg):
        try:
            setattr(stage, f.name, getattr(cfg, f.name))
        except AttributeError:
            continue
        raise AssertionError(f"{name}.{f.name} can be assigned: hyperparameters are read-only")
    assert repr(stage).startswith(f"{name}("), f"{name}: repr does not name the class"


def check_declared_once(cls: type) -> None:
    """The stage declares its hyperparameters only in its config: no constructor of its own,
    and every hyperparameter the CLI sees is a config field."""
    assert issubclass(cls, Configured), f"{cls.__name__} is not a configured stage"
    own = [c.__name__ for c in cls.__mro__ if "__init__" in vars(c) and c is not Configured]
    own = [c for c in own if c not in ("object", "Persistable")]
    assert not own, f"{cls.__name__}: constructor(s) re-declared in {own}"
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(signature_types(cls)) == fields, f"{cls.__name__}: CLI parameters != config"


def check_fit_keeps_global_state(make: Callable[[], Any], *fit_args: Any, **fit_kw: Any) -> Any:
    """Fitting a fresh stage leaves torch's thread count and global RNG, and numpy's global
    RNG, as they were. Returns the fitted stage.

    Args:
        make: builds the unfitted stage.
        *fit_args, **fit_kw: the arguments of its `fit`.
    """
    torch = sys.modules.get("torch")
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global state is checked)
    if torch is not None:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(2 if old_threads != 2 else 1)
        threads = torch.get_num_threads()
        torch_state = torch.get_rng_state()
    stage = make().fit(*fit_args, **fit_kw)
    torch = sys.modules.get("torch")  # the fit may have imported it
    try:
        if torch is not None and "torch_state" in locals():
            assert torch.get_num_threads() == threads, (
                f"{type(stage).__name__}.fit changed torch's thread count "
                f"({threads} → {torch.get_num_threads()})"
            )
            assert torch.equal(torch.get_rng_state(), torch_state), (
                f"{type(stage).__name__}.fit changed torch's global RNG state"
            )
        new_state = np.random.get_state()  # noqa: NPY002
        assert np_state[0] == new_state[0] and np.array_equal(np_state[1], new_state[1]), (
            f"{type(stage).__name__}.fit changed numpy's global RNG state"
        )
    finally:
        if torch is not None and "old_threads" in locals():
            torch.set_num_threads(old_threads)
    return stage
