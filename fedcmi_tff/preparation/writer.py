"""Writing the prepared-dataset format (`fedcmi_tff/data/prepared.py`): the preparation side.

The preparation programs (`python -m fedcmi_tff.prepare`, the TFDS builders) build examples
from a raw download and write them here; training only reads, through `data/prepared.py`.

`PreparedDatasetWriter` writes one TFRecord file per example and, last, the manifest
`dataset.json`.  Every file is written atomically (`fedcmi_tff/files.py`), so an interrupted
preparation leaves only whole files; the marker `.preparing.json` records the identity
(dataset, recipe, modalities, classes) of an unfinished preparation, and a rerun with the same
identity reuses the example files already written.  `prepare_examples` drives a writer over
a list of raw items, counting what it reads, writes and skips (`PreparationReport`,
`SkipExample`).
"""

from __future__ import annotations

import collections
import json
import os
from typing import Callable

import numpy as np
import tensorflow as tf

from fedcmi_tff import files
from fedcmi_tff.data import prepared

_IN_PROGRESS_NAME = '.preparing.json'  # identity of an unfinished preparation


class SkipExample(Exception):
  """One raw item cannot be prepared for a reason the published data is known to have
  (a missing or undecodable clip); it is counted under `reason` and named."""

  def __init__(self, reason: str, item: str):
    super().__init__(f'{reason}: {item}')
    self.reason = reason
    self.item = item


class PreparationReport:
  """Counts of what a preparation read, wrote and skipped, by reason.

  Every skipped item is counted under a reason and the first few are named, so
  the final report shows exactly what was left out and why.
  """

  def __init__(self, examples_per_reason: int = 5):
    self.read = collections.Counter()  # split -> rows read
    self.written = collections.Counter()  # split -> examples written
    self.skipped = collections.Counter()  # reason -> count
    self._named = collections.defaultdict(list)
    self._limit = examples_per_reason
    self.notes = []  # free-form lines (e.g. "frames taken from an existing folder")

  def count_read(self, split: str, n: int = 1) -> None:
    self.read[split] += n

  def count_written(self, split: str, n: int = 1) -> None:
    self.written[split] += n

  def skip(self, reason: str, item: str) -> None:
    self.skipped[reason] += 1
    if len(self._named[reason]) < self._limit:
      self._named[reason].append(item)

  def to_dict(self) -> dict:
    return {'read': dict(self.read), 'written': dict(self.written),
            'skipped': dict(self.skipped),
            'skipped_examples': {k: list(v) for k, v in self._named.items()},
            'notes': list(self.notes)}

  def lines(self) -> list:
    out = []
    for split in sorted(set(self.read) | set(self.written)):
      out.append(f'{split}: read {self.read[split]}, written {self.written[split]}')
    total = sum(self.skipped.values())
    out.append(f'skipped: {total}' + ('' if total else ' (nothing)'))
    for reason, n in sorted(self.skipped.items()):
      named = ', '.join(self._named[reason])
      more = '' if n <= len(self._named[reason]) else ', ...'
      out.append(f'  {n} x {reason}: {named}{more}')
    out.extend(self.notes)
    return out


def _bytes_feature(values) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def numbered_lines(path: str, encoding: str = 'utf-8') -> list:
  """(line number, text without its CRLF or LF ending) of every line of a text file.

  Raises:
    DataFormatError: the file does not exist.
  """
  if not os.path.exists(path):
    raise prepared.DataFormatError(f'{path}: file not found')
  with open(path, encoding=encoding, newline='') as f:
    return [(number, line.rstrip('\r\n')) for number, line in enumerate(f, start=1)]


class PreparedDatasetWriter:
  """Writes a prepared dataset; `finish` writes the manifest that completes it.

  Example files are written atomically, so an interrupted preparation leaves
  only whole files; `has()` lets a rerun skip the examples already written.
  """

  def __init__(self, output_dir: str, dataset: str, modalities: tuple, class_names: tuple,
               recipe: dict, source: str):
    for spec in modalities:
      spec.validate()
    if len(modalities) != 2:
      raise ValueError(f'a prepared dataset has two modalities, got {len(modalities)}')
    self.output_dir = output_dir
    self.dataset = dataset
    self.modalities = tuple(modalities)
    self.class_names = tuple(class_names)
    self.recipe = dict(recipe)
    self.source = source
    self._examples = {s: [] for s in prepared.SPLITS}
    self._ids = {s: set() for s in prepared.SPLITS}
    if os.path.exists(os.path.join(output_dir, prepared.MANIFEST_NAME)):
      raise prepared.DataFormatError(f'{output_dir} already holds a finished prepared dataset; '
                                     'choose another output folder or remove it')
    os.makedirs(output_dir, exist_ok=True)
    # Example files of an interrupted preparation are reused only if its recipe matches.
    marker = os.path.join(output_dir, _IN_PROGRESS_NAME)
    identity = {'dataset': dataset, 'recipe': json.loads(json.dumps(self.recipe)),
                'modalities': [m.to_dict() for m in self.modalities],
                'class_names': list(self.class_names)}
    if os.path.exists(marker):
      with open(marker) as f:
        previous = json.load(f)
      if previous != identity:
        raise prepared.DataFormatError(
            f'{output_dir} holds an unfinished preparation with another recipe or class list '
            f'({marker}); use another output folder or remove it')
    else:
      files.write_bytes(marker, (json.dumps(identity, indent=1) + '\n').encode())
    for split in prepared.SPLITS:
      os.makedirs(os.path.join(output_dir, split), exist_ok=True)

  def has(self, split: str, example_id: str) -> bool:
    return os.path.exists(prepared.example_path(self.output_dir, split, example_id))

  def record(self, split: str, example_id: str, label: int) -> None:
    """Adds an example whose file exists already (a resumed preparation)."""
    self._add_index(split, example_id, label)

  def _add_index(self, split, example_id, label):
    if split not in prepared.SPLITS:
      raise ValueError(f'split must be one of {prepared.SPLITS}, got {split!r}')
    if example_id in self._ids[split]:
      raise ValueError(f'example id {example_id!r} written twice to split {split}')
    if not 0 <= label < len(self.class_names):
      raise ValueError(f'label {label} of {example_id} outside 0..{len(self.class_names) - 1}')
    self._ids[split].add(example_id)
    self._examples[split].append((example_id, int(label)))

  def write(self, split: str, example_id: str, label: int, features: dict) -> None:
    """Writes one example.

    Args:
      split: 'train' or 'test'.
      example_id: file-name-safe id, unique within the split.
      label: class index.
      features: modality name -> value: float32 array (float_tensor), list of
        JPEG bytes (jpeg_frames), JPEG bytes (jpeg_image), int sequence (token_ids).
    """
    if os.sep in example_id or example_id.startswith('.'):
      raise ValueError(f'example id {example_id!r} is not a safe file name')
    feature = {'label': _int_feature([label]), 'example_id': _bytes_feature([example_id.encode()])}
    for spec in self.modalities:
      value = features[spec.name]
      if spec.encoding == 'float_tensor':
        array = np.asarray(value, np.float32)
        if spec.shape and tuple(array.shape) != tuple(spec.shape):
          raise ValueError(f'{example_id}: {spec.name} has shape {array.shape}, '
                           f'expected {tuple(spec.shape)}')
        feature[spec.name] = _bytes_feature([tf.io.serialize_tensor(array).numpy()])
      elif spec.encoding == 'jpeg_frames':
        if not value:
          raise ValueError(f'{example_id}: no frames')
        feature[spec.name] = _bytes_feature(value)
      elif spec.encoding == 'jpeg_image':
        feature[spec.name] = _bytes_feature([value])
      else:
        ids = list(value)
        if spec.shape and len(ids) != spec.shape[0]:
          raise ValueError(f'{example_id}: {len(ids)} tokens, expected {spec.shape[0]}')
        feature[spec.name] = _int_feature(ids)
    record = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    self._add_index(split, example_id, label)
    with files.atomic_path(prepared.example_path(self.output_dir, split, example_id)) as tmp:
      with tf.io.TFRecordWriter(tmp) as w:
        w.write(record)

  def finish(self, report: PreparationReport, extra: dict | None = None) -> dict:
    """Writes dataset.json (atomically) and returns it."""
    for split in prepared.SPLITS:
      if not self._examples[split]:
        raise prepared.DataFormatError(f'{self.output_dir}: no {split} example was prepared; '
                                       'see the skip report above')
    manifest = {
        'format': prepared.FORMAT_NAME, 'format_version': prepared.FORMAT_VERSION,
        'dataset': self.dataset, 'source': self.source, 'recipe': self.recipe,
        'class_names': list(self.class_names),
        'modalities': [m.to_dict() for m in self.modalities],
        'splits': {s: {'count': len(self._examples[s]),
                       'example_ids': [e for e, _ in self._examples[s]],
                       'labels': [l for _, l in self._examples[s]]} for s in prepared.SPLITS},
        'report': report.to_dict(),
    }
    if extra:
      manifest.update(extra)
    files.write_bytes(os.path.join(self.output_dir, prepared.MANIFEST_NAME),
                      (json.dumps(manifest, indent=1) + '\n').encode())
    os.unlink(os.path.join(self.output_dir, _IN_PROGRESS_NAME))
    return manifest


def finished_manifest(output_dir: str, dataset: str, recipe: dict) -> dict | None:
  """The manifest of a finished preparation of `recipe` in output_dir, else None.

  Raises:
    DataFormatError: output_dir holds a finished preparation of another dataset
      or recipe (it is never overwritten).
  """
  path = os.path.join(output_dir, prepared.MANIFEST_NAME)
  if not os.path.exists(path):
    return None
  manifest = prepared.read_manifest(output_dir)
  if manifest.get('dataset') != dataset or manifest.get('recipe') != json.loads(json.dumps(recipe)):
    raise prepared.DataFormatError(
        f'{path} holds {manifest.get("dataset")} prepared with recipe {manifest.get("recipe")}, '
        f'not {dataset} with {recipe}; choose another output folder')
  return manifest


def identity_progress(items, total, desc):
  del total, desc
  return items


def prepare_examples(writer: PreparedDatasetWriter, report: PreparationReport, items: list,
                     build_features: Callable, *, workers: int = 1,
                     progress: Callable = identity_progress) -> None:
  """Builds and writes every item, counting skips; items already on disk are reused
  (and counted in a report note).

  Args:
    writer: the dataset being written.
    report: receives the counts.
    items: (split, example_id, label, payload) tuples, in the order to write them.
    build_features: payload -> features dict for `writer.write`; raises
      `SkipExample` for an item to count and leave out.
    workers: threads building features at once (decoding runs outside the GIL:
      ffmpeg subprocesses, TF ops, numpy); the output order stays `items` order.
    progress: wraps the item iterator (e.g. a tqdm bar): (iterable, total, desc).
  """
  from concurrent import futures  # pylint: disable=g-import-not-at-top

  def build(item):
    split, example_id, _, payload = item
    if writer.has(split, example_id):
      return None
    try:
      return build_features(payload)
    except SkipExample as e:
      return e

  window = 8 * max(1, workers)  # results held at once stay bounded

  def built(pool):
    for start in range(0, len(items), window):
      chunk = items[start:start + window]
      yield from zip(chunk, pool.map(build, chunk))

  reused = 0
  with futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    for item, result in progress(built(pool), len(items), 'examples'):
      split, example_id, label, _ = item
      if isinstance(result, SkipExample):
        report.skip(result.reason, result.item)
      elif result is None:
        writer.record(split, example_id, label)
        report.count_written(split)
        reused += 1
      else:
        writer.write(split, example_id, label, result)
        report.count_written(split)
  if reused:
    report.notes.append(f'resumed: {reused} example files of an interrupted preparation reused')
