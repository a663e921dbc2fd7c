"""Pre-flight of an A/B experiment: the same arms, served to simulated users, read out the
same way as the live log.

The live service answers each arm's users with that arm's fitted `Pipeline` (its model
directory's pipeline of the arm's method, knob fixed by the arm) and logs the lists and the
feedback; `preflight` does the same in a closed loop against the simulator's user model,
round by round:

1. every simulated user asks for a `k`-item list from the pipeline of its arm, with the
   query the service would build (the training row while the user has no click, then the
   training row plus the clicks as a fresh history when the pipeline takes one; every
   clicked item excluded; the arm's knob);
2. the user model (:class:`divrec.simulate.environment.ChoiceModel`: multinomial logit with
   a no-click option, position attention and boredom) clicks;
3. lists and clicks go into an `ABLog`, the clicks attributed to the list they came from.

The user model's preferences are the simulator's ground truth (`ground_truth_preferences`:
a separate iALS on the same data, z-scored per user, as in `make_world`), never the served
model's own scores. ``diversity="auto"`` needs the live propensity tracker: the pre-flight
uses the tracker's prior knob 0.5 for such arms and says so (`preflight_knob`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Query
from divrec.evaluation.ab import ABLog
from divrec.simulate.environment import ChoiceModel

__all__ = ["ground_truth_preferences", "preflight", "preflight_knob", "user_model"]


def ground_truth_preferences(data: Interactions, factors: int = 32, seed: int = 0) -> np.ndarray:
    """`(n_users, n_items)` float32 preferences `z`: iALS scores on all of `data` (every
    interaction a positive), z-scored per user (`make_world`'s ground truth)."""
    from divrec.retrieval.baselines import ALSRecommender

    full = Interactions(
        users=data.users,
        items=data.items,
        values=np.ones(data.nnz, dtype=np.float32),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    gt = ALSRecommender(factors=factors, seed=seed).fit(full)
    scores = gt.user_factors_ @ gt.item_factors_.T
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True)
    return ((scores - mu) / np.maximum(sd, 1e-9)).astype(np.float32)


def user_model(data: Interactions, seed: int = 0, factors: int = 32, **choice) -> ChoiceModel:
    """The simulated users of `data`: `ChoiceModel` over `ground_truth_preferences`, with
    the item categories as the boredom attributes (one constant attribute without them).

    Args:
        data: the interactions the served model was trained on.
        seed: seeds the ground-truth model.
        factors: its factors.
        **choice: `ChoiceModel` keyword arguments (``no_click``, ``boredom``, …).
    """
    prefs = ground_truth_preferences(data, factors, seed)
    if data.item_categories is not None:
        attrs = np.asarray(sp.csr_matrix(data.item_categories).todense(), dtype=np.float32)
    else:
        attrs = np.ones((data.n_items, 1), dtype=np.float32)
    return ChoiceModel(prefs, attrs, **choice)


def preflight_knob(method: str, knob: float | str | None) -> tuple[float, str | None]:
    """The knob the pre-flight uses for an arm, and a note when it is not the arm's own."""
    if isinstance(knob, int | float) and not isinstance(knob, bool):
        return float(knob), None
    if method == "none":
        return 0.0, None
    return 0.5, f"knob {knob!r} is live-only; the pre-flight used 0.5 (the tracker's prior)"


def preflight(
    arms: list[str],
    control: str,
    shares: np.ndarray,
    pipelines: list,
    knobs: list[float],
    users: np.ndarray,
    assignment: np.ndarray,
    choice: ChoiceModel,
    train_rows: sp.csr_matrix,
    rounds: int = 10,
    k: int = 10,
    seed: int = 0,
    user_ids: list[str] | None = None,
    record: dict | None = None,
) -> ABLog:
    """Runs the arms on simulated users and logs what they were shown and clicked.

    Args:
        arms: arm names.
        control: the control arm.
        shares: `(A,)` planned shares (for the readout's sample-ratio check).
        pipelines: per arm a fitted `Pipeline` over the model's users and items.
        knobs: per arm the diversity knob in [0, 1].
        users: `(U,)` internal user indices of the simulated users.
        assignment: `(U,)` arm index of each user (the service's salted hash).
        choice: the user model (its preferences indexed like the model's users/items).
        train_rows: `(n_users, n_items)` the training rows (history; excluded from lists).
        rounds: requests per user.
        k: list length.
        seed: seeds the users' draws.
        user_ids: external ids of `users` (default: their indices as strings).
        record: the experiment's record, copied into the log.

    Returns:
        The `ABLog` (time = round number), clicks attributed to their lists.

    Raises:
        ValueError: mismatched lengths or bad settings (one line).
    """
    users = np.asarray(users, dtype=np.int64)
    assignment = np.asarray(assignment, dtype=np.int64)
    if users.shape != assignment.shape:
        raise ValueError("users and assignment must have the same length")
    if not (len(arms) == len(pipelines) == len(knobs) == len(shares)):
        raise ValueError("arms, pipelines, knobs and shares must have one entry per arm")
    if isinstance(rounds, bool) or rounds < 1 or k < 1:
        raise ValueError(f"rounds and k must be >= 1, got {rounds} and {k}")
    rng = np.random.default_rng(seed)
    train_rows = sp.csr_matrix(train_rows)
    n_items = train_rows.shape[1]
    clicks: list[list[int]] = [[] for _ in users]
    imp_user, imp_arm, imp_time, imp_items = [], [], [], []
    fb_imp: list[int] = []
    fb_item: list[int] = []
    for t in range(rounds):
        for a, pipe in enumerate(pipelines):
            rows = np.flatnonzero(assignment == a)
            if rows.size == 0:
                continue
            lists = np.full((rows.size, k), -1, dtype=np.int64)
            has = np.array([bool(clicks[r]) for r in rows])
            for part in (np.flatnonzero(~has), np.flatnonzero(has)):  # the service's groups
                if part.size:
                    r = rows[part]
                    q = _query(pipe, users[r], [clicks[i] for i in r], train_rows, knobs[a])
                    got = np.asarray(pipe(q, None, k).ids, dtype=np.int64)[:, :k]
                    lists[part, : got.shape[1]] = got
            order = choice.respond(users[rows], lists, rng)
            base = len(imp_user)
            imp_user.extend(rows.tolist())
            imp_arm.extend([a] * rows.size)
            imp_time.extend([float(t)] * rows.size)
            imp_items.extend(lists.tolist())
            rr, pp = np.nonzero(order >= 0)
            for j, p in zip(rr.tolist(), pp.tolist(), strict=True):
                clicks[rows[j]].append(int(lists[j, p]))
                fb_imp.append(base + j)
                fb_item.append(int(lists[j, p]))
    width = max(len(x) for x in imp_items)
    items = np.full((len(imp_items), width), -1, dtype=np.int64)
    for i, x in enumerate(imp_items):
        items[i, : len(x)] = x
    ids = user_ids if user_ids is not None else [str(u) for u in users.tolist()]
    return ABLog(
        arms=list(arms),
        control=control,
        shares=np.asarray(shares, dtype=np.float64),
        user_ids=list(ids),
        n_items=n_items,
        imp_user=np.array(imp_user, dtype=np.int64),
        imp_arm=np.array(imp_arm, dtype=np.int64),
        imp_time=np.array(imp_time, dtype=np.float64),
        imp_items=items,
        fb_imp=np.array(fb_imp, dtype=np.int64),
        fb_type=np.array(["click"] * len(fb_imp), dtype=object),
        fb_value=np.full(len(fb_imp), np.nan),
        record=record or {},
        fb_item=np.array(fb_item, dtype=np.int64),
    )


def _query(pipe, users: np.ndarray, clicked: list[list[int]], train_rows, knob: float) -> Query:
    """The service's query: clicks excluded; training row + clicks as a fresh history for
    users with a click when the pipeline takes histories."""
    b = users.size
    exclude = None
    if any(clicked):
        width = max(len(c) for c in clicked)
        exclude = np.full((b, max(width, 1)), -1, dtype=np.int64)
        for j, c in enumerate(clicked):
            exclude[j, : len(c)] = c
    history = None
    if exclude is not None and getattr(pipe, "supports_history", False):
        hist = [
            train_rows.indices[train_rows.indptr[u] : train_rows.indptr[u + 1]].tolist() + c
            for u, c in zip(users.tolist(), clicked, strict=True)
        ]
        history = np.full((b, max(max(len(h) for h in hist), 1)), -1, dtype=np.int64)
        for j, h in enumerate(hist):
            history[j, : len(h)] = h
    return Query(
        users=users,
        history=history,
        exclude=exclude,
        exclude_seen=True,
        diversity=np.full(b, float(knob)),
    )
