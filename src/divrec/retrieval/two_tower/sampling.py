"""Negative sampling of the two-tower losses: the sampled-softmax background distribution
(TotalRecall Sec. 2.3, App. A.2 Eq. 9) and the MFb negative specs "[a:b]" / "[n]" (Sec. 3.5).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["SSM_SAMPLING", "mfb_negatives", "parse_negatives", "ssm_sampling_probabilities"]

SSM_SAMPLING = ("uniform", "popularity")


def ssm_sampling_probabilities(item_counts: np.ndarray, sampling: str) -> np.ndarray:
    """Background distribution p_n of the sampled-softmax negatives.

    Args:
        item_counts: `(n_items,)` training interactions per item.
        sampling: "uniform" (1/n_items) or "popularity" (the empirical item marginal
            count_i / Σ count, the q(i) of Eq. 3; items never seen in training are not drawn).

    Returns:
        `(n_items,)` float64 probabilities summing to 1.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if sampling == "uniform":
        return np.full(counts.shape, 1.0 / counts.size)
    if sampling == "popularity":
        if counts.sum() <= 0:
            raise ValueError("popularity sampling needs at least one training interaction")
        return counts / counts.sum()
    raise ValueError(f"ssm_sampling must be one of {SSM_SAMPLING}, got {sampling!r}")


def parse_negatives(spec: str) -> tuple[str, int, int]:
    """Parses an MFb negative-sampling spec (Sec. 3.5).

    Args:
        spec: "[a:b]" / "a:b" (a users paired with the positive item, b items paired with the
            positive user) or "[n]" / "n" (n uniform (u, i) pairs).

    Returns:
        `("split", a, b)` or `("joint", n, 0)`.
    """
    s = spec.strip().strip("[]").replace(" ", "")
    m = re.fullmatch(r"(\d+):(\d+)", s)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a + b == 0:
            raise ValueError(f"negative spec {spec!r} samples no negatives")
        return "split", a, b
    if re.fullmatch(r"\d+", s) and int(s) > 0:
        return "joint", int(s), 0
    raise ValueError(f"negative spec must look like '[0:8]' or '[8]', got {spec!r}")


def mfb_negatives(
    users: np.ndarray,
    items: np.ndarray,
    kind: str,
    n_a: int,
    n_b: int,
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """MFb's explicit negatives of a batch of positives (Sec. 3.5).

    Args:
        users: `(B,)` users of the positive pairs.
        items: `(B,)` items of the positive pairs.
        kind: "split" or "joint" (from `parse_negatives`).
        n_a: "split": random users paired with each positive item; "joint": uniform pairs.
        n_b: "split": random items paired with each positive user.
        rng: the model's numpy generator (users are drawn before items).
        n_users: number of users.
        n_items: number of items.

    Returns:
        `(users (B, n_a + n_b), items (B, n_a + n_b))` of the negative pairs (`(B, n)` for
        "joint").
    """
    b = users.shape[0]
    if kind == "split":
        neg_u = np.concatenate(
            [rng.integers(0, n_users, size=(b, n_a)), np.repeat(users[:, None], n_b, 1)], axis=1
        )
        neg_i = np.concatenate(
            [np.repeat(items[:, None], n_a, 1), rng.integers(0, n_items, size=(b, n_b))], axis=1
        )
        return neg_u, neg_i
    return rng.integers(0, n_users, size=(b, n_a)), rng.integers(0, n_items, size=(b, n_a))
