"""MovieLens-100K and MovieLens-1M loaders (GroupLens original formats).

MovieLens may not be redistributed: these loaders only read a data home (see
`divrec.data.home`), downloading the official archive with a sha256 check when allowed.

ML-1M comes in two layouts. The official one has `ml-1m/ratings.dat` (1,000,209 ratings with
timestamps). The shared research layout lacks it and instead has
`ml-1m/derived/ratings_no_timestamps.user-itemrank-rating.tsv.gz` (all ratings, no timestamps,
items as ranks) with `ml-1m/derived/item_rank_to_movie_id.tsv`, and
`ml-1m/ratings.users-0001-2999.dat.gz` (complete timestamped histories of users 1–2999).
`load_movielens_1m` uses the official file when present and otherwise rebuilds what it can.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from divrec.data.home import exists, find_file
from divrec.data.interactions import DataError, Interactions

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ML1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip

ML1M_RATINGS = "ml-1m/ratings.dat"
ML1M_PARTIAL = "ml-1m/ratings.users-0001-2999.dat.gz"
ML1M_NO_TS = "ml-1m/derived/ratings_no_timestamps.user-itemrank-rating.tsv.gz"
ML1M_RANK_MAP = "ml-1m/derived/item_rank_to_movie_id.tsv"


def load_movielens_100k(home: Path | str | None = None) -> Interactions:
    """MovieLens-100K: 100,000 ratings (1–5) with timestamps, 943 users, 1,682 items.

    Items carry their 19 genre flags from `u.item` as categories.
    """
    path = find_file("ml-100k/u.data", home, download="ml-100k")
    raw = _read_numeric(path, "\t", ["user", "item", "rating", "timestamp"])
    data = Interactions.from_arrays(
        raw["user"], raw["item"], raw["rating"], raw["timestamp"], name="ml-100k", dedupe=None
    )
    item_path = find_file("ml-100k/u.item", home, download="ml-100k")
    items = pd.read_csv(item_path, sep="|", header=None, encoding="latin-1")
    flags = items.iloc[:, 5:24].to_numpy(dtype=np.float32)
    cats = _align_rows(items[0].to_numpy(), flags, data.item_ids)
    return data.with_item_side_info(sp.csr_matrix(cats), ML100K_GENRES)


def load_movielens_1m(
    home: Path | str | None = None, require_timestamps: bool = False
) -> Interactions:
    """MovieLens-1M ratings (1–5), items keyed by MovieID, 18 genres as categories.

    Args:
        home: the data home.
        require_timestamps: needed for temporal protocols. With the official `ratings.dat`
            this changes nothing. In the shared layout (no `ratings.dat`) it returns the
            complete timestamped histories of users 1–2999 only (487,650 ratings); without
            it, all 1,000,209 ratings without timestamps.

    Returns:
        The ratings. In the shared layout without timestamps, the 20 items whose MovieID is
        ambiguous get the external id `-item_rank` and no genre.
    """
    if exists(ML1M_RATINGS, home) or not (exists(ML1M_NO_TS, home) or exists(ML1M_PARTIAL, home)):
        path = find_file(ML1M_RATINGS, home, download="ml-1m")
        raw = _read_numeric(path, "::", ["user", "item", "rating", "timestamp"])
        data = Interactions.from_arrays(
            raw["user"], raw["item"], raw["rating"], raw["timestamp"], name="ml-1m", dedupe=None
        )
    elif require_timestamps:
        path = find_file(ML1M_PARTIAL, home)
        raw = _read_numeric(path, "::", ["user", "item", "rating", "timestamp"])
        data = Interactions.from_arrays(
            raw["user"],
            raw["item"],
            raw["rating"],
            raw["timestamp"],
            name="ml-1m (users 1-2999, timestamped)",
            dedupe=None,
        )
    else:
        raw = read_ml1m_no_timestamps(home)
        data = Interactions.from_arrays(
            raw["user"], raw["movie_id"], raw["rating"], name="ml-1m (no timestamps)", dedupe=None
        )
    return attach_ml1m_genres(data, home)


def read_ml1m_no_timestamps(home: Path | str | None = None) -> pd.DataFrame:
    """All ML-1M ratings of the shared layout: columns user, item_rank, movie_id, rating.

    `movie_id` is the original MovieID where the rank map resolves it, else `-item_rank`.
    """
    path = find_file(ML1M_NO_TS, home)
    raw = _read_numeric(path, "\t", ["user", "item_rank", "rating"])
    ranks = read_ml1m_rank_map(home)
    movie = ranks["movie_id"].to_numpy()
    raw["movie_id"] = movie[raw["item_rank"].to_numpy() - 1]
    return raw


def read_ml1m_rank_map(home: Path | str | None = None) -> pd.DataFrame:
    """The item_rank → MovieID / NCF id map of the shared layout (indexed by rank − 1).

    Columns: item_rank, movie_id (−item_rank where ambiguous), ncf_item_id (−1 where unknown).
    """
    path = find_file(ML1M_RANK_MAP, home)
    ranks = pd.read_csv(path, sep="\t").sort_values("item_rank").reset_index(drop=True)
    if not np.array_equal(ranks["item_rank"].to_numpy(), np.arange(1, len(ranks) + 1)):
        raise DataError(f"{path}: item_rank is not the contiguous range 1..{len(ranks)}")
    movie = ranks["movie_id"].to_numpy()
    missing = np.isnan(movie)
    ranks["movie_id"] = np.where(missing, -ranks["item_rank"], np.nan_to_num(movie)).astype(
        np.int64
    )
    ranks["ncf_item_id"] = ranks["ncf_item_id"].fillna(-1).astype(np.int64)
    return ranks[["item_rank", "movie_id", "ncf_item_id"]]


def read_ml1m_movies(home: Path | str | None = None) -> pd.DataFrame:
    """`movies.dat` as a frame: movie_id, title, genres (a list of genre names)."""
    path = find_file("ml-1m/movies.dat", home, download="ml-1m")
    with open(path, encoding="latin-1") as fh:
        rows = [line.rstrip("\n").split("::") for line in fh if line.strip()]
    frame = pd.DataFrame(rows, columns=["movie_id", "title", "genres"])
    frame["movie_id"] = frame["movie_id"].astype(np.int64)
    frame["genres"] = frame["genres"].str.split("|")
    return frame


def ml1m_genre_matrix(movie_ids: np.ndarray, home: Path | str | None = None) -> sp.csr_matrix:
    """`(len(movie_ids), 18)` multi-hot genre matrix; unknown ids get an empty row."""
    movies = read_ml1m_movies(home)
    col = {g: j for j, g in enumerate(ML1M_GENRES)}
    flags = np.zeros((len(movies), len(ML1M_GENRES)), dtype=np.float32)
    for r, genres in enumerate(movies["genres"]):
        for g in genres:
            flags[r, col[g]] = 1.0
    return sp.csr_matrix(_align_rows(movies["movie_id"].to_numpy(), flags, movie_ids))


def attach_ml1m_genres(data: Interactions, home: Path | str | None = None) -> Interactions:
    """Attaches ML-1M genres to an `Interactions` whose item ids are MovieIDs."""
    return data.with_item_side_info(ml1m_genre_matrix(data.item_ids, home), ML1M_GENRES)


def read_ml1m_users(home: Path | str | None = None) -> pd.DataFrame:
    """`users.dat` as a frame: user_id, gender ("F"/"M"), age (bucket), occupation, zip."""
    path = find_file("ml-1m/users.dat", home, download="ml-1m")
    with open(path, encoding="latin-1") as fh:
        rows = [line.rstrip("\n").split("::") for line in fh if line.strip()]
    if not rows or any(len(r) != 5 for r in rows):
        raise DataError(f"{path}: expected 5 '::'-separated fields per line")
    frame = pd.DataFrame(rows, columns=["user_id", "gender", "age", "occupation", "zip"])
    for col in ("user_id", "age", "occupation"):
        frame[col] = frame[col].astype(np.int64)
    return frame


def ml1m_user_features(user_ids: np.ndarray, home: Path | str | None = None) -> np.ndarray:
    """`(len(user_ids), 3)` int64 codes of gender, age bucket and occupation (users.dat).

    Codes are 1-based (gender F=1, M=2; age bucket 1..7 in the order 1, 18, 25, 35, 45, 50,
    56; occupation + 1); 0 marks a user missing from `users.dat`.
    """
    users = read_ml1m_users(home)
    ages = {a: j + 1 for j, a in enumerate((1, 18, 25, 35, 45, 50, 56))}
    codes = np.stack(
        [
            users["gender"].map({"F": 1, "M": 2}).fillna(0).to_numpy(np.int64),
            users["age"].map(ages).fillna(0).to_numpy(np.int64),
            users["occupation"].to_numpy(np.int64) + 1,
        ],
        axis=1,
    )
    return _align_rows(users["user_id"].to_numpy(), codes, np.asarray(user_ids))


def _align_rows(keys: np.ndarray, rows: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of `rows` (keyed by `keys`) in the order of `wanted`; zeros where absent."""
    out = np.zeros((len(wanted), rows.shape[1]), dtype=rows.dtype)
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], wanted)
    pos = np.clip(pos, 0, len(keys) - 1)
    found = keys[order][pos] == wanted
    out[found] = rows[order[pos[found]]]
    return out


def _read_numeric(path: Path, sep: str, names: list[str]) -> pd.DataFrame:
    """Reads a headerless numeric file (optionally gzip) with a one-line DataError on failure."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="latin-1") as fh:
            text = fh.read()
        if sep != "\t":
            text = text.replace(sep, "\t")
        frame = pd.read_csv(io.StringIO(text), sep="\t", header=None, names=names)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot be parsed ({str(err).splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: file has no rows")
    for col in names:
        if not pd.api.types.is_numeric_dtype(frame[col]) or frame[col].isna().any():
            bad = pd.to_numeric(frame[col], errors="coerce").isna().to_numpy()
            line = int(np.flatnonzero(bad)[0]) + 1
            raise DataError(f"{path}: line {line}: column {col!r} is not a number")
    return frame


def ml1m_year_features(movie_ids: np.ndarray, home: Path | str | None = None) -> np.ndarray:
    """`(len(movie_ids), 11)` float32 release-year features from the titles of `movies.dat`:
    `(year − 1950) / 50` and a one-hot decade (≤1920s, 1930s, …, 2000s); unknown ids: zeros."""
    movies = read_ml1m_movies(home)
    years = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype(float).to_numpy()
    years = np.nan_to_num(years, nan=1990.0)
    decade = np.clip((years // 10).astype(np.int64) - 192, 0, 9)
    feats = np.zeros((len(movies), 11), dtype=np.float32)
    feats[:, 0] = (years - 1950.0) / 50.0
    feats[np.arange(len(movies)), 1 + decade] = 1.0
    return _align_rows(movies["movie_id"].to_numpy(), feats, movie_ids)
