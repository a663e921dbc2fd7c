"""DataFrames with the caller's own ids: `recommend`, `rerank` and `evaluate` on tables.

divrec's stages work on internal indices (`Query`, `Candidates`: ``(B, N)`` int64 arrays padded
with −1). A team with a table of ``user_id, item_id, score`` uses these functions instead: ids
are mapped through the `Interactions` that holds the id maps (``user_ids`` / ``item_ids``), the
stages run unchanged, and the lists come back as one long table

    ``user_id, item_id, score, rank``  (rank 1 = first; one row per listed item)

in the caller's ids. A polars DataFrame goes through the same path (converted with
``to_pandas`` and back; polars is only imported when the input is one).

For candidates that come from another system (no divrec model, no interaction log),
:func:`catalogue` builds the `Interactions` from an item table (ids, categories, vectors) and
the candidates' users; fit the re-ranker on it (``reranker.fit(cat, item_vectors=...)``).

Bad input is one line (`ValueError`) naming the field: an item twice in one user's candidate
list, columns of different lengths, NaN or infinite scores, ids the id maps do not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from divrec.data.interactions import Interactions
from divrec.data.query import Candidates, Query

__all__ = [
    "LIST_COLUMNS",
    "catalogue",
    "evaluate_frame",
    "lists_to_frame",
    "recommend_frame",
    "rerank_frame",
]

#: the columns of every list table this module returns
LIST_COLUMNS = ("user_id", "item_id", "score", "rank")


# ---------------------------------------------------------------------------------- tables
def _is_polars(obj: Any) -> bool:
    return type(obj).__module__.partition(".")[0] == "polars"


def _to_pandas(table: Any, what: str, required: Sequence[str]) -> pd.DataFrame:
    """A pandas DataFrame from pandas, polars or a mapping of equal-length columns."""
    if isinstance(table, pd.DataFrame):
        df = table
    elif _is_polars(table):
        df = table.to_pandas()
    elif isinstance(table, Mapping):
        lengths = {str(k): len(v) for k, v in table.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
            raise ValueError(f"{what}: columns have different lengths ({shown})")
        df = pd.DataFrame({k: np.asarray(v) for k, v in table.items()})
    else:
        raise ValueError(
            f"{what} must be a pandas or polars DataFrame or a mapping of columns, "
            f"got {type(table).__name__}"
        )
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} has no column {missing[0]!r} (columns: {list(df.columns)})")
    return df


def _show(value: Any) -> str:
    """An id as the caller wrote it (``1``, ``'a'``; not ``np.int64(1)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _like(out: pd.DataFrame, template: Any) -> Any:
    """`out` as the input's kind: polars in, polars out."""
    if _is_polars(template):
        import polars as pl

        return pl.from_pandas(out)
    return out


def _lookup(data: Interactions, kind: str, ids: Any, field: str) -> np.ndarray:
    """Internal indices of external ids; an unknown id is a one-line ValueError."""
    try:
        return data.user_index(ids) if kind == "user" else data.item_index(ids)
    except KeyError as err:
        raise ValueError(f"{field}: {err.args[0]}") from None


def lists_to_frame(
    data: Interactions, users: np.ndarray, lists: Candidates | tuple[np.ndarray, np.ndarray]
) -> pd.DataFrame:
    """Turns ``(B, k)`` internal lists into the long ``user_id, item_id, score, rank`` table.

    Args:
        data: the `Interactions` holding the id maps.
        users: ``(B,)`` internal user index of each row.
        lists: `Candidates` or ``(ids (B, k), scores (B, k))``; −1 padding is dropped.

    Returns:
        one row per listed item, rows of a user in list order, ``rank`` from 1.
    """
    ids, scores = (lists.ids, lists.scores) if isinstance(lists, Candidates) else lists
    ids = np.asarray(ids)
    valid = ids >= 0
    row, col = np.nonzero(valid)
    users = np.asarray(users, dtype=np.int64)
    return pd.DataFrame(
        {
            "user_id": data.user_ids[users[row]],
            "item_id": data.item_ids[ids[row, col]],
            "score": np.asarray(scores, dtype=np.float64)[row, col],
            "rank": (np.cumsum(valid, axis=1)[row, col]).astype(np.int64),
        }
    )


# ----------------------------------------------------------------------------- recommend
def recommend_frame(
    model: Any,
    data: Interactions,
    users: Any,
    k: int = 10,
    *,
    exclude_seen: bool = True,
    diversity: float | Sequence[float] | None = None,
) -> Any:
    """Top-k lists for users given by their own ids, as a ``user_id, item_id, score, rank`` table.

    Args:
        model: a fitted `Recommender` or `Pipeline` (fitted on `data` or a split of it: the
            same id maps).
        data: the `Interactions` holding the id maps.
        users: external user ids (a sequence, a Series, or a pandas/polars DataFrame with a
            ``user_id`` column); repeated ids are answered once, in first-seen order.
        k: list length.
        exclude_seen: drop the items each user interacted with in training.
        diversity: the diversity knob in [0, 1] for every request (or one per distinct user),
            for a pipeline with a re-ranker; None: the re-ranker's own setting.

    Returns:
        the lists (a polars DataFrame when `users` is one).

    Raises:
        ValueError: an unknown user id (one line naming it).
    """
    template = users
    if isinstance(users, pd.DataFrame) or _is_polars(users):
        users = _to_pandas(users, "users", ["user_id"])["user_id"]
    ext = pd.unique(pd.Series(np.asarray(users)))
    idx = _lookup(data, "user", ext, "user_id")
    query = Query(
        users=idx,
        exclude_seen=exclude_seen,
        diversity=None if diversity is None else np.broadcast_to(diversity, idx.shape),
    )
    out = model(query, None, k)
    return _like(lists_to_frame(data, idx, out), template)


# -------------------------------------------------------------------------------- rerank
def _candidate_arrays(
    df: pd.DataFrame, data: Interactions, score: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users ``(B,)``, ids ``(B, N)`` (−1 padded) and scores ``(B, N)`` of a long table,
    each user's candidates sorted by decreasing score (ties: table order)."""
    scores = pd.to_numeric(df[score], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"candidates: {score} must be finite numbers, got {_show(df[score].iloc[row])} "
            f"(user_id {_show(df['user_id'].iloc[row])}, item_id "
            f"{_show(df['item_id'].iloc[row])})"
        )
    dup = df.duplicated(["user_id", "item_id"]).to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"candidates: item_id {_show(df['item_id'].iloc[row])} twice in the candidate list "
            f"of user_id {_show(df['user_id'].iloc[row])}"
        )
    user_codes, user_ext = pd.factorize(df["user_id"], sort=False)
    users = _lookup(data, "user", np.asarray(user_ext), "candidates: user_id")
    items = _lookup(data, "item", df["item_id"].to_numpy(), "candidates: item_id")
    order = np.lexsort((np.arange(len(df)), -scores, user_codes))
    codes, items, scores = user_codes[order], items[order], scores[order]
    counts = np.bincount(codes, minlength=users.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cols = np.arange(codes.shape[0]) - starts[codes]
    n = int(counts.max()) if counts.size else 0
    ids = np.full((users.shape[0], n), -1, dtype=np.int64)
    sc = np.full((users.shape[0], n), -np.inf, dtype=np.float64)
    ids[codes, cols] = items
    sc[codes, cols] = scores
    return users, ids, sc


def rerank_frame(
    reranker: Any,
    candidates: Any,
    k: int,
    data: Interactions,
    *,
    diversity: float | Sequence[float] | None = None,
    score: str = "score",
) -> Any:
    """Re-ranks the caller's own candidate lists; returns ``user_id, item_id, score, rank``.

    The re-ranker runs exactly as the re-ranking stage of a `Pipeline` (its ``__call__`` on a
    `Query` and `Candidates`), with each user's candidates in decreasing `score` order as the
    relevance input; the returned ``score`` is the input score of the picked item.

    Args:
        reranker: a fitted `divrec.rerank` re-ranker (fitted on `data`: its item vectors and
            categories are indexed like ``data.item_ids``).
        candidates: the long table ``user_id, item_id, <score>`` (pandas, polars, or a mapping
            of equal-length columns); each user's rows are one candidate list.
        k: list length.
        data: the `Interactions` holding the id maps (e.g. :func:`catalogue`).
        diversity: the knob in [0, 1], one value or one per user (in first-seen order); None:
            the re-ranker's own hyperparameter.
        score: the name of the score column.

    Returns:
        the re-ranked lists (a polars DataFrame when `candidates` is one).

    Raises:
        ValueError: an item twice in one user's list, columns of different lengths, a NaN or
            infinite score, an unknown user or item id (one line naming the field).
    """
    df = _to_pandas(candidates, "candidates", ["user_id", "item_id", score])
    users, ids, scores = _candidate_arrays(df, data, score)
    query = Query(
        users=users,
        exclude_seen=False,
        diversity=None if diversity is None else np.broadcast_to(diversity, users.shape),
    )
    out = reranker(query, Candidates(ids, scores.astype(np.float32)), k)
    picked = out.ids >= 0
    # the float64 input scores of the picked items (Candidates carry float32)
    pos = np.argmax(ids[:, None, :] == out.ids[:, :, None], axis=2)
    full = np.where(picked, np.take_along_axis(scores, pos, axis=1), -np.inf)
    return _like(lists_to_frame(data, users, (out.ids, full)), candidates)


# ------------------------------------------------------------------------------ evaluate
def _lists_matrix(df: pd.DataFrame, data: Interactions, users_ext: np.ndarray) -> np.ndarray:
    """``(U, K)`` internal item lists (−1 padded) in rank order, rows aligned to `users_ext`."""
    code = pd.Index(users_ext).get_indexer(df["user_id"])
    items = _lookup(data, "item", df["item_id"].to_numpy(), "lists: item_id")
    rank = df["rank"].to_numpy() if "rank" in df.columns else np.arange(len(df))
    order = np.lexsort((rank, code))
    code, items = code[order], items[order]
    counts = np.bincount(code, minlength=len(users_ext))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((len(users_ext), max(int(counts.max(initial=0)), 1)), -1, dtype=np.int64)
    out[code, np.arange(code.shape[0]) - starts[code]] = items
    return out


def _user_item_matrix(table: Any, what: str, data: Interactions, users_ext) -> sp.csr_matrix:
    """``(U, n_items)`` binary CSR of a ``user_id, item_id`` table, rows aligned to `users_ext`
    (rows of other users are ignored)."""
    tdf = _to_pandas(table, what, ["user_id", "item_id"])
    tdf = tdf[tdf["user_id"].isin(users_ext)]
    rows = pd.Index(users_ext).get_indexer(tdf["user_id"])
    cols = _lookup(data, "item", tdf["item_id"].to_numpy(), f"{what}: item_id")
    mat = sp.csr_matrix(
        (np.ones(rows.shape[0], dtype=np.float32), (rows, cols)),
        shape=(len(users_ext), data.n_items),
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def evaluate_frame(
    lists: Any,
    data: Interactions,
    truth: Any | None = None,
    k: int | None = None,
    *,
    item_vectors: np.ndarray | None = None,
    history: Any | None = None,
) -> Any:
    """Per-user metrics of a ``user_id, item_id[, rank]`` list table, in the caller's ids.

    Columns (where their inputs are given): ``ndcg``, ``recall``, ``hit_rate`` against
    `truth` (a ``user_id, item_id`` table of relevant items); ``ilad`` (CDM Eq. 21) in
    `item_vectors` (default: ``data.item_features``); ``category_coverage`` (per user, CDM
    Eq. 22) and ``miscalibration`` (Steck 2018 Eq. 5, against the user's `history`) from
    ``data.item_categories``. The system-level ``item_coverage`` and ``category_coverage``
    are in ``result.attrs["system"]``.

    Args:
        lists: the lists (pandas or polars); a ``rank`` column orders each list, else the
            table order does.
        data: the `Interactions` holding the id maps and the item side information.
        truth: relevant items per user, or None (no accuracy columns).
        k: cut-off (default: the longest list).
        item_vectors: ``(n_items, d)`` vectors for ILAD, aligned with ``data.item_ids``.
        history: each user's history for miscalibration: `Interactions` indexed like `data`
            or a ``user_id, item_id`` table (default: `data`'s own interactions, if any).

    Returns:
        one row per user (``user_id`` first), a polars DataFrame when `lists` is one.
    """
    from divrec.metrics import (
        category_coverage,
        hit_rate_at_k,
        hits_matrix,
        ilad,
        item_coverage,
        ndcg_at_k,
        recall_at_k,
        relevant_counts,
        user_category_coverage,
    )

    df = _to_pandas(lists, "lists", ["user_id", "item_id"])
    users_ext = pd.unique(df["user_id"])
    users = _lookup(data, "user", np.asarray(users_ext), "lists: user_id")
    rec = _lists_matrix(df, data, np.asarray(users_ext))
    k = rec.shape[1] if k is None else int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rec = np.pad(rec, ((0, 0), (0, max(k - rec.shape[1], 0))), constant_values=-1)[:, :k]
    out = pd.DataFrame({"user_id": users_ext})
    if truth is not None:
        rel = _user_item_matrix(truth, "truth", data, users_ext)
        hits = hits_matrix(rec, rel)
        n_rel = relevant_counts(rel)
        out["ndcg"] = ndcg_at_k(hits, n_rel, k)
        out["recall"] = recall_at_k(hits, n_rel, k)
        out["hit_rate"] = hit_rate_at_k(hits, k)
    vectors = data.item_features if item_vectors is None else np.asarray(item_vectors)
    if vectors is not None:
        out["ilad"] = ilad(rec, vectors)
    system = {"item_coverage": item_coverage(rec, data.n_items)}
    if data.item_categories is not None:
        out["category_coverage"] = user_category_coverage(rec, data.item_categories)
        system["category_coverage"] = category_coverage(rec, data.item_categories)
        if isinstance(history, Interactions):
            seen = history.to_csr(binary=True)[users]
        elif history is not None:
            seen = _user_item_matrix(history, "history", data, users_ext)
        else:
            seen = data.to_csr(binary=True)[users] if data.nnz else None
        if seen is not None:
            from divrec.metrics.calibration import miscalibration

            out["miscalibration"] = miscalibration(rec, seen, data.item_categories)
    out.attrs["system"] = system
    return _like(out, lists)


# ----------------------------------------------------------------------------- catalogue
def catalogue(
    items: Any,
    users: Any = (),
    *,
    category: str | None = None,
    vectors: Sequence[str] | None = None,
    name: str = "catalogue",
) -> Interactions:
    """An `Interactions` with no interactions: the id maps and item side information of an
    item table, for re-ranking candidates that come from another system.

    Args:
        items: the item table (pandas or polars) with an ``item_id`` column.
        users: the user ids requests will name (e.g. ``candidates["user_id"].unique()``).
        category: the column of each item's category (one per item; missing = none), or None.
        vectors: the columns of each item's vector (becomes ``item_features``), or None.
        name: a name for error messages.

    Returns:
        the catalogue: ``item_ids`` in table order, ``item_categories`` one-hot,
        ``item_features`` the vectors.

    Raises:
        ValueError: an item id twice, a NaN or infinite vector entry.
    """
    df = _to_pandas(
        items, "items", ["item_id", *([category] if category else []), *(vectors or [])]
    )
    dup = df["item_id"].duplicated().to_numpy()
    if dup.any():
        raise ValueError(
            f"items: item_id {_show(df['item_id'].iloc[int(np.flatnonzero(dup)[0])])} twice"
        )
    cats = names = None
    if category:
        col = df[category]
        codes, uniq = pd.factorize(col, sort=True)
        ok = codes >= 0
        cats = sp.csr_matrix(
            (np.ones(int(ok.sum()), dtype=np.float32), (np.flatnonzero(ok), codes[ok])),
            shape=(len(df), len(uniq)),
        )
        names = tuple(str(u) for u in uniq)
    feats = None
    if vectors:
        feats = df[list(vectors)].to_numpy(dtype=np.float64)
        if not np.isfinite(feats).all():
            raise ValueError("items: vector columns must be finite numbers")
    user_ids = pd.unique(pd.Series(np.asarray(users)))
    empty = np.zeros(0, dtype=np.int64)
    return Interactions(
        users=empty,
        items=empty,
        values=np.zeros(0, dtype=np.float32),
        user_ids=np.asarray(user_ids),
        item_ids=df["item_id"].to_numpy(),
        item_categories=cats,
        category_names=names,
        item_features=feats,
        name=name,
    )
