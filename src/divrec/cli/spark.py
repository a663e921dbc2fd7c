"""`divrec spark train|recommend|evaluate`: the Spark path from the command line.

Importing this module imports neither pyspark nor torch (commands import them when run).
Every stage writes one log line on stderr (`[spark] <stage> … (seconds)`); Spark's own UI
(`--ui`, default on, http://localhost:4040 for a local master) shows the progress of each job.

Layout of a model directory written by `train`:
    meta.json                     model name, parameters, universe size, the split
    users.parquet, items.parquet  id maps (index, id)
    train.parquet, test.parquet   the split (LOG_SCHEMA rows; test only with --protocol)
    user_vectors.parquet          (user, vector)
    item_vectors.parquet          (item, vector)
    item_categories.parquet       (item, category), when the dataset has item categories

Nothing of user size passes through the driver: id maps are DataFrames (`IdMap`), the
re-rankers' per-user state is joined to the users (`divrec.spark.rerank`); only item-side
arrays (vectors, categories, popularity: `(n_items, ·)`) are collected and broadcast.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from divrec.cli._common import guarded

__all__ = ["app"]

app = typer.Typer(
    help="Train, recommend and evaluate on Apache Spark (needs the `spark` extra and Java 17+).",
    no_args_is_help=True,
)

PROTOCOLS = ("none", "temporal", "leave-last-one", "random")

MasterOpt = Annotated[
    str, typer.Option("--master", help="Spark master URL: local[*], spark://host:7077, yarn.")
]
UiOpt = Annotated[bool, typer.Option("--ui/--no-ui", help="Start the Spark web UI.")]
PartOpt = Annotated[
    int | None, typer.Option("--shuffle-partitions", help="spark.sql.shuffle.partitions.")
]
ConfOpt = Annotated[
    list[str] | None,
    typer.Option("--conf", help="A Spark setting key=value (repeatable), e.g. "
                 "spark.executor.memory=8g."),
]  # fmt: skip


class _Stages:
    """Prints one line per finished stage on stderr."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, stage: str, detail: str = "") -> None:
        now = time.perf_counter()
        extra = f" {detail}" if detail else ""
        typer.echo(f"[spark] {stage}{extra} ({now - self.t0:.1f}s)", err=True)
        self.t0 = now


#: Spark master URLs: local, local[N], local[*], local[N,F], local-cluster[N,C,M], and the
#: cluster managers' schemes
_MASTER = re.compile(
    r"local(\[(\*|[1-9]\d*)(,\s*[1-9]\d*)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
    r"|yarn|(spark|k8s|mesos)://\S+"
)


def _quiet_python_warnings() -> None:
    """pyspark warns (FutureWarning) about pandas 3 on import and on every conversion."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark(\.|$)")
    warnings.filterwarnings("ignore", message=r".*PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message=r"The copy keyword")


def _check_session_options(
    master: str, partitions: int | None, conf: list[str] | None = None
) -> dict[str, str]:
    """Fails (one line) on a master URL Spark cannot use, a bad partition count or a
    `--conf` entry that is not `spark.*=value`; returns the `--conf` settings."""
    if not _MASTER.fullmatch(master.strip()):
        raise ValueError(
            f"--master: not a Spark master URL: {master!r} (local[*], local[N], "
            "spark://host:7077, yarn, k8s://...)"
        )
    if partitions is not None and partitions < 1:
        raise ValueError(f"--shuffle-partitions must be >= 1, got {partitions}")
    settings = {}
    for entry in conf or []:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip().startswith("spark.") or not value.strip():
            raise ValueError(f"--conf {entry!r}: expected spark.<name>=<value>")
        settings[key.strip()] = value.strip()
    return settings


_SIZE = re.compile(r"(\d+)\s*([kmgt]?)i?b?", re.IGNORECASE)


def _parse_bytes(text: str, option: str) -> int:
    """`256m`, `2g`, `1048576` → bytes (powers of 1024); one line if not a positive size."""
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{option} must be a positive size like 256m or 2g, got {text!r}")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**power


def _header(path: Path) -> list[str] | None:
    """The column names of a local Parquet / CSV / TSV table (None when unknown)."""
    if "://" in str(path):
        return None
    suffixes = [x.lower() for x in path.suffixes]
    try:
        if path.is_dir() or ".parquet" in suffixes:
            import pyarrow.parquet as pq

            files = [path] if path.is_file() else sorted(_parquet_files(path))
            return list(pq.read_schema(files[0]).names) if files else None
        import csv
        import gzip

        opener = gzip.open if ".gz" in suffixes else open
        sep = "\t" if ".tsv" in suffixes else ","
        with opener(path, "rt", newline="") as fh:
            return next(csv.reader(fh, delimiter=sep), None)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _check_table(data: str, columns: str | None, min_rating, protocol: str) -> None:
    """A table's columns against `--columns`, `--min-rating` and `--protocol`, before Spark."""
    from divrec.data.datasets import DATASETS, TableSpec
    from divrec.data.tabular import ColumnMap

    if data in DATASETS:
        return
    cmap = ColumnMap(**dict(TableSpec.parse(columns, min_rating).columns))
    if min_rating is not None and cmap.rating is None:
        raise ValueError("--min-rating needs a rating column (--columns rating=<column>)")
    if protocol == "temporal" and cmap.timestamp is None:
        raise ValueError("--protocol temporal needs timestamps (--columns timestamp=<column>)")
    header = _header(Path(data))
    if header is None:
        return
    wanted = [c for c in (cmap.user, cmap.item, cmap.rating, cmap.timestamp, cmap.session) if c]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ValueError(f"--data {data}: missing column(s) {missing}; the file has {header}")


def _parquet_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_"))]


def _check_parquet(path: Path, option: str) -> None:
    """Fails (one line) unless `path` is a Parquet file or a folder of Parquet files."""
    if "://" in str(path):  # hdfs://, s3a://: Spark checks it
        return
    if not path.exists():
        raise ValueError(f"{option} {path}: no such file or folder")
    files = [path] if path.is_file() else _parquet_files(path)
    if not files:
        raise ValueError(f"{option} {path}: a folder without Parquet files")
    try:
        with open(files[0], "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot read it ({err.strerror})") from None
    if magic != b"PAR1":
        raise ValueError(f"{option} {path}: not a Parquet file")


def _check_data(data: str) -> None:
    """`--data`: a known dataset, a remote URL, a Parquet file or folder, or a text file."""
    from divrec.data.datasets import DATASETS

    if data in DATASETS or "://" in data:
        return
    path = Path(data)
    if not path.exists():
        raise ValueError(f"--data {data}: no such file (or unknown dataset; known: "
                         f"{', '.join(DATASETS)})")  # fmt: skip
    suffixes = [x.lower() for x in path.suffixes]
    if path.is_dir() or ".parquet" in suffixes:
        _check_parquet(path, "--data")
    elif not os.access(path, os.R_OK):
        raise ValueError(f"--data {data}: cannot read it (permission denied)")


def _check_writable(path: Path, option: str) -> None:
    """Fails (one line) before any work when `path` (a file or a folder to create) cannot be
    written: its nearest existing ancestor must take new entries."""
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ValueError(f"{option} {path}: cannot write there")
    try:  # a read-only mount passes os.access
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".divrec-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot write there ({err.strerror})") from None


def _check_model_dir(model_dir: Path, *names: str) -> dict:
    """The `meta.json` of a `divrec spark train` folder holding `names`; one line if not."""
    if not (model_dir / "meta.json").is_file():
        raise ValueError(f"{model_dir} is not a `divrec spark train` directory (no meta.json)")
    try:
        meta = json.loads((model_dir / "meta.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{model_dir}/meta.json: unreadable ({type(err).__name__})") from None
    keys = ("n_users", "n_items", "dataset")
    if not isinstance(meta, dict) or any(key not in meta for key in keys):
        raise ValueError(f"{model_dir}/meta.json: not a `divrec spark train` meta file")
    for name in names:
        if not (model_dir / name).exists():
            raise ValueError(f"{model_dir} has no {name}")
    return meta


def _spark_error(err: BaseException) -> str | None:
    """One line of a pyspark / py4j error (the Java exception's message), else None."""
    mod = type(err).__module__ or ""
    if not (mod.startswith(("pyspark", "py4j"))):
        return None
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:  # Py4JJavaError: "An error occurred while calling o42.parquet." + ": ..."
        if ln.startswith(": "):
            lines = [ln[2:]]
            break
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"\s*SQLSTATE: \w+\.?$", "", text)
    return text.removeprefix("org.apache.spark.").strip()


def spark_guarded(fn):
    """`guarded` for the Spark commands: pyspark / py4j errors become one line and exit
    code 2 too; Python-side warnings of pyspark are silenced."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            _quiet_python_warnings()
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                line = _spark_error(err)
                if line is None:
                    raise
                raise ValueError(f"Spark: {line}") from None

    return guarded(wrapper)


def _session(master: str, ui: bool, partitions: int | None, conf: dict | None = None):
    from divrec.spark.session import spark_session

    progress = "true" if sys.stderr.isatty() else "false"  # no progress bar in a log file
    return spark_session(
        master, "divrec", shuffle_partitions=partitions, ui=ui, quiet=True,
        conf={"spark.ui.showConsoleProgress": progress, **(conf or {})},
    )  # fmt: skip


def _publish(tmp: Path, out: Path) -> None:
    """Moves the finished folder `tmp` to `out` (absent, or an empty folder)."""
    if out.is_dir():
        out.rmdir()  # empty (checked before the work)
    tmp.rename(out)


def _temporary_sibling(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; an output is an ordinary folder
    return tmp


def _read_log(spark, data: str, columns: str | None, min_rating: float | None, home):
    from divrec.data.datasets import DATASETS, TableSpec, load_dataset
    from divrec.data.home import data_home
    from divrec.spark.data import from_interactions, read_table

    if data in DATASETS:
        loaded = load_dataset(data, data_home(home))
        log = from_interactions(spark, loaded)
        if loaded.item_categories is not None:
            from divrec.spark.rerank import categories_from_matrix

            log.extras["item_categories"] = categories_from_matrix(
                spark, loaded.item_categories, loaded.category_names
            )
        return log
    from divrec.data.tabular import ColumnMap

    spec = TableSpec.parse(columns, min_rating)
    return read_table(spark, data, ColumnMap(**dict(spec.columns)), min_rating=min_rating)


def _split(log, protocol: str, seed: int):
    from divrec.spark import data as sd

    if protocol == "none":
        return log, None
    if protocol == "temporal":
        s = sd.temporal_split(log, 0.2)
    elif protocol == "leave-last-one":
        s = sd.leave_last_one(log, validation=False, min_interactions=2)
    else:
        s = sd.random_holdout(log, 0.2, seed=seed)
    return s.train, s.test


@app.command()
@spark_guarded
def train(
    data: Annotated[str, typer.Option("--data", help="ml-100k, ml-1m or a CSV/TSV/Parquet path.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to create.")],
    model: Annotated[str, typer.Option("--model", help="ials, p2p, n2p or hi-rt.")] = "ials",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Model hyperparameter name=value.")
    ] = None,
    protocol: Annotated[
        str, typer.Option("--protocol", help="none, temporal, leave-last-one or random.")
    ] = "none",
    columns: Annotated[
        str | None, typer.Option("--columns", help="role=column pairs for a file.")
    ] = None,
    min_rating: Annotated[float | None, typer.Option("--min-rating")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data_home: Annotated[Path | None, typer.Option("--data-home")] = None,
    master: MasterOpt = "local[*]",
    ui: UiOpt = True,
    shuffle_partitions: PartOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Reads a log, optionally splits it, trains a model on Spark and writes Parquet."""
    from divrec.params import parse_pairs
    from divrec.pipeline.spec import StageSpec
    from divrec.spark.models import check_model, make_model

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    spec = StageSpec(model, parse_pairs(param, "--param"))
    check_model(spec)  # no pyspark import yet: bad input fails fast
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty")
    settings = _check_session_options(master, shuffle_partitions, conf)
    _check_data(data)
    _check_table(data, columns, min_rating, protocol)
    _check_writable(out, "--out")
    estimator = make_model(spec)
    stage = _Stages()
    spark = _session(master, ui, shuffle_partitions, settings)
    stage("session", f"master={master}")
    log = _read_log(spark, data, columns, min_rating, data_home)
    stage("read", f"{log.name}: {log.n_users} users, {log.n_items} items")
    train_log, test_log = _split(log, protocol, seed)
    train_log = train_log.with_df(train_log.df.cache())
    stage("split", protocol)
    estimator.fit(train_log)
    stage("fit", model)
    tmp = _temporary_sibling(out)  # written whole, then renamed into place
    try:
        _write_model(spark, tmp, log, train_log, test_log, estimator, model, protocol)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stage("write", str(out))


def _write_model(spark, out: Path, log, train_log, test_log, estimator, model, protocol):
    """Writes the model folder's files into `out` (a temporary folder)."""
    from divrec.params import to_json_value

    log.user_map.frame.write.parquet(str(out / "users.parquet"))  # (index, id), distributed
    log.item_map.frame.write.parquet(str(out / "items.parquet"))
    categories = log.extras.get("item_categories")
    if categories is not None:
        categories.pairs.write.parquet(str(out / "item_categories.parquet"))
    train_log.df.write.parquet(str(out / "train.parquet"))
    if test_log is not None:
        test_log.df.write.parquet(str(out / "test.parquet"))
    estimator.user_vectors().write.parquet(str(out / "user_vectors.parquet"))
    import numpy as np
    import pandas as pd

    items = estimator.factor_view().item_vectors
    frame = pd.DataFrame({"item": np.arange(items.shape[0], dtype=np.int64), "vector": list(items)})
    spark.createDataFrame(frame).write.parquet(str(out / "item_vectors.parquet"))
    meta = {
        "model": model,
        "params": to_json_value(estimator.get_params()),
        "n_users": log.n_users,
        "n_items": log.n_items,
        "protocol": protocol,
        "dataset": log.name,
        "n_categories": None if categories is None else categories.n_categories,
        "category_names": None if categories is None else categories.names,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=str))


def _load_items(spark, model_dir: Path):
    import numpy as np

    frame = spark.read.parquet(str(model_dir / "item_vectors.parquet")).toPandas()
    frame = frame.sort_values("item")
    return np.stack(frame["vector"].to_numpy())


def _item_columns(text: str | None) -> tuple[str, str]:
    """`--item-columns item=<col>,categories=<col>` → the two column names."""
    cols = {"item": "item_id", "categories": "categories"}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        role, sep, col = part.partition("=")
        if not sep or role.strip() not in cols or not col.strip():
            raise ValueError(
                f"--item-columns entry {part!r} must be item=<column> or categories=<column>"
            )
        cols[role.strip()] = col.strip()
    return cols["item"], cols["categories"]


def _check_reranker(rr, name: str, categories: bool) -> None:
    """Re-rankers that cannot run on Spark, or not without item categories: one line."""
    from divrec.rerank.baselines import CategoryCap
    from divrec.rerank.personalized import PersonalizedDPP, RealtimePersonalizedDPP

    if isinstance(rr, RealtimePersonalizedDPP):
        raise ValueError(
            "--reranker rt-dpp reads a live propensity tracker (serving state) and does not "
            "run on Spark; use pdpp (per-user category entropy)"
        )
    needs: tuple[type, ...] = (CategoryCap, PersonalizedDPP)
    try:
        from divrec.rerank.calibration import CalibratedReranker

        needs += (CalibratedReranker,)
    except ImportError:  # pragma: no cover - a tree without it
        pass
    if isinstance(rr, needs) and not categories:
        raise ValueError(
            f"--reranker {name} needs item categories: --items <table> (or a model trained on "
            "a dataset with categories)"
        )


@app.command()
@spark_guarded
def recommend(
    model_dir: Annotated[Path, typer.Option("--model-dir", help="A `divrec spark train` output.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet output of the lists.")],
    k: Annotated[int, typer.Option("--k", "-k", help="List length.")] = 10,
    n_candidates: Annotated[int, typer.Option("--n-candidates", help="Retrieval depth.")] = 100,
    reranker: Annotated[
        str | None, typer.Option("--reranker", help="dpp, mmr, ssd, pdpp, ... (registry).")
    ] = None,
    rerank_param: Annotated[list[str] | None, typer.Option("--rerank-param")] = None,
    items: Annotated[
        Path | None,
        typer.Option("--items", help="Item table (Parquet/CSV/TSV) with item categories."),
    ] = None,
    item_columns: Annotated[
        str | None,
        typer.Option(
            "--item-columns",
            help="item=<col>,categories=<col> of --items (default item_id, categories).",
        ),
    ] = None,  # fmt: skip
    multi_sep: Annotated[
        str, typer.Option("--multi-sep", help="Separator of several categories in one cell.")
    ] = "|",
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen/--keep-seen")] = True,
    block: Annotated[
        int | None,
        typer.Option("--block", help="Users per matrix product (default: from --task-memory)."),
    ] = None,
    task_memory: Annotated[
        str,
        typer.Option(
            "--task-memory",
            help="Memory budget of one task's scoring block "
            "(block × (8·n_items + 24·N·d) bytes), e.g. 256m.",
        ),
    ] = "256m",  # fmt: skip
    search: Annotated[
        str,
        typer.Option(
            "--search",
            help="Candidates by exact blocked products, a faiss index per task, or auto "
            "(faiss once an exact block within --task-memory holds < 64 users).",
        ),
    ] = "exact",  # fmt: skip
    index_param: Annotated[
        list[str] | None,
        typer.Option(
            "--index-param",
            help="faiss index setting name=value (kind=flat|hnsw|ivf|ivf-sq8|auto, nprobe, "
            "nlist, m, ef_search, target_recall, ...).",
        ),
    ] = None,  # fmt: skip
    master: MasterOpt = "local[*]",
    ui: UiOpt = True,
    shuffle_partitions: PartOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Batch u2i top-k for every user (+ a divrec re-ranker per partition), to Parquet.

    The lists carry internal indices (`user`, `items`, `scores`) and the external ids
    (`user_id`, `item_ids`).
    """
    meta = _check_model_dir(model_dir, "item_vectors.parquet", "user_vectors.parquet",
                            "train.parquet", "users.parquet", "items.parquet")  # fmt: skip
    if k < 1 or n_candidates < 1:
        raise ValueError("--k and --n-candidates must be positive")
    if block is not None and block < 1:
        raise ValueError(f"--block must be >= 1, got {block}")
    memory = _parse_bytes(task_memory, "--task-memory")
    if search not in ("exact", "faiss", "auto"):
        raise ValueError(f"--search must be exact, faiss or auto, got {search!r}")
    if search != "exact":
        from divrec._extras import require

        require("faiss", what=f"--search {search}")
    index = None
    if index_param:
        if search == "exact":
            raise ValueError("--index-param needs --search faiss or auto")
        from divrec.params import parse_pairs
        from divrec.spark.config import FaissSearchConfig

        raw = parse_pairs(index_param, "--index-param")
        index = FaissSearchConfig.from_dict(raw, "--index-param", option="--index-param")
    if out.exists():
        raise ValueError(f"{out} exists")
    settings = _check_session_options(master, shuffle_partitions, conf)
    _check_writable(out, "--out")
    item_col, category_col = _item_columns(item_columns)
    if items is not None:
        _check_data(str(items))
        header = _header(items)
        missing = [c for c in (item_col, category_col) if header is not None and c not in header]
        if missing:
            raise ValueError(f"--items {items}: missing column(s) {missing}; it has {header}")
    elif item_columns is not None:
        raise ValueError("--item-columns needs --items")
    stored = (model_dir / "item_categories.parquet").exists()
    rr = None
    if reranker is not None:
        from divrec.params import parse_pairs
        from divrec.pipeline.spec import StageSpec

        spec = StageSpec(reranker, parse_pairs(rerank_param, "--rerank-param"))
        rr = spec.build("reranker", option="--rerank-param")
        _check_reranker(rr, reranker, items is not None or stored)
    elif rerank_param:
        raise ValueError("--rerank-param needs --reranker")
    stage = _Stages()
    spark = _session(master, ui, shuffle_partitions, settings)
    stage("session", f"master={master}")
    from divrec.evaluation.batch import FactorView
    from divrec.spark.candidates import u2i

    item_vectors = _load_items(spark, model_dir)
    users = spark.read.parquet(str(model_dir / "user_vectors.parquet"))
    train_df = spark.read.parquet(str(model_dir / "train.parquet"))
    stage("load", f"{item_vectors.shape[0]} items")
    fitted = None
    if rr is not None:
        from divrec.spark import rerank as srr

        categories = None
        if items is not None:
            from divrec.spark.data import IdMap

            item_map = IdMap(spark.read.parquet(str(model_dir / "items.parquet")), meta["n_items"])
            categories = srr.read_item_categories(
                spark, items, item_col, category_col, item_map, multi_sep=multi_sep or None
            )
        elif stored:
            pairs = spark.read.parquet(str(model_dir / "item_categories.parquet"))
            names = meta.get("category_names")
            categories = srr.ItemCategories(
                pairs, int(meta.get("n_categories") or 0), None if names is None else tuple(names)
            )
        fitted = srr.fit_reranker(
            rr, train_df, meta["n_items"], item_vectors, categories=categories
        )
        stage("fit re-ranker", reranker)
    seen = train_df if exclude_seen else None
    lists = u2i(spark, users, FactorView(None, item_vectors), n_candidates, k=k, seen=seen,
                reranker=fitted, block=block, memory=memory, search=search,
                index=index)  # fmt: skip
    lists = _with_external_ids(spark, lists, model_dir)
    tmp = _temporary_sibling(out)
    try:  # Spark writes a folder of part files: written whole, then renamed into place
        lists.write.mode("overwrite").parquet(str(tmp))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stage("u2i" + (f" + {reranker}" if rr else ""), str(out))


def _with_external_ids(spark, lists, model_dir: Path):
    """`lists` with `user_id` (a shuffle join with the users' map) and `item_ids` (the item
    map is item side: an `(n_items,)` broadcast, as the item vectors)."""
    import numpy as np
    import pandas as pd

    from divrec.spark.data import IdMap

    users = IdMap(spark.read.parquet(str(model_dir / "users.parquet")), 0)
    items = spark.read.parquet(str(model_dir / "items.parquet"))
    kind = dict(items.dtypes)["id"]
    frame = items.toPandas().sort_values("index")
    ids = spark.sparkContext.broadcast(frame["id"].to_numpy())

    def external(batches):
        table = ids.value
        for part in batches:
            out = []
            for row in part["items"]:
                row = np.asarray(row, dtype=np.int64)
                got = table[np.maximum(row, 0)].tolist()
                out.append([g if r >= 0 else None for g, r in zip(got, row, strict=True)])
            yield part.assign(item_ids=pd.Series(out, index=part.index, dtype=object))

    schema = f"user long, items array<long>, scores array<float>, item_ids array<{kind}>"
    lists = lists.mapInPandas(external, schema)
    joined = users.external(lists, "user", "user_id")
    return joined.select("user", "items", "scores", "user_id", "item_ids")


@app.command()
@spark_guarded
def evaluate(
    lists: Annotated[Path, typer.Option("--lists", help="Parquet lists (`recommend` output).")],
    model_dir: Annotated[Path, typer.Option("--model-dir", help="Holds test.parquet.")],
    k: Annotated[list[int] | None, typer.Option("--k", "-k", help="Cut-off(s).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the metrics JSON here.")] = None,
    max_pairs: Annotated[int, typer.Option("--max-pairs", help="Between-user pairs.")] = 100_000,
    master: MasterOpt = "local[*]",
    ui: UiOpt = True,
    shuffle_partitions: PartOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Accuracy and beyond-accuracy metrics of Parquet lists, computed on Spark."""
    ks = tuple(k or [10])
    if min(ks) < 1:
        raise ValueError(f"-k must be a positive list length, got {min(ks)}")
    if max_pairs < 0:
        raise ValueError(f"--max-pairs must be >= 0, got {max_pairs}")
    meta = _check_model_dir(model_dir, "train.parquet", "item_vectors.parquet")
    if not (model_dir / "test.parquet").exists():
        raise ValueError(f"{model_dir} has no test.parquet (train with --protocol)")
    _check_parquet(lists, "--lists")
    settings = _check_session_options(master, shuffle_partitions, conf)
    if out is not None:
        if out.is_dir():
            raise ValueError(f"--out {out}: is a directory, expected a file path")
        _check_writable(out, "--out")
    stage = _Stages()
    spark = _session(master, ui, shuffle_partitions, settings)
    stage("session", f"master={master}")
    from divrec.spark.metrics import accuracy, beyond_accuracy

    recs = spark.read.parquet(str(lists))
    truth = spark.read.parquet(str(model_dir / "test.parquet"))
    train_df = spark.read.parquet(str(model_dir / "train.parquet"))
    result = {"accuracy": accuracy(recs, truth, ks)}
    stage("accuracy", " ".join(f"hr@{c}={result['accuracy'][f'hr@{c}']:.4f}" for c in ks))
    pop = train_df.select("user", "item").distinct().groupBy("item").count().toPandas()
    import numpy as np

    popularity = np.zeros(meta["n_items"], dtype=np.float64)
    popularity[pop["item"].to_numpy()] = pop["count"].to_numpy()
    result["beyond_accuracy"] = beyond_accuracy(
        spark, recs, meta["n_items"], k=max(ks), item_vectors=_load_items(spark, model_dir),
        item_popularity=popularity, n_users=meta["n_users"], max_pairs=max_pairs,
    )  # fmt: skip
    stage("beyond-accuracy")
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(text)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
    sys.stdout.write(text + "\n")
