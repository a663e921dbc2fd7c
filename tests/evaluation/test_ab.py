"""The A/B readout (`divrec.evaluation.ab`): attribution, SRM, metrics against brute force,
a planted effect recovered, and the A/A false-positive rate near nominal."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats as sps

from divrec.evaluation.ab import (
    ABLog,
    ab_log_from_rows,
    readout,
    readout_markdown,
    srm_check,
    write_readout,
)
from divrec.metrics.diversity import between_user_diversity, gini_of_counts, ilad

RECORD = {
    "name": "t",
    "salt": "s",
    "control": "a",
    "arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
}


def synthetic_log(
    rng, users: int, p_a: float, p_b: float, lists: int = 4, k: int = 5, n_items: int = 40
) -> ABLog:
    """`users` per arm; user u's click probability per shown item is Beta-distributed around
    its arm's mean (a user-level random effect, so users are the unit of noise)."""
    n = 2 * users
    arm = np.repeat([0, 1], users)
    mean = np.where(arm == 0, p_a, p_b)
    conc = 8.0
    p_u = rng.beta(mean * conc, (1 - mean) * conc)
    imp_user = np.repeat(np.arange(n), lists)
    imp_arm = arm[imp_user]
    items = np.stack([rng.choice(n_items, k, replace=False) for _ in range(imp_user.size)])
    clicked = rng.random(items.shape) < p_u[imp_user][:, None]
    fb_imp = np.nonzero(clicked)[0]
    return ABLog(
        arms=["a", "b"],
        control="a",
        shares=np.array([0.5, 0.5]),
        user_ids=[str(u) for u in range(n)],
        n_items=n_items,
        imp_user=imp_user,
        imp_arm=imp_arm,
        imp_time=np.arange(imp_user.size, dtype=float),
        imp_items=items,
        fb_imp=fb_imp,
        fb_type=np.array(["click"] * fb_imp.size, dtype=object),
        fb_value=np.full(fb_imp.size, np.nan),
        record=RECORD,
    )


def test_feedback_goes_to_the_latest_earlier_impression_holding_the_item():
    imps = [
        ("r1", "a", "u1", ["i1", "i2"], False, 10.0),
        ("r2", "b", "u1", ["i2", "i3"], True, 11.0),  # forced: left out
        ("r3", "a", "u1", ["i2", "i4"], False, 20.0),
        ("r4", "b", "u2", ["i1"], False, 15.0),
    ]
    events = [
        ("u1", "i2", "click", None, 15.0),  # → r1 (r3 is later)
        ("u1", "i2", "like", None, 25.0),  # → r3
        ("u1", "i3", "click", None, 12.0),  # only in the forced r2: unattributed
        ("u2", "i1", "click", None, 14.0),  # before r4: unattributed
        ("u2", "i1", "rating", 5.0, 16.0),  # → r4
        ("u2", "i1", "impression", None, 16.0),  # not feedback
    ]
    idx = {f"i{j}": j - 1 for j in range(1, 5)}
    log = ab_log_from_rows(RECORD, imps, events, idx)
    assert log.n_forced == 1 and log.n_unattributed == 2
    assert log.imp_items.tolist() == [[0, 1], [1, 3], [0, -1]]
    assert log.fb_imp.tolist() == [0, 1, 2] and log.fb_item.tolist() == [1, 1, 0]
    assert log.fb_type.tolist() == ["click", "like", "rating"]
    res = readout(log, n_bootstrap=50)
    assert res["arms"]["a"]["clicks"] == 1 and res["arms"]["a"]["likes"] == 1
    assert res["arms"]["b"]["likes"] == 1  # a rating of 5 ≥ 4
    assert res["arms"]["a"]["ctr"] == pytest.approx(1 / 4)
    assert res["arms"]["b"]["ctr"] == 0.0
    with pytest.raises(ValueError, match="not an arm"):
        ab_log_from_rows(RECORD, [("r", "c", "u", ["i1"], False, 1.0)], [], idx)


def test_srm_matches_the_hand_chi_square():
    res = srm_check(np.array([520, 480]), np.array([0.5, 0.5]))
    assert res["chi2"] == pytest.approx((20**2 + 20**2) / 500)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(1.6, 1)) and not res["mismatch"]
    assert srm_check(np.array([600, 400]), np.array([0.5, 0.5]))["mismatch"]
    assert srm_check(np.array([10, 0, 1]), np.array([0.5, 0.5, 0.0]))["mismatch"]


def test_per_arm_metrics_match_brute_force():
    rng = np.random.default_rng(1)
    log = synthetic_log(rng, 30, 0.2, 0.3)
    vec = rng.normal(size=(log.n_items, 6))
    cats = (rng.random((log.n_items, 4)) < 0.4).astype(float)
    cats[:, 0] = 1.0
    hist = sp.random(len(log.user_ids), log.n_items, density=0.2, random_state=2, format="csr")
    res = readout(log, vec, cats, hist, n_bootstrap=50)
    for a, name in enumerate(log.arms):
        m = log.imp_arm == a
        lists = log.imp_items[m]
        got = res["arms"][name]
        assert got["ilad"] == pytest.approx(np.mean(ilad(lists, vec)))
        counts = np.bincount(lists.ravel(), minlength=log.n_items)
        assert got["coverage"] == pytest.approx(np.mean(counts > 0))
        assert got["gini"] == pytest.approx(gini_of_counts(counts))
        clicks = np.isin(np.flatnonzero(m), log.fb_imp).sum()  # one click per (list, pos)
        n_clicks = sum(int(log.imp_arm[i] == a) for i in log.fb_imp)
        assert got["ctr"] == pytest.approx(n_clicks / lists.size) and clicks <= n_clicks
        users = np.unique(log.imp_user[m])
        firsts = np.stack([log.imp_items[np.flatnonzero(log.imp_user == u)[0]] for u in users])
        assert got["between_user_diversity"] == pytest.approx(
            between_user_diversity(firsts, log.n_items)
        )
        # miscalibration by hand, user by user
        vals = []
        for u in users:
            h = hist[u].indices
            if not h.size:
                continue
            share = cats / cats.sum(axis=1, keepdims=True)
            p = share[h].mean(axis=0)
            shown = log.imp_items[log.imp_user == u].ravel()
            q = share[shown].mean(axis=0)
            qt = 0.99 * q + 0.01 * p
            vals.append(sum(pi * np.log(pi / qi) for pi, qi in zip(p, qt, strict=True) if pi > 0))
        assert got["miscalibration"] == pytest.approx(np.mean(vals))


def test_readout_recovers_a_planted_effect():
    """Over 60 synthetic experiments the CI of the CTR difference covers the planted value
    at about the nominal rate (≥ 50 of 60 at 95%; P(fewer) < 0.001 under nominal coverage),
    and excludes 0 in nearly all of them."""
    planted = 0.10
    covered = excluded = 0
    for rep in range(60):
        log = synthetic_log(np.random.default_rng(100 + rep), 150, 0.2, 0.2 + planted)
        d = readout(log, n_bootstrap=300, seed=rep)["differences"]["b"]["ctr"]
        covered += d["low"] <= planted <= d["high"]
        excluded += d["excludes_zero"]
    assert covered >= 50
    assert excluded >= 55


def test_aa_logs_report_a_difference_at_about_the_nominal_rate():
    """200 A/A experiments: the 95% CI of the CTR difference excludes 0 in about 5% of them
    (between 2 and 20 of 200: the 99.9% binomial range at 5%)."""
    hits = 0
    for rep in range(200):
        log = synthetic_log(np.random.default_rng(rep), 60, 0.25, 0.25, lists=3)
        d = readout(log, n_bootstrap=300, seed=rep)["differences"]["b"]["ctr"]
        hits += d["excludes_zero"]
    lo, hi = sps.binom.ppf([0.0005, 0.9995], 200, 0.05)
    assert lo <= hits <= hi, hits


def test_outputs_are_written(tmp_path):
    log = synthetic_log(np.random.default_rng(0), 20, 0.2, 0.3)
    res = readout(log, np.eye(log.n_items), n_bootstrap=50, space="identity")
    paths = write_readout(res, tmp_path / "out")
    assert [p.name for p in paths] == ["readout.md", "readout.json", "over_time.png"]
    md = readout_markdown(res)
    assert "b − a" in md and "Sample-ratio check" in md and "Fixed-horizon" in md
    assert sum(res["over_time"]["a"]["impressions"]) == int(np.sum(log.imp_arm == 0))


@pytest.mark.parametrize(
    "kwargs,msg", [({"confidence": 1.0}, "confidence"), ({"n_bootstrap": 3}, "n_bootstrap")]
)
def test_bad_settings_name_the_field(kwargs, msg):
    log = synthetic_log(np.random.default_rng(0), 5, 0.2, 0.3)
    with pytest.raises(ValueError, match=msg):
        readout(log, **kwargs)
