"""The S3-Rec sequential sets: Amazon Beauty / Sports / Toys, Yelp, LastFM (Zhou et al. 2020).

Files (RUCAIBox/CIKM2020-S3Rec, `data/`): ``<name>.txt`` holds one user a line,
``user_id item_1 item_2 ...`` in chronological order (no timestamps), and
``<name>_item2attributes.json`` maps each item id to its attribute ids (Amazon: categories and
brand; Yelp: business categories; LastFM: tags). The loader keeps the order as the
timestamp (the position of the item in its user's line), so every sequence tool of
`divrec.splitting` sees the published chronology, and attaches the attributes as item
categories (an item may have several).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from divrec.data.home import find_file
from divrec.data.interactions import DataError, Interactions

#: short names → file stem in `s3rec/`
S3REC_SETS = {
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "yelp": "Yelp",
    "lastfm": "LastFM",
}


def load_s3rec(name: str, home: Path | str | None = None) -> Interactions:
    """One S3-Rec set as an `Interactions` with positions as timestamps and attributes.

    Args:
        name: "beauty", "sports", "toys", "yelp" or "lastfm" (or the file stem).
        home: the data home (default `$DIVREC_DATA_HOME`).

    Returns:
        Implicit interactions (value 1), `timestamps` = position within the user's line
        (0-based), `item_categories` = `(n_items, n_attributes)` binary CSR.

    Raises:
        DataError: unknown name, or a malformed line.
    """
    stems = {**S3REC_SETS, **{v: v for v in S3REC_SETS.values()}}
    if name not in stems:
        raise DataError(f"unknown S3-Rec set {name!r}; known: {', '.join(S3REC_SETS)}")
    stem = stems[name]
    path = find_file(f"s3rec/{stem}.txt", Path(home) if home is not None else None)
    users, items, pos = [], [], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            ids = np.asarray(parts, dtype=np.int64)
        except ValueError:
            raise DataError(f"{path}:{lineno}: non-integer id") from None
        seq = ids[1:]
        users.append(np.full(seq.size, ids[0]))
        items.append(seq)
        pos.append(np.arange(seq.size))
    data = Interactions.from_arrays(
        np.concatenate(users),
        np.concatenate(items),
        timestamps=np.concatenate(pos).astype(np.int64),
        name=f"s3rec-{name}",
        dedupe=None,
    )
    attr_path = find_file(f"s3rec/{stem}_item2attributes.json", Path(home) if home else None)
    attrs = json.loads(attr_path.read_text())
    rows, cols = [], []
    for i, item in enumerate(data.item_ids.tolist()):
        for a in attrs.get(str(item), ()):
            rows.append(i)
            cols.append(int(a))
    n_attr = max(cols) + 1 if cols else 1
    cats = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(data.n_items, n_attr)
    )
    cats.sum_duplicates()
    cats.data[:] = 1.0
    return data.with_item_side_info(cats, tuple(str(c) for c in range(n_attr)))
