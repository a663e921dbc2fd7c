"""Simulated users: a multinomial-logit choice model with a no-click option, position
attention and a boredom (diversity-seeking) state (RecSim / T-RECS style).

Choice model. A user `u` is shown a feed of `K` items at positions `p = 0..K−1` and makes
sequential choices. At each step, with `A` the not-yet-clicked items of the feed,

    P(click i) = a_p(i) exp(v_ui) / (exp(v_0) + Σ_{j ∈ A} a_p(j) exp(v_uj)),
    P(stop)    = exp(v_0)      / (exp(v_0) + Σ_{j ∈ A} a_p(j) exp(v_uj)),

with the position attention `a_p = (p + 1)^(−η)` (`position_decay` η ≥ 0) and the
no-click utility `v_0` (`no_click`). The user stops at the first "stop" or when the feed
is exhausted. Utilities are

    v_ui = γ · z_ui − β · (g_iᵀ b_u),

`z_ui` the ground-truth preference (a per-user z-scored model score), `γ` `preference_scale`,
`g_i` the unit attribute vector of item `i` (genres), `b_u` the user's boredom state and
`β ≥ 0` the diversity-seeking strength (`boredom`; 0 switches it off). After every click
on `c`, `b_u ← (1 − ρ) b_u + ρ g_c` (`boredom_rate` ρ); at the end of a round
`b_u ← δ b_u` (`boredom_decay` δ). So a user who just clicked several items of one genre
finds the next item of that genre less attractive, within the feed and in later rounds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChoiceModel", "choice_probabilities"]


def choice_probabilities(
    utilities: np.ndarray, attention: np.ndarray, no_click: float, available: np.ndarray
) -> np.ndarray:
    """Closed-form MNL probabilities of one choice step.

    Args:
        utilities: `(B, K)` item utilities `v`.
        attention: `(K,)` position weights `a_p > 0`.
        no_click: the no-click utility `v_0`.
        available: `(B, K)` bool, items that can still be clicked.

    Returns:
        `(B, K + 1)` probabilities: columns `0..K−1` the items, column `K` "stop".
    """
    logits = np.where(available, utilities + np.log(attention)[None, :], -np.inf)
    logits = np.concatenate([logits, np.full((logits.shape[0], 1), float(no_click))], axis=1)
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    return e / e.sum(axis=1, keepdims=True)


class ChoiceModel:
    """The simulated users' response to feeds (see the module docstring).

    Args:
        preferences: `(n_users, n_items)` float32 ground-truth preferences `z`.
        item_attributes: `(n_items, A)` attribute vectors (normalized here to `g`).
        preference_scale: γ.
        no_click: v_0.
        position_decay: η.
        boredom: β (0: no diversity seeking).
        boredom_rate: ρ.
        boredom_decay: δ.
    """

    def __init__(
        self,
        preferences: np.ndarray,
        item_attributes: np.ndarray,
        preference_scale: float = 1.0,
        no_click: float = 3.0,
        position_decay: float = 0.5,
        boredom: float = 1.0,
        boredom_rate: float = 0.3,
        boredom_decay: float = 0.7,
    ) -> None:
        numbers = {"preference_scale": preference_scale, "no_click": no_click,
                   "position_decay": position_decay, "boredom": boredom,
                   "boredom_rate": boredom_rate, "boredom_decay": boredom_decay}  # fmt: skip
        for name, value in numbers.items():
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if boredom < 0 or position_decay < 0:
            raise ValueError("boredom and position_decay must be >= 0")
        if not (0 <= boredom_rate <= 1 and 0 <= boredom_decay <= 1):
            raise ValueError("boredom_rate and boredom_decay must be in [0, 1]")
        self.preferences = np.asarray(preferences, dtype=np.float32)
        g = np.asarray(item_attributes, dtype=np.float64)
        norms = np.linalg.norm(g, axis=1, keepdims=True)
        self.attributes = np.divide(g, norms, out=np.zeros_like(g), where=norms > 0)
        self.preference_scale = preference_scale
        self.no_click = no_click
        self.position_decay = position_decay
        self.boredom = boredom
        self.boredom_rate = boredom_rate
        self.boredom_decay = boredom_decay
        self.state = np.zeros((self.preferences.shape[0], g.shape[1]), dtype=np.float64)

    def attention(self, k: int) -> np.ndarray:
        """`(K,)` position weights `(p + 1)^(−η)`."""
        return (np.arange(k, dtype=np.float64) + 1.0) ** (-self.position_decay)

    def utilities(self, users: np.ndarray, lists: np.ndarray) -> np.ndarray:
        """`(B, K)` current utilities `v` of the feed items (−inf at padding)."""
        safe = np.maximum(lists, 0)
        v = self.preference_scale * self.preferences[users[:, None], safe].astype(np.float64)
        if self.boredom:
            g = self.attributes[safe]  # (B, K, A)
            v = v - self.boredom * np.einsum("bka,ba->bk", g, self.state[users])
        return np.where(lists >= 0, v, -np.inf)

    def respond(self, users: np.ndarray, lists: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Simulates one feed per user; updates the boredom state.

        Args:
            users: `(B,)` distinct user indices.
            lists: `(B, K)` item indices, −1 padded.
            rng: the random generator (Gumbel-max sampling).

        Returns:
            `(B, K)` int64 click order: `order[b, p]` = step (0, 1, …) at which position
            `p` was clicked, −1 if it was not.
        """
        users = np.asarray(users, dtype=np.int64)
        b, k = lists.shape
        att = self.attention(k)
        avail = lists >= 0
        order = np.full((b, k), -1, dtype=np.int64)
        active = np.ones(b, dtype=bool)
        rows = np.arange(b)
        for step in range(k):
            if not active.any():
                break
            v = self.utilities(users, lists)
            probs = choice_probabilities(v, att, self.no_click, avail)
            gumbel = rng.gumbel(size=probs.shape)
            with np.errstate(divide="ignore"):
                pick = np.argmax(np.log(probs) + gumbel, axis=1)
            clicked = active & (pick < k)
            active &= clicked
            r = rows[clicked]
            p = pick[clicked]
            order[r, p] = step
            avail[r, p] = False
            if self.boredom_rate:
                g = self.attributes[lists[r, p]]
                u = users[r]
                self.state[u] = (1 - self.boredom_rate) * self.state[u] + self.boredom_rate * g
        self.state[users] *= self.boredom_decay
        return order
