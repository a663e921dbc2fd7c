"""Re-ranker configs and the diversity knob as per-request parameters.

A batch mixing knob values (`Query.diversity`) is one `select_batch` call with a per-row
trade-off parameter; every row must equal the re-ranker constructed with that row's
parameter, run on that row alone (an independent oracle: the mapping of the knob is
written out here, not read from the classes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from divrec.data import SyntheticConfig, make_synthetic
from divrec.data.query import Candidates, Query
from divrec.params import ParamError
from divrec.rerank import (
    CFDA,
    CFDM,
    MMR,
    SSD,
    CategoryCap,
    FastGreedyDPP,
    HybridUtility,
    InterestAwareMMR,
    PersonalizedDPP,
    RealtimePersonalizedDPP,
    Reranker,
)

ALL = (
    MMR,
    InterestAwareMMR,
    FastGreedyDPP,
    PersonalizedDPP,
    RealtimePersonalizedDPP,
    SSD,
    CategoryCap,
    CFDA,
    CFDM,
    HybridUtility,
)

B, N, K, D = 14, 40, 8, 6
#: zeros (relevance order), repeats, both ends of the range
KNOB = np.array([0.0, 0.1, 0.5, 0.5, 1.0, 0.3, 0.0, 0.9, 0.25, 0.7, 0.5, 0.05, 0.999, 0.6])


def _ratio(d: float) -> float:
    d = min(d, 1.0 - 1e-6)
    return d / (1.0 - d)


#: name → (re-ranker with the knob, oracle constructor of one knob value)
CASES = {
    "mmr": (lambda: MMR(lambda_=0.2), lambda d: MMR(lambda_=1.0 - d)),
    "mmr-raw": (
        lambda: MMR(relevance_scaling="raw"),
        lambda d: MMR(lambda_=1.0 - d, relevance_scaling="raw"),
    ),
    "ia-mmr": (lambda: InterestAwareMMR(), lambda d: InterestAwareMMR(lambda_=_ratio(d))),
    "dpp": (lambda: FastGreedyDPP(theta=0.9), lambda d: FastGreedyDPP(theta=1.0 - d)),
    "dpp-window": (
        lambda: FastGreedyDPP(window=3, fill=False),
        lambda d: FastGreedyDPP(theta=1.0 - d, window=3, fill=False),
    ),
    "pdpp": (
        lambda: PersonalizedDPP(theta_low=0.1),
        lambda d: FastGreedyDPP(theta=1.0 - d),
    ),
    "rt-dpp": (
        lambda: RealtimePersonalizedDPP(eps=1e-8),
        lambda d: FastGreedyDPP(theta=1.0 - d, eps=1e-8),
    ),
    "ssd": (lambda: SSD(window=3), lambda d: SSD(gamma=_ratio(d), window=3)),
    "cfda": (lambda: CFDA(), lambda d: CFDA(phi=_ratio(d))),
}


@pytest.fixture(scope="module")
def setup():
    data = make_synthetic(SyntheticConfig(n_users=40, n_items=120, n_topics=4, seed=5))
    train = data.interactions
    rng = np.random.default_rng(0)
    items = rng.normal(size=(train.n_items, D)).astype(np.float32)
    users = rng.normal(size=(train.n_users, D)).astype(np.float32)
    ids = np.stack([rng.choice(train.n_items, N, replace=False) for _ in range(B)])
    ids[2, 30:] = -1  # padded rows
    ids[5, 5:] = -1
    ids[4, 1:] = -1  # a single candidate
    scores = rng.random((B, N)).astype(np.float32)
    scores[3, :10] = scores[3, 10]  # ties in the relevance order
    scores[ids < 0] = -np.inf
    return train, items, users, rng.choice(train.n_users, B, replace=False), Candidates(ids, scores)


def _fit(rr, setup):
    train, items, users, _, _ = setup
    return rr.fit(train, item_vectors=items, user_vectors=users)


def _relevance_order(ids: np.ndarray, scores: np.ndarray, k: int) -> list[int]:
    valid = np.flatnonzero(ids >= 0)
    order = valid[np.argsort(-scores[valid], kind="stable")][:k]
    return ids[order].tolist()


@pytest.mark.parametrize("name", sorted(CASES))
def test_mixed_knob_equals_one_reranker_per_row(name, setup):
    make, oracle = CASES[name]
    _, _, _, users, cand = setup
    rr = _fit(make(), setup)
    got = rr(Query(users=users, diversity=KNOB), cand, K)
    for b, d in enumerate(KNOB.tolist()):
        row = got.ids[b][got.ids[b] >= 0].tolist()
        if d == 0.0:
            want = _relevance_order(cand.ids[b], cand.scores[b], K)
        else:
            one = _fit(oracle(d), setup)
            sub = Candidates(cand.ids[b : b + 1], cand.scores[b : b + 1])
            out = one(Query(users=users[b : b + 1]), sub, K)
            want = out.ids[0][out.ids[0] >= 0].tolist()
        assert row == want, (name, b, d)
        # the scores travel with the items
        lookup = dict(zip(cand.ids[b].tolist(), cand.scores[b].tolist(), strict=True))
        np.testing.assert_array_equal(got.scores[b][: len(row)], [lookup[i] for i in row])


@pytest.mark.parametrize("name", ["mmr", "dpp", "ssd", "cfda", "ia-mmr", "pdpp"])
def test_knob_is_one_select_batch_call(name, setup, monkeypatch):
    _, _, _, users, cand = setup
    rr = _fit(CASES[name][0](), setup)
    calls = []
    inner = rr.select_batch

    def counted(relevance, k, **kw):
        calls.append(relevance.shape[0])
        return inner(relevance, k, **kw)

    monkeypatch.setattr(rr, "select_batch", counted)
    rr(Query(users=users, diversity=KNOB), cand, K)  # zeros set aside: one call, the rest
    assert calls == [int((KNOB > 0).sum())]
    calls.clear()
    mixed = np.where(KNOB > 0, KNOB, 0.4)
    rr(Query(users=users, diversity=mixed), cand, K)
    assert calls == [B]


def test_uniform_knob_equals_the_config(setup):
    _, _, _, users, cand = setup
    for make, value in ((lambda: MMR(lambda_=0.6), 0.4), (lambda: FastGreedyDPP(theta=0.7), 0.3)):
        rr = _fit(make(), setup)
        a = rr(Query(users=users, diversity=np.full(B, value)), cand, K)
        b = rr(Query(users=users), cand, K)
        np.testing.assert_array_equal(a.ids, b.ids)


def test_explicit_theta_extra_beats_the_knob(setup):
    _, _, _, users, cand = setup
    rr = _fit(PersonalizedDPP(), setup)
    theta = np.linspace(0.2, 0.9, B)
    a = rr(Query(users=users, diversity=np.full(B, 0.5), extras={"theta": theta}), cand, K)
    b = rr(Query(users=users, extras={"theta": theta}), cand, K)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_no_knob_raises(setup):
    _, _, _, users, cand = setup
    for rr in (CategoryCap(), CFDM(), HybridUtility()):
        rr = _fit(rr, setup)
        with pytest.raises(ValueError, match="no diversity knob"):
            rr(Query(users=users, diversity=KNOB), cand, K)
        # all zeros too (README: they reject the knob); it used to skip the category cap
        with pytest.raises(ValueError, match="no diversity knob"):
            rr(Query(users=users, diversity=np.zeros(B)), cand, K)
        assert not rr.has_knob()
        # no knob: the class's own selection
        rr(Query(users=users), cand, K)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("knob", [0.0, 0.5])
def test_non_finite_score_raises_the_same_error_at_any_knob(name, knob, setup):
    """A NaN (or infinite) score used to be dropped silently at knob 0 and raise otherwise;
    both paths raise the same one-line error now."""
    _, _, _, users, cand = setup
    rr = _fit(CASES[name][0](), setup)
    for bad in (np.nan, np.inf):
        scores = cand.scores.copy()
        scores[1, 3] = bad
        broken = Candidates._checked(cand.ids, scores)  # Candidates(...) refuses NaN itself
        with pytest.raises(ValueError, match="^relevance contains NaN or infinite values"):
            rr(Query(users=users, diversity=np.full(B, knob)), broken, K)


def test_per_row_parameters_are_checked():
    r = np.random.default_rng(1).random((3, 5))
    v = np.random.default_rng(2).normal(size=(3, 5, 4))
    with pytest.raises(ValueError, match="lambda_"):
        MMR().select_batch(r, 2, vectors=v, lambda_=np.array([0.5, 1.5, 0.2]))
    with pytest.raises(ValueError, match="lambda_"):
        MMR().select_batch(r, 2, vectors=v, lambda_=np.array([0.5, 0.2]))
    with pytest.raises(ValueError, match="phi"):
        CFDA().select_batch(r, 2, vectors=v, phi=np.array([0.5, np.nan, 0.2]))
    with pytest.raises(ValueError, match="theta"):
        FastGreedyDPP().select_batch(r, 2, vectors=v, theta=np.array([0.5, -0.1, 0.2]))
    with pytest.raises(ValueError, match="gamma"):
        SSD().select(r[0], 2, vectors=v[0], gamma=-1.0)
    # a per-row array equal to the config is the config
    a = MMR(lambda_=0.3).select_batch(r, 3, vectors=v)
    np.testing.assert_array_equal(a, MMR().select_batch(r, 3, vectors=v, lambda_=np.full(3, 0.3)))


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_config_declared_once(cls):
    rr = cls()
    assert isinstance(rr, Reranker)
    assert dataclasses.is_dataclass(cls.Config)
    params = rr.get_params()
    assert params == rr.config.to_dict()
    assert cls(**params).get_params() == params
    assert cls(rr.config).config == rr.config
    assert "__init__" not in vars(cls)  # the config is the constructor
    name = next(iter(params))
    with pytest.raises(AttributeError, match="hyperparameter"):
        setattr(rr, name, params[name])
    with pytest.raises(TypeError):
        cls(1)  # keyword-only: a positional value is not a config
    with pytest.raises(ParamError, match="no parameter"):
        cls(nope=1)
    doc = cls.Config.__doc__ or ""
    for base in cls.Config.__mro__:
        doc += base.__doc__ or ""
    for field in dataclasses.fields(cls.Config):
        assert f"{field.name}:" in doc, (cls.__name__, field.name)


@pytest.mark.parametrize(
    ("cls", "bad"),
    [
        (MMR, {"lambda_": 1.5}),
        (MMR, {"relevance_scaling": "log"}),
        (InterestAwareMMR, {"lambda_": -0.1}),
        (FastGreedyDPP, {"theta": -0.1}),
        (FastGreedyDPP, {"window": 0}),
        (FastGreedyDPP, {"eps": float("inf")}),
        (FastGreedyDPP, {"fill": 1}),
        (PersonalizedDPP, {"theta_high": 1.0}),
        (PersonalizedDPP, {"theta_low": 0.8, "theta_high": 0.5}),
        (RealtimePersonalizedDPP, {"propensity_window": 0.0}),
        (RealtimePersonalizedDPP, {"tracker": "t"}),
        (SSD, {"gamma": float("nan")}),
        (SSD, {"window": True}),
        (CategoryCap, {"max_per_category": 0}),
        (CategoryCap, {"max_per_category": 1.5}),
        (CFDA, {"phi": -1.0}),
        (CFDM, {"n_factor": 0.5}),
        (HybridUtility, {"weights": (1.0, 2.0)}),
        (HybridUtility, {"weights": {"relevance": 1.0, "surprise": 1.0}}),
        (HybridUtility, {"weights": (1.0, float("inf"), 0.0)}),
    ],
)
def test_bad_values_name_the_field(cls, bad):
    with pytest.raises(ParamError) as info:
        cls(**bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert any(name in msg for name in bad) or "weight" in msg


def test_with_params_and_presets_keep_types():
    rr = FastGreedyDPP(theta=0.4, window=5)
    other = rr.with_params(theta=0.6)
    assert (other.theta, other.window, rr.theta) == (0.6, 5, 0.4)
    assert CFDM(n_factor=2).n_factor == 2.0
    assert HybridUtility(weights=[1, 0, 2]).weights == (1.0, 0.0, 2.0)
    assert repr(MMR(lambda_=0.25)) == (
        "MMR(lambda_=0.25, relevance_scaling='minmax', precision='input')"
    )
