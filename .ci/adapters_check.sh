#!/usr/bin/env bash
# Adapter check (issue 28): divrec's LensKit and RecTools adapters against the real libraries.
# Both pin pandas < 3 (RecTools also numpy < 2 on Python 3.11), so they get their own venv:
# torch==2.13.0 first (LensKit needs torch; pinned so nothing pulls a CUDA build), then
# divrec with the `adapters` extra. The venv is rebuilt when pyproject.toml or constraints.txt
# change; otherwise only divrec's own wheel is reinstalled. Called by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${ADAPTERS_VENV:-build/ci/venv-adapters}
start=$(date +%s)
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [[ ! -f $VENV/.stamp || $(cat "$VENV/.stamp") != "$stamp" ]]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -qq --upgrade pip
    "$VENV/bin/pip" install -qq -c constraints.txt torch==2.13.0
    "$VENV/bin/pip" install -qq -c constraints.txt ".[adapters]" "pytest>=8" "hypothesis>=6.100"
    echo "$stamp" > "$VENV/.stamp"
else
    "$VENV/bin/pip" install -qq --no-deps --force-reinstall .
fi
installed=$(date +%s)
"$VENV/bin/python" -c "import lenskit, rectools; print('lenskit', lenskit.__version__, \
'rectools', rectools.__version__)"
# src/ is not on the path (pytest adds only the repository root): the installed copy is tested
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/adapters
end=$(date +%s)
echo "adapters check: install $((installed - start)) s, tests $((end - installed)) s"
