"""Client learning-rate schedule of the authors' code (docs/algorithm.md, 'Client update')."""

from __future__ import annotations

import tensorflow as tf


def learning_rate_for_round(round_num, learning_rate: float, min_learning_rate: float,
                            constant_lr_rounds: int, total_rounds: int) -> tf.Tensor:
  """eta for t <= constant_lr_rounds, else eta - (eta - eta_min) * t / total_rounds."""
  t = tf.cast(round_num, tf.float32)
  decayed = learning_rate - (learning_rate - min_learning_rate) * t / float(total_rounds)
  return tf.where(t <= float(constant_lr_rounds), tf.constant(learning_rate, tf.float32),
                  tf.cast(decayed, tf.float32))
