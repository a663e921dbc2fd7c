"""The package structure: lower layers never import upper ones (function-level imports too).

data ← splitting ← metrics ← stages (retrieval, ranking, rerank) ← pipeline ← evaluation /
simulate / serve / spark ← cli. The top-level helpers (`persist`, `params`, `registry`,
`threads`, `hashing`, `atomic`) sit below everything; the registry names upper classes only as
strings.
"""

from __future__ import annotations

import ast
from pathlib import Path

import divrec

LEVEL = {
    "persist": 0, "params": 0, "threads": 0, "hashing": 0, "atomic": 0, "registry": 0, "stage": 0,
    "nn": 3,
    "testing": 6, "_version": 0,
    "data": 1, "splitting": 2, "metrics": 3,
    "retrieval": 4, "ranking": 4, "rerank": 4,
    "pipeline": 5,
    "evaluation": 6, "experiment": 6, "simulate": 6, "serve": 6, "spark": 6, "adapters": 6,
    "cli": 7,
}  # fmt: skip

ROOT = Path(divrec.__file__).parent


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "divrec" or len(parts) < 2:
        return None
    return parts[1]


def test_no_import_runs_back_up():
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        own = rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else None
        if own not in LEVEL:
            continue
        for module, line in _imports(path):
            target = _layer(module)
            if target is None or target not in LEVEL:
                continue
            if LEVEL[target] > LEVEL[own]:
                bad.append(f"{rel}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_every_subpackage_has_a_level():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LEVEL), packages - set(LEVEL)


def test_data_does_not_import_splitting():
    for path in (ROOT / "data").rglob("*.py"):
        for module, _ in _imports(path):
            assert not module.startswith("divrec.splitting"), path


def test_test_tree_mirrors_the_package():
    """Tests of a subpackage live in `tests/<subpackage>/`; package-wide contracts at the top."""
    tests = Path(__file__).parent
    dirs = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert dirs <= packages, dirs - packages
