"""Tests of divrec.data.synthetic: determinism, shapes, and real topic structure."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.synthetic import SyntheticConfig, SyntheticData, make_synthetic

SMALL = SyntheticConfig(n_users=300, n_items=500, n_topics=8, interactions_per_user=30, seed=3)


@pytest.fixture(scope="module")
def small() -> SyntheticData:
    return make_synthetic(SMALL)


def arrays(data: SyntheticData) -> dict[str, np.ndarray]:
    log = data.interactions
    return {
        "users": log.users,
        "items": log.items,
        "values": log.values,
        "timestamps": log.timestamps,
        "sessions": log.sessions,
        "features": log.item_features,
        "categories": log.item_categories.toarray(),
        "user_topics": data.user_topics,
        "item_topics": data.item_topics,
        "item_vectors": data.item_vectors,
        "user_vectors": data.user_vectors,
    }


def top_topic_share(data: SyntheticData, items: np.ndarray, top: int = 2) -> float:
    """Share of interactions whose item topic is among the user's `top` Dirichlet topics."""
    users = data.interactions.users
    best = np.argsort(-data.user_topics, axis=1)[:, :top]
    return float((data.item_topics[items][:, None] == best[users]).any(axis=1).mean())


def test_same_seed_same_data(small):
    again = make_synthetic(SMALL)
    for key, value in arrays(small).items():
        np.testing.assert_array_equal(arrays(again)[key], value, err_msg=key)


def test_other_seed_other_data(small):
    other = make_synthetic(SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(other.user_topics, small.user_topics)
    assert not np.array_equal(other.item_topics, small.item_topics)
    n = min(other.interactions.nnz, small.interactions.nnz)
    assert not np.array_equal(other.interactions.items[:n], small.interactions.items[:n])


def test_shapes_and_ranges(small):
    log, cfg = small.interactions, SMALL
    assert log.shape == (cfg.n_users, cfg.n_items)
    assert log.user_ids.tolist() == list(range(cfg.n_users))
    assert log.item_ids.tolist() == list(range(cfg.n_items))
    assert small.user_topics.shape == (cfg.n_users, cfg.n_topics)
    np.testing.assert_allclose(small.user_topics.sum(axis=1), 1.0)
    assert small.item_topics.shape == (cfg.n_items,)
    assert small.item_vectors.shape == (cfg.n_items, cfg.dim)
    assert small.user_vectors.shape == (cfg.n_users, cfg.dim)
    # every topic has items, sizes within one of each other
    sizes = np.bincount(small.item_topics, minlength=cfg.n_topics)
    assert sizes.min() >= sizes.max() - 1 >= 0
    # ratings are integers 1..5 and use most of the scale
    assert set(np.unique(log.values).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert {2.0, 3.0, 4.0, 5.0} <= set(np.unique(log.values).tolist())
    # activity: every user present, mean close to the target, no repeated pairs
    counts = log.user_counts()
    assert counts.min() >= 1
    assert 0.7 * cfg.interactions_per_user < counts.mean() < 1.2 * cfg.interactions_per_user
    keys = log.users * cfg.n_items + log.items
    assert np.unique(keys).size == log.nnz


def test_side_info(small):
    log = small.interactions
    assert log.category_names == tuple(f"topic{t}" for t in range(SMALL.n_topics))
    np.testing.assert_array_equal(log.primary_category(), small.item_topics)
    np.testing.assert_array_equal(log.item_categories.sum(axis=1).A.ravel(), 1.0)
    np.testing.assert_allclose(log.item_features, small.item_vectors, rtol=1e-6)


def test_timestamps_and_sessions(small):
    log, cfg = small.interactions, SMALL
    end = cfg.start_time + cfg.time_span_days * 86_400
    assert log.timestamps.min() >= cfg.start_time and log.timestamps.max() < end
    # rows are grouped by user; each user's stream is in time order
    assert (np.diff(log.users) >= 0).all()
    same_user = log.users[1:] == log.users[:-1]
    assert (np.diff(log.timestamps)[same_user] >= 0).all()
    # a session belongs to one user and is a contiguous run
    session_users = np.zeros(log.sessions.max() + 1, dtype=np.int64)
    session_users[log.sessions] = log.users
    np.testing.assert_array_equal(session_users[log.sessions], log.users)
    assert (np.diff(log.sessions) >= 0).all()
    # sessions are short bursts: within-session gaps far below between-session gaps
    in_session = log.sessions[1:] == log.sessions[:-1]
    gaps = np.diff(log.timestamps)
    assert np.median(gaps[in_session]) < 600 < np.median(gaps[same_user & ~in_session])


def test_interactions_concentrate_in_preferred_topics(small):
    share = top_topic_share(small, small.interactions.items)
    assert share > 0.7
    # control: the same statistic on uniformly random items is near 2 / n_topics = 0.25
    rng = np.random.default_rng(0)
    random_items = rng.integers(0, SMALL.n_items, small.interactions.nnz)
    assert top_topic_share(small, random_items) < 0.35


def test_user_topic_histogram_tracks_dirichlet_weights(small):
    log = small.interactions
    hist = np.zeros_like(small.user_topics)
    np.add.at(hist, (log.users, small.item_topics[log.items]), 1.0)
    hist /= hist.sum(axis=1, keepdims=True)
    # mean total-variation distance between empirical and true topic mixtures
    tv = 0.5 * np.abs(hist - small.user_topics).sum(axis=1).mean()
    shuffled = hist[np.random.default_rng(1).permutation(SMALL.n_users)]
    tv_shuffled = 0.5 * np.abs(shuffled - small.user_topics).sum(axis=1).mean()
    assert tv < 0.25 < tv_shuffled


def test_popularity_is_skewed_within_topics(small):
    pop = small.interactions.item_popularity()
    assert np.corrcoef(small.item_popularity, pop)[0, 1] > 0.6
    for t in range(SMALL.n_topics):
        in_topic = small.item_topics == t
        counts = pop[in_topic][np.argsort(-small.item_popularity[in_topic])]
        # the topic's most popular item beats its median item several times over
        assert counts[0] > 3 * np.median(counts)


def test_ratings_follow_true_scores(small):
    log = small.interactions
    scores = small.true_scores(log.users)
    assert scores.shape == (log.nnz, SMALL.n_items)
    at_pairs = scores[np.arange(log.nnz), log.items]
    assert np.corrcoef(at_pairs, log.values)[0, 1] > 0.6
    # items of a user's favourite topic get higher ratings than the rest
    fav = np.argmax(small.user_topics, axis=1)[log.users] == small.item_topics[log.items]
    assert log.values[fav].mean() > log.values[~fav].mean() + 0.5


def test_true_scores_forms(small):
    all_scores = small.true_scores()
    assert all_scores.shape == (SMALL.n_users, SMALL.n_items)
    np.testing.assert_allclose(small.true_scores(5), all_scores[[5]])
    np.testing.assert_allclose(small.true_scores(np.array([2, 0])), all_scores[[2, 0]])
    expected = SMALL.rating_offset + SMALL.rating_scale * small.user_vectors[7].dot(
        small.item_vectors[11]
    )
    assert all_scores[7, 11] == pytest.approx(expected)


def test_noise_controls_off_topic_share():
    base = {**SMALL.__dict__, "noise": 0.0, "topic_concentration": 0.05}
    clean = make_synthetic(SyntheticConfig(**base))
    noisy = make_synthetic(SyntheticConfig(**{**base, "noise": 0.6}))
    assert (
        top_topic_share(clean, clean.interactions.items)
        > top_topic_share(noisy, noisy.interactions.items) + 0.3
    )


def test_invalid_config():
    with pytest.raises(ValueError, match="n_items"):
        SyntheticConfig(n_items=3, n_topics=5)
    with pytest.raises(ValueError, match="noise"):
        SyntheticConfig(noise=1.5)


def test_100k_interactions_generate():
    # speed is a benchmark matter (no timed assertions in tests); here only the size
    cfg = SyntheticConfig(n_users=2500, n_items=3000, interactions_per_user=40, seed=0)
    data = make_synthetic(cfg)
    assert data.interactions.nnz > 90_000
