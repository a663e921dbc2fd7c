"""Generic CSV / TSV / Parquet loader for interaction logs and item categories.

`load_table` reads one interaction table and maps its columns onto an `Interactions` log through
a `ColumnMap`; `load_item_categories` attaches a multi-hot item category matrix read from a
second table. Every problem with the input (missing file, empty file, missing columns, empty
ids, non-numeric values, parser failures) raises `DataError` with a one-line message that names
the file and, where it applies, the column and the line (text files, 1-based with the header as
line 1) or the row (Parquet, 1-based data row).

Id columns keep their type: integer columns stay integers, string columns stay strings. In text
files, where there are no types, an id column becomes int64 only when every id is a canonical
integer (no leading zeros, no sign other than "-"), so ids such as "007" keep their spelling.
"""

from __future__ import annotations

import gzip
import re
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from divrec.data.interactions import DataError, Interactions

__all__ = ["ColumnMap", "load_item_categories", "load_table"]

_TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t"}
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ColumnMap:
    """Names of the table columns that hold each field of an interaction.

    Attributes:
        user: column of the user ids.
        item: column of the item ids.
        rating: column of the feedback values (ratings, counts); None for implicit data
            (every interaction gets the value 1.0).
        timestamp: column of unix timestamps in seconds (fractions are floored); None if absent.
        session: column of session ids (integers or strings); None if absent.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None
    session: str | None = None


def load_table(
    path: str | Path,
    columns: ColumnMap = ColumnMap(),  # noqa: B008 - frozen dataclass, immutable default
    *,
    sep: str | None = None,
    name: str | None = None,
    min_rating: float | None = None,
    dedupe: str | None = "last",
    encoding: str = "utf-8",
) -> Interactions:
    """Reads an interaction table into an `Interactions` log.

    Supported files: `.csv`, `.tsv`, `.csv.gz`, `.tsv.gz` (separator from the extension unless
    `sep` is given; with `sep` any extension is read as delimited text) and `.parquet`.
    Blank lines in text files are skipped (line numbers in messages still count them). Quoted
    fields that span several lines make the reported line numbers approximate.

    Args:
        path: the file.
        columns: which columns hold the user, item, rating, timestamp and session.
        sep: field separator for text files; overrides the one implied by the extension.
        name: dataset name for reports; defaults to the file name without its extensions.
        min_rating: keep only rows with rating >= min_rating (needs `columns.rating`). The
            user/item universe is built from the kept rows.
        dedupe: passed to `Interactions.from_arrays` ("last", "sum" or None).
        encoding: text encoding of delimited files.

    Returns:
        The log, with internal indices following the sorted external ids.

    Raises:
        DataError: one line naming the file and the problem (see the module docstring).
        ValueError: `min_rating` without a rating column.
    """
    path = Path(path)
    if min_rating is not None and columns.rating is None:
        raise ValueError("min_rating needs a rating column (ColumnMap.rating is None)")
    roles = {
        "user": columns.user,
        "item": columns.item,
        "rating": columns.rating,
        "timestamp": columns.timestamp,
        "session": columns.session,
    }
    roles = {role: col for role, col in roles.items() if col is not None}
    table = _read(path, list(roles.values()), sep, encoding, id_cols=_id_cols(roles))
    src = table.src

    user_ids = _as_ids(table, roles["user"], "user")
    item_ids = _as_ids(table, roles["item"], "item")
    values = None
    if "rating" in roles:
        numbers = _as_numbers(table, roles["rating"], "rating")
        too_big = np.abs(numbers) > np.finfo(np.float32).max
        if too_big.any():
            row = int(np.argmax(too_big))
            raise _bad(table, row, roles["rating"], f"rating {numbers[row]:g} is out of range")
        values = numbers.astype(np.float32)
    timestamps = None
    if "timestamp" in roles:
        timestamps = _as_timestamps(table, roles["timestamp"])
    sessions = None
    if "session" in roles:
        sessions = _as_ids(table, roles["session"], "session")
        if sessions.dtype.kind not in "iu":
            sessions = np.unique(sessions, return_inverse=True)[1].reshape(-1)
        sessions = sessions.astype(np.int64)

    if min_rating is not None:
        keep = values >= min_rating
        if not keep.any():
            raise DataError(
                f"{src}: no positives: none of the {table.n_rows} rows has "
                f"{roles['rating']!r} >= {min_rating:g} (max is {float(values.max()):g})"
            )
        user_ids, item_ids, values = user_ids[keep], item_ids[keep], values[keep]
        timestamps = None if timestamps is None else timestamps[keep]
        sessions = None if sessions is None else sessions[keep]

    return Interactions.from_arrays(
        user_ids,
        item_ids,
        values,
        timestamps,
        sessions,
        name=name or _stem(path),
        dedupe=dedupe,
    )


def load_item_categories(
    path: str | Path,
    item_col: str,
    category_col: str,
    interactions: Interactions,
    sep: str | None = None,
    multi_sep: str | None = "|",
    *,
    encoding: str = "utf-8",
) -> Interactions:
    """Attaches a multi-hot item category matrix read from a table.

    Each row holds an item id and one or more categories joined by `multi_sep` (e.g.
    MovieLens genres "Action|Comedy"). Repeated item rows add their categories. Items of
    `interactions` absent from the file get no category (an empty row); file items unknown to
    `interactions` are ignored. Category names are sorted; empty category cells give no
    category.

    Args:
        path: the table (same formats as `load_table`).
        item_col: column of the item ids (matched to `interactions.item_ids`; integer ids in a
            text file are compared as strings when the log has string ids).
        category_col: column of the categories.
        interactions: the log to attach the categories to.
        sep: field separator for text files (default from the extension).
        multi_sep: separator between several categories in one cell; None for one per cell.
        encoding: text encoding of delimited files.

    Returns:
        `interactions` with `item_categories` `(n_items, C)` binary CSR aligned with
        `interactions.item_ids` and `category_names` (the `C` sorted names).

    Raises:
        DataError: one line naming the file and the problem, including when no item id of the
            file matches an item of `interactions`.
    """
    path = Path(path)
    table = _read(path, [item_col, category_col], sep, encoding, id_cols={item_col, category_col})
    src = table.src
    file_ids = _as_ids(table, item_col, "item")
    log_ids = interactions.item_ids
    if log_ids.dtype.kind in "UOS" and file_ids.dtype.kind in "iu":
        file_ids = file_ids.astype(str)
    rows = pd.Index(log_ids).get_indexer(file_ids)
    if not (rows >= 0).any():
        raise DataError(
            f"{src}: no item id in column {item_col!r} matches an item of {interactions.name} "
            f"(file has e.g. {file_ids[0]!r}, the log has e.g. "
            f"{log_ids[0] if log_ids.size else None!r})"
        )

    cats = pd.Series(table.columns[category_col], dtype=object)
    cats = cats.where(~table.nulls[category_col], "").map(_text)
    if multi_sep:
        cats = cats.str.split(multi_sep, regex=False)
    cats = cats.explode().str.strip()
    row_of = rows[cats.index.to_numpy()]
    ok = (row_of >= 0) & (cats.to_numpy() != "") & cats.notna().to_numpy()
    names, col_of = np.unique(cats.to_numpy()[ok].astype(str), return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(col_of.size, dtype=np.float32), (row_of[ok], col_of.reshape(-1))),
        shape=(interactions.n_items, names.size),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return interactions.with_item_side_info(
        item_categories=matrix, category_names=tuple(names.tolist())
    )


# ---------------------------------------------------------------------- reading


@dataclass
class _Table:
    """Raw columns of a file: `columns[name]` `(n_rows,)` arrays, `nulls[name]` missing masks."""

    src: str
    columns: dict[str, np.ndarray]
    nulls: dict[str, np.ndarray]
    n_rows: int
    locate: Callable[[int], str]
    text: bool


def _id_cols(roles: dict[str, str]) -> set[str]:
    return {roles[r] for r in ("user", "item", "session") if r in roles}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".parquet", ".csv", ".tsv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


def _format(path: Path, sep: str | None) -> tuple[str, str | None]:
    """("parquet", None) or ("text", separator) for a path."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return "parquet", None
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    base = suffixes[-1] if suffixes else ""
    if sep is not None:
        return "text", sep
    if base in _TEXT_SEPARATORS:
        return "text", _TEXT_SEPARATORS[base]
    raise DataError(
        f"{path}: unsupported file type {''.join(path.suffixes) or '(no extension)'!r}; "
        "expected .csv, .tsv, .csv.gz, .tsv.gz or .parquet (or pass sep= for delimited text)"
    )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _read(path: Path, wanted: list[str], sep: str | None, encoding: str, id_cols: set[str]):
    src = str(path)
    if not path.exists():
        raise DataError(f"{src}: file not found")
    if not path.is_file():
        raise DataError(f"{src}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{src}: empty file (no header, no rows)")
    kind, sep = _format(path, sep)
    wanted = list(dict.fromkeys(wanted))
    if kind == "parquet":
        return _read_parquet(path, src, wanted)
    return _read_text(path, src, wanted, sep, encoding, id_cols)


def _resolve(src: str, wanted: list[str], present: list[str], hint: str = "") -> dict[str, str]:
    """Maps each wanted column to the file's column (exact, else whitespace-stripped match)."""
    stripped = {}
    for col in present:
        stripped.setdefault(str(col).strip(), col)
    found, missing = {}, []
    for col in wanted:
        if col in present:
            found[col] = col
        elif col.strip() in stripped:
            found[col] = stripped[col.strip()]
        else:
            missing.append(col)
    if missing:
        raise DataError(
            f"{src}: missing column(s) {', '.join(map(repr, missing))}; columns present: "
            f"{', '.join(repr(str(c)) for c in present) or '(none)'}{hint}"
        )
    return found


def _read_text(
    path: Path, src: str, wanted: list[str], sep: str, encoding: str, id_cols: set[str]
) -> _Table:
    # pandas reads a separator longer than one character as a regex; ours is literal text
    # (r"\s+", pandas' whitespace idiom, is kept as is).
    engine = "python" if len(sep) > 1 and sep != r"\s+" else "c"
    pandas_sep = re.escape(sep) if engine == "python" else sep
    # index_col=False: never turn a first column into an index when rows have an extra field
    opts = {
        "sep": pandas_sep,
        "encoding": encoding,
        "engine": engine,
        "compression": "infer",
        "index_col": False,
    }
    parse_errors = (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
    )
    try:
        header = pd.read_csv(path, nrows=0, **opts).columns.tolist()
    except pd.errors.EmptyDataError:
        raise DataError(f"{src}: empty file (no header, no rows)") from None
    except parse_errors as err:
        raise DataError(f"{src}: cannot read the header: {_one_line(err)}") from None
    try:  # the raw first line: pandas renames a repeated column to "name.1"
        raw = pd.read_csv(path, header=None, nrows=1, dtype=str, **opts).iloc[0].tolist()
    except parse_errors as err:
        raise DataError(f"{src}: cannot read the header: {_one_line(err)}") from None
    raw = [str(c).strip() for c in raw]
    dupes = sorted({c for c in raw if raw.count(c) > 1})
    if dupes:
        raise DataError(
            f"{src}: duplicate column name(s) {', '.join(map(repr, dupes))} in the header"
        )
    found = _resolve(src, wanted, header, hint=f" (read with sep={sep!r})")
    dtype = {found[c]: str for c in wanted if c in id_cols}
    # All columns are read (no usecols): with usecols pandas silently drops extra fields of
    # ragged rows, which usually means a shifted, misparsed row.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=dtype, **opts)
    except pd.errors.ParserWarning:
        raise DataError(
            f"{src}: cannot parse: data rows have more fields than the {len(header)} header "
            f"columns (sep={sep!r})"
        ) from None
    except parse_errors as err:
        raise DataError(f"{src}: cannot parse: {_one_line(err)}") from None
    if len(frame) == 0:
        raise DataError(f"{src}: no data rows (only a header)")
    columns = {c: frame[found[c]].to_numpy() for c in wanted}
    nulls = {c: frame[found[c]].isna().to_numpy() for c in wanted}

    def locate(row: int) -> str:
        return f"line {_text_line_number(path, row, sep, encoding)}"

    return _Table(src, columns, nulls, len(frame), locate, text=True)


def _text_line_number(path: Path, row: int, sep: str, encoding: str) -> int:
    """1-based file line of data row `row` (0-based), the header being the first kept line.

    Mirrors the pandas C parser, which skips lines made only of spaces, tabs and carriage
    returns (a tab counts as content when it is the separator).
    """
    blank = "".join(ch for ch in " \t\r\n" if ch not in sep)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    target = row + 1  # index of the wanted line among the non-blank lines (header is 0)
    seen = -1
    try:
        with opener(path, "rt", encoding=encoding, errors="replace") as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip(blank):
                    seen += 1
                    if seen == target:
                        return lineno
    except (OSError, EOFError, zlib.error):
        pass
    return row + 2  # header on line 1, no blank lines


def _read_parquet(path: Path, src: str, wanted: list[str]) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{src}: cannot read the Parquet schema: {_one_line(err)}") from None
    found = _resolve(src, wanted, names)
    try:
        arrow = pq.read_table(path, columns=list(dict.fromkeys(found.values())))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"{src}: cannot read: {_one_line(err)}") from None
    if arrow.num_rows == 0:
        raise DataError(f"{src}: no data rows")
    columns, nulls = {}, {}
    for col in wanted:
        arr = arrow.column(found[col]).combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        nulls[col] = arr.is_null().to_numpy(zero_copy_only=False)
        if nulls[col].any() and (pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type)):
            arr = arr.cast(pa.float64())  # nulls become NaN; reported below
        values = arr.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            nulls[col] = nulls[col] | np.isnan(values)
        columns[col] = values

    def locate(row: int) -> str:
        return f"row {row + 1}"

    return _Table(src, columns, nulls, arrow.num_rows, locate, text=False)


# ---------------------------------------------------------------------- conversion


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _bad(table: _Table, row: int, col: str, problem: str) -> DataError:
    return DataError(f"{table.src}: {table.locate(row)}: {problem} in column {col!r}")


def _as_ids(table: _Table, col: str, role: str) -> np.ndarray:
    """`(n_rows,)` ids: int64 for integer ids, numpy str otherwise; raises on missing ids."""
    values, nulls = table.columns[col], table.nulls[col]
    if nulls.any():
        raise _bad(table, int(np.argmax(nulls)), col, f"missing (empty or NaN) {role} id")
    kind = values.dtype.kind
    if kind in "iu":
        return values.astype(np.int64)
    if kind == "b":
        return values.astype(np.int64)
    if kind == "f":
        frac = values != np.floor(values)
        if frac.any():
            row = int(np.argmax(frac))
            raise _bad(table, row, col, f"non-integer {role} id {values[row].item()!r}")
        return values.astype(np.int64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = np.array([_text(u).strip() for u in uniques], dtype=object)
    empty = texts == ""
    if empty.any():
        row = int(np.argmax(empty[codes]))
        raise _bad(table, row, col, f"missing (blank) {role} id")
    if table.text and texts.size and all(_is_int64_text(t) for t in texts):
        return np.array([int(t) for t in texts], dtype=np.int64)[codes]
    return texts.astype(str)[codes]


def _is_int64_text(text: str) -> bool:
    return bool(_CANONICAL_INT.fullmatch(text)) and abs(int(text)) <= _INT64_MAX


def _as_numbers(table: _Table, col: str, role: str) -> np.ndarray:
    """`(n_rows,)` float64 finite values; raises naming the first missing or bad value."""
    values, nulls = table.columns[col], table.nulls[col]
    if values.dtype.kind in "iub":
        return values.astype(np.float64)
    if values.dtype.kind == "f":
        numbers = values.astype(np.float64)
    else:
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.argmax(bad))
        if nulls[row]:
            raise _bad(table, row, col, f"missing (empty or NaN) {role}")
        raise _bad(table, row, col, f"non-numeric {role} {_text(values[row])!r}")
    return numbers


def _as_timestamps(table: _Table, col: str) -> np.ndarray:
    """`(n_rows,)` int64 unix seconds (numbers are floored; datetimes converted)."""
    values, nulls = table.columns[col], table.nulls[col]
    if values.dtype.kind == "M":
        if nulls.any() or np.isnat(values).any():
            row = int(np.argmax(nulls | np.isnat(values)))
            raise _bad(table, row, col, "missing timestamp")
        return values.astype("datetime64[s]").astype(np.int64)
    numbers = _as_numbers(table, col, "timestamp")
    out_of_range = np.abs(numbers) >= 2.0**62
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        raise _bad(table, row, col, f"timestamp out of range {numbers[row].item()!r}")
    return np.floor(numbers).astype(np.int64)
