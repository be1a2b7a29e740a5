"""A toy method, written as a contributor would add one: FedAvg with label smoothing.

One file with the objective (this one) plus one registry line (tests/test_toy_method.py
adds it, as `algorithms/registry.py`'s `_ALGORITHMS` would hold it).
"""

from __future__ import annotations

import tensorflow as tf

from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import fused_ce


def smoothed_cross_entropy(labels, logits, smoothing: float) -> tf.Tensor:
  """Mean CE against (1 - smoothing) * one_hot + smoothing / K."""
  num_classes = tf.shape(logits)[-1]
  targets = tf.one_hot(tf.cast(labels, tf.int32), num_classes) * (1.0 - smoothing)
  targets += smoothing / tf.cast(num_classes, tf.float32)
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))


class LabelSmoothingObjective(fused_ce.FusedCrossEntropyObjective):
  """FedAvg's objective with label-smoothed targets on every client kind."""

  name = 'label_smoothing'

  def __init__(self, smoothing: float = 0.1):
    self.smoothing = smoothing

  def _loss(self, y, logits, case, aux):
    return self.batch_loss(smoothed_cross_entropy(y, logits, self.smoothing), case, aux=aux)

  def multimodal_loss(self, context, state, x, y) -> base.BatchLoss:
    out = context.model.multimodal(x, training=True)
    return self._loss(y, out.fused, base.CASE_MULTIMODAL, ())

  def only_a_loss(self, context, state, x, y) -> base.BatchLoss:
    return self._loss(y, context.model.zero_filled_a(x, training=True), base.CASE_ONLY_A, ())

  def only_b_loss(self, context, state, x, y) -> base.BatchLoss:
    return self._loss(y, context.model.zero_filled_b(x, training=True), base.CASE_ONLY_B, ())
