"""Bounded, robust per-user state of the service: values checked at the door and skipped
downstream, the propensity tracker's clock, bounded users / write-back / tracker windows,
durable write-back, event-id conflicts and bit-identical θ across restarts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from divrec.rerank.personalized import RealtimePropensityTracker
from divrec.serve.events import Event, EventConflict, EventLog
from divrec.serve.model_dir import ModelBundle
from divrec.serve.service import SKIPPED, RecRequest, ServeSettings, Service
from serve_util import shared_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return shared_model(tmp_path_factory)


@pytest.fixture
def bundle(model_path):
    """A fresh bundle per test: the tracker is mutable state shared by its services."""
    return ModelBundle.load(model_path)


def _ids(res):
    return [it["item_id"] for it in res["items"]]


# ---------------------------------------------------------------------------- values
@pytest.mark.parametrize("value", [1e308, 1e30, float("inf"), float("nan"), -5.0])
def test_a_poisoned_stored_value_never_breaks_a_user(bundle, model_path, tmp_path, value):
    """A logged rating that fails the value check is skipped (and counted), live and on
    replay; the user's answers equal those without it."""
    now = time.time()
    good = [Event("g1", "77", "1", "like", None, now, 1)]
    bad = Event("p1", "77", "2", "rating", value, now, 2)
    svc = Service(bundle)
    before = SKIPPED["bad_value"]
    svc.apply([*good, bad])
    got = svc.recommend([RecRequest("77", 10, 0.0, "none")])[0]
    ref = Service(ModelBundle.load(model_path))
    ref.apply(good)
    assert _ids(got) == _ids(ref.recommend([RecRequest("77", 10, 0.0, "none")])[0])
    assert SKIPPED["bad_value"] == before + 1
    # the same after a restart (replay of a log that holds the bad value)
    log = EventLog(tmp_path / "ev.sqlite")
    log.append(
        [
            Event(e.event_id, e.user_id, e.item_id, e.type, e.value, e.timestamp)
            for e in [*good, bad]
        ]
    )
    again = Service(ModelBundle.load(model_path))
    again.rebuild(log)
    assert _ids(again.recommend([RecRequest("77", 10, "auto", "dpp")])[0])
    log.close()


def test_check_event_names_the_field_and_range(bundle):
    svc = Service(bundle, ServeSettings(value_ranges=(("rating", 1.0, 5.0),)))
    svc.check_event(Event("a", "u", "1", "rating", 5.0, 0.0))
    svc.check_event(Event("a", "u", "1", "like", None, 0.0))
    for v, words in [(1e30, "[1, 5]"), (1e308, "[1, 5]"), (float("nan"), "finite")]:
        with pytest.raises(ValueError) as err:
            svc.check_event(Event("a", "u", "1", "rating", v, 0.0), 3)
        msg = str(err.value)
        assert msg.startswith("field 'events.3.value'") and words in msg and "\n" not in msg
    with pytest.raises(ValueError, match="needs a value"):
        svc.check_event(Event("a", "u", "1", "rating", None, 0.0))


# ---------------------------------------------------------------------------- clock
def test_a_live_event_does_not_reset_the_trained_thetas(bundle):
    """The tracker's clock is the service clock in the training time frame: a like at
    wall time by one user leaves every trained user's θ as it was."""
    svc = Service(bundle)
    users = bundle.user_ids[:60]
    before = [svc.theta(u) for u in users]
    assert len({round(t, 9) for t in before}) > 5  # trained users differ
    svc.apply([Event("x", "somebody-new", "1", "like", None, time.time(), 1)])
    after = [svc.theta(u) for u in users]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)


def test_event_clock_mode_keeps_the_old_behaviour(bundle):
    svc = Service(bundle, ServeSettings(tracker_clock="event"))
    assert svc.tracker_time(123.0) == 123.0


# ---------------------------------------------------------------------------- bounds
def test_writeback_state_of_unknown_ids_is_bounded(bundle):
    settings = ServeSettings(writeback_seconds=60.0, max_writeback_users=50)
    svc = Service(bundle, settings)
    for k in range(400):
        svc.recommend([RecRequest(f"probe-{k}", 5, 0.0, "none")])
    assert len(svc.served) <= 50 and len(svc.users) == 0
    # the most recent user still has its exclusions
    last = svc.served["probe-399"]
    assert len(last) == 5


def test_writeback_probes_create_no_user_state(bundle):
    """`GET /recommend` with write-back for never-seen ids: exclusions only, no user."""
    svc = Service(bundle, ServeSettings(writeback_seconds=60.0))
    for k in range(300):
        svc.recommend([RecRequest(f"probe-{k}", 5, 0.0, "none")])
    assert len(svc.users) == 0


def test_served_items_per_user_are_bounded(bundle):
    svc = Service(bundle, ServeSettings(writeback_seconds=600.0, max_served_per_user=25))
    for _ in range(10):
        svc.recommend([RecRequest("5", 10, 0.0, "none")])
    assert len(svc.served["5"]) == 25


def test_users_are_evicted_least_recently_active_first(bundle):
    svc = Service(bundle, ServeSettings(max_users=50))
    now = time.time()
    svc.apply(
        [Event(f"e{k}", f"u{k}", str(k % 50 + 1), "like", None, now, k + 1) for k in range(300)]
    )
    assert len(svc.users) == 50 and list(svc.users)[-1] == "u299" and "u0" not in svc.users
    assert svc._tracker.n_users <= len(bundle.user_ids) + 50


def test_idle_users_are_evicted_after_the_ttl(bundle):
    clock = [time.time()]
    svc = Service(bundle, ServeSettings(user_ttl_seconds=100.0, clock=lambda: clock[0]))
    svc.apply([Event("a", "old", "1", "like", None, clock[0], 1)])
    clock[0] += 500.0
    svc.apply([Event("b", "new", "2", "like", None, clock[0], 2)])
    assert list(svc.users) == ["new"]


def test_one_users_likes_are_bounded_in_history_and_tracker(bundle):
    svc = Service(bundle, ServeSettings(max_history=40, max_consumed=60))
    now = time.time()
    n_items = bundle.n_items
    svc.apply(
        [
            Event(f"l{k}", "heavy", bundle.items[k % n_items]["id"], "like", None, now, k + 1)
            for k in range(2000)
        ]
    )
    st = svc.users["heavy"]
    assert len(st.positives) == 40 and len(st.consumed) == 60
    assert svc._tracker.n_positives("new:heavy") == 40


def test_tracker_window_is_capped_and_keeps_the_newest():
    rng = np.random.default_rng(0)
    tr = RealtimePropensityTracker(100.0, rng.normal(size=(30, 4)), max_per_user=5)
    for t in range(20):
        tr.update("u", t % 30, float(t))
    assert tr.n_positives("u") == 5 and tr._times["u"] == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert len(tr._expiry) <= 20  # one live schedule per user (stale ones are skipped)
    tr.forget("u")
    assert tr.n_positives("u") == 0 and tr.n_users == 0


# ---------------------------------------------------------------------------- determinism
def test_theta_does_not_depend_on_the_order_users_were_seen():
    """Eq. 3's mean and std are exactly rounded sums: the same windows fed in two user
    orders give bit-identical θ."""
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(200, 16))
    events = [(f"u{rng.integers(0, 300)}", int(rng.integers(0, 200))) for _ in range(3000)]
    a = RealtimePropensityTracker(1e9, vecs)
    b = RealtimePropensityTracker(1e9, vecs)
    for u, i in events:
        a.update(u, i, 1.0)
    by_user: dict[str, list[int]] = {}
    for u, i in events:
        by_user.setdefault(u, []).append(i)
    for u in sorted(by_user, reverse=True):
        for i in by_user[u]:
            b.update(u, i, 1.0)
    users = sorted(by_user)
    assert a.thetas(users).tobytes() == b.thetas(users).tobytes()


def test_theta_is_bit_identical_after_a_restart(model_path, tmp_path):
    t0 = time.time()
    settings = ServeSettings(clock=lambda: t0 + 10.0)
    log = EventLog(tmp_path / "ev.sqlite")
    live = Service(ModelBundle.load(model_path), settings)
    log.on_commit = live.apply
    live.rebuild(log)
    rng = np.random.default_rng(2)
    users = [f"x{k}" for k in range(40)] + ModelBundle.load(model_path).user_ids[:40]
    for k in range(30):
        log.append(
            [
                Event(
                    f"e{k}-{j}",
                    users[int(rng.integers(0, 80))],
                    str(rng.integers(1, 300)),
                    "like",
                    None,
                    t0 + k,
                    0,
                )
                for j in range(20)
            ]
        )
    log.close()
    restarted = Service(ModelBundle.load(model_path), settings)
    restarted.rebuild(EventLog(tmp_path / "ev.sqlite"))
    a = np.array([live.theta(u) for u in users])
    b = np.array([restarted.theta(u) for u in users])
    assert a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------- event ids
def test_reused_event_id_with_other_content_is_a_conflict(tmp_path):
    log = EventLog(tmp_path / "ev.sqlite")
    assert log.append([Event("x", "u", "1", "like", None, 1.0)]) == [True]
    # a re-send (the timestamp may differ: a client without one gets the receive time)
    assert log.append([Event("x", "u", "1", "like", None, 2.0)]) == [False]
    with pytest.raises(EventConflict) as err:
        log.append(
            [Event("y", "u", "3", "like", None, 1.0), Event("x", "u", "2", "like", None, 1.0)]
        )
    assert "'x'" in str(err.value) and "item_id='1'" in str(err.value)
    assert log.count() == 1  # nothing of the conflicting batch was stored
    with pytest.raises(EventConflict, match="value"):
        log.append([Event("x", "u", "1", "like", 3.0, 1.0)])
    # other batches in the same group commit are not affected
    futs = [
        log.submit([Event("x", "v", "1", "like", None, 1.0)]),
        log.submit([Event("z", "u", "1", "like", None, 1.0)]),
    ]
    with pytest.raises(EventConflict):
        futs[0].result()
    assert futs[1].result() == [True] and log.count() == 2
    log.close()


# ---------------------------------------------------------------------------- write-back
def test_writeback_survives_a_restart(model_path, tmp_path):
    settings = ServeSettings(writeback_seconds=600.0)
    log = EventLog(tmp_path / "ev.sqlite")
    svc = Service(ModelBundle.load(model_path), settings)
    svc.rebuild(log)
    first = _ids(svc.recommend([RecRequest("5", 10, 0.0, "none")])[0])
    log.close()  # commits what is queued (a SIGKILL is in test_serve_crash's domain)
    log = EventLog(tmp_path / "ev.sqlite")
    again = Service(ModelBundle.load(model_path), settings)
    again.rebuild(log)
    second = _ids(again.recommend([RecRequest("5", 10, 0.0, "none")])[0])
    assert first and not set(first) & set(second)
    log.close()


def test_impressions_are_excluded_from_their_own_timestamp(bundle):
    now = time.time()
    svc = Service(bundle, ServeSettings(writeback_seconds=600.0, clock=lambda: now))
    plain = _ids(svc.recommend([RecRequest("8", 10, 0.0, "none")], write_back=False)[0])
    old, recent = plain[0], plain[1]
    svc.apply(
        [
            Event("i1", "8", old, "impression", None, now - 3600.0, 1),  # expired already
            Event("i2", "8", recent, "impression", None, now - 100.0, 2),
        ]
    )
    got = _ids(svc.recommend([RecRequest("8", 10, 0.0, "none")], write_back=False)[0])
    assert old in got and recent not in got
    assert svc.served["8"][bundle.item_index[recent]] == pytest.approx(now + 500.0)


# ---------------------------------------------------------------------------- snapshot
def _state(svc):
    users = {
        u: (st.index, list(st.positives), list(st.values), list(st.negatives), list(st.consumed))
        for u, st in svc.users.items()
    }
    return users, {u: dict(d) for u, d in svc.served.items()}, svc.last_seq


def test_a_snapshot_start_replays_only_the_tail_and_equals_a_full_replay(model_path, tmp_path):
    t0 = time.time()
    settings = ServeSettings(clock=lambda: t0 + 10.0, writeback_seconds=600.0)
    db = tmp_path / "ev.sqlite"
    ids = ModelBundle.load(model_path).user_ids
    users = [f"x{k}" for k in range(30)] + ids[:30]
    rng = np.random.default_rng(3)

    def feed(log, first, n):
        kinds = ["like", "click", "dislike", "impression", "rating"]
        log.append(
            [
                Event(
                    f"e{first + j}",
                    users[int(rng.integers(0, 60))],
                    str(rng.integers(1, 300)),
                    kinds[j % 5],
                    4.5 if kinds[j % 5] == "rating" else None,
                    t0 + j * 0.01,
                )
                for j in range(n)
            ]
        )

    log = EventLog(db)
    feed(log, 0, 400)
    first = Service(ModelBundle.load(model_path), settings)
    assert first.rebuild(log) == 400 and (tmp_path / "ev.sqlite.snapshot.npz").is_file()
    feed(log, 400, 100)
    snap = Service(ModelBundle.load(model_path), settings)
    assert snap.rebuild(log) == 100  # the tail only
    full = Service(
        ModelBundle.load(model_path),
        ServeSettings(clock=lambda: t0 + 10.0, writeback_seconds=600.0, snapshot=False),
    )
    assert full.rebuild(log) == 500
    assert _state(snap) == _state(full)
    a = np.array([snap.theta(u) for u in users])
    b = np.array([full.theta(u) for u in users])
    assert a.tobytes() == b.tobytes()
    reqs = [RecRequest(u, 10, "auto", "dpp") for u in users[::7]]
    assert [_ids(r) for r in snap.recommend(reqs, write_back=False)] == [
        _ids(r) for r in full.recommend(reqs, write_back=False)
    ]
    # other state settings: the snapshot is not used
    other = Service(
        ModelBundle.load(model_path),
        ServeSettings(clock=lambda: t0 + 10.0, writeback_seconds=600.0, max_history=7),
    )
    assert other.rebuild(log) == 500
    log.close()


def test_a_snapshot_of_another_log_is_ignored(model_path, tmp_path):
    db = tmp_path / "ev.sqlite"
    log = EventLog(db)
    log.append([Event(f"a{k}", "u1", str(k + 1), "like", None, time.time()) for k in range(5)])
    Service(ModelBundle.load(model_path)).rebuild(log)
    log.close()
    snap = (tmp_path / "ev.sqlite.snapshot.npz").read_bytes()
    db.unlink()
    log = EventLog(db)  # a new log whose seq 5 is another event
    log.append([Event(f"b{k}", "u2", str(k + 1), "like", None, time.time()) for k in range(5)])
    (tmp_path / "ev.sqlite.snapshot.npz").write_bytes(snap)
    svc = Service(ModelBundle.load(model_path))
    assert svc.rebuild(log) == 5 and list(svc.users) == ["u2"]
    log.close()


# ---------------------------------------------------------------------------- end to end
def test_http_poisoned_rating_leaves_the_user_working_after_a_restart(model_path, tmp_path):
    """The issue's report over HTTP: a rating of 1e308 (finite, so accepted by the HTTP
    layer) used to make every later /recommend of the user a 422, also after a restart."""
    import httpx

    from serve_util import API_KEY, Server

    db = tmp_path / "ev.sqlite"
    event = {"event_id": "p", "user_id": "7", "item_id": "1", "type": "rating", "value": 1e308}
    for attempt in range(2):
        srv = Server(model_path, db)
        try:
            if attempt == 0:
                r = httpx.post(
                    srv.url + "/feedback",
                    json={"events": [event]},
                    headers={"X-API-Key": API_KEY},
                    timeout=30,
                )
                assert r.status_code in (200, 422), r.text
            r = httpx.get(srv.url + "/recommend/7", params={"diversity": "auto"}, timeout=30)
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 10
        finally:
            srv.stop()
