"""The prepared-dataset format: what the preparation programs write and training reads.

A preparation program (`python -m fedcmi_tff.prepare`) turns a raw download into
this layout once:

    <prepared_dir>/
      dataset.json               manifest; written last, so its presence means "complete"
      train/<example_id>.tfrecord  one tf.train.Example per file
      test/<example_id>.tfrecord

The manifest records the format version, the dataset, the preprocessing recipe,
the class names, each modality's stored encoding and shape, every split's
example ids and labels, and the preparation report (items read, skipped and why).

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
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import tempfile
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

FORMAT_NAME = 'fedcmi_tff.prepared'
FORMAT_VERSION = 1
MANIFEST_NAME = 'dataset.json'
_IN_PROGRESS_NAME = '.preparing.json'  # identity of an unfinished preparation
SPLITS = ('train', 'test')
ENCODINGS = ('float_tensor', 'jpeg_frames', 'jpeg_image', 'token_ids')
# Per-channel normalisations applied to decoded images when loading.
NORMALISATIONS = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'half': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class DataFormatError(ValueError):
  """Input that does not have the expected format; the message names file and line."""


class SkipExample(Exception):
  """One raw item cannot be prepared for a reason the published data is known to have
  (a missing or undecodable clip); it is counted under `reason` and named."""

  def __init__(self, reason: str, item: str):
    super().__init__(f'{reason}: {item}')
    self.reason = reason
    self.item = item


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
    raise DataFormatError(f'{path}: file not found')
  with open(path, encoding=encoding, newline='') as f:
    return [(number, line.rstrip('\r\n')) for number, line in enumerate(f, start=1)]


def write_bytes_atomically(path: str, data: bytes) -> None:
  """Writes data to path via a temporary file in the same folder and a rename."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _write_record_atomically(path: str, record: bytes) -> None:
  """Writes one TFRecord-framed record to path via a temporary file in the same folder."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-',
                             suffix='.tfrecord')
  os.close(fd)
  try:
    with tf.io.TFRecordWriter(tmp) as w:
      w.write(record)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def example_path(root: str, split: str, example_id: str) -> str:
  return os.path.join(root, split, f'{example_id}.tfrecord')


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
    self._examples = {s: [] for s in SPLITS}
    self._ids = {s: set() for s in SPLITS}
    if os.path.exists(os.path.join(output_dir, MANIFEST_NAME)):
      raise DataFormatError(f'{output_dir} already holds a finished prepared dataset; '
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
        raise DataFormatError(
            f'{output_dir} holds an unfinished preparation with another recipe or class list '
            f'({marker}); use another output folder or remove it')
    else:
      write_bytes_atomically(marker, (json.dumps(identity, indent=1) + '\n').encode())
    for split in SPLITS:
      os.makedirs(os.path.join(output_dir, split), exist_ok=True)

  def has(self, split: str, example_id: str) -> bool:
    return os.path.exists(example_path(self.output_dir, split, example_id))

  def record(self, split: str, example_id: str, label: int) -> None:
    """Adds an example whose file exists already (a resumed preparation)."""
    self._add_index(split, example_id, label)

  def _add_index(self, split, example_id, label):
    if split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
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
    _write_record_atomically(example_path(self.output_dir, split, example_id), record)

  def finish(self, report: PreparationReport, extra: dict | None = None) -> dict:
    """Writes dataset.json (atomically) and returns it."""
    for split in SPLITS:
      if not self._examples[split]:
        raise DataFormatError(f'{self.output_dir}: no {split} example was prepared; '
                              'see the skip report above')
    manifest = {
        'format': FORMAT_NAME, 'format_version': FORMAT_VERSION, 'dataset': self.dataset,
        'source': self.source, 'recipe': self.recipe, 'class_names': list(self.class_names),
        'modalities': [m.to_dict() for m in self.modalities],
        'splits': {s: {'count': len(self._examples[s]),
                       'example_ids': [e for e, _ in self._examples[s]],
                       'labels': [l for _, l in self._examples[s]]} for s in SPLITS},
        'report': report.to_dict(),
    }
    if extra:
      manifest.update(extra)
    write_bytes_atomically(os.path.join(self.output_dir, MANIFEST_NAME),
                        (json.dumps(manifest, indent=1) + '\n').encode())
    os.unlink(os.path.join(self.output_dir, _IN_PROGRESS_NAME))
    return manifest


def finished_manifest(output_dir: str, dataset: str, recipe: dict) -> dict | None:
  """The manifest of a finished preparation of `recipe` in output_dir, else None.

  Raises:
    DataFormatError: output_dir holds a finished preparation of another dataset
      or recipe (it is never overwritten).
  """
  path = os.path.join(output_dir, MANIFEST_NAME)
  if not os.path.exists(path):
    return None
  manifest = read_manifest(output_dir)
  if manifest.get('dataset') != dataset or manifest.get('recipe') != json.loads(json.dumps(recipe)):
    raise DataFormatError(
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
    with open(path) as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise DataFormatError(f'{path}: not valid JSON ({e})') from None
  if manifest.get('format') != FORMAT_NAME:
    raise DataFormatError(f'{path}: "format" is {manifest.get("format")!r}, '
                          f'expected {FORMAT_NAME!r}')
  if manifest.get('format_version') != FORMAT_VERSION:
    raise DataFormatError(
        f'{path}: format_version {manifest.get("format_version")} but this code reads '
        f'version {FORMAT_VERSION}; prepare the dataset again')
  if expected_dataset is not None and manifest.get('dataset') != expected_dataset:
    raise DataFormatError(f'{path}: holds dataset {manifest.get("dataset")!r}, '
                          f'but --dataset={expected_dataset}')
  return manifest


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  """How stored examples become model inputs."""

  num_frames: int = 2  # T frames of a jpeg_frames modality (the first T, in order)
  image_size: int = 224  # frames and images are resized to image_size x image_size

  def validate(self) -> None:
    if self.num_frames < 1:
      raise ValueError(f'num_frames must be >= 1, got {self.num_frames}')
    if self.image_size < 8:
      raise ValueError(f'image_size must be >= 8, got {self.image_size}')


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
  """Opens a prepared dataset for training; checks that every listed file exists."""
  manifest = read_manifest(prepared_dir, expected_dataset)
  path = os.path.join(prepared_dir, MANIFEST_NAME)
  try:
    specs = tuple(ModalitySpec.from_dict(m) for m in manifest['modalities'])
    specs = tuple(
        dataclasses.replace(s, vocabulary_size=len(manifest['vocabulary']))
        if s.encoding == 'token_ids' and not s.vocabulary_size and 'vocabulary' in manifest
        else s for s in specs)
    class_names = tuple(manifest['class_names'])
    splits = {}
    for split in SPLITS:
      entry = manifest['splits'][split]
      ids, labels = entry['example_ids'], np.asarray(entry['labels'], np.int32)
      if len(ids) != len(labels):
        raise DataFormatError(f'{path}: splits.{split} has {len(ids)} ids but {len(labels)} labels')
      paths = np.array([example_path(prepared_dir, split, i) for i in ids], dtype=object)
      missing = [p for p in paths if not os.path.exists(p)]
      if missing:
        raise DataFormatError(f'{path}: {len(missing)} {split} example files are missing, '
                              f'e.g. {missing[0]}; prepare the dataset again')
      if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataFormatError(f'{path}: splits.{split} has labels outside 0..{len(class_names) - 1}')
      splits[split] = FileExamples(paths, labels, specs, options)
  except KeyError as e:
    raise DataFormatError(f'{path}: missing field {e}') from None
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
