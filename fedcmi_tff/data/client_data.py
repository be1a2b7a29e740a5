"""Federated view of a dataset: a `tff.simulation.datasets.ClientData`.

Every client dataset yields single examples

    {'x': {name_a: ..., name_b: ..., 'modality_mask': float32[2]}, 'y': int32}

with the slot a client does not hold filled with zeros (created lazily in the
pipeline, never stored) and flagged 0 in the mask.  Batching and shuffling are
left to the client update, which seeds them by round.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff.data import modalities
from fedcmi_tff.data import partition as partition_lib


class MultimodalClientData(tff.simulation.datasets.ClientData):
  """A source of examples split over clients, each client of one `ClientKind`.

  `source` is `synthetic_av.MultimodalArrays` (in memory) or
  `prepared.FileExamples` (one file per example on disk, decoded as the
  pipeline reads it); both offer `labels`, `input_shapes`, `examples(indices,
  present)` and `graph_examples(indices, present)`.  A client's dataset only
  decodes the modalities the client holds.
  """

  def __init__(self, source, client_indices: list, client_kinds: list, modality_names: tuple):
    if len(client_indices) != len(client_kinds):
      raise ValueError(f'{len(client_indices)} index sets but {len(client_kinds)} client kinds')
    self._source = source
    self._indices = [np.asarray(i, np.int64) for i in client_indices]
    self._kinds = [modalities.ClientKind(k) for k in client_kinds]
    self._names = tuple(modality_names)
    self._shapes = {n: tuple(source.input_shapes[n]) for n in self._names}
    self._ids = [str(i) for i in range(len(client_indices))]
    self._element_spec = self._build(0).element_spec

  @property
  def client_ids(self) -> list:
    return list(self._ids)

  @property
  def element_type_structure(self):
    return self._element_spec

  def kind(self, client_id: str) -> modalities.ClientKind:
    return self._kinds[self._ids.index(client_id)]

  def num_examples(self, client_id: str) -> int:
    return int(self._indices[self._ids.index(client_id)].shape[0])

  def _present(self, mask) -> tuple:
    return tuple(n for slot, n in enumerate(self._names) if mask[slot] > 0)

  def _to_example_fn(self, mask):
    names, shapes = self._names, self._shapes

    def to_example(e):
      x = collections.OrderedDict()
      for n in names:
        x[n] = e[n] if n in e else tf.zeros(shapes[n], tf.float32)
      x[modalities.MODALITY_MASK_KEY] = tf.constant(mask, tf.float32)
      return collections.OrderedDict(x=x, y=e['label'])

    return to_example

  def _build(self, position: int) -> tf.data.Dataset:
    mask = self._kinds[position].modality_mask()
    examples = self._source.examples(self._indices[position], self._present(mask))
    return examples.map(self._to_example_fn(mask))

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    if client_id not in self._ids:
      raise ValueError(f'client id {client_id!r} is not one of {len(self._ids)} clients')
    return self._build(self._ids.index(client_id))

  @property
  def serializable_dataset_fn(self):
    """Graph-serialisable id -> dataset (the same elements as create_tf_dataset_for_client)."""
    flat = np.concatenate(self._indices) if self._indices else np.zeros([0], np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(i) for i in self._indices])])
    masks = np.array([k.modality_mask() for k in self._kinds], np.float32)
    ids, names, source = self._ids, self._names, self._source

    def dataset_fn(client_id):
      table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
          default_value=-1)
      position = table.lookup(tf.convert_to_tensor(client_id))
      tf.debugging.assert_non_negative(position, message='unknown client id')
      indices = tf.constant(flat)[tf.gather(tf.constant(offsets), position):
                                  tf.gather(tf.constant(offsets), position + 1)]
      mask = tf.gather(tf.constant(masks), position)

      def to_example(e):
        x = collections.OrderedDict()
        for slot, n in enumerate(names):
          x[n] = e[n] * mask[slot]
        x[modalities.MODALITY_MASK_KEY] = mask
        return collections.OrderedDict(x=x, y=e['label'])

      # The client's kind is only known as a tensor here, so both modalities are read.
      return source.graph_examples(indices, names).map(to_example)

    return dataset_fn


class FederatedSplits(NamedTuple):
  """Everything a training run needs about its data."""

  client_data: MultimodalClientData
  test: tf.data.Dataset  # single multimodal examples, same element layout
  # Held-out training examples (multimodal, same layout), or None without a validation split.
  validation: tf.data.Dataset | None
  modality_names: tuple
  class_names: tuple
  input_shapes: dict
  description: str
  vocabulary_sizes: dict  # token-id range of each text modality (empty if none)


def test_dataset(source, modality_names, indices=None) -> tf.data.Dataset:
  """The test split (or the `indices` of `source`) as multimodal examples (mask (1, 1))."""
  if indices is None:
    indices = np.arange(len(source.labels))
  everything = MultimodalClientData(source, [indices], [modalities.ClientKind.MULTIMODAL],
                                    modality_names)
  return everything.create_tf_dataset_for_client('0')


def build_federated_splits(splits, *, num_clients: int, dirichlet_alpha: float,
                           multi_ratio: float, seed: int, balance_cap: float = 1.1,
                           only_modality: str | None = None,
                           validation_fraction: float = 0.0) -> FederatedSplits:
  """Partitions `splits.train` over clients and assigns each client a kind.

  Args:
    splits: a `synthetic_av.DatasetSplits` or a `prepared.PreparedSplits`.
    num_clients, dirichlet_alpha, balance_cap: the label split (docs/algorithm.md,
      'Federation set-up').
    multi_ratio: fraction of multimodal clients (same section).
    seed: seeds the label split; seed + 1 seeds the kinds.
    only_modality: a modality name: every client holds only that modality.
    validation_fraction: share of every class held out of `splits.train` before the
      label split (`partition.validation_split`, seeded by `seed`); 0 for none.
  """
  names = tuple(splits.modality_names)
  only = None
  if only_modality is not None:
    if only_modality not in names:
      raise ValueError(f'only_modality must be one of {names}, got {only_modality!r}')
    only = names.index(only_modality)
  labels = np.asarray(splits.train.labels)
  validation = None
  kept = np.arange(len(labels), dtype=np.int64)
  if validation_fraction > 0:
    kept, held_out = partition_lib.validation_split(labels, validation_fraction, seed)
    validation = test_dataset(splits.train, names, held_out)
  indices = [kept[i] for i in partition_lib.dirichlet_label_partition(
      labels[kept], num_clients, dirichlet_alpha, seed, balance_cap)]
  kinds = partition_lib.assign_client_kinds(num_clients, multi_ratio, seed + 1, only)
  client_data = MultimodalClientData(splits.train, indices, kinds, names)
  return FederatedSplits(
      client_data=client_data, test=test_dataset(splits.test, names), validation=validation,
      modality_names=names,
      class_names=tuple(splits.class_names),
      input_shapes={n: tuple(splits.train.input_shapes[n]) for n in names},
      description=splits.description,
      vocabulary_sizes=dict(getattr(splits.train, 'vocabulary_sizes', {})))
