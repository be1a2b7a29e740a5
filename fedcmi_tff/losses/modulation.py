"""Modality-imbalance baselines applied inside local training (pure TensorFlow).

* OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation.  The fusion
  layer's halves give each modality's own logits, out_m = z_m W_m + b / 2; with
  rho = s_b / s_a (sums of true-class probabilities), the dominant modality's
  encoder gradients are scaled by k = 1 - tanh(alpha * rho_dominant) and every
  convolution gradient gets Gaussian noise with the gradient's own standard
  deviation (generalisation enhancement).  As in the FedCMI authors' federated
  version (client/base.py): the dominant side is b when rho > 1, else a.
* PMR (Fan et al., CVPR 2023): prototype-based rebalancing.  Class prototypes of
  each modality's encoder features are computed from the local data at the start
  of the round; logits are minus the Euclidean distances to them; the modality
  whose prototype score is lower gets alpha * CE(prototype logits), the other 0.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from fedcmi_tff.losses import distillation


def ogm_coefficients(embedding_a, embedding_b, fusion_kernel, fusion_bias, labels,
                     alpha: float):
  """(k_a, k_b): gradient scales of the two encoders for one batch."""
  dim = tf.shape(embedding_a)[-1]
  out_a = tf.matmul(embedding_a, fusion_kernel[:dim]) + fusion_bias / 2.0
  out_b = tf.matmul(embedding_b, fusion_kernel[dim:]) + fusion_bias / 2.0
  s_a = tf.reduce_sum(distillation.true_class_probability(out_a, labels))
  s_b = tf.reduce_sum(distillation.true_class_probability(out_b, labels))
  ratio_b = tf.math.divide_no_nan(s_b, s_a)
  ratio_a = tf.math.divide_no_nan(1.0, ratio_b)
  b_dominant = ratio_b > 1.0
  k_a = tf.where(b_dominant, 1.0, 1.0 - tf.tanh(alpha * tf.nn.relu(ratio_a)))
  k_b = tf.where(b_dominant, 1.0 - tf.tanh(alpha * tf.nn.relu(ratio_b)), 1.0)
  return tf.stop_gradient(k_a), tf.stop_gradient(k_b)


def modulated_gradient(gradient, coefficient, noise_seed, add_noise: bool = True):
  """g * k (+ N(0, std(g) + 1e-8) noise): OGM-GE's update of one convolution kernel."""
  scaled = gradient * coefficient
  if not add_noise:
    return scaled
  std = tf.math.reduce_std(gradient) + 1e-8
  return scaled + std * tf.random.stateless_normal(tf.shape(gradient), noise_seed)


class PrototypeSums(NamedTuple):
  sum_a: tf.Tensor  # [K, D]
  sum_b: tf.Tensor  # [K, D]
  count: tf.Tensor  # [K]


def prototype_sums(features_a, features_b, labels, num_classes: int) -> PrototypeSums:
  labels = tf.cast(labels, tf.int32)
  return PrototypeSums(
      tf.math.unsorted_segment_sum(features_a, labels, num_classes),
      tf.math.unsorted_segment_sum(features_b, labels, num_classes),
      tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, num_classes))


def prototypes_from_sums(sums: PrototypeSums):
  """Per-class mean features; zeros for classes the client does not hold."""
  count = tf.maximum(sums.count, 1.0)[:, None]
  return sums.sum_a / count, sums.sum_b / count


def prototype_logits(features, prototypes):
  """-||f_i - p_c||_2 for every row i and class c."""
  diff = features[:, None, :] - prototypes[None, :, :]
  return -tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(diff), -1), 1e-12))


def pmr_coefficients(prototype_logits_a, prototype_logits_b, labels, alpha: float):
  """(beta_a, beta_b): the modality with the lower prototype score gets alpha."""
  s_a = tf.reduce_sum(distillation.true_class_probability(prototype_logits_a, labels))
  s_b = tf.reduce_sum(distillation.true_class_probability(prototype_logits_b, labels))
  ratio = tf.stop_gradient(tf.math.divide_no_nan(s_a, s_b))
  beta_a = tf.where(ratio < 1.0, alpha, 0.0)
  beta_b = tf.where(ratio > 1.0, alpha, 0.0)
  return beta_a, beta_b
