"""MaskedSGD (learning/masked_sgd.py) against a numpy reference of PyTorch's SGD step."""

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.learning import masked_sgd


def _reference(w, grads, active, lr, momentum, decay, extra):
  """torch.optim.SGD(momentum, weight_decay) with a parameter skipped when inactive."""
  w = [x.copy() for x in w]
  m = [np.zeros_like(x) for x in w]
  for g_step, on_step in zip(grads, active):
    for i, (g, on) in enumerate(zip(g_step, on_step)):
      if not on:
        continue
      d = g + decay * w[i] + extra * w[i]
      m[i] = momentum * m[i] + d
      w[i] = w[i] - lr * m[i]
  return w, m


def test_masked_sgd_matches_the_reference_and_resets():
  rng = np.random.default_rng(0)
  w0 = [rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
  grads = [[rng.normal(size=x.shape).astype(np.float32) for x in w0] for _ in range(3)]
  active = [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
  variables = [tf.Variable(x) for x in w0]
  opt = masked_sgd.MaskedSGD(variables, momentum=0.9, weight_decay=0.1)

  @tf.function
  def run():
    opt.reset()
    for g, on in zip(grads, active):
      opt.step([tf.constant(x) for x in g], [tf.constant(a) for a in on], 0.5,
               extra_gradient=lambda i, v: 0.2 * v)

  run()
  expected_w, expected_m = _reference(w0, grads, active, 0.5, 0.9, 0.1, 0.2)
  for v, e in zip(variables, expected_w):
    np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
  for m, e in zip(opt._momenta, expected_m):
    np.testing.assert_allclose(m.numpy(), e, rtol=1e-5, atol=1e-6)
  # A second call starts from zero momentum, from the weights the first call left.
  for v, x in zip(variables, w0):
    v.assign(x)
  run()
  for v, e in zip(variables, expected_w):
    np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_masked_sgd_rejects_bad_hyper_parameters():
  v = [tf.Variable(1.0)]
  with pytest.raises(ValueError, match='momentum'):
    masked_sgd.MaskedSGD(v, momentum=1.0, weight_decay=0.0)
  with pytest.raises(ValueError, match='weight_decay'):
    masked_sgd.MaskedSGD(v, momentum=0.0, weight_decay=-1.0)
