"""The one training harness of divrec's torch models.

Training options live apart from the model's own hyperparameters (LensKit's
`TrainingOptions`): `TrainingConfig` is the config base every torch model's config extends
(seed, threads, device, progress, early stopping on a validation split carved from the
training data only). `training_scope` runs a fit with torch's thread count and global RNG
scoped: whatever a fit does, both are what they were before it once it returns. `TrainLoop`
owns the loop's bookkeeping: the progress bar, the optimizer step, per-epoch losses,
timing, and early stopping with the best weights restored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from divrec.stage import StageConfig, param
from divrec.threads import resolve_threads

__all__ = [
    "TrainLoop",
    "TrainingConfig",
    "holdout_split",
    "make_optimizer",
    "make_table_optimizer",
    "resolve_device",
    "supports",
    "training_scope",
]


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(StageConfig):
    """Options shared by every torch model (extended by each model's own config).

    Attributes:
        seed: seeds torch (inside `training_scope`) and the model's numpy sampling.
        threads: torch intra-op threads during the fit; None takes the `divrec.threads`
            policy (``DIVREC_THREADS`` or 1), 0 every available core.
        device: "cpu", "cuda" (fails in one line where torch sees no GPU), or "auto".
        progress: show a progress bar.
        patience: early stopping: stop after this many epochs without a better validation
            loss and keep the best epoch's weights (None: train every epoch). Needs
            `valid_fraction` > 0 where the model carves its own validation split.
        valid_fraction: share of the training examples held out as the validation split
            for early stopping (carved from training only; 0: none).
    """

    seed: int = 0
    threads: int | None = param(None, ge=0)
    device: str = "cpu"
    progress: bool = False
    patience: int | None = param(None, ge=1)
    valid_fraction: float = param(0.0, ge=0.0, lt=1.0)

    def validate(self) -> None:
        super().validate()
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ValueError(
                f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}"
            )


def supports(
    config: TrainingConfig, who: str, early_stopping: bool = False, cuda: bool = False
) -> None:
    """Rejects training options a model does not implement (call it from `validate`).

    An option a model would ignore is an error, never silently dropped: a model without
    early stopping rejects `patience` / `valid_fraction`, a CPU-only model any `device` but
    "cpu".

    Raises:
        ValueError: naming the option.
    """
    if not early_stopping and (config.patience is not None or config.valid_fraction > 0):
        raise ValueError(f"{who} has no early stopping: leave patience and valid_fraction unset")
    if not cuda and config.device != "cpu":
        raise ValueError(
            f"{who} trains on the CPU only: device must be 'cpu', got {config.device!r}"
        )


def resolve_device(device: str) -> Any:
    """The `torch.device` for a config's `device`; "cuda" without a GPU is a one-line error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but torch sees no CUDA GPU")
    return torch.device(device)


@contextlib.contextmanager
def training_scope(seed: int, threads: int | None = None, device: str = "cpu") -> Iterator[Any]:
    """Runs a fit with torch's threads and global RNG scoped; restores both on exit.

    Inside, torch uses `resolve_threads(threads)` intra-op threads and its global generator
    (CPU, and the current CUDA device when `device` is a GPU) is seeded with `seed`. On exit,
    normal or not, the thread count and every generator state are what they were before.

    Yields:
        the `torch.device` to train on.
    """
    import torch

    dev = resolve_device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    old_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        torch.set_num_threads(resolve_threads(threads))
        try:
            yield dev
        finally:
            torch.set_num_threads(old_threads)


def make_optimizer(params: Iterable[Any], name: str = "adam", lr: float = 1e-3, **kw: Any):
    """Adam (`name="adam"`), AdamW ("adamw"), SGD ("sgd") or Adagrad ("adagrad")."""
    import torch

    table = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "adagrad": torch.optim.Adagrad,
    }
    if name not in table:
        raise ValueError(f"optimizer must be one of {sorted(table)}, got {name!r}")
    return table[name](params, lr=lr, **kw)


class _Optimizers:
    """Several torch optimizers stepped as one (`zero_grad`, `step`, joint `param_groups`)."""

    def __init__(self, *optimizers: Any) -> None:
        self.optimizers = [o for o in optimizers if o is not None]

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> list[dict]:
        return [o.state_dict() for o in self.optimizers]


def make_table_optimizer(
    module: Any,
    tables: Iterable[Any],
    kind: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
):
    """Adam for a model whose embedding tables may take sparse (row-wise) updates.

    ``kind="adam"``: one dense `torch.optim.Adam` over every parameter (each step updates
    every row of every table: the gradient of a table is dense, and Adam's moments decay and
    move rows the batch did not touch). Where every parameter is a floating-point tensor on
    the CPU or a CUDA device, torch's fused kernel does the step (``fused=True``: one pass over
    each tensor instead of one per moment; the same Adam up to float rounding, 1-2 ulp after
    50 steps; 1.3-1.5x the examples/s of TR's two-tower at one thread,
    benchmarks/results/train_tower.json).

    ``kind="sparse_adam"``: each `torch.nn.Embedding` of `tables` is switched to sparse
    gradients (``sparse=True``, read at each forward, so the initial weights are untouched)
    and its table is updated by `torch.optim.SparseAdam` ("lazy" Adam): only the rows looked
    up in the batch get a step, and their first / second moments are updated only at those
    steps (Kingma & Ba 2015, Alg. 1, applied to the batch's rows; a row's bias correction
    uses the global step count). This differs from dense Adam, whose moments of untouched
    rows decay towards zero and whose update of a row with zero gradient is not zero while
    its first moment is not. Every other parameter (MLPs, dense layers) gets dense Adam.

    Args:
        module: the torch module to train.
        tables: its `torch.nn.Embedding` tables that are only read by lookups (a table whose
            `weight` is also used directly would get a dense gradient: leave it out).
        kind: "adam" or "sparse_adam".
        lr: learning rate (both optimizers; a schedule may rewrite every `param_groups` lr).
        weight_decay: L2 weight decay of dense Adam; must be 0 with "sparse_adam"
            (SparseAdam has none).

    Returns:
        an object with `zero_grad(set_to_none)`, `step()` and `param_groups`.
    """
    import torch

    if kind == "adam":
        params = list(module.parameters())
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=_fusable(params))
    if kind != "sparse_adam":
        raise ValueError(f"optimizer must be 'adam' or 'sparse_adam', got {kind!r}")
    if weight_decay:
        raise ValueError("weight_decay must be 0 with optimizer='sparse_adam' (it has no decay)")
    weights: list[Any] = []
    for table in tables:
        if table is None:
            continue
        if not isinstance(table, torch.nn.Embedding) or table.max_norm is not None:
            raise ValueError(f"tables must be torch.nn.Embedding without max_norm, got {table!r}")
        table.sparse = True
        weights.append(table.weight)
    table_ids = {id(p) for p in weights}
    dense = [p for p in module.parameters() if id(p) not in table_ids and p.requires_grad]
    return _Optimizers(
        torch.optim.SparseAdam(weights, lr=lr) if weights else None,
        torch.optim.Adam(dense, lr=lr) if dense else None,
    )


def _fusable(params: list[Any]) -> bool | None:
    """True where torch's fused Adam runs on every tensor of `params` (else None: default)."""
    ok = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
    return True if ok else None


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(train, valid)` example indices: a seeded `fraction` of `range(n)` held out.

    The validation split is carved from the training examples only; with `fraction` 0 it is
    empty and the training indices are `arange(n)`.
    """
    if fraction <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng([seed, 0x5EED])
    perm = rng.permutation(n)
    n_valid = min(n - 1, max(1, int(round(fraction * n))))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


class TrainLoop:
    """Bookkeeping of one training loop: progress, optimizer steps, losses, early stopping.

    Usage::

        with TrainLoop("DCN", total_steps=epochs * steps, progress=cfg.progress,
                       patience=cfg.patience) as loop:
            for epoch in range(epochs):
                for batch in batches:
                    loop.step(opt, loss_fn(batch), weight=len(batch))
                if loop.end_epoch(net, valid_loss=...):
                    break
            loop.restore_best(net)

    Attributes:
        train_loss: mean training loss per epoch (weighted by `step`'s `weight`).
        valid_loss: validation loss per epoch (where given).
        epoch_seconds: CPU seconds per epoch.
        best_epoch: the epoch whose weights `restore_best` restores (None: no validation).
        stopped_early: whether `end_epoch` asked to stop before the last epoch.
    """

    def __init__(
        self,
        name: str,
        total_steps: int,
        progress: bool = False,
        patience: int | None = None,
        min_delta: float = 0.0,
    ) -> None:
        self.name = name
        self.total_steps = int(total_steps)
        self.progress = progress
        self.patience = patience
        self.min_delta = min_delta
        self.train_loss: list[float] = []
        self.valid_loss: list[float] = []
        self.epoch_seconds: list[float] = []
        self.best_epoch: int | None = None
        self.stopped_early = False
        self._best_state: dict[str, Any] | None = None
        self._sum = 0.0
        self._weight = 0.0
        self._t0 = time.process_time()
        self._bar = None
        self._task = None

    def __enter__(self) -> TrainLoop:
        from rich.progress import Progress

        self._bar = Progress(disable=not self.progress, transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self.name, total=self.total_steps)
        self._t0 = time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def add_task(self, name: str, total_steps: int) -> None:
        """Starts a new progress line (a second training phase)."""
        if self._bar is not None:
            self._task = self._bar.add_task(name, total=int(total_steps))

    def step(
        self,
        opt: Any,
        loss: Any,
        weight: float = 1.0,
        advance: int = 1,
        set_to_none: bool = True,
    ) -> float:
        """One optimizer step on `loss`; returns the loss value (accumulated per epoch).

        Args:
            opt: the optimizer.
            loss: the scalar loss tensor of the batch.
            weight: the batch's weight in the epoch's mean loss (e.g. its size).
            advance: progress-bar units this step covers.
            set_to_none: passed to `zero_grad`.
        """
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        self.record(value, weight, advance)
        return value

    def record(self, value: float, weight: float = 1.0, advance: int = 1) -> None:
        """Accumulates a loss computed outside `step` and advances the progress bar."""
        self._sum += value * weight
        self._weight += weight
        if self._bar is not None:
            self._bar.advance(self._task, advance)

    def end_epoch(self, module: Any = None, valid_loss: float | None = None) -> bool:
        """Closes an epoch; returns True when early stopping says to stop.

        Args:
            module: the torch module whose best weights to keep (with `valid_loss`).
            valid_loss: this epoch's validation loss, or None.
        """
        self.train_loss.append(self._sum / self._weight if self._weight else 0.0)
        self._sum, self._weight = 0.0, 0.0
        now = time.process_time()
        self.epoch_seconds.append(now - self._t0)
        self._t0 = now
        if valid_loss is None:
            return False
        self.valid_loss.append(float(valid_loss))
        epoch = len(self.valid_loss) - 1
        best = None if self.best_epoch is None else self.valid_loss[self.best_epoch]
        if best is None or valid_loss < best - self.min_delta:
            self.best_epoch = epoch
            if module is not None:
                self._best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.stopped_early = True
            return True
        return False

    def restore_best(self, module: Any) -> None:
        """Loads the best validation epoch's weights into `module` (no-op without one)."""
        if self._best_state is not None:
            module.load_state_dict(self._best_state)
