"""The Spark models by name: a stage (`StageSpec`: name + config values) → an unfitted model.

`divrec spark train --model NAME --param k=v` builds its model here, through the same typed
coercion as every registered stage (`divrec.params`). Importing this module imports neither
pyspark nor the models; `make_model` imports `divrec.spark.train` when it builds one.
"""

from __future__ import annotations

import importlib
from typing import Any

from divrec.params import ParamError, coerce_params
from divrec.pipeline.spec import StageSpec
from divrec.registry import Preset

__all__ = ["MODELS", "check_model", "make_model"]

#: Spark models: implicit ALS, and the HI factorizations as presets of `SparkHI`'s `kind`
MODELS: dict[str, Preset] = {
    "ials": Preset("divrec.spark.train:SparkALS"),
    "p2p": Preset("divrec.spark.train:SparkHI", {"kind": "p2p"}),
    "n2p": Preset("divrec.spark.train:SparkHI", {"kind": "n2p"}),
    "hi-rt": Preset("divrec.spark.train:SparkHI", {"kind": "hi-rt"}),
}


#: the config class of each model target (`divrec.spark.config`, no pyspark import)
_CONFIGS = {
    "divrec.spark.train:SparkALS": "SparkALSConfig",
    "divrec.spark.train:SparkHI": "SparkHIConfig",
}


def _values(stage: StageSpec, option: str, cls: Any) -> dict:
    entry = MODELS[stage.name]
    fixed = sorted(set(entry.params) & set(stage.params))
    if fixed:
        raise ParamError(
            f"{option} {fixed[0]} is set by the model name ({', '.join(MODELS)}); drop it"
        )
    values = coerce_params(cls, dict(stage.params), f"Spark model {stage.name!r}", option)
    return {**entry.params, **values}


def check_model(stage: StageSpec | str, option: str = "--param") -> None:
    """Validates `stage` (name, parameter names, types and bounds) without importing pyspark.

    Raises:
        ParamError / ValueError: as `make_model`, one line.
    """
    if isinstance(stage, str):
        stage = StageSpec(stage)
    if stage.name not in MODELS:
        raise ParamError(f"unknown Spark model {stage.name!r}; known: {', '.join(MODELS)}")
    from divrec.spark import config
    from divrec.stage import Configured

    cfg = getattr(config, _CONFIGS[MODELS[stage.name].target])

    class _Shim(Configured):  # coerce_params reads the hyperparameters from `Config`
        Config = cfg

    cfg(**_values(stage, option, _Shim))  # the config validates its bounds


def make_model(stage: StageSpec | str, option: str = "--param") -> Any:
    """The unfitted Spark model of `stage` (its name's preset + its config values).

    Args:
        stage: a `StageSpec` (or a bare name) naming one of `MODELS`.
        option: how errors name the parameters' option.

    Raises:
        ParamError: an unknown name or parameter, a value of the wrong type or out of its
            bounds, or a parameter the name sets (`kind`); one line.
    """
    if isinstance(stage, str):
        stage = StageSpec(stage)
    if stage.name not in MODELS:
        raise ParamError(f"unknown Spark model {stage.name!r}; known: {', '.join(MODELS)}")
    module, _, attr = MODELS[stage.name].target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(**_values(stage, option, cls))
