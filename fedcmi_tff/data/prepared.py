"""The prepared-dataset format: what the preparation programs write and training reads.

A preparation program (`python -m fedcmi_tff.prepare`) turns a raw download into
this layout once:

    <prepared_dir>/
      dataset.json               manifest; written last, so its presence means "complete"
      train/<example_id>.tfrecord  one tf.train.Example per file
      test/<example_id>.tfrecord

The manifest records the format version, the dataset, the preprocessing recipe,
the identity of the raw inputs (folder, split files' sizes and SHA-256), the class
names, each modality's stored encoding and shape, every split's example ids and
labels with each example file's size and CRC-32, and the preparation report
(items read, skipped and why).  `load_prepared` checks every listed file's size
before anything is built, and its CRC-32 when cheap or asked for
(`LoadOptions.verify_checksums`); a bad file is named in a one-line
`DataFormatError`.

One file per example lets a client's dataset stream exactly its own examples
from disk with `tf.data.TFRecordDataset(paths)`, a graph-serialisable pipeline
(TFF ships client datasets to its C++ worker as graphs; `from_generator` cannot
cross that boundary), and nothing is decoded before it is needed.

Stored encodings (features of each tf.train.Example, keyed by modality name):
  float_tensor   bytes: tf.io.serialize_tensor of a float32 array (spectrograms)
  jpeg_frames    bytes list: JPEG frames in temporal order (video at 1 fps)
  jpeg_image     bytes: one JPEG (images)
  token_ids      int64 list of fixed length (tokenised text, 0 = padding)
plus `label` (int64) and `example_id` (bytes).

This module holds the format definition and the reader training uses; the writer
(`PreparedDatasetWriter`, resumable preparation) is offline preparation code, in
`fedcmi_tff/preparation/writer.py`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import stat
from typing import Callable, NamedTuple
import zlib

import numpy as np
import tensorflow as tf

FORMAT_NAME = 'fedcmi_tff.prepared'
# 2: per-file sizes and CRC-32s, and the raw inputs' identity.  Version 1 manifests are
# still read: only the presence (and a non-empty size) of their files is checked.
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
MANIFEST_NAME = 'dataset.json'
SPLITS = ('train', 'test')
ENCODINGS = ('float_tensor', 'jpeg_frames', 'jpeg_image', 'token_ids')
# Per-channel normalisations applied to decoded images when loading.
NORMALISATIONS = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'half': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


# A TFRecord file of one record holds at least a 12-byte header and a 4-byte footer.
MIN_RECORD_FILE_BYTES = 16
# With verify_checksums=None ('auto'), example files are checksummed when they total at
# most this many bytes (a few seconds of reading); above it only their sizes are checked.
AUTO_CHECKSUM_BYTES = 1 << 30

_log = logging.getLogger(__name__)


class DataFormatError(ValueError):
  """Input that does not have the expected format; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
  """How one modality is stored.

  Attributes:
    name: the modality slot name ('audio', 'visual', 'image', 'text').
    encoding: one of ENCODINGS.
    shape: stored shape: (bins, steps) for float_tensor; (height, width) of the
      stored JPEGs when fixed, else (); (length,) for token_ids.
    normalisation: for JPEG encodings, a key of NORMALISATIONS.
    centre_crop_fraction: for jpeg_image, the centre crop taken at load time
      (e.g. 224/228 for CrisisMMD's test transform); 1.0 for none.
    vocabulary_size: for token_ids, the id range (0 = padding); 0 when unknown
      (then the manifest's "vocabulary" list gives it).
  """

  name: str
  encoding: str
  shape: tuple = ()
  normalisation: str = 'imagenet'
  centre_crop_fraction: float = 1.0
  vocabulary_size: int = 0

  def validate(self) -> None:
    if self.encoding not in ENCODINGS:
      raise ValueError(f'modality {self.name}: encoding must be one of {ENCODINGS}, '
                       f'got {self.encoding!r}')
    if self.encoding.startswith('jpeg') and self.normalisation not in NORMALISATIONS:
      raise ValueError(f'modality {self.name}: normalisation must be one of '
                       f'{tuple(NORMALISATIONS)}, got {self.normalisation!r}')

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['shape'] = list(self.shape)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> 'ModalitySpec':
    return cls(name=d['name'], encoding=d['encoding'], shape=tuple(d.get('shape', ())),
               normalisation=d.get('normalisation', 'imagenet'),
               centre_crop_fraction=float(d.get('centre_crop_fraction', 1.0)),
               vocabulary_size=int(d.get('vocabulary_size', 0)))


def example_path(root: str, split: str, example_id: str) -> str:
  return os.path.join(root, split, f'{example_id}.tfrecord')


def read_manifest(prepared_dir: str, expected_dataset: str | None = None) -> dict:
  """The manifest of a prepared dataset, checked; clear errors otherwise."""
  path = os.path.join(prepared_dir, MANIFEST_NAME)
  if not os.path.isdir(prepared_dir):
    raise DataFormatError(f'--data_dir {prepared_dir} does not exist')
  if not os.path.exists(path):
    raise DataFormatError(
        f'{path} not found: {prepared_dir} is not a prepared dataset (or its preparation did '
        'not finish); run python -m fedcmi_tff.prepare first')
  try:
    with open(path, encoding='utf-8') as f:
      manifest = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataFormatError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(manifest, dict):
    raise DataFormatError(f'{path}: not a JSON object')
  if manifest.get('format') != FORMAT_NAME:
    raise DataFormatError(f'{path}: "format" is {manifest.get("format")!r}, '
                          f'expected {FORMAT_NAME!r}')
  if manifest.get('format_version') not in READABLE_FORMAT_VERSIONS:
    raise DataFormatError(
        f'{path}: format_version {manifest.get("format_version")} but this code reads '
        f'versions {", ".join(map(str, READABLE_FORMAT_VERSIONS))}; prepare the dataset again')
  if expected_dataset is not None and manifest.get('dataset') != expected_dataset:
    raise DataFormatError(f'{path}: holds dataset {manifest.get("dataset")!r}, '
                          f'but --dataset={expected_dataset}')
  return manifest


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  """How stored examples become model inputs, and how much of the files is verified.

  Attributes:
    num_frames: T frames of a jpeg_frames modality (the first T, in order).
    image_size: frames and images are resized to image_size x image_size.
    verify_checksums: compare every example file's CRC-32 with the manifest when
      loading: True always, False never, None (default) when the files total at most
      AUTO_CHECKSUM_BYTES.  File sizes are always checked.
  """

  num_frames: int = 2
  image_size: int = 224
  verify_checksums: bool | None = None

  def validate(self) -> None:
    if self.num_frames < 1:
      raise ValueError(f'num_frames must be >= 1, got {self.num_frames}')
    if self.image_size < 8:
      raise ValueError(f'image_size must be >= 8, got {self.image_size}')


def wants_checksums(verify_checksums: bool | None, total_bytes: int) -> bool:
  """Whether to checksum files totalling `total_bytes`: as asked, or 'auto' (None)."""
  if verify_checksums is None:
    return total_bytes <= AUTO_CHECKSUM_BYTES
  return bool(verify_checksums)


def file_crc32(path: str) -> int:
  """zlib CRC-32 of a file's bytes (read in 1 MiB blocks)."""
  crc = 0
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      crc = zlib.crc32(block, crc)
  return crc


class ListedFile(NamedTuple):
  """One example file listed in a manifest; size and crc32 are None in version 1."""

  split: str
  example_id: str
  label: int
  path: str
  size: int | None
  crc32: int | None


def listed_files(prepared_dir: str, manifest: dict) -> list:
  """Every example file a manifest lists, as `ListedFile`s, train then test.

  Raises:
    DataFormatError: a split's lists have different lengths, or a field is missing.
  """
  where = os.path.join(prepared_dir, MANIFEST_NAME)
  out = []
  try:
    for split in SPLITS:
      entry = manifest['splits'][split]
      ids, labels = entry['example_ids'], entry['labels']
      sizes, crcs = entry.get('sizes'), entry.get('crc32')
      if manifest.get('format_version', 1) >= 2 and (sizes is None or crcs is None):
        raise DataFormatError(f'{where}: splits.{split} has no "sizes" or "crc32" list')
      for name, values in (('labels', labels), ('sizes', sizes), ('crc32', crcs)):
        if values is not None and len(values) != len(ids):
          raise DataFormatError(f'{where}: splits.{split} has {len(ids)} ids but '
                                f'{len(values)} {name}')
      for i, example_id in enumerate(ids):
        out.append(ListedFile(split, example_id, int(labels[i]),
                              example_path(prepared_dir, split, example_id),
                              None if sizes is None else int(sizes[i]),
                              None if crcs is None else int(crcs[i])))
  except KeyError as e:
    raise DataFormatError(f'{where}: missing field {e}') from None
  except (TypeError, ValueError) as e:
    raise DataFormatError(f'{where}: malformed splits ({e})') from None
  return out


def file_problem(path: str, size: int | None, crc32: int | None, checksum: bool,
                 recorded_in: str = MANIFEST_NAME) -> str | None:
  """What is wrong with one example file against its recorded size and CRC-32, or None.

  A size of None (a version-1 manifest) only rules out a missing or too-short file.
  `recorded_in` names the record in the message.
  """
  try:
    info = os.stat(path)
  except FileNotFoundError:
    return 'missing'
  except OSError as e:
    return f'cannot be read ({e.strerror})'
  if not stat.S_ISREG(info.st_mode):
    return 'not a regular file'
  if size is None:
    if info.st_size < MIN_RECORD_FILE_BYTES:
      return f'{info.st_size} bytes, too short for a TFRecord example'
    return None
  if info.st_size != size:
    return f'{info.st_size} bytes, but {recorded_in} records {size} (truncated or replaced)'
  if checksum and crc32 is not None:
    try:
      actual = file_crc32(path)
    except OSError as e:
      return f'cannot be read ({e.strerror})'
    if actual != crc32:
      return (f'CRC-32 {actual:08x}, but {recorded_in} records {crc32:08x} (the content '
              'changed: corrupted or replaced)')
  return None


def example_file_problems(prepared_dir: str, manifest: dict,
                          verify_checksums: bool | None = None) -> list:
  """[(path, problem)] of the example files a manifest lists that are missing or damaged.

  Sizes are always compared with the manifest (a stat per file); CRC-32s as
  `wants_checksums(verify_checksums, total size)` decides.
  """
  entries = listed_files(prepared_dir, manifest)
  checksum = wants_checksums(verify_checksums, sum(e.size or 0 for e in entries))
  problems = []
  for e in entries:
    problem = file_problem(e.path, e.size, e.crc32, checksum)
    if problem is not None:
      problems.append((e.path, problem))
  return problems


def model_input_shape(spec: ModalitySpec, options: LoadOptions) -> tuple:
  if spec.encoding == 'float_tensor':
    return tuple(spec.shape) + (1,)
  if spec.encoding == 'jpeg_frames':
    return (options.num_frames, options.image_size, options.image_size, 3)
  if spec.encoding == 'jpeg_image':
    return (options.image_size, options.image_size, 3)
  return tuple(spec.shape)


def _decode_image(jpeg, spec: ModalitySpec, options: LoadOptions):
  image = tf.io.decode_jpeg(jpeg, channels=3)
  image = tf.image.convert_image_dtype(image, tf.float32)
  if spec.centre_crop_fraction < 1.0:
    image = tf.image.central_crop(image, spec.centre_crop_fraction)
  image = tf.image.resize(image, (options.image_size, options.image_size), antialias=True)
  mean, std = NORMALISATIONS[spec.normalisation]
  return (image - tf.constant(mean)) / tf.constant(std)


def build_parse_fn(specs: tuple, options: LoadOptions) -> Callable:
  """serialized tf.train.Example -> {name: float32 input for every name in `present`, label}."""
  options.validate()

  def parse(serialized, present: tuple):
    description = {'label': tf.io.FixedLenFeature([], tf.int64)}
    for spec in specs:
      if spec.name not in present:
        continue
      if spec.encoding in ('float_tensor', 'jpeg_image'):
        description[spec.name] = tf.io.FixedLenFeature([], tf.string)
      elif spec.encoding == 'jpeg_frames':
        description[spec.name] = tf.io.VarLenFeature(tf.string)
      else:
        description[spec.name] = tf.io.FixedLenFeature([spec.shape[0]], tf.int64)
    parsed = tf.io.parse_single_example(serialized, description)
    out = collections.OrderedDict()
    for spec in specs:
      if spec.name not in present:
        continue
      value = parsed[spec.name]
      if spec.encoding == 'float_tensor':
        tensor = tf.io.parse_tensor(value, tf.float32)
        out[spec.name] = tf.ensure_shape(tensor[..., tf.newaxis], tuple(spec.shape) + (1,))
      elif spec.encoding == 'jpeg_frames':
        frames = tf.sparse.to_dense(value)
        # The first T frames in temporal order; clips with fewer repeat their last frame.
        count = tf.shape(frames)[0]
        positions = tf.minimum(tf.range(options.num_frames), count - 1)
        chosen = tf.gather(frames, positions)
        decoded = tf.map_fn(lambda j: _decode_image(j, spec, options), chosen,
                            fn_output_signature=tf.float32)
        out[spec.name] = tf.ensure_shape(decoded, model_input_shape(spec, options))
      elif spec.encoding == 'jpeg_image':
        out[spec.name] = tf.ensure_shape(_decode_image(value, spec, options),
                                         model_input_shape(spec, options))
      else:
        out[spec.name] = tf.cast(value, tf.float32)
    out['label'] = tf.cast(parsed['label'], tf.int32)
    return out

  return parse


class FileExamples:
  """One split of a prepared dataset: example files and labels; decoded lazily.

  Exposes the interface `client_data` uses for every source of examples:
  `labels`, `input_shapes`, `examples(indices, present)` and
  `graph_examples(indices_tensor, present)`.
  """

  def __init__(self, paths: np.ndarray, labels: np.ndarray, specs: tuple, options: LoadOptions):
    self.paths = np.asarray(paths, dtype=object).astype(str)
    self.labels = np.asarray(labels, np.int32)
    self.specs = tuple(specs)
    self.options = options
    self.input_shapes = {s.name: model_input_shape(s, options) for s in specs}
    self.vocabulary_sizes = {s.name: s.vocabulary_size for s in specs
                             if s.encoding == 'token_ids'}
    self._parse = build_parse_fn(self.specs, options)

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def examples(self, indices, present: tuple) -> tf.data.Dataset:
    """The examples at `indices` (a numpy index array), read from disk as iterated."""
    idx = np.asarray(indices, np.int64)
    return self._read(tf.constant(self.paths[idx] if idx.size else np.zeros([0], str),
                                  tf.string), present)

  def graph_examples(self, indices, present: tuple) -> tf.data.Dataset:
    """Like `examples` for an index tensor (the path table is a graph constant)."""
    return self._read(tf.gather(tf.constant(self.paths, tf.string), indices), present)

  def _read(self, paths, present: tuple) -> tf.data.Dataset:
    parse, present = self._parse, tuple(present)
    return tf.data.TFRecordDataset(paths).map(lambda r: parse(r, present))


class PreparedSplits(NamedTuple):
  """A loaded prepared dataset (same fields as `synthetic_av.DatasetSplits`)."""

  train: FileExamples
  test: FileExamples
  modality_names: tuple
  class_names: tuple
  description: str


def load_prepared(prepared_dir: str, expected_dataset: str | None = None,
                  options: LoadOptions = LoadOptions()) -> PreparedSplits:
  """Opens a prepared dataset for training, after checking its example files.

  Every listed file must exist with the size the manifest records (a stat per file),
  and, when `options.verify_checksums` asks for it (by default when the files total at
  most AUTO_CHECKSUM_BYTES), the CRC-32 it records.  Version-1 manifests record
  neither: their files need only exist and be non-empty (with a one-line warning).

  Raises:
    DataFormatError: one line naming the manifest or the first bad example file.
  """
  manifest = read_manifest(prepared_dir, expected_dataset)
  path = os.path.join(prepared_dir, MANIFEST_NAME)
  try:
    specs = tuple(ModalitySpec.from_dict(m) for m in manifest['modalities'])
    specs = tuple(
        dataclasses.replace(s, vocabulary_size=len(manifest['vocabulary']))
        if s.encoding == 'token_ids' and not s.vocabulary_size and 'vocabulary' in manifest
        else s for s in specs)
    class_names = tuple(manifest['class_names'])
    entries = listed_files(prepared_dir, manifest)
  except KeyError as e:
    raise DataFormatError(f'{path}: missing field {e}') from None
  splits = {}
  for split in SPLITS:
    chosen = [e for e in entries if e.split == split]
    labels = np.asarray([e.label for e in chosen], np.int32)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
      raise DataFormatError(f'{path}: splits.{split} has labels outside 0..{len(class_names) - 1}')
    paths = np.array([e.path for e in chosen], dtype=object)
    splits[split] = FileExamples(paths, labels, specs, options)
  if manifest.get('format_version') == 1:
    _log.warning('%s: format_version 1 records no file sizes or checksums, so only the '
                 'presence of example files is checked; prepare again into a new folder to '
                 'get full checks', path)
  problems = example_file_problems(prepared_dir, manifest, options.verify_checksums)
  if problems:
    bad, problem = problems[0]
    raise DataFormatError(
        f'{bad}: {problem} ({len(problems)} of {len(entries)} example files listed in {path} '
        'are missing or damaged); run python -m fedcmi_tff.prepare again with the same flags '
        'and output folder to re-create them')
  for spec in specs:
    spec.validate()
  counts = ', '.join(f'{s} {len(splits[s])}' for s in SPLITS)
  return PreparedSplits(
      train=splits['train'], test=splits['test'], modality_names=tuple(s.name for s in specs),
      class_names=class_names,
      description=f'{manifest["dataset"]} from {prepared_dir} ({counts} examples)')


def load(data_dir: str, split: str, *, dataset: str | None = None,
         options: LoadOptions = LoadOptions(), as_supervised: bool = False) -> tf.data.Dataset:
  """`tfds.load`-style access to one split of a prepared dataset.

  Returns a `tf.data.Dataset` streaming from disk, of dicts
  {<modality>: float32 input, 'label': int32}, or of (inputs dict, label) pairs
  with `as_supervised=True`; class names are in the manifest
  (`read_manifest(data_dir)['class_names']`).
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  splits = load_prepared(data_dir, dataset, options)
  examples = getattr(splits, split)
  ds = examples.examples(np.arange(len(examples)), splits.modality_names)
  if as_supervised:
    ds = ds.map(lambda e: ({k: v for k, v in e.items() if k != 'label'}, e['label']))
  return ds
