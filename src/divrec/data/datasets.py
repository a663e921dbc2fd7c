"""Datasets by name: the registry's named datasets, or a CSV/TSV/Parquet file read with a
`TableSpec` (the CLI's `--columns` / `--min-rating`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from divrec.data.interactions import DataError, Interactions
from divrec.registry import DATASETS, resolve

__all__ = ["DATASETS", "TableSpec", "load_dataset"]

_ROLES = ("user", "item", "rating", "timestamp", "session")


@dataclass(frozen=True)
class TableSpec:
    """How to read a CSV/TSV/Parquet file given instead of a named dataset.

    Attributes:
        columns: role → column name, roles among user, item, rating, timestamp, session.
        min_rating: keep only rows rated at least this (None: keep all).
    """

    columns: tuple[tuple[str, str], ...] = ()
    min_rating: float | None = None

    @classmethod
    def parse(cls, columns: str | None, min_rating: float | None = None) -> TableSpec:
        """From `"user=uid,item=mid,rating=stars"` (roles not named keep their defaults).

        Raises:
            ValueError: an entry that is not `role=column` with a known role.
        """
        pairs = []
        for part in (columns or "").split(","):
            if not part.strip():
                continue
            role, sep, col = part.partition("=")
            role = role.strip()
            if not sep or role not in _ROLES:
                raise ValueError(
                    f"--columns entry {part!r} must be role=column with role one of "
                    f"{', '.join(_ROLES)}"
                )
            pairs.append((role, col.strip()))
        return cls(tuple(pairs), min_rating)


def load_dataset(
    name: str, home=None, require_timestamps: bool = False, table: TableSpec | None = None
) -> Interactions:
    """A named dataset, or a CSV/TSV/Parquet file when `name` is not a known dataset name.

    Args:
        name: a registered dataset name (`divrec.registry.DATASETS`) or a file path.
        home: the data home (None: `$DIVREC_DATA_HOME` or the cache directory).
        require_timestamps: ML-1M only: fail unless the full `ratings.dat` is there.
        table: how to read a file (ignored for named datasets).

    Raises:
        DataError: an unknown name that is not a table path, or a bad file (one line).
    """
    if name in DATASETS:
        if name == "ml-1m":
            from divrec.data.movielens import load_movielens_1m

            return load_movielens_1m(home, require_timestamps=require_timestamps)
        return resolve("dataset", name)(home)
    path = Path(name)
    if not (path.suffix in (".csv", ".tsv", ".gz", ".parquet") or path.exists()):
        raise DataError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or a CSV/TSV/Parquet path"
        )
    from divrec.data.tabular import ColumnMap, load_table

    table = table or TableSpec()
    return load_table(path, ColumnMap(**dict(table.columns)), min_rating=table.min_rating)
