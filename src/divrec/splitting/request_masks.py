"""Masking the request items of realtime event requests (HI paper Test-RT)."""

from __future__ import annotations

import numpy as np

from divrec.splitting.events import Requests

__all__ = ["mask_request_items"]


def mask_request_items(scores: np.ndarray, req: Requests) -> np.ndarray:
    """Scores with every request's own items set to -inf, so that no list repeats them.

    Args:
        scores: `(B, n_items)` scores, row b for request b of `req`.
        req: the requests (`build_requests`); their positive and negative request items are
            masked.

    Returns:
        A float64 copy of `scores` with `-inf` at `(b, i)` for every item i in `req.pos[b]`
        or `req.neg[b]`; `scores` is not modified.
    """
    out = scores.astype(np.float64).copy()
    for b, (p, q) in enumerate(zip(req.pos, req.neg, strict=True)):
        out[b, p] = -np.inf
        out[b, q] = -np.inf
    return out
