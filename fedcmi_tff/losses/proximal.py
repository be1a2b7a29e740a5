"""Proximal term of FedProx / FedCMI (pure TensorFlow)."""

from __future__ import annotations

import tensorflow as tf


def proximal_gradient(weight: tf.Tensor, global_weight: tf.Tensor,
                      proximal_strength: float) -> tf.Tensor:
  """mu * (w - w_global): the gradient of (mu/2)||w - w_global||^2."""
  return proximal_strength * (weight - global_weight)


def proximal_term(weights, global_weights, proximal_strength: float) -> tf.Tensor:
  """(mu/2) * sum over tensors of ||w - w_global||^2."""
  squares = [tf.reduce_sum(tf.square(w - g)) for w, g in zip(weights, global_weights)]
  return 0.5 * proximal_strength * tf.add_n(squares) if squares else tf.constant(0.0)
