"""The semi-synthetic world: ground truth from a model fitted on a real log, the system's
starting log, and the item pool with churn.

`make_world(data, ...)`:

1. Positives are events with value ≥ `min_value` (ratings ≥ 4 on MovieLens).
2. Ground truth: iALS (`divrec.retrieval.baselines.ALSRecommender`) fitted on **all**
   positives; `z_ui` = user `u`'s scores of all items, z-scored per user (mean 0, std 1
   over the catalogue). The simulated users' preferences are these `z`.
3. Churn: `new_item_share` of the items with at least `min_item_count` positives are "new":
   their events are removed from the system's starting log and they enter the pool in equal
   batches over rounds `1..release_rounds` with their attributes only (no interactions).
4. The system's starting log is the first `start_share` of each user's positives in time
   order (the rest of the real log is never shown to the system: the future comes from the
   simulated users).

Items are renumbered so that the starting pool comes first and the new items follow in
release order; the system's universe at round `t` is then a prefix `[0, n_pool(t))`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions

__all__ = ["World", "make_world"]


@dataclass
class World:
    """Everything the loop needs; item indices are the renumbered ones.

    Attributes:
        start_log: the system's starting `Interactions` over the starting pool only.
        full_log: all positives over the whole universe (for the reference SVD space).
        preferences: `(n_users, n_items)` float32 ground-truth z-scores.
        attributes: `(n_items, A)` float32 item attribute vectors (genres): the choice
            model's boredom space and the "genre" ILAD space.
        features: `(n_items, F)` float32 GraphSAGE node features of every item.
        categories: `(n_items,)` int64 primary category (−1 none).
        category_matrix: `(n_items, C)` CSR multi-hot categories.
        n_start: size of the starting pool.
        release: `(n_items − n_start,)` int64 round at which each new item enters.
    """

    start_log: Interactions
    full_log: Interactions
    preferences: np.ndarray
    attributes: np.ndarray
    features: np.ndarray
    categories: np.ndarray
    category_matrix: sp.csr_matrix
    n_start: int
    release: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.preferences.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.preferences.shape[1])

    def pool_size(self, round_: int) -> int:
        """Items in the pool at round `round_` (new items of that round included)."""
        return int(self.n_start + np.sum(self.release <= round_))


def make_world(
    data: Interactions,
    min_value: float | None = 4.0,
    new_item_share: float = 0.1,
    min_item_count: int = 5,
    release_rounds: int = 10,
    start_share: float = 0.5,
    factors: int = 64,
    seed: int = 0,
    users: np.ndarray | None = None,
) -> World:
    """Builds the world from a real log (see the module docstring).

    Args:
        data: the real log with item categories (and optionally dense item features).
        min_value: positives threshold (None: every event).
        new_item_share: share of eligible items held out as new items.
        min_item_count: items need this many positives to be eligible as new.
        release_rounds: new items enter over rounds 1..release_rounds.
        start_share: share of each user's positives (oldest first) in the starting log.
        factors: iALS factors of the ground truth.
        seed: seeds the ground-truth model and the choice of new items.
        users: optional subset of user indices to simulate (others are dropped).
    """
    from divrec.retrieval.baselines import ALSRecommender
    from divrec.retrieval.graphsage import item_attribute_features

    if data.item_categories is None:
        raise ValueError(f"{data.name}: the simulator needs item categories (attributes)")
    if not 0.0 <= new_item_share < 1.0:
        raise ValueError(f"new_item_share must be in [0, 1), got {new_item_share}")
    if not 0.0 < start_share <= 1.0:
        raise ValueError(f"start_share must be in (0, 1], got {start_share}")
    rng = np.random.default_rng(seed)
    pos = data.select(data.values >= min_value) if min_value is not None else data
    if users is not None:
        keep_u = np.zeros(pos.n_users, dtype=bool)
        keep_u[np.asarray(users)] = True
        pos = pos.select(keep_u[pos.users])
    counts = np.bincount(pos.items, minlength=pos.n_items)
    present = np.flatnonzero(counts > 0)
    eligible = np.flatnonzero(counts >= min_item_count)
    n_new = int(round(new_item_share * eligible.size))
    new = np.sort(rng.choice(eligible, n_new, replace=False)) if n_new else eligible[:0]
    is_new = np.zeros(pos.n_items, dtype=bool)
    is_new[new] = True
    old = present[~is_new[present]]
    new = rng.permutation(new)
    order = np.concatenate([old, new])  # renumbered item r = original item order[r]
    remap = np.full(pos.n_items, -1, dtype=np.int64)
    remap[order] = np.arange(order.size)
    # users: keep those with positives, renumber densely
    active_users = np.unique(pos.users)
    umap = np.full(pos.n_users, -1, dtype=np.int64)
    umap[active_users] = np.arange(active_users.size)
    cats = pos.item_categories[order].tocsr()
    feats_src = Interactions(
        users=np.zeros(0, np.int64),
        items=np.zeros(0, np.int64),
        values=np.zeros(0, np.float32),
        user_ids=np.zeros(1),
        item_ids=pos.item_ids[order],
        item_categories=cats,
        item_features=None if pos.item_features is None else pos.item_features[order],
    )
    features = item_attribute_features(feats_src)
    full = Interactions(
        users=umap[pos.users],
        items=remap[pos.items],
        values=np.ones(pos.nnz, dtype=np.float32),
        user_ids=pos.user_ids[active_users],
        item_ids=pos.item_ids[order],
        timestamps=pos.timestamps,
        item_categories=cats,
        category_names=pos.category_names,
        item_features=feats_src.item_features,
        name=f"{data.name} (simulated world)",
    )
    gt = ALSRecommender(factors=factors, seed=seed).fit(full)
    scores = gt.user_factors_ @ gt.item_factors_.T
    mu = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True)
    prefs = ((scores - mu) / np.maximum(sd, 1e-9)).astype(np.float32)
    # the starting log: the oldest start_share of each user's positives, old items only
    ts = full.timestamps if full.timestamps is not None else np.arange(full.nnz)
    o = np.lexsort((np.arange(full.nnz), ts, full.users))
    u_sorted = full.users[o]
    n_per = np.bincount(u_sorted, minlength=full.n_users)
    rank = np.arange(full.nnz) - np.repeat(np.cumsum(n_per) - n_per, n_per)
    first = np.zeros(full.nnz, dtype=bool)
    first[o] = rank < np.ceil(start_share * n_per[u_sorted])
    n_start = old.size
    keep = first & (full.items < n_start)
    start = Interactions(
        users=full.users[keep],
        items=full.items[keep],
        values=full.values[keep],
        user_ids=full.user_ids,
        item_ids=full.item_ids[:n_start],
        timestamps=None if full.timestamps is None else full.timestamps[keep],
        item_categories=cats[:n_start],
        category_names=pos.category_names,
        item_features=None if full.item_features is None else full.item_features[:n_start],
        name=f"{data.name} (simulation start)",
    )
    release = np.zeros(new.size, dtype=np.int64)
    if new.size:
        release = 1 + (np.arange(new.size) * max(release_rounds, 1)) // new.size
    attrs = np.asarray(cats.todense(), dtype=np.float32)
    primary = np.full(order.size, -1, dtype=np.int64)
    has = np.diff(cats.indptr) > 0
    primary[has] = cats.indices[cats.indptr[:-1][has]]
    return World(
        start_log=start,
        full_log=full,
        preferences=prefs,
        attributes=attrs,
        features=features,
        categories=primary,
        category_matrix=cats,
        n_start=n_start,
        release=release,
    )
