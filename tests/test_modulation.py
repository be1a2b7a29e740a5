"""OGM-GE and PMR: golden numbers (losses/modulation.py) and their effect on one step."""

import math

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry
from fedcmi_tff.learning import client_update
from fedcmi_tff.losses import modulation
from tests import tiny


def _ogm_inputs():
  # d = 1, K = 2: out_a = z_a W_a + b/2 = (0, 0); out_b = z_b W_b + b/2 = (0, ln 3).
  kernel = tf.constant([[0.0, 0.0], [0.0, 1.0]])
  bias = tf.zeros([2])
  z_a = tf.constant([[1.0], [1.0]])
  z_b = tf.constant([[math.log(3.0)], [math.log(3.0)]])
  return z_a, z_b, kernel, bias


def test_ogm_coefficient_when_b_dominates():
  z_a, z_b, kernel, bias = _ogm_inputs()
  labels = tf.constant([1, 1])  # p_true: a 0.5, b 0.75 -> rho_b = 1.5 > 1
  k_a, k_b = modulation.ogm_coefficients(z_a, z_b, kernel, bias, labels, alpha=0.5)
  assert float(k_a) == 1.0
  assert float(k_b) == pytest.approx(1.0 - math.tanh(0.5 * 1.5), rel=1e-6)  # 0.36485
  assert float(k_b) == pytest.approx(0.36485, abs=1e-5)


def test_ogm_coefficient_when_a_dominates():
  z_a, z_b, kernel, bias = _ogm_inputs()
  labels = tf.constant([0, 0])  # p_true: a 0.5, b 0.25 -> rho_a = 2
  k_a, k_b = modulation.ogm_coefficients(z_a, z_b, kernel, bias, labels, alpha=0.5)
  assert float(k_b) == 1.0
  assert float(k_a) == pytest.approx(1.0 - math.tanh(0.5 * 2.0), rel=1e-6)


def test_modulated_gradient_scales_and_adds_noise_of_gradient_std():
  g = tf.random.stateless_normal([200, 50], seed=[1, 2]) * 3.0
  np.testing.assert_allclose(modulation.modulated_gradient(g, 0.25, [0, 0], add_noise=False),
                             g.numpy() * 0.25, rtol=1e-6)
  out = modulation.modulated_gradient(g, 0.25, tf.constant([3, 4]))
  again = modulation.modulated_gradient(g, 0.25, tf.constant([3, 4]))
  np.testing.assert_array_equal(out.numpy(), again.numpy())
  noise = out.numpy() - 0.25 * g.numpy()
  assert np.std(noise) == pytest.approx(np.std(g.numpy()), rel=0.05)


def test_prototype_logits_and_pmr_coefficients():
  logits = modulation.prototype_logits(tf.constant([[0.0, 0.0]]),
                                       tf.constant([[3.0, 4.0], [0.0, 1.0]]))
  np.testing.assert_allclose(logits.numpy(), [[-5.0, -1.0]], rtol=1e-6)
  labels = tf.constant([0])
  strong = tf.constant([[0.0, -10.0]])  # true class 0 close: high score
  weak = tf.constant([[-1.0, 0.0]])
  beta_a, beta_b = modulation.pmr_coefficients(weak, strong, labels, alpha=2.0)
  assert (float(beta_a), float(beta_b)) == (2.0, 0.0)
  beta_a, beta_b = modulation.pmr_coefficients(strong, weak, labels, alpha=2.0)
  assert (float(beta_a), float(beta_b)) == (0.0, 2.0)
  assert tuple(map(float, modulation.pmr_coefficients(weak, weak, labels, 2.0))) == (0.0, 0.0)


def test_prototypes_are_class_means_and_zero_for_absent_classes():
  sums = modulation.prototype_sums(tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
                                   tf.constant([[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]]),
                                   tf.constant([0, 0, 2]), 3)
  proto_a, proto_b = modulation.prototypes_from_sums(sums)
  np.testing.assert_allclose(proto_a.numpy(), [[2, 3], [0, 0], [5, 6]])
  np.testing.assert_allclose(proto_b.numpy(), [[1, 1], [0, 0], [4, 4]])


ONE_STEP = config_lib.LocalTrainingConfig(local_epochs=1, batch_size=64, learning_rate=0.1,
                                        min_learning_rate=0.1)


def _one_step_update(algorithm):
  tf.keras.utils.set_random_seed(5)
  model = tiny.model_fn()
  initial = tiny.weights_of(model)
  objective = registry.client_objective(algorithm, config_lib.ObjectiveConfig())
  fn = client_update.build_client_update_fn(model, None, objective, ONE_STEP)
  out = fn(initial, tiny.dataset(12, seed=9), tf.constant(1))
  return model, [u.numpy() for u in out.update[0] + out.update[1]]


@pytest.fixture(scope='module')
def plain_step():
  return _one_step_update('fedavg')


def test_ogm_ge_changes_only_encoder_convolutions_in_one_step(plain_step):
  model, plain = plain_step
  _, ogm = _one_step_update('fedavg_ogm_ge')
  roles = model.variable_roles() + ['stat'] * len(model.non_trainable_variables)
  shapes = [v.shape for v in model.trainable_variables + model.non_trainable_variables]
  for role, shape, a, b in zip(roles, shapes, plain, ogm):
    if role.startswith('encoder') and len(shape) == 4:
      assert not np.allclose(a, b), role
    else:
      np.testing.assert_array_equal(a, b, err_msg=role)


def test_pmr_changes_only_the_weak_encoder_in_one_step(plain_step):
  model, plain = plain_step
  _, pmr = _one_step_update('fedavg_pmr')
  roles = model.variable_roles()
  changed = {r for r, a, b in zip(roles, plain, pmr) if not np.allclose(a, b, atol=1e-7)}
  assert changed in ({'encoder_a'}, {'encoder_b'})
