"""Sequential retrieval training: ComiRec's cut rule, per-position DR weights, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from divrec.data.interactions import Interactions
from divrec.retrieval.sequential import SequentialRecommender, cut_examples, dynamic_routing
from divrec.retrieval.sequential.encoders import _SeqNet
from divrec.retrieval.sequential.model import _carve_valid
from divrec.splitting.comirec import comirec_split


def _flat(seqs):
    lengths = torch.tensor([len(s) for s in seqs])
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(s) for s in seqs])[:-1]]))
    return torch.tensor(np.concatenate(seqs)), offsets, lengths


# --------------------------------------------------------------------------- cut rule
def test_cut_examples_from_history_length_4_by_hand():
    flat, off, ln = _flat([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24]])
    seq = torch.tensor([0, 0, 1, 0])
    u = torch.tensor([0.0, 0.99, 0.7, 0.5])
    # ComiRec: k = random.choice(range(4, len)): seq 0 has k ∈ {4, 5}, seq 1 only k = 4
    hist, ex, tgt = cut_examples(flat, off, ln, seq, u, min_history=4, max_len=5)
    np.testing.assert_array_equal(
        hist.numpy(),
        [
            [10, 11, 12, 13, -1],  # k = 4: the first four items
            [10, 11, 12, 13, 14],  # k = 5
            [20, 21, 22, 23, -1],  # k = 4 whatever u
            [10, 11, 12, 13, 14],  # u = 0.5 → k = 4 + floor(0.5 · 2) = 5
        ],
    )
    np.testing.assert_array_equal(ex.numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(tgt.numpy(), [14, 15, 24, 15])
    # L = 3 keeps the latest three; next-2 drops targets past the end
    hist, ex, tgt = cut_examples(flat, off, ln, seq[:2], u[:2], 4, max_len=3, next_n=2)
    np.testing.assert_array_equal(hist.numpy(), [[11, 12, 13], [12, 13, 14]])
    np.testing.assert_array_equal(ex.numpy(), [0, 0, 1])
    np.testing.assert_array_equal(tgt.numpy(), [14, 15, 15])
    # min_history 1: u = 0 is the one-item history
    hist, _, tgt = cut_examples(flat, off, ln, seq[:1], u[:1], 1, max_len=2)
    np.testing.assert_array_equal(hist.numpy(), [[10, -1]])
    assert tgt.tolist() == [11]


def test_every_cut_is_in_comirec_range():
    flat, off, ln = _flat([list(range(9)), list(range(100, 105))])
    rng = np.random.default_rng(0)
    seq = torch.tensor(rng.integers(0, 2, 2000))
    u = torch.tensor(rng.random(2000))
    hist, _, tgt = cut_examples(flat, off, ln, seq, u, min_history=4, max_len=20)
    k = (hist >= 0).sum(1).numpy()  # history length = k (L ≥ len)
    for s, length in ((0, 9), (1, 5)):
        ks = k[seq.numpy() == s]
        assert set(ks.tolist()) == set(range(4, length))  # every cut 4 ≤ k < len, no other
    np.testing.assert_array_equal(tgt.numpy() % 100, k)  # target = s[k]


def _log(seqs) -> Interactions:
    users = np.concatenate([[u] * len(s) for u, s in enumerate(seqs)])
    ts = np.concatenate([np.arange(len(s)) for s in seqs])
    return Interactions.from_arrays(users, np.concatenate(seqs), timestamps=ts, dedupe=None)


def test_fit_with_min_history_4_trains_only_on_cuts_from_4():
    seqs = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9], [0, 2, 4, 6, 8]]
    m = SequentialRecommender(min_history=4, dim=4, epochs=1, ssm_negatives=3).fit(_log(seqs))
    # training targets: user 0 → items 4, 5; user 1 (length 4) none; user 2 → item 8
    # (marginal: each example weighted 1 / (S · (len − 4)), S = 2 usable sequences)
    want = np.zeros(10)
    want[[4, 5]] = 0.25
    want[8] = 0.5
    np.testing.assert_allclose(m.target_marginal_, want, rtol=1e-6)
    with pytest.raises(ValueError, match="min_history=4"):
        SequentialRecommender(min_history=4, epochs=1).fit(_log([[0, 1, 2, 3], [4, 5]]))


# --------------------------------------------------------------------------- ComiRec-DR
def test_dr_position_weights_equal_numpy_routing():
    torch.manual_seed(0)
    n_items, d, k, length = 7, 3, 2, 4
    net = _SeqNet(n_items, d, "dr", length, k, 3, "position").double()
    assert tuple(net.caps.shape) == (length, k, d, d)
    with torch.no_grad():
        net.caps.normal_()
        net.item.weight.normal_()
        net.item.weight[n_items].zero_()
    hist = torch.tensor([[1, 4, 2, -1], [6, 5, 0, 3]])
    got = net(hist).detach().numpy()
    emb = net.item.weight.detach().numpy()
    w = net.caps.detach().numpy()
    for r in range(2):
        h = hist[r].numpy()
        e_hat = np.zeros((k, length, d))
        for j in range(length):
            x = emb[h[j]] if h[j] >= 0 else np.zeros(d)
            for i in range(k):
                e_hat[i, j] = w[j, i] @ x  # W_{j,k} e_j: a map per position and interest
        want = dynamic_routing(torch.tensor(e_hat[None]), torch.tensor(h[None] >= 0), 3)
        np.testing.assert_allclose(got[r], want[0].numpy(), rtol=1e-10)
    # shared weights: one (K, D, D) map, the same at every position
    shared = _SeqNet(n_items, d, "dr", length, k, 3, "shared")
    assert tuple(shared.caps.shape) == (k, d, d)


# --------------------------------------------------------------------------- early stopping
def _topic_log(n_users=200, n_items=30, length=10, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    half = n_items // 2
    users, items, ts = [], [], []
    for u in range(n_users):
        for t in range(length):
            items.append(rng.integers(0, half) + (u % 2) * half)
            users.append(u)
            ts.append(t)
    return Interactions.from_arrays(
        np.asarray(users), np.asarray(items), timestamps=np.asarray(ts), dedupe=None
    )


def test_patience_stops_after_that_many_evaluations_without_a_better_recall():
    split = comirec_split(_topic_log(), seed=0)
    valid = (split.valid_history, split.valid_targets)
    m = SequentialRecommender(
        dim=8, epochs=40, eval_every=0.5, patience=2, lr=0.05, ssm_negatives=10, valid_k=5
    ).fit(split.train, valid=valid)
    recalls = [r for _, r in m.valid_recall_]
    # brute force of the rule: stop at the first evaluation that is the 2nd in a row with
    # no strictly better recall than every earlier one
    bad, stop = 0, None
    for i, r in enumerate(recalls):
        bad = 0 if r > max(recalls[:i], default=-1) else bad + 1
        if bad == 2:
            stop = i
            break
    assert m.stopped_early_ and stop == len(recalls) - 1
    assert m.epochs_run_ == pytest.approx(0.5 * len(recalls), abs=0.01) and m.epochs_run_ < 40
    best = int(np.argmax(recalls))
    assert m.best_epoch_ == pytest.approx(m.valid_recall_[best][0])
    # the best evaluation's weights were restored
    assert m._valid_recall(m.net_, *valid) == pytest.approx(recalls[best])


def test_valid_fraction_holds_users_out_and_bad_validation_is_refused():
    seqs = [list(range(10)), [3, 4], [5], list(range(20, 25))]
    users, hist, tgt = _carve_valid([np.asarray(s) for s in seqs], 0.5, seed=0)
    assert len(users) == 2 and users <= {0, 1, 3}  # sequences of ≥ 2 items only
    for row, u in enumerate(sorted(users)):  # rows follow the sorted held-out users
        s = seqs[u]
        cut = max(1, int(0.8 * len(s)))
        assert hist[row][hist[row] >= 0].tolist() == s[:cut]
        assert tgt[row][tgt[row] >= 0].tolist() == s[cut:]
    data = _topic_log(n_users=40, length=6)
    m = SequentialRecommender(dim=4, epochs=1, valid_fraction=0.25, ssm_negatives=5).fit(data)
    assert len(m.valid_recall_) == 1 and m.best_epoch_ == pytest.approx(m.epochs_run_)
    with pytest.raises(ValueError, match="patience"):
        SequentialRecommender(patience=1, epochs=1).fit(data)
    with pytest.raises(ValueError, match="valid"):
        SequentialRecommender(epochs=1).fit(data, valid=(np.zeros(3), np.zeros((3, 1))))
    with pytest.raises(ValueError, match="valid"):
        SequentialRecommender(epochs=1, valid_fraction=0.1).fit(
            data, valid=(np.zeros((3, 2)), np.zeros((3, 1)))
        )
