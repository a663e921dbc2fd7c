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
* ``manifest.json``: format version, package versions, the config, the training data
  fingerprint and a SHA-256 of every file (checked on load).

The directory is written under a temporary name and renamed into place, so a crash never
leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from divrec.serve.config import ConfigError, TrainConfig

__all__ = ["FORMAT", "METHODS", "ModelBundle", "data_fingerprint", "train_model_dir"]

FORMAT = "divrec-model-dir/1"
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
        from divrec.evaluation.setup import TableSpec, load_dataset

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
    from divrec.pipeline import Pipeline

    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} already exists (use --force to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{out}: cannot write there")

    def make(kind: str, spec, key: str):
        try:
            return registry.create(kind, spec.name, spec.params, seed=config.seed, option=key)
        except ParamError as err:
            raise ConfigError(f"config: {key}: {err}") from None

    retriever = make("model", config.retriever, "retriever")
    ranker = make("ranker", config.ranker, "ranker") if config.ranker else None
    reranker = make("re-ranker", config.reranker, "reranker") if config.reranker else None
    methods = {m: make("re-ranker", type("S", (), {"name": m, "params": {}})(), m) for m in METHODS}
    default_method = config.reranker.name if config.reranker else "dpp"
    if reranker is not None:
        methods[config.reranker.name] = reranker
    propensity = registry.create("re-ranker", "rt-dpp")

    steps = 6 + len(methods)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("loading data", total=steps)
        data = _load_data(config, data_home)
        bar.update(task, advance=1, description=f"fitting {config.retriever.name}")
        pipeline = Pipeline(retriever, reranker, config.n_candidates, ranker=ranker)
        try:
            pipeline.fit(data)
        except ValueError as err:
            raise ConfigError(f"config: retriever: {str(err).splitlines()[0]}") from None
        bar.update(task, advance=1, description="fitting re-rankers")
        fitted = {}
        for name, rr in methods.items():
            if rr is reranker:
                fitted[name] = rr
            else:
                Pipeline(retriever, rr, config.n_candidates, ranker=ranker).use_fitted(data)
                fitted[name] = rr
            bar.update(task, advance=1)
        Pipeline(retriever, propensity, config.n_candidates, ranker=ranker).use_fitted(data)
        bar.update(task, advance=1, description="reference vectors")
        reference = reference_item_vectors(data, seed=config.seed)
        bar.update(task, advance=1, description="writing")
        ids = [str(i) for i in data.item_ids]
        if config.items is not None:
            titles, genres = _items_file(config.items, ids)
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

        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
        try:
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
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bar.update(task, advance=1)
    return manifest


# ---------------------------------------------------------------------------- loading
@dataclass
class ModelBundle:
    """A loaded model directory (read-only after loading)."""

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

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def default_method(self) -> str:
        return str(self.manifest.get("default_method", "dpp"))

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Loads and verifies a model directory (file hashes, format); no unpickling."""
        import divrec

        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise ValueError(f"{path} is not a model directory (no manifest.json)")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{mpath}: unknown format {manifest.get('format')!r}")
        for name, digest in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise ValueError(f"{path}: file {name} is missing or does not match the manifest")
        pipeline = divrec.load(path / "pipeline.npz")
        rerankers = {m: divrec.load(path / f"rerank-{m}.npz") for m in manifest["methods"]}
        propensity = divrec.load(path / "propensity.npz")
        user_ids = json.loads((path / "users.json").read_text())
        items = json.loads((path / "items.json").read_text())
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
        )
