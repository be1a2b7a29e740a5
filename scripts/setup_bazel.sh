#!/usr/bin/env bash
# Makes `bazel run` / `bazel test` work offline: installs Debian's bazel-bootstrap (Bazel 4)
# when bazel is missing, and writes tools/python/BUILD, the Python toolchain that points at
# the project's venv (Bazel needs an absolute interpreter path, so it is generated, not
# committed).  Idempotent.  Run scripts/setup.sh first.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FEDCMI_VENV:-$repo/venv}"

if ! command -v bazel >/dev/null 2>&1; then
  echo "setup_bazel.sh: installing bazel-bootstrap from Debian" >&2
  sudo_cmd=""
  if [[ "$(id -u)" != 0 ]]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq bazel-bootstrap >/dev/null
fi

python_path="$(cd "$venv/bin" && pwd)/python"
if [[ ! -x "$python_path" ]]; then
  echo "setup_bazel.sh: $python_path is missing; run scripts/setup.sh first" >&2
  exit 1
fi
target="$repo/tools/python/BUILD"
tmp="$(mktemp "$repo/tools/python/.BUILD.XXXXXX")"
sed "s|@VENV_PYTHON@|$python_path|" "$repo/tools/python/BUILD.tpl" > "$tmp"
if [[ -f "$target" ]] && cmp -s "$tmp" "$target"; then
  rm -f "$tmp"
else
  mv "$tmp" "$target"
fi
