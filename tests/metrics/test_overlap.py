"""Rank-biased overlap against hand values and a brute force of Webber et al.'s Eq. 32."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divrec.metrics.overlap import rank_biased_overlap


def _brute(s, t, p):
    """Eq. 32 term by term, with X_d counted from sets at every depth."""
    if len(s) > len(t):
        s, t = t, s
    ns, nl = len(s), len(t)

    def x(d):
        return len(set(s[: min(d, ns)]) & set(t[:d]))

    total = sum(x(d) / d * p**d for d in range(1, nl + 1))
    total += sum(x(ns) * (d - ns) / (ns * d) * p**d for d in range(ns + 1, nl + 1))
    return (1 - p) / p * total + ((x(nl) - x(ns)) / nl + x(ns) / ns) * p**nl


def test_hand_values():
    # X = (1, 1, 3): (1-p)/p = 1; 1*.5 + 1/2*.25 + 1*.125 = .75; + X_3/3 * .5^3 = .125
    assert rank_biased_overlap([[1, 2, 3]], [[1, 3, 2]], p=0.5)[0] == pytest.approx(0.875)
    assert rank_biased_overlap([[4, 5, 6, -1]], [[4, 5, 6, -1]])[0] == pytest.approx(1.0)
    assert rank_biased_overlap([[1, 2]], [[3, 4]])[0] == 0.0
    assert np.isnan(rank_biased_overlap([[-1, -1]], [[1, 2]])[0])
    # uneven: S = [1], L = [1, 2], p = .5: X_1 = 1, X_2 = 1 (S contributes its 1 item)
    # (1-p)/p [1*.5 + 1/2*.25 + 1*(2-1)/(1*2)*.25] + [(1-1)/2 + 1/1]*.25 = .75 + .25 = 1
    assert rank_biased_overlap([[1, -1]], [[1, 2]], p=0.5)[0] == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="p must be in"):
        rank_biased_overlap([[1]], [[1]], p=1.0)
    with pytest.raises(ValueError, match="rows"):
        rank_biased_overlap([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="twice in row 0"):
        rank_biased_overlap([[1, 1]], [[1, 2]])


@settings(max_examples=60, deadline=None)
@given(
    s=st.lists(st.integers(0, 12), min_size=1, max_size=8, unique=True),
    t=st.lists(st.integers(0, 12), min_size=1, max_size=8, unique=True),
    p=st.floats(0.05, 0.95),
)
def test_equals_brute_force_and_is_symmetric_in_unit_interval(s, t, p):
    width = 8
    a = np.array([s + [-1] * (width - len(s))])
    b = np.array([t + [-1] * (width - len(t))])
    got = rank_biased_overlap(a, b, p)[0]
    assert got == pytest.approx(_brute(s, t, p), abs=1e-12)
    assert got == pytest.approx(rank_biased_overlap(b, a, p)[0], abs=1e-12)
    assert -1e-12 <= got <= 1 + 1e-12
