"""Amazon Grocery & Gourmet Food 5-core in the ReChorus preprocessing (training part).

`amazon-grocery-rechorus/train.csv.gz` (`user_id, item_id, time`, tab-separated, day
resolution) and `item_meta.csv.gz` (`item_id, i_category, ...`, 57 categories). Only the
training part of ReChorus' split is in the shared data home (each user's last two
interactions are absent), which is still a timestamped log with one category per item.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from divrec.data.home import find_file
from divrec.data.interactions import DataError, Interactions

GROCERY_TRAIN = "amazon-grocery-rechorus/train.csv.gz"
GROCERY_META = "amazon-grocery-rechorus/item_meta.csv.gz"


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", compression="gzip")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: cannot be parsed ({str(err).splitlines()[0]})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def load_grocery_rechorus(home: Path | str | None = None) -> Interactions:
    """Implicit interactions (value 1) with timestamps; items carry their category."""
    train = _read(find_file(GROCERY_TRAIN, home), ["user_id", "item_id", "time"])
    meta = _read(find_file(GROCERY_META, home), ["item_id", "i_category"])
    data = Interactions.from_arrays(
        train["user_id"].to_numpy(), train["item_id"].to_numpy(),
        timestamps=train["time"].to_numpy(), name="amazon-grocery", dedupe="last",
    )  # fmt: skip
    cat_of = dict(zip(meta["item_id"].tolist(), meta["i_category"].tolist(), strict=True))
    cats = np.array([cat_of.get(int(i), -1) for i in data.item_ids], dtype=np.int64)
    n_cat = int(meta["i_category"].max()) + 1
    has = cats >= 0
    mat = sp.csr_matrix(
        (np.ones(has.sum(), dtype=np.float32), (np.flatnonzero(has), cats[has])),
        shape=(data.n_items, n_cat),
    )
    return data.with_item_side_info(mat, tuple(f"category{c}" for c in range(n_cat)))
