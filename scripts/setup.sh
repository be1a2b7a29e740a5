#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs the pinned stack.
#
# Idempotent: when venv/ exists and was built from the current requirements.txt, it returns in
# well under a second. Installs with `pip install --no-deps` because TFF 0.87's jaxlib pin is no
# longer published (see requirements.txt header).
#
#   scripts/setup.sh          the CPU stack (everything the demo and the tests need)
#   scripts/setup.sh --gpu    also the CUDA libraries of requirements-gpu.txt (about 3 GB), for
#                             --runtime=inprocess on an NVIDIA GPU; then `source scripts/gpu_env.sh`
#                             and check with scripts/gpu_check.sh
#
# Environment:
#   FEDCMI_VENV    where the virtual environment lives (default: <repo>/venv)
#   FEDCMI_PYTHON  the interpreter to build it from (default: python3.11, then python3)
set -euo pipefail

with_gpu=0
for arg in "$@"; do
  case "$arg" in
    --gpu) with_gpu=1 ;;
    *) echo "setup.sh: unknown argument $arg (expected --gpu)" >&2; exit 2 ;;
  esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FEDCMI_VENV:-$repo/venv}"
req="$repo/requirements.txt"
stamp="$venv/.requirements.sha256"

python_bin="${FEDCMI_PYTHON:-}"
if [[ -z "$python_bin" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then python_bin=python3.11; else python_bin=python3; fi
fi
version="$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" ]]; then
  echo "setup.sh: tensorflow-federated 0.87 needs Python 3.11, but $python_bin is $version" >&2
  exit 1
fi

# ffmpeg decodes the raw CREMA-D .flv / AVE .mp4 clips (fedcmi_tff/preparation/video.py).
# Installed from Debian's `ffmpeg` package only when missing; a failed install warns but does not
# stop the setup (everything else, and prepared frame folders, work without it).
if ! command -v ffmpeg >/dev/null 2>&1; then
  echo "setup.sh: ffmpeg is not on PATH; installing Debian's ffmpeg package with apt-get" >&2
  as_root=""
  if [[ "$(id -u)" -ne 0 ]]; then as_root="sudo"; fi
  if ! { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg; } >/dev/null; then
    echo "setup.sh: could not install ffmpeg; video decoding will fail until it is installed" >&2
  fi
fi

install_gpu() {
  local gpu_req="$repo/requirements-gpu.txt" gpu_stamp="$venv/.requirements-gpu.sha256"
  local gpu_want
  gpu_want="$(sha256sum "$gpu_req" | cut -d' ' -f1)"
  if [[ -f "$gpu_stamp" && "$(cat "$gpu_stamp")" == "$gpu_want" ]]; then
    return 0
  fi
  echo "setup.sh: installing the CUDA libraries of requirements-gpu.txt (about 3 GB)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$gpu_req"
  echo "$gpu_want" > "$gpu_stamp"
  echo "setup.sh: CUDA libraries installed; run 'source scripts/gpu_env.sh', then scripts/gpu_check.sh" >&2
}

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  if [[ $with_gpu == 1 ]]; then install_gpu; fi
  exit 0
fi

echo "setup.sh: installing the pinned environment into $venv (about 2 minutes on first run)" >&2
if [[ ! -x "$venv/bin/python" ]]; then
  "$python_bin" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req"
# Import check before stamping, so a broken install is retried next time.  TFF prints a
# harmless "Exception ignored ... ServiceManager.__del__" at exit: show output only on failure.
check_log="$(mktemp)"
if ! "$venv/bin/python" - >"$check_log" 2>&1 <<'PY'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf, tensorflow_federated as tff  # noqa: F401
assert tf.__version__.startswith("2.14"), tf.__version__
PY
then
  cat "$check_log" >&2
  rm -f "$check_log"
  echo "setup.sh: the installed environment does not import (see above)" >&2
  exit 1
fi
rm -f "$check_log"
echo "$want" > "$stamp"
echo "setup.sh: environment ready" >&2
if [[ $with_gpu == 1 ]]; then install_gpu; fi
