"""FedAvg's and FedProx's client objective: cross-entropy of the fused logits (pure TF).

Multimodal clients minimise CE(F([z_aa ; z_bb])); clients holding one modality
fill the missing slot with zeros, CE(F([z_aa ; 0])) or CE(F([0 ; z_bb])), as in
the FedCMI authors' multimodal FedAvg baseline.  The infiltration projectors and
self heads receive no gradient.  FedProx is this objective with the generic
loop's proximal term on.  OGM-GE and PMR (ogm_ge.py, pmr.py) extend it.
"""

from __future__ import annotations

from fedcmi_tff.algorithms import base

_MULTIMODAL = frozenset({'encoder_a', 'self_a', 'encoder_b', 'self_b', 'fusion'})
_ACTIVE = {
    base.CASE_MULTIMODAL: _MULTIMODAL,
    base.CASE_A_TEACHES: _MULTIMODAL,
    base.CASE_B_TEACHES: _MULTIMODAL,
    base.CASE_ONLY_A: frozenset({'encoder_a', 'self_a', 'fusion'}),
    base.CASE_ONLY_B: frozenset({'encoder_b', 'self_b', 'fusion'}),
}


class FusedCrossEntropyObjective(base.ClientObjective):
  """CE of the fused logits; unimodal clients zero-fill the missing slot."""

  name = 'fused_ce'

  def active_roles(self) -> dict:
    return _ACTIVE

  def multimodal_loss(self, context, state, x, y) -> base.BatchLoss:
    out = context.model.multimodal(x, training=True)
    return self.batch_loss(base.cross_entropy(y, out.fused), base.CASE_MULTIMODAL)

  def only_a_loss(self, context, state, x, y) -> base.BatchLoss:
    return self.batch_loss(
        base.cross_entropy(y, context.model.zero_filled_a(x, training=True)),
        base.CASE_ONLY_A, aux=self.no_aux())

  def only_b_loss(self, context, state, x, y) -> base.BatchLoss:
    return self.batch_loss(
        base.cross_entropy(y, context.model.zero_filled_b(x, training=True)),
        base.CASE_ONLY_B, aux=self.no_aux())

  def no_aux(self):
    """The `aux` of batches the gradient transform leaves alone."""
    return ()


class ModulationWindow:
  """Rounds [start_round, end_round] in which OGM-GE / PMR act on multimodal clients."""

  def __init__(self, strength: float, start_round: int, end_round: int):
    self.strength = strength
    self.start_round = start_round
    self.end_round = end_round

  def active(self, context: base.RoundContext):
    return ((context.round_num >= self.start_round) &
            (context.round_num <= self.end_round) & context.is_multimodal)
