"""The experiment grid: `python -m fedcmi_tff.grid --flagfile=configs/grid.flags`.

Runs methods x dirichlet_alphas x multi_ratios x seeds (method names as in
algorithms/registry.py; unimodal methods run once per alpha, centralised once), all
other flags shared, then writes report.csv, paired.csv, report.md and figures to
--output_dir (95 % intervals over seeds, paired tests of FedCMI against each baseline,
win / tie / loss).

--synthetic_dominants repeats the grid for each dominant modality of the embedded data;
--tuned trains each method with the values `python -m fedcmi_tff.tune` chose for its
algorithm.  --num_shards / --shard_index split the cells over processes run at once;
--run_order=cells finishes one (alpha, ratio) cell at all seeds before the next;
--report_only runs nothing and reports the cells whose runs have all finished.

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
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import grid_runner  # noqa: E402
from fedcmi_tff.programs import outcomes  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402
from fedcmi_tff.programs import tuning  # noqa: E402

_ALPHAS = flags.DEFINE_list('dirichlet_alphas', ['1.0'], 'Dirichlet alphas; inf = IID.')
_RATIOS = flags.DEFINE_list('multi_ratios', ['0.5'], 'Shares of multimodal clients.')
_DOMINANTS = flags.DEFINE_list(
    'synthetic_dominants', [], 'synthetic_av: run the grid once per dominant modality listed '
    '(folders dominant_<m>/...); empty = --synthetic_dominant only, no extra folder level.')
_REPORT_DIR = flags.DEFINE_string(
    'report_dir', None, 'Where the report and figures go (default --output_dir); lets a second '
    'grid share the runs of a first (same --output_dir) without replacing its report.')
_TUNED = flags.DEFINE_string('tuned', None, 'A tuned.json from python -m fedcmi_tff.tune: each '
                             'method trains with its algorithm\'s chosen values.')
_RUN_ORDER = flags.DEFINE_enum(
    'run_order', 'seeds', list(grid_runner.RUN_ORDERS), 'seeds: every cell at seed 0, then '
    'every cell at seed 1, ... (a stopped grid has all cells at fewer seeds); cells: one '
    '(alpha, ratio) cell with all its seeds and methods before the next (a stopped grid has '
    'whole cells).  Changes the order of the runs only, not their results.')
_REPORT_ONLY = flags.DEFINE_bool(
    'report_only', False, 'Run nothing: write the report over the cells (dominant modality, '
    'alpha, multi_ratio) whose runs have all finished, and list the others.')
flags.mark_flag_as_required('output_dir')


def cell_text(cell: tuple) -> str:
  """A report cell (`grid_runner.cell_of`) in words."""
  dominant, alpha, ratio = cell
  text = f'alpha {alpha}, multi_ratio {ratio}'
  return f'{dominant} dominant, {text}' if dominant else text


def preamble(base, tuned, left_out: tuple = (), total_cells: int = 0) -> str:
  """report.md's opening: the shared setting, with --tuned the values chosen, and with
  --report_only the cells left out (`left_out` of `total_cells`)."""
  f = base.federation
  text = (f'# Grid report\n\n{base.dataset}; {f.num_clients} clients, {f.clients_per_round} per '
          f'round, {f.rounds} rounds, {base.training.local_epochs} local epochs; validation '
          f'split {f.validation_fraction:g} of the training data.\n\n')
  if left_out:
    text += (f'**Partial report**: {total_cells - len(left_out)} of {total_cells} cells have '
             f'finished every run and are reported here; left out (runs unfinished or not '
             f'started): {"; ".join(cell_text(c) for c in left_out)}.\n\n')
  if tuned:
    cell = tuned.get('cell', {})
    text += (f'Hyper-parameters: each algorithm\'s choice among {tuned.get("budget")} trials '
             f'(equal budget) at dirichlet_alpha = {cell.get("dirichlet_alpha")}, multi_ratio '
             f'= {cell.get("multi_ratio")}, {cell.get("synthetic_dominant")} dominant, seeds '
             f'{tuned.get("seeds")}, scored by {tuned.get("criterion")}:\n\n')
    for algorithm, entry in tuned['algorithms'].items():
      values = ', '.join(f'{k.split(".")[-1]} = {v:g}' for k, v in entry['values'].items())
      text += f'- {algorithm}: {values}\n'
    text += '\n'
  else:
    text += ('Hyper-parameters: the flags\' values for every method (no --tuned record).\n\n')
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = flag_config.validated_base_config()
    names = registry.DATASET_MODALITIES[base.dataset]
    alphas = [float(a) for a in _ALPHAS.value]
    ratios = [float(r) for r in _RATIOS.value]
    seeds = [int(s) for s in flag_config.SEEDS.value]
    if not (alphas and ratios and seeds and flag_config.METHODS.value):
      raise ValueError('--methods, --dirichlet_alphas, --multi_ratios and --seeds must be '
                       'non-empty')
    out_dir = flag_config.OUTPUT_DIR.value
    report_dir = _REPORT_DIR.value or out_dir
    dominants = _DOMINANTS.value or None
    if dominants and base.dataset != 'synthetic_av':
      raise ValueError('--synthetic_dominants applies to --dataset=synthetic_av only')
    for d in dominants or []:
      if d not in names:
        raise ValueError(f'--synthetic_dominants: {d!r} is not a modality of {base.dataset} '
                         f'({", ".join(names)})')
    tuned = None
    if _TUNED.value:
      try:
        tuned = tuning.load_tuned(_TUNED.value)
      except OSError as e:
        raise ValueError(f'--tuned: cannot read {_TUNED.value}: {e.strerror}') from None
    cells = grid_runner.grid_cells(base, flag_config.METHODS.value, alphas, ratios, seeds,
                                   names, out_dir, dominants=dominants, tuned=tuned,
                                   order=_RUN_ORDER.value)
    shard = flag_config.check_cells(cells)
  except ValueError as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2

  def finish(started: float, runs: list = cells, left_out: tuple = ()) -> None:
    finals, rounds, classes = report.load_runs(runs)
    os.makedirs(report_dir, exist_ok=True)
    # Figures show the cell of the base --dirichlet_alpha / --multi_ratio when the grid has
    # it.
    written = report.write_report(
        finals, rounds, classes, names, report_dir, files.write_text,
        figure_cell=(grid_runner.label(base.federation.dirichlet_alpha),
                     grid_runner.label(base.federation.multi_ratio)),
        preamble=preamble(base, tuned, left_out,
                          len(dict.fromkeys(map(grid_runner.cell_of, cells)))))
    with open(os.path.join(report_dir, 'report.md')) as f:
      print('\n' + f.read())
    print(f'grid: report written: {", ".join(os.path.basename(p) for p in written)} '
          f'({grid_runner.duration(time.time() - started)})')

  if _REPORT_ONLY.value:

    def report_finished() -> int:
      runs, left_out = grid_runner.whole_cells(cells)
      if not runs:
        print(f'grid: error: --report_only: no cell has finished all its runs in {out_dir}',
              file=sys.stderr)
        return 2
      finish(time.time(), runs, tuple(left_out))
      return 0

    return outcomes.run_guarded('grid', report_finished, outcomes.StopRequests('grid'))
  return grid_runner.run_then_finish('grid', 'cells', cells, shard,
                                     lambda: flag_config.configure_runtime('grid'), finish)


if __name__ == '__main__':
  runtime.run_program(main)
