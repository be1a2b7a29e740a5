#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the default experiment: FedCMI vs
# FedAvg (and the weak modality trained alone) on the embedded synthetic_av
# dataset, 3 seeds, then prints the comparison table.
# Results go to runs/demo (finished runs are reused on a second call).
# Extra arguments are passed to fedcmi_tff.compare, e.g. --seeds=0 --rounds=10.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m fedcmi_tff.compare --flagfile=configs/demo.flags \
  --output_dir="${FEDCMI_DEMO_DIR:-runs/demo}" "$@"
