"""Model directories: what `divrec train` writes and `divrec serve` loads.

A model directory holds

* ``pipeline.npz``: the fitted `Pipeline` (retriever, optional ranker and re-ranker; the
  persistence convention of `divrec.persist`, no pickle);
* ``rerank-<method>.npz``: one fitted re-ranker per `method=` of the service (``dpp``,
  ``mmr``, ``ssd`` and the configured one) in the pipeline's similarity space, and
  ``propensity.npz``: a fitted `RealtimePersonalizedDPP` whose tracker gives θ_u for
  ``diversity=auto`` (WeChat Eq. 2–3);
* ``users.json`` / ``items.json``: external ids in internal-index order, items with title and
  category names; ``arrays.npz``: the reference SVD item vectors (ILAD, similar items) and
  the training popularity counts (cold start);
* ``manifest.json``: format version, package versions, the config, the resolved
  `PipelineSpec` (every stage's full config), the training data fingerprint and a SHA-256
  of every file (checked on load).

The pipeline is the config's `PipelineSpec` (`TrainConfig.pipeline`), built by
`PipelineSpec.build(seed)` and fitted once; every other `method=` is the same spec with
another re-ranker, fitted on the same retriever and ranker (`Pipeline.use_fitted`). On load,
`ModelBundle.pipelines` holds one fitted `Pipeline` per method (and ``"none"``: no
re-ranker), all sharing the one fitted retriever and ranker, and
`ModelBundle.cold_start` the same re-rankers behind the training popularity order (users
with no history yet); the service answers every request with one of them.

The directory is written under a temporary name and renamed into place, so a crash never
leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.data.query import Query
from divrec.pipeline import Pipeline, PipelineSpec
from divrec.retrieval.base import Recommender
from divrec.serve.config import ConfigError, TrainConfig

__all__ = [
    "FORMAT",
    "ID_PATTERN",
    "METHODS",
    "ColdStartPopularity",
    "ModelBundle",
    "check_ids",
    "data_fingerprint",
    "method_spec",
    "share_fitted",
    "train_model_dir",
]

FORMAT = "divrec-model-dir/1"
#: the one id rule of `divrec train` and `divrec serve`: every user, item and event id is 1 to
#: 128 ASCII letters, digits or ``_ . : @ -`` (no spaces, no ``/``: ids travel in URL paths)
ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"
_ID = re.compile(ID_PATTERN)
#: re-rankers always fitted for the `method=` request parameter
METHODS = ("dpp", "mmr", "ssd")


def data_fingerprint(data) -> str:
    """SHA-256 of a training log (ids, values, timestamps), hex."""
    h = hashlib.sha256()
    for arr in (data.users, data.items, data.values):
        h.update(np.ascontiguousarray(arr).tobytes())
    if data.timestamps is not None:
        h.update(np.ascontiguousarray(data.timestamps).tobytes())
    h.update("\x00".join(map(str, data.user_ids)).encode())
    h.update("\x01".join(map(str, data.item_ids)).encode())
    return h.hexdigest()


def check_ids(ids, what: str) -> None:
    """Raises `ConfigError` naming the first id of `ids` that breaks `ID_PATTERN`.

    Args:
        ids: external ids (any values; compared as strings).
        what: what they are, for the message ("user id", "item id").
    """
    for i in ids:
        if not _ID.match(str(i)):
            raise ConfigError(
                f"config: data.dataset: {what} {str(i)[:60]!r} breaks the id rule "
                f"{ID_PATTERN} (ids travel in URL paths of divrec serve)"
            )


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above `path`."""
    p = path.absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("divrec", "numpy", "scipy", "torch", "implicit", "faiss-cpu"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    import platform

    out["python"] = platform.python_version()
    return out


# ---------------------------------------------------------------------------- training
def _load_data(config: TrainConfig, home):
    if config.dataset == "synthetic":
        from divrec.data.synthetic import SyntheticConfig, make_synthetic

        params = dict(config.synthetic)
        params.setdefault("seed", config.seed)
        try:
            syn = SyntheticConfig(**params)
        except TypeError as err:
            raise ConfigError(f"config: data.synthetic: {str(err).splitlines()[0]}") from None
        except ValueError as err:
            raise ConfigError(f"config: data.synthetic: {str(err).splitlines()[0]}") from None
        data = make_synthetic(syn).interactions
    else:
        from divrec.data.datasets import TableSpec, load_dataset

        table = TableSpec(tuple(config.columns.items()), config.min_rating)
        data = load_dataset(config.dataset, home, table=table)
        if config.min_rating is not None and config.dataset in ("ml-100k", "ml-1m"):
            data = data.select(data.values >= config.min_rating)
    if data.nnz == 0:
        raise ConfigError("config: data.dataset has no interactions to train on")
    return data


def _item_titles(config: TrainConfig, data, home) -> list[str]:
    ids = [str(i) for i in data.item_ids]
    titles = {}
    try:
        if config.dataset == "ml-100k":
            import pandas as pd

            from divrec.data.home import find_file

            frame = pd.read_csv(
                find_file("ml-100k/u.item", home), sep="|", header=None, encoding="latin-1"
            )
            titles = {str(i): str(t) for i, t in zip(frame[0], frame[1], strict=True)}
        elif config.dataset == "ml-1m":
            from divrec.data.movielens import read_ml1m_movies

            frame = read_ml1m_movies(home)
            titles = {str(i): str(t) for i, t in zip(frame.movie_id, frame.title, strict=True)}
    except (OSError, ValueError):
        titles = {}
    if config.dataset == "synthetic":
        titles = {i: f"Item {i}" for i in ids}
    return [titles.get(i, i) for i in ids]


def _items_file(path: str, ids: list[str]) -> tuple[list[str], list[list[str]]]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"config: data.items: {str(err).splitlines()[0]}") from None
    for col in ("item", "title"):
        if col not in frame.columns:
            raise ConfigError(f"config: data.items: file {path} has no column {col!r}")
    titles = dict(zip(frame["item"], frame["title"], strict=True))
    genres = {}
    if "genres" in frame.columns:
        pairs = zip(frame["item"], frame["genres"], strict=True)
        genres = {i: [g for g in s.split("|") if g] for i, s in pairs}
    return [titles.get(i, i) for i in ids], [genres.get(i, []) for i in ids]


def method_spec(spec: PipelineSpec, method: str) -> PipelineSpec:
    """The pipeline answering `method=`: `spec` with that re-ranker (``"none"``: without).

    The configured re-ranker keeps its parameters; another method takes its defaults.
    """
    if method == "none":
        return spec.with_stage("reranker", None)
    if spec.reranker is not None and spec.reranker.name == method:
        return spec
    return spec.with_stage("reranker", method)


def share_fitted(
    retriever: Recommender,
    reranker: Any,
    n_candidates: int,
    user_items: sp.csr_matrix,
    ranker: Recommender | None = None,
    item_vectors: np.ndarray | None = None,
) -> Pipeline:
    """A `Pipeline` of stages that are all fitted already (nothing is refitted).

    `Pipeline.use_fitted` wires the fitted retriever and ranker (it would refit a re-ranker,
    so the pipeline is wired without one and the fitted `reranker` is attached after).

    Args:
        retriever: a fitted retriever (shared, not copied).
        reranker: a fitted re-ranker, or None.
        n_candidates: N.
        user_items: the training matrix (`Pipeline.use_fitted` reads only its shape).
        ranker: a fitted ranker, or None.
        item_vectors: the pipeline's `item_vectors` argument (kept for `repr`/saving).
    """
    pipe = Pipeline(retriever, None, n_candidates, item_vectors=item_vectors, ranker=ranker)
    pipe.use_fitted(user_items)
    pipe.reranker = reranker
    return pipe


class ColdStartPopularity(Recommender):
    """The service's retriever for users with no history yet: the training popularity order.

    Every request gets the items by decreasing `log(1 + training count)` (ties: the lower item
    index); a fresh history (the anonymous request's items, when the model cannot answer a
    history) is excluded like any history. The service builds it from a model directory's
    interaction counts (`from_counts`); `fit` counts the matrix's entries per item instead.
    It is not written to the model directory.

    Attributes:
        log_counts_: `(n_items,)` float32 `log(1 + count)`.
    """

    supports_history = True

    @classmethod
    def from_counts(cls, counts: np.ndarray, user_items: sp.csr_matrix) -> ColdStartPopularity:
        """A ready stage from `(n_items,)` training counts and the training matrix."""
        model = cls()
        model.user_items_ = user_items
        model.n_users_, model.n_items_ = user_items.shape
        model.log_counts_ = np.log1p(np.asarray(counts, dtype=np.float64)).astype(np.float32)
        return model

    def _fit(self, matrix: sp.csr_matrix, data) -> None:
        self.log_counts_ = np.log1p(np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel())
        self.log_counts_ = self.log_counts_.astype(np.float32)

    def _score_all(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.log_counts_, (users.shape[0], self.n_items_))

    def _score_history(self, query: Query) -> np.ndarray:
        return self._score_all(query.users)


def train_model_dir(
    config: TrainConfig,
    out: str | Path,
    data_home=None,
    progress: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Fits the configured pipeline and writes a model directory at `out`.

    Args:
        config: the validated config.
        out: the model directory to create (replaced atomically when `force`).
        data_home: where named datasets live.
        progress: show a progress bar.
        force: replace an existing directory.

    Returns:
        The manifest.

    Raises:
        ConfigError / ValueError: one line naming the problem; nothing is written.
    """
    from rich.progress import Progress

    from divrec import registry
    from divrec.metrics.reference import reference_item_vectors
    from divrec.params import ParamError

    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    parent = out.parent if str(out.parent) else Path(".")
    base = _writable_ancestor(parent)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: cannot write there ({base} is not a writable folder)")
    if config.items is not None and not Path(config.items).is_file():
        raise ConfigError(f"config: data.items: file {config.items} not found")

    spec = config.pipeline
    for role, stage in spec.stages().items():  # a bad value: one line naming the stage key
        try:
            stage.build(role, config.seed, option=f"{role}.params")
        except ParamError as err:
            msg = str(err).splitlines()[0]
            raise ConfigError(
                f"config: {msg}" if msg.startswith(f"{role}.") else f"config: {role}: {msg}"
            ) from None
    try:
        pipeline = spec.build(config.seed)
        resolved = spec.resolved(config.seed)
        methods = {
            m: method_spec(spec, m).reranker.build("reranker", config.seed, option=m)
            for m in METHODS
            if not (spec.reranker is not None and spec.reranker.name == m)
        }
    except ParamError as err:  # SpecError included: "<role>: <problem>"
        raise ConfigError(f"config: {str(err).splitlines()[0]}") from None
    default_method = spec.reranker.name if spec.reranker else "dpp"
    if pipeline.reranker is not None:
        methods[default_method] = pipeline.reranker
    propensity = registry.create("re-ranker", "rt-dpp")

    steps = 6 + len(methods)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("loading data", total=steps)
        data = _load_data(config, data_home)
        check_ids(data.user_ids, "user id")
        check_ids(data.item_ids, "item id")
        if spec.n_candidates > data.n_items:
            raise ConfigError(
                f"config: 'pipeline.n_candidates' is {spec.n_candidates} but the data has "
                f"{data.n_items} items (at most {data.n_items})"
            )
        if config.items is not None:  # read before fitting: a bad file fails in seconds
            items_meta = _items_file(config.items, [str(i) for i in data.item_ids])
        bar.update(task, advance=1, description=f"fitting {spec.name}")
        try:
            pipeline.fit(data)
        except ValueError as err:
            raise ConfigError(f"config: retriever: {str(err).splitlines()[0]}") from None
        bar.update(task, advance=1, description="fitting re-rankers")
        fitted = {}
        for name, rr in methods.items():
            if rr is not pipeline.reranker:  # the configured one is fitted with the pipeline
                Pipeline(
                    pipeline.retriever, rr, spec.n_candidates, ranker=pipeline.ranker
                ).use_fitted(data)
            fitted[name] = rr
            bar.update(task, advance=1)
        Pipeline(
            pipeline.retriever, propensity, spec.n_candidates, ranker=pipeline.ranker
        ).use_fitted(data)
        bar.update(task, advance=1, description="reference vectors")
        reference = reference_item_vectors(data, seed=config.seed)
        bar.update(task, advance=1, description="writing")
        ids = [str(i) for i in data.item_ids]
        if config.items is not None:
            titles, genres = items_meta
        else:
            titles = _item_titles(config, data, data_home)
            genres = [[] for _ in ids]
            if data.item_categories is not None:
                cats = data.item_categories.tocsr()
                names = data.category_names or tuple(
                    f"c{c}" for c in range(data.item_categories.shape[1])
                )
                genres = [
                    [names[c] for c in cats.indices[cats.indptr[i] : cats.indptr[i + 1]]]
                    for i in range(len(ids))
                ]
        items = [
            {"id": i, "title": t, "categories": g}
            for i, t, g in zip(ids, titles, genres, strict=True)
        ]
        popularity = np.bincount(data.items, minlength=data.n_items).astype(np.float64)

        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a model dir is an ordinary folder
            pipeline.save(tmp / "pipeline.npz")
            for name, rr in fitted.items():
                rr.save(tmp / f"rerank-{name}.npz")
            propensity.save(tmp / "propensity.npz")
            (tmp / "users.json").write_text(json.dumps([str(u) for u in data.user_ids]))
            (tmp / "items.json").write_text(json.dumps(items))
            np.savez(tmp / "arrays.npz", reference=reference, popularity=popularity)
            manifest = {
                "format": FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "versions": _versions(),
                "config": config.source,
                "pipeline": resolved.to_dict(),
                "data": {
                    "dataset": config.dataset,
                    "fingerprint": data_fingerprint(data),
                    "n_users": int(data.n_users),
                    "n_items": int(data.n_items),
                    "n_interactions": int(data.nnz),
                },
                "methods": sorted(fitted),
                "default_method": default_method,
                "files": {
                    p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in sorted(tmp.iterdir())
                },
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bar.update(task, advance=1)
    return manifest


def _replace_dir(tmp: Path, out: Path) -> None:
    """Renames the finished `tmp` to `out`, replacing an existing `out`.

    The old directory is moved aside under a sibling name, the new one renamed into place,
    then the old one removed; if the second rename fails the old one is moved back.
    """
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():  # a file the process cannot remove: say so rather than leave it silently
        raise ValueError(f"{out} replaced, but the old copy {old} could not be removed")


# ---------------------------------------------------------------------------- loading
@dataclass
class ModelBundle:
    """A loaded model directory (read-only after loading).

    Attributes:
        pipeline: the fitted `Pipeline` of the config (``pipeline.npz``).
        rerankers: method → fitted re-ranker (the configured method's is the pipeline's).
        pipelines: method (and ``"none"``) → the fitted `Pipeline` answering it: the
            configured one is `pipeline`, the others share its fitted retriever and ranker.
        cold_start: method (and ``"none"``) → a `Pipeline` of `ColdStartPopularity` and the
            same fitted re-ranker, for users with no history yet.
    """

    path: Path
    manifest: dict[str, Any]
    pipeline: Any
    rerankers: dict[str, Any]
    propensity: Any
    user_ids: list[str]
    items: list[dict[str, Any]]
    reference: np.ndarray
    popularity: np.ndarray
    user_index: dict[str, int]
    item_index: dict[str, int]
    item_categories: sp.csr_matrix
    category_names: list[str]
    unit_vectors: np.ndarray
    pipelines: dict[str, Any] = field(default_factory=dict)
    cold_start: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def default_method(self) -> str:
        return str(self.manifest.get("default_method", "dpp"))

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Loads and verifies a model directory (file hashes, format); no unpickling.

        Raises:
            ValueError: one line naming the directory and the problem (a missing, damaged
                or foreign-version file included).
        """
        path = Path(path)
        try:
            return cls._load(path)
        except ValueError as err:
            raise ValueError(str(err).splitlines()[0] if str(err) else repr(err)) from None
        except Exception as err:  # noqa: BLE001 - a damaged file fails in its own way
            what = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"{path}: damaged model directory ({what})") from None

    @classmethod
    def _load(cls, path: Path) -> ModelBundle:
        import divrec

        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise ValueError(f"{path} is not a model directory (no manifest.json)")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError(f"{mpath}: not valid JSON") from None
        if not isinstance(manifest, dict):
            raise ValueError(f"{mpath}: must be a JSON object, got {type(manifest).__name__}")
        if manifest.get("format") != FORMAT:
            raise ValueError(
                f"{mpath}: unknown format {manifest.get('format')!r} (this divrec reads {FORMAT})"
            )
        files = manifest.get("files")
        methods = manifest.get("methods")
        if not isinstance(files, dict) or not isinstance(methods, list):
            raise ValueError(f"{mpath}: 'files' and 'methods' missing or of the wrong type")
        if not isinstance(manifest.get("data"), dict) or "fingerprint" not in manifest["data"]:
            raise ValueError(f"{mpath}: 'data.fingerprint' missing")
        if manifest.get("default_method") not in methods:
            raise ValueError(f"{mpath}: 'default_method' is not one of 'methods'")
        for name in ["pipeline.npz", "propensity.npz", "users.json", "items.json", "arrays.npz"] + [
            f"rerank-{m}.npz" for m in methods
        ]:
            if name not in files:
                raise ValueError(f"{mpath}: file {name} is not in the manifest")
        for name, digest in files.items():
            f = path / name
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise ValueError(f"{path}: file {name} is missing or does not match the manifest")
        pipeline = divrec.load(path / "pipeline.npz")
        rerankers = {m: divrec.load(path / f"rerank-{m}.npz") for m in manifest["methods"]}
        if not isinstance(pipeline, Pipeline):
            raise ValueError(f"{path}: pipeline.npz holds a {type(pipeline).__name__}")
        configured = manifest.get("default_method")
        if pipeline.reranker is not None and configured in rerankers:
            rerankers[configured] = pipeline.reranker  # the same fitted state, one object
        propensity = divrec.load(path / "propensity.npz")
        try:
            user_ids = json.loads((path / "users.json").read_text(encoding="utf-8"))
            items = json.loads((path / "items.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError(f"{path}: users.json or items.json is not valid JSON") from None
        if not (
            isinstance(user_ids, list)
            and isinstance(items, list)
            and all(isinstance(it, dict) and "id" in it for it in items)
        ):
            raise ValueError(f"{path}: users.json or items.json is not a list of ids / items")
        with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
            reference = np.asarray(arrays["reference"], dtype=np.float32)
            popularity = np.asarray(arrays["popularity"], dtype=np.float64)
        names: list[str] = []
        pos: dict[str, int] = {}
        rows, cols = [], []
        for i, item in enumerate(items):
            for g in item["categories"]:
                if g not in pos:
                    pos[g] = len(names)
                    names.append(g)
                rows.append(i)
                cols.append(pos[g])
        cats = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(items), len(names))
        )
        vecs = np.asarray(rerankers[manifest["default_method"]].item_vectors_, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        pipelines, cold_start = _method_pipelines(pipeline, rerankers, popularity)
        return cls(
            path=path,
            manifest=manifest,
            pipeline=pipeline,
            rerankers=rerankers,
            propensity=propensity,
            user_ids=user_ids,
            items=items,
            reference=reference,
            popularity=popularity,
            user_index={u: i for i, u in enumerate(user_ids)},
            item_index={it["id"]: i for i, it in enumerate(items)},
            item_categories=cats,
            category_names=names,
            unit_vectors=unit,
            pipelines=pipelines,
            cold_start=cold_start,
        )


def _method_pipelines(
    pipeline: Pipeline, rerankers: dict[str, Any], popularity: np.ndarray
) -> tuple[dict[str, Pipeline], dict[str, Pipeline]]:
    """Method → fitted `Pipeline` (the model's and the cold-start ones), stages shared."""
    n, ui = pipeline.n_candidates, pipeline.user_items_
    cold = ColdStartPopularity.from_counts(popularity, ui)
    main: dict[str, Pipeline] = {}
    cold_start: dict[str, Pipeline] = {}
    for method, rr in [*rerankers.items(), ("none", None)]:
        if rr is pipeline.reranker:
            main[method] = pipeline
        else:
            main[method] = share_fitted(
                pipeline.retriever, rr, n, ui, pipeline.ranker, pipeline.item_vectors
            )
        cold_start[method] = share_fitted(cold, rr, n, ui)
    return main, cold_start
