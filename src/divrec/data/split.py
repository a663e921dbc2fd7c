"""The `Split` container: train / valid / test logs over one universe, plus sampled negatives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divrec.data.interactions import Interactions


@dataclass(frozen=True, eq=False)
class Split:
    """A train / (valid) / test split of one interaction log.

    All logs are row subsets of the same source (built with `Interactions.select`), so they
    share the user and item universe: internal indices mean the same thing in each.

    Attributes:
        train: the training log.
        test: the test log.
        valid: the validation log, or None when the protocol has none.
        negatives: `(n_test, n_neg)` int64 internal item indices aligned with the rows of
            `test` (sampled-evaluation protocol: rank each test item among its negatives), or
            None.
        protocol: a short description, e.g. "temporal 80:20".
    """

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    negatives: np.ndarray | None = None
    protocol: str = ""

    def __post_init__(self) -> None:
        for name in ("train", "test", "valid"):
            part = getattr(self, name)
            if part is None and name == "valid":
                continue
            if not isinstance(part, Interactions):
                raise TypeError(f"Split.{name} must be Interactions, got {type(part).__name__}")
            if part is not self.train and not _same_universe(part, self.train):
                raise ValueError(f"Split.{name} has another user/item universe than train")
        if self.negatives is not None:
            neg = np.asarray(self.negatives)
            if neg.ndim != 2 or neg.shape[0] != self.test.nnz:
                raise ValueError(
                    f"Split.negatives has shape {neg.shape}, expected ({self.test.nnz}, n_neg)"
                )
            if neg.size and not np.issubdtype(neg.dtype, np.integer):
                raise ValueError(f"Split.negatives must be integer item indices, got {neg.dtype}")
            neg = neg.astype(np.int64, copy=False)
            if neg.size and (neg.min() < 0 or neg.max() >= self.test.n_items):
                raise ValueError(f"Split.negatives out of item range [0, {self.test.n_items})")
            object.__setattr__(self, "negatives", neg)

    def test_users(self) -> np.ndarray:
        """`(n,)` int64 sorted distinct internal indices of the users with test rows."""
        return np.unique(self.test.users)

    def candidates(self) -> np.ndarray:
        """`(n_test, 1 + n_neg)` int64 candidate items per test row, the positive in column 0.

        Raises:
            ValueError: the split has no negatives.
        """
        if self.negatives is None:
            raise ValueError(f"split {self.protocol!r} has no negatives; candidates need them")
        return np.concatenate([self.test.items[:, None], self.negatives], axis=1)

    def summary(self) -> dict:
        """Row and user counts of each part, for reports."""
        out = {
            "protocol": self.protocol,
            "users": self.train.n_users,
            "items": self.train.n_items,
            "train": self.train.nnz,
            "valid": None if self.valid is None else self.valid.nnz,
            "test": self.test.nnz,
            "train_users": int(np.unique(self.train.users).size),
            "test_users": int(self.test_users().size),
            "n_negatives": None if self.negatives is None else int(self.negatives.shape[1]),
        }
        if self.valid is not None:
            out["valid_users"] = int(np.unique(self.valid.users).size)
        return out

    def __repr__(self) -> str:
        valid = "None" if self.valid is None else str(self.valid.nnz)
        neg = "None" if self.negatives is None else str(self.negatives.shape[1])
        return (
            f"Split(protocol={self.protocol!r}, train={self.train.nnz}, valid={valid}, "
            f"test={self.test.nnz}, negatives={neg})"
        )


def _same_universe(a: Interactions, b: Interactions) -> bool:
    if a.user_ids is b.user_ids and a.item_ids is b.item_ids:
        return True
    return bool(np.array_equal(a.user_ids, b.user_ids) and np.array_equal(a.item_ids, b.item_ids))
