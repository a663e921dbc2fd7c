"""The generated claims of the CDM and PURS reproductions (`reproductions/claims.py`) judge
hand-made result dictionaries whose answers are known; no training runs.

`reproductions/` is not a package the tests import (the project's rule); the one file is
loaded by its path (it needs only numpy and divrec).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "reproductions" / "claims.py"
_spec = importlib.util.spec_from_file_location("_reproduction_claims", _PATH)
claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claims)
cdm_claims, compare, purs_claims, verdict = (
    claims.cdm_claims,
    claims.compare,
    claims.purs_claims,
    claims.verdict,
)


def _row(**metrics):
    return {
        m: {"mean": sum(v) / len(v), "ci": 0.0, "per_seed": list(v)} for m, v in metrics.items()
    }


def _line(lines, start):
    hits = [x for x in lines if x.startswith(start)]
    assert len(hits) == 1, (start, lines)
    return hits[0]


@pytest.fixture()
def cdm():
    three = {
        "CDM": _row(recall=(0.10, 0.11, 0.12), ilad=(0.50, 0.60, 0.40)),
        "DCN": _row(recall=(0.05, 0.06, 0.07), ilad=(0.45, 0.65, 0.42)),
        "MMR": _row(recall=(0.13, 0.14, 0.15), ilad=(0.40, 0.50, 0.30)),
        "Popularity": _row(recall=(0.08, 0.08, 0.08), ilad=(0.3, 0.3, 0.3)),
    }
    # metric names as in the tables
    rows = {}
    for label, r in three.items():
        rows[label] = {
            "recall@20": r["recall"],
            "mrr@20": r["recall"],
            "ilad_svd@20": r["ilad"],
            "ilad_genre@20": r["ilad"],
        }
    agree = {
        "DCN (backbone alone)": {"mean": 0.9, "ci": 0.0, "per_seed": [0.90, 0.91, 0.89]},
        "CDM": {"mean": 0.7, "ci": 0.0, "per_seed": [0.70, 0.72, 0.68]},
    }
    return {"rows": rows, "teacher_agreement@20": agree, "teacher_only_recovered@20": {}}


def test_cdm_verdicts_on_known_answers(cdm):
    lines = cdm_claims(cdm, n_candidates=100, diagnosis=None)
    assert "holds (" in _line(lines, "- (a) CDM above DCN on recall@20:")
    assert "does not hold (lower" in _line(lines, "- (a) CDM above MMR on recall@20:")
    # +0.0067 with per-seed differences 0.05, -0.05, -0.02: within the interval
    assert "within the seed-level interval" in _line(lines, "- (a) CDM above DCN on ilad_svd@20:")
    assert "holds (" in _line(lines, "- (a) CDM above MMR on ilad_svd@20:")
    # accurate AND diverse: fails against MMR (less accurate)
    assert ": does not hold" in _line(lines, "- (b) CDM more accurate and more diverse than MMR")
    assert "not testable here" in _line(lines, "- (b) CDM more accurate and more diverse than DPP")
    assert "does not hold (lower" in _line(lines, "- (d) distillation: CDM agrees")
    pop = _line(lines, "- (e) every trained row above Popularity on recall@20:")
    # Popularity (0.08) beats DCN (0.06) but not CDM (0.11) or MMR (0.14)
    assert ": does not hold" in pop and "beats DCN" in pop and "CDM (" not in pop
    assert "not testable here (no Random row)" in _line(lines, "- (e) trained rows above Random")


def test_cdm_validation_choices_and_measured_causes(cdm):
    cdm["validation_choice"] = [
        {"lambda": 0.25, "gamma": 2.0, "student_setting": "refresh"},
        None,  # a seed without the validation row
        {"lambda": 0.1, "gamma": 0.5, "student_setting": "frozen"},
    ]
    # CDM's ILAD is above MMR's in the fixture: no MMR cause; give the moves
    cdm["teacher_only_recovered@20"] = {
        "CDM": {"mean": 0.25, "ci": 0.0, "per_seed": [0.25, 0.25, 0.25]},
        "-InfoNCE": {"mean": 0.24, "ci": 0.0, "per_seed": [0.24, 0.24, 0.24]},
    }
    lines = cdm_claims(cdm, n_candidates=100, diagnosis=None, gammas=(0.0, 0.5, 2.0))
    chosen = _line(lines, "- Chosen on the validation requests")
    assert "seed 0: λ = 0.25, γ = 2.0, refresh; seed 2: λ = 0.1, γ = 0.5, frozen." in chosen
    cdm["seeds"] = [5, 6, 7]
    lines = cdm_claims(cdm, n_candidates=100, diagnosis=None, gammas=(0.0, 0.5, 2.0))
    assert "seed 5: λ = 0.25" in _line(lines, "- Chosen on the validation requests")
    assert "in 1 of 2 seeds" in _line(lines, "  γ is the grid's largest value (2.0)")
    assert "  No wider grid was run for this data set." in lines
    assert not any("student carries only part" in x for x in lines)
    # no ablation row in the fixture: every (c) verdict is "not testable", none holds
    assert "-InfoNCE 0.240 vs CDM 0.250" in _line(lines, "  Measured cause: the ablated")
    # now CDM below MMR on ILAD: the distillation cause follows (b)
    for m in ("ilad_svd@20", "ilad_genre@20"):
        cdm["rows"]["MMR"][m] = _row(x=(0.70, 0.80, 0.60))["x"]
    lines = cdm_claims(cdm, n_candidates=100, diagnosis=None, gammas=(0.0, 0.5, 4.0))
    cause = _line(lines, "  Measured cause: the student carries only part")
    assert "holds 0.700 of its teacher's" in cause and "(the backbone alone 0.900)" in cause
    assert "recovers 0.250" in cause
    assert not any(x.startswith("  γ is the grid's largest") for x in lines)


def test_cdm_one_seed_is_not_testable():
    rows = {"CDM": _row(r=(0.2,)), "DCN": _row(r=(0.1,))}
    v = verdict(compare(rows, "CDM", "DCN", "r"))
    assert v.startswith("not testable here (one seed") and "higher" in v
    rows2 = {"CDM": _row(r=(0.2, 0.21, 0.22)), "DCN": _row(r=(0.1, 0.1, 0.11))}
    assert verdict(compare(rows2, "CDM", "DCN", "r")).startswith("holds")
    assert verdict(compare(rows2, "DCN", "CDM", "r")).startswith("does not hold (lower")


def _purs(seed_level):
    metrics = ("AUC", "HR@10", "Unexp", "Unexp-warm", "Unexp-own", "Coverage", "Cold@10")
    base = {m: (0.5, 0.01) for m in metrics}
    table = {
        "PURS": {**base, "AUC": (0.80, 0.01), "HR@10": (0.60, 0.01), "Unexp": (1.2, 0.01)},
        "DIN": {**base, "AUC": (0.70, 0.01), "HR@10": (0.59, 0.01), "Unexp": (1.1, 0.01)},
        "SPR": {**base, "AUC": (0.75, 0.01), "HR@10": (0.50, 0.01), "Unexp": (1.0, 0.01)},
        "PURS-Variation 4": {**base, "AUC": (0.81, 0.01), "HR@10": (0.55, 0.01)},
        "Popularity": {**base, "AUC": (0.78, 0.0), "HR@10": (0.65, 0.0), "Unexp": (0.9, 0.0)},
    }
    return {"table": table, "seeds_done": 5, "significance": {"seed_level": seed_level}}


def test_purs_verdicts_on_known_answers():
    sl = {
        "AUC: PURS vs DIN": {"diff": 0.10, "p": 0.001},
        "AUC: PURS vs SPR": {"diff": 0.05, "p": 0.01},
        "HR@10: PURS vs DIN": {"diff": 0.01, "p": 0.40},
        "HR@10: PURS vs SPR": {"diff": 0.10, "p": 0.001},
        "Unexp: PURS vs DIN": {"diff": 0.1, "p": 0.01},
        "Unexp: PURS vs SPR": {"diff": 0.2, "p": 0.001},
        "Unexp-warm: PURS vs DIN": {"diff": 0.0, "p": 0.9},
        "AUC: PURS vs PURS-Variation 4": {"diff": -0.01, "p": 0.02},
        "AUC: PURS vs Popularity": {"diff": 0.02, "p": 0.03},
        "HR@10: PURS vs Popularity": {"diff": -0.05, "p": 0.001},
    }
    lines = purs_claims(_purs(sl))
    assert ": holds (" in _line(lines, "- PURS higher AUC than every baseline:")
    hr = _line(lines, "- PURS higher HR@10 than every baseline:")
    assert ": does not hold" in hr and "not significant: DIN" in hr
    # no stored test for Coverage: not judged
    assert "not testable here" in _line(lines, "- PURS higher coverage than every baseline:")
    # the Unexp gain over DIN is gone on warm items: the cold-item cause is stated
    assert any("Measured cause" in x and "cold items" in x for x in lines)
    t3 = _line(lines, "- Table 3: Variations 1–5 below PURS on AUC:")
    assert ": does not hold" in t3 and "PURS lower (p < 0.05): PURS-Variation 4" in t3
    assert ": holds (" in _line(lines, "- Sanity: PURS above Popularity on AUC:")
    pop_hr = _line(lines, "- Sanity: PURS above Popularity on HR@10:")
    assert ": does not hold" in pop_hr and "beats: PURS 0.6000, PURS-Variation 4" in pop_hr


def test_purs_too_few_seeds_is_not_testable():
    lines = purs_claims(_purs({"note": "2 seed(s): no seed-level test"}))
    line = _line(lines, "- PURS higher AUC than every baseline:")
    assert "not testable here (2 seed(s): no seed-level test)" in line


@pytest.mark.parametrize(("diff", "p", "shown"), [(0.001, 0.5, True), (0.05, 0.01, False)])
def test_purs_variation_4_tells_whether_the_unexpectedness_term_moves_the_lists(diff, p, shown):
    sl = {
        "Unexp: PURS vs DIN": {"diff": 0.0, "p": 0.9},
        "Unexp-warm: PURS vs DIN": {"diff": 0.0, "p": 0.9},
        "Unexp: PURS vs PURS-Variation 4": {"diff": diff, "p": p},
    }
    lines = purs_claims(_purs(sl))
    hits = [x for x in lines if "without its unexpectedness term (Variation 4)" in x]
    assert bool(hits) == shown
    if shown:
        assert f"changes by {-diff:+.4f} (p = {p:.2g})" in hits[0]


def test_cdm_gamma_probe_is_quoted_beside_the_edge_note(cdm, tmp_path):
    probe = tmp_path / "probe.json"
    unit = {
        "seed": 3, "grid_wide": [0.0, 2.0, 8.0], "grid_base": [0.0, 2.0],
        "choice_base": {"lambda": 0.25, "gamma": 2.0, "student_setting": "refresh"},
        "choice_wide": {"lambda": 0.5, "gamma": 8.0, "student_setting": "refresh"},
        "best_objective_by_gamma": {"0.0": 0.2, "2.0": 0.30, "8.0": 0.31},
        "test_base": {"recall@20": 0.080, "ilad_svd@20": 0.40},
        "test_wide": {"recall@20": 0.075, "ilad_svd@20": 0.42},
    }  # fmt: skip
    probe.write_text(json.dumps({"datasets": {"ml-1m": [unit]}}))
    cdm["validation_choice"] = [{"lambda": 0.25, "gamma": 2.0, "student_setting": "refresh"}]
    kw = dict(n_candidates=100, diagnosis=None, gammas=(0.0, 2.0), gamma_probe=probe)
    line = _line(cdm_claims(cdm, dataset="ml-1m", **kw), "  A wider grid (γ up to 8")
    assert "seed 3: γ 2.0 → 8.0 (objective 0.3000 → 0.3100)" in line
    assert "test recall@20 -0.0050, ILAD_svd@20 +0.0200" in line
    # another data set, or no probe file: the note says no wider grid was run
    absent = tmp_path / "absent.json"
    # (the last: the probe's own run, whose grid is no wider than the probe's)
    for gamma, other in (
        (2.0, dict(dataset="amazon-grocery")),
        (2.0, dict(dataset="ml-1m", gamma_probe=absent)),
        (8.0, dict(dataset="ml-1m", gammas=(0.0, 2.0, 8.0))),
    ):
        cdm["validation_choice"][0]["gamma"] = gamma
        lines = cdm_claims(cdm, **{**kw, **other})
        assert "  No wider grid was run for this data set." in lines
