"""Runs one federated training experiment and writes its results.

Output directory:
  config.json       the full configuration
  metrics.csv       one row per round (written atomically after every round)
  per_class.csv     per-class accuracy of every inference path, one row per round and path
  summary.json      configuration, final- and best-round values, the TFF runtime
  checkpoint.npz    global weights after the last finished round (for --resume)
  tensorboard/      TensorBoard scalars
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.data import client_data as client_data_lib
from fedcmi_tff.data import prepared
from fedcmi_tff.data import registry
from fedcmi_tff.learning import evaluation
from fedcmi_tff.learning import processes
from fedcmi_tff.models import fedcmi_model
from fedcmi_tff.programs import runtime

class OutputDirectoryError(Exception):
  """The output directory holds results that would be overwritten."""


class ExperimentResult(NamedTuple):
  output_dir: str
  rows: list
  summary: dict


def summary_columns(modality_names) -> tuple:
  a, b = modality_names
  return ('acc_fused', f'acc_{a}_path', f'acc_{b}_path', f'acc_{a}_zero', f'acc_{b}_zero',
          'acc_macro', 'acc_worst_class', 'acc_class_spread')


def write_atomically(path: str, text: str) -> None:
  """Writes text to path via a temporary file in the same folder and a rename."""
  prepared.write_bytes_atomically(path, text.encode('utf-8'))


def _csv_text(rows: list) -> str:
  if not rows:
    return ''
  columns = list(rows[0].keys())
  for row in rows[1:]:
    columns.extend(k for k in row if k not in columns)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


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


def _prepare_output_dir(output_dir: str, config_dict: dict, overwrite: bool, resume: bool):
  """Returns (start_round, weights or None, rows)."""
  config_path = os.path.join(output_dir, 'config.json')
  existing = os.path.isdir(output_dir) and os.listdir(output_dir)
  if existing and resume:
    if not os.path.exists(config_path):
      raise OutputDirectoryError(f'{output_dir}: cannot resume, no config.json there')
    with open(config_path) as f:
      saved = _with_defaults(json.load(f))
    if _without_rounds(saved) != _without_rounds(json.loads(json.dumps(config_dict))):
      raise OutputDirectoryError(
          f'{output_dir}/config.json differs from this run\'s configuration; '
          'resume only with the same flags (the round count may grow)')
    checkpoint = os.path.join(output_dir, 'checkpoint.npz')
    if not os.path.exists(checkpoint):
      return 0, None, []
    with np.load(checkpoint) as data:
      start = int(data['round'])
      trainable = [data[f't{i}'] for i in range(int(data['num_trainable']))]
      non_trainable = [data[f'n{i}'] for i in range(int(data['num_non_trainable']))]
    rows = _read_rows(os.path.join(output_dir, 'metrics.csv'), start)
    return start, (trainable, non_trainable), rows
  if existing and not overwrite:
    raise OutputDirectoryError(
        f'output_dir {output_dir} already exists and is not empty; pass --resume to continue '
        'that run or --overwrite to replace it')
  if existing and overwrite:
    shutil.rmtree(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  return 0, None, []


def _read_rows(path: str, last_round: int) -> list:
  """Rows of a results CSV written by this module, up to and including last_round."""
  if not last_round or not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)
            if int(r['round']) <= last_round]


def _parse(value: str):
  try:
    number = float(value)
  except ValueError:
    return value
  return int(number) if number.is_integer() and '.' not in value and 'e' not in value else number


def _save_checkpoint(output_dir: str, round_num: int, weights) -> None:
  arrays = {'round': np.int64(round_num), 'num_trainable': np.int64(len(weights.trainable)),
            'num_non_trainable': np.int64(len(weights.non_trainable))}
  arrays.update({f't{i}': np.asarray(w) for i, w in enumerate(weights.trainable)})
  arrays.update({f'n{i}': np.asarray(w) for i, w in enumerate(weights.non_trainable)})
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  prepared.write_bytes_atomically(os.path.join(output_dir, 'checkpoint.npz'), buffer.getvalue())


def _train_metrics(train: dict) -> collections.OrderedDict:
  batches = float(train['num_batches'])
  teaching = float(train['a_teaches_batches']) + float(train['b_teaches_batches'])
  out = collections.OrderedDict()
  out['train_loss'] = float(train['loss_sum']) / batches if batches else float('nan')
  out['distillation_loss'] = (float(train['distillation_loss_sum']) / teaching
                              if teaching else 0.0)
  out['a_teaches_fraction'] = float(train['a_teaches_batches']) / teaching if teaching else 0.0
  out['multimodal_clients'] = float(train['multimodal_clients'])
  out['proximal_term'] = float(train['proximal_term']) / max(float(train['clients']), 1.0)
  temps = float(train['temperature_clients'])
  out['mean_class_temperature'] = (float(np.mean(train['class_temperature_sum'])) / temps
                                   if temps else 1.0)
  return out


def summarise(rows: list, columns: tuple, config_dict: dict) -> dict:
  """Final- and best-round (by fused accuracy) values of the report columns."""
  final = rows[-1]
  best = max(rows, key=lambda r: (r['acc_fused'], -r['round']))
  return {
      'config': config_dict,
      'rounds_completed': final['round'],
      'final_round': final['round'],
      'final': {c: final[c] for c in columns},
      'best_round': best['round'],
      'best': {c: best[c] for c in columns},
      'best_per_column': {c: max(r[c] for r in rows) for c in columns},
  }


def process_key(config: config_lib.ExperimentConfig) -> str:
  """Runs whose configurations share this key can share one built process."""
  fields = dataclasses.replace(config, federation=config_lib.FederationConfig(
      rounds=config.federation.rounds))
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
  config = dataclasses.replace(config, training=dataclasses.replace(
      config.training, total_rounds=config.federation.rounds))
  wanted = json.loads(json.dumps(config.to_dict()))
  saved = _with_defaults(summary.get('config', {}))
  if saved != wanted:
    if _without_rounds(saved) != _without_rounds(wanted):
      raise OutputDirectoryError(f'{output_dir} holds a run of a different configuration')
    return None  # same run, other round count: resume it
  return summary if summary.get('rounds_completed') == config.federation.rounds else None


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
          if k not in ('rounds', 'total_rounds')}


def run_experiment(config: config_lib.ExperimentConfig, output_dir: str, *,
                   overwrite: bool = False, resume: bool = False,
                   log: Callable[[str], None] = print,
                   process_cache: dict | None = None) -> ExperimentResult:
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
  """
  config.validate(registry.DATASET_NAMES)
  fed = config.federation
  training = dataclasses.replace(config.training, total_rounds=fed.rounds)
  config = dataclasses.replace(config, training=training)
  config_dict = config.to_dict()
  # Data errors (prepared.DataFormatError) surface before anything is written.
  splits = registry.load_dataset(
      config.dataset, data_dir=config.data_dir, seed=config.dataset_seed,
      synthetic_dominant=config.synthetic_dominant,
      load_options=prepared.LoadOptions(num_frames=config.num_frames,
                                        image_size=config.image_size))
  start_round, saved_weights, rows = _prepare_output_dir(output_dir, config_dict, overwrite,
                                                         resume)
  write_atomically(os.path.join(output_dir, 'config.json'),
                   json.dumps(config_dict, indent=2) + '\n')

  data = client_data_lib.build_federated_splits(
      splits, num_clients=fed.num_clients, dirichlet_alpha=fed.dirichlet_alpha,
      multi_ratio=fed.multi_ratio, seed=fed.seed, balance_cap=fed.balance_cap,
      only_modality=fed.only_modality)
  client_ids = data.client_data.client_ids
  kinds = collections.Counter(data.client_data.kind(c).describe(data.modality_names)
                              for c in client_ids)
  empty = [c for c in client_ids if data.client_data.num_examples(c) == 0]
  log(f'data: {data.description}; {len(client_ids)} clients '
      f'({", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))}); '
      f'{len(empty)} clients hold no examples')

  model_fn = make_model_fn(data.modality_names, data.input_shapes, len(data.class_names),
                           config.model, data.vocabulary_sizes)
  started = time.time()
  key = process_key(config)
  if process_cache is not None and key in process_cache:
    process = process_cache[key]
  else:
    process = processes.build_process_for_algorithm(
        config.algorithm, model_fn, data.client_data.element_type_structure,
        objective=config.objective, training=training)
    if process_cache is not None:
      process_cache[key] = process
  # Client datasets are built once and reused every round.
  client_datasets = {c: data.client_data.create_tf_dataset_for_client(c) for c in client_ids}
  test_batches = data.test.batch(config.eval_batch_size)

  tf.keras.utils.set_random_seed(fed.seed)
  eval_model = model_fn()
  state = process.initialize()
  if saved_weights is None:
    weights = tff_weights(eval_model)
  else:
    weights = tff_weights_from(saved_weights)
  state = process.set_model_weights(state, weights)
  state = _with_round(state, start_round)
  confusion = evaluation.build_confusion_fn(eval_model)
  log(f'{config.algorithm}: process built and initialised in {time.time() - started:.1f}s')

  columns = summary_columns(data.modality_names)
  writer = tf.summary.create_file_writer(os.path.join(output_dir, 'tensorboard'))
  per_class_path = os.path.join(output_dir, 'per_class.csv')
  per_class_rows = _read_rows(per_class_path, start_round)
  for round_num in range(start_round, fed.rounds):
    round_start = time.time()
    selected = sample_clients(client_ids, fed.clients_per_round, fed.seed, round_num)
    output = process.next(state, [client_datasets[c] for c in selected])
    state = output.state
    weights = process.get_model_weights(state)
    assign_weights(eval_model, weights)
    metrics, per_class = evaluation.accuracy_metrics(confusion(test_batches), data.class_names)
    seconds = time.time() - round_start
    row = collections.OrderedDict(round=round_num + 1, seconds=round(seconds, 3))
    row.update(metrics)
    row.update(_train_metrics(output.metrics['client_work']['train']))
    totals = output.metrics['aggregator']['group_weight_totals']
    row[f'weight_{data.modality_names[0]}'] = float(totals[0])
    row[f'weight_{data.modality_names[1]}'] = float(totals[1])
    row['clients'] = ' '.join(selected)
    rows.append(row)
    for path, values in per_class.items():
      per_class_rows.append(collections.OrderedDict(
          [('round', round_num + 1), ('path', path)] +
          [(name, float(v)) for name, v in zip(data.class_names, values)]))
    with writer.as_default(step=round_num + 1):
      for key, value in row.items():
        if isinstance(value, float) and math.isfinite(value):
          tf.summary.scalar(key, value)
    writer.flush()
    write_atomically(os.path.join(output_dir, 'metrics.csv'), _csv_text(rows))
    write_atomically(per_class_path, _csv_text(per_class_rows))
    _save_checkpoint(output_dir, round_num + 1, weights)
    a, b = data.modality_names
    log(f'round {round_num + 1:3d}/{fed.rounds}  {seconds:5.1f}s  loss {row["train_loss"]:.3f}  '
        f'fused {row["acc_fused"]:.3f}  {a} {row[f"acc_{a}_path"]:.3f}/{row[f"acc_{a}_zero"]:.3f}  '
        f'{b} {row[f"acc_{b}_path"]:.3f}/{row[f"acc_{b}_zero"]:.3f}  '
        f'worst-class {row["acc_worst_class"]:.3f}')
  if not rows:
    raise ValueError('no round was run')
  summary = summarise(rows, columns, config_dict)
  summary['modality_names'] = list(data.modality_names)
  summary['class_names'] = list(data.class_names)
  summary['runtime'] = runtime.current_runtime()
  write_atomically(os.path.join(output_dir, 'summary.json'),
                   json.dumps(summary, indent=2, allow_nan=True) + '\n')
  return ExperimentResult(output_dir, rows, summary)


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


def _with_round(state, round_num: int):
  """The learning state with its client-work round counter set (used on resume)."""
  return state._replace(client_work=np.int32(round_num))
