#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k distillation
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning tests "$@"
