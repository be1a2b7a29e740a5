#!/usr/bin/env bash
# The converged comparison, end to end and resumable: sets up the environment (idempotent),
# tunes every algorithm with the same budget on the validation split (configs/tune.flags),
# runs the converged grid with the chosen values (configs/converged.flags), and copies the
# report and figures to docs/converged/.  Each stage runs as FEDCMI_SHARDS processes at once
# (default: one per CPU core).  Interrupt it at any time; the same command continues where it
# stopped (finished runs are never redone).  Extra arguments go to both programs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
venv="${FEDCMI_VENV:-$repo/venv}"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
shards="${FEDCMI_SHARDS:-$(nproc)}"
mkdir -p runs

stage() {  # stage <program> <flagfile> [args]: the shards in parallel, logs in runs/
  local program="$1" flagfile="$2" pids=() status=0
  shift 2
  for ((i = 0; i < shards; i++)); do
    "$venv/bin/python" -m "fedcmi_tff.$program" --flagfile="$flagfile" \
      --num_shards="$shards" --shard_index="$i" "$@" > "runs/${program}_shard$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  if ((status)); then
    echo "converged.sh: $program failed (exit $status); see runs/${program}_shard*.log" >&2
    exit "$status"
  fi
  grep -h "^$program: " runs/"${program}"_shard*.log | tail -n 3
}

stage tune configs/tune.flags "$@"
stage grid configs/converged.flags "$@"
stage grid configs/ablations_converged.flags "$@"
mkdir -p docs/converged/ablations
cp runs/tune/tuning.md runs/tune/tuned.json runs/converged/report.md runs/converged/report.csv \
  runs/converged/paired.csv runs/converged/fig_*.png docs/converged/
cp runs/converged/ablations/report.md runs/converged/ablations/report.csv \
  runs/converged/ablations/paired.csv runs/converged/ablations/fig_*.png docs/converged/ablations/
echo "converged.sh: report in docs/converged/report.md"
