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


def _one_line_error(res, *fragments):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("divrec: error: "), res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _fake_model_dir(path, test=True):
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"n_users": 3, "n_items": 4, "dataset": "x"}))
    names = ["train", "item_vectors", "user_vectors", "users", "items"] + (["test"] if test else [])
    for name in names:
        (path / f"{name}.parquet").mkdir()
    return path


def test_spark_bad_input_is_one_line_before_any_session(tmp_path, monkeypatch):
    """Ordinary bad input used to start Spark and end with exit 1 and 56–365 lines of traces
    (or, for an unwritable --out, fail only after the work): now one line, exit 2, no JVM."""
    import divrec.cli.spark as cli_spark

    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(cli_spark, "_session", no_session)
    runner = CliRunner()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    out = tmp_path / "m"
    train = ["spark", "train", "--out", str(out)]
    _one_line_error(runner.invoke(app, [*train, "--data", str(folder)]), "without Parquet")
    _one_line_error(runner.invoke(app, [*train, "--data", str(tmp_path / "nope.csv")]), "no such")
    fake = tmp_path / "fake.parquet"
    fake.write_text("a,b\n1,2\n")
    _one_line_error(runner.invoke(app, [*train, "--data", str(fake)]), "not a Parquet file")
    res = runner.invoke(app, [*train, "--data", "ml-100k", "--master", "bogus://x"])
    _one_line_error(res, "--master: not a Spark master URL")
    res = runner.invoke(app, [*train, "--data", "ml-100k", "--shuffle-partitions", "0"])
    _one_line_error(res, "--shuffle-partitions must be >= 1")
    assert not out.exists()

    model = _fake_model_dir(tmp_path / "model")
    ev = ["spark", "evaluate", "--model-dir", str(model)]
    _one_line_error(runner.invoke(app, [*ev, "--lists", str(tmp_path / "none")]), "--lists")
    _one_line_error(runner.invoke(app, [*ev, "--lists", str(fake)]), "not a Parquet file")
    _one_line_error(runner.invoke(app, [*ev, "--lists", str(folder)]), "without Parquet")
    rec = ["spark", "recommend", "--model-dir", str(model), "--out", str(tmp_path / "l")]
    _one_line_error(runner.invoke(app, [*rec, "--master", "nope"]), "--master")
    no_test = _fake_model_dir(tmp_path / "m2", test=False)
    res = runner.invoke(
        app, ["spark", "evaluate", "--model-dir", str(no_test), "--lists", str(fake)]
    )
    _one_line_error(res, "no test.parquet")


def test_spark_unwritable_out_fails_before_any_session(tmp_path, monkeypatch):
    """An --out that cannot be written used to fail after the work (20 s, 17 s)."""
    import divrec.cli.spark as cli_spark

    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(cli_spark, "_session", no_session)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # nothing can be created below a file (even as root)
    runner = CliRunner()
    res = runner.invoke(app, ["spark", "train", "--data", "ml-100k", "--out", str(blocker / "m")])
    _one_line_error(res, "cannot write there")
    lists = tmp_path / "l.parquet"
    pd.DataFrame({"user": [0], "items": [[1, 2]]}).to_parquet(lists)
    model = _fake_model_dir(tmp_path / "model")
    ev = ["spark", "evaluate", "--model-dir", str(model), "--lists", str(lists), "--out"]
    _one_line_error(runner.invoke(app, [*ev, str(blocker / "x.json")]), "cannot write there")
    _one_line_error(runner.invoke(app, [*ev, str(tmp_path)]), "is a directory")
    rec = ["spark", "recommend", "--model-dir", str(model), "--out", str(blocker / "lists")]
    _one_line_error(runner.invoke(app, rec), "cannot write there")


def test_spark_errors_are_one_line(tmp_path, monkeypatch):
    """A pyspark / py4j error (a JVM failure) is one line naming the Java exception."""
    import divrec.cli.spark as cli_spark

    class Py4JJavaError(Exception):
        pass

    Py4JJavaError.__module__ = "py4j.protocol"
    text = (
        "An error occurred while calling o42.parquet.\n: org.apache.spark.SparkException: "
        "[FAILED_READ_FILE] could not read footer. SQLSTATE: KD001\n\tat org.apache...\n"
    )

    def broken(*args, **kwargs):
        raise Py4JJavaError(text)

    monkeypatch.setattr(cli_spark, "_session", broken)
    res = CliRunner().invoke(app, ["spark", "train", "--data", "ml-100k", "--out",
                                   str(tmp_path / "m")])  # fmt: skip
    _one_line_error(res, "Spark: SparkException: [FAILED_READ_FILE] could not read footer")
    assert "SQLSTATE" not in res.output
    assert not (tmp_path / "m").exists()


def test_spark_train_folder_is_written_whole_or_not_at_all(spark, tmp_path, monkeypatch):
    """A failure (or signal) while writing the model folder used to leave a folder with only
    users.parquet; now nothing is left (temporary sibling renamed into place at the end)."""
    from divrec.spark import train as spark_train

    rng = np.random.default_rng(1)
    path = tmp_path / "log.csv"
    pd.DataFrame({"user_id": rng.integers(0, 20, 200), "item_id": rng.integers(0, 30, 200)}).to_csv(
        path, index=False
    )
    out = tmp_path / "model"

    def boom(self):
        raise ValueError("disk full")

    monkeypatch.setattr(spark_train.SparkALS, "user_vectors", boom)
    args = ["spark", "train", "--data", str(path), "--out", str(out), "--param", "factors=4",
            "--param", "iterations=1", "--param", "blocks=1", "--master", "local[2]", "--no-ui",
            "--shuffle-partitions", "2"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "disk full" in res.output, res.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]
    monkeypatch.undo()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} >= {"meta.json", "users.parquet", "user_vectors.parquet"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "model"]


def test_spark_new_bad_input_is_one_line_before_any_session(tmp_path, monkeypatch):
    """Re-ranker, item-table, memory-budget and table-column errors: one line, exit 2, no
    Spark session (they used to surface after 30–56 s of start-up, or as executor traces)."""
    import divrec.cli.spark as cli_spark

    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(cli_spark, "_session", no_session)
    runner = CliRunner()
    log = tmp_path / "log.csv"
    pd.DataFrame({"uid": [1, 2], "mid": [3, 4], "stars": [5, 1]}).to_csv(log, index=False)
    train = ["spark", "train", "--data", str(log), "--out", str(tmp_path / "m")]
    res = runner.invoke(app, [*train, "--columns", "user=uid,item=mid", "--protocol", "temporal"])
    _one_line_error(res, "--protocol temporal needs timestamps")
    res = runner.invoke(app, [*train, "--columns", "user=uid,item=mid", "--min-rating", "3"])
    _one_line_error(res, "--min-rating needs a rating column")
    res = runner.invoke(app, [*train, "--columns", "user=uid,item=movie"])
    _one_line_error(res, "missing column(s) ['movie']", "['uid', 'mid', 'stars']")
    res = runner.invoke(app, [*train, "--columns", "user=uid,item=mid", "--conf", "x=1"])
    _one_line_error(res, "--conf 'x=1': expected spark.<name>=<value>")

    model = _fake_model_dir(tmp_path / "model")
    rec = ["spark", "recommend", "--model-dir", str(model), "--out", str(tmp_path / "l")]
    _one_line_error(runner.invoke(app, [*rec, "--block", "0"]), "--block must be >= 1")
    _one_line_error(runner.invoke(app, [*rec, "--task-memory", "lots"]), "--task-memory")
    _one_line_error(runner.invoke(app, [*rec, "--task-memory", "0m"]), "--task-memory")
    for name in ("category-cap", "pdpp"):
        res = runner.invoke(app, [*rec, "--reranker", name])
        _one_line_error(res, f"--reranker {name} needs item categories: --items")
    _one_line_error(runner.invoke(app, [*rec, "--reranker", "rt-dpp"]), "rt-dpp", "use pdpp")
    res = runner.invoke(app, [*rec, "--reranker", "category-cap", "--items", str(tmp_path / "x")])
    _one_line_error(res, "--data", "no such file")
    items = tmp_path / "items.csv"
    pd.DataFrame({"mid": [3, 4], "genres": ["a|b", "c"]}).to_csv(items, index=False)
    res = runner.invoke(app, [*rec, "--reranker", "category-cap", "--items", str(items)])
    _one_line_error(res, "--items", "missing column(s) ['item_id', 'categories']")
    res = runner.invoke(app, [*rec, "--items", str(items), "--item-columns", "movie=mid"])
    _one_line_error(res, "--item-columns entry 'movie=mid'")
    _one_line_error(runner.invoke(app, [*rec, "--item-columns", "item=mid"]), "needs --items")
    ev = ["spark", "evaluate", "--model-dir", str(model), "--lists", str(tmp_path / "none")]
    _one_line_error(runner.invoke(app, [*ev, "-k", "0"]), "-k must be a positive")
    _one_line_error(runner.invoke(app, ev), "--lists", "no such file")


def test_parse_bytes():
    from divrec.cli.spark import _parse_bytes

    assert _parse_bytes("256m", "x") == 256 * 2**20
    assert _parse_bytes("2G", "x") == 2 * 2**30
    assert _parse_bytes("1024", "x") == 1024
    assert _parse_bytes("3kb", "x") == 3072


def test_block_for_budget_by_hand():
    from divrec.spark.candidates import block_bytes, block_for_budget

    # 8 bytes per score over 1,000 items + 24 bytes per candidate dimension (50 × 4)
    assert block_bytes(1, 1000, 50, 4) == 8 * 1000 + 24 * 50 * 4
    assert block_for_budget(1000, 50, 4, 10 * 12_800) == 10
    assert block_for_budget(1000, 50, 4, 10 * 12_800 - 1) == 9
    assert block_for_budget(10**6, 100, 64, 1) == 1
