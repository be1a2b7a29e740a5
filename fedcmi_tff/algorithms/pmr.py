"""FedAvg + PMR (Fan et al., CVPR 2023) inside multimodal clients' local training.

In the modulation rounds a multimodal client computes, once per round with the
model in eval mode, each modality's class prototypes (mean encoder features per
class) and adds alpha * CE(prototype logits) for the modality whose prototype
score is lower (the prototype logits are minus the Euclidean distances).  The
maths is in losses/modulation.py.
"""

from __future__ import annotations

import tensorflow as tf

from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import fused_ce
from fedcmi_tff.losses import modulation


class PMRObjective(fused_ce.FusedCrossEntropyObjective):
  """Fused CE plus PMR's prototype loss; the round state is (modulating, prototypes)."""

  name = 'pmr'

  def __init__(self, window: fused_ce.ModulationWindow):
    self.window = window

  def round_state(self, context):
    model = context.model
    modulating = self.window.active(context)
    no_prototypes = tf.zeros([model.num_classes, model.feature_dim])

    def class_prototypes():
      zeros = tf.zeros([model.num_classes, model.feature_dim])

      def accumulate(sums, batch):
        out = model.multimodal(batch['x'], training=False)
        part = modulation.prototype_sums(out.feature_a, out.feature_b, batch['y'],
                                         model.num_classes)
        return tf.nest.map_structure(tf.add, sums, part)

      sums = context.fold(context.batches, modulation.PrototypeSums(
          zeros, zeros, tf.zeros([model.num_classes])), accumulate)
      return modulation.prototypes_from_sums(sums)

    prototypes = tf.cond(modulating, class_prototypes, lambda: (no_prototypes, no_prototypes))
    return modulating, prototypes

  def multimodal_loss(self, context, state, x, y) -> base.BatchLoss:
    modulating, prototypes = state
    out = context.model.multimodal(x, training=True)
    loss = base.cross_entropy(y, out.fused)
    logits_a = modulation.prototype_logits(out.feature_a, prototypes[0])
    logits_b = modulation.prototype_logits(out.feature_b, prototypes[1])
    beta_a, beta_b = modulation.pmr_coefficients(logits_a, logits_b, y,
                                                 self.window.strength)
    prototype_loss = (beta_a * base.cross_entropy(y, logits_a) +
                      beta_b * base.cross_entropy(y, logits_b))
    loss += tf.where(modulating, prototype_loss, 0.0)
    return self.batch_loss(loss, base.CASE_MULTIMODAL)
