"""Pieces of the runner: the validation carve (training rows only, every protocol), several
datasets in one file, and the training-loss convergence check of a torch model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from divrec.data.synthetic import SyntheticConfig, make_synthetic
from divrec.experiment import carve_validation, parse_experiment, run_experiment
from divrec.splitting.named import make_split


@pytest.mark.parametrize("protocol", ["random", "temporal", "leave-last-one", "ncf"])
def test_validation_is_carved_from_training_rows_only(protocol):
    cfg = SyntheticConfig(n_users=60, n_items=300, interactions_per_user=15.0, seed=5)
    data = make_synthetic(cfg).interactions
    split = make_split("synthetic", protocol, data=data, seed=0)
    valid = carve_validation(split, protocol, 0.25, seed=1)
    assert valid.train.nnz > 0 and valid.test.nnz > 0
    assert valid.train.nnz + valid.test.nnz == split.train.nnz
    assert np.array_equal(valid.train.item_ids, split.train.item_ids)  # one universe

    def rows(part):
        return set(zip(part.users.tolist(), part.items.tolist(), strict=True))

    assert rows(valid.train) | rows(valid.test) == rows(split.train)
    assert not (rows(valid.train) | rows(valid.test)) & rows(split.test)
    if protocol == "ncf":
        assert valid.negatives is not None and valid.negatives.shape[1] == 99


def _tiny(datasets, entries, **experiment):
    return parse_experiment(
        {
            "experiment": {"name": "parts", "dataset": datasets, "metrics": ["ndcg"],
                           "seeds": 2, "sanity": False, **experiment},
            "entries": entries,
        },
        "parts.toml",
    )  # fmt: skip


def test_several_datasets_each_get_a_folder(synthetic_csv, tmp_path):
    other = tmp_path / "other.csv"
    lines = synthetic_csv.read_text().splitlines()
    other.write_text("\n".join(lines[: 1 + (len(lines) - 1) // 2]) + "\n")
    config = _tiny([str(synthetic_csv), str(other)], [
        {"name": "pop", "pipeline": {"retriever": "popularity"}},
    ])  # fmt: skip
    out = tmp_path / "out"
    results = run_experiment(config, out, progress=False)
    assert [r["dataset"]["name"] for r in results] == [str(synthetic_csv), str(other)]
    for folder in ("synthetic", "other"):
        res = json.loads((out / folder / "results.json").read_text())
        assert res["entries"][0]["name"] == "pop"
        assert (out / folder / "report.md").exists()
    index = (out / "index.md").read_text()
    assert "synthetic/report.md" in index and "other/report.md" in index
    assert results[0]["dataset"]["fingerprint"] != results[1]["dataset"]["fingerprint"]


def test_torch_model_convergence_from_its_training_loss(synthetic_csv, tmp_path):
    config = _tiny(str(synthetic_csv), [
        {"name": "tr", "pipeline": {"retriever": {"name": "tr",
                                                  "params": {"epochs": 3.0, "batch_size": 256}}}},
    ], seeds=1)  # fmt: skip
    (res,) = run_experiment(config, tmp_path / "out", progress=False)
    conv = res["entries"][0]["convergence"]
    (check,) = conv["checks"]
    assert check["measure"] == "training loss per epoch (final fits)"
    (seed0,) = check["per_seed"]
    assert seed0["epochs"] == [1, 2, 3] and len(seed0["values"]) == 3
    # three epochs are too few: the loss still falls by more than 1% in the last one
    assert seed0["relative_gain"] > 0.01 and conv["status"] == "still improving"
