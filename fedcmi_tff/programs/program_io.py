"""Program state and releases of one run, on TFF's program library (`tff.program`).

A run's output folder is written only through these objects:

  program state   a `tff.program.ProgramStateManager`, versioned by the number of finished
                  rounds; the program state is {'round': int64, 'weights': the global
                  model weights, 'state': the learning process state}.
                  Default `NpzProgramStateManager` (checkpoint.npz, the latest version only);
                  `tff.program.FileProgramStateManager` (a SavedModel per version) works the
                  same way, at about 0.3-0.5 s per save instead of a few milliseconds.
  metrics.csv     `RowsCSVReleaseManager` keyed by round: releasing round r first drops rows
                  >= r, so a resumed run rewrites exactly the rounds it repeats.  (TFF's
                  `CSVFileReleaseManager` does the same but sorts the columns by name.)
  tensorboard/    `tff.program.TensorBoardReleaseManager`, one scalar per numeric column
  per_class.csv   `RowsCSVReleaseManager`: several rows per round (one per inference path)
  summary.json    `JSONReleaseManager`: the run's summary, released when it finishes

The release managers are grouped with `tff.program.GroupingReleaseManager`.  All writes
are atomic (temporary file and rename).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import files

CHECKPOINT_NAME = 'checkpoint.npz'


class LegacyCheckpointError(Exception):
  """checkpoint.npz was written before the full learning state was saved (weights only)."""

  def __init__(self, path: str, round_num: int, weights: tuple):
    super().__init__(f'{path} holds the global weights of round {round_num} only')
    self.round_num = round_num
    self.weights = weights  # (trainable, non_trainable) lists of arrays


class CheckpointError(Exception):
  """checkpoint.npz cannot be read or does not fit the learning process."""


class NpzProgramStateManager(tff.program.ProgramStateManager):
  """A `tff.program.ProgramStateManager` keeping the latest version in one .npz file.

  The program state is {'round', 'weights': ModelWeights, 'state'}.  Its structure is
  not stored: `load` packs the saved leaves into the structure it is given (as
  `FileProgramStateManager` does).  Saving a version replaces the previous one
  atomically.  The weights keep the keys earlier versions of this project wrote
  (round, t<i>, n<i>), so their weight-only checkpoints still load (as
  `LegacyCheckpointError`, for the caller to restart the server state from them).
  """

  def __init__(self, root_dir: str, name: str = CHECKPOINT_NAME):
    self._path = os.path.join(root_dir, name)

  @property
  def path(self) -> str:
    return self._path

  async def get_versions(self) -> list[int] | None:
    if not os.path.exists(self._path):
      return None
    return [self._read()['round']]

  def _read(self) -> dict:
    try:
      with np.load(self._path) as data:
        out = {'round': int(data['round'])}
        out['weights'] = ([data[f't{i}'] for i in range(int(data['num_trainable']))],
                          [data[f'n{i}'] for i in range(int(data['num_non_trainable']))])
        out['leaves'] = ([data[f's{i}'] for i in range(int(data['num_state']))]
                         if 'num_state' in data.files else None)
    except Exception as e:  # a truncated or foreign file: zipfile, KeyError, ValueError ...
      raise CheckpointError(f'{self._path} cannot be read ({type(e).__name__}: {e}); move it '
                            'away to start the run afresh') from None
    return out

  async def load(self, version: int, structure: Any) -> Any:
    saved = self._read()
    if saved['round'] != version:
      raise tff.program.ProgramStateNotFoundError(version)
    if saved['leaves'] is None:
      raise LegacyCheckpointError(self._path, saved['round'], saved['weights'])
    state, weights = structure['state'], structure['weights']
    trainable, non_trainable = saved['weights']
    if (len(saved['leaves']) != len(tf.nest.flatten(state)) or
        len(trainable) != len(weights.trainable) or
        len(non_trainable) != len(weights.non_trainable)):
      raise CheckpointError(
          f'{self._path} holds a state of {len(saved["leaves"])} values, this process has '
          f'{len(tf.nest.flatten(state))}: it was written for another model or process')
    return {'round': np.int64(saved['round']),
            'weights': type(weights)(trainable=trainable, non_trainable=non_trainable),
            'state': tf.nest.pack_sequence_as(state, saved['leaves'])}

  async def save(self, program_state: Any, version: int) -> None:
    leaves = tf.nest.flatten(program_state['state'])
    weights = program_state['weights']
    arrays = {'round': np.int64(version), 'num_trainable': np.int64(len(weights.trainable)),
              'num_non_trainable': np.int64(len(weights.non_trainable)),
              'num_state': np.int64(len(leaves))}
    arrays.update({f't{i}': np.asarray(w) for i, w in enumerate(weights.trainable)})
    arrays.update({f'n{i}': np.asarray(w) for i, w in enumerate(weights.non_trainable)})
    arrays.update({f's{i}': np.asarray(v) for i, v in enumerate(leaves)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_bytes(self._path, buffer.getvalue())


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


def parse_csv_value(value: str):
  try:
    number = float(value)
  except ValueError:
    return value
  return int(number) if number.is_integer() and '.' not in value and 'e' not in value else number


def read_rows(path: str, last_round: int | None = None) -> list:
  """Rows of a results CSV keyed by `round`, up to and including `last_round`."""
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return [{k: parse_csv_value(v) for k, v in r.items()} for r in csv.DictReader(f)
            if last_round is None or int(r['round']) <= last_round]


class RowsCSVReleaseManager(tff.program.ReleaseManager):
  """Releases the row (a dict) or rows (a list of dicts) of a round to a CSV file.

  Columns keep the order of the released rows, led by `round` (the key); releasing
  round r replaces every row of rounds >= r.
  """

  def __init__(self, path: str):
    self._path = path

  async def release(self, value: dict | list, key: int) -> None:
    rows = [r for r in read_rows(self._path) if int(r['round']) < key]
    rows += [dict(round=key, **r) for r in ([value] if isinstance(value, dict) else value)]
    files.write_text(self._path, _csv_text(rows))


class JSONReleaseManager(tff.program.ReleaseManager):
  """Releases one JSON document (the run's summary); the key is the round it describes."""

  def __init__(self, path: str):
    self._path = path

  async def release(self, value: dict, key: int) -> None:
    del key  # the document states its own round
    files.write_text(self._path, json.dumps(value, indent=2, allow_nan=True) + '\n')


class RunOutputs(NamedTuple):
  """The managers of one output folder."""

  program_state: tff.program.ProgramStateManager
  metrics: tff.program.ReleaseManager  # metrics.csv and TensorBoard
  per_class: tff.program.ReleaseManager
  summary: tff.program.ReleaseManager


def run_outputs(output_dir: str, program_state_manager: tff.program.ProgramStateManager | None
                = None, rebuild_tensorboard_from: list | None = None) -> RunOutputs:
  """The program state and release managers of a run writing to `output_dir`.

  `rebuild_tensorboard_from`: on a resume, the metric rows of the finished rounds; the
  TensorBoard folder is rewritten from them, so a resumed run has one value per step
  (TensorBoard would otherwise show the repeated rounds twice).
  """
  tensorboard_dir = os.path.join(output_dir, 'tensorboard')
  if rebuild_tensorboard_from is not None and os.path.isdir(tensorboard_dir):
    shutil.rmtree(tensorboard_dir)
  tensorboard = tff.program.TensorBoardReleaseManager(tensorboard_dir)
  for row in rebuild_tensorboard_from or ():
    run_sync(tensorboard.release(
        {k: v for k, v in row.items() if k != 'round' and isinstance(v, (int, float))},
        int(row['round'])))
  metrics = tff.program.GroupingReleaseManager([
      RowsCSVReleaseManager(os.path.join(output_dir, 'metrics.csv')), tensorboard])
  return RunOutputs(program_state_manager or NpzProgramStateManager(output_dir), metrics,
                    RowsCSVReleaseManager(os.path.join(output_dir, 'per_class.csv')),
                    JSONReleaseManager(os.path.join(output_dir, 'summary.json')))


def run_sync(coroutine):
  """Runs one of the managers' coroutines to completion from synchronous code."""
  return asyncio.run(coroutine)
