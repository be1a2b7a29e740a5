"""The experiment grid: `python -m fedcmi_tff.grid --flagfile=configs/grid.flags`.

Runs methods x dirichlet_alphas x multi_ratios x seeds (method names as in
algorithms/registry.py; unimodal methods run once per alpha, centralised once), all
other flags shared, then writes report.csv, report.md and figures to --output_dir.

Resumable: a finished cell is detected from its summary.json and skipped without
building anything, a half-finished cell continues from its checkpoint, and a cell
directory holding a different configuration stops the program (nothing finished
is overwritten).  Progress: cells done / total and an estimate of the time left.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff import files  # noqa: E402
from fedcmi_tff.algorithms import registry as method_registry  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import grid_runner  # noqa: E402
from fedcmi_tff.programs import outcomes  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_ALPHAS = flags.DEFINE_list('dirichlet_alphas', ['1.0'], 'Dirichlet alphas; inf = IID.')
_RATIOS = flags.DEFINE_list('multi_ratios', ['0.5'], 'Shares of multimodal clients.')
flags.mark_flag_as_required('output_dir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = flag_config.base_config()
    base.validate(registry.DATASET_NAMES, method_registry.algorithm_names())
    names = registry.DATASET_MODALITIES[base.dataset]
    alphas = [float(a) for a in _ALPHAS.value]
    ratios = [float(r) for r in _RATIOS.value]
    seeds = [int(s) for s in flag_config.SEEDS.value]
    if not (alphas and ratios and seeds and flag_config.METHODS.value):
      raise ValueError('--methods, --dirichlet_alphas, --multi_ratios and --seeds must be '
                       'non-empty')
    out_dir = flag_config.OUTPUT_DIR.value
    cells = grid_runner.grid_cells(base, flag_config.METHODS.value, alphas, ratios, seeds, names, out_dir)
    for cell in cells:
      cell['config'].validate(registry.DATASET_NAMES, method_registry.algorithm_names())
    flag_config.check_runtime_flags()
  except ValueError as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2

  stops = outcomes.StopRequests('grid').install()

  def body() -> int:
    started = time.time()
    grid_runner.run_unfinished(cells, 'grid', 'cells',
                               lambda: flag_config.configure_runtime('grid'),
                               stop_requested=stops.requested)
    finals, rounds, classes = report.load_runs(cells)
    # Figures show the cell of the base --dirichlet_alpha / --multi_ratio when the grid has
    # it.
    written = report.write_report(
        finals, rounds, classes, names, out_dir, files.write_text,
        figure_cell=(grid_runner.label(base.federation.dirichlet_alpha),
                     grid_runner.label(base.federation.multi_ratio)))
    with open(os.path.join(out_dir, 'report.md')) as f:
      print('\n' + f.read())
    print(f'grid: report written: {", ".join(os.path.basename(p) for p in written)} '
          f'({grid_runner.duration(time.time() - started)})')
    return 0

  return outcomes.run_guarded('grid', body, stops)


if __name__ == '__main__':
  runtime.run_program(main)
