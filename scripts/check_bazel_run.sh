#!/usr/bin/env bash
# Checks that `bazel run //fedcmi_tff:train` and `python -m fedcmi_tff.train` give the same
# metrics.csv (all columns but the wall-clock `seconds`) for the same flags and seed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${FEDCMI_VENV:-$repo/venv}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(--flagfile=configs/demo.flags --rounds=1 --num_clients=4 --clients_per_round=2)
export TF_CPP_MIN_LOG_LEVEL=2
PYTHONPATH="$repo" "$venv/bin/python" -m fedcmi_tff.train "${flags[@]}" \
  --output_dir="$out/python" > "$out/python.log" 2>&1 || { cat "$out/python.log"; exit 1; }
bazel run --noshow_progress //fedcmi_tff:train -- "${flags[@]}" \
  --output_dir="$out/bazel" > "$out/bazel.log" 2>&1 || { cat "$out/bazel.log"; exit 1; }
"$venv/bin/python" - "$out/python/metrics.csv" "$out/bazel/metrics.csv" <<'PY'
import sys
import pandas as pd
a, b = (pd.read_csv(p).drop(columns=['seconds']) for p in sys.argv[1:3])
if not a.equals(b):
  print('check_bazel_run: metrics.csv differs between python -m and bazel run')
  print(a.compare(b))
  sys.exit(1)
print(f'check_bazel_run: bazel run and python -m give identical metrics.csv ({len(a)} rounds)')
PY
