"""Shared losses of the retrieval models (softmax cross-entropies with logQ correction).

The scaled cosine of TotalRecall (Eq. 2), the sampled-softmax cross-entropy with the logQ
correction (Eq. 1; Jean et al. 2015, Yi et al. 2019), in-batch Bi-/Uni-InfoNCE (Eq. 3) and
the sampled softmax against shared negatives (App. A.2 Eq. 9). Used by the two-tower models
(`divrec.retrieval.two_tower`) and the sequential ones (`divrec.retrieval.sequential`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "corrected_softmax_ce",
    "cosine_scores",
    "infonce_loss",
    "same_id_pairs",
    "sampled_softmax_loss",
]


def cosine_scores(user_vecs: torch.Tensor, item_vecs: torch.Tensor, tau: float) -> torch.Tensor:
    """All-pairs φ(u, i) = cos(u, i)/τ (Eq. 2).

    Args:
        user_vecs: `(B, D)` user tower outputs.
        item_vecs: `(C, D)` item tower outputs.
        tau: temperature τ > 0.

    Returns:
        `(B, C)` scores in [−1/τ, 1/τ].
    """
    # 1/τ scales the (B, D) user side, not the (B, C) product (one pass fewer over B × C)
    return (F.normalize(user_vecs, dim=-1) / tau) @ F.normalize(item_vecs, dim=-1).T


def same_id_pairs(*ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(rows, cols)` of the off-diagonal pairs `r != c` whose ids agree in any of `ids`.

    The sparse form of the in-batch accidental-hit mask ``ids[:, None] == ids[None, :]``
    (minus its diagonal): the ids are sorted once and each run of equal ids gives all its
    ordered pairs, so the cost is `O(B log B + pairs)` instead of `O(B²)` (ML-1M batches of
    512 have a few hundred such pairs). A pair found through several id arrays is listed
    once per array.

    Args:
        ids: one or more `(B,)` int64 id arrays (e.g. the batch's users, or its items).

    Returns:
        `(rows (P,), cols (P,))` int64.
    """
    rows, cols = [], []
    for x in ids:
        order = torch.argsort(x, stable=True)
        s = x[order]
        new = torch.ones_like(s, dtype=torch.bool)
        new[1:] = s[1:] != s[:-1]
        gid = torch.cumsum(new, 0) - 1
        counts = torch.bincount(gid)
        starts = torch.cumsum(counts, 0) - counts
        size = counts[gid]  # group size of each sorted position
        multi = size > 1
        elems, size, first = order[multi], size[multi], starts[gid[multi]]
        r = torch.repeat_interleave(elems, size)
        offs = torch.arange(r.numel(), device=x.device) - torch.repeat_interleave(
            torch.cumsum(size, 0) - size, size
        )
        c = order[torch.repeat_interleave(first, size) + offs]
        off_diag = r != c
        rows.append(r[off_diag])
        cols.append(c[off_diag])
    return torch.cat(rows), torch.cat(cols)


def corrected_softmax_ce(
    logits: torch.Tensor,
    log_q: torch.Tensor | None,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    drop: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sampled-softmax cross-entropy with logQ correction (Eq. 1 / Eq. 3, one direction).

    Each row's logits become ``s_bc − log q_c`` (the candidate's sampling probability is
    *subtracted*, so frequently sampled — popular — candidates are penalized), then a
    softmax cross-entropy against `target` is taken.

    Args:
        logits: `(B, C)` raw scores s_bc.
        log_q: `(C,)` or `(B, C)` log sampling probabilities of the candidates, or None
            (no correction).
        target: `(B,)` int64 column of each row's positive.
        mask: optional `(B, C)` bool, True = drop this candidate (e.g. an accidental hit);
            the target column is never dropped.
        drop: optional `(rows (P,), cols (P,))` entries to drop, the sparse form of `mask`
            (e.g. from `same_id_pairs`); entries on a row's target column are kept.

    Returns:
        Scalar mean loss over rows.
    """
    z = logits if log_q is None else logits - log_q
    if mask is not None:
        # the target column is kept by clearing it in a copy of the bool mask (a (B, C) bool
        # copy, not the (B, C) int64 one-hot it replaced); a mask with nothing left to drop
        # (no accidental hit in the batch) skips the fill and its backward
        dropped = mask.clone()
        dropped[torch.arange(target.shape[0], device=target.device), target] = False
        if dropped.any():
            z = z.masked_fill(dropped, float("-inf"))
    elif drop is not None and drop[0].numel():
        rows, cols = drop
        keep = cols != target[rows]
        if not bool(keep.all()):
            rows, cols = rows[keep], cols[keep]
        if rows.numel():
            z = z.index_put((rows, cols), z.new_tensor(float("-inf")))
    return F.cross_entropy(z, target)


def infonce_loss(
    scores: torch.Tensor,
    log_q_items: torch.Tensor | None = None,
    log_q_users: torch.Tensor | None = None,
    direction: str = "bi",
    user_ids: torch.Tensor | None = None,
    item_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch Bi-/Uni-InfoNCE (Eq. 3) on a batch of B positive pairs.

    Row b of `scores` is user b against the batch's items, column b item b against the
    batch's users; the diagonal holds the positives.

    u2i term: −log softmax_j(φ(u_b, i_j) − log q(i_j))[b] averaged over b.
    i2u term: −log softmax_j(φ(u_j, i_b) − log q(u_j))[b] averaged over b.
    "bi" is their sum.

    Args:
        scores: `(B, B)` φ(u_b, i_c).
        log_q_items: `(B,)` log q(i_c) of the batch's items, or None.
        log_q_users: `(B,)` log q(u_c) of the batch's users, or None.
        direction: "bi", "u2i" or "i2u".
        user_ids: optional `(B,)` ids; when given, in-batch copies of the positive user are
            removed from the i2u negatives (accidental hits).
        item_ids: optional `(B,)` ids; same for the positive item among the u2i negatives.

    Returns:
        Scalar loss.
    """
    if direction not in ("bi", "u2i", "i2u"):
        raise ValueError(f"direction must be 'bi', 'u2i' or 'i2u', got {direction!r}")
    b = scores.shape[0]
    target = torch.arange(b, device=scores.device)
    loss = scores.new_zeros(())
    # accidental hits as sparse (row, col) pairs (`same_id_pairs`), not (B, B) masks
    if direction in ("bi", "u2i"):
        drop = None if item_ids is None else same_id_pairs(item_ids)
        loss = loss + corrected_softmax_ce(scores, log_q_items, target, drop=drop)
    if direction in ("bi", "i2u"):
        # the i2u softmax runs down the columns of `scores` (log_softmax over dim 0 of the
        # row-major scores: no transposed, strided copy); its drop pairs are symmetric
        z = scores if log_q_users is None else scores - log_q_users[:, None]
        if user_ids is not None:
            rows, cols = same_id_pairs(user_ids)
            if rows.numel():
                z = z.index_put((rows, cols), z.new_tensor(float("-inf")))
        loss = loss - torch.log_softmax(z, dim=0).diagonal().mean()
    return loss


def sampled_softmax_loss(
    user_vecs: torch.Tensor,
    pos_item_vecs: torch.Tensor,
    neg_item_vecs: torch.Tensor,
    tau: float,
    log_q_pos: torch.Tensor | None = None,
    log_q_neg: torch.Tensor | None = None,
    pos_ids: torch.Tensor | None = None,
    neg_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled-softmax loss with logQ correction (Sec. 2.3 Eq. 1, App. A.2 Eq. 9).

    For row b with user u_b, positive item i_b and the N shared sampled negatives j_1..j_N:

        l_b = −log [ exp(φ(u_b, i_b) − log q(i_b))
                     / (exp(φ(u_b, i_b) − log q(i_b)) + Σ_n exp(φ(u_b, j_n) − log q(j_n))) ],

    φ the scaled cosine of Eq. 2 and q the background (sampling) distribution p_n. A negative
    equal to the row's positive (an accidental hit) is dropped when the ids are given.

    Args:
        user_vecs: `(B, D)` user tower outputs.
        pos_item_vecs: `(B, D)` tower outputs of each row's positive item.
        neg_item_vecs: `(N, D)` tower outputs of the sampled negatives (shared by all rows).
        tau: temperature τ of Eq. 2.
        log_q_pos: `(B,)` log p_n of the positives, or None (no correction).
        log_q_neg: `(N,)` log p_n of the negatives, or None (no correction).
        pos_ids: optional `(B,)` positive item ids (for accidental-hit removal).
        neg_ids: optional `(N,)` negative item ids.

    Returns:
        Scalar mean of l_b over the B rows.
    """
    u = F.normalize(user_vecs, dim=-1)
    pos = (u * F.normalize(pos_item_vecs, dim=-1)).sum(-1, keepdim=True) / tau  # (B, 1)
    neg = u @ F.normalize(neg_item_vecs, dim=-1).T / tau  # (B, N)
    logits = torch.cat([pos, neg], dim=1)
    log_q = None
    if (log_q_pos is None) != (log_q_neg is None):
        raise ValueError("give both log_q_pos and log_q_neg, or neither")
    if log_q_pos is not None:
        b, n = neg.shape
        log_q = torch.cat([log_q_pos[:, None], log_q_neg[None, :].expand(b, n)], dim=1)
    mask = None
    if pos_ids is not None and neg_ids is not None:
        hit = pos_ids[:, None] == neg_ids[None, :]
        mask = torch.cat([torch.zeros_like(hit[:, :1]), hit], dim=1)
    target = torch.zeros(logits.shape[0], dtype=torch.int64, device=logits.device)
    return corrected_softmax_ce(logits, log_q, target, mask)
