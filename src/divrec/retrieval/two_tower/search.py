"""Two-tower serving by ANN search: u2i / i2u top-k, potential users of item groups, and
the large-scale i2u batch path of TotalRecall Sec. 3.6.

u2i and i2u top-k go through faiss (`divrec.retrieval.ann`); potential users of a group of
items aggregate per-item scores (App. A.7.2: exp(φ) for InfoNCE models, σ(φ) for MFb; mean,
max or sum). `batch_potential_users` is the Sec. 3.6 path: top-k items per user by ANN,
then the top-M users of each item from the same (u, i) scores, in user chunks.
"""

from __future__ import annotations

import numpy as np

from divrec.retrieval.ann import AnnIndex
from divrec.retrieval.base import Recommender

__all__ = ["TwoTowerSearch", "batch_potential_users", "merge_top_users"]


class TwoTowerSearch:
    """ANN serving of a fitted two-tower model (mixed into `TwoTowerRecommender`).

    Reads the model's `user_factors_`, `item_factors_` (L2-normalized), `user_items_`, `tau`
    and `pair_probability`.
    """

    def build_index(self, side: str = "item", kind: str = "flat", **params) -> AnnIndex:
        """A faiss index over the item (for u2i) or user (for i2u) embeddings.

        Args:
            side: "item" or "user".
            kind: "flat" (exact), "hnsw", "ivf", "ivf-sq8" or "auto".
            **params: `AnnIndex` parameters (m, ef_construction, ef_search, threads, nlist,
                nprobe, target_recall, ...); a recall target is tuned on the other side's
                vectors (the queries this index will serve).
        """
        self._check_users(np.zeros(0, dtype=np.int64))
        if side not in ("item", "user"):
            raise ValueError(f"side must be 'item' or 'user', got {side!r}")
        vecs = self.item_factors_ if side == "item" else self.user_factors_
        queries = self.user_factors_ if side == "item" else self.item_factors_
        return AnnIndex(kind=kind, **params).fit(vecs, queries=queries)

    def retrieve_items(
        self, users, k: int = 10, index: AnnIndex | None = None, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """u2i top-k via faiss.

        Args:
            users: `(B,)` user indices.
            k: list length.
            index: an item-side `AnnIndex` (default: a new exact flat index).
            exclude_seen: drop training items (fetched in rounds, `AnnIndex.search_excluding`).

        Returns:
            `(ids (B, k), φ scores (B, k))`, best first, padded with -1 / -inf.
        """
        users = self._check_users(users)
        index = index or self.build_index("item")
        seen = self.user_items_ if exclude_seen else None  # rows picked by `users`
        return self._search(index, self.user_factors_[users], k, seen, users)

    def potential_users(
        self, items, k: int = 10, index: AnnIndex | None = None, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """i2u top-k: the potential users of each item via faiss.

        Args:
            items: `(B,)` item indices.
            k: users per item.
            index: a user-side `AnnIndex` (default: a new exact flat index).
            exclude_seen: drop users who interacted with the item in training.

        Returns:
            `(user ids (B, k), φ scores (B, k))`, best first, padded with -1 / -inf.
        """
        items = self._check_items(items)
        index = index or self.build_index("user")
        seen = self.user_items_.T.tocsr()[items] if exclude_seen else None
        return self._search(index, self.item_factors_[items], k, seen)

    def potential_users_of_group(
        self,
        items,
        k: int = 10,
        aggregation: str = "mean",
        exclude_seen: bool = True,
        candidates_per_item: int | None = None,
        seen_scope: str = "group",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Potential users of a group of items (App. A.7.2).

        Each user's per-item scores p(u, i) (`pair_probability`: exp(φ) or σ(φ)) over the
        group are aggregated by mean, max or sum. With `exclude_seen`, training interactions
        are removed according to `seen_scope`: "group" drops every user who interacted with
        any group item; "item" drops only the (u, i) pairs seen in training, so a user is
        aggregated over the group items new to them (and dropped if none is).

        With ``candidates_per_item=None`` every user is scored against every group item, so
        "sum" is G × "mean" and both rank users identically. With an integer N, each item
        first keeps its top-N users by φ, and a user is
        aggregated only over the items whose candidate list holds them ("each candidate user
        will have several scores", App. A.7.2) — then mean, max and sum differ. Candidate
        lists are exact and drawn from the eligible users (group-seen users removed first).

        Args:
            items: `(G,)` item indices of the group.
            k: users to return.
            aggregation: "mean", "max" or "sum".
            exclude_seen: skip users with a training interaction with the group.
            candidates_per_item: None (all users) or N, the per-item candidate list length.
            seen_scope: "group" or "item" (see above).

        Returns:
            `(user ids (k,), aggregated scores (k,))`, best first; ties by lower user id.
        """
        if aggregation not in ("mean", "max", "sum"):
            raise ValueError(f"aggregation must be mean, max or sum, got {aggregation!r}")
        items = self._check_items(items)
        if items.size == 0:
            raise ValueError("the group has no items")
        from divrec.retrieval.base import top_k

        if seen_scope not in ("group", "item"):
            raise ValueError(f"seen_scope must be 'group' or 'item', got {seen_scope!r}")
        phi = self.user_factors_ @ self.item_factors_[items].T / np.float32(self.tau)
        p = self.pair_probability(phi)  # (n_users, G)
        usable = np.ones(phi.shape, dtype=bool)  # pairs that may enter the aggregation
        if exclude_seen:
            seen_pairs = self.user_items_[:, items].toarray() > 0
            if seen_scope == "group":
                usable &= ~seen_pairs.any(axis=1, keepdims=True)
            else:
                usable &= ~seen_pairs
        if candidates_per_item is not None:
            if candidates_per_item <= 0:
                raise ValueError("candidates_per_item must be positive")
            # each item's top-N usable users (by φ; ties by lower user id)
            cand, _ = top_k(np.where(usable.T, phi.T, -np.inf), candidates_per_item)
            usable = np.zeros(phi.shape, dtype=bool)
            ok = cand >= 0
            usable[cand[ok], np.nonzero(ok)[0]] = True
        count = usable.sum(axis=1)
        has = count > 0
        agg = np.full(self.n_users_, -np.inf)
        if aggregation == "max":
            agg[has] = np.where(usable, p, -np.inf).max(axis=1)[has]
        else:
            total = np.where(usable, p, 0.0).sum(axis=1)
            agg[has] = total[has] if aggregation == "sum" else total[has] / count[has]
        ids, vals = top_k(agg[None, :], k)
        return ids[0], vals[0]

    def _check_items(self, items) -> np.ndarray:
        self._check_users(np.zeros(0, dtype=np.int64))
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValueError(f"item index out of range [0, {self.n_items_})")
        return items

    def _search(self, index, queries, k, seen, rows=None) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        ids, cos = index.search_excluding(queries, k, seen, rows=rows)  # fetches in rounds
        return ids, (cos / np.float32(self.tau)).astype(np.float32)


def merge_top_users(
    items: np.ndarray, users: np.ndarray, scores: np.ndarray, n_items: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item top-m users of a list of scored (u, i) pairs.

    Order: score descending, then user index ascending (a deterministic tie rule).

    Args:
        items: `(P,)` item index of each pair.
        users: `(P,)` user index of each pair (each (u, i) at most once).
        scores: `(P,)` pair scores.
        n_items: number of items (rows of the output).
        m: users kept per item.

    Returns:
        `(user ids (n_items, m) int64, scores (n_items, m) float32)`, best first, padded with
        -1 / -inf for items with fewer than m pairs.
    """
    items = np.asarray(items, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    out_ids = np.full((n_items, m), -1, dtype=np.int64)
    out_scores = np.full((n_items, m), -np.inf, dtype=np.float32)
    keep = np.isfinite(scores) & (users >= 0) & (items >= 0)
    items, users, scores = items[keep], users[keep], scores[keep]
    if items.size == 0:
        return out_ids, out_scores
    order = np.lexsort((users, -scores, items))
    items, users, scores = items[order], users[order], scores[order]
    starts = np.searchsorted(items, np.arange(n_items))
    rank = np.arange(items.size) - starts[items]
    sel = rank < m
    out_ids[items[sel], rank[sel]] = users[sel]
    out_scores[items[sel], rank[sel]] = scores[sel]
    return out_ids, out_scores


def batch_potential_users(
    model: Recommender,
    items_per_user: int = 10,
    users_per_item: int = 1000,
    user_chunk: int = 4096,
    index: AnnIndex | None = None,
    exclude_seen: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Potential users of every item by the large-scale batch path of Sec. 3.6 (App. A.5).

    1. u2i: the top-`items_per_user` items of every user by ANN over the item embeddings
       (`retrieve_items`), which yields n_users × items_per_user scored (u, i) pairs;
    2. i2u: for each item, the top-`users_per_item` users among the pairs that contain it,
       ranked by the *same* score φ(u, i) (Eq. 2) — meaningful for TR because φ models the
       joint log p(u, i) (App. A.3), so one score ranks both directions.

    Users are processed in chunks of `user_chunk`; after each chunk the running per-item
    top lists are merged with the chunk's pairs, so memory is
    O(n_items · users_per_item + user_chunk · items_per_user) whatever the number of users
    (a user's list also implies each user reaches at most `items_per_user` items, the
    "at most 10 messages per person" property of Sec. 3.6).

    Args:
        model: a fitted `TwoTowerRecommender` (any loss).
        items_per_user: u2i list length k (10 in Sec. 3.6).
        users_per_item: users M kept per item.
        user_chunk: users per ANN query batch.
        index: an item-side `AnnIndex` (default: exact flat index).
        exclude_seen: drop items a user interacted with in training from its u2i list.

    Returns:
        `(user ids (n_items, M) int64, φ scores (n_items, M) float32)`, best first (ties by
        lower user index), padded with -1 / -inf for items reached by fewer than M users.
    """
    if items_per_user <= 0 or users_per_item <= 0 or user_chunk <= 0:
        raise ValueError("items_per_user, users_per_item and user_chunk must be positive")
    model._check_users(np.zeros(0, dtype=np.int64))
    index = index or model.build_index("item")
    n_items = model.n_items_
    best_ids = np.full((n_items, users_per_item), -1, dtype=np.int64)
    best_scores = np.full((n_items, users_per_item), -np.inf, dtype=np.float32)
    for start in range(0, model.n_users_, user_chunk):
        users = np.arange(start, min(start + user_chunk, model.n_users_), dtype=np.int64)
        ids, scores = model.retrieve_items(users, items_per_user, index, exclude_seen)
        pair_users = np.repeat(users, ids.shape[1])
        cur_items = np.repeat(np.arange(n_items), users_per_item)
        best_ids, best_scores = merge_top_users(
            np.concatenate([cur_items, ids.ravel()]),
            np.concatenate([best_ids.ravel(), pair_users]),
            np.concatenate([best_scores.ravel(), scores.ravel()]),
            n_items,
            users_per_item,
        )
    return best_ids, best_scores
