"""Optional dependencies: which extra installs which library, and one-line errors when absent.

`pip install divrec` is the light core (data, metrics, re-rankers, pipeline, evaluation,
experiments, service core: numpy, scipy, numba, pandas, pyarrow, ...). torch, faiss and implicit
come with extras (`pip install 'divrec[models]'`, `'divrec[ann]'`, `'divrec[all]'`). A model
whose extra is missing fails on first use with :class:`MissingExtraError`, one line naming the
extra::

    >>> torch = require("torch")  # doctest: +SKIP
    divrec._extras.MissingExtraError: torch is missing; it comes with divrec's [models]
    extra: pip install 'divrec[models]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "extra_error", "require"]

#: top-level module → the divrec extra that installs it
EXTRAS: dict[str, str] = {
    "torch": "models",
    "implicit": "models",
    "faiss": "ann",
    "torch_geometric": "graph",
    "pyspark": "spark",
    "py4j": "spark",
    "optuna": "tune",
    "fastapi": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "orjson": "serve",
    "httpx": "serve",
    "lenskit": "adapters",
    "rectools": "adapters",
    "pdoc": "docs",
}


class MissingExtraError(ModuleNotFoundError, ValueError):
    """An optional library is not installed; the message names the extra that installs it.

    A `ModuleNotFoundError` (code catching import errors keeps working) and a `ValueError` (the
    CLI reports it as one line with exit code 2).
    """


def _message(module: str, extra: str, what: str | None = None) -> str:
    head = f"{what} needs {module}, which is not installed" if what else f"{module} is missing"
    return f"{head}; it comes with divrec's [{extra}] extra: pip install 'divrec[{extra}]'"


def extra_error(err: ImportError, what: str | None = None) -> MissingExtraError | None:
    """The one-line error for an `ImportError` of an optional library, or None.

    Args:
        err: an import error (its ``name`` is the module that failed to import).
        what: what needed it (e.g. ``"model 'tr'"``), named in the message.

    Returns:
        a `MissingExtraError` naming the extra when the missing module belongs to one; None for
        any other import error (a bug, or a library broken in another way).
    """
    name = getattr(err, "name", None)
    if not isinstance(err, ModuleNotFoundError) or not name:
        return None
    top = name.partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return MissingExtraError(_message(top, extra, what), name=top)


def require(module: str, extra: str | None = None, what: str | None = None) -> ModuleType:
    """Imports an optional library, or raises a one-line `MissingExtraError` naming its extra.

    Args:
        module: the module to import (``"torch"``, ``"faiss"``, ``"lenskit.pipeline"``).
        extra: the divrec extra that installs it; default: looked up in `EXTRAS`.
        what: what needs it, named in the message.

    Returns:
        the imported module.

    Raises:
        MissingExtraError: the module (or its top-level package) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.partition(".")[0]
        missing = (err.name or "").partition(".")[0]
        if missing != top:
            raise
        extra = extra or EXTRAS.get(top)
        if extra is None:
            raise
        raise MissingExtraError(_message(top, extra, what), name=top) from None
