"""Writing the prepared-dataset format (`fedcmi_tff/data/prepared.py`): the preparation side.

The preparation programs (`python -m fedcmi_tff.prepare`, the TFDS builders) build examples
from a raw download and write them here; training only reads, through `data/prepared.py`.

A preparation has an *identity* (`preparation_identity`): the dataset, the recipe (every
preprocessing choice, CrisisMMD's vocabulary hash included), the stored modalities, the
classes, and the raw inputs (`input_identity`: the raw folder, the split/annotation files'
sizes and SHA-256).  `finished_manifest` decides what an output folder holds before any
work: a finished preparation of the same identity whose example files all check out is
returned as is; one of another identity is refused (unless `overwrite`); one with missing
or damaged example files is turned back into an unfinished preparation, so that exactly
those files are made again.

`PreparedDatasetWriter` writes one TFRecord file per example and, last, the manifest
`dataset.json` with every file's size and CRC-32.  Every file is written atomically
(`fedcmi_tff/files.py`).  While a preparation is unfinished, the marker `.preparing.json`
holds its identity and the journal `.preparing-files.jsonl` one line per example file
written (split, id, label, size, CRC-32), appended after the file is in place; a rerun with
the same identity reuses a file only when the journal lists it with its current size (and
CRC-32 when checksums are verified), and makes the others again.  `prepare_examples` drives
a writer over a list of raw items, counting what it reads, writes and skips
(`PreparationReport`, `SkipExample`).
"""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
from typing import Callable

import numpy as np
import tensorflow as tf

from fedcmi_tff import files
from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import raw_files

_IN_PROGRESS_NAME = '.preparing.json'  # identity of an unfinished preparation
_JOURNAL_NAME = '.preparing-files.jsonl'  # example files written by an unfinished preparation
# Longest example id: ids are file names, '<id>.tfrecord' and its temporary name must fit
# the usual 255-byte limit.
MAX_EXAMPLE_ID_BYTES = 200
# A skipped item is a raw value or a file path with the reason it could not be read: room
# for a long path and its reason, never a whole raw field.
SKIPPED_ITEM_CHARS = 2 * raw_files.MAX_ECHO
_NAMED_IN_NOTES = 5


class SkipExample(Exception):
  """One raw item cannot be prepared for a reason the published data is known to have
  (a missing or undecodable clip); it is counted under `reason` and named."""

  def __init__(self, reason: str, item: str):
    super().__init__(f'{reason}: {raw_files.shorten(item, SKIPPED_ITEM_CHARS)}')
    self.reason = reason
    self.item = item


class PreparationReport:
  """Counts of what a preparation read, wrote and skipped, by reason.

  Every skipped item is counted under a reason and the first few are named, so
  the final report shows exactly what was left out and why.  Named items are cut
  to `raw_files.MAX_ECHO` characters.
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
      self._named[reason].append(raw_files.shorten(item, SKIPPED_ITEM_CHARS))

  def to_dict(self) -> dict:
    return {'read': dict(self.read), 'written': dict(self.written),
            'skipped': dict(self.skipped),
            'skipped_examples': {k: list(v) for k, v in self._named.items()},
            'notes': [raw_files.shorten(n, 4 * raw_files.MAX_ECHO) for n in self.notes]}

  def lines(self) -> list:
    return report_lines(self.to_dict())

  def summary(self) -> str:
    """'N x reason, ...' of the skips, for a one-line message."""
    if not self.skipped:
      return 'nothing skipped'
    return 'skipped ' + ', '.join(f'{n} x {reason}' for reason, n in sorted(self.skipped.items()))


def report_lines(report: dict) -> list:
  """The lines `python -m fedcmi_tff.prepare` prints for a report (`PreparationReport.to_dict`)."""
  out = []
  read, written = report.get('read', {}), report.get('written', {})
  for split in sorted(set(read) | set(written)):
    out.append(f'{split}: read {read.get(split, 0)}, written {written.get(split, 0)}')
  skipped = report.get('skipped', {})
  total = sum(skipped.values())
  out.append(f'skipped: {total}' + ('' if total else ' (nothing)'))
  for reason, n in sorted(skipped.items()):
    named = report.get('skipped_examples', {}).get(reason, [])
    more = '' if n <= len(named) else ', ...'
    out.append(f'  {n} x {reason}: {", ".join(named)}{more}')
  out.extend(f'note: {note}' for note in report.get('notes', []))
  return out


class NothingPrepared(prepared.DataFormatError):
  """A split ended with no example; `report` says what was read and skipped.

  The prepare program prints the report before the error.
  """

  def __init__(self, message: str, report: PreparationReport):
    super().__init__(message)
    self.report = report


def _bytes_feature(values) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def numbered_lines(path: str, encoding: str = 'utf-8') -> list:
  """(line number, text without its CRLF or LF ending) of every line of a text file.

  Raises:
    DataFormatError: the file does not exist, is not a regular file, cannot be read,
      or is not UTF-8 (naming the line).
  """
  text = raw_files.read_text(path, encoding)
  with io.StringIO(text, newline='') as f:  # lines end at CRLF, LF or CR only
    return [(number, line.rstrip('\r\n')) for number, line in enumerate(f, start=1)]


def check_example_id(example_id: str, where: str) -> None:
  """Raises DataFormatError naming `where` (e.g. 'file:line') for an id too long for a file."""
  size = len(example_id.encode('utf-8', 'surrogatepass'))
  if size > MAX_EXAMPLE_ID_BYTES:
    raise prepared.DataFormatError(
        f'{where}: example id {raw_files.quote(example_id, 60)} is longer than '
        f'{MAX_EXAMPLE_ID_BYTES} bytes')


# -- identity


def _json_native(value):
  return json.loads(json.dumps(value))


def input_identity(raw_dir: str, input_files: list, folders: dict | None = None) -> dict:
  """The identity of a preparation's raw inputs.

  Args:
    raw_dir: the raw download (recorded by its resolved absolute path).
    input_files: the split/annotation/class files read, each recorded with its size
      and SHA-256 (relative to raw_dir when inside it).
    folders: other folders read, {role: path} (e.g. CREMA-D's frames_dir).

  Raises:
    DataFormatError: an input file cannot be read.
  """
  root = os.path.realpath(raw_dir)
  recorded = {}
  for path in input_files:
    real = os.path.realpath(path)
    key = os.path.relpath(real, root) if real.startswith(root + os.sep) else real
    try:
      digest, size = raw_files.sha256_and_size(path)
    except raw_files.UnreadableFile as e:
      raise prepared.DataFormatError(f'{path}: cannot read: {e.reason}') from None
    recorded[key] = {'size': size, 'sha256': digest}
  out = {'raw_dir': root, 'files': recorded}
  if folders:
    out['folders'] = {role: os.path.realpath(path) for role, path in sorted(folders.items())}
  return out


def preparation_identity(dataset: str, recipe: dict, modalities: tuple, class_names: tuple,
                         inputs: dict | None = None) -> dict:
  """What makes two preparations the same: compared before any example file is reused."""
  return _json_native({'dataset': dataset, 'recipe': dict(recipe),
                       'modalities': [m.to_dict() for m in modalities],
                       'class_names': list(class_names), 'inputs': inputs})


_IDENTITY_KEYS = ('dataset', 'recipe', 'modalities', 'class_names', 'inputs')


def _brief(value, limit: int = 80) -> str:
  return raw_files.shorten(value if isinstance(value, str) else json.dumps(value), limit)


def _differences(old, new, prefix: str) -> list:
  """'<key> <old> (prepared) vs <new> (now)' for every leaf that differs."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new), key=str):
      out += _differences(old.get(key, '(absent)'), new.get(key, '(absent)'), f'{prefix}.{key}')
    return out
  if old == new:
    return []
  return [f'{prefix} {_brief(old)} (prepared) vs {_brief(new)} (now)']


def _identity_differences(previous: dict, identity: dict) -> list:
  """What differs between two identities, most telling first (recipe, raw folder, files)."""
  out = []
  for key in ('dataset', 'recipe'):
    out += _differences(previous.get(key, '(absent)'), identity.get(key), key)
  old_inputs, new_inputs = previous.get('inputs') or {}, identity.get('inputs') or {}
  if old_inputs.get('raw_dir') != new_inputs.get('raw_dir'):
    out.append(f'raw folder {_brief(old_inputs.get("raw_dir"), 200)} (prepared) vs '
               f'{_brief(new_inputs.get("raw_dir"), 200)} (now)')
  old_files, new_files = old_inputs.get('files') or {}, new_inputs.get('files') or {}
  for name in sorted(set(old_files) | set(new_files)):
    before, now = old_files.get(name), new_files.get(name)
    if before == now:
      continue
    if before is None:
      out.append(f'{name} was not an input of the prepared dataset')
    elif now is None:
      out.append(f'{name} is no longer an input')
    elif before.get('size') != now.get('size'):
      out.append(f'{name} changed since it was prepared ({before.get("size")} bytes, now '
                 f'{now.get("size")})')
    else:
      out.append(f'{name} changed since it was prepared (same size, other content)')
  out += _differences(old_inputs.get('folders', '(absent)'), new_inputs.get('folders', '(absent)'),
                      'folders')
  if previous.get('class_names') != identity.get('class_names'):
    out.append(f'class_names {_brief(previous.get("class_names"))} (prepared) vs '
               f'{_brief(identity.get("class_names"))} (now)')

  def by_name(modalities):
    if not isinstance(modalities, list):
      return modalities
    return {m.get('name', str(i)): m for i, m in enumerate(modalities) if isinstance(m, dict)}

  out += _differences(by_name(previous.get('modalities')), by_name(identity.get('modalities')),
                      'modalities')
  return out


def _refusal(output_dir: str, what: str, previous: dict,
             identity: dict) -> prepared.DataFormatError:
  if previous.get('inputs', '(absent)') == '(absent)' and identity.get('inputs') is not None:
    why = ('it was made by an older fedcmi_tff, which did not record the raw inputs or file '
           'checksums; it can still be used for training')
  else:
    diffs = _identity_differences(previous, identity) or ['the recorded identity differs']
    why = '; '.join(diffs[:3]) + (f'; and {len(diffs) - 3} more' if len(diffs) > 3 else '')
  return prepared.DataFormatError(
      f'{output_dir} holds {what} of other inputs or another recipe ({why}); choose another '
      'output folder, or pass --overwrite (overwrite=True) to delete it and prepare again')


def holds_preparation(output_dir: str) -> bool:
  """Whether output_dir holds a finished or unfinished prepared dataset."""
  return any(os.path.lexists(os.path.join(output_dir, name))
             for name in (prepared.MANIFEST_NAME, _IN_PROGRESS_NAME))


def remove_preparation(output_dir: str) -> bool:
  """Deletes the prepared dataset in output_dir; nothing unless it holds one.

  Only what a preparation writes is removed: dataset.json, the marker and journal,
  train/ and test/, and temporary files; any other file stays.

  Returns:
    Whether output_dir held a (finished or unfinished) prepared dataset.
  """
  if not holds_preparation(output_dir):
    return False
  for name in (prepared.MANIFEST_NAME, _IN_PROGRESS_NAME, _JOURNAL_NAME):
    path = os.path.join(output_dir, name)
    if os.path.lexists(path):
      os.unlink(path)
  for split in prepared.SPLITS:
    folder = os.path.join(output_dir, split)
    if os.path.isdir(folder) and not os.path.islink(folder):
      shutil.rmtree(folder)
    elif os.path.lexists(folder):
      os.unlink(folder)
  for name in os.listdir(output_dir):
    if name.startswith(files.TEMPORARY_PREFIX):
      os.unlink(os.path.join(output_dir, name))
  return True


def _journal_line(entry: prepared.ListedFile) -> bytes:
  return (json.dumps([entry.split, entry.example_id, entry.label, entry.size, entry.crc32])
          + '\n').encode()


def _write_marker(output_dir: str, identity: dict, entries=()) -> None:
  """Marks output_dir as an unfinished preparation of `identity`, with a journal of `entries`."""
  files.write_bytes(os.path.join(output_dir, _JOURNAL_NAME),
                    b''.join(_journal_line(e) for e in entries))
  files.write_bytes(os.path.join(output_dir, _IN_PROGRESS_NAME),
                    (json.dumps(identity, indent=1) + '\n').encode())


def finished_manifest(output_dir: str, identity: dict, *, overwrite: bool = False,
                      verify: bool | None = None) -> dict | None:
  """The manifest of a finished preparation of `identity` in output_dir, if it is intact.

  Called before any raw example is decoded.  Every listed example file's size is
  checked, and its CRC-32 when `verify` is True (or None and the files are small,
  `prepared.wants_checksums`).  When files are missing or damaged, the folder is
  turned back into an unfinished preparation (marker and journal of the listed
  files, dataset.json removed) and None is returned: the writer then makes exactly
  those files again and reuses the others.

  Args:
    output_dir: the prepared dataset's folder.
    identity: `preparation_identity(...)` of this run.
    overwrite: delete a finished or unfinished preparation in output_dir (only if
      it holds one) and return None.
    verify: checksum the example files (None: when cheap).

  Returns:
    The manifest, or None when there is work to do.

  Raises:
    DataFormatError: output_dir holds a preparation of another identity, or an
      unreadable dataset.json (without `overwrite`).
  """
  if overwrite:
    remove_preparation(output_dir)
    return None
  path = os.path.join(output_dir, prepared.MANIFEST_NAME)
  if not os.path.lexists(path):
    return None
  try:
    manifest = prepared.read_manifest(output_dir)
  except prepared.DataFormatError as e:
    raise prepared.DataFormatError(
        f'{e}; choose another output folder, or pass --overwrite (overwrite=True) to delete '
        'it and prepare again') from None
  previous = {key: manifest.get(key, '(absent)') for key in _IDENTITY_KEYS}
  if manifest.get('format_version') == 1 or previous != identity:
    raise _refusal(output_dir, 'a finished preparation', previous, identity)
  if not prepared.example_file_problems(output_dir, manifest, verify):
    return manifest
  _write_marker(output_dir, identity, prepared.listed_files(output_dir, manifest))
  os.unlink(path)
  return None


def _read_journal(output_dir: str) -> dict:
  """{(split, example_id): ListedFile} of an unfinished preparation's journal.

  A line cut by an interruption (or otherwise unreadable) is ignored; a later line
  for the same example wins.
  """
  path = os.path.join(output_dir, _JOURNAL_NAME)
  try:
    data = raw_files.read_regular_file(path)
  except raw_files.UnreadableFile:
    return {}
  entries = {}
  for line in data.split(b'\n'):
    try:
      split, example_id, label, size, crc = json.loads(line)
      entry = prepared.ListedFile(str(split), str(example_id), int(label),
                                  prepared.example_path(output_dir, str(split), str(example_id)),
                                  int(size), int(crc))
    except (ValueError, TypeError):
      continue
    entries[(entry.split, entry.example_id)] = entry
  return entries


class PreparedDatasetWriter:
  """Writes a prepared dataset; `finish` writes the manifest that completes it.

  Example files are written atomically and journalled, so an interrupted
  preparation leaves only whole files and a record of them; `existing()` lets a
  rerun reuse the files already written, after checking their size (and CRC-32
  when verifying).
  """

  def __init__(self, output_dir: str, dataset: str, modalities: tuple, class_names: tuple,
               recipe: dict, source: str, *, inputs: dict | None = None,
               verify: bool | None = None):
    """Opens output_dir for writing: a new preparation, or the unfinished one of the same identity.

    Args:
      output_dir: the prepared dataset's folder (created if needed).
      dataset: the dataset name recorded in the manifest.
      modalities: two `prepared.ModalitySpec`s, slot a first.
      class_names: the class names, index order.
      recipe: JSON-native preprocessing choices.
      source: the raw folder, recorded in the manifest.
      inputs: `input_identity(...)` of the raw inputs.
      verify: checksum reused example files (None: when they total at most
        `prepared.AUTO_CHECKSUM_BYTES`); sizes are always checked.

    Raises:
      DataFormatError: output_dir holds a finished preparation, or an unfinished one
        of another identity.
    """
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
    self.inputs = inputs
    self._examples = {s: [] for s in prepared.SPLITS}
    self._ids = {s: set() for s in prepared.SPLITS}
    if os.path.lexists(os.path.join(output_dir, prepared.MANIFEST_NAME)):
      raise prepared.DataFormatError(f'{output_dir} already holds a finished prepared dataset; '
                                     'choose another output folder, or pass --overwrite '
                                     '(overwrite=True) to delete it and prepare again')
    os.makedirs(output_dir, exist_ok=True)
    identity = preparation_identity(dataset, self.recipe, self.modalities, self.class_names,
                                    inputs)
    marker = os.path.join(output_dir, _IN_PROGRESS_NAME)
    self._journal = {}
    if os.path.lexists(marker):
      try:
        previous = json.loads(raw_files.read_regular_file(marker))
      except (raw_files.UnreadableFile, ValueError):
        previous = {}
      if not isinstance(previous, dict):
        previous = {}
      if previous != identity:
        raise _refusal(output_dir, f'an unfinished preparation ({marker})', previous, identity)
      # Lines cut by an interruption are dropped, so that new lines start cleanly.
      self._journal = _read_journal(output_dir)
      files.write_bytes(os.path.join(output_dir, _JOURNAL_NAME),
                        b''.join(_journal_line(e) for e in self._journal.values()))
    else:
      _write_marker(output_dir, identity)
    self._checksum = prepared.wants_checksums(verify, sum(e.size for e in self._journal.values()))
    for split in prepared.SPLITS:
      os.makedirs(os.path.join(output_dir, split), exist_ok=True)

  def existing(self, split: str, example_id: str, label: int) -> tuple:
    """(reusable, problem) of the file an earlier run may have written for this example.

    Reusable when the journal lists it with this label and the file has the size (and,
    when verifying, the CRC-32) recorded there.  Otherwise `problem` says why a file on
    disk or in the journal is not reused (None when there is neither).  Thread-safe.
    """
    path = prepared.example_path(self.output_dir, split, example_id)
    entry = self._journal.get((split, example_id))
    if entry is None:
      if os.path.lexists(path):
        return False, 'not in the journal of the interrupted preparation'
      return False, None
    if entry.label != label:
      return False, f'label {entry.label} recorded, {label} now'
    problem = prepared.file_problem(path, entry.size, entry.crc32, self._checksum,
                                    recorded_in='the preparation journal')
    return problem is None, problem

  def reuse(self, split: str, example_id: str, label: int) -> None:
    """Adds an example whose file `existing` found reusable."""
    entry = self._journal[(split, example_id)]
    self._add_index(split, example_id, label, entry.size, entry.crc32)

  def discard(self, split: str, example_id: str) -> None:
    """Removes the file an earlier run wrote for an example that is now skipped."""
    path = prepared.example_path(self.output_dir, split, example_id)
    if os.path.lexists(path):
      os.unlink(path)

  def _add_index(self, split, example_id, label, size, crc):
    if split not in prepared.SPLITS:
      raise ValueError(f'split must be one of {prepared.SPLITS}, got {split!r}')
    if example_id in self._ids[split]:
      raise ValueError(f'example id {example_id!r} written twice to split {split}')
    if not 0 <= label < len(self.class_names):
      raise ValueError(f'label {label} of {example_id} outside 0..{len(self.class_names) - 1}')
    self._ids[split].add(example_id)
    self._examples[split].append((example_id, int(label), int(size), int(crc)))

  def write(self, split: str, example_id: str, label: int, features: dict) -> None:
    """Writes one example (atomically) and journals it.

    Args:
      split: 'train' or 'test'.
      example_id: file-name-safe id, unique within the split.
      label: class index.
      features: modality name -> value: float32 array (float_tensor), list of
        JPEG bytes (jpeg_frames), JPEG bytes (jpeg_image), int sequence (token_ids).
    """
    if (os.sep in example_id or example_id.startswith('.')
        or len(example_id.encode('utf-8', 'surrogatepass')) > MAX_EXAMPLE_ID_BYTES):
      raise ValueError(f'example id {raw_files.quote(example_id, 60)} is not a safe file name')
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
    path = prepared.example_path(self.output_dir, split, example_id)
    with files.atomic_path(path) as tmp:
      with tf.io.TFRecordWriter(tmp) as w:
        w.write(record)
      size, crc = os.path.getsize(tmp), prepared.file_crc32(tmp)
    self._add_index(split, example_id, label, size, crc)
    entry = prepared.ListedFile(split, example_id, int(label), path, size, crc)
    with open(os.path.join(self.output_dir, _JOURNAL_NAME), 'ab') as journal:
      journal.write(_journal_line(entry))

  def finish(self, report: PreparationReport, extra: dict | None = None) -> dict:
    """Writes dataset.json (atomically) and returns it.

    Raises:
      NothingPrepared: a split has no example (the report says why).
    """
    for split in prepared.SPLITS:
      if not self._examples[split]:
        raise NothingPrepared(
            f'{self.output_dir}: no {split} example was prepared ({report.read[split]} '
            f'{split} rows read; {report.summary()}); see the skip report above', report)
    manifest = {
        'format': prepared.FORMAT_NAME, 'format_version': prepared.FORMAT_VERSION,
        'dataset': self.dataset, 'source': self.source, 'inputs': self.inputs,
        'recipe': self.recipe, 'class_names': list(self.class_names),
        'modalities': [m.to_dict() for m in self.modalities],
        'splits': {s: {'count': len(self._examples[s]),
                       'example_ids': [e[0] for e in self._examples[s]],
                       'labels': [e[1] for e in self._examples[s]],
                       'sizes': [e[2] for e in self._examples[s]],
                       'crc32': [e[3] for e in self._examples[s]]} for s in prepared.SPLITS},
        'report': report.to_dict(),
    }
    if extra:
      manifest.update(extra)
    manifest = _json_native(manifest)
    files.write_bytes(os.path.join(self.output_dir, prepared.MANIFEST_NAME),
                      (json.dumps(manifest, indent=1) + '\n').encode())
    for name in (_IN_PROGRESS_NAME, _JOURNAL_NAME):
      path = os.path.join(self.output_dir, name)
      if os.path.lexists(path):
        os.unlink(path)
    return manifest


def identity_progress(items, total, desc):
  del total, desc
  return items


def _named(items: list) -> str:
  more = ', ...' if len(items) > _NAMED_IN_NOTES else ''
  return ', '.join(items[:_NAMED_IN_NOTES]) + more


def prepare_examples(writer: PreparedDatasetWriter, report: PreparationReport, items: list,
                     build_features: Callable, *, workers: int = 1,
                     progress: Callable = identity_progress) -> None:
  """Builds and writes every item, counting skips; intact files of an earlier run are reused.

  Reused files and files made again because they were missing or damaged are
  counted in report notes.

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
    split, example_id, label, payload = item
    reusable, problem = writer.existing(split, example_id, label)
    if reusable:
      return None, None
    try:
      return build_features(payload), problem
    except SkipExample as e:
      return e, problem

  window = 8 * max(1, workers)  # results held at once stay bounded

  def built(pool):
    for start in range(0, len(items), window):
      chunk = items[start:start + window]
      yield from zip(chunk, pool.map(build, chunk))

  reused, remade = 0, []
  with futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    for item, (result, problem) in progress(built(pool), len(items), 'examples'):
      split, example_id, label, _ = item
      if isinstance(result, SkipExample):
        report.skip(result.reason, result.item)
        writer.discard(split, example_id)
      elif result is None:
        writer.reuse(split, example_id, label)
        report.count_written(split)
        reused += 1
      else:
        writer.write(split, example_id, label, result)
        report.count_written(split)
        if problem is not None:
          remade.append(f'{split}/{example_id} ({problem})')
  if reused:
    report.notes.append(f'resumed: {reused} example files of an interrupted preparation reused')
  if remade:
    report.notes.append(f'made again: {len(remade)} example files that were missing or '
                        f'damaged: {_named(remade)}')
