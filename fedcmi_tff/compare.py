"""Compares methods over seeds: `python -m fedcmi_tff.compare --flagfile=configs/demo.flags`.

A one-cell grid: each of --methods (algorithms/registry.py's names; default fedcmi, fedavg
and the weak modality alone, e.g. unimodal_visual) for each of --seeds at the
--dirichlet_alpha and --multi_ratio of the flags, with identical data, partition, model and
evaluation.  Runs go to the grid's folders,
<output_dir>/alpha_<a>/ratio_<r>/<method>/seed_<s>/ (as train.py writes them);
comparison.csv holds one row per run and comparison.md the mean ± 95 % t-interval over
seeds with FedCMI's paired differences from each other method, which is also printed.
Finished runs are reused and unfinished ones resumed; a run whose configuration differs
stops the program rather than being overwritten.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff import files  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import grid_runner  # noqa: E402
from fedcmi_tff.programs import outcomes  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

flags.mark_flag_as_required('output_dir')


def default_methods(base) -> list:
  """fedcmi, fedavg and the presumed weak modality trained alone (unimodal FL).

  The weak modality: slot b (visual for CREMA-D and AVE, text for CrisisMMD), or for
  the embedded dataset the modality that --synthetic_dominant does not name.
  """
  a, b = registry.DATASET_MODALITIES[base.dataset]
  weak = a if base.dataset == 'synthetic_av' and base.synthetic_dominant == b else b
  return ['fedcmi', 'fedavg', f'unimodal_{weak}']


def comparison_columns(modality_names) -> tuple:
  """(columns, labels) of the comparison table: the report's columns plus every path."""
  a, b = modality_names
  columns, labels = report.report_columns(modality_names)
  columns = columns[:3] + [f'acc_{a}_path', f'acc_{b}_path', f'acc_{a}_zero',
                           f'acc_{b}_zero'] + columns[3:]
  labels = dict(labels, **{f'acc_{a}_path': f'{a} infil-filled',
                           f'acc_{b}_path': f'{b} infil-filled',
                           f'acc_{a}_zero': f'{a} zero-filled',
                           f'acc_{b}_zero': f'{b} zero-filled'})
  return columns, labels


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    seeds = [int(s) for s in flag_config.SEEDS.value]
    base = flag_config.validated_base_config()
    methods = (flag_config.METHODS.value if flags.FLAGS['methods'].present
               else default_methods(base))
    if not seeds or not methods:
      raise ValueError('--methods and --seeds must be non-empty')
    names = registry.DATASET_MODALITIES[base.dataset]
    out_dir = flag_config.OUTPUT_DIR.value
    cells = grid_runner.grid_cells(base, methods, [base.federation.dirichlet_alpha],
                                   [base.federation.multi_ratio], seeds, names, out_dir)
    flag_config.check_cells(cells)
  except ValueError as e:
    print(f'compare: error: {e}', file=sys.stderr)
    return 2
  stops = outcomes.StopRequests('compare').install()

  def body() -> int:
    started = time.time()
    grid_runner.run_unfinished(cells, 'compare', 'runs',
                               lambda: flag_config.configure_runtime('compare'),
                               stop_requested=stops.requested,
                               run_log=lambda line: print('  ' + line, flush=True))
    finals, _, _ = report.load_runs(cells)
    columns, labels = comparison_columns(names)
    markdown, _ = report.cell_table(finals, columns, labels, last_rounds=False)
    paired = report.paired_lines(report.paired_differences(finals, names))
    files.write_text(os.path.join(out_dir, 'comparison.csv'),
                     finals.drop(columns=['dominant', 'alpha', 'ratio']).to_csv(index=False))
    files.write_text(os.path.join(out_dir, 'comparison.md'), markdown + '\n' + paired)
    print(f'\nFinal-round test accuracy (%) over seeds {seeds}, mean ± the half-width of the '
          f'95 % t-interval; {base.federation.rounds} rounds, {base.dataset}; "own path" is '
          'the path each method trains for unimodal clients (FedCMI: infiltration-filled, '
          'others: zero-filled).  Differences are paired over seeds (t-test; win or loss when '
          'p < 0.05, else tie).')
    print(markdown)
    print(paired)
    print(f'compare: {len(cells)} runs in {time.time() - started:.0f}s; results in {out_dir}')
    return 0

  return outcomes.run_guarded('compare', body, stops)


if __name__ == '__main__':
  runtime.run_program(main)
