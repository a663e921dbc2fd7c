"""S3-Rec preprocessed sequence datasets (Amazon Beauty / Sports / Toys, Yelp, LastFM).

Each file `s3rec/<name>.txt` holds one user a line, `user_id item_1 item_2 ...`, items in
chronological order without timestamps (Zhou et al., CIKM 2020). We load them as implicit
feedback (value 1) with a synthetic timestamp: the position of the event in its user's
sequence (0, 1, 2, ...), so every chronological protocol of `divrec.splitting` orders a user's
events exactly as the file does. Positions are comparable within a user only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from divrec.data.home import find_file
from divrec.data.interactions import DataError, Interactions

S3REC_NAMES = ("Beauty", "Sports_and_Outdoors", "Toys_and_Games", "Yelp", "LastFM")

#: short names → file stem in `s3rec/`
S3REC_SETS = {
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "yelp": "Yelp",
    "lastfm": "LastFM",
}

__all__ = [
    "S3REC_NAMES",
    "S3REC_SETS",
    "load_s3rec",
    "load_s3rec_beauty",
    "load_s3rec_sports",
    "load_s3rec_toys",
    "load_s3rec_yelp",
]


def load_s3rec(name: str, home: Path | str | None = None, attributes: bool = True) -> Interactions:
    """One S3-Rec sequence set as an implicit, chronologically ordered log.

    Args:
        name: a file stem of `S3REC_NAMES` or a short name of `S3REC_SETS`
            ("beauty", "sports", "toys", "yelp", "lastfm").
        home: the data home (`DIVREC_DATA_HOME` when None).
        attributes: attach `<name>_item2attributes.json` as multi-hot item categories.

    Returns:
        `Interactions` with values 1, `timestamps` = position in the user's sequence, and
        repeated (user, item) events kept (S3-Rec sequences may repeat an item).
    """
    name = S3REC_SETS.get(name, name)
    if name not in S3REC_NAMES:
        raise DataError(f"unknown S3-Rec set {name!r}; known: {', '.join(S3REC_SETS)}")
    path = find_file(f"s3rec/{name}.txt", home)
    users, items, pos = [], [], []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.asarray(parts, dtype=np.int64)
            except ValueError:
                raise DataError(f"{path}:{line_no}: non-integer id") from None
            if ids.size < 2:
                raise DataError(f"{path}:{line_no}: a user line needs at least one item")
            users.append(np.full(ids.size - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
            pos.append(np.arange(ids.size - 1, dtype=np.int64))
    if not users:
        raise DataError(f"{path}: no interactions")
    data = Interactions.from_arrays(
        np.concatenate(users),
        np.concatenate(items),
        timestamps=np.concatenate(pos),
        name=f"s3rec-{name}",
        dedupe=None,
    )
    if attributes:
        attr_path = Path(path).with_name(f"{name}_item2attributes.json")
        if attr_path.exists():
            data = _attach_attributes(data, attr_path)
    return data


def _attach_attributes(data: Interactions, path: Path) -> Interactions:
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    index = {int(k): v for k, v in raw.items()}
    attr_ids = sorted({int(a) for v in index.values() for a in v})
    col = {a: j for j, a in enumerate(attr_ids)}
    rows, cols = [], []
    for r, item in enumerate(data.item_ids.tolist()):
        for a in index.get(int(item), ()):
            rows.append(r)
            cols.append(col[int(a)])
    cats = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(data.n_items, len(attr_ids)),
    )
    return data.with_item_side_info(cats, tuple(str(a) for a in attr_ids))


def load_s3rec_yelp(home: Path | str | None = None) -> Interactions:
    """S3-Rec Yelp (30,431 users, 20,033 businesses, 316,354 check-ins)."""
    return load_s3rec("Yelp", home)


def load_s3rec_beauty(home: Path | str | None = None) -> Interactions:
    """S3-Rec Amazon Beauty (22,363 users, 12,101 items, 198,502 reviews)."""
    return load_s3rec("Beauty", home)


def load_s3rec_sports(home: Path | str | None = None) -> Interactions:
    """S3-Rec Amazon Sports and Outdoors."""
    return load_s3rec("Sports_and_Outdoors", home)


def load_s3rec_toys(home: Path | str | None = None) -> Interactions:
    """S3-Rec Amazon Toys and Games."""
    return load_s3rec("Toys_and_Games", home)
