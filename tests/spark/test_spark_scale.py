"""The Spark flow with a driver that cannot hold the log or the id map (a CI scale test).

`_scale_flow.py` runs in its own process (its own JVM, `spark.driver.maxResultSize=1m`,
768 MiB driver): collecting the synthetic log or its user id map, or broadcasting the user
table, fails there (the positive controls), while `divrec spark train → recommend` with
dpp / pdpp / ia-mmr / category-cap `→ evaluate` must pass. A driver collect or a broadcast of
user-size data reintroduced anywhere on that path fails this test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

FLOW = Path(__file__).with_name("_scale_flow.py")


def test_flow_passes_with_a_driver_too_small_for_user_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(FLOW), str(tmp_path)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the limits bite: the log, the id map and a broadcast of the users cannot reach the driver
    for control in ("collect_log", "collect_users", "broadcast_users"):
        assert out[control] is not None, control
        assert "maxResultSize" in out[control] or "Total size" in out[control], out[control]
    assert out["exit"] == {
        "train": 0, "dpp": 0, "pdpp": 0, "ia-mmr": 0, "category-cap": 0, "evaluate": 0,
    }, out["output"]  # fmt: skip
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    assert meta["n_users"] == out["users"]
    log = pd.read_parquet(tmp_path / "log.parquet")
    train = pd.read_parquet(tmp_path / "model" / "train.parquet")
    users = pd.read_parquet(tmp_path / "model" / "users.parquet").set_index("index")["id"]
    seen = set(zip(train["user"], train["item"], strict=True))
    for name in ("dpp", "pdpp", "ia-mmr", "category-cap"):
        lists = pd.read_parquet(tmp_path / name)
        # every user of the training split has a list of 5 unseen items
        assert len(lists) == train["user"].nunique() and lists["user"].is_unique
        assert all(len(row) == 5 and len(set(row)) == 5 for row in lists["items"])
        sample = lists.sample(500, random_state=0)
        assert not any(
            (u, i) in seen for u, row in zip(sample["user"], sample["items"], strict=True)
            for i in row
        )  # fmt: skip
        # lists carry the external ids: the map's id of the index, items as the log's ids
        assert (sample["user_id"].to_numpy() == users.loc[sample["user"]].to_numpy()).all()
        assert set(sample["user_id"]) <= set(log["uid"])
        assert all(len(ids) == 5 and set(ids) <= set(log["mid"]) for ids in sample["item_ids"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"]["hr@5"] <= 1.0
    assert 0.0 < metrics["beyond_accuracy"]["item_coverage"] <= 1.0
