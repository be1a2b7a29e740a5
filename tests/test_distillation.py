"""Golden numbers for the infiltration maths (losses/distillation.py)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.losses import distillation


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def test_soft_target_cross_entropy_matches_numpy_with_per_row_temperature():
  rng = np.random.default_rng(0)
  teacher = rng.normal(size=(4, 3)).astype(np.float32)
  student = rng.normal(size=(4, 3)).astype(np.float32)
  tau = np.array([1.0, 0.5, 0.8, 1.0], np.float32)
  expected = np.mean([-np.sum(_softmax(teacher[i] / tau[i]) *
                              np.log(_softmax(student[i] / tau[i]))) for i in range(4)])
  got = distillation.soft_target_cross_entropy(teacher, student, tau).numpy()
  assert got == pytest.approx(expected, rel=1e-5)


def test_soft_target_cross_entropy_hand_value_and_detached_teacher():
  # teacher logits (0, ln 3) -> p = (0.25, 0.75); student logits 0 -> q = (0.5, 0.5)
  teacher = tf.Variable([[0.0, math.log(3.0)]])
  student = tf.Variable([[0.0, 0.0]])
  with tf.GradientTape() as tape:
    loss = distillation.soft_target_cross_entropy(teacher, student, tf.constant([1.0]))
  assert loss.numpy() == pytest.approx(math.log(2.0), rel=1e-6)  # H(p, uniform) = ln 2
  g_teacher, g_student = tape.gradient(loss, [teacher, student])
  assert g_teacher is None
  # dH/ds = q - p = (0.25, -0.25)
  np.testing.assert_allclose(g_student.numpy(), [[0.25, -0.25]], atol=1e-6)


def test_dominance_ratio_hand_value():
  labels = tf.constant([0, 1])
  # slot a: p_true = 0.5 and 0.5 (uniform over 2 classes); slot b: logits give 0.25 and 0.75
  a = tf.zeros((2, 2))
  b = tf.constant([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
  rho = distillation.dominance_ratio(a, b, labels).numpy()
  assert rho == pytest.approx((0.5 + 0.5) / (0.25 + 0.75))


def _reference_temperatures(p_a, p_b, gamma):
  """The authors' loop in plain Python (docs/algorithm.md, 'Class-wise temperature' steps 2-5)."""
  k = len(p_a)
  ratios = [p_a[c] / p_b[c] for c in range(k) if p_b[c] != 0]
  average = sum(ratios) / len(ratios)
  tau = [1.0] * k
  for c in range(k):
    if p_b[c] == 0:
      continue
    if average > 1:
      r = p_a[c] / p_b[c]
      tau[c] = 1 / (1 + gamma * math.log(r / average)) if r > average else 1.0
    else:
      q = p_b[c] / p_a[c]
      tau[c] = 1 / (1 + gamma * math.log(q / (1 / average))) if q > 1 / average else 1.0
  return tau, average


def test_class_temperatures_a_dominant_golden():
  # r = (3, 1, 1): mean 5/3 > 1, only class 0 is above it.
  temps = distillation.class_wise_temperatures([0.9, 0.6, 0.5], [0.3, 0.6, 0.5], 2.0)
  expected0 = 1.0 / (1.0 + 2.0 * math.log(3.0 / (5.0 / 3.0)))  # = 0.459647...
  np.testing.assert_allclose(temps.client_direction.numpy(), [expected0, 1.0, 1.0], rtol=1e-5)
  assert temps.mean_ratio.numpy() == pytest.approx(5.0 / 3.0)
  assert expected0 == pytest.approx(0.4596, abs=1e-4)


def test_class_temperatures_b_dominant_uses_reciprocal_mean_threshold():
  p_a = [0.2, 0.5, 0.4]
  p_b = [0.8, 0.5, 0.5]
  # r = (0.25, 1, 0.8), mean 0.6833 <= 1; q = (4, 1, 1.25) against 1/0.6833 = 1.4634
  temps = distillation.class_wise_temperatures(p_a, p_b, 2.0)
  mean = (0.25 + 1.0 + 0.8) / 3
  expected0 = 1.0 / (1.0 + 2.0 * math.log(4.0 * mean))
  np.testing.assert_allclose(temps.client_direction.numpy(), [expected0, 1.0, 1.0], rtol=1e-5)
  # The mean of q_c would be 2.083: class 2 (q = 1.25) stays 1 either way, class 0 differs.
  ref, _ = _reference_temperatures(p_a, p_b, 2.0)
  np.testing.assert_allclose(temps.client_direction.numpy(), ref, rtol=1e-5)


def test_class_temperatures_absent_class_keeps_one_and_is_left_out_of_mean():
  p_a = [0.9, 0.0, 0.5, 0.6]
  p_b = [0.3, 0.0, 0.5, 0.2]
  temps = distillation.class_wise_temperatures(p_a, p_b, 2.0)
  ref, average = _reference_temperatures(p_a, p_b, 2.0)
  assert temps.mean_ratio.numpy() == pytest.approx(average)  # (3 + 1 + 3) / 3
  assert temps.client_direction.numpy()[1] == 1.0
  np.testing.assert_allclose(temps.client_direction.numpy(), ref, rtol=1e-5)
  assert np.all(temps.a_dominant.numpy() <= 1.0) and np.all(temps.a_dominant.numpy() > 0)


@pytest.mark.parametrize('seed', range(5))
def test_class_temperatures_match_reference_loop_on_random_inputs(seed):
  rng = np.random.default_rng(seed)
  p_a = rng.uniform(0.05, 1.0, size=6)
  p_b = rng.uniform(0.05, 1.0, size=6)
  p_a[seed % 6] = p_b[seed % 6] = 0.0  # one absent class
  temps = distillation.class_wise_temperatures(p_a.astype(np.float32), p_b.astype(np.float32),
                                               2.0)
  ref, _ = _reference_temperatures(list(p_a), list(p_b), 2.0)
  np.testing.assert_allclose(temps.client_direction.numpy(), ref, rtol=1e-4)


def test_direction_consistent_tables():
  # a-dominant client (mean r = 5/3); the b-dominant table uses q against 1/mean.
  p_a, p_b = [0.9, 0.6, 0.2], [0.3, 0.6, 0.8]
  temps = distillation.class_wise_temperatures(p_a, p_b, 2.0)
  mean = (3.0 + 1.0 + 0.25) / 3
  a_dom = [1 / (1 + 2 * math.log(3.0 / mean)), 1.0, 1.0]
  # q = (1/3, 1, 4) against 1/mean = 0.706: classes 1 and 2 are above it.
  b_dom = [1.0, 1 / (1 + 2 * math.log(1.0 * mean)), 1 / (1 + 2 * math.log(4.0 * mean))]
  np.testing.assert_allclose(temps.a_dominant.numpy(), a_dom, rtol=1e-5)
  np.testing.assert_allclose(temps.b_dominant.numpy(), b_dom, rtol=1e-5)
  np.testing.assert_allclose(temps.client_direction.numpy(), a_dom, rtol=1e-5)


def test_class_probability_sums():
  labels = tf.constant([0, 0, 2])
  logits = tf.constant([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0]])
  sums = distillation.class_probability_sums(logits, logits, labels, 3)
  np.testing.assert_allclose(sums.sum_a.numpy(), [1 / 3 + 3 / 5, 0.0, 1 / 3], rtol=1e-6)
  np.testing.assert_allclose(sums.count.numpy(), [2.0, 0.0, 1.0])


def test_gated_soft_target_cross_entropy_and_confident_rows_match_numpy():
  rng = np.random.default_rng(3)
  teacher = rng.normal(size=(5, 3)).astype(np.float32) * 2
  student = rng.normal(size=(5, 3)).astype(np.float32)
  labels = np.array([0, 1, 2, 1, 0])
  tau = np.array([1.0, 0.5, 0.8, 1.0, 0.7], np.float32)
  p_true = _softmax(teacher)[np.arange(5), labels]
  gate = (p_true >= 0.4).astype(np.float32)
  assert 0 < gate.sum() < 5  # the draw gates some rows and keeps others
  np.testing.assert_array_equal(distillation.confident_rows(teacher, labels, 0.4).numpy(), gate)
  rows = [-np.sum(_softmax(teacher[i] / tau[i]) * np.log(_softmax(student[i] / tau[i])))
          for i in range(5)]
  expected = np.sum(gate * np.array(rows)) / 5  # gated rows give 0, the rest keep 1/B
  got = distillation.soft_target_cross_entropy(teacher, student, tau, gate).numpy()
  assert got == pytest.approx(expected, rel=1e-5)
  ones = distillation.soft_target_cross_entropy(teacher, student, tau, np.ones(5)).numpy()
  assert ones == pytest.approx(np.mean(rows), rel=1e-5)


def test_teacher_accuracy_counts_hand_values():
  labels = tf.constant([0, 0, 1, 2])
  # head a: argmax 0, 1, 1, 0 -> correct rows 0, 2; head b: argmax 0, 0, 0, 2 -> rows 0, 1, 3
  a = tf.constant([[2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0], [1.0, 0, 0]])
  b = tf.constant([[2.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])
  counts = distillation.teacher_accuracy_counts(a, b, labels, 3)
  np.testing.assert_array_equal(counts.correct_a.numpy(), [1, 1, 0])
  np.testing.assert_array_equal(counts.correct_b.numpy(), [2, 0, 1])
  np.testing.assert_array_equal(counts.count.numpy(), [2, 1, 1])
