"""Cross-modal infiltration maths (pure TensorFlow, no model, no TFF).

FedCMI (arXiv 2401.00894) distils the global model's dominant modality into the
weak modality's infiltration projection with a per-class temperature.  The
quantities below follow docs/algorithm.md ('Multimodal FedCMI clients',
'Class-wise temperature'):

* dominance ratio  rho = sum_i softmax(l_a,i)[y_i] / sum_i softmax(l_b,i)[y_i]
* infiltration loss  mean_i H(softmax(teacher_i / tau_{y_i}), softmax(student_i / tau_{y_i}))
* class temperatures  tau_c = 1 / (1 + gamma * ln(r_c / r_mean)) for classes whose
  ratio exceeds the client's mean ratio, else 1.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


def true_class_probability(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """softmax(logits)[i, labels[i]] for every row i."""
  probs = tf.nn.softmax(logits, axis=-1)
  return tf.gather(probs, tf.cast(labels, tf.int32), axis=1, batch_dims=1)


def dominance_ratio(self_logits_a: tf.Tensor, self_logits_b: tf.Tensor,
                    labels: tf.Tensor) -> tf.Tensor:
  """Per-batch ratio rho = s_a / s_b; slot a dominates the batch when rho > 1.

  No gradient flows through it: it only picks the distillation direction.
  """
  s_a = tf.reduce_sum(true_class_probability(self_logits_a, labels))
  s_b = tf.reduce_sum(true_class_probability(self_logits_b, labels))
  return tf.stop_gradient(tf.math.divide_no_nan(s_a, s_b))


def soft_target_cross_entropy(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                              temperatures: tf.Tensor,
                              row_weights: tf.Tensor | None = None) -> tf.Tensor:
  """Mean over rows of H(softmax(t / tau), softmax(s / tau)); the teacher is detached.

  Args:
    teacher_logits: [B, K] logits of the teacher (no gradient flows into them).
    student_logits: [B, K] logits of the student.
    temperatures: [B] temperature of each row (tau_{y_i}); the same value
      divides teacher and student.  No tau^2 factor (the authors' code has none).
    row_weights: optional [B] weights (e.g. 0/1 gates): sum_i w_i H_i / B, so a row
      with weight 0 contributes nothing and the others keep their 1/B share.
  """
  tau = tf.expand_dims(tf.cast(temperatures, student_logits.dtype), -1)
  teacher_probs = tf.nn.softmax(tf.stop_gradient(teacher_logits) / tau, axis=-1)
  student_log_probs = tf.nn.log_softmax(student_logits / tau, axis=-1)
  per_row = -tf.reduce_sum(teacher_probs * student_log_probs, axis=-1)
  if row_weights is None:
    return tf.reduce_mean(per_row)
  return tf.reduce_mean(per_row * tf.cast(row_weights, per_row.dtype))


def confident_rows(teacher_logits: tf.Tensor, labels: tf.Tensor,
                   threshold: float) -> tf.Tensor:
  """[B] float 0/1: the teacher gives the true class probability >= threshold (beyond the
  paper: the 'confident teacher' gate of docs/algorithm.md)."""
  p = true_class_probability(tf.stop_gradient(teacher_logits), labels)
  return tf.cast(p >= threshold, tf.float32)


class TeacherAccuracyCounts(NamedTuple):
  """Per-class correct counts of each self head of the global model, and class counts."""

  correct_a: tf.Tensor  # [K]
  correct_b: tf.Tensor  # [K]
  count: tf.Tensor  # [K]


def teacher_accuracy_counts(self_logits_a: tf.Tensor, self_logits_b: tf.Tensor,
                            labels: tf.Tensor, num_classes: int) -> TeacherAccuracyCounts:
  """Per-class numbers of rows each self head classifies correctly (argmax), one batch."""
  labels = tf.cast(labels, tf.int32)
  hit = lambda logits: tf.cast(
      tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
  return TeacherAccuracyCounts(
      correct_a=tf.math.unsorted_segment_sum(hit(self_logits_a), labels, num_classes),
      correct_b=tf.math.unsorted_segment_sum(hit(self_logits_b), labels, num_classes),
      count=tf.math.unsorted_segment_sum(tf.ones_like(hit(self_logits_a)), labels,
                                         num_classes))


class ClassProbabilitySums(NamedTuple):
  """Per-class sums of the true-class probability under each self head."""

  sum_a: tf.Tensor  # [K]
  sum_b: tf.Tensor  # [K]
  count: tf.Tensor  # [K]


def class_probability_sums(self_logits_a: tf.Tensor, self_logits_b: tf.Tensor,
                           labels: tf.Tensor, num_classes: int) -> ClassProbabilitySums:
  """Per-class sums of softmax(l)[y] for one batch; add batches, then divide."""
  labels = tf.cast(labels, tf.int32)
  p_a = true_class_probability(self_logits_a, labels)
  p_b = true_class_probability(self_logits_b, labels)
  return ClassProbabilitySums(
      sum_a=tf.math.unsorted_segment_sum(p_a, labels, num_classes),
      sum_b=tf.math.unsorted_segment_sum(p_b, labels, num_classes),
      count=tf.math.unsorted_segment_sum(tf.ones_like(p_a), labels, num_classes))


class ClassTemperatures(NamedTuple):
  """Temperature tables for one client and round.

  Attributes:
    client_direction: the table the authors' code uses for every batch, built
      for the client's overall dominant modality (decided by the mean ratio).
    a_dominant: the table for batches in which slot a dominates.
    b_dominant: the table for batches in which slot b dominates.
    mean_ratio: r_mean, the mean of r_c = P_a(c) / P_b(c) over classes with P_b(c) > 0.
  """

  client_direction: tf.Tensor
  a_dominant: tf.Tensor
  b_dominant: tf.Tensor
  mean_ratio: tf.Tensor


def _sharpened(ratio: tf.Tensor, threshold: tf.Tensor, valid: tf.Tensor,
               sharpness: float) -> tf.Tensor:
  """1 / (1 + gamma ln(ratio / threshold)) where valid and ratio > threshold, else 1."""
  safe_ratio = tf.where(valid, ratio, tf.ones_like(ratio))
  above = tf.logical_and(valid, safe_ratio > threshold)
  log_excess = tf.math.log(tf.where(above, safe_ratio / threshold, tf.ones_like(ratio)))
  return tf.where(above, 1.0 / (1.0 + sharpness * log_excess), tf.ones_like(ratio))


def class_wise_temperatures(mean_prob_a: tf.Tensor, mean_prob_b: tf.Tensor,
                            sharpness: float) -> ClassTemperatures:
  """Class-wise temperatures from per-class mean true-class probabilities.

  Args:
    mean_prob_a: [K] P_a(c), mean of softmax(l_a)[c] over the client's samples of
      class c under slot a's self head; 0 for classes the client does not hold.
    mean_prob_b: [K] the same for slot b.
    sharpness: gamma.

  Returns:
    `ClassTemperatures`.  Classes with P_b(c) = 0 (absent classes) are left out of
    the mean and keep tau = 1; in the b-dominant table, classes with P_a(c) = 0 keep
    tau = 1 as well (the authors' code would divide by zero there).
  """
  mean_prob_a = tf.convert_to_tensor(mean_prob_a, tf.float32)
  mean_prob_b = tf.convert_to_tensor(mean_prob_b, tf.float32)
  has_b = mean_prob_b > 0
  ratio_a = tf.math.divide_no_nan(mean_prob_a, mean_prob_b)  # r_c
  num_valid = tf.reduce_sum(tf.cast(has_b, tf.float32))
  mean_ratio = tf.math.divide_no_nan(
      tf.reduce_sum(tf.where(has_b, ratio_a, tf.zeros_like(ratio_a))), num_valid)
  a_dominant = _sharpened(ratio_a, mean_ratio, has_b, sharpness)
  # The b-dominant threshold is 1 / r_mean (not the mean of q_c), as in the code.
  has_both = tf.logical_and(has_b, mean_prob_a > 0)
  ratio_b = tf.math.divide_no_nan(mean_prob_b, mean_prob_a)  # q_c
  b_dominant = _sharpened(ratio_b, tf.math.divide_no_nan(1.0, mean_ratio), has_both,
                          sharpness)
  client_direction = tf.where(mean_ratio > 1.0, a_dominant, b_dominant)
  return ClassTemperatures(client_direction, a_dominant, b_dominant, mean_ratio)
