"""The tiny weighted graph shared by the GraphSAGE sampler tests."""

from __future__ import annotations

import numpy as np

# symmetric weights: 0-1-3-2-0 is a weighted 4-cycle, node 4 has no edges
W = np.array(
    [
        [0, 3, 1, 0, 0],
        [3, 0, 0, 2, 0],
        [1, 0, 0, 5, 0],
        [0, 2, 5, 0, 0],
        [0, 0, 0, 0, 0],  # isolated
    ],
    dtype=np.float64,
)
