"""FedAvg + OGM-GE (Peng et al., CVPR 2022) inside multimodal clients' local training.

On top of the fused cross-entropy, in the modulation rounds: each encoder's
convolution-kernel gradients are scaled by k = 1 - tanh(alpha * rho) for the
dominant modality (rho from the two halves of the fusion layer) and get Gaussian
noise with the gradient's own standard deviation (generalisation enhancement),
seeded by (round, step, parameter index).  The maths is in losses/modulation.py.
"""

from __future__ import annotations

import tensorflow as tf

from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import fused_ce
from fedcmi_tff.losses import modulation


class OGMGEObjective(fused_ce.FusedCrossEntropyObjective):
  """Fused CE with OGM-GE gradient modulation; `aux` = (k_a, k_b, modulating)."""

  name = 'ogm_ge'

  def __init__(self, window: fused_ce.ModulationWindow):
    self.window = window

  def round_state(self, context):
    return self.window.active(context)

  def no_aux(self):
    return (tf.constant(1.0), tf.constant(1.0), tf.constant(False))

  def multimodal_loss(self, context, modulating, x, y) -> base.BatchLoss:
    model = context.model
    out = model.multimodal(x, training=True)
    k_a, k_b = modulation.ogm_coefficients(out.embedding_a, out.embedding_b,
                                           model.fusion.kernel, model.fusion.bias, y,
                                           self.window.strength)
    return self.batch_loss(base.cross_entropy(y, out.fused), base.CASE_MULTIMODAL,
                           aux=(k_a, k_b, modulating))

  def transform_gradients(self, context, gradients, variables, roles, aux, step):
    k_a, k_b, modulate = aux
    out = []
    for i, (g, v, role) in enumerate(zip(gradients, variables, roles)):
      slot = (0 if role == 'encoder_a' else 1 if role == 'encoder_b' else -1
              ) if len(v.shape) == 4 else -1
      if slot >= 0:
        seed = tf.stack([context.round_num * 1_000_003 + step, i])
        k = k_a if slot == 0 else k_b
        g = tf.cond(modulate, lambda g=g, k=k, seed=seed: modulation.modulated_gradient(
            g, k, seed), lambda g=g: g)
      out.append(g)
    return out
