"""The experiment grid: `python -m fedcmi_tff.grid --flagfile=configs/grid.flags`.

Runs methods x dirichlet_alphas x multi_ratios x seeds (methods as in
programs/methods.py; unimodal methods run once per alpha, centralised once), all
other flags shared, then writes report.csv, report.md and figures to --output_dir.

Resumable: a finished cell is detected from its summary.json and skipped without
building anything, a half-finished cell continues from its checkpoint, and a cell
directory holding a different configuration stops the program (nothing finished
is overwritten).  Progress: cells done / total and an estimate of the time left.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff.data import prepared  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import experiment  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import methods  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_METHODS = flags.DEFINE_list('methods', ['fedcmi', 'fedavg'], 'Methods (programs/methods.py).')
_ALPHAS = flags.DEFINE_list('dirichlet_alphas', ['1.0'], 'Dirichlet alphas; inf = IID.')
_RATIOS = flags.DEFINE_list('multi_ratios', ['0.5'], 'Shares of multimodal clients.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds.')
flags.mark_flag_as_required('output_dir')


def _label(value: float) -> str:
  return 'inf' if math.isinf(value) else f'{value:g}'


def grid_cells(base, method_list, alphas, ratios, seeds, modality_names, out_dir) -> list:
  """Every distinct run of the grid as a dict (method, algorithm, alpha, ratio, seed, dir,
  config), partition-free methods once per alpha (unimodal) or once (centralised)."""
  cells, seen = [], set()
  for alpha in alphas:
    for ratio in ratios:
      for method in method_list:
        for seed in seeds:
          cell_alpha = 'any' if method == 'centralised' else _label(alpha)
          cell_ratio = 'any' if methods.is_partition_free(method) else _label(ratio)
          run_dir = os.path.join(out_dir, f'alpha_{cell_alpha}', f'ratio_{cell_ratio}', method,
                                 f'seed_{seed}')
          if run_dir in seen:
            continue
          seen.add(run_dir)
          config = dataclasses.replace(base, federation=dataclasses.replace(
              base.federation, dirichlet_alpha=alpha, multi_ratio=ratio, seed=seed))
          config = methods.method_config(method, config, modality_names)
          cells.append(dict(method=method, algorithm=config.algorithm, alpha=cell_alpha,
                            ratio=cell_ratio, seed=seed, dir=run_dir, config=config))
  return cells


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = flag_config.experiment_config()
    base.validate(registry.DATASET_NAMES)
    names = registry.DATASET_MODALITIES[base.dataset]
    alphas = [float(a) for a in _ALPHAS.value]
    ratios = [float(r) for r in _RATIOS.value]
    seeds = [int(s) for s in _SEEDS.value]
    if not (alphas and ratios and seeds and _METHODS.value):
      raise ValueError('--methods, --dirichlet_alphas, --multi_ratios and --seeds must be '
                       'non-empty')
    out_dir = flag_config.OUTPUT_DIR.value
    cells = grid_cells(base, _METHODS.value, alphas, ratios, seeds, names, out_dir)
    for cell in cells:
      cell['config'].validate(registry.DATASET_NAMES)
    flag_config.check_runtime_flags()
  except ValueError as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2

  started = time.time()
  todo = []
  try:
    for cell in cells:
      if experiment.finished_summary(cell['config'], cell['dir']) is None:
        todo.append(cell)
  except (experiment.OutputDirectoryError, prepared.DataFormatError) as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2
  print(f'grid: {len(cells)} cells, {len(cells) - len(todo)} already finished, '
        f'{len(todo)} to run', flush=True)
  if todo:
    print(f'grid: TFF runtime: {flag_config.configure_runtime()}', flush=True)
  cache = {}
  try:
    for i, cell in enumerate(todo):
      cell_start = time.time()
      experiment.run_experiment(cell['config'], cell['dir'], resume=True, process_cache=cache,
                                log=lambda line: None)
      done = len(cells) - len(todo) + i + 1
      per_cell = (time.time() - started) / (i + 1)
      print(f'grid: {done}/{len(cells)} cells done: {cell["method"]} alpha={cell["alpha"]} '
            f'ratio={cell["ratio"]} seed={cell["seed"]} in {_duration(time.time() - cell_start)};'
            f' {_duration(time.time() - started)} elapsed, about '
            f'{_duration(per_cell * (len(todo) - i - 1))} left', flush=True)
  except (experiment.OutputDirectoryError, prepared.DataFormatError) as e:
    print(f'grid: error: {e}', file=sys.stderr)
    return 2
  finally:
    runtime.stop_worker_processes()

  finals, rounds, classes = report.load_runs(cells)
  # Figures show the cell of the base --dirichlet_alpha / --multi_ratio when the grid has it.
  written = report.write_report(
      finals, rounds, classes, names, out_dir, experiment.write_atomically,
      figure_cell=(_label(base.federation.dirichlet_alpha), _label(base.federation.multi_ratio)))
  with open(os.path.join(out_dir, 'report.md')) as f:
    print('\n' + f.read())
  print(f'grid: report written: {", ".join(os.path.basename(p) for p in written)} '
        f'({_duration(time.time() - started)})')
  return 0


if __name__ == '__main__':
  runtime.run_program(main)
