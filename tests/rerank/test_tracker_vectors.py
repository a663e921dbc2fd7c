"""RealtimePropensityTracker: reassigning `item_vectors` refreshes the unit rows and s_u."""

import numpy as np

from divrec.rerank.personalized import RealtimePropensityTracker


def test_reassigned_item_vectors_refresh_cache_and_similarity():
    v1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    tr = RealtimePropensityTracker(10.0, v1)
    tr.update(0, 0, 1.0)
    tr.update(0, 1, 1.0)
    assert tr.similarity(0) == 0.0  # orthogonal: e_0·e_1 = 0
    # a new space with a third item; items 0 and 1 now at 60° (cos = 0.5), norms ≠ 1
    v2 = np.array([[2.0, 0.0], [1.0, np.sqrt(3.0)], [0.0, 3.0]])
    tr.item_vectors = v2
    assert np.isclose(tr.similarity(0), 0.5)  # cached s_u recomputed in the new space
    tr.update(0, 2, 2.0)  # index 2 did not exist in the first space
    # pairs (0,1)=0.5, (0,2)=0, (1,2)=cos 30° → mean of the three
    assert np.isclose(tr.similarity(0), (0.5 + 0.0 + np.sqrt(3) / 2) / 3)
