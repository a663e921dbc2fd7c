"""Ranking-stage models.

Every model here is a torch model (the `[models]` extra). Names are imported on first use
(PEP 562), so `import divrec.ranking` works in the light core, and a name whose library is
missing raises `divrec._extras.MissingExtraError` (one line naming the extra).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "CDMConfig": "divrec.ranking.cdm",
    "CDMRanker": "divrec.ranking.cdm",
    "DCNConfig": "divrec.ranking.dcn",
    "DCNRanker": "divrec.ranking.dcn",
    "HINNConfig": "divrec.ranking.hi_nn",
    "HINNRecommender": "divrec.ranking.hi_nn",
    "HINet": "divrec.ranking.hi_nn",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        from divrec._extras import extra_error

        try:
            module = importlib.import_module(_NAMES[name])
        except ModuleNotFoundError as err:
            missing = extra_error(err, f"divrec.ranking.{name}")
            if missing is None:
                raise
            raise missing from None
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'divrec.ranking' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
