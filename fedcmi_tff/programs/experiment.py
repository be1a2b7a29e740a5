"""Runs one federated training experiment and writes its results.

Output directory (written through `program_io`: TFF program-state and release managers):
  config.json       the method and the configuration it applied (registry.applied_config)
  metrics.csv       one row per round (written atomically after every round)
  per_class.csv     per-class accuracy of every inference path, one row per round and path;
                    FedCMI adds teacher_<modality> (the global self heads' accuracy on the
                    distilling clients' data) and temperature (their mean class temperatures)
  summary.json      configuration, final-round, last-5-round mean and best-round values (best
                    chosen on the validation split when there is one), the TFF runtime, the
                    server aggregation (bytes a client sends per round; with dp the
                    (epsilon, delta) of the rounds run)
  checkpoint.npz    program state after the last finished round: the round, the global
                    weights and the whole learning state (server optimiser included), for
                    --resume
  tensorboard/      TensorBoard scalars
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import json
import os
import shutil
import time
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff import files
from fedcmi_tff.algorithms import registry as method_registry
from fedcmi_tff.data import client_data as client_data_lib
from fedcmi_tff.data import prepared
from fedcmi_tff.data import registry
from fedcmi_tff.learning import evaluation
from fedcmi_tff.learning import processes
from fedcmi_tff.models import fedcmi_model
from fedcmi_tff.programs import program_io
from fedcmi_tff.programs import runtime
from fedcmi_tff.programs import server_aggregation


class OutputDirectoryError(Exception):
  """The output directory holds results that would be overwritten, or is in use."""


class DivergenceError(Exception):
  """Training diverged: a round's global weights are not finite, or every client's
  update was.  The output folder keeps the state and metrics of the round before."""

  def __init__(self, message: str, round_num: int):
    super().__init__(message)
    self.round_num = round_num


class Interrupted(Exception):
  """A stop was requested (SIGINT/SIGTERM); the run stopped after a saved round."""

  def __init__(self, message: str, reason: str):
    super().__init__(message)
    self.reason = reason


# What a run writes into its folder; --overwrite deletes these and nothing else.
RUN_ENTRIES = ('config.json', 'metrics.csv', 'per_class.csv', 'summary.json',
               program_io.CHECKPOINT_NAME, 'tensorboard', '.lock')


class ExperimentResult(NamedTuple):
  output_dir: str
  rows: list
  summary: dict


def summary_columns(modality_names, validation: bool = False) -> tuple:
  """The accuracy columns summarised per run; with `validation`, also their val_ twins."""
  a, b = modality_names
  test = ('acc_fused', f'acc_{a}_path', f'acc_{b}_path', f'acc_{a}_zero', f'acc_{b}_zero',
          'acc_macro', 'acc_worst_class', 'acc_class_spread')
  return test + tuple(VALIDATION_PREFIX + c for c in test) if validation else test


# Columns measured on the validation split carry this prefix (metrics.csv, summary.json).
VALIDATION_PREFIX = 'val_'
# summary.json's 'last_rounds' block: the mean over this many final rounds.
LAST_ROUNDS = 5


def make_model_fn(modality_names, input_shapes, num_classes, model_config,
                  vocabulary_sizes=None) -> Callable:
  def model_fn():
    return fedcmi_model.DecomposedModel(modality_names, input_shapes, num_classes, model_config,
                                        vocabulary_sizes=vocabulary_sizes)
  return model_fn


def sample_clients(client_ids: list, clients_per_round: int, seed: int, round_num: int) -> list:
  """Uniform sampling without replacement, a function of (seed, round) only."""
  rng = np.random.default_rng([seed, round_num])
  chosen = rng.choice(len(client_ids), size=clients_per_round, replace=False)
  return [client_ids[i] for i in sorted(chosen)]


def _prepare_output_dir(output_dir: str, config: config_lib.ExperimentConfig, overwrite: bool,
                        resume: bool, state_manager) -> int:
  """Returns the number of finished rounds to resume from (0 for a new run).

  Raises:
    OutputDirectoryError: the folder holds another run, or resuming it with this round
      count would not give the run this configuration describes.
  """
  config_path = os.path.join(output_dir, 'config.json')
  existing = [e for e in os.listdir(output_dir) if e != '.lock' and not _is_temporary(e)]
  if existing and resume:
    if not os.path.exists(config_path):
      raise OutputDirectoryError(f'{output_dir}: cannot resume, no config.json there')
    with open(config_path) as f:
      saved = json.load(f)
    if _without_rounds(comparable(saved)) != _without_rounds(comparable(config)):
      raise OutputDirectoryError(
          f'{output_dir}/config.json differs from this run\'s configuration; '
          'resume only with the same flags (the round count may grow)')
    try:
      versions = program_io.run_sync(state_manager.get_versions())
    except program_io.CheckpointError as e:
      raise OutputDirectoryError(str(e)) from None
    if not versions:
      finished = [n for n in ('metrics.csv', 'summary.json')
                  if os.path.exists(os.path.join(output_dir, n))]
      if finished:
        raise OutputDirectoryError(
            f'{output_dir}: cannot resume, its program state ({program_io.CHECKPOINT_NAME}) is '
            f'missing but {" and ".join(finished)} hold finished rounds; restore it, or pass '
            '--overwrite to start afresh')
      return 0
    completed = max(versions)
    _check_round_count(output_dir, saved, config, completed)
    return completed
  if existing and not overwrite:
    raise OutputDirectoryError(
        f'output_dir {output_dir} already exists and is not empty; pass --resume to continue '
        'that run or --overwrite to replace it')
  if existing and overwrite:
    _remove_run(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  return 0


def _remove_run(output_dir: str) -> None:
  """Deletes the files of a run; refuses a folder that is not only a run's."""
  entries = os.listdir(output_dir)
  if 'config.json' not in entries:
    raise OutputDirectoryError(
        f'--overwrite replaces a run folder (one holding config.json); {output_dir} holds '
        f'none, so nothing was deleted: choose another --output_dir')
  foreign = sorted(e for e in entries if e not in RUN_ENTRIES and not _is_temporary(e))
  if foreign:
    raise OutputDirectoryError(
        f'--overwrite: {output_dir} also holds {", ".join(foreign[:5])}'
        f'{" ..." if len(foreign) > 5 else ""}, which a run does not write; nothing was '
        'deleted: move them away or choose another --output_dir')
  for entry in entries:
    if entry == '.lock':  # held by this run: deleting it would let another run lock anew
      continue
    path = os.path.join(output_dir, entry)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.unlink(path)


def _is_temporary(name: str) -> bool:
  return name.startswith(files.TEMPORARY_PREFIX)


class _RunLock:
  """An exclusive lock on an output folder (fcntl.flock of <dir>/.lock) for one run."""

  def __init__(self, output_dir: str):
    self._path = os.path.join(output_dir, '.lock')
    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(self._fd, 64, 0).decode(errors='replace').strip() or 'unknown'
      os.close(self._fd)
      raise OutputDirectoryError(
          f'{output_dir} is in use by another run (process {holder}); wait for it to finish '
          'or choose another --output_dir') from None
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f'{os.getpid()}\n'.encode(), 0)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _remove_temporary_files(output_dir: str) -> int:
  """Removes temporary files an interrupted write left (only under the run's lock)."""
  stale = [e for e in os.listdir(output_dir) if _is_temporary(e)]
  for name in stale:
    path = os.path.join(output_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    else:
      os.unlink(path)
  return len(stale)


def _check_round_count(output_dir: str, saved: dict, config: config_lib.ExperimentConfig,
                       completed: int) -> None:
  """Refuses a resume whose round count cannot reproduce the fresh run of that length."""
  rounds = config.federation.rounds
  saved_rounds = saved.get('federation', {}).get('rounds', rounds)
  if rounds < completed:
    raise OutputDirectoryError(
        f'{output_dir} holds {completed} finished rounds, more than --rounds={rounds}; pass '
        f'--rounds={completed} or more to resume it, or use another --output_dir')
  if rounds != saved_rounds and config.training.depends_on_total_rounds(completed):
    t = config.training
    raise OutputDirectoryError(
        f'{output_dir} was run for {saved_rounds} rounds and its learning rate decays after '
        f'round {t.constant_lr_rounds + 1} towards {t.min_learning_rate} over the total round '
        f'count, so its {completed} finished rounds differ from those of a fresh {rounds}-round '
        f'run; resume it with --rounds={saved_rounds}, or run {rounds} rounds into another '
        '--output_dir (or --overwrite)')


def _train_metrics(train: dict) -> collections.OrderedDict:
  """Per-round training columns from the summed client metrics.

  Metrics an objective does not report take the value that means "not used":
  no distillation (0), no temperature (1).
  """
  get = lambda name: float(np.mean(train[name])) if name in train else 0.0
  batches = get('num_batches')
  teaching = get('a_teaches_batches') + get('b_teaches_batches')
  out = collections.OrderedDict()
  out['train_loss'] = get('loss_sum') / batches if batches else float('nan')
  out['distillation_loss'] = get('distillation_loss_sum') / teaching if teaching else 0.0
  out['a_teaches_fraction'] = get('a_teaches_batches') / teaching if teaching else 0.0
  out['multimodal_clients'] = get('multimodal_clients')
  out['proximal_term'] = get('proximal_term') / max(get('clients'), 1.0)
  temps = get('temperature_clients')
  out['mean_class_temperature'] = get('class_temperature_sum') / temps if temps else 1.0
  out['non_finite_clients'] = get('non_finite_clients')
  return out


def _distillation_diagnostics(train: dict, modality_names) -> tuple:
  """FedCMI's per-round diagnostics from the summed client metrics (empty for others).

  Over the clients that distilled this round (multimodal, past the warm-up, class-wise
  temperatures): the global model's self-head accuracy on their data per class (the
  teacher's, in the direction its modality teaches) and their mean class temperatures.

  Returns:
    (columns, paths): scalar metrics.csv columns, and {per_class.csv path: [K] values}.
  """
  if 'teacher_class_count' not in train:
    return collections.OrderedDict(), collections.OrderedDict()
  count = np.asarray(train['teacher_class_count'], np.float64)
  clients = float(train['temperature_clients'])
  a, b = modality_names
  columns, paths = collections.OrderedDict(), collections.OrderedDict()
  for name, key in ((a, 'teacher_correct_a'), (b, 'teacher_correct_b')):
    correct = np.asarray(train[key], np.float64)
    columns[f'teacher_acc_{name}'] = (float(correct.sum() / count.sum()) if count.sum()
                                      else float('nan'))
    paths[f'teacher_{name}'] = evaluation.per_class_accuracy(correct, count)
  temperature = (np.asarray(train['class_temperature_sum'], np.float64) / clients if clients
                 else np.full(count.shape, np.nan))
  columns['min_class_temperature'] = float(np.min(temperature))
  columns['max_class_temperature'] = float(np.max(temperature))
  paths['temperature'] = temperature
  return columns, paths


def summarise(rows: list, columns: tuple, config_dict: dict) -> dict:
  """Final-round, last-rounds mean and best-round values of the report columns.

  The best round is the one of highest fused accuracy on the validation split when the
  run has one (`selected_on: 'validation'`); without one it is chosen on the test split
  (`selected_on: 'test'`), which reports must not present as a held-out result.
  """
  final = rows[-1]
  selected_on = 'validation' if VALIDATION_PREFIX + 'acc_fused' in columns else 'test'
  key = (VALIDATION_PREFIX if selected_on == 'validation' else '') + 'acc_fused'
  best = max(rows, key=lambda r: (r[key], -r['round']))
  last = rows[-LAST_ROUNDS:]
  return {
      'config': config_dict,
      'rounds_completed': final['round'],
      'final_round': final['round'],
      'final': {c: final[c] for c in columns},
      'last_rounds': len(last),
      'last_rounds_mean': {c: float(np.mean([r[c] for r in last])) for c in columns},
      'selected_on': selected_on,
      'best_round': best['round'],
      'best': {c: best[c] for c in columns},
      'best_per_column': {c: max(r[c] for r in rows) for c in columns},
  }


def process_key(config: config_lib.ExperimentConfig) -> str:
  """Runs whose configurations share this key can share one built process.

  The round count enters the process only through a decaying learning rate.
  """
  rounds = config.federation.rounds if config.training.decays else 1
  fields = dataclasses.replace(config, federation=config_lib.FederationConfig(rounds=rounds))
  return json.dumps(fields.to_dict(), sort_keys=True)


def finished_summary(config: config_lib.ExperimentConfig, output_dir: str) -> dict | None:
  """The summary of a finished run of exactly `config` in output_dir, else None.

  Raises:
    OutputDirectoryError: output_dir holds a run of a different configuration.
  """
  path = os.path.join(output_dir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    summary = json.load(f)
  saved, wanted = comparable(summary.get('config', {})), comparable(config)
  if saved != wanted:
    if _without_rounds(saved) != _without_rounds(wanted):
      raise OutputDirectoryError(f'{output_dir} holds a run of a different configuration')
    return None  # same run, other round count: resume it
  return summary if summary.get('rounds_completed') == config.federation.rounds else None


# Fields earlier versions wrote that no longer exist: training.total_rounds (the round
# count is federation.rounds) and the objective / modulation enums (the algorithm names
# its objective, algorithms/registry.py).
_OBSOLETE_FIELDS = {'training': ('total_rounds',), 'objective': ('objective', 'modulation')}


def comparable(config) -> dict:
  """A configuration as runs compare: what it applies, in saved-JSON form.

  Accepts an `ExperimentConfig` or a saved config.json dict (of this or an earlier
  version: fields added since take their defaults, obsolete fields are dropped, and
  only the objective fields of its algorithm and the aggregation fields of its
  mechanisms are kept).
  """
  if isinstance(config, config_lib.ExperimentConfig):
    config = method_registry.applied_config(config)
  saved = json.loads(json.dumps(config))
  saved.pop('method', None)
  out = _with_defaults(saved)
  for group, names in _OBSOLETE_FIELDS.items():
    for name in names:
      out.get(group, {}).pop(name, None)
  aggregation = out.get('aggregation', {})
  out['aggregation'] = {k: v for k, v in aggregation.items() if k in
                        config_lib.applied_aggregation_fields(aggregation.get('mechanisms', ()))}
  try:
    keep = method_registry.objective_fields(out.get('algorithm'))
  except ValueError:
    return out  # an unknown algorithm never equals a configuration of this version
  out['objective'] = {k: v for k, v in out.get('objective', {}).items() if k in keep}
  return out


def _with_defaults(saved: dict) -> dict:
  """A saved configuration with fields added since it was written set to their defaults."""
  def merge(default, value):
    if isinstance(default, dict) and isinstance(value, dict):
      return {k: merge(default.get(k), value[k]) if k in value else default[k]
              for k in list(default) + [k for k in value if k not in default]}
    return value
  defaults = json.loads(json.dumps(config_lib.ExperimentConfig().to_dict()))
  return merge(defaults, saved)


def _without_rounds(d: dict) -> dict:
  return {k: (_without_rounds(v) if isinstance(v, dict) else v) for k, v in d.items()
          if k != 'rounds'}


def run_experiment(config: config_lib.ExperimentConfig, output_dir: str, *,
                   overwrite: bool = False, resume: bool = False,
                   log: Callable[[str], None] = print,
                   process_cache: dict | None = None,
                   method: str | None = None,
                   program_state_manager: tff.program.ProgramStateManager | None = None,
                   stop_requested: Callable[[], str | None] | None = None
                   ) -> ExperimentResult:
  """Trains `config.algorithm` for `config.federation.rounds` rounds, evaluating every round.

  The TFF execution context must be configured by the caller
  (`programs.runtime.configure_execution_context`).

  Args:
    config: the experiment.
    output_dir: where results go; see the module docstring.
    overwrite: replace an existing, non-empty output_dir.
    resume: continue the run in output_dir from its checkpoint (a finished run is
      only re-summarised).
    log: receives the progress lines.
    process_cache: optional dict shared between calls: runs that differ only in
      seed, client count or data split reuse one traced TFF process.
    method: the method name `config` was made for (algorithms/registry.py), recorded
      in config.json and summary.json; default the algorithm's name.
    program_state_manager: where the program state goes after every round; default
      `program_io.NpzProgramStateManager(output_dir)` (checkpoint.npz).
    stop_requested: called after every saved round; a non-empty string (the reason,
      e.g. 'SIGTERM') stops the run there with `Interrupted`.

  Raises:
    OutputDirectoryError: the folder holds another run, is in use, or cannot be resumed
      as asked.
    DivergenceError: training diverged (non-finite weights, or every client's update).
    Interrupted: `stop_requested` asked to stop.
    OSError: the folder cannot be written.
  """
  config.validate(registry.DATASET_NAMES, method_registry.algorithm_names())
  config_dict = collections.OrderedDict(method=method or config.algorithm)
  config_dict.update(method_registry.applied_config(config))
  # Data errors (prepared.DataFormatError) surface before anything is written.
  splits = registry.load_dataset(
      config.dataset, data_dir=config.data_dir, seed=config.dataset_seed,
      synthetic_dominant=config.synthetic_dominant,
      synthetic_train_examples=config.synthetic_train_examples,
      load_options=prepared.LoadOptions(num_frames=config.num_frames,
                                        image_size=config.image_size))
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise OutputDirectoryError(f'--output_dir {output_dir} is a file, not a folder')
  os.makedirs(output_dir, exist_ok=True)
  lock = _RunLock(output_dir)
  try:
    return _run_locked(config, config_dict, splits, output_dir, overwrite, resume, log,
                       process_cache, program_state_manager, stop_requested)
  finally:
    lock.release()


def _cached(cache: dict | None, key: str, build: Callable):
  """`build()`, memoised in `cache` under `key` when a cache is given."""
  if cache is None:
    return build()
  if key not in cache:
    cache[key] = build()
  return cache[key]


def _run_locked(config, config_dict, splits, output_dir, overwrite, resume, log, process_cache,
                program_state_manager, stop_requested) -> ExperimentResult:
  """run_experiment once the output folder is locked."""
  fed = config.federation
  removed = _remove_temporary_files(output_dir)
  if removed:
    log(f'removed {removed} temporary file(s) an interrupted write left in {output_dir}')
  state_manager = program_state_manager or program_io.NpzProgramStateManager(output_dir)
  start_round = _prepare_output_dir(output_dir, config, overwrite, resume, state_manager)
  rows = program_io.read_rows(os.path.join(output_dir, 'metrics.csv'), start_round)
  outputs = program_io.run_outputs(output_dir, state_manager, rebuild_tensorboard_from=rows)
  files.write_text(os.path.join(output_dir, 'config.json'),
                   json.dumps(config_dict, indent=2) + '\n')

  data = client_data_lib.build_federated_splits(
      splits, num_clients=fed.num_clients, dirichlet_alpha=fed.dirichlet_alpha,
      multi_ratio=fed.multi_ratio, seed=fed.seed, balance_cap=fed.balance_cap,
      only_modality=fed.only_modality, validation_fraction=fed.validation_fraction)
  client_ids = data.client_data.client_ids
  kinds = collections.Counter(data.client_data.kind(c).describe(data.modality_names)
                              for c in client_ids)
  empty = [c for c in client_ids if data.client_data.num_examples(c) == 0]
  log(f'data: {data.description}; {len(client_ids)} clients '
      f'({", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))}); '
      f'{len(empty)} clients hold no examples' +
      (f'; validation split: {fed.validation_fraction:g} of every class held out'
       if data.validation is not None else ''))

  model_fn = make_model_fn(data.modality_names, data.input_shapes, len(data.class_names),
                           config.model, data.vocabulary_sizes)
  started = time.time()
  key = process_key(config)
  # The model's structure depends on the configuration only: built once per key.
  structure = _cached(process_cache, 'model structure ' + key,
                      lambda: processes.model_structure(model_fn))
  aggregation = server_aggregation.build(
      config.aggregation, variable_groups=structure.variable_groups,
      weights_type=structure.weights_type,
      modality_masks=[data.client_data.kind(c).modality_mask() for c in client_ids],
      client_examples=[data.client_data.num_examples(c) for c in client_ids],
      federation=fed)
  if config.aggregation.mechanisms:
    log(aggregation.describe())
  key += aggregation.cache_key()
  process = _cached(process_cache, key, lambda: processes.build_process_for_config(
      config.algorithm, model_fn, data.client_data.element_type_structure,
      objective=config.objective, training=config.training, total_rounds=fed.rounds,
      server_optimizer=processes.server_optimizer_for(config.server),
      aggregator=aggregation.factory, structure=structure))
  # Client datasets are built once and reused every round.
  client_datasets = {c: data.client_data.create_tf_dataset_for_client(c) for c in client_ids}
  test_batches = data.test.batch(config.eval_batch_size)
  validation_batches = (None if data.validation is None
                        else data.validation.batch(config.eval_batch_size))

  tf.keras.utils.set_random_seed(fed.seed)
  eval_model = model_fn()
  state = process.initialize()
  initial_weights = tff_weights(eval_model)
  if start_round:
    state = _restored_state(outputs.program_state, start_round, process, state,
                            initial_weights, output_dir)
  else:
    state = process.set_model_weights(state, initial_weights)
  confusion = evaluation.build_confusion_fn(eval_model)
  log(f'{config.algorithm}: process built and initialised in {time.time() - started:.1f}s')

  columns = summary_columns(data.modality_names, validation=validation_batches is not None)
  for round_num in range(start_round, fed.rounds):
    round_start = time.time()
    selected = sample_clients(client_ids, fed.clients_per_round, fed.seed, round_num)
    output = process.next(state, [client_datasets[c] for c in selected])
    weights = process.get_model_weights(output.state)
    _check_finite(round_num + 1, weights, output.metrics['client_work']['train'], output_dir)
    state = output.state
    assign_weights(eval_model, weights)
    metrics, per_class = evaluation.accuracy_metrics(confusion(test_batches), data.class_names)
    seconds = time.time() - round_start
    row = collections.OrderedDict(round=round_num + 1, seconds=round(seconds, 3))
    row.update(metrics)
    if validation_batches is not None:
      validation, _ = evaluation.accuracy_metrics(confusion(validation_batches),
                                                  data.class_names)
      row.update((VALIDATION_PREFIX + c, validation[c])
                 for c in summary_columns(data.modality_names))
    train_metrics = output.metrics['client_work']['train']
    row.update(_train_metrics(train_metrics))
    diagnostics, diagnostic_paths = _distillation_diagnostics(train_metrics,
                                                              data.modality_names)
    row.update(diagnostics)
    per_class.update(diagnostic_paths)
    totals = output.metrics['aggregator']['group_weight_totals']
    row[f'weight_{data.modality_names[0]}'] = float(totals[0])
    row[f'weight_{data.modality_names[1]}'] = float(totals[1])
    row.update(aggregation.round_columns(round_num + 1, output.metrics['aggregator']))
    row['clients'] = ' '.join(selected)
    rows.append(row)
    released = collections.OrderedDict((k, v) for k, v in row.items() if k != 'round')
    class_rows = [collections.OrderedDict(
        [('path', path)] + [(name, float(v)) for name, v in zip(data.class_names, values)])
                  for path, values in per_class.items()]
    program_io.run_sync(_release_round(outputs, round_num + 1, released, class_rows,
                                       weights, state))
    a, b = data.modality_names
    log(f'round {round_num + 1:3d}/{fed.rounds}  {seconds:5.1f}s  loss {row["train_loss"]:.3f}  '
        f'fused {row["acc_fused"]:.3f}  {a} {row[f"acc_{a}_path"]:.3f}/{row[f"acc_{a}_zero"]:.3f}  '
        f'{b} {row[f"acc_{b}_path"]:.3f}/{row[f"acc_{b}_zero"]:.3f}  '
        f'worst-class {row["acc_worst_class"]:.3f}' + aggregation.progress(round_num + 1))
    reason = stop_requested() if stop_requested else None
    if reason and round_num + 1 < fed.rounds:
      raise Interrupted(f'stopped after round {round_num + 1} of {fed.rounds} ({reason}); '
                        f'{output_dir} holds its state: continue with --resume', reason)
  if not rows:
    raise ValueError('no round was run')
  summary = summarise(rows, columns, config_dict)
  summary['modality_names'] = list(data.modality_names)
  summary['class_names'] = list(data.class_names)
  summary['runtime'] = runtime.current_runtime()
  summary['aggregation'] = aggregation.summary(rows[-1]['round'])
  program_io.run_sync(outputs.summary.release(summary, rows[-1]['round']))
  return ExperimentResult(output_dir, rows, summary)


def _check_finite(round_num: int, weights, train_metrics, output_dir: str) -> None:
  """Raises DivergenceError when the new global weights are not finite, or when every
  client that trained this round sent a non-finite update (the guard dropped them all)."""
  if not all(np.all(np.isfinite(w)) for w in weights.trainable + weights.non_trainable):
    problem = 'the global weights are not finite'
  else:
    dropped = float(np.sum(train_metrics.get('non_finite_clients', 0.0)))
    trained = float(np.sum(train_metrics.get('clients', 0.0)))
    if not dropped or dropped < trained:
      return
    problem = f'every client\'s update ({dropped:.0f} of {trained:.0f}) was not finite'
  kept = (f'{output_dir} keeps the state and metrics of round {round_num - 1}'
          if round_num > 1 else f'no round finished in {output_dir}')
  raise DivergenceError(
      f'round {round_num}: {problem}: training diverged (try a lower --learning_rate); '
      f'{kept}, and no summary was written', round_num)


async def _release_round(outputs: program_io.RunOutputs, round_num: int, row, class_rows,
                         weights, state) -> None:
  """Releases a finished round's metrics, then saves the program state (in that order, so
  a run killed in between repeats the round rather than missing its rows)."""
  await outputs.metrics.release(row, round_num)
  await outputs.per_class.release(class_rows, round_num)
  await outputs.program_state.save(
      {'round': np.int64(round_num), 'weights': weights, 'state': state}, round_num)


def tff_weights(model) -> processes.ModelWeights:
  return processes.ModelWeights(trainable=[v.numpy() for v in model.trainable_variables],
                                non_trainable=[v.numpy() for v in model.non_trainable_variables])


def tff_weights_from(saved) -> processes.ModelWeights:
  return processes.ModelWeights(trainable=list(saved[0]), non_trainable=list(saved[1]))


def assign_weights(model, weights) -> None:
  for v, w in zip(model.trainable_variables, weights.trainable):
    v.assign(w)
  for v, w in zip(model.non_trainable_variables, weights.non_trainable):
    v.assign(w)


def _restored_state(state_manager, version: int, process, initial_state, initial_weights,
                    output_dir: str):
  """The learning state of the saved program state `version`."""
  structure = {'round': np.int64(0), 'weights': initial_weights, 'state': initial_state}
  try:
    saved = program_io.run_sync(state_manager.load(version, structure))
  except program_io.LegacyCheckpointError as e:
    # A checkpoint of weights only (written before the full state was saved): the server
    # optimiser state restarts, the round counter is kept.
    state = process.set_model_weights(initial_state, tff_weights_from(e.weights))
    return _with_round(state, e.round_num)
  except program_io.CheckpointError as e:
    raise OutputDirectoryError(str(e)) from None
  return saved['state']


def _with_round(state, round_num: int):
  """The learning state with its client-work round counter set (used on resume)."""
  return state._replace(client_work=np.int32(round_num))
