"""Realtime event requests (HI paper Test-RT, Sec. 5): one request per test user, made of the
user's training events and the earliest part of their test events; the rest is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divrec.data.interactions import Interactions

__all__ = ["Requests", "build_requests", "request_rows", "requests_query"]


@dataclass
class Requests:
    """Realtime requests of the Test-RT protocol.

    Attributes:
        users: `(B,)` internal user index of each request.
        pos: B arrays of positive request items.
        neg: B arrays of negative request items.
        eval_req: `(E,)` request index of each evaluation event.
        eval_items: `(E,)` item of each evaluation event.
        eval_labels: `(E,)` bool, rating ≥ threshold.
        ctx_items: B arrays of all request items (positive and negative).
        ctx_values: B arrays of their ratings (for the "rating6" request rows).
    """

    users: np.ndarray
    pos: list[np.ndarray]
    neg: list[np.ndarray]
    eval_req: np.ndarray
    eval_items: np.ndarray
    eval_labels: np.ndarray
    ctx_items: list[np.ndarray] | None = None
    ctx_values: list[np.ndarray] | None = None


def build_requests(
    train: Interactions,
    test: Interactions,
    context_fraction: float = 0.5,
    threshold: float = 4.0,
) -> Requests:
    """Forms one request per test user (see the module docstring).

    Args:
        train: training-period log.
        test: test-period log (same universe).
        context_fraction: share f of each user's test events (earliest first, ⌊f·n_u⌋ of
            them) that joins the request instead of being evaluated.
        threshold: rating ≥ threshold is positive.

    Returns:
        `Requests`; users whose test events all went to the context are dropped.
    """
    ts = test.timestamps if test.timestamps is not None else np.arange(test.nnz)
    order = np.lexsort((np.arange(test.nnz), ts, test.users))
    tu, ti, tv = test.users[order], test.items[order], test.values[order]
    users, starts, counts = np.unique(tu, return_index=True, return_counts=True)
    n_ctx = np.floor(context_fraction * counts).astype(np.int64)
    keep = counts > n_ctx
    train_csr = train.to_csr().tocsr()  # ratings (train is deduplicated per pair by loaders)
    pos, neg, ev_req, ev_items, ev_labels, req_users = [], [], [], [], [], []
    all_items, all_vals = [], []
    for u, s, c, nc in zip(users[keep], starts[keep], counts[keep], n_ctx[keep], strict=True):
        row = train_csr[u]
        ctx_items = np.r_[row.indices, ti[s : s + nc]]
        ctx_vals = np.r_[row.data, tv[s : s + nc]]
        b = len(req_users)
        req_users.append(u)
        all_items.append(ctx_items.astype(np.int64))
        all_vals.append(ctx_vals.astype(np.float64))
        pos.append(ctx_items[ctx_vals >= threshold].astype(np.int64))
        neg.append(ctx_items[ctx_vals < threshold].astype(np.int64))
        ev_req.append(np.full(c - nc, b))
        ev_items.append(ti[s + nc : s + c])
        ev_labels.append(tv[s + nc : s + c] >= threshold)
    return Requests(
        users=np.asarray(req_users, dtype=np.int64),
        pos=pos,
        neg=neg,
        eval_req=np.concatenate(ev_req).astype(np.int64),
        eval_items=np.concatenate(ev_items).astype(np.int64),
        eval_labels=np.concatenate(ev_labels),
        ctx_items=all_items,
        ctx_values=all_vals,
    )


def request_rows(req: Requests, n_items: int, encoding: str, threshold: float):
    """The `x`, `y` rows of Eq. 17 for every request under a FEEDE encoding.

    Args:
        req: requests from `build_requests` (with `ctx_items` / `ctx_values`).
        n_items: item universe size.
        encoding: "threshold" (x = 1 on rating ≥ threshold, y = 1 on the other request
            items) or "rating6" (x = r/6, y = 1 − r/6 on every request item; text under
            Eq. 6).
        threshold: positive threshold of "threshold".

    Returns:
        `(x, y)`, two `(B, n_items)` float64 CSR matrices.
    """
    import scipy.sparse as sp

    rows = np.repeat(np.arange(len(req.ctx_items)), [a.size for a in req.ctx_items])
    cols = np.concatenate(req.ctx_items)
    vals = np.concatenate(req.ctx_values)
    if encoding == "threshold":
        xv = (vals >= threshold).astype(np.float64)
    elif encoding == "rating6":
        xv = vals / 6.0
    else:
        raise ValueError(f"encoding must be 'threshold' or 'rating6', got {encoding!r}")
    shape = (len(req.ctx_items), n_items)
    x = sp.csr_matrix((xv, (rows, cols)), shape=shape)
    y = sp.csr_matrix((1.0 - xv, (rows, cols)), shape=shape)
    x.eliminate_zeros()
    y.eliminate_zeros()
    return x, y


def requests_query(req: Requests, exclude_seen: bool = True):
    """The requests as a `Query`: positives as the history, negatives as `negatives`.

    This is how an online caller asks HI-RT / CF-RT (Eq. 17 / Eq. 5) through the common
    stage interface (`model.score_query(query)`), with every request row built like
    `request_rows(..., "threshold", ...)`.
    """
    from divrec.data.query import Query

    return Query(users=req.users, history=req.pos, negatives=req.neg, exclude_seen=exclude_seen)
