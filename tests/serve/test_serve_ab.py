"""A/B arms in the service (`divrec.serve.arms`): assignment, bad experiments, the logged
impressions, forced arms, and assignments kept across restarts and reloads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from divrec.evaluation.ab import ab_log_from_rows, readout
from divrec.serve.app import AppConfig, create_app
from divrec.serve.arms import ArmRouter, Experiment, check_experiment, hash_unit
from divrec.serve.events import read_ab_log
from divrec.serve.model_dir import ModelBundle
from serve_util import API_KEY, shared_model

EXP = {
    "name": "exp1",
    "salt": "salt-1",
    "control": "control",
    "arms": [
        {"name": "control", "share": 0.5, "method": "none"},
        {"name": "dpp", "share": 0.3, "method": "dpp", "diversity": 0.7},
        {"name": "mmr", "share": 0.2, "method": "mmr"},
    ],
}
KEY = {"X-API-Key": API_KEY}


def test_hash_is_sha256_of_salt_and_user():
    h = hashlib.sha256(b"salt-1\x00user-7").digest()
    assert hash_unit("salt-1", "user-7") == int.from_bytes(h[:8], "big") / 2**64


def test_shares_within_their_binomial_ci_over_1e5_users():
    exp = Experiment.from_dict(EXP)
    n = 100_000
    counts = np.bincount(exp.assign_many([f"u{i}" for i in range(n)]), minlength=3)
    for c, arm in zip(counts, exp.arms, strict=True):
        lo, hi = sps.binom.ppf([0.0005, 0.9995], n, arm.share)  # 99.9% interval per arm
        assert lo <= c <= hi, (arm.name, c, lo, hi)
    # another salt re-draws the assignment (about half of control's users move)
    other = Experiment.from_dict({**EXP, "salt": "salt-2"})
    ids = [f"u{i}" for i in range(2000)]
    assert 0.3 < np.mean(exp.assign_many(ids) != other.assign_many(ids)) < 0.8


def test_assignment_is_the_same_in_another_process():
    ids = [f"user-{i}" for i in range(200)]
    code = (
        "import json, sys; from divrec.serve.arms import Experiment; "
        "e = Experiment.from_dict(json.loads(sys.argv[1])); "
        "print(json.dumps([e.assign(u).name for u in json.loads(sys.argv[2])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(EXP), json.dumps(ids)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    exp = Experiment.from_dict(EXP)
    assert json.loads(out.stdout) == [exp.assign(u).name for u in ids]


def _arms(**patch):
    arms = [dict(a) for a in EXP["arms"]]
    for k, v in patch.items():
        i, key = k.split("__")
        arms[int(i)][key] = v
    return {**EXP, "arms": arms}


@pytest.mark.parametrize(
    "doc,field",
    [
        (_arms(**{"0__share": 0.6}), "'arms.*.share': the shares sum to 1.1"),
        (_arms(**{"1__share": -0.1}), "'arms.1.share'"),
        (_arms(**{"2__diversity": 2}), "'arms.2.diversity'"),
        (_arms(**{"2__name": "dpp"}), "'arms': arm name 'dpp' used twice"),
        (_arms(**{"1__colour": 1}), "'arms.1.colour'"),
        ({**EXP, "control": "nope"}, "'control'"),
        ({**EXP, "salt": ""}, "'salt'"),
        ({**EXP, "arms": EXP["arms"][:1]}, "'arms'"),
        ({**EXP, "extra": 1}, "'extra'"),
    ],
)
def test_bad_experiment_is_one_line_naming_the_field(doc, field):
    with pytest.raises(ValueError) as err:
        Experiment.from_dict(doc)
    assert f"field {field}" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return shared_model(tmp_path_factory)


def test_unknown_method_and_another_catalogue_are_refused(model, tmp_path):
    bundle = ModelBundle.load(model)
    with pytest.raises(ValueError, match=r"field 'arms.1.method': unknown method 'xyz'"):
        ArmRouter(Experiment.from_dict(_arms(**{"1__method": "xyz"})), bundle, "auto")
    other = tmp_path / "other"
    shutil.copytree(model, other)
    items = json.loads((other / "items.json").read_text())
    items[0]["id"] = "renamed-0"
    (other / "items.json").write_text(json.dumps(items))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"]["items.json"] = hashlib.sha256(
        (other / "items.json").read_bytes()
    ).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest))
    doc = _arms(**{"2__model_dir": str(other)})
    with pytest.raises(ValueError, match=r"field 'arms.2.model_dir': .* another item catalogue"):
        ArmRouter(Experiment.from_dict(doc), bundle, "auto")
    # the same catalogue in another directory serves the arm from that model
    same = tmp_path / "same"
    shutil.copytree(model, same)
    router = ArmRouter(Experiment.from_dict(_arms(**{"2__model_dir": str(same)})), bundle, "auto")
    assert router.methods["mmr"] == "arm:mmr" and "arm:mmr" in bundle.pipelines


def _app(model_dir, db, experiment=None):
    cfg = AppConfig(
        model_dir=model_dir, db=db, api_key=API_KEY, experiment=experiment, allowed_hosts=("*",)
    )
    return TestClient(create_app(cfg))


@pytest.fixture()
def exp_model(model, tmp_path):
    """A copy of the shared model directory holding `experiment.json`."""
    d = tmp_path / "model"
    shutil.copytree(model, d)
    (d / "experiment.json").write_text(json.dumps(EXP))
    return d


def test_served_lists_are_logged_with_arm_and_assignment_is_stable(exp_model, tmp_path):
    db = tmp_path / "ev.sqlite"
    exp = Experiment.from_dict(EXP)
    users = [str(u) for u in range(40)] + ["new-user-1", "new-user-2"]
    with _app(exp_model, db) as client:
        first = {}
        for u in users:
            r = client.get(f"/recommend/{u}?n=5&method=ssd&diversity=0.1")
            assert r.status_code == 200, r.text
            body = r.json()
            arm = exp.assign(u)
            assert body["arm"] == arm.name and not body["arm_forced"]
            assert body["method"] == arm.method  # the arm decides, not method=
            if arm.diversity is not None:
                assert body["diversity"] == arm.diversity
            first[u] = (body["request_id"], [it["item_id"] for it in body["items"]])
        # a forced arm needs the key; an unknown arm is 422; both name the field
        r = client.get("/recommend/3?arm=dpp")
        assert r.status_code == 401 and "field 'arm'" in r.json()["error"]
        r = client.get("/recommend/3?arm=nope", headers=KEY)
        assert r.status_code == 422 and "field 'arm': unknown arm 'nope'" in r.json()["error"]
        r = client.get("/recommend/3?arm=dpp", headers=KEY)
        assert r.status_code == 200 and r.json()["arm"] == "dpp" and r.json()["arm_forced"]
        # feedback on a served item is attributed to the arm that served it
        u0 = users[0]
        item = first[u0][1][1]
        ev = {"event_id": "e1", "user_id": u0, "item_id": item, "type": "click"}
        assert client.post("/feedback", json={"events": [ev]}, headers=KEY).status_code == 200
        # reload: the same arms
        assert client.post("/admin/reload", headers=KEY).status_code == 200
        for u in users[:10]:
            assert client.get(f"/recommend/{u}").json()["arm"] == exp.assign(u).name
    log = read_ab_log(db)
    assert log["experiment"]["salt"] == "salt-1"
    rows = {r[0]: r for r in log["impressions"]}
    for u, (rid, items) in first.items():  # every answered list, its items in served order
        assert rows[rid][1:5] == (exp.assign(u).name, u, items, False)
    assert sum(r[4] for r in log["impressions"]) == 1  # the forced one
    bundle = ModelBundle.load(exp_model)
    ab = ab_log_from_rows(log["experiment"], log["impressions"], log["events"], bundle.item_index)
    assert ab.fb_imp.size == 1 and ab.arms[ab.imp_arm[ab.fb_imp[0]]] == exp.assign(u0).name
    res = readout(ab, bundle.reference, n_bootstrap=50)
    assert res["arms"][exp.assign(u0).name]["clicks"] == 1
    # restart on the same log: the same arms
    with _app(exp_model, db) as client:
        for u in users:
            assert client.get(f"/recommend/{u}").json()["arm"] == exp.assign(u).name


def test_changed_salt_under_the_same_name_is_refused(exp_model, tmp_path):
    db = tmp_path / "ev.sqlite"
    bundle = ModelBundle.load(exp_model)
    assert check_experiment(exp_model, bundle, db).name == "exp1"  # no log yet: fine
    with _app(exp_model, db) as client:
        assert client.get("/recommend/1").status_code == 200
        # a reload with a bad experiment file is 422 naming the field; the old one serves on
        (exp_model / "experiment.json").write_text(json.dumps(_arms(**{"0__share": 0.6})))
        r = client.post("/admin/reload", headers=KEY)
        assert r.status_code == 422 and "field 'arms.*.share'" in r.json()["error"]
        assert (
            client.get("/recommend/1").json()["arm"] == Experiment.from_dict(EXP).assign("1").name
        )
    (exp_model / "experiment.json").write_text(json.dumps({**EXP, "salt": "other"}))
    with pytest.raises(ValueError, match=r"experiment 'exp1': salt differ"):
        check_experiment(exp_model, bundle, db)  # the pre-start check of divrec serve
    with pytest.raises(ValueError, match=r"experiment 'exp1': salt differ"):
        with _app(exp_model, db):
            pass
    with pytest.raises(ValueError, match="none.json"):
        with _app(exp_model, db, experiment=tmp_path / "none.json"):
            pass


def test_impressions_are_written_inline_or_by_the_writer(tmp_path):
    from divrec.serve.events import EventLog, Impression

    log = EventLog(tmp_path / "ev.sqlite")
    imp = Impression("r1", "e", "a", "u", ("i1", "i2"), "dpp", 0.5, False, 1.0)
    assert log.write_impressions_now([imp])
    with log._busy:  # the writer thread is committing: the caller must queue instead
        assert not log.write_impressions_now([imp])
    fut = log.submit_impressions(
        [Impression("r2", "e", "a", "u", ("i3",), "none", None, True, 2.0)]
    )
    assert fut.result(timeout=30) is None
    log.record_experiment("e", {"name": "e", "salt": "s", "control": "a", "arms": []})
    log.close()
    rows = read_ab_log(tmp_path / "ev.sqlite")["impressions"]
    assert rows == [("r1", "a", "u", ["i1", "i2"], False, 1.0), ("r2", "a", "u", ["i3"], True, 2.0)]


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(0, 5), min_size=2, max_size=5).filter(lambda w: sum(w) > 0),
    users=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=30),
    salt=st.text(min_size=1, max_size=10).filter(str.strip),
)
def test_assignment_invariants(weights, users, salt):
    """Any shares: an arm of share 0 never gets a user, assignment is a pure function of
    (salt, user), and it follows the hash through the cumulative shares (brute force)."""
    total = sum(weights)
    doc = {
        "name": "p",
        "salt": salt,
        "control": "a0",
        "arms": [{"name": f"a{k}", "share": w / total} for k, w in enumerate(weights)],
    }
    if abs(sum(w / total for w in weights) - 1.0) > 1e-9:
        return
    exp = Experiment.from_dict(doc)
    got = exp.assign_many(users)
    assert [exp.assign(u).name for u in users] == [f"a{k}" for k in got]
    for u, k in zip(users, got, strict=True):
        assert weights[k] > 0
        h, lo = hash_unit(salt, u), sum(weights[:k]) / total
        assert lo - 1e-12 <= h < sum(weights[: k + 1]) / total + 1e-12
