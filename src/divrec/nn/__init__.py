"""Shared torch pieces: the training harness (`divrec.nn.train`) and building blocks.

Importing `divrec.nn` does not import torch; its submodules that define modules do.
"""

from divrec.nn.train import (
    TrainingConfig,
    TrainLoop,
    holdout_split,
    make_optimizer,
    resolve_device,
    training_scope,
)

__all__ = [
    "TrainLoop",
    "TrainingConfig",
    "holdout_split",
    "make_optimizer",
    "resolve_device",
    "training_scope",
]
