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

This module holds the format definition and the reader training uses; the writer
(`PreparedDatasetWriter`, resumable preparation) is offline preparation code, in
`fedcmi_tff/preparation/writer.py`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

FORMAT_NAME = 'fedcmi_tff.prepared'
FORMAT_VERSION = 1
MANIFEST_NAME = 'dataset.json'
SPLITS = ('train', 'test')
ENCODINGS = ('float_tensor', 'jpeg_frames', 'jpeg_image', 'token_ids')
# Per-channel normalisations applied to decoded images when loading.
NORMALISATIONS = {
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'half': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


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
