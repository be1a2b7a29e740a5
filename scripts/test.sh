#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs every test once:
#   1. the pytest suite in two processes (extra arguments go to pytest, e.g.
#      scripts/test.sh -k distillation; FEDCMI_TEST_WORKERS=0 runs it in one process);
#   2. the Bazel stage, which proves the BUILD graph without running the suite a second time:
#      `bazel build //...` (every library, program and test target), `bazel test` of the BUILD
#      drift check (tests/test_build_files.py, which runs here rather than in step 1), and
#      `bazel run //fedcmi_tff:train` against `python -m fedcmi_tff.train` (same metrics).
# FEDCMI_SKIP_BAZEL=1 runs step 1 only (the drift check then runs in pytest).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
export TF_CPP_MIN_LOG_LEVEL=2
skip_bazel="${FEDCMI_SKIP_BAZEL:-0}"
# Two test processes (FEDCMI_TEST_WORKERS; 0 = one process): whole modules go to a process
# (--dist loadfile), so each module's traced processes and fixtures are built once.
workers="${FEDCMI_TEST_WORKERS:-2}"
pytest_args=(-q -p no:cacheprovider -W ignore::DeprecationWarning)
if [[ "$workers" != 0 ]]; then
  pytest_args+=(-n "$workers" --dist loadfile)
  # One TensorFlow thread per pool in each test process: the processes already fill the
  # cores, and oversubscribed thread pools made the suite 18% slower (measured).
  export TF_NUM_INTRAOP_THREADS="${TF_NUM_INTRAOP_THREADS:-1}"
  export TF_NUM_INTEROP_THREADS="${TF_NUM_INTEROP_THREADS:-1}"
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
if [[ "$skip_bazel" != 1 ]]; then
  pytest_args+=(--ignore=tests/test_build_files.py)
fi
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest "${pytest_args[@]}" \
  tests "$@"
# No TFF worker may outlive the suite (one left behind would be an orphan of init, still
# listening on every interface).
sleep 1
orphans="$(ps -eo pid=,ppid=,stat=,args= | awk '$2 == 1 && $3 !~ /^Z/ && /[w]orker_binary/')"
if [[ -n "$orphans" ]]; then
  echo "test.sh: TFF worker processes outlived the test suite:" >&2
  echo "$orphans" >&2
  exit 1
fi
if [[ "$skip_bazel" == 1 ]]; then
  exit 0
fi
bash scripts/setup_bazel.sh
status=0
bazel build --noshow_progress //... || status=$?
if [[ $status == 0 ]]; then
  bazel test --noshow_progress //tests:test_build_files || status=$?
fi
if [[ $status == 0 ]]; then
  bash scripts/check_bazel_run.sh || status=$?
fi
bazel shutdown >/dev/null 2>&1 || true
if [[ $status != 0 ]]; then
  echo "test.sh: the Bazel stage failed (exit $status)" >&2
  exit "$status"
fi
echo "test.sh: pytest suite, bazel build //..., the BUILD drift check (bazel test) and the" \
  "bazel run check passed"
