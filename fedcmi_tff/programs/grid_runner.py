"""Cells of a methods x label splits x modality mixes x seeds grid, and running them.

Used by `grid` (the full grid and its report) and `compare` (one cell: one label split
and one modality mix).  Method names are algorithms/registry.py's.  A cell's folder is
<out>/alpha_<a>/ratio_<r>/<method>/seed_<s>; methods whose result does not depend on
the modality mix (unimodal, centralised) use ratio_any, centralised also alpha_any,
and run once however many cells share them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

from fedcmi_tff.algorithms import registry as method_registry
from fedcmi_tff.programs import experiment


def label(value: float) -> str:
  return 'inf' if math.isinf(value) else f'{value:g}'


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


def grid_cells(base, method_list, alphas, ratios, seeds, modality_names, out_dir) -> list:
  """Every distinct run of the grid as a dict (method, algorithm, alpha, ratio, seed, dir,
  config), partition-free methods once per alpha (unimodal) or once (centralised).

  Raises:
    ValueError: an unknown method name.
  """
  cells, seen = [], set()
  for alpha in alphas:
    for ratio in ratios:
      for method in method_list:
        for seed in seeds:
          cell_alpha = ('any' if method_registry.ignores_label_split(method, modality_names)
                        else label(alpha))
          cell_ratio = ('any' if method_registry.ignores_multi_ratio(method, modality_names)
                        else label(ratio))
          run_dir = os.path.join(out_dir, f'alpha_{cell_alpha}', f'ratio_{cell_ratio}', method,
                                 f'seed_{seed}')
          if run_dir in seen:
            continue
          seen.add(run_dir)
          config = dataclasses.replace(base, federation=dataclasses.replace(
              base.federation, dirichlet_alpha=alpha, multi_ratio=ratio, seed=seed))
          config = method_registry.method_config(method, config, modality_names)
          cells.append(dict(method=method, algorithm=config.algorithm, alpha=cell_alpha,
                            ratio=cell_ratio, seed=seed, dir=run_dir, config=config))
  return cells


def unfinished(cells: list) -> list:
  """The cells without a finished run of exactly their configuration.

  Raises:
    experiment.OutputDirectoryError: a cell folder holds another configuration.
  """
  return [c for c in cells if experiment.finished_summary(c['config'], c['dir']) is None]


def run_cells(cells: list, todo: list, program: str, log: Callable[[str], None],
              run_log: Callable[[str], None] = lambda line: None,
              stop_requested: Callable[[], str | None] | None = None) -> None:
  """Runs (or resumes) the `todo` cells with one shared process cache, logging progress.

  Raises:
    experiment.OutputDirectoryError, experiment.DivergenceError, experiment.Interrupted,
    prepared.DataFormatError, OSError: from a run (`stop_requested` as run_experiment's).
  """
  cache, started = {}, time.time()
  for i, cell in enumerate(todo):
    cell_start = time.time()
    experiment.run_experiment(cell['config'], cell['dir'], resume=True, process_cache=cache,
                              log=run_log, method=cell['method'],
                              stop_requested=stop_requested)
    done = len(cells) - len(todo) + i + 1
    per_cell = (time.time() - started) / (i + 1)
    log(f'{program}: {done}/{len(cells)} cells done: {cell["method"]} alpha={cell["alpha"]} '
        f'ratio={cell["ratio"]} seed={cell["seed"]} in {duration(time.time() - cell_start)}; '
        f'{duration(time.time() - started)} elapsed, about '
        f'{duration(per_cell * (len(todo) - i - 1))} left')
    reason = stop_requested() if stop_requested else None
    if reason and i + 1 < len(todo):
      raise experiment.Interrupted(
          f'stopped after {done} of {len(cells)} cells ({reason}); run the same command '
          'again to continue', reason)


def run_unfinished(cells: list, program: str, noun: str, configure_runtime: Callable[[], str],
                   stop_requested: Callable[[], str | None] | None = None,
                   run_log: Callable[[str], None] = lambda line: None) -> None:
  """Runs the cells without a finished run, after saying how many there are.

  `configure_runtime()` installs the TFF context (only when something is left to run) and
  returns its description; `noun` names the cells in the progress line ('cells', 'runs').

  Raises:
    as `unfinished` and `run_cells`.
  """
  todo = unfinished(cells)
  print(f'{program}: {len(cells)} {noun}, {len(cells) - len(todo)} already finished, '
        f'{len(todo)} to run', flush=True)
  if todo:
    print(f'{program}: TFF runtime: {configure_runtime()}', flush=True)
  run_cells(cells, todo, program, lambda line: print(line, flush=True), run_log=run_log,
            stop_requested=stop_requested)
