"""The FedCMI Keras model as a `tff.learning.models.VariableModel`.

Wrapped with `tff.learning.models.from_keras_model`, the model's `call` gives
the fused logits with absent slots zero-filled, so TFF's own builders
(`build_weighted_fed_avg`, `build_weighted_fed_prox`, `build_fed_eval`) run on
it unchanged, on batched client datasets of the same element layout.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tensorflow_federated as tff


def batched_element_spec(element_spec):
  """The spec of `dataset.batch(b)` for a dataset of single examples."""
  return tf.nest.map_structure(
      lambda s: tf.TensorSpec((None,) + tuple(s.shape), s.dtype), element_spec)


class FusedPathModel(tf.keras.Model):
  """The decomposed model seen through its fused, zero-filled path only.

  Its variables are the inner model's, in the same order, so weights move freely
  between TFF's builders and this project's processes.  Parameters the fused path
  does not use (infiltration projectors, self heads) get an exact zero gradient
  instead of None: TFF's proximal client work adds mu (w - w0) to every gradient
  and fails on None.
  """

  def __init__(self, inner):
    super().__init__(name='fused_path')
    self.inner = inner

  def call(self, x, training=False):
    unused = tf.add_n([tf.reduce_sum(v) for v in self.inner.trainable_variables])
    return self.inner(x, training=training) + 0.0 * unused


def build_tff_model_fn(keras_model_fn: Callable, element_spec) -> Callable:
  """No-argument callable returning the model as a TFF `VariableModel`.

  Args:
    keras_model_fn: returns a new `DecomposedModel`.
    element_spec: spec of one unbatched example ({'x': ..., 'y': ...}).
  """
  input_spec = batched_element_spec(element_spec)

  def tff_model_fn():
    return tff.learning.models.from_keras_model(
        FusedPathModel(keras_model_fn()), input_spec=input_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  return tff_model_fn
