#!/usr/bin/env bash
# Checks that the in-process runtime trains clients on a GPU: two rounds of FedCMI on the embedded
# dataset with device-placement logging, then the ops of client work per device and a verdict
# (exit 0: a GPU ran client work; 3: only the CPU did, with the reason).
#   scripts/setup.sh --gpu && scripts/gpu_check.sh
# TensorFlow's per-op placement log goes to runs/gpu_check_placement.log (--placement_log).
# Extra arguments go to python -m fedcmi_tff.gpu_check (e.g. --encoder=resnet18).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
if ls -d "$venv"/lib/python3.11/site-packages/nvidia/*/lib >/dev/null 2>&1; then
  # shellcheck source=scripts/gpu_env.sh
  source scripts/gpu_env.sh
else
  echo "gpu_check.sh: no CUDA libraries in the venv (scripts/setup.sh --gpu installs them)" >&2
fi
export TF_CPP_MIN_LOG_LEVEL=0 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m fedcmi_tff.gpu_check --flagfile=configs/demo.flags --rounds=2 "$@"
