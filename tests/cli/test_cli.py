"""The command line: outputs on real runs, and one-line errors with exit code 2 on bad input
(with nothing written)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from divrec.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def ratings_csv(tmp_path):
    rows = ["uid,mid,stars,ts"]
    # 12 users × 8 items, user u rates items u % 8 .. (u % 8) + 5 (mod 8); stars vary.
    for u in range(12):
        for j in range(6):
            rows.append(f"u{u},m{(u + j) % 8},{1 + (u + j) % 5},{1000 + 10 * u + j}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


COLS = "user=uid,item=mid,rating=stars,timestamp=ts"


def test_data_info_on_csv(ratings_csv):
    result = _run("data", "info", ratings_csv, "--columns", COLS, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["users"], info["items"], info["interactions"]) == (12, 8, 72)
    assert (info["time_min"], info["time_max"]) == (1000, 1115)


def test_evaluate_on_csv_writes_json(ratings_csv, tmp_path):
    out = tmp_path / "res" / "eval.json"
    result = _run(
        "evaluate", "--dataset", ratings_csv, "--columns", COLS, "--model", "popularity",
        "--protocol", "leave-last-one", "-k", 2, "--bootstrap", 20, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    rows = {(r["metric"], r["k"]): r for r in payload["aggregate"]}
    assert rows[("hr", 2)]["n"] == 12  # every user has a held-out item
    assert 0.0 <= rows[("hr", 2)]["mean"] <= 1.0


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("uid,mid\nu1,m1\n", ["ratings.csv", "stars"]),  # missing column
        ("", ["ratings.csv", "empty"]),  # empty file
        ("uid,mid,stars,ts\nu1,m1,5,1\n,m2,4,2\n", ["ratings.csv", "line 3"]),  # NaN id
        ("uid,mid,stars,ts\nu1,m1,5,1\nu2,m2,great,2\n", ["ratings.csv", "line 3", "great"]),
        ("uid,mid,stars,ts\nu1,m1,5,1\nu2,m2,1e40,2\n", ["ratings.csv", "line 3", "out of range"]),
        ("uid,mid,mid,stars,ts\nu1,m1,m2,5,1\n", ["ratings.csv", "duplicate column", "'mid'"]),
        ("uid,mid,stars,ts\nu1,m1,5,1\n", ["ratings:", "no test rows"]),  # one row
    ],
)
def test_bad_csv_is_one_line_exit_2_and_writes_nothing(tmp_path, content, fragments):
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    out = tmp_path / "out.json"
    result = _run("evaluate", "--dataset", path, "--columns", COLS, "-o", out)
    _one_line_error(result, *fragments)
    assert not out.exists()


def test_no_positives_is_an_error(ratings_csv, tmp_path):
    result = _run("data", "info", ratings_csv, "--columns", COLS, "--min-rating", 9)
    _one_line_error(result, "ratings.csv", "no positives")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["evaluate", "--model", "nope"], "unknown model 'nope'"),
        (["evaluate", "--param", "nofactor=3"], "has no parameter(s) ['nofactor']"),
        (["evaluate", "--param", "broken"], "not of the form name=value"),
        (["evaluate", "--protocol", "weird"], "unknown protocol 'weird'"),
        (["evaluate", "-k", "0"], "-k must be a positive list length"),
        (["evaluate", "--param", "factors=abc"], "factors='abc'"),
        (["evaluate", "--model", "tr", "--param", "hidden=abc"], "a comma-separated list of int"),
        (["evaluate", "--rerank", "dpp", "--rerank-param", "theta=abc"], "--rerank-param theta"),
        (["evaluate", "--bootstrap", "-1"], "--bootstrap must be >= 0"),
        (["evaluate", "--seed", str(2**40)], "--seed must be in"),
        (["evaluate", "--seed", "-1"], "--seed must be in"),
        (["evaluate", "--max-users", "-5"], "--max-users must be a positive"),
        (["evaluate", "--max-users", "0"], "--max-users must be a positive"),
        (["evaluate", "--ranker-param", "k=1"], "--ranker-param needs --ranker"),
        (["data", "info", "no-such-set"], "unknown dataset 'no-such-set'"),
        (["benchmark", "--model", "nope"], "unknown model(s) ['nope']"),
        (["evaluate", "--rerank", "nope"], "unknown re-ranker 'nope'"),
        (["evaluate", "--rerank", "dpp", "--rerank-param", "thet=1"], "no parameter(s) ['thet']"),
        (["evaluate", "--rerank-param", "theta=1"], "--rerank-param needs --rerank"),
        (["evaluate", "--rerank", "mmr", "--candidates", "0"], "--candidates must be positive"),
        (["data", "info", "x.csv", "--columns", "usr=a"], "--columns entry 'usr=a'"),
    ],
)
def test_bad_arguments(args, fragment, tmp_path):
    result = _run(*args, *(["--out", tmp_path / "b"] if args[0] == "benchmark" else []))
    _one_line_error(result, fragment)
    assert not (tmp_path / "b").exists()


def test_benchmark_writes_report_json_and_plot(data_home, tmp_path):
    out = tmp_path / "bench"
    result = _run(
        "benchmark", "--dataset", "ml-100k", "--protocol", "leave-last-one", "--model",
        "popularity", "--model", "ials", "--bootstrap", 50, "-k", 10, "--out", out,
        "--data-home", data_home,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy_diversity.png", "report.md", "results.json",
    ]  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"popularity", "ials"}
    assert (out / "accuracy_diversity.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| popularity" in report and "| ials" in report
    assert "Pareto front" in report


def test_help_lists_commands():
    result = _run("--help")
    assert result.exit_code == 0
    for cmd in ("evaluate", "benchmark", "data"):
        assert cmd in result.output


def test_evaluate_with_reranker(ratings_csv, tmp_path):
    out = tmp_path / "eval.json"
    result = _run(
        "evaluate", "--dataset", ratings_csv, "--columns", COLS, "--model", "popularity",
        "--protocol", "leave-last-one", "-k", 3, "--bootstrap", 10, "--rerank", "mmr",
        "--rerank-param", "lambda_=0.5", "--candidates", 6, "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["rerank"] == "mmr"
    stored = payload["pipeline"]  # the resolved spec: every stage's full config
    assert stored["reranker"] == {
        "name": "mmr",
        "params": {"lambda_": 0.5, "relevance_scaling": "minmax", "precision": "input"},
    }  # fmt: skip
    assert stored["n_candidates"] == 6 and stored["retriever"]["name"] == "popularity"
    reranker = payload["params"]["reranker"]  # parameters are JSON values, not repr strings
    assert reranker == {
        "class": "MMR",
        "params": {"lambda_": 0.5, "relevance_scaling": "minmax", "precision": "input"},
    }
    assert payload["params"]["n_candidates"] == 6


def test_evaluate_pipeline_file_is_the_flags_spec(ratings_csv, tmp_path):
    """`--pipeline FILE.toml` and the stage flags make the same spec: same numbers, and the
    stored (resolved) spec read back as a file gives them again."""
    common = ["evaluate", "--dataset", ratings_csv, "--columns", COLS, "--protocol",
              "leave-last-one", "-k", 3, "--bootstrap", 10]  # fmt: skip
    flags = tmp_path / "flags.json"
    result = _run(*common, "--model", "popularity", "--rerank", "dpp", "--rerank-param",
                  "theta=0.3", "--candidates", 6, "-o", flags)  # fmt: skip
    assert result.exit_code == 0, result.output
    toml = tmp_path / "p.toml"
    toml.write_text(
        'n_candidates = 6\n[retriever]\nname = "popularity"\n'
        '[reranker]\nname = "dpp"\nparams = {theta = 0.3}\n'
    )
    from_file = tmp_path / "file.json"
    result = _run(*common, "--pipeline", toml, "-o", from_file)
    assert result.exit_code == 0, result.output
    a, b = json.loads(flags.read_text()), json.loads(from_file.read_text())
    assert a["pipeline"] == b["pipeline"] and a["pipeline"]["reranker"]["params"]["theta"] == 0.3
    assert a["aggregate"] == b["aggregate"]
    stored = tmp_path / "stored.json"
    stored.write_text(json.dumps(b["pipeline"]))
    again = tmp_path / "again.json"
    assert _run(*common, "--pipeline", stored, "-o", again).exit_code == 0
    assert json.loads(again.read_text())["aggregate"] == a["aggregate"]


@pytest.mark.parametrize(
    ("text", "extra", "fragment"),
    [
        ('[retriever]\nname = "nope"\n', [], "unknown model 'nope'"),
        ('[retriever]\nname = "ials"\nparams = {factors = "x"}\n', [], "factors='x'"),
        ('[retriever]\nname = "ials"\nfoo = 1\n', [], "unknown key 'retriever.foo'"),
        ("[retriever\n", [], "pipeline TOML"),
        ('[retriever]\nname = "ials"\n', ["--model", "bpr"], "--pipeline replaces"),
        ('[retriever]\nname = "ials"\n', ["--candidates", "5"], "drop --candidates"),
    ],
)
def test_bad_pipeline_file(tmp_path, text, extra, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text)
    out = tmp_path / "o.json"
    _one_line_error(_run("evaluate", "--pipeline", path, *extra, "-o", out), fragment)
    assert not out.exists()


def test_missing_pipeline_file(tmp_path):
    _one_line_error(_run("evaluate", "--pipeline", tmp_path / "none.toml"), "none.toml")


def test_param_message_names_parameter_and_type(tmp_path):
    result = _run("evaluate", "--param", "factors=abc")
    _one_line_error(result, "--param factors='abc'", "expected int")


def test_output_path_is_checked_before_any_work(ratings_csv, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    args = ["evaluate", "--dataset", ratings_csv, "--columns", COLS, "--model", "popularity",
            "--protocol", "leave-last-one"]  # fmt: skip
    _one_line_error(_run(*args, "-o", folder), "is a directory")
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob(".adir*"))
    _one_line_error(_run(*args, "-o", "/proc/divrec-x.json"), "cannot write there")


def test_split_without_test_rows_is_an_error(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("user_id,item_id\n" + "".join(f"u{i},m{i % 3}\n" for i in range(6)))
    out = tmp_path / "o.json"
    result = _run("evaluate", "--dataset", path, "--model", "popularity", "-p", "ncf", "-o", out)
    assert result.exit_code == 2, result.output
    assert "test" in result.output
    assert not out.exists()


def _main_subprocess(*args, timeout=120):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "divrec.cli.main", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_usage_errors_are_one_line():
    proc = _main_subprocess("evaluate", "-k", "abc")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("divrec: error:"), proc.stderr
    assert "-k" in lines[0] and "integer" in lines[0]


def test_cli_and_data_info_import_no_torch(data_home):
    import subprocess
    import sys

    code = (
        "import sys; from divrec.cli.main import main; "
        "rc = main(['data', 'info', 'ml-100k', '--json']); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'sklearn' not in sys.modules, 'sklearn imported'"
    )
    env = {**__import__("os").environ, "DIVREC_DATA_HOME": str(data_home)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("protocol", ["ncf", "leave-last-one", "temporal", "random"])
def test_rerank_changes_results_under_every_protocol(protocol, data_home, tmp_path):
    """The bug this guards: a sampled protocol used to score with the retriever only, so a
    re-ranker never ran. A relevance-free MMR (λ = 0) must change HR and ILAD."""
    base = ["evaluate", "--dataset", "ml-100k", "--model", "popularity", "-p", protocol,
            "--bootstrap", 0, "--data-home", data_home]  # fmt: skip
    plain, ranked = tmp_path / "plain.json", tmp_path / "ranked.json"
    assert _run(*base, "-o", plain).exit_code == 0
    result = _run(*base, "--rerank", "mmr", "--rerank-param", "lambda_=0.0", "-o", ranked)
    assert result.exit_code == 0, result.output

    def means(path):
        rows = json.loads(path.read_text())["aggregate"]
        return {(r["metric"], r["k"]): r["mean"] for r in rows}

    a, b = means(plain), means(ranked)
    assert a[("hr", 10)] != b[("hr", 10)]
    assert a[("ilad", 10)] != b[("ilad", 10)]


def test_sigterm_during_benchmark_leaves_nothing(data_home, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "bench"
    env = {**os.environ, "DIVREC_DATA_HOME": str(data_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "divrec.cli.main", "benchmark", "--dataset", "ml-100k",
         "--protocol", "leave-last-one", "--model", "ials", "--model", "bpr", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(6.0)  # inside the benchmark (imports done, models fitting)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130: the handler ran (the normal case); 0: it finished first; −15: the signal came
    # before the handler was installed (during imports) or after it was taken down at exit.
    assert proc.returncode in (130, 0, -signal.SIGTERM), err
    if proc.returncode == 130:
        assert "interrupted" in err
    # nothing half-written in any case: no output folder, or the whole set from this run (the
    # signal landed after the files were published: see tests/test_atomic.py for the move)
    if out.exists():
        assert sorted(p.name for p in out.iterdir()) == [
            "accuracy_diversity.png", "report.md", "results.json"
        ]  # fmt: skip
        assert set(json.loads((out / "results.json").read_text())["models"]) == {"ials", "bpr"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_benchmark_runs_a_ranking_stage_pipeline(data_home, tmp_path):
    """A pipeline with a ranker and no re-ranker (CDM re-scoring iALS's candidates) is fitted
    on the shared retriever, and its results row rebuilds the same pipeline: the stored spec
    (every stage's full config) built, fitted and evaluated by hand gives the same numbers."""
    from divrec.evaluation.benchmark import BenchmarkConfig, _eval_config, metric, run_benchmark
    from divrec.evaluation.harness import evaluate
    from divrec.pipeline.spec import PipelineSpec, StageSpec
    from divrec.splitting.named import make_split

    cdm = {"dim": 4, "hidden": (8,), "max_epochs": 1, "cdm_epochs": 1, "n_candidates": 20}
    spec = PipelineSpec(StageSpec("ials"), StageSpec("cdm", cdm), None, 20, label="ials→cdm")
    config = BenchmarkConfig(
        dataset="ml-100k", protocol="leave-last-one", models=("ials",), ks=(10,),
        n_bootstrap=20, max_users=60, pipelines=(spec,),
    )  # fmt: skip
    results = run_benchmark(config, tmp_path / "b", data_home, progress=False)
    entry = results["pipelines"]["ials→cdm"]
    stored = entry["spec"]
    assert stored["ranker"]["name"] == "cdm" and "reranker" not in stored
    assert stored["ranker"]["params"]["cdm_epochs"] == 1 and "lr" in stored["ranker"]["params"]
    assert stored["retriever"]["params"] == results["models"]["ials"]["stage"]["params"]
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["pipelines"]["ials→cdm"]["spec"] == stored
    split = make_split("ml-100k", "leave-last-one", data_home, seed=0)
    pipe = PipelineSpec.from_dict(stored).build(seed=0).fit(split.train)
    by_hand = evaluate(pipe, split, _eval_config(config, "full"), None, False)
    assert metric(entry, "full", "ndcg", 10)[0] == pytest.approx(by_hand.mean("ndcg", 10))


def test_benchmark_config_checks_its_pipelines():
    from divrec.evaluation.benchmark import (
        BENCHMARK_STAGES,
        DEFAULT_PIPELINES,
        BenchmarkConfig,
    )
    from divrec.pipeline.spec import PipelineSpec, StageSpec

    ials = StageSpec("ials")
    with pytest.raises(ValueError, match="needs a ranker or a re-ranker"):
        BenchmarkConfig(models=("ials",), pipelines=(PipelineSpec(ials, label="x"),))
    with pytest.raises(ValueError, match="unknown ranker"):
        BenchmarkConfig(models=("ials",), pipelines=(PipelineSpec(ials, "nope", label="x"),))
    with pytest.raises(ValueError, match="has no parameter"):
        bad = PipelineSpec(ials, None, StageSpec("dpp", {"thet": 1}), label="x")
        BenchmarkConfig(models=("ials",), pipelines=(bad,))
    twice = PipelineSpec(ials, None, "dpp")
    with pytest.raises(ValueError, match="two pipelines are named"):
        BenchmarkConfig(models=("ials",), pipelines=(twice, twice))
    # the default grid: the benchmark's TotalRecall stage, one label per pipeline
    config = BenchmarkConfig(pipelines=DEFAULT_PIPELINES)
    assert config.models[-1] == BENCHMARK_STAGES["tr"]
    assert all(p.retriever in (ials, BENCHMARK_STAGES["tr"]) for p in DEFAULT_PIPELINES)
    assert len({p.name for p in DEFAULT_PIPELINES}) == len(DEFAULT_PIPELINES) == 15
    assert config.to_dict()["pipelines"][0] == {
        "n_candidates": 100, "label": "ials→mmr λ=0.7", "retriever": {"name": "ials"},
        "reranker": {"name": "mmr", "params": {"lambda_": 0.7}},
    }  # fmt: skip


@pytest.mark.parametrize("after", [0.0, 0.15])
def test_interrupt_during_startup_is_one_line_and_130(data_home, after):
    """Ctrl-C while the command is still importing (before `run` takes over) says
    `divrec: interrupted` and exits with 130, with no traceback (it was −2 and 34 lines).

    The signal is sent once the process has begun loading numpy (its extension module shows
    in `/proc/PID/maps`), plus `after` seconds: the hook is set before any import of
    `divrec.cli.main`, so this is inside the imports. A signal that lands before the
    interpreter reaches divrec's own code (the console script's first import, ~50 ms under
    load) gets Python's own traceback and −2; no package code can run earlier than that
    without a `.pth` hook in every process of the environment, which divrec does not install.
    A fixed 0.05 s delay hit that window once on the CI machine."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = Path(sys.executable).parent / "divrec"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "divrec.cli.main"]
    env = {**os.environ, "DIVREC_DATA_HOME": str(data_home)}
    proc = subprocess.Popen(
        [*cmd, "data", "info", "ml-100k"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    maps = Path(f"/proc/{proc.pid}/maps")
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if "_multiarray_umath" in maps.read_text():
                    break
            except OSError:
                pass
            time.sleep(0.002)
        time.sleep(after)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:  # finished before the signal (a very fast machine)
        return
    assert proc.returncode == 130, err
    assert err.strip() == "divrec: interrupted", err


@pytest.mark.parametrize("value", ["0", "-3", "nan"])
def test_ials_factors_out_of_range_is_refused_before_work(value, tmp_path):
    """`--param factors=0` (and other nonsense) is refused by the stage config, one line."""
    out = tmp_path / "r.json"
    result = _run("evaluate", "--dataset", "ml-100k", "--model", "ials", "--param",
                  f"factors={value}", "--output", out)  # fmt: skip
    _one_line_error(result, "factors")
    assert not out.exists()
