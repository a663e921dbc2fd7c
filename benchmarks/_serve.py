"""The serving benchmarks' model: synthetic data (2000 users x 1000 items, 10 topics, 30
interactions a user), iALS with 32 factors retrieving 100 candidates, DPP re-ranking,
trained by the real CLI (`divrec train`). Servers are run with `divrec.serve.local`."""

from __future__ import annotations

from pathlib import Path

from divrec.serve.local import synthetic_config, train_model

MODEL = "synthetic 2000 users x 1000 items, iALS 32 + DPP (N=100)"


def train_synthetic(tmp: Path, env: dict[str, str]) -> Path:
    """`divrec train` of the benchmark model into `tmp/model` (its config: tmp/config.toml)."""
    cfg = tmp / "config.toml"
    sizes = {"n_users": 2000, "n_items": 1000, "n_topics": 10, "interactions_per_user": 30.0}
    cfg.write_text(synthetic_config(**sizes, factors=32, iterations=8, n_candidates=100))
    return train_model(cfg, tmp / "model", env=env)
