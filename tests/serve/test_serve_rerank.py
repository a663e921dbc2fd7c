"""`POST /rerank` and re-rank-only mode (`divrec serve --items`).

The lists are checked against direct library calls on objects the service does not hold:
the fitted re-rankers read back from the model directory (`divrec.load`), called as the
pipeline's re-ranking stage, and, for request vectors / item tables, a re-ranker built
with the knob's parameter calling `select` on the request's own vectors. Bad input is one
422 naming the field and the request index. Two real servers (127.0.0.1, stopped by PID).
"""

from __future__ import annotations

import json
import math
import subprocess

import httpx
import numpy as np
import pytest

import divrec
from divrec import registry
from divrec.data.query import Candidates, Query
from divrec.serve.config import parse_config
from divrec.serve.model_dir import ModelBundle, train_model_dir
from divrec.serve.rerank import RerankCatalogue, RerankError, parse_rerank, run_rerank
from serve_util import API_KEY, PY, REPO, Server, env, free_port, shared_model, wait_ready

SYNTHETIC = {"n_users": 80, "n_items": 150, "n_topics": 5, "interactions_per_user": 15.0}
CONFIG = {
    "seed": 4,
    "data": {"dataset": "synthetic", "synthetic": SYNTHETIC},
    "retriever": {"name": "ials", "params": {"factors": 8, "iterations": 3}},
    "reranker": {"name": "mmr", "params": {"lambda_": 0.4}},
    "pipeline": {"n_candidates": 40},
}
LIMITS = {"max_candidates": 60, "max_batch": 8, "max_k": 50}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("rr-model") / "model"
    train_model_dir(parse_config(CONFIG), out)
    return out


@pytest.fixture(scope="module")
def cat(model):
    return RerankCatalogue.from_bundle(ModelBundle.load(model))


def loaded_reranker(model, method):
    """The fitted re-ranker read back from the model directory (not the service's object)."""
    if method == CONFIG["reranker"]["name"]:
        return divrec.load(model / "pipeline.npz").reranker
    return divrec.load(model / f"rerank-{method}.npz")


def with_knob(rr, d: float):
    """A new re-ranker whose config carries the knob's parameter (as one float)."""
    params = rr.diversity_params(np.array([d]))
    return type(rr)(rr.config.with_params(**{k: float(v[0]) for k, v in params.items()}))


def request(ids, scores, **kw):
    scores = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
    return {"item_ids": list(ids), "scores": scores, **kw}


def answer(cat, doc, **limits):
    items = parse_rerank(doc, cat, **{**LIMITS, **limits})
    return run_rerank(cat, items)


def ids_of(res):
    return [it["item_id"] for it in res["items"]]


# ---------------------------------------------------------------------------- model mode
def test_model_mode_equals_the_pipeline_stage(model, cat):
    rng = np.random.default_rng(0)
    bundle = cat.bundle
    reqs, refs = [], []
    for method in sorted(bundle.rerankers):
        ref = loaded_reranker(model, method)
        for d in (0.0, 0.35, 1.0):
            n, k = int(rng.integers(5, 50)), int(rng.integers(1, 12))
            idx = rng.choice(cat.n_items, n, replace=False)
            sc = rng.normal(size=n).round(3)
            reqs.append(
                request([cat.item_ids[i] for i in idx], sc, k=k, method=method, diversity=d)
            )
            q = Query(users=[-1], history=[[]], diversity=[d])
            sel = ref(q, Candidates(idx[None], sc[None]), k)
            refs.append([cat.item_ids[i] for i in sel.ids[0] if i >= 0])
    # one mixed batch: grouped by method inside, every list as alone
    got = answer(cat, {"requests": reqs}, max_batch=100)
    assert [ids_of(r) for r in got] == refs
    # scores are the candidates' own (float32, as in the pipeline)
    first = got[0]["items"][0]
    j = reqs[0]["item_ids"].index(first["item_id"])
    assert first["score"] == float(np.float32(reqs[0]["scores"][j]))


def test_known_user_and_history_reach_the_query(model, cat):
    bundle = cat.bundle
    ref = loaded_reranker(model, "mmr")
    idx = np.arange(10, 40)
    sc = np.linspace(1, 0, idx.size)
    ids = [cat.item_ids[i] for i in idx]
    u = 7
    got = answer(
        cat,
        {
            "requests": [
                request(ids, sc, k=6, method="ia-mmr", user_id=bundle.user_ids[u], diversity=0.5)
            ]
        },
    )
    ia = cat.rerankers["ia-mmr"]
    q = Query(users=[u], diversity=[0.5])
    want = ia(q, Candidates(idx[None], sc[None]), 6).ids[0]
    assert ids_of(got[0]) == [cat.item_ids[i] for i in want]
    # a history makes it an anonymous request with that history (mean of its vectors)
    hist = [cat.item_ids[3], cat.item_ids[4]]
    got = answer(
        cat, {"requests": [request(ids, sc, k=6, method="ia-mmr", history=hist, diversity=0.5)]}
    )
    q = Query(users=[-1], history=[[3, 4]], diversity=[0.5])
    want = ia(q, Candidates(idx[None], sc[None]), 6).ids[0]
    assert ids_of(got[0]) == [cat.item_ids[i] for i in want]
    assert ref is not cat.rerankers["mmr"]


def test_request_vectors_equal_select_on_those_vectors(cat):
    rng = np.random.default_rng(1)
    for method in ("mmr", "dpp", "ssd"):
        n, k, d = 30, 8, 0.6
        vecs = rng.normal(size=(n, cat.dim)).round(3)
        sc = rng.random(n).round(4)
        ids = [f"new-{method}-{j}" for j in range(n)]  # unknown to the model: vectors given
        got = answer(
            cat,
            {
                "requests": [
                    request(ids, sc, k=k, method=method, diversity=d, vectors=vecs.tolist())
                ]
            },
        )
        one = with_knob(registry.create("re-ranker", method), d)
        rel = sc.astype(np.float32).astype(np.float64)
        pos = one.select(rel, k, vectors=vecs.astype(np.float32))
        assert ids_of(got[0]) == [ids[p] for p in pos]


def test_request_categories_drive_category_cap(cat):
    n = 12
    ids = cat.item_ids[:n]
    sc = np.linspace(1.0, 0.0, n)
    cats = ["a"] * 6 + ["b"] * 3 + [["c", "a"]] * 3
    got = answer(cat, {"requests": [request(ids, sc, k=6, method="category-cap", categories=cats)]})
    # by hand: in score order, at most `cap` per (first) category, then the skipped ones
    cap = registry.create("re-ranker", "category-cap").max_per_category
    per: dict[str, int] = {}
    want, skipped = [], []
    for j in range(n):
        c = cats[j] if isinstance(cats[j], str) else cats[j][0]
        if per.get(c, 0) < cap:
            per[c] = per.get(c, 0) + 1
            want.append(ids[j])
        else:
            skipped.append(ids[j])
    assert ids_of(got[0]) == (want + skipped)[:6]
    assert ids_of(got[0])[:3] == ["0", "6", "9"]  # a, b, c (["c", "a"] is c first)


# ---------------------------------------------------------------------------- bad input
def _bad_cases(cat):
    ids = cat.item_ids[:5]
    ok = request(ids, [1, 2, 3, 4, 5])
    return [
        (request(ids[:4] + ids[:1], [1, 2, 3, 4, 5]), "requests.1.item_ids", "duplicate"),
        (request(ids, [1, 2, 3]), "requests.1.scores", "3 scores for 5"),
        (request(ids, [1, 2, math.nan, 4, 5]), "requests.1.scores", "position 2"),
        (request(ids, [1, 2, 3, math.inf, 5]), "requests.1.scores", "position 3"),
        (request(ids, [1, 2, 3, 4, "5"]), "requests.1.scores", "numbers"),
        (
            request(ids, [1] * 5, vectors=[[0.0] * (cat.dim + 1)] * 5),
            "requests.1.vectors",
            "dimension",
        ),
        (request(ids, [1] * 5, vectors=[[0.0] * cat.dim] * 4), "requests.1.vectors", "5 vectors"),
        (request(["nope", *ids[1:]], [1] * 5), "requests.1.item_ids", "'nope'"),
        (request(cat.item_ids[:61], [1] * 61), "requests.1.item_ids", "at most 60"),
        (request(ids, [1] * 5, method="xyz"), "requests.1.method", "unknown method"),
        (request(ids, [1] * 5, k=0), "requests.1.k", "[1, 50]"),
        (request(ids, [1] * 5, diversity=1.5), "requests.1.diversity", "[0, 1]"),
        (
            request(ids, [1] * 5, method="category-cap", diversity=0.5),
            "requests.1.diversity",
            "no diversity knob",
        ),
        (request(ids, [1] * 5, history=["nope"]), "requests.1.history", "'nope'"),
        (request(ids, [1] * 5, colour="red"), "requests.1.colour", "unknown field"),
    ], ok


def test_bad_requests_name_the_field_and_the_request(cat):
    cases, ok = _bad_cases(cat)
    for bad, where, what in cases:
        with pytest.raises(RerankError) as err:
            parse_rerank({"requests": [ok, bad]}, cat, **LIMITS)
        msg = str(err.value)
        assert f"field '{where}'" in msg and what in msg, msg
        assert err.value.status == 422 and "\n" not in msg
    with pytest.raises(RerankError) as err:
        parse_rerank({"requests": [ok] * 9}, cat, **LIMITS)
    assert err.value.status == 413
    for doc in ({}, {"requests": []}, [], {"requests": [ok], "x": 1}):
        with pytest.raises(RerankError):
            parse_rerank(doc, cat, **LIMITS)


# ---------------------------------------------------------------------------- re-rank-only
def write_table(path, with_vectors=True):
    rng = np.random.default_rng(5)
    n = 40
    vecs = rng.normal(size=(n, 4)).round(4)
    lines = ["item_id,categories" + (",v0,v1,v2,v3" if with_vectors else "")]
    for i in range(n):
        cats = ["rock", "jazz", "pop"][i % 3] + ("|live" if i % 5 == 0 else "")
        row = f"it{i},{cats}"
        if with_vectors:
            row += "," + ",".join(str(x) for x in vecs[i])
        lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return vecs


def test_item_table_catalogue(tmp_path):
    vecs = write_table(tmp_path / "items.csv")
    cat = RerankCatalogue.from_table(tmp_path / "items.csv")
    assert cat.rerank_only and cat.dim == 4 and cat.n_items == 40
    assert cat.category_names == ["rock", "live", "jazz", "pop"]
    assert cat.primary[:4].tolist() == [0, 2, 3, 0]
    assert set(cat.methods) >= {"dpp", "mmr", "ssd", "category-cap"}
    rng = np.random.default_rng(2)
    idx = rng.choice(40, 25, replace=False)
    sc = rng.random(25).round(3)
    ids = [f"it{i}" for i in idx]
    for method in ("dpp", "mmr", "ssd"):
        got = answer(cat, {"requests": [request(ids, sc, k=7, method=method, diversity=0.7)]})
        one = with_knob(registry.create("re-ranker", method), 0.7)
        pos = one.select(
            sc.astype(np.float32).astype(np.float64), 7, vectors=vecs[idx].astype(np.float32)
        )
        assert ids_of(got[0]) == [ids[p] for p in pos]
    # every id must be in the table, vectors or not
    with pytest.raises(RerankError, match="requests.0.item_ids.*not in the item table"):
        parse_rerank({"requests": [request(["zz"], [1.0], vectors=[[0, 0, 0, 1]])]}, cat, **LIMITS)


def test_item_table_without_vectors_uses_category_indicators(tmp_path):
    write_table(tmp_path / "items.csv", with_vectors=False)
    cat = RerankCatalogue.from_table(tmp_path / "items.csv")
    v = cat.rerankers["mmr"].item_vectors_
    assert cat.dim == 4
    assert v[0].tolist() == [1, 1, 0, 0] and v[1].tolist() == [0, 0, 1, 0]
    # at knob 1 MMR never repeats a category while an unseen one is left (cosine 0 vs > 0)
    ids = [f"it{i}" for i in (3, 6, 9, 1, 2)]  # rock rock rock jazz pop
    got = answer(
        cat, {"requests": [request(ids, [5, 4, 3, 2, 1], k=3, method="mmr", diversity=1.0)]}
    )
    assert ids_of(got[0]) == ["it3", "it1", "it2"]


@pytest.mark.parametrize(
    "text,what",
    [
        ("name,categories\na,x\n", "no id column"),
        ("item_id,categories\na,x\na,y\n", "repeated"),
        ("item_id,categories\na b,x\n", "breaks"),
        ("item_id,v0,v2\na,1,2\n", "v0 … v1"),
        ("item_id,v0\na,nan\n", "NaN or infinite"),
        ("item_id,title\na,x\n", "needs categories or vector columns"),
    ],
)
def test_bad_item_tables(tmp_path, text, what):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ValueError, match=what):
        RerankCatalogue.from_table(tmp_path / "t.csv")


# ---------------------------------------------------------------------------- HTTP
def test_rerank_only_server(tmp_path):
    write_table(tmp_path / "items.csv")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [PY, "-m", "divrec.cli.main", "serve", "--items", str(tmp_path / "items.csv")]
    proc = subprocess.Popen(
        cmd + ["--port", str(port), "--max-candidates", "30"],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(url, lambda: proc.poll() is None, timeout=120)
        with httpx.Client(base_url=url, timeout=30) as http:
            ready = http.get("/health/ready").json()
            assert ready["mode"] == "rerank-only" and ready["n_items"] == 40
            ids = [f"it{i}" for i in range(20)]
            sc = np.linspace(2, 1, 20).round(3).tolist()
            doc = {"requests": [request(ids, sc, k=5, diversity=0.5, method="dpp")]}
            r = http.post("/rerank", json=doc)
            assert r.status_code == 200
            cat = RerankCatalogue.from_table(tmp_path / "items.csv")
            assert r.json()["results"] == answer(cat, doc)
            # NaN is not JSON, but Python clients send it: 422 naming the field, not 400
            body = json.dumps({"requests": [doc["requests"][0], request(ids[:2], [1.0, math.nan])]})
            r = http.post("/rerank", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422
            assert r.json()["error"].startswith("field 'requests.1.scores': NaN or infinite")
            r = http.post("/rerank", json={"requests": [request(ids * 2, sc * 2)]})
            assert r.status_code == 422 and "requests.0.item_ids" in r.json()["error"]
            r = http.post(
                "/rerank", json={"requests": [request([f"it{i}" for i in range(31)], [1] * 31)]}
            )
            assert r.status_code == 422 and "at most 30" in r.json()["error"]
            # no model: /recommend and the other model endpoints are a clear 404
            for method, path, body in (
                ("GET", "/recommend/u1", None),
                ("POST", "/recommend", {"history": ["it1"]}),
                ("GET", "/similar/it1", None),
            ):
                r = http.request(method, path, json=body)
                assert r.status_code == 404 and "re-rank-only mode" in r.json()["error"]
            r = http.post("/feedback", json={"events": []}, headers={"X-API-Key": API_KEY})
            assert r.status_code == 404
            assert "divrec_requests_total" in http.get("/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_model_server_rerank(tmp_path_factory, tmp_path):
    model = shared_model(tmp_path_factory)
    srv = Server(model, tmp_path / "events.sqlite")
    try:
        cat = RerankCatalogue.from_bundle(ModelBundle.load(model))
        ids = cat.item_ids[5:45]
        sc = np.linspace(1, 0, 40).round(4).tolist()
        doc = {
            "requests": [
                request(ids, sc, k=10, method="dpp", diversity=0.5),
                request(ids, sc, k=10, method="mmr", diversity=0.9),
                request(ids[:3], sc[:3], k=10, method="ssd", diversity=0.2),
            ]
        }
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            r = http.post("/rerank", json=doc)
            assert r.status_code == 200
            assert r.json()["results"] == answer(cat, doc)
            assert len(r.json()["results"][2]["items"]) == 3  # k above N: all of them
            r = http.post("/rerank", json={"requests": [request(["nope"], [1.0])]})
            assert r.status_code == 422
            assert "requests.0.item_ids" in r.json()["error"] and "vectors" in r.json()["error"]
            # constraints and explanations on /recommend (GET query parameters, POST body)
            g = cat.category_names[0]
            uid = cat.bundle.user_ids[0]
            r = http.get(
                f"/recommend/{uid}", params={"n": 6, "max_count": f"{g}:1", "explain": "true"}
            )
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert sum(it["categories"][:1] == [g] for it in items) <= 1
            assert all("explanation" in it for it in items)
            r = http.get(f"/recommend/{uid}", params={"max_count": "nope:1"})
            assert r.status_code == 422
            assert r.json()["error"].startswith("field 'constraints.max_count.nope': unknown")
            r = http.get(f"/recommend/{uid}", params={"pins": f"{ids[0]}:0,{ids[1]}:0"})
            assert r.status_code == 422 and "pinned twice" in r.json()["error"]
            body = {"history": [ids[0]], "n": 5, "constraints": {"exclude": [ids[1]]}}
            r = http.post("/recommend", json={**body, "explain": True})
            assert r.status_code == 200 and ids[1] not in [
                it["item_id"] for it in r.json()["items"]
            ]
            body["constraints"] = {"boosts": {ids[1]: float("nan")}}
            r = http.post(
                "/recommend", content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"].startswith(f"field 'constraints.boosts.{ids[1]}'")
            r = http.post("/recommend", json={**body, "constraints": {}, "explore": 1.0})
            assert r.status_code == 422 and "explore" in r.json()["error"]
            # calibration: any registered re-ranker is a method of /recommend too
            r = http.get(f"/recommend/{uid}", params={"method": "calibrated", "diversity": 0.8})
            assert r.status_code == 200, r.text
            assert r.json()["method"] == "calibrated" and len(r.json()["items"]) == 10
            assert "calibrated" in http.get("/health/ready").json()["methods"]
            r = http.get(f"/recommend/{uid}", params={"method": "nope"})
            assert r.status_code == 422 and r.json()["error"].startswith("field 'method'")
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "args,what",
    [
        ([], "either --model-dir"),
        (["--items", "ITEMS", "--model-dir", "ITEMS"], "either --model-dir"),
        (["--items", "MISSING"], "no such file"),
        (["--items", "BAD"], "no id column"),
        (["--items", "ITEMS", "--max-candidates", "0"], "--max-candidates"),
    ],
)
def test_cli_refuses_bad_rerank_only_starts(tmp_path, args, what):
    write_table(tmp_path / "items.csv")
    (tmp_path / "bad.csv").write_text("name\nx\n")
    paths = {
        "ITEMS": tmp_path / "items.csv",
        "MISSING": tmp_path / "no.csv",
        "BAD": tmp_path / "bad.csv",
    }
    args = [str(paths.get(a, a)) for a in args]
    res = subprocess.run(
        [PY, "-m", "divrec.cli.main", "serve", *args, "--port", str(free_port())],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], res.stderr


# ---------------------------------------------------------------------------- constraints
def test_category_names_map_to_the_training_codes(cat):
    """Names → the re-rankers' codes, checked against the regenerated training data."""
    from divrec.data.synthetic import SyntheticConfig, make_synthetic

    data = make_synthetic(SyntheticConfig(**{**SYNTHETIC, "seed": CONFIG["seed"]})).interactions
    names = list(data.category_names)
    prim = data.primary_category()
    for i in range(cat.n_items):
        if prim[i] >= 0:
            assert cat.category_code[names[prim[i]]] == prim[i]
            assert cat.primary[i] == prim[i]


def test_rerank_constraints_equal_the_library_call(model, cat):
    from divrec.data.constraints import Constraints

    rng = np.random.default_rng(3)
    idx = rng.choice(cat.n_items, 40, replace=False)
    sc = rng.random(40).round(4)
    ids = [cat.item_ids[i] for i in idx]
    top = cat.primary[idx[np.argmax(sc)]]  # the best item's category, capped at 1
    top_name = next(g for g, c in cat.category_code.items() if c == top)
    rules = {
        "max_count": {top_name: 1},
        "pins": {ids[7]: 0},
        "boosts": {ids[3]: 0.25},
        "exclude": [ids[int(np.argsort(-sc)[1])]],
    }
    for method in ("mmr", "dpp", "ssd"):
        got = answer(
            cat,
            {"requests": [request(ids, sc, k=8, method=method, diversity=0.4, constraints=rules)]},
        )
        c = Constraints(
            max_count={int(top): 1},
            pins={int(idx[7]): 0},
            boosts={int(idx[3]): 0.25},
            exclude=[int(idx[int(np.argsort(-sc)[1])])],
        )
        ref = loaded_reranker(model, method)
        q = Query(users=[-1], history=[[]], diversity=[0.4], constraints=c)
        want = ref(q, Candidates(idx[None], sc[None]), 8).ids[0]
        lst = ids_of(got[0])
        assert lst == [cat.item_ids[i] for i in want if i >= 0]
        # the rules, counted by hand
        assert lst[0] == ids[7]
        assert rules["exclude"][0] not in lst
        assert sum(cat.primary[cat.item_index[x]] == top for x in lst) <= 1


def test_rules_in_the_request_space_equal_the_catalogue_space(cat):
    """Request vectors equal to the fitted ones (and the catalogue's categories): the same
    constrained list as without vectors; rules on items map to their positions."""
    rng = np.random.default_rng(6)
    idx = rng.choice(cat.n_items, 30, replace=False)
    sc = rng.random(30).round(4)
    ids = [cat.item_ids[i] for i in idx]
    g = next(n for n, c in cat.category_code.items() if c == cat.primary[idx[0]])
    codes, counts = np.unique(
        cat.primary[idx][cat.primary[idx] != cat.primary[idx[0]]], return_counts=True
    )
    h = next(n for n, c in cat.category_code.items() if c == codes[np.argmax(counts)])
    assert counts.max() >= 2
    rules = {
        "max_count": {g: 1},
        "pins": {ids[9]: 2},
        "boosts": {ids[4]: 0.3},
        "exclude": [ids[1], cat.item_ids[int(np.setdiff1d(np.arange(cat.n_items), idx)[0])]],
        "group": "category",
        "protected": h,
        "min_share": 0.2,
    }
    for method in ("mmr", "dpp", "ssd"):
        vecs = cat.rerankers[method].item_vectors_[idx].tolist()
        base = request(ids, sc, k=10, method=method, diversity=0.5, constraints=rules)
        plain = answer(cat, {"requests": [base]})[0]
        own = answer(cat, {"requests": [{**base, "vectors": vecs}]})[0]
        assert ids_of(own) == ids_of(plain)
        lst = ids_of(own)
        assert lst[2] == ids[9] and ids[1] not in lst
        assert sum(cat.primary[cat.item_index[x]] == cat.category_code[g] for x in lst) <= 1
        assert sum(cat.primary[cat.item_index[x]] == cat.category_code[h] for x in lst) >= 2
    outside = cat.item_ids[int(np.setdiff1d(np.arange(cat.n_items), idx)[0])]
    bad = {**base, "vectors": vecs, "constraints": {"pins": {outside: 0}}}
    with pytest.raises(RerankError, match=f"requests.0.constraints.pins.{outside}': not a cand"):
        answer(cat, {"requests": [bad]})


def test_explanations_of_a_rerank(cat):
    rng = np.random.default_rng(4)
    idx = rng.choice(cat.n_items, 25, replace=False)
    sc = rng.random(25).round(4)
    ids = [cat.item_ids[i] for i in idx]
    got = answer(cat, {"requests": [request(ids, sc, k=5, method="mmr", explain=True)]})[0]
    order = np.argsort(-sc.astype(np.float32), kind="stable")
    for r, entry in enumerate(got["items"]):
        e = entry["explanation"]
        p = ids.index(entry["item_id"])
        assert e["rank_before"] == int(np.flatnonzero(order == p)[0]) + 1
        assert e["relevance"] == entry["score"]
        assert math.isclose(e["gain"], e["relevance_part"] + e["diversity_part"], abs_tol=1e-12)
        if r == 0:
            assert e["penalized_by"] is None
        else:
            assert e["penalized_by"] in ids_of(got)[:r]


def _bad_rules(cat):
    ids = cat.item_ids[:5]
    g = cat.category_names[0]
    return [
        ({"max_count": {"nope": 1}}, "constraints.max_count.nope", "unknown category"),
        ({"allow_categories": ["nope"]}, "constraints.allow_categories", "unknown category"),
        ({"min_count": {g: 3}, "max_count": {g: 1}}, f"constraints.min_count.{g}", "exceeds"),
        ({"max_count": {g: -1}}, f"constraints.max_count.{g}", ">= 0"),
        ({"pins": {ids[0]: 5}}, f"constraints.pins.{ids[0]}", "[0, 4]"),
        ({"pins": {ids[0]: 1, ids[1]: 1}}, f"constraints.pins.{ids[1]}", "pinned twice"),
        ({"pins": {"nope": 0}}, "constraints.pins.nope", "unknown item"),
        ({"boosts": {ids[0]: math.nan}}, f"constraints.boosts.{ids[0]}", "finite"),
        ({"boosts": {ids[0]: math.inf}}, f"constraints.boosts.{ids[0]}", "finite"),
        ({"exclude": ["nope"]}, "constraints.exclude", "unknown item"),
        (
            {"group": "provider", "protected": "x", "min_share": 0.5},
            "constraints.group",
            "provider",
        ),
        (
            {"group": "category", "protected": "nope", "min_share": 0.5},
            "constraints.protected",
            "unknown group",
        ),
        ({"group": "category"}, "constraints.protected", "go together"),
        ({"colour": 1}, "constraints.colour", "unknown constraint"),
    ]


def test_bad_constraints_name_the_field(cat):
    ids = cat.item_ids[:5]
    for rules, where, what in _bad_rules(cat):
        with pytest.raises(RerankError) as err:
            parse_rerank(
                {"requests": [request(ids, [1] * 5, k=5, constraints=rules)]}, cat, **LIMITS
            )
        msg = str(err.value)
        assert f"field 'requests.0.{where}'" in msg and what in msg, msg
    # a knob-less method: refused, not ignored
    with pytest.raises(RerankError, match="requests.0.constraints.*takes no constraints"):
        parse_rerank(
            {"requests": [request(ids, [1] * 5, method="category-cap", constraints={})]},
            cat,
            **LIMITS,
        )
    # infeasible: minimums above what the candidates hold, named with the category
    g = cat.category_names[0]
    few = [i for i in cat.item_ids if cat.primary[cat.item_index[i]] != cat.category_code[g]][:6]
    items = parse_rerank(
        {"requests": [request(few, [1] * 6, k=4, constraints={"min_count": {g: 1}})]},
        cat,
        **LIMITS,
    )
    with pytest.raises(RerankError, match=f"requests.0.constraints.*min_count.*{g!r}"):
        run_rerank(cat, items)
    items[0].constraints = type(items[0].constraints)(
        min_count={cat.category_code[g]: 1}, best_effort=True
    )
    res = run_rerank(cat, items)[0]
    assert len(res["items"]) == 4 and res["violations"][0]["field"] == "min_count"


def test_service_lists_keep_the_rules(model, cat):
    from divrec.serve.constraints import constraints_from_json
    from divrec.serve.service import RecRequest, Service

    svc = Service(cat.bundle)
    uid = cat.bundle.user_ids[2]
    free = svc.recommend([RecRequest(uid, 30, 0.5, "dpp")])[0]["items"]
    g = free[0]["categories"][0]
    pin = free[20]["item_id"]
    raw = {"max_count": {g: 1}, "pins": {pin: 1}, "exclude": [free[1]["item_id"]]}
    rules = constraints_from_json(raw, "constraints", cat, 10)
    got = svc.recommend(
        [
            RecRequest(uid, 10, 0.5, "dpp", constraints=rules, explain=True),
            RecRequest(uid, 10, 0.5, "dpp"),  # the same batch, no rules
        ]
    )
    lst = [it["item_id"] for it in got[0]["items"]]
    assert len(lst) == 10 and lst[1] == pin and free[1]["item_id"] not in lst
    assert sum(it["categories"][:1] == [g] for it in got[0]["items"]) <= 1
    assert got[0]["items"][1]["explanation"]["rule"] == "pin"
    assert [it["item_id"] for it in got[1]["items"]] == [it["item_id"] for it in free[:10]]
    assert "explanation" not in got[1]["items"][0]
    # equal to the served pipeline called with the same Query
    q = Query(users=[2], diversity=[0.5], constraints=[rules])
    want = cat.bundle.pipelines["dpp"](q, None, 10).ids[0]
    assert lst == [cat.item_ids[i] for i in want]


def test_rerank_takes_the_key_and_the_limits(tmp_path):
    """In-process (no socket): --auth-all guards /rerank; --max-body and the batch limit: 413."""
    import os
    from pathlib import Path

    from fastapi.testclient import TestClient

    from divrec.serve.app import AppConfig, create_app

    write_table(tmp_path / "items.csv")
    config = AppConfig(
        model_dir=None,
        db=Path(os.devnull),
        api_key=API_KEY,
        auth_all=True,
        items=tmp_path / "items.csv",
        max_body=600,
        max_rerank_batch=2,
        allowed_hosts=("testserver",),
    )
    doc = {"requests": [request(["it1", "it2", "it3"], [3, 2, 1], k=2)]}
    with TestClient(create_app(config)) as http:
        assert http.post("/rerank", json=doc).status_code == 401
        r = http.post("/rerank", json=doc, headers={"X-API-Key": API_KEY})
        assert r.status_code == 200 and ids_of(r.json()["results"][0]) == ["it1", "it2"]
        big = {"requests": [request([f"it{i}" for i in range(40)], [0.123456789] * 40)] * 2}
        r = http.post("/rerank", json=big, headers={"X-API-Key": API_KEY})
        assert r.status_code == 413 and "larger than 600 bytes" in r.json()["error"]
        r = http.post(
            "/rerank", json={"requests": doc["requests"] * 3}, headers={"X-API-Key": API_KEY}
        )
        assert r.status_code == 413 and "at most 2 requests" in r.json()["error"]
        metrics = http.get("/metrics", headers={"X-API-Key": API_KEY}).text
        assert 'divrec_requests_total{endpoint="/rerank",status="200"} 1.0' in metrics
