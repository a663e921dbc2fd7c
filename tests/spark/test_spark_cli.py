"""`divrec spark train|recommend|evaluate` end to end on ML-100K (in-process, test session)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from divrec.cli.main import app


def test_spark_cli_train_recommend_evaluate(spark, tmp_path):
    runner = CliRunner()
    rng = np.random.default_rng(0)
    n = 1500
    path = tmp_path / "log.csv"
    log = pd.DataFrame(
        {"uid": rng.integers(0, 60, n), "mid": rng.zipf(1.5, n) % 80, "ts": rng.integers(0, 99, n)}
    )
    log.to_csv(path, index=False)
    model_dir = tmp_path / "model"
    common = ["--master", "local[2]", "--no-ui", "--shuffle-partitions", "4"]
    res = runner.invoke(
        app,
        ["spark", "train", "--data", str(path), "--columns", "user=uid,item=mid,timestamp=ts",
         "--out", str(model_dir), "--model", "ials", "--protocol", "leave-last-one", "--param",
         "factors=8", "--param", "iterations=2", "--param", "blocks=2", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "[spark] fit ials" in res.output
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["n_users"] == log["uid"].nunique() and meta["n_items"] == log["mid"].nunique()
    assert meta["params"] == {"factors": 8, "regularization": 0.01, "alpha": 5.0,
                              "iterations": 2, "seed": 0, "binary": True, "blocks": 2}  # fmt: skip
    lists = tmp_path / "lists.parquet"
    res = runner.invoke(
        app,
        ["spark", "recommend", "--model-dir", str(model_dir), "--out", str(lists), "-k", "5",
         "--n-candidates", "30", "--reranker", "dpp", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    frame = pd.read_parquet(lists)
    assert len(frame) == meta["n_users"] and all(len(x) == 5 for x in frame["items"])
    train = pd.read_parquet(model_dir / "train.parquet")
    seen = set(zip(train["user"], train["item"], strict=True))
    assert not any(
        (u, i) in seen for u, row in zip(frame["user"], frame["items"], strict=True) for i in row
    )
    out = tmp_path / "metrics.json"
    res = runner.invoke(
        app,
        ["spark", "evaluate", "--lists", str(lists), "--model-dir", str(model_dir), "-k", "5",
         "--out", str(out), "--max-pairs", "500", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())
    # leave-last-one with min 2 rows: every user with >= 2 rows has one test row
    assert metrics["accuracy"]["users"] == int((log.groupby("uid").size() >= 2).sum())
    assert 0.0 <= metrics["accuracy"]["hr@5"] <= 1.0
    assert 0.0 < metrics["beyond_accuracy"]["item_coverage"] <= 1.0
    assert np.isfinite(metrics["beyond_accuracy"]["ilad"])


def test_spark_cli_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["spark", "train", "--data", "ml-100k", "--out", str(tmp_path / "m"),
                              "--model", "nope"])  # fmt: skip
    assert res.exit_code == 2
    assert "divrec: error: unknown Spark model 'nope'" in res.output
    res = runner.invoke(app, ["spark", "recommend", "--model-dir", str(tmp_path), "--out",
                              str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 2 and "no meta.json" in res.output
    res = runner.invoke(app, ["spark", "train", "--data", "ml-100k", "--out", str(tmp_path / "m"),
                              "--model", "ials", "--param", "factors=0"])  # fmt: skip
    assert res.exit_code == 2 and "factors must be >= 1" in res.output
    assert not (tmp_path / "m").exists()
