#!/usr/bin/env bash
# The whole test suite from a fresh clone: a new virtual environment with the project, its test
# and CUDA extras at the versions last tested (scripts/constraints.txt), then two pytest
# processes (the CUDA simulator must own its process).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SYMGRAPH_VENV:-.venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -c scripts/constraints.txt -e ".[test,cuda]"
if ! command -v dot >/dev/null 2>&1; then
    echo "note: graphviz 'dot' not found; tests that render SVG will be skipped" >&2
fi
export SYMGRAPH_CACHE_DIR=${SYMGRAPH_CACHE_DIR:-$PWD/.cache/symgraph}
run_pytest() {  # pytest's exit code 5 (no tests collected) counts as a failure
    local rc=0
    "$VENV/bin/python" -m pytest "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: $*" >&2; return 1; fi
    return "$rc"
}
run_pytest -q -m "not cudasim" tests
NUMBA_ENABLE_CUDASIM=1 run_pytest -q -m cudasim tests
