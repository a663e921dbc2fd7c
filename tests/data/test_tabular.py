"""Tests of divrec.data.tabular: round trips and one-line DataError messages."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from divrec.data.interactions import DataError, Interactions
from divrec.data.tabular import ColumnMap, load_item_categories, load_table

FULL = ColumnMap(rating="rating", timestamp="ts", session="sess")


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def assert_error(path, call, *patterns: str) -> str:
    """`call()` raises a one-line DataError naming the file and matching every pattern."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert path.name in message, message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    return message


# ---------------------------------------------------------------------- round trips


def test_csv_round_trip(tmp_path):
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,rating,ts,sess\nbob,20,4,300,7\nalice,10,5,100,3\nalice,20,2.5,200,3\n",
    )
    data = load_table(path, FULL)
    assert data.name == "log"
    # internal indices follow sorted external ids
    assert data.user_ids.tolist() == ["alice", "bob"]
    assert data.item_ids.dtype == np.int64
    assert data.item_ids.tolist() == [10, 20]
    got = {
        (data.user_ids[u], int(data.item_ids[i]), float(v), int(t), int(s))
        for u, i, v, t, s in zip(
            data.users, data.items, data.values, data.timestamps, data.sessions, strict=True
        )
    }
    assert got == {
        ("bob", 20, 4.0, 300, 7),
        ("alice", 10, 5.0, 100, 3),
        ("alice", 20, 2.5, 200, 3),
    }
    dense = data.to_csr().toarray()
    np.testing.assert_array_equal(dense, [[5.0, 2.5], [0.0, 4.0]])


def test_tsv_with_column_map_and_implicit_values(tmp_path):
    path = write(tmp_path / "clicks.tsv", "who\twhat\textra\n2\t9\tx\n1\t9\ty\n2\t8\tz\n")
    data = load_table(path, ColumnMap(user="who", item="what"), name="clicks")
    assert data.name == "clicks"
    assert data.user_ids.tolist() == [1, 2]
    assert data.item_ids.tolist() == [8, 9]
    assert data.timestamps is None and data.sessions is None
    np.testing.assert_array_equal(data.to_csr().toarray(), [[0, 1], [1, 1]])


def test_gzipped_csv_and_tsv(tmp_path):
    text = "user_id,item_id,rating\n1,5,3\n2,6,4\n"
    for name, body in [("a.csv.gz", text), ("a.tsv.gz", text.replace(",", "\t"))]:
        path = tmp_path / name
        with gzip.open(path, "wt") as handle:
            handle.write(body)
        data = load_table(path, ColumnMap(rating="rating"))
        assert data.name == "a"
        np.testing.assert_array_equal(data.to_csr().toarray(), [[3, 0], [0, 4]])


def test_sep_override_for_any_extension(tmp_path):
    path = write(tmp_path / "ratings.dat", "user_id::item_id::rating\n1::2::5\n")
    data = load_table(path, ColumnMap(rating="rating"), sep="::")
    assert data.user_ids.tolist() == [1] and data.item_ids.tolist() == [2]
    assert data.values.tolist() == [5.0]


def test_parquet_round_trip_keeps_types(tmp_path):
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "u": pa.array(["x", "y", "x"]),
            "i": pa.array([3, 1, 1], type=pa.int32()),
            "r": pa.array([1.0, 2.0, 3.0]),
            "t": pa.array([1_000, 2_000, 3_000], type=pa.timestamp("s")),
        }
    )
    pq.write_table(table, path)
    data = load_table(path, ColumnMap(user="u", item="i", rating="r", timestamp="t"))
    assert data.user_ids.tolist() == ["x", "y"]
    assert data.item_ids.dtype == np.int64 and data.item_ids.tolist() == [1, 3]
    np.testing.assert_array_equal(data.to_csr().toarray(), [[3, 1], [2, 0]])
    assert sorted(data.timestamps.tolist()) == [1_000, 2_000, 3_000]


def test_parquet_string_ids_stay_strings(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"user_id": ["1", "2"], "item_id": ["07", "7"]}), path)
    data = load_table(path)
    assert data.user_ids.tolist() == ["1", "2"]
    assert data.item_ids.tolist() == ["07", "7"]


def test_text_ids_with_leading_zeros_stay_strings(tmp_path):
    path = write(tmp_path / "z.csv", "user_id,item_id\n1,007\n1,7\n")
    data = load_table(path)
    assert data.user_ids.tolist() == [1]
    assert data.item_ids.tolist() == ["007", "7"]  # two items, not merged into 7


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path / "b.csv", "user_id,item_id\n\n1,2\n   \n3,4\n\n")
    data = load_table(path)
    assert data.nnz == 2


def test_min_rating_and_dedupe(tmp_path):
    path = write(
        tmp_path / "r.csv",
        "user_id,item_id,rating,ts\n1,1,5,10\n1,1,2,20\n1,2,4,30\n2,3,1,40\n",
    )
    last = load_table(path, ColumnMap(rating="rating", timestamp="ts"))
    # the later (ts=20) rating of the repeated pair (1, 1) wins
    np.testing.assert_array_equal(last.to_csr().toarray(), [[2, 4, 0], [0, 0, 1]])
    summed = load_table(path, ColumnMap(rating="rating", timestamp="ts"), dedupe="sum")
    assert summed.to_csr().toarray()[0, 0] == 7.0
    positives = load_table(path, ColumnMap(rating="rating", timestamp="ts"), min_rating=4)
    # rows (1,1,5), (1,2,4) pass; the later (1,1,2) is dropped before dedupe
    assert positives.user_ids.tolist() == [1]
    assert positives.item_ids.tolist() == [1, 2]
    assert sorted(positives.values.tolist()) == [4.0, 5.0]


def test_min_rating_needs_rating_column(tmp_path):
    path = write(tmp_path / "m.csv", "user_id,item_id\n1,2\n")
    with pytest.raises(ValueError, match="min_rating"):
        load_table(path, min_rating=4)


def test_item_categories_multi_hot(tmp_path):
    log = Interactions.from_arrays(np.array([1, 1, 2, 2]), np.array([10, 20, 30, 40]))
    path = write(
        tmp_path / "movies.csv",
        "movie,title,genres\n"
        "20,B,Comedy|Action\n"
        "10,A,Drama\n"
        "99,Z,Horror\n"  # not in the log: ignored
        "30,C,\n"  # no genre
        "20,B,Drama\n",  # repeated item: categories add up
    )
    out = load_item_categories(path, "movie", "genres", log)
    assert out.category_names == ("Action", "Comedy", "Drama")
    np.testing.assert_array_equal(
        out.item_categories.toarray(),
        [
            [0, 0, 1],  # 10
            [1, 1, 1],  # 20
            [0, 0, 0],  # 30
            [0, 0, 0],  # 40 absent from the file
        ],
    )
    assert out.nnz == log.nnz


def test_item_categories_match_string_ids(tmp_path):
    log = Interactions.from_arrays(np.array(["u"]), np.array(["5"]))
    path = write(tmp_path / "c.tsv", "item\tcat\n5\tA|B\n")
    out = load_item_categories(path, "item", "cat", log)
    np.testing.assert_array_equal(out.item_categories.toarray(), [[1, 1]])


# ---------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert_error(path, lambda: load_table(path), r"not found")


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty.csv", "")
    assert_error(path, lambda: load_table(path), r"empty file")


def test_whitespace_only_file(tmp_path):
    path = write(tmp_path / "blank.csv", "\n\n  \n")
    assert_error(path, lambda: load_table(path), r"empty file")


def test_header_only(tmp_path):
    path = write(tmp_path / "head.csv", "user_id,item_id\n")
    assert_error(path, lambda: load_table(path), r"no data rows")


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"user_id": pa.array([], pa.int64()), "item_id": []}), path)
    assert_error(path, lambda: load_table(path), r"no data rows")


def test_missing_columns_lists_missing_and_present(tmp_path):
    path = write(tmp_path / "cols.csv", "user,item_id,stars\n1,2,3\n")
    message = assert_error(
        path,
        lambda: load_table(path, ColumnMap(rating="rating")),
        r"missing column\(s\) 'user_id', 'rating'",
        r"present: 'user', 'item_id', 'stars'",
    )
    assert "item_id'," in message


def test_missing_columns_parquet(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"uid": [1], "item_id": [2]}), path)
    assert_error(path, lambda: load_table(path), r"missing column\(s\) 'user_id'", r"'uid'")


def test_empty_id_names_line_counting_header_and_blank_lines(tmp_path):
    # line 1 header, 2 ok, 3 blank, 4 ok, 5 empty user id
    path = write(tmp_path / "ids.csv", "user_id,item_id\n1,2\n\n3,4\n,5\n6,7\n")
    assert_error(path, lambda: load_table(path), r"line 5\b", r"user id", r"'user_id'")


def test_nan_item_id_names_line(tmp_path):
    path = write(tmp_path / "nan.tsv", "user_id\titem_id\n1\t2\n1\tNaN\n")
    assert_error(path, lambda: load_table(path), r"line 3\b", r"item id", r"'item_id'")


def test_blank_id_in_tsv(tmp_path):
    path = write(tmp_path / "sp.tsv", "user_id\titem_id\n1\t2\n \t3\n")
    assert_error(path, lambda: load_table(path), r"line 3\b", r"user id")


def test_null_id_in_parquet_names_row(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"user_id": [1, 2, None], "item_id": [4, 5, 6]}), path)
    assert_error(path, lambda: load_table(path), r"row 3\b", r"user id", r"'user_id'")


def test_empty_id_in_gz_names_line(tmp_path):
    path = tmp_path / "g.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("user_id,item_id\n1,2\n2,\n")
    assert_error(path, lambda: load_table(path), r"line 3\b", r"item id")


def test_non_numeric_rating_names_line_and_value(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,4\n1,3,4.5\n2,3,five\n")
    assert_error(
        path,
        lambda: load_table(path, ColumnMap(rating="rating")),
        r"line 4\b",
        r"non-numeric rating 'five'",
        r"'rating'",
    )


def test_missing_rating_names_line(tmp_path):
    path = write(tmp_path / "mr.csv", "user_id,item_id,rating\n1,2,\n")
    assert_error(path, lambda: load_table(path, ColumnMap(rating="rating")), r"line 2\b", r"rating")


def test_non_numeric_timestamp_names_line_and_value(tmp_path):
    path = write(tmp_path / "t.csv", "user_id,item_id,ts\n1,2,100\n1,3,2020-01-01\n")
    assert_error(
        path,
        lambda: load_table(path, ColumnMap(timestamp="ts")),
        r"line 3\b",
        r"non-numeric timestamp '2020-01-01'",
        r"'ts'",
    )


def test_non_numeric_rating_in_parquet_names_row(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [1, 1], "r": ["3", "bad"]}), path)
    assert_error(
        path, lambda: load_table(path, ColumnMap(rating="r")), r"row 2\b", r"'bad'", r"'r'"
    )


def test_no_positives(tmp_path):
    path = write(tmp_path / "neg.csv", "user_id,item_id,rating\n1,2,1\n2,3,3\n")
    assert_error(
        path,
        lambda: load_table(path, ColumnMap(rating="rating"), min_rating=4),
        r"no positives",
        r"'rating' >= 4",
    )


def test_ragged_row_is_a_data_error(tmp_path):
    path = write(tmp_path / "rag.csv", "user_id,item_id\n1,2\n3,4,5,6\n")
    assert_error(path, lambda: load_table(path), r"cannot parse", r"line 3")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"this is not gzip data at all")
    assert_error(path, lambda: load_table(path), r"cannot")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 garbage")
    assert_error(path, lambda: load_table(path), r"cannot read")


def test_undecodable_text(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id\n1,caf\xe9\n".encode("latin-1"))
    assert_error(path, lambda: load_table(path), r"cannot")
    data = load_table(path, encoding="latin-1")
    assert data.item_ids.tolist() == ["caf\xe9"]


def test_unsupported_extension(tmp_path):
    path = write(tmp_path / "log.json", "{}")
    assert_error(path, lambda: load_table(path), r"unsupported file type '.json'")


def test_item_categories_without_any_match(tmp_path):
    log = Interactions.from_arrays(np.array([1]), np.array([10]))
    path = write(tmp_path / "cats.csv", "item,genre\n11,A\n")
    assert_error(
        path, lambda: load_item_categories(path, "item", "genre", log), r"no item id", r"'item'"
    )


def test_item_categories_empty_id_names_line(tmp_path):
    log = Interactions.from_arrays(np.array([1]), np.array([10]))
    path = write(tmp_path / "cats2.csv", "item,genre\n10,A\n,B\n")
    assert_error(path, lambda: load_item_categories(path, "item", "genre", log), r"line 3\b")


def test_item_categories_missing_column(tmp_path):
    log = Interactions.from_arrays(np.array([1]), np.array([10]))
    path = write(tmp_path / "cats3.csv", "item,genre\n10,A\n")
    assert_error(
        path,
        lambda: load_item_categories(path, "item", "genres", log),
        r"missing column\(s\) 'genres'",
    )


def test_every_row_with_an_extra_field_is_a_data_error(tmp_path):
    # pandas would otherwise shift the columns (first field as index) without a word
    path = write(tmp_path / "shift.csv", "user_id,item_id\n1,2,3\n4,5,6\n")
    assert_error(path, lambda: load_table(path), r"more fields than the 2 header columns")


def test_multi_character_sep_is_literal(tmp_path):
    path = write(tmp_path / "pipes.txt", "user_id||item_id\n1||a|b\n")
    data = load_table(path, sep="||")
    assert data.item_ids.tolist() == ["a|b"]
