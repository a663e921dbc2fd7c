"""CDM: Gumbel-top-k sampling, relaxed top-k, the contrastive context encoder, loss, teacher,
training, ablations and persistence."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import divrec
from divrec.ranking.cdm import (
    CDMRanker,
    CDMStudent,
    cdm_loss,
    gumbel_keys,
    hard_topk,
    relaxed_topk,
    teacher_labels,
)
from divrec.registry import create
from divrec.rerank.mmr import InterestAwareMMR

sys.path.insert(0, str(Path(__file__).parent))
from test_dcn import topic_requests  # noqa: E402


# --------------------------------------------------------------------------- relaxed top-k
def test_relaxed_topk_tends_to_hard_topk_of_perturbed_weights():
    gen = torch.Generator().manual_seed(0)
    log_p = torch.log_softmax(torch.randn(50, 12, generator=gen, dtype=torch.float64), dim=-1)
    keys = gumbel_keys(log_p, gen)  # Eq. 5–6
    hard = hard_topk(keys, 4)
    assert torch.equal(hard.sum(-1), torch.full((50,), 4.0, dtype=torch.float64))
    errs = []
    for tau in (1.0, 0.1, 1e-3, 1e-4, 1e-5):
        soft = relaxed_topk(keys, 4, tau)
        np.testing.assert_allclose(soft.sum(-1).numpy(), 4.0, atol=1e-9)  # Σ a = k for any τ
        errs.append((soft - hard).abs().max().item())
    # τ → 0: the hard k-hot vector of the perturbed weights (the smallest gap between the
    # 4th and 5th key here is 1.5e-3, so τ must be well below it)
    assert errs[-1] < 1e-9
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 9),
    k=st.integers(1, 9),
    tau=st.floats(0.05, 5.0),
    seed=st.integers(0, 10_000),
)
def test_relaxed_topk_is_a_relaxed_k_hot_vector(n, k, tau, seed):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(3, n, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(3, n, generator=gen) < 0.7
    mask[:, 0] = True
    a = relaxed_topk(keys, k, tau, mask)
    kb = mask.sum(-1).clamp(max=k).double()
    np.testing.assert_allclose(a.sum(-1).numpy(), kb.numpy(), atol=1e-6)
    # (entries may exceed 1 at large τ: Eq. 9 updates α, not α/τ; e.g. n = k = 2, τ = 1
    # gives a = (p + ½, 3/2 − p))
    assert (a >= 0).all()
    assert (a[~mask] < 1e-12).all()


def test_gumbel_keys_sample_plackett_luce_subsets():
    """The ordered top-2 of the Gumbel keys of log p follows Plackett–Luce:
    P(i then j) = p_i · p_j / (1 − p_i)."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    n_samples = 20_000
    gen = torch.Generator().manual_seed(123)
    log_p = torch.log(torch.as_tensor(p)).expand(n_samples, 4)
    top = gumbel_keys(log_p, gen).topk(2, dim=-1).indices.numpy()
    pairs = list(itertools.permutations(range(4), 2))
    observed = np.array([np.sum((top[:, 0] == i) & (top[:, 1] == j)) for i, j in pairs])
    expected = np.array([p[i] * p[j] / (1 - p[i]) for i, j in pairs]) * n_samples
    assert observed.sum() == n_samples and math.isclose(expected.sum(), n_samples)
    stat, pvalue = chisquare(observed, expected)
    assert pvalue > 1e-3, (stat, pvalue)
    # and a wrong model (uniform subsets) is rejected by the same test
    assert chisquare(observed, np.full(12, n_samples / 12))[1] < 1e-6


# --------------------------------------------------------------------------- student
def _np_student(st_: CDMStudent, items, ctx, mask, user, k, nce_t):
    """Numpy reference of the inference path (hard top-k, no noise), Eq. 11–17."""
    w = {n: v.detach().numpy().astype(np.float64) for n, v in st_.state_dict().items()}
    b, n, _ = items.shape
    logits, infos = np.zeros((b, n)), np.zeros((b, n))
    for r in range(b):
        for t in range(n):
            q = w["w1.weight"] @ items[r, t]
            keys = ctx[r] @ w["w2.weight"].T
            vals = ctx[r] @ w["w3.weight"].T
            s = keys @ q / math.sqrt(st_.dim)
            ok = np.flatnonzero(mask[r, t])
            pos = ok[np.argsort(-s[ok], kind="stable")[:k]]  # most similar k
            neg = ok[np.argsort(s[ok], kind="stable")[:k]]  # least similar k
            ap = np.exp(s[pos] - s[pos].max())
            c_pos = (ap / ap.sum()) @ vals[pos]  # Eq. 12
            an = np.exp(-s[neg] - (-s[neg]).max())
            c_neg = (an / an.sum()) @ vals[neg]  # Eq. 13
            z = np.array([q @ c_pos, q @ c_neg]) / nce_t
            infos[r, t] = -(z[0] - np.log(np.exp(z).sum()))  # Eq. 14
            x = np.r_[user[r] * c_pos, user[r] * c_neg]
            h = np.maximum(w["ffn.0.weight"] @ x + w["ffn.0.bias"], 0)
            cc = w["ffn.2.weight"] @ h + w["ffn.2.bias"]  # Eq. 15
            logits[r, t] = q @ cc  # Eq. 17
    return logits, infos


def test_student_inference_matches_numpy_reference():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    student = CDMStudent(item_dim=6, dim=4).double().eval()
    items = rng.normal(size=(2, 7, 6))
    mask = ~np.eye(7, dtype=bool)[None].repeat(2, 0)
    mask[1, :, 5] = False  # a padding context item
    user = rng.normal(size=(2, 4))
    t_items = torch.as_tensor(items)
    logit, info = student(
        t_items, t_items, torch.as_tensor(mask), torch.as_tensor(user), 3, None, 0.5
    )
    ref_logit, ref_info = _np_student(student, items, items, mask, user, 3, 0.5)
    np.testing.assert_allclose(logit.detach().numpy(), ref_logit, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(info.detach().numpy(), ref_info, rtol=1e-8, atol=1e-10)


def test_student_training_path_has_gradients_and_noise():
    torch.manual_seed(0)
    student = CDMStudent(item_dim=6, dim=4)
    items = torch.randn(2, 7, 6, requires_grad=True)
    mask = ~torch.eye(7, dtype=torch.bool).expand(2, 7, 7)
    user = torch.randn(2, 4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    a, _ = student(items, items, mask, user, 3, 0.5, 0.5, g1)
    b, _ = student(items, items, mask, user, 3, 0.5, 0.5, g2)
    assert not torch.allclose(a, b)  # Gumbel noise differs
    a.sum().backward()
    assert items.grad is not None and items.grad.abs().sum() > 0
    assert student.w2.weight.grad.abs().sum() > 0  # attention keys get gradients (Eq. 11)


def test_cdm_loss_by_hand():
    f = torch.tensor([[0.5, -1.0, 2.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    s = torch.tensor([[0.2, 0.3, -0.4]])
    yt = torch.tensor([[0.0, 1.0, 0.0]])
    info = torch.tensor([[0.7, 0.1, 0.9]])
    valid = torch.tensor([[True, True, False]])

    def bce(z, t):
        p = 1 / (1 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    want = np.mean(
        [bce(0.5, 1) + 2 * bce(0.2, 0) + 0.3 * 0.7, bce(-1.0, 0) + 2 * bce(0.3, 1) + 0.3 * 0.1]
    )
    got = cdm_loss(f, y, s, yt, info, valid, beta1=2.0, beta2=0.3)
    assert math.isclose(float(got), want, rel_tol=1e-6)


def test_teacher_labels_are_interest_aware_mmr_winners():
    rng = np.random.default_rng(0)
    rel = rng.random((3, 8))
    e = rng.normal(size=(3, 8, 4))
    u = rng.normal(size=(3, 4))
    valid = np.ones((3, 8), dtype=bool)
    valid[2, 6:] = False
    y = teacher_labels(rel, e, u, valid, k=3, lambda_=0.5)
    mmr = InterestAwareMMR(lambda_=0.5)
    for r in range(3):
        idx = np.flatnonzero(valid[r])
        sel = mmr.select(rel[r, idx], 3, vectors=e[r, idx], user=u[r])
        want = np.zeros(8)
        want[idx[sel]] = 1
        np.testing.assert_array_equal(y[r], want)
    # λ = 0: the teacher is the relevance top-3
    y0 = teacher_labels(rel, e, u, valid, k=3, lambda_=0.0)
    np.testing.assert_array_equal(np.sort(np.flatnonzero(y0[0])), np.sort(np.argsort(-rel[0])[:3]))


# --------------------------------------------------------------------------- the ranker
@pytest.fixture(scope="module")
def fitted():
    data, req, topic = topic_requests(n_users=60, n_items=40)
    model = CDMRanker(
        dim=8, hidden=(16, 8, 8), lr=1e-2, batch_requests=4, max_epochs=2, cdm_epochs=1,
        teacher_k=5, n_context=3, gamma=0.2, seed=0,
    )  # fmt: skip
    model.fit(data, requests=req)
    return data, req, model


def test_cdm_fit_serving_and_round_trip(fitted, tmp_path):
    data, req, model = fitted
    assert 0 < model.teacher_rate_ <= 5 / 20 + 1e-9
    f, y = model.request_scores(req.users, req.candidates)
    np.testing.assert_allclose(model.score(req.users, req.candidates), f + 0.2 * y, rtol=1e-6)
    assert ((y > 0) & (y < 1)).all()
    loaded = divrec.load(model.save(tmp_path / "cdm"))
    np.testing.assert_array_equal(
        loaded.score(req.users, req.candidates), model.score(req.users, req.candidates)
    )
    ids, _ = loaded.recommend(np.arange(3), k=4)
    assert ids.shape == (3, 4)
    # γ = 0 is the backbone's order (γ is a serving weight: swap the fitted model's config)
    config = model.config
    model.config = config.with_params(gamma=0.0)
    try:
        np.testing.assert_allclose(model.score(req.users, req.candidates), f, rtol=1e-6)
    finally:
        model.config = config


def test_full_ranking_scores_are_backbone_plus_student_on_the_top_candidates(fitted):
    """score_all: backbone f on every item; the top `n_candidates` by f (the request's
    context) get + γ · y_stu computed with exactly that context."""
    from divrec.data.query import Query

    _, _, model = fitted
    users = np.arange(4)
    config = model.config
    model.config = config.with_params(n_candidates=12)
    try:
        got = model.score_all(users)
        items = np.broadcast_to(np.arange(model.n_items_), (4, model.n_items_)).copy()
        f = 1.0 / (1.0 + np.exp(-model.backbone_logits(Query(users=users), items)))
        top = np.argsort(-f, axis=1, kind="stable")[:, :12]
        _, y = model.request_scores(users, top)
        want = f.astype(np.float32).copy()
        np.put_along_axis(want, top, np.take_along_axis(want, top, 1) + model.gamma * y, 1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        rest = np.ones(f.shape, dtype=bool)
        np.put_along_axis(rest, top, False, 1)
        np.testing.assert_allclose(got[rest], f[rest], rtol=1e-5)  # no student term
    finally:
        model.config = config


def test_context_is_the_request_candidate_set(fitted):
    _, req, model = fitted
    _, y_full = model.request_scores(req.users[:2], req.candidates[:2])
    cut = req.candidates[:2].copy()
    cut[:, 10:] = -1  # a smaller candidate set changes the student's context
    _, y_cut = model.request_scores(req.users[:2], cut)
    assert not np.allclose(y_full[:, :10], y_cut[:, :10])
    assert (y_cut[:, 10:] == 0).all()


@pytest.mark.parametrize(
    "params",
    [
        {"context": "plain"}, {"beta2": 0.0}, {"context_size": 6}, {"cross_rank": 2},
        {"student_hidden": 12}, {"topk": "hard"},
    ],
)  # fmt: skip
def test_ablations_and_restricted_context_train(params):
    data, req, _ = topic_requests(n_users=40, n_items=30)
    base = dict(dim=4, hidden=(8, 8, 8), max_epochs=1, cdm_epochs=1, teacher_k=4, n_context=2)
    model = CDMRanker(**{**base, **params}).fit(data, requests=req)
    assert len(model.joint_val_losses_) == 1 and np.isfinite(model.joint_val_losses_[0])
    assert np.isfinite(model.score(req.users, req.candidates)).all()


def test_shared_backbone_is_copied_not_retrained(fitted):
    from divrec.ranking.dcn import DCNRanker

    data, req, _ = fitted
    kw = dict(dim=4, hidden=(8, 8, 8), max_epochs=2, seed=0)
    dcn = DCNRanker(**kw).fit(data, requests=req)
    before = dcn.score(req.users, req.candidates)
    cdm = CDMRanker(**kw, cdm_epochs=0, gamma=0.0).fit(data, requests=req, backbone=dcn)
    np.testing.assert_allclose(cdm.score(req.users, req.candidates), before, rtol=1e-6)
    np.testing.assert_allclose(dcn.score(req.users, req.candidates), before)  # untouched
    with pytest.raises(ValueError, match="dim"):
        CDMRanker(dim=8).fit(data, requests=req, backbone=dcn)


def test_registry_and_pipeline_fit_with_retriever():
    from divrec.data.synthetic import SyntheticConfig, make_synthetic
    from divrec.pipeline import Pipeline
    from divrec.retrieval.baselines import PopularityRecommender

    data = make_synthetic(SyntheticConfig(n_users=60, n_items=50, n_topics=3, seed=1)).interactions
    ranker = create(
        "ranker", "cdm", {"max_epochs": "1", "cdm_epochs": "1", "n_candidates": "20", "dim": "4"}
    )
    assert isinstance(ranker, CDMRanker) and ranker.needs_retriever
    pipe = Pipeline(PopularityRecommender(), ranker=ranker, n_candidates=20).fit(data)
    ids, _ = pipe.recommend(np.arange(4), k=5)
    assert ids.shape == (4, 5) and (ids >= 0).all()
    assert ranker.net_.item_emb.weight.shape == (50, 4)


def test_bad_params():
    with pytest.raises(ValueError, match="context"):
        CDMRanker(context="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        CDMRanker(tau_start=0.1, tau_end=1.0)
    with pytest.raises(ValueError, match="tau"):
        relaxed_topk(torch.zeros(3), 1, 0.0)


def test_frozen_backbone_keeps_f_and_student_width_round_trips(fitted, tmp_path):
    """freeze_backbone: the joint phase trains the student only (f stays the teacher's);
    student_hidden sets the fusion FFN's width and survives save/load."""
    from divrec.ranking.dcn import DCNRanker

    data, req, _ = fitted
    kw = dict(dim=4, hidden=(8, 8, 8), max_epochs=1, seed=0)
    dcn = DCNRanker(**kw).fit(data, requests=req)
    cdm = CDMRanker(
        **kw, cdm_epochs=1, freeze_backbone=True, student_hidden=7, teacher_k=4, n_context=2
    ).fit(data, requests=req, backbone=dcn)
    f, _ = cdm.request_scores(req.users, req.candidates)
    np.testing.assert_allclose(f, dcn.score(req.users, req.candidates), rtol=1e-6)
    assert cdm.student_.ffn[0].weight.shape[0] == 7
    loaded = divrec.load(cdm.save(tmp_path / "cdm7"))
    np.testing.assert_array_equal(
        loaded.score(req.users, req.candidates), cdm.score(req.users, req.candidates)
    )


@pytest.mark.parametrize(
    ("params", "calls"),
    [
        ({}, 1),
        ({"teacher_refresh": True}, 3),
        ({"teacher_refresh": True, "freeze_backbone": True}, 1),
    ],
)
def test_teacher_refresh_recomputes_labels_each_joint_epoch(monkeypatch, params, calls):
    data, req, _ = topic_requests(n_users=30, n_items=20)
    seen = []
    orig = CDMRanker._teacher

    def spy(self, r):
        out = orig(self, r)
        seen.append(out)
        return out

    monkeypatch.setattr(CDMRanker, "_teacher", spy)
    base = dict(dim=4, hidden=(8,), max_epochs=1, cdm_epochs=3, teacher_k=4, n_context=2)
    model = CDMRanker(**base, **params).fit(data, requests=req)
    assert len(seen) == calls
    for y in seen:  # each one a teacher_k-hot selection
        assert ((y == 0) | (y == 1)).all() and (y.sum(1) <= 4).all()
    assert len(model.joint_val_losses_) == 3
