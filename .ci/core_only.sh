#!/usr/bin/env bash
# Core-only check (issue 28): a fresh venv with the light core and the `serve` extra
# (`pip install '.[serve]'` with the constraints: no torch, faiss or implicit), then the
# re-rank, metrics, light-core, DataFrame and /rerank tests against that installed copy.
# Called by `make test`; pip's cache keeps it fast (wheels are reused, nothing is rebuilt
# but divrec's own wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${CORE_VENV:-build/ci/venv-core}
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --no-compile: no .pyc for every installed file up front (only what the tests import is
# compiled, on import); the wheels come from pip's cache
"$VENV/bin/pip" install -qq --no-compile -c constraints.txt ".[serve]" "pytest>=8" \
    "hypothesis>=6.100" "polars>=1"
installed=$(date +%s)
# the light core must not have brought the heavy libraries along
"$VENV/bin/python" - <<'PY'
import importlib.util
import sys

heavy = [m for m in ("torch", "faiss", "implicit") if importlib.util.find_spec(m) is not None]
if heavy:
    sys.exit(f"core-only install pulled in {', '.join(heavy)}")
PY
tests=(tests/rerank tests/metrics tests/test_light_core.py tests/pipeline/test_frames.py
    tests/pipeline/test_tutorial_candidates.py)
# src/ is not on the path (pytest adds only the repository root): the tests import the
# installed copy
# the property tests run at full example counts in the main suite beside this check; here
# they only need to show the torch-free install works (tests/conftest.py caps them)
DIVREC_MAX_EXAMPLES=20 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
# /rerank in re-rank-only mode (an item table, no trained model); the file's model-mode tests
# train an iALS retriever, which needs the `models` extra, and run in the main suite
if [[ -f tests/serve/test_serve_rerank.py ]]; then
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/serve/test_serve_rerank.py \
        -k "item_table or rerank_only or bad_item_tables"
fi
end=$(date +%s)
echo "core-only check: install $((installed - start)) s, tests $((end - installed)) s" \
    "(load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a))"
