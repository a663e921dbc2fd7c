"""`POST /rerank`: re-ranking a caller's candidates with the service's fitted re-rankers.

A team that already runs retrieval and ranking sends, per request, its candidate item ids and
scores (optionally item vectors or categories, the diversity knob, the method and `k`) and
gets back the diversified list. The re-ranking is the re-ranking stage of the `Pipeline`:
the very re-ranker objects the served pipelines hold are called as
``reranker(query, candidates, k)``, so a list equals the one a direct library call gives
for the same `Query` and `Candidates` (scores are float32 there, as in the pipeline).

Two catalogues answer it (`RerankCatalogue`):

* **model mode** (`RerankCatalogue.from_bundle`): the served model's items, category names,
  item vectors (the re-rankers' fitted similarity space) and re-rankers (``dpp``, ``mmr``,
  ``ssd`` and the configured one). Ids the model does not know are accepted only with
  request `vectors` (a cold item's embedding in the model's space).
* **re-rank-only mode** (`RerankCatalogue.from_table`, ``divrec serve --items items.csv``):
  no trained model at all; an item table with ids, categories and optional vector columns.
  Every registered re-ranker is fitted on it (on an empty interaction log: there is no
  training-time user state, so personalized methods use their defaults). Without vector
  columns an item's vector is its category indicator row (cosine = shared categories).
  Every id must be in the table.

Request vectors or categories (a "request space") run the same class and fitted settings:
a shallow copy of the fitted re-ranker whose per-item arrays are the request's (the stage's
`_stage_inputs` are read from them), per-request inputs (users, histories) computed by the
original. Ties go to the earlier candidate of the request, as in the pipeline.

Bad input is a `RerankError` (HTTP 422, or 413 for a batch over the limit) whose one-line
message names the field and the request index (``requests.3.scores``).
"""

from __future__ import annotations

import copy
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from divrec.data.query import Candidates, Query
from divrec.rerank._base import Reranker
from divrec.serve.constraints import RerankError, constraints_from_json, explanations

__all__ = ["RerankCatalogue", "RerankError", "RerankItem", "parse_rerank", "run_rerank"]

_VEC_COL = re.compile(r"^v(\d+)$")
_ID_COLS = ("item_id", "item", "id")
_CAT_COLS = ("categories", "category", "genres")


@dataclass
class RerankCatalogue:
    """What `/rerank` re-ranks against: item ids, categories, vectors and re-rankers.

    Attributes:
        item_ids: external ids in internal-index order.
        item_index: external id → internal index.
        category_names: category names (internal category code = position).
        primary: `(n_items,)` int64 first category code of each item (−1: none).
        item_categories: per item its category names.
        rerankers: method → fitted re-ranker (model mode: the served pipelines' objects).
        dim: the dimension of the served vector space.
        rerank_only: no trained model (re-rank-only mode).
        default_method: the method of a request without one.
        bundle: the model bundle it was built from (None in re-rank-only mode).
        source: the model directory or the item table.
    """

    item_ids: list[str]
    item_index: dict[str, int]
    category_names: list[str]
    primary: np.ndarray
    item_categories: list[list[str]]
    rerankers: dict[str, Any]
    dim: int
    rerank_only: bool
    default_method: str
    bundle: Any = None
    source: str = ""
    unavailable: dict[str, str] = field(default_factory=dict)
    category_code: dict[str, int] = field(default_factory=dict)
    data: Any = None
    columns: dict[str, list[str]] = field(default_factory=dict)
    lazy_fit: Any = None
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def pending(self, method: Any) -> bool:
        """Whether `method` is a registered re-ranker this catalogue fits on first use."""
        from divrec import registry

        return (
            self.lazy_fit is not None
            and type(method) is str
            and method not in self.rerankers
            and method not in self.unavailable
            and method in registry.names("re-ranker")
        )

    def ensure(self, method: Any) -> bool:
        """Fits `method` now if it is pending (thread-safe); whether it can be used."""
        if type(method) is str and method in self.rerankers:
            return True
        with self._lock:
            if self.pending(method):
                self.rerankers.update(self.lazy_fit({method}, self.unavailable))
        return type(method) is str and method in self.rerankers

    def groups(self, column: str, fail) -> tuple[np.ndarray, list[str]]:
        """`(n_items,)` group codes and names of `column` (constraints' ``group``):
        ``category``, ``category=<name>``, ``popularity`` (`divrec.metrics.groups`) or a
        column of the item table; `fail(message)` for a column the data does not have."""
        from divrec.metrics.groups import item_groups

        if column in self.columns:
            return item_groups(self.data, np.array(self.columns[column], dtype=object))
        try:
            return item_groups(self.data, column)
        except ValueError as err:
            extra = f"; item table columns: {', '.join(self.columns)}" if self.columns else ""
            fail(str(err).splitlines()[0] + extra)
            raise

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def methods(self) -> list[str]:
        """The methods it answers: fitted ones and those fitted on first use."""
        from divrec import registry

        names = set(self.rerankers)
        if self.lazy_fit is not None:
            names |= set(registry.names("re-ranker")) - set(self.unavailable)
        return sorted(names)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_bundle(cls, bundle, every_method: bool | str = True) -> RerankCatalogue:
        """The catalogue of a loaded `ModelBundle`.

        Its re-rankers are the bundle's (shared, not copied: the served pipelines'
        objects); with `every_method`, every other registered re-ranker can be used too:
        fitted on first use (`ensure`; ``"now"``: all of them here), with its default
        parameters, on the model's training matrix (``pipeline.user_items_``, values as
        stored, no timestamps), item categories and the served re-rankers' item and user
        vectors.
        """
        names = list(bundle.category_names)
        cats = [list(it["categories"]) for it in bundle.items]
        default = bundle.default_method
        served = bundle.rerankers[default]
        code, primary = _served_codes(served, cats, names)
        data = _training_log(bundle, cats, code)
        rerankers = dict(bundle.rerankers)
        unavailable: dict[str, str] = {}

        def lazy_fit(names: set[str], unavailable: dict[str, str]) -> dict[str, Any]:
            return _fit_others(data, served, set(rerankers), unavailable, only=names)

        if every_method == "now":
            rerankers.update(_fit_others(data, served, set(rerankers), unavailable))
        return cls(
            item_ids=[it["id"] for it in bundle.items],
            item_index=bundle.item_index,
            category_names=names,
            primary=primary,
            item_categories=cats,
            rerankers=rerankers,
            dim=int(bundle.rerankers[default].item_vectors_.shape[1]),
            rerank_only=False,
            default_method=default,
            bundle=bundle,
            source=str(bundle.path),
            unavailable=unavailable,
            category_code=code,
            data=data,
            lazy_fit=lazy_fit if every_method else None,
        )

    @classmethod
    def from_table(cls, path: str | Path, default_method: str = "dpp") -> RerankCatalogue:
        """Re-rank-only mode: a catalogue from an item table (CSV/TSV, separator sniffed).

        Columns: the id (``item_id``, ``item`` or ``id``), optional categories
        (``categories``, ``category`` or ``genres``; several joined by ``|``) and optional
        vector columns ``v0, v1, …`` (numbers). Every registered re-ranker is fitted on an
        empty interaction log over these items.

        Raises:
            ValueError: one line naming the file and the problem (missing id column, a
                repeated or badly formed id, a non-finite vector value, no vectors and no
                categories).
        """
        import pandas as pd
        import scipy.sparse as sp

        from divrec import registry
        from divrec.data.interactions import Interactions
        from divrec.serve.model_dir import ID_PATTERN

        path = Path(path)
        try:
            frame = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: {str(err).splitlines()[0]}") from None
        id_col = next((c for c in _ID_COLS if c in frame.columns), None)
        if id_col is None:
            raise ValueError(f"{path}: no id column (one of {', '.join(_ID_COLS)})")
        if len(frame) == 0:
            raise ValueError(f"{path}: no items")
        ids = [str(i).strip() for i in frame[id_col]]
        pat = re.compile(ID_PATTERN)
        for row, i in enumerate(ids):
            if not pat.match(i):
                raise ValueError(f"{path}: row {row + 2}: item id {i[:60]!r} breaks {ID_PATTERN}")
        index: dict[str, int] = {}
        for row, i in enumerate(ids):
            if i in index:
                raise ValueError(f"{path}: row {row + 2}: item id {i!r} repeated")
            index[i] = row
        cat_col = next((c for c in _CAT_COLS if c in frame.columns), None)
        cats = [
            [g.strip() for g in s.split("|") if g.strip()] if cat_col else []
            for s in (frame[cat_col] if cat_col else [""] * len(ids))
        ]
        names: list[str] = []
        pos: dict[str, int] = {}
        rows, cols = [], []
        for r, gs in enumerate(cats):
            for g in gs:
                if g not in pos:
                    pos[g] = len(names)
                    names.append(g)
                rows.append(r)
                cols.append(pos[g])
        vec_cols = sorted(
            (int(m.group(1)), c) for c in frame.columns if (m := _VEC_COL.match(str(c)))
        )
        if vec_cols:
            want = list(range(len(vec_cols)))
            if [n for n, _ in vec_cols] != want:
                raise ValueError(f"{path}: vector columns must be v0 … v{len(vec_cols) - 1}")
            try:
                vecs = frame[[c for _, c in vec_cols]].astype(np.float64).to_numpy()
            except ValueError as err:
                raise ValueError(f"{path}: vector columns: {str(err).splitlines()[0]}") from None
            if not np.isfinite(vecs).all():
                r = int(np.argwhere(~np.isfinite(vecs))[0][0])
                raise ValueError(f"{path}: row {r + 2}: vector value is NaN or infinite")
            vecs = vecs.astype(np.float32)
        elif names:
            vecs = np.zeros((len(ids), len(names)), dtype=np.float32)
            vecs[rows, cols] = 1.0
        else:
            raise ValueError(f"{path}: needs categories or vector columns v0, v1, …")
        item_cats = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(ids), len(names))
        )
        empty = Interactions(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.float32),
            np.array([], dtype=object),
            np.array(ids, dtype=object),
            item_categories=item_cats if names else None,
            category_names=tuple(names) if names else None,
            name=path.name,
        )
        rerankers = {}
        unavailable: dict[str, str] = {}
        for name in registry.names("re-ranker"):
            if name == "category-cap" and not names:
                continue  # caps categories: nothing to cap without them
            try:
                rerankers[name] = registry.create("re-ranker", name).fit(empty, item_vectors=vecs)
            except (ValueError, TypeError) as err:  # needs data a table has not
                unavailable[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
        if default_method not in rerankers:
            raise ValueError(f"default method {default_method!r} is not a re-ranker")
        fitted = rerankers[default_method].item_category_  # the first category by code
        primary = np.full(len(ids), -1, dtype=np.int64) if fitted is None else fitted
        skip = {id_col, cat_col, "title"} | {c for _, c in vec_cols}
        columns = {str(c): [str(x) for x in frame[c]] for c in frame.columns if c not in skip}
        return cls(
            item_ids=ids,
            item_index=index,
            category_names=names,
            primary=primary,
            item_categories=cats,
            rerankers=rerankers,
            dim=int(vecs.shape[1]),
            rerank_only=True,
            default_method=default_method,
            source=str(path),
            unavailable=unavailable,
            category_code=dict(pos),
            data=empty,
            columns=columns,
        )


def _served_codes(served, cats: list[list[str]], names: list[str]):
    """Category name → code in the served re-rankers' category space, and `(n_items,)`
    primary codes.

    The served re-rankers hold each item's primary category as a code of the training
    data (`item_category_`); ``items.json`` lists each item's names with its primary first,
    so the pairs (first name, code) give the code of every name that is some item's primary
    category. The other names (never a primary category, so no constraint can match them)
    get codes after those.
    """
    n = len(cats)
    primary = getattr(served, "item_category_", None)
    code: dict[str, int] = {}
    if primary is not None and len(primary) == n:
        primary = np.asarray(primary, dtype=np.int64)
        for c, p in zip(cats, primary.tolist(), strict=True):
            if c and p >= 0:
                code.setdefault(c[0], p)
    else:  # no categories fitted: the names in order of appearance
        code = {g: j for j, g in enumerate(names)}
        primary = np.array([code[c[0]] if c else -1 for c in cats], dtype=np.int64)
    nxt = max(code.values(), default=-1) + 1
    for g in names:
        if g not in code:
            code[g] = nxt
            nxt += 1
    return code, primary


def _training_log(bundle, cats: list[list[str]], code: dict[str, int]):
    """The model's training matrix (``pipeline.user_items_``: values as stored, no
    timestamps) as `Interactions`, item categories in the served code space."""
    import scipy.sparse as sp

    from divrec.data.interactions import Interactions

    ui = bundle.pipeline.user_items_.tocsr()
    n_users, n_items = ui.shape
    item_cats = names = None
    if code:
        width = max(code.values()) + 1
        rows = [i for i, c in enumerate(cats) for _ in c]
        cols = [code[g] for c in cats for g in c]
        item_cats = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_items, width)
        )
        inv = {v: g for g, v in code.items()}
        names = tuple(inv.get(j, f"c{j}") for j in range(width))
    return Interactions(
        np.repeat(np.arange(n_users, dtype=np.int64), np.diff(ui.indptr)),
        ui.indices.astype(np.int64),
        np.asarray(ui.data, dtype=np.float32),
        np.array(bundle.user_ids, dtype=object),
        np.array([it["id"] for it in bundle.items], dtype=object),
        item_categories=item_cats,
        category_names=names,
        name="served model",
    )


def _fit_others(
    train, served, have: set[str], unavailable: dict[str, str], only: set[str] | None = None
) -> dict[str, Any]:
    """Every registered re-ranker not in `have` (or those of `only`), fitted on the model's
    training log; one that cannot be fitted goes to `unavailable` with the reason."""
    from divrec import registry

    out = {}
    for name in registry.names("re-ranker"):
        if name in have or (only is not None and name not in only):
            continue
        if name == "category-cap" and train.item_categories is None:
            unavailable[name] = "the model has no item categories"
            continue
        try:
            out[name] = registry.create("re-ranker", name).fit(
                train, item_vectors=served.item_vectors_, user_vectors=served.user_vectors_
            )
        except (ValueError, TypeError) as err:  # needs data the model has not (a group column)
            unavailable[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
    return out


@dataclass
class RerankItem:
    """One parsed `/rerank` request.

    Attributes:
        ids: the candidates' external ids, in request order.
        index: `(N,)` int64 internal indices (−1: unknown to the catalogue).
        scores: `(N,)` float64 finite scores.
        vectors: `(N, d)` float32 request vectors, or None.
        categories: `(N,)` int64 request primary category codes (−1: none), or None.
        k: list length.
        diversity: the knob in [0, 1], or None (a knob-less method).
        method: the re-ranker name.
        user: internal user index (−1: anonymous).
        history: internal indices of the anonymous user's history.
        constraints: the request's `Constraints` (internal indices), or None.
        explain: return per-item explanations.
    """

    ids: list[str]
    index: np.ndarray
    scores: np.ndarray
    vectors: np.ndarray | None
    categories: np.ndarray | None
    k: int
    diversity: float | None
    method: str
    user: int = -1
    history: tuple[int, ...] = ()
    constraints: Any = None
    explain: bool = False

    @property
    def own_space(self) -> bool:
        return self.vectors is not None or self.categories is not None


_REQ_KEYS = frozenset(
    {"item_ids", "scores", "vectors", "categories", "k", "diversity", "method", "user_id"}
    | {"history", "constraints", "explain"}
)


_NUMBER = frozenset({float, int})


def _number(x: Any) -> bool:
    return type(x) is float or type(x) is int


def parse_rerank(
    doc: Any,
    cat: RerankCatalogue,
    *,
    max_candidates: int,
    max_batch: int,
    max_k: int,
    max_history: int = 1000,
    default_diversity: float | str = 0.5,
    theta=None,
) -> list[RerankItem]:
    """The checked requests of a `/rerank` body (a parsed JSON document).

    Args:
        doc: ``{"requests": [{item_ids, scores, vectors?, categories?, k?, diversity?,
            method?, user_id?, history?}, …]}``.
        cat: the catalogue.
        max_candidates: most candidates per request.
        max_batch: most requests per body (413 above).
        max_k: largest `k`.
        max_history: most history items per request.
        default_diversity: the knob of a request without one (``"auto"``: `theta`).
        theta: ``theta(user_id) -> float | None`` of the propensity tracker, or None.

    Raises:
        RerankError: one line naming the field (``requests.<i>.<field>``).
    """
    if not isinstance(doc, dict):
        raise RerankError("field 'body': must be a JSON object with 'requests'")
    extra = sorted(set(doc) - {"requests"})
    if extra:
        raise RerankError(f"field '{extra[0]}': unknown field (the body has 'requests')")
    reqs = doc.get("requests")
    if not isinstance(reqs, list):
        raise RerankError("field 'requests': required, a list of requests")
    if not reqs:
        raise RerankError("field 'requests': empty batch")
    if len(reqs) > max_batch:
        raise RerankError(f"field 'requests': at most {max_batch} requests per body", status=413)
    return [
        _parse_one(
            i,
            r,
            cat,
            max_candidates,
            max_k,
            max_history,
            default_diversity,
            theta,
            {} if cat.bundle is None else cat.bundle.user_index,
        )
        for i, r in enumerate(reqs)
    ]


def _parse_one(
    i, r, cat, max_candidates, max_k, max_history, default_diversity, theta, users
) -> RerankItem:
    f = f"requests.{i}"
    if not isinstance(r, dict):
        raise RerankError(f"field '{f}': must be an object")
    for key in r:
        if key not in _REQ_KEYS:
            raise RerankError(f"field '{f}.{key}': unknown field")
    ids = r.get("item_ids")
    if not isinstance(ids, list):
        raise RerankError(f"field '{f}.item_ids': required, a list of item ids")
    n = len(ids)
    if n == 0:
        raise RerankError(f"field '{f}.item_ids': no candidates")
    if n > max_candidates:
        raise RerankError(f"field '{f}.item_ids': at most {max_candidates} candidates, got {n}")
    kinds = set(map(type, ids))  # C-level passes over the lists (a request has ~100s)
    if kinds == {str}:
        sids = ids
    elif kinds <= {str, int}:
        sids = [x if type(x) is str else str(x) for x in ids]
    else:
        raise RerankError(f"field '{f}.item_ids': ids must be strings or integers")
    if len(set(sids)) != n:
        seen: set[str] = set()
        dup = next(x for x in sids if x in seen or seen.add(x))  # type: ignore[func-returns-value]
        raise RerankError(f"field '{f}.item_ids': duplicate id {dup[:60]!r}")
    scores = r.get("scores")
    if not isinstance(scores, list):
        raise RerankError(f"field '{f}.scores': required, a list of numbers")
    if len(scores) != n:
        raise RerankError(f"field '{f}.scores': {len(scores)} scores for {n} item_ids")
    if not set(map(type, scores)) <= _NUMBER:
        raise RerankError(f"field '{f}.scores': must be numbers")
    sc = np.array(scores, dtype=np.float64)
    if not np.isfinite(sc).all():
        j = int(np.flatnonzero(~np.isfinite(sc))[0])
        raise RerankError(f"field '{f}.scores': NaN or infinite score at position {j}")
    if np.abs(sc).max() > np.finfo(np.float32).max:  # the pipeline's scores are float32
        raise RerankError(f"field '{f}.scores': beyond the float32 range (|score| > 3.4e38)")
    get = cat.item_index.get
    index = np.array([get(x, -1) for x in sids], dtype=np.int64)
    vectors = _vectors(f, r.get("vectors"), n, cat)
    categories = _categories(f, r.get("categories"), n, cat)
    if (index < 0).any():
        j = int(np.flatnonzero(index < 0)[0])
        if cat.rerank_only:
            raise RerankError(
                f"field '{f}.item_ids': unknown item id {sids[j][:60]!r} (not in the item table)"
            )
        if vectors is None:
            raise RerankError(
                f"field '{f}.item_ids': unknown item id {sids[j][:60]!r} (the model does not "
                "know it; send 'vectors' for new items)"
            )
        from divrec.serve.model_dir import ID_PATTERN

        if not re.match(ID_PATTERN, sids[j]):
            raise RerankError(f"field '{f}.item_ids': id {sids[j][:60]!r} breaks {ID_PATTERN}")
    k = r.get("k", 10)
    if type(k) is not int or not 1 <= k <= max_k:
        raise RerankError(f"field '{f}.k': must be an integer in [1, {max_k}]")
    method = r.get("method")
    if method is None:
        method = cat.default_method
    if type(method) is not str or not cat.ensure(method):
        if type(method) is str and method in cat.unavailable:
            raise RerankError(
                f"field '{f}.method': {method!r} is not available here ({cat.unavailable[method]})"
            )
        raise RerankError(
            f"field '{f}.method': unknown method {str(method)[:40]!r}; known: "
            f"{', '.join(cat.methods)}"
        )
    user_id = r.get("user_id")
    user = -1
    if user_id is not None:
        if type(user_id) is int:
            user_id = str(user_id)
        if type(user_id) is not str:
            raise RerankError(f"field '{f}.user_id': must be a string or an integer")
        user = users.get(user_id, -1)
    hist_ids = r.get("history")
    history: tuple[int, ...] = ()
    if hist_ids is not None:
        if not isinstance(hist_ids, list):
            raise RerankError(f"field '{f}.history': must be a list of item ids")
        if len(hist_ids) > max_history:
            raise RerankError(f"field '{f}.history': at most {max_history} items")
        hs = []
        for x in hist_ids:
            if type(x) not in (str, int):
                raise RerankError(f"field '{f}.history': ids must be strings or integers")
            h = get(str(x), -1)
            if h < 0:
                raise RerankError(f"field '{f}.history': unknown item id {str(x)[:60]!r}")
            hs.append(h)
        history = tuple(hs)
        user = -1  # a history given: the request is answered as an anonymous one
    rr = cat.rerankers[method]
    d = r.get("diversity")
    if not rr.has_knob():
        if d is not None:
            raise RerankError(
                f"field '{f}.diversity': method {method!r} has no diversity knob (leave it out)"
            )
        div = None
    else:
        if d is None:
            d = default_diversity
        if d == "auto":
            th = theta(user_id) if (theta is not None and user_id is not None) else None
            div = 0.5 if th is None else 1.0 - float(th)
        elif _number(d) and math.isfinite(d) and 0.0 <= d <= 1.0:
            div = float(d)
        else:
            raise RerankError(f"field '{f}.diversity': must be a number in [0, 1] or 'auto'")
    explain = r.get("explain", False)
    if type(explain) is not bool:
        raise RerankError(f"field '{f}.explain': must be true or false")
    if explain and type(rr)._explain_terms is Reranker._explain_terms:
        raise RerankError(f"field '{f}.explain': method {method!r} does not explain its lists")
    rules = None
    if r.get("constraints") is not None:
        if not getattr(rr, "_takes_constraints", False):
            raise RerankError(f"field '{f}.constraints': method {method!r} takes no constraints")
        rules = constraints_from_json(r["constraints"], f"{f}.constraints", cat, k)
    return RerankItem(
        sids, index, sc, vectors, categories, k, div, method, user, history, rules, explain
    )


def _vectors(f: str, v: Any, n: int, cat: RerankCatalogue) -> np.ndarray | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n:
        got = len(v) if isinstance(v, list) else type(v).__name__
        raise RerankError(f"field '{f}.vectors': must be {n} vectors (one per item), got {got}")
    dims = {len(x) if isinstance(x, list) else -1 for x in v}
    if len(dims) != 1 or -1 in dims:
        raise RerankError(f"field '{f}.vectors': every vector must be a list of one length")
    d = dims.pop()
    want = cat.dim
    if d != want:
        raise RerankError(f"field '{f}.vectors': dimension {d}, the served vector space has {want}")
    if not all(set(map(type, row)) <= _NUMBER for row in v):
        raise RerankError(f"field '{f}.vectors': must be numbers")
    arr = np.array(v, dtype=np.float64)
    if not np.isfinite(arr).all() or np.abs(arr).max() > np.finfo(np.float32).max:
        j = int(np.argwhere(~np.isfinite(arr.astype(np.float32)))[0][0])
        raise RerankError(f"field '{f}.vectors': NaN or infinite value in vector {j}")
    return arr.astype(np.float32)


def _categories(f: str, c: Any, n: int, cat: RerankCatalogue) -> np.ndarray | None:
    if c is None:
        return None
    if not isinstance(c, list) or len(c) != n:
        got = len(c) if isinstance(c, list) else type(c).__name__
        raise RerankError(f"field '{f}.categories': must be {n} entries (one per item), got {got}")
    pos = {g: j for j, g in enumerate(cat.category_names)}
    extra: dict[str, int] = {}
    out = np.full(n, -1, dtype=np.int64)
    for j, x in enumerate(c):
        if isinstance(x, list):
            if not all(type(g) is str for g in x):
                raise RerankError(f"field '{f}.categories': entry {j} must be names (strings)")
            x = x[0] if x else None
        if x is None:
            continue
        if type(x) is not str:
            raise RerankError(f"field '{f}.categories': entry {j} must be a name or a list")
        code = pos.get(x)
        if code is None:  # a category the catalogue does not know: a fresh code
            code = extra.setdefault(x, len(pos) + len(extra))
        out[j] = code
    return out


# ---------------------------------------------------------------------------- running
def run_rerank(cat: RerankCatalogue, items: list[RerankItem]) -> list[dict[str, Any]]:
    """Re-ranks every request; the answers in request order.

    Requests are grouped by (method, catalogue or request space, known user or not) and
    each group is one stage call ``reranker(query, candidates, k)`` of `(B, N_max)` padded
    candidates.
    """
    groups: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        key = (it.method, it.own_space, it.user >= 0, it.explain, it.constraints is not None)
        groups.setdefault(key, []).append(i)
    out: list[dict[str, Any] | None] = [None] * len(items)
    for (method, own, known, explain, ruled), rows in groups.items():
        if ruled and len(rows) > 1:  # an infeasible request must be named: one by one
            for i in rows:
                out[i] = _run_group(cat, items, [i], method, own, known, explain, i)[0]
            continue
        for i, res in zip(
            rows, _run_group(cat, items, rows, method, own, known, explain, rows[0]), strict=True
        ):
            out[i] = res
    return out  # type: ignore[return-value]


def _run_group(cat, items, rows, method, own, known, explain, first) -> list[dict[str, Any]]:
    """One stage call for the requests `rows` of one group (`first`: the request an
    infeasible constraint is reported for; a group with constraints is one request)."""
    rr = cat.rerankers[method]
    b = len(rows)
    width = max(items[i].scores.size for i in rows)
    k = max(items[i].k for i in rows)
    ids = np.full((b, width), -1, dtype=np.int64)
    sc = np.full((b, width), -np.inf, dtype=np.float64)
    for j, i in enumerate(rows):
        m = items[i].scores.size
        sc[j, :m] = items[i].scores
        ids[j, :m] = items[i].index if not own else j * width + np.arange(m)
    div = None
    if rr.has_knob():
        div = np.array([items[i].diversity for i in rows], dtype=np.float64)
    rules = [items[i].constraints for i in rows]
    rules = None if all(x is None for x in rules) else rules
    if own and rules is not None:  # one request (j = 0): candidate p is position p
        rules = [_positional(items[rows[0]], first, cat)]
    if known:
        users, history = np.array([items[i].user for i in rows]), None
    else:
        users, history = np.full(b, -1, dtype=np.int64), [list(items[i].history) for i in rows]
    query = Query(users=users, history=history, diversity=div, constraints=rules, explain=explain)
    stage = _request_space(rr, cat, items, rows, width, query) if own else rr
    try:
        sel = stage(query, Candidates(ids, sc), k)
    except ValueError as err:
        if rules is None:
            raise
        raise RerankError(
            f"field 'requests.{first}.constraints': {library_message(err, cat)}"
        ) from None
    expl = getattr(sel, "explanations", None)
    viol = getattr(sel, "violations", None)
    out = []
    for j, i in enumerate(rows):
        it = items[i]
        pick = sel.ids[j, : it.k]
        pick = pick[pick >= 0]
        pos = pick - j * width if own else _positions(it.index, pick)
        scores = sel.scores[j, : pos.size].tolist()
        res: dict[str, Any] = {
            "method": method,
            "diversity": it.diversity,
            "items": [
                {"rank": r, "item_id": it.ids[p], "score": s}
                for r, (p, s) in enumerate(zip(pos.tolist(), scores, strict=True), 1)
            ],
        }
        if expl is not None:

            def name(x: int, j=j, it=it) -> str:
                return it.ids[x - j * width] if own else cat.item_ids[x]

            for entry, e in zip(res["items"], explanations(expl[j], name), strict=False):
                e.pop("item_id", None)
                entry["explanation"] = e
        if viol is not None and it.constraints is not None:
            res["violations"] = [{"field": v.field, "detail": v.detail} for v in viol[j]]
        out.append(res)
    return out


def _positional(it: RerankItem, i: int, cat: RerankCatalogue):
    """A request's `Constraints` (catalogue indices) for its own space, where candidate `p`
    is position `p`: item rules to positions (an excluded or boosted item that is not a
    candidate dropped), groups read per candidate (an id the catalogue does not know: no
    group); category rules unchanged (the candidates' categories are the request's or the
    catalogue's codes)."""
    from divrec.data.constraints import Constraints

    c = it.constraints
    pos = {int(x): p for p, x in enumerate(it.index.tolist()) if x >= 0}
    pins = {}
    for item, where in c.pins.items():
        if item not in pos:
            raise RerankError(
                f"field 'requests.{i}.constraints.pins.{cat.item_ids[item]}': not a candidate"
            )
        pins[pos[item]] = where
    group_of = None
    if c.group_of is not None:
        g = np.asarray(c.group_of)
        group_of = np.where(it.index >= 0, g[np.maximum(it.index, 0)], -1)
    return Constraints(
        exclude=[pos[x] for x in c.exclude.tolist() if x in pos],
        allow_categories=c.allow_categories,
        deny_categories=c.deny_categories,
        min_count=c.min_count,
        max_count=c.max_count,
        pins=pins,
        boosts={pos[x]: b for x, b in c.boosts.items() if x in pos},
        group_of=group_of,
        protected=c.protected,
        min_share=c.min_share,
        best_effort=c.best_effort,
    )


def library_message(err: Exception, cat: RerankCatalogue) -> str:
    """The library's one-line message in the HTTP form: category codes as names,
    ``Constraints(best_effort=True)`` as the JSON key."""
    import re as _re

    inv = {v: g for g, v in cat.category_code.items()}
    msg = (
        str(err)
        .splitlines()[0]
        .replace("pass Constraints(best_effort=True)", 'send "best_effort": true')
    )
    msg = _re.sub(r" for request \d+", "", msg)
    return _re.sub(
        r"category (\d+)", lambda m: f"category {inv.get(int(m.group(1)), m.group(1))!r}", msg
    )


def _positions(index: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """Positions in the request of the picked internal indices (distinct in a request)."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index, picked, sorter=order)]


def _request_space(rr, cat: RerankCatalogue, items, rows, width: int, query: Query):
    """A shallow copy of the fitted `rr` whose per-item arrays are the requests' own:
    candidate `j * width + p` is position `p` of the group's request `j`."""
    b = len(rows)
    n_all = b * width
    fitted = rr.item_vectors_
    vecs = np.zeros((n_all, fitted.shape[1]), dtype=np.float32)
    cats = np.full(n_all, -1, dtype=np.int64)
    pop = None
    if getattr(rr, "item_popularity_", None) is not None:
        pop = np.full(n_all, float(rr.item_popularity_.min()), dtype=np.float64)
    for j, i in enumerate(rows):
        it = items[i]
        m = it.scores.size
        known = it.index >= 0
        sl = slice(j * width, j * width + m)
        if it.vectors is not None:
            vecs[sl] = it.vectors
        else:  # categories only: every id is known (checked), the fitted vectors
            vecs[sl] = fitted[it.index]
        if it.categories is not None:
            cats[sl] = it.categories
        else:
            cats[sl] = np.where(known, cat.primary[np.maximum(it.index, 0)], -1)
        if pop is not None:
            pop[sl] = np.where(known, rr.item_popularity_[np.maximum(it.index, 0)], pop[sl])
    view = copy.copy(rr)
    view.item_vectors_ = vecs
    view.item_category_ = cats
    if pop is not None:
        view.item_popularity_ = pop
    # per-request inputs (user vectors, histories, tracker users) read the catalogue's
    # items: computed by the fitted original, handed to the copy as they are
    pre = rr._request_inputs(query, np.zeros((b, width), dtype=np.int64))
    view._request_inputs = lambda q, safe, _pre=pre: _pre
    return view
