"""The experiment grid: `python -m fedcmi_tff.grid --flagfile=configs/grid.flags`.

Runs methods x dirichlet_alphas x multi_ratios x seeds (method names as in
algorithms/registry.py; unimodal methods run once per alpha, centralised once), all
other flags shared, then writes report.csv, paired.csv, report.md and figures to
--output_dir (95 % intervals over seeds, paired tests of FedCMI against each baseline,
win / tie / loss).

--synthetic_dominants repeats the grid for each dominant modality of the embedded data;
--tuned trains each method with the values `python -m fedcmi_tff.tune` chose for its
algorithm.  --num_shards / --shard_index split the cells over processes run at once.

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
flags.mark_flag_as_required('output_dir')


def preamble(base, tuned) -> str:
  """report.md's opening: the shared setting and, with --tuned, the values chosen."""
  f = base.federation
  text = (f'# Grid report\n\n{base.dataset}; {f.num_clients} clients, {f.clients_per_round} per '
          f'round, {f.rounds} rounds, {base.training.local_epochs} local epochs; validation '
          f'split {f.validation_fraction:g} of the training data.\n\n')
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
                                   names, out_dir, dominants=dominants, tuned=tuned)
    shard = flag_config.shard()
    for cell in cells:
      cell['config'].validate(registry.DATASET_NAMES, method_registry.algorithm_names())
    flag_config.check_runtime_flags()
  except ValueError as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2

  def finish(started: float) -> None:
    finals, rounds, classes = report.load_runs(cells)
    os.makedirs(report_dir, exist_ok=True)
    # Figures show the cell of the base --dirichlet_alpha / --multi_ratio when the grid has
    # it.
    written = report.write_report(
        finals, rounds, classes, names, report_dir, files.write_text,
        figure_cell=(grid_runner.label(base.federation.dirichlet_alpha),
                     grid_runner.label(base.federation.multi_ratio)),
        preamble=preamble(base, tuned))
    with open(os.path.join(report_dir, 'report.md')) as f:
      print('\n' + f.read())
    print(f'grid: report written: {", ".join(os.path.basename(p) for p in written)} '
          f'({grid_runner.duration(time.time() - started)})')

  return grid_runner.run_then_finish('grid', 'cells', cells, shard,
                                     lambda: flag_config.configure_runtime('grid'), finish)


if __name__ == '__main__':
  runtime.run_program(main)
