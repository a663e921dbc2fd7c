"""The training harness: scoped torch state, early stopping bookkeeping, validation split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from divrec.nn import TrainingConfig, TrainLoop, holdout_split, training_scope
from divrec.stage import ParamError


def test_training_scope_restores_threads_and_rng():
    old_threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)  # what the global generator gives next from this state
    torch.manual_seed(123)
    with training_scope(seed=7, threads=2):
        assert torch.get_num_threads() == 2
        inside = torch.rand(3)
    assert torch.get_num_threads() == old_threads
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), inside)  # the scope seeded with `seed`


def test_training_scope_restores_on_error():
    old = torch.get_num_threads()
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"), training_scope(seed=1, threads=2):
        torch.rand(5)
        raise RuntimeError("boom")
    assert torch.get_num_threads() == old
    assert torch.equal(torch.get_rng_state(), state)


def test_cuda_without_gpu_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"), training_scope(0, 1, "cuda"):
        pass


def test_early_stopping_keeps_best_epoch():
    net = torch.nn.Linear(2, 1)
    losses = [1.0, 0.5, 0.7, 0.6, 0.8]
    weights = []
    with TrainLoop("t", total_steps=5, patience=2) as loop:
        for epoch, v in enumerate(losses):
            with torch.no_grad():
                net.weight.fill_(float(epoch))
            weights.append(epoch)
            loop.record(1.0)
            if loop.end_epoch(net, valid_loss=v):
                break
        loop.restore_best(net)
    # best is epoch 1 (0.5); epochs 2 and 3 do not improve: stop after epoch 3
    assert loop.best_epoch == 1 and loop.stopped_early
    assert loop.valid_loss == [1.0, 0.5, 0.7, 0.6]
    assert float(net.weight.detach()[0, 0]) == 1.0


def test_train_loss_is_weighted_mean():
    with TrainLoop("t", total_steps=2) as loop:
        loop.record(1.0, weight=1)
        loop.record(4.0, weight=3)
        assert not loop.end_epoch()
    assert loop.train_loss == [pytest.approx(13 / 4)]


def test_holdout_split_is_a_seeded_partition():
    tr, va = holdout_split(100, 0.1, seed=3)
    assert va.size == 10 and tr.size == 90
    assert np.array_equal(np.sort(np.r_[tr, va]), np.arange(100))
    tr2, va2 = holdout_split(100, 0.1, seed=3)
    assert np.array_equal(va, va2)
    tr0, va0 = holdout_split(100, 0.0, seed=3)
    assert va0.size == 0 and tr0.size == 100


def test_training_config_validates_on_construction():
    with pytest.raises(ParamError, match="device"):
        TrainingConfig(device="tpu")
    with pytest.raises(ParamError, match="valid_fraction"):
        TrainingConfig(valid_fraction=1.5)
    with pytest.raises(ParamError, match="patience"):
        TrainingConfig(patience=0)


def test_an_option_a_model_does_not_implement_is_an_error():
    from divrec.retrieval.neumf import NeuMFRecommender

    with pytest.raises(ParamError, match="no early stopping"):
        NeuMFRecommender(patience=2)
    with pytest.raises(ParamError, match="CPU only"):
        NeuMFRecommender(device="cuda")


def test_device_is_honoured_or_refused():
    """Models with a device path (the window CTR models) accept "cuda" and fail at fit in one
    line where torch sees no GPU; "auto" trains on the CPU here and gives the CPU's weights;
    CPU-only models refuse "cuda" at construction."""
    from divrec.data import SyntheticConfig, make_synthetic
    from divrec.ranking.ctr import DIN
    from divrec.ranking.purs import PURS

    data = make_synthetic(
        SyntheticConfig(n_users=30, n_items=40, n_topics=3, interactions_per_user=8, seed=2)
    ).interactions
    with pytest.raises(ParamError, match="CPU only"):
        PURS(device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            DIN(device="cuda", epochs=1, dim=4).fit(data)
    cpu = DIN(epochs=1, dim=4).fit(data)
    auto = DIN(epochs=1, dim=4, device="auto").fit(data)
    items = np.tile(np.arange(40), (5, 1))
    got = auto.score(np.arange(5), items)
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(got, cpu.score(np.arange(5), items))
    assert got.dtype == np.float32 and got.shape == (5, 40)


def test_sparse_adam_steps_only_the_rows_of_the_batch():
    from divrec.nn.train import make_table_optimizer

    torch.manual_seed(0)
    net = torch.nn.ModuleDict(
        {"emb": torch.nn.Embedding(6, 3), "lin": torch.nn.Linear(3, 1, bias=False)}
    )
    before = net["emb"].weight.detach().clone()
    lin_before = net["lin"].weight.detach().clone()
    lr, eps = 0.1, 1e-8
    opt = make_table_optimizer(net, (net["emb"],), "sparse_adam", lr)
    rows = torch.tensor([1, 4, 1])
    loss = net["lin"](net["emb"](rows)).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad = net["emb"].weight.grad.coalesce().to_dense()
    lin_grad = net["lin"].weight.grad.clone()
    opt.step()
    after = net["emb"].weight.detach()
    # untouched rows keep their values; a touched row's first Adam step (m̂ = g, v̂ = g²)
    # moves each coordinate by −lr · g / (|g| + eps)
    untouched = [0, 2, 3, 5]
    torch.testing.assert_close(after[untouched], before[untouched], rtol=0, atol=0)
    expected = before - lr * grad / (grad.abs() + eps)
    torch.testing.assert_close(after[[1, 4]], expected[[1, 4]])
    # the dense layer gets plain (dense) Adam: the same first step
    lin_expected = lin_before - lr * lin_grad / (lin_grad.abs() + eps)
    torch.testing.assert_close(net["lin"].weight.detach(), lin_expected)
    assert len(opt.param_groups) == 2


def test_table_optimizer_options_are_checked():
    from divrec.nn.train import make_table_optimizer

    net = torch.nn.Embedding(3, 2)
    with pytest.raises(ValueError, match="weight_decay"):
        make_table_optimizer(net, (net,), "sparse_adam", 0.1, weight_decay=0.01)
    with pytest.raises(ValueError, match="optimizer"):
        make_table_optimizer(net, (net,), "lazy", 0.1)
    dense = make_table_optimizer(net, (net,), "adam", 0.1)
    assert isinstance(dense, torch.optim.Adam) and not net.sparse


def test_dense_table_adam_is_adam_written_out():
    """kind="adam" (torch's fused kernel on the CPU) against Kingma & Ba 2015, Alg. 1 written
    in float64 numpy, with weight decay added to the gradient as torch.optim.Adam does."""
    from divrec.nn.train import make_table_optimizer

    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"emb": torch.nn.Embedding(7, 4), "lin": torch.nn.Linear(4, 2)})
    params = [p.detach().double().numpy().copy() for p in net.parameters()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, wd, b1, b2, eps = 0.05, 0.01, 0.9, 0.999, 1e-8
    opt = make_table_optimizer(net, (net["emb"],), "adam", lr, weight_decay=wd)
    assert opt.defaults["fused"] is True
    gen = torch.Generator().manual_seed(1)
    for t in range(1, 31):
        rows = torch.randint(0, 7, (5,), generator=gen)
        loss = (net["lin"](net["emb"](rows)) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for j, p in enumerate(net.parameters()):
            g = p.grad.double().numpy() + wd * params[j]
            m[j] = b1 * m[j] + (1 - b1) * g
            v[j] = b2 * v[j] + (1 - b2) * g * g
            m_hat, v_hat = m[j] / (1 - b1**t), v[j] / (1 - b2**t)
            params[j] = params[j] - lr * m_hat / (np.sqrt(v_hat) + eps)
        opt.step()
        for j, p in enumerate(net.parameters()):  # float32 steps: compare, then resync
            np.testing.assert_allclose(p.detach().double().numpy(), params[j], atol=2e-6)
            params[j] = p.detach().double().numpy().copy()
