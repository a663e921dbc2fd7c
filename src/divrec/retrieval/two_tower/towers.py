"""The two-tower model's torch modules: ID / MLP towers and the history user tower.

Item side: ID embedding or ID embedding → MLP. User side: the same two options, or a
YouTube-DNN-style history tower (Covington et al. 2016): an MLP over pooled embeddings of
the user's last training items (`build_histories`), optionally with a user-ID embedding.
All are scored by TotalRecall's scaled cosine (Eq. 2) in `divrec.nn.losses`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from divrec.data.interactions import Interactions

__all__ = ["build_histories"]


def _mlp(d_in: int, hidden: tuple[int, ...], d_out: int) -> torch.nn.Sequential:
    """Linear → ReLU → … → Linear (no activation after the last layer)."""
    layers: list[torch.nn.Module] = []
    for h in hidden:
        layers += [torch.nn.Linear(d_in, h), torch.nn.ReLU()]
        d_in = h
    layers.append(torch.nn.Linear(d_in, d_out))
    return torch.nn.Sequential(*layers)


class _Towers(torch.nn.Module):
    """The user and item towers.

    Item side: ID embedding (``tower="id"``) or ID embedding → MLP (``"mlp"``). User side: the
    same two options, or ``"history"``: an MLP over the mean (optionally concatenated with the
    max) of the history-item embeddings of the user's `histories` row, optionally concatenated
    with a user-ID embedding (YouTube-DNN style).

    `histories` is a `(n_users, L)` int64 buffer padded with ``n_items`` (the padding row of
    `history_item`, always zero).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        init_std: float,
        gen,
        tower: str = "id",
        user_tower: str = "id",
        hidden: tuple[int, ...] = (),
        history_pool: str = "mean",
        history_user_id: bool = False,
        histories: np.ndarray | None = None,
    ):
        super().__init__()
        self.user_tower = user_tower
        self.history_pool = history_pool
        self.pad = n_items
        use_id = user_tower != "history" or history_user_id
        self.user = torch.nn.Embedding(n_users, dim) if use_id else None
        self.item = torch.nn.Embedding(n_items, dim)
        with torch.no_grad():  # same draws, in the same order, as the plain ID model
            if self.user is not None:
                self.user.weight.normal_(0.0, init_std, generator=gen)
            self.item.weight.normal_(0.0, init_std, generator=gen)
        self.item_mlp = _mlp(dim, hidden, dim) if tower == "mlp" else None
        self.user_mlp = _mlp(dim, hidden, dim) if user_tower == "mlp" else None
        self.history_item = None
        if user_tower == "history":
            self.history_item = torch.nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            with torch.no_grad():
                self.history_item.weight.normal_(0.0, init_std, generator=gen)
                self.history_item.weight[n_items].zero_()
            d_in = dim * (2 if history_pool == "mean_max" else 1) + (dim if use_id else 0)
            self.user_mlp = _mlp(d_in, hidden, dim)
            self.register_buffer("histories", torch.from_numpy(np.asarray(histories, np.int64)))

    def item_vecs(self, items: torch.Tensor) -> torch.Tensor:
        """`(B,)` item ids → `(B, dim)` raw (unnormalized) item tower outputs."""
        e = self.item(items)
        return e if self.item_mlp is None else self.item_mlp(e)

    def pool(self, hist: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """History tower on padded item lists.

        Args:
            hist: `(B, L)` int64 history items, padded with ``n_items``.
            users: `(B,)` user ids for the user-ID input, or None (zero vector: a pseudo-user).

        Returns:
            `(B, dim)` raw user tower outputs.
        """
        e = self.history_item(hist)  # (B, L, D); padding rows are zero
        mask = (hist != self.pad).unsqueeze(-1)
        count = mask.sum(1).clamp(min=1)
        feats = [e.sum(1) / count]
        if self.history_pool == "mean_max":
            top = e.masked_fill(~mask, float("-inf")).amax(1)
            feats.append(torch.where(torch.isfinite(top), top, torch.zeros_like(top)))
        if self.user is not None:
            if users is None:
                feats.append(e.new_zeros(hist.shape[0], self.user.embedding_dim))
            else:
                feats.append(self.user(users))
        return self.user_mlp(torch.cat(feats, dim=-1))

    def user_vecs(self, users: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """`(B,)` user ids → `(B, dim)` raw user tower outputs.

        Args:
            users: `(B,)` user ids.
            exclude: optional `(B,)` item per row removed from that row's history (the
                training target, so the history tower cannot copy it); history tower only.
        """
        if self.user_tower != "history":
            e = self.user(users)
            return e if self.user_mlp is None else self.user_mlp(e)
        hist = self.histories[users]
        if exclude is not None:
            hist = hist.masked_fill(hist == exclude[:, None], self.pad)
        return self.pool(hist, users)


def build_histories(matrix: sp.csr_matrix, data: Interactions | None, length: int) -> np.ndarray:
    """Each user's last `length` training items (the history tower's input).

    Order: by the latest timestamp of the (u, i) pair when `data` has timestamps, else
    (and for equal timestamps) by item index; the newest `length` items are kept.

    Args:
        matrix: `(n_users, n_items)` binary training matrix (its nonzeros are the pairs).
        data: the training log, or None.
        length: history length L > 0.

    Returns:
        `(n_users, L)` int64, each row oldest → newest, padded at the end with -1.
    """
    n_users, n_items = matrix.shape
    coo = matrix.tocoo()
    u = coo.row.astype(np.int64)
    i = coo.col.astype(np.int64)
    t = np.zeros(u.size, dtype=np.int64)
    if data is not None and data.timestamps is not None and data.users.size:
        key = data.users * n_items + data.items
        uniq, inv = np.unique(key, return_inverse=True)
        latest = np.full(uniq.size, np.iinfo(np.int64).min)
        np.maximum.at(latest, inv, data.timestamps)
        pos = np.minimum(np.searchsorted(uniq, u * n_items + i), uniq.size - 1)
        t = np.where(uniq[pos] == u * n_items + i, latest[pos], np.iinfo(np.int64).min)
    order = np.lexsort((i, t, u))
    u, i = u[order], i[order]
    counts = np.bincount(u, minlength=n_users)
    ends = np.cumsum(counts)
    from_end = ends[u] - 1 - np.arange(u.size)  # 0 for each user's newest item
    keep = from_end < length
    kept = np.minimum(counts, length)
    out = np.full((n_users, length), -1, dtype=np.int64)
    out[u[keep], (kept[u] - 1 - from_end)[keep]] = i[keep]
    return out
