"""Labeled windows and the time-stratified split (PURS data, issue 11)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.data.interactions import Interactions
from divrec.splitting.windows import labeled_windows, window_split


def _log(users, items, values=None, ts=None, n_items=None):
    users = np.asarray(users)
    items = np.asarray(items)
    n_items = n_items or int(items.max()) + 1
    return Interactions(
        users=users,
        items=items,
        values=np.ones(users.size) if values is None else values,
        user_ids=np.arange(users.max() + 1),
        item_ids=np.arange(n_items),
        timestamps=ts,
    )


def test_history_is_strictly_earlier_in_time_and_labels_binarized():
    # one user, rows out of time order: chronological items are 5, 6, 7, 8
    data = _log(
        [0, 0, 0, 0], [7, 5, 8, 6], values=[4.0, 5.0, 3.0, 2.0], ts=[30, 10, 40, 20], n_items=20
    )
    w = labeled_windows(data, history=2, n_negatives=0, threshold=3.5)
    assert w.item.tolist() == [6, 7, 8]
    assert w.history.tolist() == [[-1, 5], [5, 6], [6, 7]]
    assert w.label.tolist() == [0.0, 1.0, 0.0]  # ratings 2, 4, 3 at threshold 3.5


def test_repeated_target_window_is_dropped():
    data = _log([0] * 4, [1, 2, 1, 3], ts=[0, 1, 2, 3])
    w = labeled_windows(data, history=3, n_negatives=0)
    assert w.item.tolist() == [2, 3]  # the window with target 1 (in its history) is gone
    assert not (w.history == w.item[:, None]).any()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_split_target_never_in_history_time_ordered_and_negatives_unobserved(seed):
    rng = np.random.default_rng(seed)
    n = 300
    users = rng.integers(0, 6, n)
    items = rng.integers(0, 25, n)  # many repeats
    data = _log(users, items, ts=rng.permutation(n), n_items=60)
    s = window_split(data, history=4, n_negatives=2, seed=seed)
    seen = data.to_csr(binary=True)
    for part in (s.train, s.valid, s.test):
        assert not (part.history == part.item[:, None]).any()
        neg = part.sampled
        assert np.asarray(seen[part.user[neg], part.item[neg]]).ravel().sum() == 0
        assert (part.label[neg] == 0).all() and (part.label[~neg] == 1).all()
    for u in range(6):
        tr = s.train.position[s.train.user == u]
        va = s.valid.position[s.valid.user == u]
        te = s.test.position[s.test.user == u]
        if va.size:
            assert tr.max() < va.min()
        if te.size:
            assert max(tr.max(), va.max(initial=-1)) < te.min()
            # the training log holds no event at or after the first evaluation window
            first = va.min() if va.size else te.min()
            assert (s.train_log.users == u).sum() == first


def test_bad_fractions_are_one_line_errors():
    data = _log([0, 0, 0], [1, 2, 3])
    with pytest.raises(ValueError, match="valid_fraction \\+ test_fraction"):
        window_split(data, valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="history"):
        labeled_windows(data, history=0)


def test_s3rec_loader_keeps_file_order_and_attributes(tmp_path):
    import json

    from divrec.data.s3rec import load_s3rec

    (tmp_path / "s3rec").mkdir()
    (tmp_path / "s3rec" / "Yelp.txt").write_text("1 5 3 5 9\n2 3 7\n")
    (tmp_path / "s3rec" / "Yelp_item2attributes.json").write_text(
        json.dumps({"3": [10], "5": [10, 11], "7": [], "9": [11]})
    )
    d = load_s3rec("Yelp", tmp_path)
    assert d.nnz == 6 and d.n_users == 2
    u0 = d.users == 0
    assert d.item_ids[d.items[u0]].tolist() == [5, 3, 5, 9]  # repeats kept, in file order
    assert d.timestamps[u0].tolist() == [0, 1, 2, 3]
    assert d.item_categories.toarray().tolist() == [[1, 0], [1, 1], [0, 0], [0, 1]]
    w = labeled_windows(d, history=3, n_negatives=0)
    assert (w.history == w.item[:, None]).sum() == 0
    with pytest.raises(ValueError, match="unknown S3-Rec"):
        load_s3rec("Nope", tmp_path)
