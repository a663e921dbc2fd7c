#!/usr/bin/env bash
# The body of `make test` after ruff: pytest in the dev venv while the core-only check and the
# adapters check (each in a fresh venv of its own; their installs are mostly disk and network
# time) run beside it, then the API reference build. Every part runs to the end; the script
# fails if any part failed, and prints each side check's log.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
mkdir -p build/ci
.ci/core_only.sh > build/ci/core_only.log 2>&1 &
core=$!
.ci/adapters_check.sh > build/ci/adapters.log 2>&1 &
adapters=$!
# a side check never outlives this script (Ctrl-C, a CI time-out)
trap 'kill $core $adapters 2>/dev/null' EXIT
"$BIN/pytest"
rc_pytest=$?
wait $core
rc_core=$?
wait $adapters
rc_adapters=$?
echo "--- core-only check (.ci/core_only.sh): exit $rc_core"
cat build/ci/core_only.log
echo "--- adapters check (.ci/adapters_check.sh): exit $rc_adapters"
cat build/ci/adapters.log
"$BIN/python" docs/build_api.py --out build/docs/api
rc_docs=$?
echo "make test: pytest $rc_pytest, core-only $rc_core, adapters $rc_adapters, docs $rc_docs"
[[ $rc_pytest -eq 0 && $rc_core -eq 0 && $rc_adapters -eq 0 && $rc_docs -eq 0 ]]
