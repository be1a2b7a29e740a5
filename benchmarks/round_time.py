"""Benchmark: seconds per training round under each runtime, against a plain TensorFlow loop.

  venv/bin/python benchmarks/round_time.py --flagfile=configs/demo.flags [--quick] [--json=PATH]

For every runtime in --runtimes and algorithm in --algorithms, a fresh Python
process (so that imports and tracing count) loads the embedded dataset, builds
the learning process and runs rounds of `process.next` (training only; the
per-round evaluation of `train` is not timed) for each case of --cases
(`<num_clients>x<clients_per_round>`; the clients, their data and the sampled
clients are the same for every runtime).  Runtimes:

  inprocess, tff_cpp   as `train --runtime=...`
  tff_remote           as `train --runtime=tff_remote --workers=...` (pass --workers)
  plain                the ideal: one `client_update` tf.function (built once, the
                       same function the processes wrap) called client by client
                       in a Python loop, the modality-masked mean done in numpy
  <runtime>/reduce     that runtime with the client update's old tf.data-reduce
                       loops (learning/dataset_loops.py), as on main before them

Reported per (runtime, algorithm, case): cold start (imports, data, build,
initialisation and the first round; first case only), the first round of the
case, the steady seconds per round (median of rounds 3..N), the ratio to plain,
and the largest difference of the final global weights from plain's (every
runtime trains the same model on the same clients; kernels of TFF's worker round
differently in the last bits).  With --memory_rounds, the resident memory of the
whole process tree (this process and any TFF worker) after those rounds of
--memory_case, FedCMI only.  Prints a Markdown table; --json writes the rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

_STARTED = time.perf_counter()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import psutil  # noqa: E402
# TensorFlow is imported before absl parses the flags: imported later (inside app.run),
# Keras then fails to build functional models after a TFF process was built
# ("'SymbolicTensor' object has no attribute 'node'").  Its import time still counts
# in the cold start (measured from the top of this file).
import tensorflow as tf  # noqa: E402

from fedcmi_tff.programs import flag_config  # noqa: E402  (the experiment flags)

_RUNTIMES = flags.DEFINE_list(
    'runtimes', ['inprocess', 'tff_cpp', 'plain'],
    'Runtimes to measure side by side: inprocess, tff_cpp, tff_remote, plain; '
    '<runtime>/reduce for the old tf.data-reduce client loops.')
_ALGORITHMS = flags.DEFINE_list('algorithms', ['fedcmi', 'fedavg'], 'Algorithms to measure.')
_CASES = flags.DEFINE_list('cases', ['10x5', '100x5', '100x20', '100x50'],
                           'num_clients x clients_per_round; 10x5 is the demo configuration.')
_ROUNDS = flags.DEFINE_integer('rounds_per_case', 10, 'Rounds per case; steady = median of 3..N.')
_MEMORY_ROUNDS = flags.DEFINE_list(
    'memory_rounds', ['20', '200'], 'Rounds after which the process tree\'s resident memory is '
    'read (FedCMI, --memory_case); empty to skip.')
_MEMORY_CASE = flags.DEFINE_string('memory_case', '100x20', 'The case of the memory runs.')
_QUICK = flags.DEFINE_bool(
    'quick', False, 'A check that finishes in under 5 minutes: cases 10x5 and 100x20, 6 rounds, '
    'memory after rounds 10 and 30 of FedCMI in process only.')
_JSON = flags.DEFINE_string('json', None, 'Also write the rows as JSON to this path.')
_MEASURE = flags.DEFINE_string('measure', None, 'Internal: measure one runtime/algorithm and '
                               'write the result to this JSON path.')
_MEASURE_RUNTIME = flags.DEFINE_string('measure_runtime', None, 'Internal.')
_MEASURE_ALGORITHM = flags.DEFINE_string('measure_algorithm', None, 'Internal.')
_MEASURE_MEMORY = flags.DEFINE_bool('measure_memory', False, 'Internal.')
_WEIGHTS_DIR = flags.DEFINE_string('weights_dir', None, 'Internal.')


def _parse_case(case: str) -> tuple:
  num_clients, per_round = (int(v) for v in case.lower().split('x'))
  if not 0 < per_round <= num_clients:
    raise ValueError(f'case {case!r}: need 0 < clients_per_round <= num_clients')
  return num_clients, per_round


def _tree_rss_mib() -> float:
  me = psutil.Process(os.getpid())
  total = me.memory_info().rss
  for child in me.children(recursive=True):
    try:
      total += child.memory_info().rss
    except psutil.Error:
      pass
  return total / 2**20


# -- One measurement, in a fresh process ---------------------------------------------------


class _PlainRunner:
  """The ideal loop: the client-update tf.function, called client by client, mean in numpy."""

  def __init__(self, model_fn, config, loop, total_rounds):
    # pylint: disable=g-import-not-at-top
    import numpy as np
    from fedcmi_tff.algorithms import registry
    from fedcmi_tff.learning import client_update
    objective = registry.client_objective(config.algorithm, config.objective)
    self._np = np
    self._model = model_fn()
    teacher = model_fn() if objective.needs_teacher else None
    self._update = client_update.build_client_update_fn(
        self._model, teacher, objective, config.training,
        registry.proximal_strength(config.algorithm, config.objective), loop,
        total_rounds=total_rounds)
    self._groups = self._model.variable_groups()

  def initial(self, weights):
    return ([self._np.asarray(w) for w in weights.trainable],
            [self._np.asarray(w) for w in weights.non_trainable])

  def round(self, weights, datasets, round_num):
    np = self._np
    sums = [[np.zeros_like(w) for w in part] for part in weights]
    totals = np.zeros(3, np.float32)
    for dataset in datasets:
      out = self._update(weights, dataset, tf.constant(round_num, tf.int32))
      group_weights = out.group_weights.numpy()
      totals += group_weights
      for part, deltas, groups in zip(sums, out.update, self._groups):
        for i, (delta, group) in enumerate(zip(deltas, groups)):
          part[i] += delta.numpy() * group_weights[group]
    new = []
    for part, values, groups in zip(sums, weights, self._groups):
      new.append([w - (s / totals[g] if totals[g] > 0 else 0.0)
                  for s, w, g in zip(part, values, groups)])
    return tuple(new)


def _measure(runtime_spec: str, algorithm: str, cases: list, rounds: int,
             memory_rounds: list, weights_dir: str) -> dict:
  """Runs in a fresh process; returns {'cases': [...], 'cold_start_seconds', 'memory'}."""
  # pylint: disable=g-import-not-at-top
  import dataclasses
  import numpy as np
  from fedcmi_tff.data import client_data as client_data_lib
  from fedcmi_tff.data import registry
  from fedcmi_tff.learning import dataset_loops
  from fedcmi_tff.learning import processes
  from fedcmi_tff.programs import experiment
  from fedcmi_tff.programs import runtime as runtime_lib
  runtime_name, _, loop_name = runtime_spec.partition('/')
  loop = dataset_loops.DATASET_REDUCE if loop_name == 'reduce' else dataset_loops.DATASET_ITERATOR
  base = dataclasses.replace(flag_config.base_config(), algorithm=algorithm)
  total_rounds = max([rounds] + memory_rounds)
  if runtime_name != 'plain':
    runtime_lib.configure_execution_context(runtime_name, tuple(flag_config.WORKERS.value),
                                            flag_config.MAX_CONCURRENT_CLIENTS.value)
  splits = registry.load_dataset(base.dataset, data_dir=base.data_dir, seed=base.dataset_seed,
                                 synthetic_dominant=base.synthetic_dominant)
  result = {'cases': [], 'memory': {}}
  runner = process = None
  for case_index, (num_clients, per_round) in enumerate(cases):
    fed = dataclasses.replace(base.federation, num_clients=num_clients,
                              clients_per_round=per_round)
    data = client_data_lib.build_federated_splits(
        splits, num_clients=num_clients, dirichlet_alpha=fed.dirichlet_alpha,
        multi_ratio=fed.multi_ratio, seed=fed.seed, balance_cap=fed.balance_cap,
        only_modality=fed.only_modality)
    ids = data.client_data.client_ids
    datasets = {c: data.client_data.create_tf_dataset_for_client(c) for c in ids}
    model_fn = experiment.make_model_fn(data.modality_names, data.input_shapes,
                                        len(data.class_names), base.model, data.vocabulary_sizes)
    if runner is None and process is None:
      if runtime_name == 'plain':
        runner = _PlainRunner(model_fn, base, loop, total_rounds)
      else:
        process = processes.build_process_for_config(
            algorithm, model_fn, data.client_data.element_type_structure,
            objective=base.objective, training=base.training, total_rounds=total_rounds,
            loop=loop)
    tf.keras.utils.set_random_seed(fed.seed)
    initial = experiment.tff_weights(model_fn())
    # TFF traced its computations without a global seed, so their local shuffles draw
    # from the op seed (the round) alone; the plain loop's tf.function must trace alike.
    tf.random.set_seed(None)
    if process is not None:
      state = process.set_model_weights(process.initialize(), initial)
    else:
      weights = runner.initial(initial)
    seconds, memory = [], {}
    total = max([rounds] + (memory_rounds if case_index == 0 else []))
    for round_num in range(total):
      chosen = [datasets[c] for c in experiment.sample_clients(ids, per_round, fed.seed,
                                                                round_num)]
      started = time.perf_counter()
      if process is not None:
        state = process.next(state, chosen).state
      else:
        weights = runner.round(weights, chosen, round_num)
      seconds.append(time.perf_counter() - started)
      if round_num == 0 and case_index == 0:
        result['cold_start_seconds'] = time.perf_counter() - _STARTED
      if round_num + 1 in memory_rounds and case_index == 0:
        memory[round_num + 1] = _tree_rss_mib()
    if process is not None:
      final = process.get_model_weights(state)
      final = [np.asarray(w) for w in list(final.trainable) + list(final.non_trainable)]
    else:
      final = [np.asarray(w) for w in weights[0] + weights[1]]
    path = os.path.join(weights_dir, f'{runtime_spec.replace("/", "_")}_{algorithm}_'
                                     f'{num_clients}x{per_round}_{total}rounds.npz')
    np.savez(path, *final)
    steady = seconds[2:rounds] if rounds > 2 else seconds
    result['cases'].append(dict(
        num_clients=num_clients, clients_per_round=per_round, rounds=rounds,
        first_round_seconds=seconds[0], steady_seconds_per_round=statistics.median(steady),
        weights=path))
    if memory:
      result['memory'] = {str(k): v for k, v in memory.items()}
      result['memory_steady_seconds_per_round'] = statistics.median(seconds[2:])
  runtime_lib.stop_worker_processes()
  return result


# -- The parent: one fresh process per measurement, then the table -------------------------


def _child(argv: list, spec: str, algorithm: str, memory: bool, out_dir: str) -> dict:
  out = os.path.join(out_dir, f'{spec.replace("/", "_")}_{algorithm}_{int(memory)}.json')
  command = [sys.executable, os.path.abspath(__file__)] + argv + [
      f'--measure={out}', f'--measure_runtime={spec}', f'--measure_algorithm={algorithm}',
      f'--measure_memory={str(memory).lower()}', f'--weights_dir={out_dir}']
  if _QUICK.value:
    command.append('--quick')
  started = time.time()
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False,
                        env=dict(os.environ, PYTHONPATH=REPO))
  if proc.returncode != 0 or not os.path.exists(out):
    raise RuntimeError(f'{spec} {algorithm} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}')
  print(f'round_time: measured {spec} {algorithm}{" (memory)" if memory else ""} in '
        f'{time.time() - started:.0f}s', file=sys.stderr, flush=True)
  with open(out) as f:
    return json.load(f)


def _max_diff(path_a: str, path_b: str) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(path_a) as a, np.load(path_b) as b:
    return float(max(np.max(np.abs(a[k] - b[k])) if a[k].size else 0.0 for k in a.files))


def _settings():
  if _QUICK.value:
    return ['10x5', '100x20'], 6, [10, 30]
  return list(_CASES.value), _ROUNDS.value, [int(r) for r in _MEMORY_ROUNDS.value]


def _fmt(value, digits=2):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '–'
  return f'{value:.{digits}f}'


def main(argv):
  cases_text, rounds, memory_rounds = _settings()
  cases = [_parse_case(c) for c in cases_text]
  if _MEASURE.value:
    result = _measure(_MEASURE_RUNTIME.value, _MEASURE_ALGORITHM.value,
                      [_parse_case(_MEMORY_CASE.value)] if _MEASURE_MEMORY.value else cases,
                      rounds, memory_rounds if _MEASURE_MEMORY.value else [],
                      _WEIGHTS_DIR.value)
    with open(_MEASURE.value, 'w') as f:
      json.dump(result, f)
    return 0
  if rounds < 3:
    raise app.UsageError('--rounds_per_case must be >= 3 (steady = median of rounds 3..N)')
  passthrough = [a for a in sys.argv[1:] if not a.startswith(('--json', '--quick', '--noquick'))]
  out_dir = tempfile.mkdtemp(prefix='fedcmi-round-time-')
  rows = []
  for spec in _RUNTIMES.value:
    for algorithm in _ALGORITHMS.value:
      measured = _child(passthrough, spec, algorithm, False, out_dir)
      for i, case in enumerate(measured['cases']):
        rows.append(dict(kind='time', runtime=spec, algorithm=algorithm,
                         num_clients=case['num_clients'],
                         clients_per_round=case['clients_per_round'], rounds=case['rounds'],
                         cold_start_seconds=measured['cold_start_seconds'] if i == 0 else None,
                         first_round_seconds=case['first_round_seconds'],
                         steady_seconds_per_round=case['steady_seconds_per_round'],
                         weights=case['weights']))
  memory_specs = ([s for s in _RUNTIMES.value if s == 'inprocess'] if _QUICK.value
                  else list(_RUNTIMES.value))
  if memory_rounds and 'fedcmi' in _ALGORITHMS.value:
    num_clients, per_round = _parse_case(_MEMORY_CASE.value)
    for spec in memory_specs:
      measured = _child(passthrough, spec, 'fedcmi', True, out_dir)
      first, last = (measured['memory'][str(r)] for r in (memory_rounds[0], memory_rounds[-1]))
      rows.append(dict(kind='memory', runtime=spec, algorithm='fedcmi', num_clients=num_clients,
                       clients_per_round=per_round, rounds=memory_rounds[-1],
                       steady_seconds_per_round=measured['memory_steady_seconds_per_round'],
                       rss_mib=measured['memory'],
                       rss_growth_percent=100.0 * (last - first) / first))
  plain = {(r['algorithm'], r['num_clients'], r['clients_per_round']): r for r in rows
           if r['kind'] == 'time' and r['runtime'] == 'plain'}
  for row in rows:
    if row['kind'] != 'time':
      continue
    reference = plain.get((row['algorithm'], row['num_clients'], row['clients_per_round']))
    row['ratio_to_plain'] = (row['steady_seconds_per_round'] /
                             reference['steady_seconds_per_round'] if reference else None)
    row['max_abs_weight_diff_vs_plain'] = (_max_diff(row['weights'], reference['weights'])
                                           if reference else None)
  for row in rows:
    row.pop('weights', None)

  print('\nTraining round time (process.next only), seconds; steady = median of rounds 3..'
        f'{rounds}; cold start = imports + data + build + first round.\n')
  print('| runtime | algorithm | clients | per round | cold start | first round | steady | '
        'x plain | max abs weight diff vs plain |')
  print('|---|---|---:|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    if r['kind'] == 'time':
      diff = r['max_abs_weight_diff_vs_plain']
      print(f'| {r["runtime"]} | {r["algorithm"]} | {r["num_clients"]} | '
            f'{r["clients_per_round"]} | {_fmt(r["cold_start_seconds"], 1)} | '
            f'{_fmt(r["first_round_seconds"])} | {_fmt(r["steady_seconds_per_round"], 3)} | '
            f'{_fmt(r["ratio_to_plain"])} | {"–" if diff is None else f"{diff:.1e}"} |')
  memory_rows = [r for r in rows if r['kind'] == 'memory']
  if memory_rows:
    points = list(memory_rows[0]['rss_mib'])
    print(f'\nResident memory of the process tree (MiB), FedCMI, {_MEMORY_CASE.value}, after '
          f'rounds {", ".join(points)}.\n')
    print('| runtime | ' + ' | '.join(f'round {p}' for p in points) +
          ' | growth | steady s/round |')
    print('|---|' + '---:|' * (len(points) + 2))
    for r in memory_rows:
      print(f'| {r["runtime"]} | ' + ' | '.join(f'{r["rss_mib"][p]:.0f}' for p in points) +
            f' | {r["rss_growth_percent"]:+.1f}% | {r["steady_seconds_per_round"]:.3f} |')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(rows, f, indent=2)
    print(f'\nround_time: rows written to {_JSON.value}')
  return 0


if __name__ == '__main__':
  app.run(main)
