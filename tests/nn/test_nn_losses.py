"""Accidental-hit pairs and the masked softmax cross-entropy of `divrec.nn.losses`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.nn.losses import corrected_softmax_ce, infonce_loss, same_id_pairs


def _brute_pairs(*ids):
    b = ids[0].shape[0]
    return {
        (r, c)
        for r in range(b)
        for c in range(b)
        if r != c and any(int(x[r]) == int(x[c]) for x in ids)
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=30).flatmap(
        lambda a: st.tuples(
            st.just(a), st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a))
        )
    )
)
def test_same_id_pairs_are_the_off_diagonal_equal_ids(arrays):
    a, b = (torch.tensor(x, dtype=torch.int64) for x in arrays)
    for ids in ((a,), (b,), (a, b)):
        rows, cols = same_id_pairs(*ids)
        got = set(zip(rows.tolist(), cols.tolist(), strict=True))
        assert got == _brute_pairs(*ids)
        if len(ids) == 1:  # each pair listed once for a single id array
            assert rows.numel() == len(got)


def _masked_reference(logits, log_q, target, mask):
    """The former dense form: (B, C) one-hot keeps the target, masked_fill drops the rest."""
    z = logits - log_q
    keep = F.one_hot(target, z.shape[1]).bool()
    return F.cross_entropy(z.masked_fill(mask & ~keep, float("-inf")), target)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 24), st.integers(0, 2**31 - 1))
def test_sparse_drop_equals_the_dense_mask_in_value_and_gradient(b, seed):
    rng = np.random.default_rng(seed)
    ids = torch.from_numpy(rng.integers(0, max(1, b // 3), b))
    users = torch.from_numpy(rng.integers(0, max(1, b // 2), b))
    scores = torch.from_numpy(rng.normal(size=(b, b))).requires_grad_(True)
    lq_i = torch.from_numpy(rng.normal(size=b))
    lq_u = torch.from_numpy(rng.normal(size=b))
    target = torch.arange(b)
    ref = _masked_reference(scores, lq_i, target, ids[:, None] == ids[None, :])
    ref = ref + _masked_reference(scores.T, lq_u, target, users[:, None] == users[None, :])
    (g_ref,) = torch.autograd.grad(ref, scores)
    got = infonce_loss(scores, lq_i, lq_u, "bi", user_ids=users, item_ids=ids)
    (g_got,) = torch.autograd.grad(got, scores)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-12)
    # the dense `mask` argument gives the same value too
    mask = ids[:, None] == ids[None, :]
    dense = corrected_softmax_ce(scores, lq_i, target, mask)
    sparse = corrected_softmax_ce(scores, lq_i, target, drop=same_id_pairs(ids))
    torch.testing.assert_close(dense, sparse, rtol=1e-12, atol=1e-12)


def test_drop_never_removes_the_target_column():
    # row 0's target is column 2; a drop pair on it is ignored, the other one is applied
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([2, 0])
    drop = (torch.tensor([0, 0]), torch.tensor([2, 1]))
    got = corrected_softmax_ce(logits, None, target, drop=drop)
    row0 = -(3.0 - np.log(np.exp(1.0) + np.exp(3.0)))
    row1 = -(0.5 - np.log(np.exp(0.5) + np.exp(0.0) + np.exp(-1.0)))
    assert abs(float(got) - (row0 + row1) / 2) < 1e-12
