"""The "bring your own candidates" tutorial's script (docs/examples/bring_your_own_candidates.py)
on a small synthetic CSV: its lists and report equal values recomputed here by brute force."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from divrec.pipeline.frames import catalogue, rerank_frame
from divrec.rerank import MMR

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "bring_your_own_candidates.py"


def _script():
    spec = importlib.util.spec_from_file_location("bring_your_own_candidates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_inputs(tmp_path: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    n_items, genres = 40, ["action", "drama", "comedy", "noir"]
    items = pd.DataFrame({"item_id": [f"sku-{i}" for i in range(n_items)]})
    items["category"] = [genres[i % 4] for i in range(n_items)]
    # items of one genre point roughly the same way: diversity in the vectors = in genres
    base = rng.normal(size=(4, 3))
    vecs = base[np.arange(n_items) % 4] + 0.2 * rng.normal(size=(n_items, 3))
    for d in range(3):
        items[f"v{d}"] = vecs[:, d]
    rows = []
    for u in range(8):
        chosen = rng.choice(n_items, 15, replace=False)
        # the input order favours one genre: the top of every list is mostly one category
        scores = rng.normal(size=15) + 2.0 * (chosen % 4 == u % 4)
        rows += [(f"user{u}", f"sku-{i}", float(s)) for i, s in zip(chosen, scores, strict=True)]
    cand = pd.DataFrame(rows, columns=["user_id", "item_id", "score"])
    cpath, ipath = tmp_path / "candidates.csv", tmp_path / "items.csv"
    cand.to_csv(cpath, index=False)
    items.to_csv(ipath, index=False)
    return cpath, ipath


def _ilad(vectors: np.ndarray) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = list(itertools.permutations(range(len(unit)), 2))
    return float(np.mean([1.0 - unit[a] @ unit[b] for a, b in pairs]))


def test_script_lists_and_report_match_brute_force(tmp_path):
    cpath, ipath = _write_inputs(tmp_path)
    out = tmp_path / "out"
    assert _script().main([str(cpath), str(ipath), "--k", "5", "--out", str(out)]) == 0
    lists = pd.read_csv(out / "lists.csv")
    report = json.loads((out / "report.json").read_text())
    cand, items = pd.read_csv(cpath), pd.read_csv(ipath)

    # the lists are MMR's (knob 0.5) on each user's candidates, as the library gives them
    cat = catalogue(items, users=cand["user_id"].unique(), category="category",
                    vectors=["v0", "v1", "v2"])  # fmt: skip
    mmr = MMR().fit(cat, item_vectors=cat.item_features)
    direct = rerank_frame(mmr, cand, 5, cat, diversity=0.5)
    assert lists["item_id"].tolist() == direct["item_id"].tolist()
    assert lists.groupby("user_id").size().tolist() == [5] * 8

    item = items.set_index("item_id")
    vec = item[["v0", "v1", "v2"]].to_numpy(np.float32)
    vec_of = dict(zip(item.index, vec, strict=True))

    def summary(frame):
        ilad, cov, genres_all = [], [], set()
        for _, group in frame.groupby("user_id"):
            ilad.append(_ilad(np.array([vec_of[i] for i in group["item_id"]], np.float64)))
            genres = set(item.loc[group["item_id"], "category"])
            cov.append(len(genres) / 4)
            genres_all |= genres
        return np.mean(ilad), np.mean(cov), len(genres_all) / 4, frame["item_id"].nunique() / 40

    top = cand.sort_values(["user_id", "score"], ascending=[True, False]).groupby("user_id")
    before = top.head(5)
    for name, frame in (("before", before), ("after", lists)):
        ilad, cov, sys_cov, item_cov = summary(frame)
        assert report[name]["ilad"] == pytest.approx(ilad, abs=1e-5)
        assert report[name]["category_coverage"] == pytest.approx(cov)
        assert report[name]["system_category_coverage"] == pytest.approx(sys_cov)
        assert report[name]["item_coverage"] == pytest.approx(item_cov)
    # the synthetic inputs were built so that diversifying changes the lists
    assert report["after"]["category_coverage"] > report["before"]["category_coverage"]
    assert 0.0 < report["rbo_with_input_order"] < 1.0
    assert "| ILAD (mean distance within a list) |" in (out / "report.md").read_text()


def test_script_at_knob_zero_changes_nothing(tmp_path):
    cpath, ipath = _write_inputs(tmp_path, seed=1)
    out = tmp_path / "zero"
    _script().main([str(cpath), str(ipath), "--k", "4", "--diversity", "0", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["rbo_with_input_order"] == pytest.approx(1.0)
    assert report["before"] == report["after"]


def test_script_bad_csv_is_one_line(tmp_path):
    cpath, ipath = _write_inputs(tmp_path)
    cand = pd.read_csv(cpath)
    pd.concat([cand, cand.iloc[[0]]]).to_csv(cpath, index=False)
    with pytest.raises(ValueError, match=r"^candidates: item_id 'sku-\d+' twice"):
        _script().main([str(cpath), str(ipath), "--out", str(tmp_path / "x")])
