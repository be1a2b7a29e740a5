"""Golden numbers for the proximal term and the learning-rate schedule."""

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.losses import proximal
from fedcmi_tff.losses import schedule


def test_proximal_gradient_is_gradient_of_proximal_term():
  w = tf.Variable([1.0, -2.0, 0.5])
  w_global = tf.constant([0.0, 1.0, 0.5])
  with tf.GradientTape() as tape:
    term = proximal.proximal_term([w], [w_global], 0.1)
  assert term.numpy() == pytest.approx(0.5 * 0.1 * (1.0 + 9.0 + 0.0))
  np.testing.assert_allclose(tape.gradient(term, w).numpy(),
                             proximal.proximal_gradient(w, w_global, 0.1).numpy())
  np.testing.assert_allclose(proximal.proximal_gradient(w, w_global, 0.1).numpy(),
                             [0.1, -0.3, 0.0], rtol=1e-6)


@pytest.mark.parametrize('round_num,expected', [
    (0, 1e-3), (80, 1e-3),
    # t = 81 > 80: eta - (eta - eta_min) * t / R = 1e-3 - 9e-4 * 81 / 180
    (81, 1e-3 - 9e-4 * 81 / 180), (179, 1e-3 - 9e-4 * 179 / 180)])
def test_learning_rate_schedule(round_num, expected):
  lr = schedule.learning_rate_for_round(round_num, 1e-3, 1e-4, 80, 180)
  assert float(lr) == pytest.approx(expected, rel=1e-5)
