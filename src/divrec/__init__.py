"""divrec: diversity-aware recommendation across retrieval, ranking and re-ranking."""

from divrec._version import __version__

__all__ = ["__version__", "load"]


def load(path):
    """Reads any model, re-ranker or `Pipeline` written by its `save(path)`.

    See `divrec.persist` (no unpickling; a corrupted or foreign file is a `ValueError`).
    """
    from divrec.persist import load as _load

    return _load(path)
