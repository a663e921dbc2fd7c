"""Logs with item attributes for the simulator (the CLI's `--dataset`).

* `ml-1m`: the timestamped users 1–2999, 18 genres as categories, release-year features.
* `ml-100k`: 19 genres.
* `beauty`, `sports`, `toys`, `yelp`: the S3-Rec sequences (chronological, no timestamps:
  one session per user, the graph's sliding window applies) with their item attributes
  (Amazon categories + brand, Yelp business categories) as categories. Attributes used by
  fewer than `min_attribute_items` items are dropped. All events are positives (value 5).

(The S3-Rec reader here is a minimal private one so that this module does not depend on
another stage's data loader.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from divrec.data.interactions import Interactions

__all__ = ["SIM_DATASETS", "load_sim_dataset"]

_S3REC = {
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "yelp": "Yelp",
}
SIM_DATASETS = ("ml-1m", "ml-100k", *_S3REC)


def _s3rec(name: str, home: Path | str | None, min_attribute_items: int = 20) -> Interactions:
    from divrec.data.home import find_file

    seq_path = find_file(f"s3rec/{_S3REC[name]}.txt", home)
    attr_path = find_file(f"s3rec/{_S3REC[name]}_item2attributes.json", home)
    users, items = [], []
    with open(seq_path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            users.extend([int(parts[0])] * (len(parts) - 1))
            items.extend(int(x) for x in parts[1:])
    n = len(users)
    data = Interactions.from_arrays(
        np.asarray(users), np.asarray(items), np.full(n, 5.0, dtype=np.float32),
        timestamps=np.arange(n), name=f"s3rec {_S3REC[name]}", dedupe="last",
    )  # fmt: skip
    attrs = json.loads(Path(attr_path).read_text())
    rows, cols = [], []
    for item, a in attrs.items():
        rows.extend([int(item)] * len(a))
        cols.extend(int(x) for x in a)
    rows, cols = np.asarray(rows), np.asarray(cols)
    pos = np.searchsorted(data.item_ids, rows)
    pos = np.clip(pos, 0, data.n_items - 1)
    ok = data.item_ids[pos] == rows
    mat = sp.csr_matrix(
        (np.ones(ok.sum(), np.float32), (pos[ok], cols[ok])), shape=(data.n_items, cols.max() + 1)
    )
    mat.data[:] = 1.0
    used = np.asarray((mat > 0).sum(axis=0)).ravel()
    keep = np.flatnonzero(used >= min_attribute_items)
    mat = mat[:, keep].tocsr()
    return data.with_item_side_info(mat, tuple(f"attr{int(a)}" for a in keep))


def load_sim_dataset(name: str, home: Path | str | None = None) -> Interactions:
    """The log `name` (one of `SIM_DATASETS`) with item attributes."""
    if name == "ml-1m":
        from divrec.data.movielens import load_movielens_1m, ml1m_year_features

        d = load_movielens_1m(home, require_timestamps=True)
        return d.with_item_side_info(item_features=ml1m_year_features(d.item_ids, home))
    if name == "ml-100k":
        from divrec.data.movielens import load_movielens_100k

        return load_movielens_100k(home)
    if name in _S3REC:
        return _s3rec(name, home)
    raise ValueError(f"unknown simulator dataset {name!r}; known: {', '.join(SIM_DATASETS)}")
