"""SGD with momentum and coupled L2 weight decay, stepping only active parameters (pure TF).

TFF's optimisers (`tff.learning.optimizers.build_sgdm`) have no weight decay and
step every parameter; the authors' PyTorch training (torch.optim.SGD with
weight_decay) skips a parameter whose gradient is None for the batch: no decay,
no momentum update.  For each parameter, per batch:

  g' = g + weight_decay * w (+ extra, e.g. the proximal gradient mu (w - w_global))
  m  = momentum * m + g'        (only if the parameter is active)
  w  = w - learning_rate * m    (only if the parameter is active)

The momentum buffers are variables created once; `reset` zeroes them (every
round starts from zero momentum, as a fresh PyTorch optimiser per round does).
"""

from __future__ import annotations

import tensorflow as tf


class MaskedSGD:
  """The optimiser of the client loop; call `reset` and `step` inside a tf.function."""

  def __init__(self, variables, *, momentum: float, weight_decay: float):
    if not 0 <= momentum < 1:
      raise ValueError(f'momentum must be in [0, 1), got {momentum}')
    if weight_decay < 0:
      raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
    self.momentum = momentum
    self.weight_decay = weight_decay
    self._variables = list(variables)
    self._momenta = [tf.Variable(tf.zeros_like(v), trainable=False, name='momentum')
                     for v in self._variables]

  def reset(self) -> None:
    for m in self._momenta:
      m.assign(tf.zeros_like(m))

  def step(self, gradients: list, active: list, learning_rate, extra_gradient=None) -> None:
    """One step; `active[i]` is 1.0 or 0.0 for variable i.

    `extra_gradient(i, variable)`, if given, is added to variable i's gradient right
    after the decay term (the proximal gradient).  It is called inside the
    per-variable update so that the traced graph, and so Grappler's arithmetic
    rewrites and the float results, are those of the original inline loop.
    """
    for i, (v, g, m, on) in enumerate(zip(self._variables, gradients, self._momenta, active)):
      g = g + self.weight_decay * v
      if extra_gradient is not None:
        g = g + extra_gradient(i, v)
      new_m = self.momentum * m + g
      m.assign(on * new_m + (1.0 - on) * m)
      v.assign_sub(on * learning_rate * new_m)
