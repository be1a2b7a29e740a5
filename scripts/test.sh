#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the tests:
#   1. the pytest suite (extra arguments go to pytest, e.g. scripts/test.sh -k distillation);
#   2. `bazel test //...` (every test file is also a py_test; the BUILD drift check is one);
#   3. `bazel run //fedcmi_tff:train` against `python -m fedcmi_tff.train`: same metrics.
# FEDCMI_SKIP_BAZEL=1 runs step 1 only.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
export TF_CPP_MIN_LOG_LEVEL=2
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -q \
  -p no:cacheprovider -W ignore::DeprecationWarning tests "$@"
if [[ "${FEDCMI_SKIP_BAZEL:-0}" == 1 ]]; then
  exit 0
fi
bash scripts/setup_bazel.sh
status=0
bazel test --noshow_progress //... || status=$?
if [[ $status == 0 ]]; then
  bash scripts/check_bazel_run.sh || status=$?
fi
bazel shutdown >/dev/null 2>&1 || true
if [[ $status != 0 ]]; then
  echo "test.sh: the Bazel stage failed (exit $status)" >&2
  exit "$status"
fi
echo "test.sh: pytest suite, bazel test //... and the bazel run check passed"
