"""The light core: importing the core packages never imports torch, faiss or implicit, and a
model whose optional library is missing fails with one line naming the extra.

Each check runs in a fresh interpreter (`sys.modules` of this test process is shared with every
other test). A missing library is simulated with ``sys.modules[name] = None``, which makes
``import name`` raise `ModuleNotFoundError` exactly as an absent package does; in the core-only
CI environment (.ci/core_only.sh) the libraries are really absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "faiss", "implicit")
CORE = ("divrec", "divrec.rerank", "divrec.metrics", "divrec.pipeline", "divrec.serve")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


MORE = (
    "divrec.data",
    "divrec.ranking",
    "divrec.registry",
    "divrec.evaluation",
    "divrec.experiment",
    "divrec.simulate",
    "divrec.cli.main",
    "divrec.pipeline.frames",
    "divrec.adapters",
)


@pytest.mark.parametrize("module", CORE + MORE)
def test_core_import_pulls_no_heavy_library(module):
    proc = _run(
        f"""
        import json, sys
        import {module}
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_core_works_with_heavy_libraries_blocked():
    """Re-ranking, metrics and a pipeline run end to end while torch/faiss/implicit cannot be
    imported; the selections equal the ones computed here by hand."""
    proc = _run(
        f"""
        import sys
        for name in {HEAVY!r}:
            sys.modules[name] = None
        import numpy as np
        from divrec.metrics import ilad, item_coverage
        from divrec.rerank import MMR
        rel = np.array([1.0, 0.9, 0.8])
        vec = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        # MMR, lambda 0.5, relevance min-max scaled to (1, 0.5, 0): first the top item 0, then
        # item 2 (orthogonal to item 0: 0.5*0 - 0.5*0 = 0) beats item 1 (0.5*0.5 - 0.5*1 < 0)
        picks = MMR(lambda_=0.5).select(rel, 2, vectors=vec)
        print(picks.tolist())
        print(float(ilad(np.array([picks]), vec)[0]))
        print(float(item_coverage(np.array([picks]), 3)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "[0, 2]"
    assert float(lines[1]) == pytest.approx(1.0)  # cosine distance of orthogonal vectors
    assert float(lines[2]) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("blocked", "call", "extra"),
    [
        ("torch", "registry.resolve('model', 'tr')", "models"),
        ("torch", "registry.create('model', 'neumf')", "models"),
        ("torch", "__import__('divrec.ranking', fromlist=['x']).CDMRanker", "models"),
        ("faiss", "__import__('divrec.retrieval.ann', fromlist=['x']).AnnIndex().fit(v)", "ann"),
    ],
)
def test_missing_extra_is_one_line_naming_it(blocked, call, extra):
    proc = _run(
        f"""
        import sys
        sys.modules[{blocked!r}] = None
        import numpy as np
        from divrec import registry
        from divrec._extras import MissingExtraError
        v = np.eye(4, dtype=np.float32)
        try:
            {call}
        except MissingExtraError as err:
            assert isinstance(err, ImportError) and isinstance(err, ValueError)
            print(err)
        else:
            raise SystemExit("no error")
        """
    )
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout.strip()
    assert "\n" not in message
    assert f"divrec[{extra}]" in message and blocked in message


def test_missing_implicit_at_fit_names_the_models_extra():
    proc = _run(
        """
        import sys
        sys.modules["implicit"] = None
        import scipy.sparse as sp
        from divrec import registry
        model = registry.create("model", "ials", {"factors": "2", "iterations": "1"})
        try:
            model.fit(sp.csr_matrix([[1.0, 0.0], [0.0, 1.0]]))
        except ImportError as err:
            print(err)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'divrec[models]'" in proc.stdout
    assert "iALS needs implicit" in proc.stdout


def test_cli_reports_missing_extra_as_one_line(tmp_path):
    """`divrec evaluate --model tr` without torch: `divrec: error: ...` and exit code 2."""
    rows = [f"{u},{i},{(u + i) % 5 + 1}" for u in range(5) for i in range(6)]
    data = tmp_path / "tiny.csv"
    data.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    proc = _run(
        f"""
        import sys
        sys.modules["torch"] = None
        from divrec.cli.main import _entry
        sys.argv = ["divrec", "evaluate", "--dataset", {str(data)!r}, "--model", "tr"]
        _entry()
        """
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("divrec: error:") and "divrec[models]" in err and "\n" not in err


def test_require_names_the_extra_and_passes_through_present_modules():
    from divrec._extras import MissingExtraError, require

    assert require("json") is json
    with pytest.raises(MissingExtraError, match=r"\[docs\] extra") as info:
        require("divrec_no_such_module", extra="docs")
    assert "\n" not in str(info.value)
    # an unknown module without a declared extra is an ordinary import error
    with pytest.raises(ModuleNotFoundError) as plain:
        require("divrec_no_such_module")
    assert not isinstance(plain.value, MissingExtraError)
