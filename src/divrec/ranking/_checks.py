"""Cross-field checks shared by the ranking models' configs (`validate` helpers)."""

from __future__ import annotations

from divrec.nn.train import TrainingConfig


def cpu_only(cfg: TrainingConfig) -> None:
    """The model trains and scores on the CPU only (its inputs are numpy / scipy arrays).

    Raises:
        ValueError: `device` is not "cpu".
    """
    if cfg.device != "cpu":
        raise ValueError(f"device={cfg.device!r}: this model trains on the CPU only")


def no_validation(cfg: TrainingConfig) -> None:
    """The model has no validation split, so no early stopping.

    Raises:
        ValueError: `patience` or `valid_fraction` is set.
    """
    if cfg.patience is not None:
        raise ValueError(f"patience={cfg.patience!r}: this model has no early stopping")
    if cfg.valid_fraction:
        raise ValueError(
            f"valid_fraction={cfg.valid_fraction!r}: this model has no validation split"
        )
