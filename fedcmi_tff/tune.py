"""Equal-budget tuning on the validation split.

Run: `python -m fedcmi_tff.tune --flagfile=configs/tune.flags`.

Gives each algorithm of --methods the same number of trials (--tuning_budget) over its
own hyper-parameters (programs/tuning.py SEARCH_SPACES: the learning rate for all;
lambda and mu for FedCMI, mu for FedProx, alpha for OGM-GE and PMR) at the cell the
flags describe (--dirichlet_alpha, --multi_ratio, --synthetic_dominant), for each of
--seeds.  Trial 0 is the flags' own values; the others are drawn log-uniformly
(seeded by --sampler_seed).  Each trial is scored on the validation split only
(--validation_fraction must be > 0): its fused accuracy averaged over the last rounds,
then over the seeds.  Writes <output_dir>/tuned.json (the chosen values per algorithm,
the budget, the criterion, every trial) and tuning.md; `grid --tuned=<tuned.json>` then
trains every method with its algorithm's choice.

Runs go to <output_dir>/<algorithm>/trial_<k>/seed_<s>/ and are resumable as the grid's
(--num_shards / --shard_index split them over processes).
"""

from __future__ import annotations

import dataclasses
import json
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
from fedcmi_tff.programs import runtime  # noqa: E402
from fedcmi_tff.programs import tuning  # noqa: E402

_BUDGET = flags.DEFINE_integer('tuning_budget', 6, 'Trials per algorithm (the same for every '
                               'algorithm); trial 0 is the flags\' own values.')
_SAMPLER_SEED = flags.DEFINE_integer('sampler_seed', 0, 'Seed of the trials\' random draws.')
flags.mark_flag_as_required('output_dir')


def trial_cells(base, algorithms, budget, sampler_seed, seeds, out_dir) -> list:
  """Every run of the search, as grid_runner cells (with `trial` and `values`).

  Raises:
    ValueError: an algorithm that is not registered or has no search space, or budget < 1.
  """
  alpha = grid_runner.label(base.federation.dirichlet_alpha)
  ratio = grid_runner.label(base.federation.multi_ratio)
  cells = []
  for algorithm in algorithms:
    if algorithm not in method_registry.algorithm_names():
      raise ValueError(f'tune takes algorithms ({", ".join(method_registry.algorithm_names())})'
                       f'; got {algorithm!r} (ablations train with fedcmi\'s tuned values)')
    for k, values in enumerate(tuning.trials(algorithm, base, budget, sampler_seed)):
      for seed in seeds:
        config = tuning.apply_values(dataclasses.replace(
            base, federation=dataclasses.replace(base.federation, seed=seed)), values)
        config = method_registry.method_config(algorithm, config,
                                               registry.DATASET_MODALITIES[base.dataset])
        cells.append(dict(method=algorithm, algorithm=algorithm, alpha=alpha, ratio=ratio,
                          seed=seed, trial=k, values=values, config=config,
                          dir=os.path.join(out_dir, algorithm, f'trial_{k}', f'seed_{seed}')))
  return cells


def tuning_record(cells, base, budget, sampler_seed, seeds) -> dict:
  """tuned.json's content from the finished trial runs' summaries."""
  by_algorithm = {}
  for cell in cells:
    with open(os.path.join(cell['dir'], 'summary.json')) as f:
      summary = json.load(f)
    score = summary['last_rounds_mean'][tuning.SCORE_COLUMN]
    trials = by_algorithm.setdefault(cell['algorithm'], {})
    trials.setdefault(cell['trial'], dict(values=cell['values'], seed_scores={}))
    trials[cell['trial']]['seed_scores'][str(cell['seed'])] = score
  algorithms = {}
  for algorithm, trials in by_algorithm.items():
    ordered = [trials[k] for k in sorted(trials)]
    for t in ordered:
      t['score'] = sum(t['seed_scores'].values()) / len(t['seed_scores'])
    best = tuning.choose([t['score'] for t in ordered])
    algorithms[algorithm] = dict(values=ordered[best]['values'], trial=best,
                                 score=ordered[best]['score'], trials=ordered)
  return dict(
      criterion=tuning.CRITERION, budget=budget, sampler_seed=sampler_seed,
      seeds=list(seeds), search_spaces={a: {k: list(v) for k, v in
                                            tuning.search_space(a).items()}
                                        for a in algorithms},
      cell=dict(dataset=base.dataset, synthetic_dominant=base.synthetic_dominant,
                dirichlet_alpha=base.federation.dirichlet_alpha,
                multi_ratio=base.federation.multi_ratio,
                num_clients=base.federation.num_clients,
                clients_per_round=base.federation.clients_per_round,
                rounds=base.federation.rounds,
                validation_fraction=base.federation.validation_fraction),
      algorithms=algorithms)


def markdown(record: dict) -> str:
  """tuning.md: every trial's values and validation score, the chosen one marked."""
  lines = [f'Tuning: {record["budget"]} trials per algorithm, seeds {record["seeds"]}; score = '
           f'{record["criterion"]}.\n']
  for algorithm, entry in record['algorithms'].items():
    names = list(entry['values'])
    lines.append(f'### {algorithm}\n')
    lines.append('| trial | ' + ' | '.join(names) + ' | validation score (%) |')
    lines.append('|' + '---|' * (len(names) + 2))
    for k, t in enumerate(entry['trials']):
      mark = ' **chosen**' if k == entry['trial'] else ''
      lines.append(f'| {k}{mark} | ' + ' | '.join(f'{t["values"][n]:g}' for n in names) +
                   f' | {100 * t["score"]:.1f} |')
    lines.append('')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    base = flag_config.validated_base_config()
    if base.federation.validation_fraction <= 0:
      raise ValueError('tune selects on the validation split: set --validation_fraction > 0')
    seeds = [int(s) for s in flag_config.SEEDS.value]
    algorithms = flag_config.METHODS.value
    if not seeds or not algorithms:
      raise ValueError('--methods and --seeds must be non-empty')
    out_dir = flag_config.OUTPUT_DIR.value
    cells = trial_cells(base, algorithms, _BUDGET.value, _SAMPLER_SEED.value, seeds, out_dir)
    shard = flag_config.check_cells(cells)
  except ValueError as e:
    print(f'tune: error: {e}', file=sys.stderr)
    return 2

  def finish(started: float) -> None:
    record = tuning_record(cells, base, _BUDGET.value, _SAMPLER_SEED.value, seeds)
    files.write_text(os.path.join(out_dir, 'tuned.json'), json.dumps(record, indent=1) + '\n')
    text = markdown(record)
    files.write_text(os.path.join(out_dir, 'tuning.md'), text)
    print('\n' + text)
    print('tune: chose ' + '; '.join(
        f'{a}: ' + ', '.join(f'{k.split(".")[1]}={v:g}' for k, v in e['values'].items())
        for a, e in record['algorithms'].items()) +
          f' ({grid_runner.duration(time.time() - started)}); '
          f'{os.path.join(out_dir, "tuned.json")}')

  return grid_runner.run_then_finish('tune', 'trials', cells, shard,
                                     lambda: flag_config.configure_runtime('tune'), finish)


if __name__ == '__main__':
  runtime.run_program(main)
