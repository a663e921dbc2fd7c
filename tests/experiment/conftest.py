"""Shared fixtures of the experiment tests: a small synthetic log as a CSV file and a writer of
experiment files over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from divrec.data.synthetic import SyntheticConfig, make_synthetic

BASE = """\
[experiment]
name = "tiny"
dataset = "{csv}"
protocol = "random"
ks = [10]
metrics = ["ndcg", "recall", "ilad"]
seeds = 3
baseline = "ials"
tuning = {{method = "tpe", trials = 3, objective = "ndcg@10"}}

[[entries]]
name = "ials"
pipeline = {{retriever = {{name = "ials", params = {{factors = 8, iterations = 2}}}}}}
search = {{"retriever.regularization" = {{low = 0.01, high = 1.0, log = true}}}}

[[entries]]
name = "ials+dpp"
search = {{"reranker.theta" = [0.3, 0.9]}}
objective = {{"ndcg@10" = 1.0, "ilad@10" = 0.2}}
[entries.pipeline]
retriever = {{name = "ials", params = {{factors = 8, iterations = 2}}}}
reranker = {{name = "dpp"}}
n_candidates = 30

[[entries]]
name = "itemknn"
pipeline = {{retriever = "itemknn"}}
"""


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """120 users × 150 items, ~20 interactions each (about 2,000 rows)."""
    cfg = SyntheticConfig(n_users=120, n_items=150, interactions_per_user=18.0, seed=3)
    data = make_synthetic(cfg).interactions
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    rows = np.stack([data.user_ids[data.users], data.item_ids[data.items]], axis=1)
    lines = ["user_id,item_id"] + [f"{u},{i}" for u, i in rows.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def write_exp(tmp_path, synthetic_csv):
    """`write_exp(text=None, name="exp.toml")`: an experiment file (the tiny one by default;
    `{csv}` in `text` is the synthetic CSV path)."""

    def write(text: str | None = None, name: str = "exp.toml") -> Path:
        path = tmp_path / name
        body = BASE if text is None else text
        path.write_text(body.format(csv=synthetic_csv) if "{csv}" in body else body)
        return path

    return write
