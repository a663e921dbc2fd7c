"""The divrec thread policy: DIVREC_THREADS / set_threads resolution, limit_threads restoring."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_info

from divrec import threads as policy
from divrec.retrieval.ann import AnnIndex
from divrec.retrieval.two_tower import TwoTowerRecommender


@pytest.fixture(autouse=True)
def _clean_policy(monkeypatch):
    monkeypatch.delenv(policy.ENV_VAR, raising=False)
    policy.set_threads(None)
    yield
    policy.set_threads(None)


def test_default_budget_is_one_thread():
    assert policy.thread_budget() == 1
    assert policy.resolve_threads() == 1
    assert policy.resolve_threads(None, batch=10_000) == 1


def test_env_var_resolution(monkeypatch):
    monkeypatch.setenv("DIVREC_THREADS", "3")
    assert policy.thread_budget() == 3
    assert policy.resolve_threads() == 3
    assert policy.resolve_threads(None, batch=policy.SMALL_BATCH) == 3  # batch work
    assert policy.resolve_threads(None, batch=1) == 1  # a single request stays serial
    assert policy.resolve_threads(2, batch=1) == 2  # an explicit setting wins
    for auto in ("0", "auto", " AUTO "):
        monkeypatch.setenv("DIVREC_THREADS", auto)
        assert policy.thread_budget() == policy.available_cores()
    monkeypatch.setenv("DIVREC_THREADS", "two")
    with pytest.raises(ValueError, match="DIVREC_THREADS"):
        policy.thread_budget()
    monkeypatch.setenv("DIVREC_THREADS", "-1")
    with pytest.raises(ValueError):
        policy.thread_budget()


def test_set_threads_overrides_env_and_resets(monkeypatch):
    monkeypatch.setenv("DIVREC_THREADS", "4")
    policy.set_threads(2)
    assert policy.thread_budget() == 2
    policy.set_threads(0)
    assert policy.thread_budget() == policy.available_cores()
    policy.set_threads(None)
    assert policy.thread_budget() == 4
    with pytest.raises(ValueError):
        policy.set_threads(-2)
    assert policy.resolve_threads(np.int64(3)) == 3
    assert policy.resolve_threads(0) == policy.available_cores()


def _pools() -> list[int]:
    return [p["num_threads"] for p in threadpool_info()]


def test_limit_threads_sets_and_restores_everything():
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    before = (torch.get_num_threads(), faiss.omp_get_max_threads(), _pools())
    with policy.limit_threads(1) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
        assert set(_pools()) == {1}
        assert set(policy.current_threads().values()) == {1}
    assert (torch.get_num_threads(), faiss.omp_get_max_threads(), _pools()) == before
    with pytest.raises(RuntimeError), policy.limit_threads(1):
        raise RuntimeError("restored even on error")
    assert (torch.get_num_threads(), faiss.omp_get_max_threads(), _pools()) == before


def test_limit_threads_default_is_the_budget():
    policy.set_threads(1)
    with policy.limit_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1


def test_faiss_threads_restores():
    faiss.omp_set_num_threads(2)
    with policy.faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == 2


def _record(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapper(n):
        calls.append(n)
        return real(n)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_ann_search_threads_follow_policy(monkeypatch):
    rng = np.random.default_rng(0)
    index = AnnIndex("flat").fit(rng.normal(size=(300, 8)))
    faiss.omp_set_num_threads(2)
    policy.set_threads(2)
    calls = _record(monkeypatch, faiss, "omp_set_num_threads")
    index.search(rng.normal(size=(1, 8)), 5)  # one request: serial, then restored
    assert calls == [1, 2]
    calls.clear()
    index.search(rng.normal(size=(policy.SMALL_BATCH, 8)), 5)  # batch: the budget (2)
    assert calls == []  # already 2: nothing to change
    policy.set_threads(1)
    AnnIndex("flat", threads=2).fit(rng.normal(size=(50, 8))).search(rng.normal(size=(1, 8)), 3)
    assert calls == []  # explicit threads=2 equals the current setting
    assert faiss.omp_get_max_threads() == 2


def test_two_tower_trains_with_policy_threads(monkeypatch):
    rng = np.random.default_rng(0)
    train = sp.random(40, 30, density=0.2, format="csr", random_state=1)
    train.data[:] = 1
    torch.set_num_threads(2)
    monkeypatch.setenv("DIVREC_THREADS", "1")
    calls = _record(monkeypatch, torch, "set_num_threads")
    model = TwoTowerRecommender(dim=4, batch_size=32, epochs=1, seed=int(rng.integers(9)))
    assert model.threads is None  # the constructor default defers to the policy
    model.fit(train)
    assert calls == [1, 2]  # trained on the policy's 1 thread, then restored
    calls.clear()
    TwoTowerRecommender(dim=4, batch_size=32, epochs=1, threads=2).fit(train)
    assert calls == [2, 2]


def test_implicit_models_get_the_policy_thread_count(monkeypatch):
    import implicit.cpu.als
    import implicit.cpu.bpr

    from divrec.retrieval.baselines import ALSRecommender, BPRRecommender

    seen = []
    for cls in (implicit.cpu.als.AlternatingLeastSquares,
                implicit.cpu.bpr.BayesianPersonalizedRanking):  # fmt: skip
        real_fit = cls.fit

        def spy_fit(self, *args, _real=real_fit, **kwargs):
            seen.append(self.num_threads)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", spy_fit)
    train = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    train.data[:] = 1
    monkeypatch.setenv("DIVREC_THREADS", "2")
    ALSRecommender(factors=4, iterations=1).fit(train)  # threads=None: the policy (2)
    ALSRecommender(factors=4, iterations=1, threads=1).fit(train)
    BPRRecommender(factors=4, iterations=1).fit(train)  # BPR keeps its default of 1
    assert seen == [2, 1, 1]


def test_configure_threads_applies_the_budget_process_wide(monkeypatch):
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    before = _pools()
    with threadpool_limits(limits=2):  # restores every pool after the test
        monkeypatch.setenv("DIVREC_THREADS", "1")
        assert policy.configure_threads() == 1  # None: the env budget
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
        assert set(_pools()) == {1}
        assert policy.configure_threads(2) == 2 and policy.thread_budget() == 2
        assert torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == 2
        assert set(_pools()) == {2}
    assert _pools() == before
    faiss.omp_set_num_threads(2)


def test_run_rows_splits_batches_over_the_policy_threads():
    import threading

    from divrec.rerank._base import run_rows

    def recorder(seen):
        def work(a, b):
            seen.append((a, b, threading.get_ident()))
            return 1 << len(seen)

        return work

    policy.set_threads(3)
    seen = []
    bsz = policy.SMALL_BATCH + 7
    assert run_rows(bsz, recorder(seen)) == 2 | 4 | 8  # OR of the three ranges' flags
    ranges = sorted((a, b) for a, b, _ in seen)
    assert ranges[0][0] == 0 and ranges[-1][1] == bsz and len(ranges) == 3
    assert all(x[1] == y[0] for x, y in zip(ranges, ranges[1:], strict=False))  # contiguous
    assert threading.get_ident() not in {t for _, _, t in seen}  # ran on the pool
    seen.clear()  # a small batch (one request's worth of calls) stays on the caller
    run_rows(policy.SMALL_BATCH - 1, recorder(seen))
    assert seen == [(0, policy.SMALL_BATCH - 1, threading.get_ident())]
    policy.set_threads(1)
    seen.clear()
    run_rows(1000, recorder(seen))
    assert seen == [(0, 1000, threading.get_ident())]


def test_rerank_batches_are_identical_on_two_threads():
    from divrec.rerank import MMR, SSD, FastGreedyDPP, InterestAwareMMR, PersonalizedDPP

    rng = np.random.default_rng(3)
    bsz, n, d, k = policy.SMALL_BATCH + 9, 40, 6, 12  # k > d: some lists are filled
    r = rng.normal(size=(bsz, n))
    v = rng.normal(size=(bsz, n, d))
    valid = rng.random((bsz, n)) < 0.8
    user = rng.normal(size=(bsz, d))
    cases = [
        (FastGreedyDPP(theta=0.6), {"vectors": v, "valid": valid}),
        (FastGreedyDPP(theta=0.6, window=3), {"vectors": v}),
        (FastGreedyDPP(theta=0.3), {"similarity": np.einsum("bnd,bmd->bnm", v, v)}),
        (PersonalizedDPP(), {"vectors": v, "theta": np.linspace(0.0, 1.0, bsz)}),
        (MMR(lambda_=0.5), {"vectors": v, "valid": valid}),
        (InterestAwareMMR(lambda_=0.2), {"vectors": v, "user": user}),
        (SSD(gamma=1.0), {"vectors": v}),
    ]
    for reranker, kw in cases:
        policy.set_threads(1)
        one = reranker.select_batch(r, k, **kw)
        policy.set_threads(2)
        two = reranker.select_batch(r, k, **kw)
        np.testing.assert_array_equal(one, two, err_msg=type(reranker).__name__)
    bad = v.copy()
    bad[-1, 0, 0] = np.nan  # in the second thread's range
    with pytest.raises(ValueError, match="NaN or infinite"):
        FastGreedyDPP(theta=0.5).select_batch(r, k, vectors=bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        MMR(lambda_=0.5).select_batch(r, k, vectors=bad)
