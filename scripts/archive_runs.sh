#!/usr/bin/env bash
# Packs the finished runs under the given folders (default: runs/tune runs/converged) into
# results/converged_runs.tar.xz: each finished run's config.json, summary.json, metrics.csv and
# per_class.csv (no checkpoints, no TensorBoard files), plus tuned.json.  Unpacked in a clone
# (tar -xJf results/converged_runs.tar.xz), scripts/converged.sh skips those runs and
# regenerates the reports from them.  Unfinished runs are left out (they would restart).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${FEDCMI_ARCHIVE:-results/converged_runs.tar.xz}"
folders=("$@")
((${#folders[@]})) || folders=(runs/tune runs/converged)
list="$(mktemp)"
trap 'rm -f "$list"' EXIT
for folder in "${folders[@]}"; do
  [ -d "$folder" ] || continue
  find "$folder" -name tuned.json >> "$list"
  find "$folder" -name summary.json -printf '%h\n' | sort | while read -r run; do
    for f in config.json summary.json metrics.csv per_class.csv; do
      if [ -f "$run/$f" ]; then echo "$run/$f"; fi
    done
  done >> "$list"
done
mkdir -p "$(dirname "$out")"
tar -cJf "$out.tmp" -T "$list"
mv "$out.tmp" "$out"
echo "archive_runs.sh: $(grep -c 'summary.json$' "$list") finished runs -> $out ($(du -h "$out" | cut -f1))"
