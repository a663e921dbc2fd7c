"""`reproductions.cdm_gamma_probe`: a wider validation γ grid against the full run's, by hand."""

from __future__ import annotations

import json

import pytest

from reproductions.cdm_gamma_probe import compare_unit, main


def _unit(seed, dcn_recall, grid, choice, rec, ilad):
    m = lambda v: {"mean": v}  # noqa: E731
    return {
        "seed": seed,
        "dataset": "ml-1m",
        "results": {
            "DCN": {"recall@20": m(dcn_recall), "ilad_svd@20": m(0.4)},
            "CDM (validation-chosen)": {"recall@20": m(rec), "ilad_svd@20": m(ilad)},
        },
        "validation_choice": {**choice, "grid": grid},
    }


def _grid(objectives):
    return [{"lambda": lam, "gamma": g, "objective": o} for lam, g, o in objectives]


def test_compare_unit_by_hand():
    refresh = {"student_setting": "refresh"}
    base_grid = _grid([(0.1, 0.0, 0.2), (0.1, 2.0, 0.3)])
    wide_grid = _grid(
        [(0.1, 0.0, 0.2), (0.1, 2.0, 0.3), (0.1, 8.0, 0.25), (1.0, 8.0, 0.31), (0.5, 8.0, 0.28)]
    )
    base = _unit(0, 0.08, base_grid, {"lambda": 0.1, "gamma": 2.0, **refresh}, 0.079, 0.43)
    wide = _unit(0, 0.08, wide_grid, {"lambda": 1.0, "gamma": 8.0, **refresh}, 0.075, 0.44)
    u = compare_unit(wide, base)
    assert u["grid_base"] == [0.0, 2.0] and u["grid_wide"] == [0.0, 2.0, 8.0]
    # the best objective at each γ over every λ of the grid
    assert u["best_objective_by_gamma"] == {"0.0": 0.2, "2.0": 0.3, "8.0": 0.31}
    assert u["choice_wide"] == {"lambda": 1.0, "gamma": 8.0, "student_setting": "refresh"}
    assert u["test_base"] == {"recall@20": 0.079, "ilad_svd@20": 0.43}
    assert u["test_wide"] == {"recall@20": 0.075, "ilad_svd@20": 0.44}
    other = _unit(0, 0.07, base_grid, {"lambda": 0.1, "gamma": 2.0, **refresh}, 0.079, 0.43)
    with pytest.raises(ValueError, match="DCN rows differ"):
        compare_unit(wide, other)  # not the same unit


def test_missing_inputs_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--probe", str(tmp_path / "none")])
    assert e.value.code == 2 and "no seeds/cdm_*_seed*.json" in capsys.readouterr().err
    (tmp_path / "p" / "seeds").mkdir(parents=True)
    (tmp_path / "p" / "seeds" / "cdm_ml-1m_seed0.json").write_text(json.dumps({}))
    with pytest.raises(SystemExit) as e:
        main(["--probe", str(tmp_path / "p"), "--base", str(tmp_path / "b")])
    assert e.value.code == 2 and "no seeds/cdm_ml-1m_seed0.json" in capsys.readouterr().err
    assert not (tmp_path / "p" / "probe.json").exists()  # nothing written
