"""Compares algorithms over seeds: `python -m fedcmi_tff.compare --flagfile=configs/demo.flags`.

Runs each of --algorithms for each of --seeds with identical data, partition,
model and evaluation, plus (with --unimodal_reference) FedAvg on clients that
hold only that modality: what the modality reaches trained alone.  Writes
<output_dir>/<method>/seed_<s>/ (as train.py), comparison.csv (one row per run)
and comparison.md (mean ± std over seeds), and prints the table.  Finished runs
are reused and unfinished ones resumed; a run whose configuration differs stops
the program rather than being overwritten.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff import config as config_lib  # noqa: E402
from fedcmi_tff.data import prepared  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import comparison  # noqa: E402
from fedcmi_tff.programs import experiment  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_ALGORITHMS = flags.DEFINE_list('algorithms', ['fedcmi', 'fedavg'], 'Algorithms to compare.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds.')
_UNIMODAL_REFERENCE = flags.DEFINE_string(
    'unimodal_reference', 'visual',
    'Also train FedAvg with every client holding only this modality; empty to skip.')
flags.mark_flag_as_required('output_dir')


def _runs(base: config_lib.ExperimentConfig, seeds: list, reference: str | None):
  """(method label, config) for every run, grouped by method."""
  runs = []
  for algorithm in _ALGORITHMS.value:
    for seed in seeds:
      runs.append((algorithm, dataclasses.replace(
          base, algorithm=algorithm,
          federation=dataclasses.replace(base.federation, seed=seed))))
  if reference:
    for seed in seeds:
      runs.append((f'{reference}_alone', dataclasses.replace(
          base, algorithm='fedavg', federation=dataclasses.replace(
              base.federation, seed=seed, only_modality=reference, multi_ratio=0.0))))
  return runs


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    seeds = [int(s) for s in _SEEDS.value]
    base = flag_config.experiment_config()
    for algorithm in _ALGORITHMS.value:
      dataclasses.replace(base, algorithm=algorithm).validate(registry.DATASET_NAMES)
    if not seeds:
      raise ValueError('--seeds is empty')
    flag_config.check_runtime_flags()
  except ValueError as e:
    print(f'compare: error: {e}', file=sys.stderr)
    return 2
  reference = _UNIMODAL_REFERENCE.value or None
  runs = _runs(base, seeds, reference)
  out_dir = flag_config.OUTPUT_DIR.value
  print(f'compare: TFF runtime: {flag_config.configure_runtime()}', flush=True)
  cache, records, names = {}, [], None
  started = time.time()
  try:
    for i, (method, config) in enumerate(runs):
      run_dir = os.path.join(out_dir, method, f'seed_{config.federation.seed}')
      print(f'compare: run {i + 1}/{len(runs)}: {method}, seed {config.federation.seed} '
            f'({time.time() - started:.0f}s elapsed)', flush=True)
      summary = experiment.finished_summary(config, run_dir)
      if summary is None:
        summary = experiment.run_experiment(
            config, run_dir, resume=True, process_cache=cache,
            log=lambda line: print('  ' + line, flush=True)).summary
      else:
        print('  finished earlier; reusing its summary.json', flush=True)
      names = summary['modality_names']
      record = {'method': method, 'algorithm': config.algorithm,
                'seed': config.federation.seed}
      record.update(summary['final'])
      for m in names:
        record[f'acc_{m}_unimodal'] = summary['final'][
            comparison.unimodal_path_column(config.algorithm, m)]
      records.append(record)
  except (experiment.OutputDirectoryError, prepared.DataFormatError) as e:
    print(f'compare: error: {e}', file=sys.stderr)
    return 2
  finally:
    runtime.stop_worker_processes()

  a, b = names
  columns = ['acc_fused', f'acc_{a}_unimodal', f'acc_{b}_unimodal', f'acc_{a}_path',
             f'acc_{b}_path', f'acc_{a}_zero', f'acc_{b}_zero', 'acc_macro', 'acc_worst_class']
  labels = {'acc_fused': 'fused', f'acc_{a}_unimodal': f'{a} (own path)',
            f'acc_{b}_unimodal': f'{b} (own path)', f'acc_{a}_path': f'{a} infil-filled',
            f'acc_{b}_path': f'{b} infil-filled', f'acc_{a}_zero': f'{a} zero-filled',
            f'acc_{b}_zero': f'{b} zero-filled', 'acc_macro': 'macro',
            'acc_worst_class': 'worst class'}
  frame = comparison.runs_frame(records)
  table = comparison.mean_std_table(frame, columns)
  markdown = comparison.markdown_table(table, columns, labels)
  experiment.write_atomically(os.path.join(out_dir, 'comparison.csv'),
                              frame.to_csv(index=False))
  experiment.write_atomically(os.path.join(out_dir, 'comparison.md'), markdown)
  print(f'\nFinal-round test accuracy (%), mean ± std over seeds {seeds}; '
        f'{base.federation.rounds} rounds, {base.dataset}; "own path" is the path each '
        'method trains for unimodal clients (FedCMI: infiltration-filled, FedAvg: zero-filled).')
  print(markdown)
  print(f'compare: {len(runs)} runs in {time.time() - started:.0f}s; results in {out_dir}')
  return 0


if __name__ == '__main__':
  runtime.run_program(main)
