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
from fedcmi_tff.programs import outcomes
from fedcmi_tff.programs import tuning


def label(value: float) -> str:
  return 'inf' if math.isinf(value) else f'{value:g}'


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s'


RUN_ORDERS = ('seeds', 'cells')


def grid_cells(base, method_list, alphas, ratios, seeds, modality_names, out_dir,
               dominants=None, tuned: dict | None = None, order: str = 'seeds') -> list:
  """Every distinct run of the grid as a dict (method, algorithm, alpha, ratio, seed, dir,
  config), partition-free methods once per alpha (unimodal) or once (centralised).

  `dominants` (synthetic_av only): run the grid once per dominant modality, in
  <out_dir>/dominant_<d>/..., each cell then also carrying `dominant`; None: the base
  configuration's dataset as it is, no extra folder level.  `tuned`: a loaded
  tuned.json whose values each method's algorithm trains with (programs/tuning.py).
  `order` is the run order: 'seeds' (seeds outermost within a dominant modality: a grid
  stopped part-way has every cell at fewer seeds) or 'cells' (each (alpha, ratio) cell
  with all its seeds and methods before the next: a grid stopped part-way has whole
  cells).  The order changes which runs come first, never what a run computes.

  Raises:
    ValueError: an unknown method name or order.
  """
  if order not in RUN_ORDERS:
    raise ValueError(f'run order must be {" or ".join(RUN_ORDERS)}, got {order!r}')
  cells, seen = [], set()
  for dominant in (dominants or [None]):
    top = out_dir if dominant is None else os.path.join(out_dir, f'dominant_{dominant}')
    start = base if dominant is None else dataclasses.replace(base, synthetic_dominant=dominant)
    if order == 'seeds':
      loops = [(seed, alpha, ratio) for seed in seeds for alpha in alphas for ratio in ratios]
    else:
      loops = [(seed, alpha, ratio) for alpha in alphas for ratio in ratios for seed in seeds]
    for seed, alpha, ratio in loops:
      for method in method_list:
        cell_alpha = ('any' if method_registry.ignores_label_split(method, modality_names)
                      else label(alpha))
        cell_ratio = ('any' if method_registry.ignores_multi_ratio(method, modality_names)
                      else label(ratio))
        run_dir = os.path.join(top, f'alpha_{cell_alpha}', f'ratio_{cell_ratio}', method,
                               f'seed_{seed}')
        if run_dir in seen:
          continue
        seen.add(run_dir)
        config = dataclasses.replace(start, federation=dataclasses.replace(
            start.federation, dirichlet_alpha=alpha, multi_ratio=ratio, seed=seed))
        config = tuning.tuned_config(config, method, modality_names, tuned)
        cell = dict(method=method, algorithm=config.algorithm, alpha=cell_alpha,
                    ratio=cell_ratio, seed=seed, dir=run_dir, config=config)
        if dominant is not None:
          cell['dominant'] = dominant
        cells.append(cell)
  return cells


def unfinished(cells: list) -> list:
  """The cells without a finished run of exactly their configuration.

  Raises:
    experiment.OutputDirectoryError: a cell folder holds another configuration.
  """
  return [c for c in cells if experiment.finished_summary(c['config'], c['dir']) is None]


def cell_of(run: dict) -> tuple:
  """The report cell a run belongs to: (dominant or '', alpha label, ratio label)."""
  return run.get('dominant', ''), run['alpha'], run['ratio']


def whole_cells(cells: list) -> tuple:
  """(the runs of the report cells whose runs have all finished, the other report cells).

  A report cell is a (dominant, alpha, ratio) of `cell_of`; the second element lists
  those with at least one unfinished run, in grid order.

  Raises:
    experiment.OutputDirectoryError: a run folder holds another configuration.
  """
  todo = {c['dir'] for c in unfinished(cells)}
  open_cells = list(dict.fromkeys(cell_of(c) for c in cells if c['dir'] in todo))
  return [c for c in cells if cell_of(c) not in open_cells], open_cells


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
    per_cell = (time.time() - started) / (i + 1)
    where = ''.join(f' {k}={cell[k]}' for k in ('dominant', 'trial', 'setting') if k in cell)
    log(f'{program}: {i + 1}/{len(todo)} cells done: {cell["method"]}{where} '
        f'alpha={cell["alpha"]} ratio={cell["ratio"]} seed={cell["seed"]} in '
        f'{duration(time.time() - cell_start)}; {duration(time.time() - started)} elapsed, '
        f'about {duration(per_cell * (len(todo) - i - 1))} left')
    reason = stop_requested() if stop_requested else None
    if reason and i + 1 < len(todo):
      raise experiment.Interrupted(
          f'stopped after {i + 1} of the {len(todo)} cells to run ({reason}); run the same '
          'command again to continue', reason)


def shard_of(position: int, count: int) -> int:
  """The shard of the cell at `position`: round robin, rotated by one every `count` cells.

  Plain round robin would give a shard the same method in every block when the method
  count is a multiple of `count` (2 methods, 2 shards: one process runs every FedCMI run);
  the rotation alternates them.
  """
  return (position + position // count) % count


def run_unfinished(cells: list, program: str, noun: str, configure_runtime: Callable[[], str],
                   stop_requested: Callable[[], str | None] | None = None,
                   run_log: Callable[[str], None] = lambda line: None,
                   shard: tuple = (0, 1)) -> bool:
  """Runs this shard's cells without a finished run, after saying how many there are.

  `configure_runtime()` installs the TFF context (only when something is left to run) and
  returns its description; `noun` names the cells in the progress line ('cells', 'runs').
  `shard` = (index, count): only the cells `shard_of` gives to `index` run here, so
  `count` processes with the same cells share the work.

  Returns:
    Whether every cell (of every shard) has finished.

  Raises:
    as `unfinished` and `run_cells`.
  """
  index, count = shard
  todo = unfinished(cells)
  todo_ids = {id(c) for c in todo}
  mine = [c for i, c in enumerate(cells) if shard_of(i, count) == index and id(c) in todo_ids]
  where = f' (shard {index} of {count}: {len(mine)} of them)' if count > 1 else ''
  print(f'{program}: {len(cells)} {noun}, {len(cells) - len(todo)} already finished, '
        f'{len(todo)} to run{where}', flush=True)
  if mine:
    print(f'{program}: TFF runtime: {configure_runtime()}', flush=True)
  run_cells(cells, mine, program, lambda line: print(line, flush=True), run_log=run_log,
            stop_requested=stop_requested)
  left = len(unfinished(cells)) if count > 1 else len(todo) - len(mine)
  if left:
    print(f'{program}: {left} {noun} of other shards not finished yet; the report is '
          'written by the process that finishes the last one', flush=True)
  return left == 0


def run_then_finish(program: str, noun: str, cells: list, shard: tuple,
                    configure_runtime: Callable[[], str],
                    finish: Callable[[float], None]) -> int:
  """A grid-like program's run: this shard's unfinished cells, then, once every cell of
  every shard has finished, `finish(start time)` (which writes and prints the results).

  Stops cleanly on SIGINT / SIGTERM; returns the program's exit status
  (`outcomes.run_guarded`).
  """
  stops = outcomes.StopRequests(program).install()

  def body() -> int:
    started = time.time()
    if run_unfinished(cells, program, noun, configure_runtime,
                      stop_requested=stops.requested, shard=shard):
      finish(started)
    return 0

  return outcomes.run_guarded(program, body, stops)
