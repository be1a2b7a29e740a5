"""How local computations iterate over a client's `tf.data.Dataset` (pure TF).

`DATASET_ITERATOR` (the default everywhere) writes a pass over the data as
`for element in iter(dataset)`, which AutoGraph turns into a `tf.while_loop`
traced once with the surrounding `tf.function`.  `DATASET_REDUCE` writes it as
`dataset.reduce` (what `for element in dataset` also lowers to): each step then
runs as a tf.data function that TensorFlow instantiates and optimises again on
every call of the surrounding function.  Both give the same results; on this
project's client update the reduce form made a TFF round about 15x slower.  The
names are those of `tff.learning.LoopImplementation`.
"""

from __future__ import annotations

import enum

import tensorflow as tf


class LoopImplementation(enum.Enum):
  """How a pass over a dataset is written."""

  DATASET_ITERATOR = 'dataset_iterator'
  DATASET_REDUCE = 'dataset_reduce'


DATASET_ITERATOR = LoopImplementation.DATASET_ITERATOR
DATASET_REDUCE = LoopImplementation.DATASET_REDUCE


def fold(dataset: tf.data.Dataset, initial, step, loop: LoopImplementation = DATASET_ITERATOR):
  """`step(state, element)` folded over `dataset`, starting from `initial`.

  Call it inside a `tf.function`; the state must keep its structure, dtypes and
  shapes from step to step.
  """
  if loop is LoopImplementation.DATASET_REDUCE:
    return dataset.reduce(initial, step)
  state = initial
  for element in iter(dataset):
    state = step(state, element)
  return state
