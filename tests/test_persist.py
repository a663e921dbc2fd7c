"""The persistence convention: one `.npz` per object, `divrec.load` dispatch, no unpickling."""

from __future__ import annotations

import json

import numpy as np
import pytest

import divrec
from divrec.data import SyntheticConfig, make_synthetic
from divrec.persist import FORMAT
from divrec.pipeline import Pipeline
from divrec.rerank import FastGreedyDPP, RealtimePersonalizedDPP
from divrec.retrieval import ALSRecommender, ItemKNNRecommender


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticConfig(n_users=40, n_items=60, n_topics=3, interactions_per_user=8, seed=1)
    return make_synthetic(cfg).interactions


def test_pipeline_round_trip_keeps_every_stage(data, tmp_path):
    pipe = Pipeline(ALSRecommender(factors=8, iterations=3), FastGreedyDPP(theta=0.3), 20)
    pipe.fit(data)
    path = pipe.save(tmp_path / "p")
    assert path.suffix == ".npz" and path.exists()
    back = divrec.load(path)
    assert isinstance(back, Pipeline) and isinstance(back.reranker, FastGreedyDPP)
    assert back.reranker.theta == 0.3 and back.n_candidates == 20
    users = np.arange(10)
    assert np.array_equal(back.recommend(users, 5)[0], pipe.recommend(users, 5)[0])
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_realtime_tracker_state_survives(data, tmp_path):
    rr = RealtimePersonalizedDPP(propensity_window=1e12)
    pipe = Pipeline(ItemKNNRecommender(neighbors=10), rr, 20).fit(data)
    back = divrec.load(pipe.save(tmp_path / "rt"))
    users = list(range(8))
    np.testing.assert_allclose(
        back.reranker.active_tracker.thetas(users), pipe.reranker.active_tracker.thetas(users)
    )


def test_unfitted_objects_round_trip_their_parameters(tmp_path):
    back = divrec.load(FastGreedyDPP(theta=0.7, window=5).save(tmp_path / "d"))
    assert back.get_params() == FastGreedyDPP(theta=0.7, window=5).get_params()


def _write(path, meta=None, **arrays):
    if meta is not None:
        arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("maker", "fragment"),
    [
        (lambda p: p.write_bytes(b"not a zip file at all"), "corrupted or foreign"),
        (lambda p: _write(p, None, x=np.zeros(3)), "no __meta__"),
        (lambda p: _write(p, {"format": "other/1"}), "not a divrec model file"),
        (
            lambda p: _write(
                p, {"format": FORMAT, "class": "os:system", "params": {}, "fitted": {}}
            ),
            "not a divrec class",
        ),
        (
            lambda p: _write(
                p,
                {"format": FORMAT, "class": "divrec.persist:load", "params": {}, "fitted": {}},
            ),
            "not a divrec persistable class",
        ),
        (
            lambda p: _write(
                p,
                {
                    "format": FORMAT,
                    "class": "divrec.rerank.dpp:FastGreedyDPP",
                    "params": {"theta": {"__array__": "missing"}},
                    "fitted": {},
                },
            ),  # fmt: skip
            "corrupted model file",
        ),
    ],
)
def test_bad_files_are_one_line_value_errors(tmp_path, maker, fragment):
    path = tmp_path / "bad.npz"
    maker(path)
    with pytest.raises(ValueError, match=fragment) as info:
        divrec.load(path)
    assert "\n" not in str(info.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "pickle.npz"
    meta = {"format": FORMAT, "class": "divrec.rerank.dpp:FastGreedyDPP", "params": {},
            "fitted": {}}  # fmt: skip
    np.savez(path, __meta__=np.array(json.dumps(meta)), evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="corrupted|pickle"):
        divrec.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such model file"):
        divrec.load(tmp_path / "nope.npz")


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    change(meta)
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize(
    "old, name, fixed",
    [
        ("divrec.ranking.dcn:IPWRanker", "ipw", {"weighting": "ipw"}),
        ("divrec.ranking.hi_nn:CFNNRecommender", "cf-nn", {"p2p_only": True}),
        ("divrec.retrieval.sequential:YouTubeDNN", "youtube", {"encoder": "mean"}),
        ("divrec.retrieval.sequential:ComiRecSA", "comirec-sa", {"encoder": "sa"}),
        ("divrec.retrieval.sequential:ComiRecDR", "comirec-dr", {"encoder": "dr"}),
        (
            "divrec.retrieval.sequential:TRYouTube",
            "tr-youtube",
            {"encoder": "mean", "loss": "bi", "l2_norm": True},
        ),
        (
            "divrec.retrieval.two_tower:MFbRecommender",
            "mfb",
            {"loss": "mfb", "tau": 0.125, "batch_size": 4096, "epochs": 20.0},
        ),
    ],
)
def test_files_of_classes_that_became_presets_still_load(old, name, fixed, tmp_path):
    from divrec.registry import create, preset_params

    assert preset_params("model", name) == fixed
    stage = create("model", name)
    path = stage.save(tmp_path / name)

    def as_old_file(meta):  # the old subclass stored its class path, not the fixed values
        meta["class"] = old
        for key in fixed:
            meta["params"].pop(key, None)

    _rewrite_meta(path, as_old_file)
    back = divrec.load(path)
    assert type(back) is type(stage) and back.get_params() == stage.get_params()


def test_files_that_stored_a_hyperparameter_as_fitted_state_still_load(data, tmp_path):
    """Before the configs, every attribute ending in "_" was saved as fitted state, MMR's
    `lambda_` hyperparameter included; such a file loads, the parameter read from `params`."""
    from divrec.rerank import MMR

    mmr = MMR(lambda_=0.3).fit(data)
    path = mmr.save(tmp_path / "mmr")
    _rewrite_meta(path, lambda meta: meta["fitted"].update({"lambda_": 0.3}))
    back = divrec.load(path)
    assert back.lambda_ == 0.3 and back.get_params() == mmr.get_params()


def test_metadata_of_the_wrong_json_type_is_a_value_error(tmp_path):
    """Metadata that is a JSON list raised AttributeError (in the error message's own line)."""
    for meta in ([1, 2], "text", 3):
        path = _write(tmp_path / "list.npz", meta)
        with pytest.raises(ValueError, match="not a divrec model file") as info:
            divrec.load(path)
        assert "\n" not in str(info.value)
    path = _write(tmp_path / "p.npz", {"format": FORMAT, "class": "divrec.rerank.dpp:FastGreedyDPP",
                                       "params": [], "fitted": {}})  # fmt: skip
    with pytest.raises(ValueError, match="corrupted model file"):
        divrec.load(path)


def _resave(path, out, **arrays):
    with np.load(path) as z:
        files = {k: z[k] for k in z.files}
    files.update(arrays)
    np.savez(out, **files)
    return out


def test_fitted_arrays_of_the_wrong_shape_are_refused_at_load(data, tmp_path):
    """Wrong-shaped fitted arrays used to load and fail at the first request (IndexError)."""
    from divrec.rerank import InterestAwareMMR, PersonalizedDPP

    als = ALSRecommender(factors=8, iterations=2).fit(data)
    path = als.save(tmp_path / "als")
    divrec.load(path)  # the intact file loads
    bad = _resave(path, tmp_path / "rows.npz", **{"a/item_factors_": np.zeros((5, 8), np.float32)})
    with pytest.raises(ValueError, match="item_factors_ has 5 rows for 60 items"):
        divrec.load(bad)
    bad = _resave(path, tmp_path / "w.npz", **{"a/user_factors_": np.zeros((40, 3), np.float32)})
    with pytest.raises(ValueError, match="widths"):
        divrec.load(bad)
    bad = _resave(path, tmp_path / "sp.npz", **{"s/user_items_/indices": np.full(358, 999)})
    with pytest.raises(ValueError, match="corrupted model file: .* user_items_: indices"):
        divrec.load(bad)
    rr = InterestAwareMMR().fit(data)
    path = rr.save(tmp_path / "ia")
    bad = _resave(path, tmp_path / "ia_bad.npz", **{"a/user_vectors_": np.zeros((40, 7))})
    with pytest.raises(ValueError, match="user_vectors_ and item_vectors_ have widths 7"):
        divrec.load(bad)
    path = PersonalizedDPP().fit(data).save(tmp_path / "pdpp")
    bad = _resave(path, tmp_path / "pdpp_bad.npz", **{"a/user_category_counts_": np.ones((7, 3))})
    with pytest.raises(ValueError, match="user_category_counts_ has 7 rows for 40 users"):
        divrec.load(bad)


def test_parameter_types_are_checked_on_load(tmp_path):
    """Saved parameters go through the stage config again: a wrong type is refused."""
    path = FastGreedyDPP(theta=0.7).save(tmp_path / "d")
    with np.load(path) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(str(files["__meta__"]))
    meta["params"]["theta"] = "high"
    files["__meta__"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(ValueError, match="theta") as info:
        divrec.load(tmp_path / "bad.npz")
    assert "\n" not in str(info.value)
