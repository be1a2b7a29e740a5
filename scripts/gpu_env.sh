#!/usr/bin/env bash
# Source this before running on a GPU:  source scripts/gpu_env.sh
# Puts the CUDA libraries that `scripts/setup.sh --gpu` installed into the venv
# (site-packages/nvidia/*/lib) on LD_LIBRARY_PATH: TensorFlow 2.14 loads them with dlopen at
# import time and does not look inside the venv by itself.
_fedcmi_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_fedcmi_venv="${FEDCMI_VENV:-$_fedcmi_repo/venv}"
_fedcmi_libs="$(ls -d "$_fedcmi_venv"/lib/python3.11/site-packages/nvidia/*/lib 2>/dev/null | paste -sd: -)"
if [[ -z "$_fedcmi_libs" ]]; then
  echo "gpu_env.sh: no CUDA libraries in $_fedcmi_venv; run scripts/setup.sh --gpu first" >&2
else
  export LD_LIBRARY_PATH="$_fedcmi_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _fedcmi_repo _fedcmi_venv _fedcmi_libs
