"""`Candidates` refuses what no stage can rank: NaN scores, an item twice in a row, ids
below −1 (padding is −1)."""

from __future__ import annotations

import numpy as np
import pytest

from divrec.data.query import Candidates


@pytest.mark.parametrize(
    ("ids", "scores", "match"),
    [
        ([[0, 1, 2]], [[1.0, np.nan, 0.5]], "NaN"),
        ([[0, 1, 1]], [[1.0, 0.9, 0.5]], "distinct"),
        ([[3, -1, 3]], [[1.0, -np.inf, 0.5]], "distinct"),
        ([[0, -2, 1]], [[1.0, 0.5, 0.4]], "-1"),
    ],
)
def test_candidates_refuse_bad_rows(ids, scores, match):
    with pytest.raises(ValueError, match=match):
        Candidates(np.array(ids), np.array(scores, dtype=np.float32))


def test_candidates_accept_padding_and_derived_views():
    ids = np.array([[2, 0, -1, -1], [1, 3, 0, -1]])
    c = Candidates(ids, np.array([[0.5, 0.9, np.nan, -np.inf], [1, 2, 3, -np.inf]], np.float32))
    assert c.sorted().ids.tolist() == [[0, 2, -1, -1], [0, 3, 1, -1]]
    assert c.head(6).shape == (2, 6) and c.take(np.array([1])).ids.tolist() == [[1, 3, 0, -1]]
    assert Candidates.from_ids([[1, 1, 2]]).ids.tolist() == [[1, -1, 2]]
