"""The NCF evaluation protocol files for MovieLens-1M (He et al., WWW 2017).

`ncf/ml-1m.test.rating` holds each user's latest rating (held out) and
`ncf/ml-1m.test.negative` 99 sampled negatives per user; results computed on them compare
directly with published tables (e.g. TotalRecall Table 1). Ids are 0-based: NCF user =
UserID − 1 and NCF item = order of first appearance of the MovieID in the original
`ratings.dat`.

The training set (`ml-1m.train.rating`) is all other ratings. It is read from the official
file when present, else rebuilt exactly from `ml-1m/ratings.dat`, else rebuilt from the
shared layout (see `divrec.data.movielens`): there 3,615 item ids are known from the rank map
and the other 91 (items first rated by users ≥ 3000, each rated 1–4 times) are assigned by
first-appearance order of their first rater, and within one rater by a matching that keeps
every published negative outside its user's ratings (`NcfReconstruction` reports how many
were fixed by each rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from divrec.data.home import exists, find_file
from divrec.data.interactions import DataError, Interactions
from divrec.data.movielens import (
    ML1M_GENRES,
    ML1M_RATINGS,
    _read_numeric,
    ml1m_genre_matrix,
    read_ml1m_no_timestamps,
    read_ml1m_rank_map,
)

N_USERS = 6040
N_ITEMS = 3706


@dataclass(frozen=True)
class NcfReconstruction:
    """How the NCF training set was obtained.

    Attributes:
        source: "official train file", "ratings.dat" or "shared layout".
        exact_items: items whose NCF id is known exactly.
        order_items: items placed by first-appearance order alone (a unique slot).
        matched_items: items placed by the negatives-consistent matching within one user.
        conflicts: published negatives that fall on a rating of their user after the
            assignment (0 means every constraint is met).
    """

    source: str
    exact_items: int
    order_items: int = 0
    matched_items: int = 0
    conflicts: int = 0


def read_ncf_test(home: Path | str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The held-out positives `(user, item, rating, timestamp)` and `(6040, 99)` negatives."""
    rating_path = find_file("ncf/ml-1m.test.rating", home, download="ncf/ml-1m.test.rating")
    test = _read_numeric(rating_path, "\t", ["user", "item", "rating", "timestamp"])
    neg_path = find_file("ncf/ml-1m.test.negative", home, download="ncf/ml-1m.test.negative")
    with open(neg_path) as fh:
        lines = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    if len(lines) != len(test):
        raise DataError(f"{neg_path}: {len(lines)} lines for {len(test)} test ratings")
    try:
        heads = [tuple(int(v) for v in row[0].strip("()").split(",")) for row in lines]
        negatives = np.array([[int(v) for v in row[1:]] for row in lines], dtype=np.int64)
    except ValueError as err:
        raise DataError(f"{neg_path}: malformed line ({err})") from None
    heads_arr = np.array(heads, dtype=np.int64)
    if not np.array_equal(heads_arr, test[["user", "item"]].to_numpy()):
        raise DataError(f"{neg_path}: (user,item) heads do not match {rating_path.name}")
    return test, negatives


def load_ncf_ml1m(home: Path | str | None = None):
    """The ML-1M NCF split: train, held-out test positives and their 99 negatives.

    Returns:
        `(split, info)`: a `divrec.splitting.Split` over NCF ids (users 0..6039, items
        0..3705; train values are the 1–5 ratings; items carry ML-1M genres where the MovieID
        is known) and an `NcfReconstruction` saying how the training set was obtained.
    """
    from divrec.data.split import Split

    test, negatives = read_ncf_test(home)
    train_frame, movie_of_item, info = _training_ratings(test, negatives, home)
    item_ids = np.arange(N_ITEMS)
    user_ids = np.arange(N_USERS)
    ts = train_frame["timestamp"].to_numpy() if "timestamp" in train_frame else None
    all_users = np.r_[train_frame["user"].to_numpy(), test["user"].to_numpy()]
    all_items = np.r_[train_frame["item"].to_numpy(), test["item"].to_numpy()]
    all_values = np.r_[train_frame["rating"].to_numpy(), test["rating"].to_numpy()]
    all_ts = None if ts is None else np.r_[ts, test["timestamp"].to_numpy()]
    data = Interactions(
        users=all_users,
        items=all_items,
        values=all_values,
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=all_ts,
        name="ml-1m (NCF protocol)",
    )
    cats = ml1m_genre_matrix(movie_of_item, home)
    data = data.with_item_side_info(cats, ML1M_GENRES)
    n_train = len(train_frame)
    split = Split(
        train=data.select(np.arange(n_train)),
        test=data.select(np.arange(n_train, data.nnz)),
        negatives=negatives,
        protocol="NCF leave-one-out, 99 published negatives (ml-1m.test.negative)",
    )
    return split, info


def _training_ratings(test: pd.DataFrame, negatives: np.ndarray, home):
    """Training ratings over NCF ids, the MovieID of each NCF item, and provenance."""
    if exists("ncf/ml-1m.train.rating", home):
        path = find_file("ncf/ml-1m.train.rating", home)
        train = _read_numeric(path, "\t", ["user", "item", "rating", "timestamp"])
        movie_of_item = np.full(N_ITEMS, -1, dtype=np.int64)
        if exists("ml-1m/derived/item_rank_to_movie_id.tsv", home):
            ranks = read_ml1m_rank_map(home)
            known = ranks["ncf_item_id"].to_numpy() >= 0
            movie_of_item[ranks["ncf_item_id"].to_numpy()[known]] = ranks["movie_id"][known]
        return train, movie_of_item, NcfReconstruction("official train file", N_ITEMS)
    if exists(ML1M_RATINGS, home):
        return _from_ratings_dat(test, home)
    return _from_shared_layout(test, negatives, home)


def _from_ratings_dat(test: pd.DataFrame, home):
    path = find_file(ML1M_RATINGS, home)
    raw = _read_numeric(path, "::", ["user", "movie", "rating", "timestamp"])
    movies, first = np.unique(raw["movie"].to_numpy(), return_index=True)
    order = np.argsort(first)  # NCF item id = order of first appearance
    item_of_movie = np.empty(len(movies), dtype=np.int64)
    item_of_movie[order] = np.arange(len(movies))
    raw["item"] = item_of_movie[np.searchsorted(movies, raw["movie"].to_numpy())]
    raw["user"] = raw["user"] - 1
    train = _drop_test_rows(raw, test)
    movie_of_item = movies[order]
    return train, movie_of_item, NcfReconstruction("ratings.dat", N_ITEMS)


def _from_shared_layout(test: pd.DataFrame, negatives: np.ndarray, home):
    raw = read_ml1m_no_timestamps(home)
    ranks = read_ml1m_rank_map(home)
    ncf_of_rank = ranks["ncf_item_id"].to_numpy().copy()
    users0 = raw["user"].to_numpy() - 1
    rank0 = raw["item_rank"].to_numpy() - 1
    info = _assign_unknown_ids(ncf_of_rank, users0, rank0, test, negatives)
    frame = pd.DataFrame(
        {"user": users0, "item": ncf_of_rank[rank0], "rating": raw["rating"].to_numpy()}
    )
    train = _drop_test_rows(frame, test)
    movie_of_item = np.full(N_ITEMS, -1, dtype=np.int64)
    movie_of_item[ncf_of_rank] = ranks["movie_id"].to_numpy()
    return train, movie_of_item, info


def _assign_unknown_ids(ncf_of_rank, users0, rank0, test, negatives) -> NcfReconstruction:
    """Fills the −1 entries of `ncf_of_rank` in place (see the module docstring)."""
    unknown = np.flatnonzero(ncf_of_rank < 0)
    free_ids = np.setdiff1d(np.arange(N_ITEMS), ncf_of_rank[ncf_of_rank >= 0])
    if len(free_ids) != len(unknown):
        raise DataError(f"rank map: {len(unknown)} unknown items for {len(free_ids)} free NCF ids")
    exact = N_ITEMS - len(unknown)
    if len(unknown) == 0:
        return NcfReconstruction("shared layout", exact)
    raters = {r: users0[rank0 == r] for r in unknown}
    first_user = np.array([raters[r].min() for r in unknown])
    # Users whose published negatives contain each free id.
    neg_users = {j: set() for j in free_ids.tolist()}
    rows, cols = np.nonzero(np.isin(negatives, free_ids))
    for u, j in zip(test["user"].to_numpy()[rows], negatives[rows, cols], strict=True):
        neg_users[int(j)].add(int(u))
    order = np.lexsort((unknown, first_user))
    order_items = matched = conflicts = 0
    pos = 0
    for fu in np.unique(first_user):
        group = unknown[order][first_user[order] == fu]
        slots = free_ids[pos : pos + len(group)]
        pos += len(group)
        cost = np.array(
            [
                [len(neg_users[int(j)].intersection(raters[r].tolist())) for j in slots]
                for r in group
            ]
        )
        r_idx, c_idx = linear_sum_assignment(cost)
        ncf_of_rank[group[r_idx]] = slots[c_idx]
        conflicts += int(cost[r_idx, c_idx].sum())
        if len(group) == 1:
            order_items += 1
        else:
            matched += len(group)
    return NcfReconstruction("shared layout", exact, order_items, matched, conflicts)


def _drop_test_rows(frame: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    key = frame["user"].to_numpy() * N_ITEMS + frame["item"].to_numpy()
    test_key = test["user"].to_numpy() * N_ITEMS + test["item"].to_numpy()
    held = np.isin(key, test_key)
    if held.sum() != len(test):
        raise DataError(
            f"NCF test: {held.sum()} of {len(test)} held-out ratings found in the training source"
        )
    return frame.loc[~held].reset_index(drop=True)
