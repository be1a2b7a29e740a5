"""FedCMI's client objective (arXiv 2401.00894; docs/algorithm.md, "Client update"), pure TF.

Multimodal clients minimise
  CE(fused) + beta * (CE(self_a) + CE(self_b)) + lambda * L_inf,
where, after the warm-up, L_inf distils the frozen global model's dominant
self-head logits into the weak modality's infiltration logits, the direction
chosen per batch by the dominance ratio rho = s_a / s_b, at a class-wise
temperature computed once per round from the client's data (model in eval
mode).  Clients holding one modality minimise CE of the path that fills the
missing slot with their own modality's infiltration projection.  The proximal
term and the optimiser belong to the generic client loop.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import base
from fedcmi_tff.losses import distillation

_ACTIVE = {
    base.CASE_MULTIMODAL: base.MULTIMODAL_ROLES,
    base.CASE_A_TEACHES: base.MULTIMODAL_ROLES | {'infil_b'},
    base.CASE_B_TEACHES: base.MULTIMODAL_ROLES | {'infil_a'},
    base.CASE_ONLY_A: frozenset({'encoder_a', 'self_a', 'infil_a', 'fusion'}),
    base.CASE_ONLY_B: frozenset({'encoder_b', 'self_b', 'infil_b', 'fusion'}),
}


class RoundState(NamedTuple):
  """What the once-per-round pre-pass computes on a client (global model, eval mode)."""

  temperatures: distillation.ClassTemperatures
  # Diagnostics only (they do not enter the loss): how well the global model's self heads
  # classify the client's data, per class.
  teacher: distillation.TeacherAccuracyCounts


class FedCMIObjective(base.ClientObjective):
  """FedCMI's loss; its ablations are settings of the same objective.

  Args:
    distillation_weight: lambda; 0 turns infiltration off (no teacher is built).
    self_head_weight: beta.
    temperature_sharpness: gamma of the class-wise temperature.
    temperature_mode: class-wise temperatures, or tau = 1 for every class.
    direction_consistent_temperature: use the table of the direction each batch
      distils in (the authors' code uses the client's overall direction).
    warmup_rounds: rounds before the infiltration loss starts.
    teacher_confidence_threshold: beyond the paper; 0 (the paper) distils every row,
      t > 0 only rows whose teacher gives the true class a probability >= t.
  """

  name = 'fedcmi'
  part_names = ('distillation_loss_sum', 'a_teaches_batches', 'b_teaches_batches')

  def __init__(self, *, distillation_weight: float, self_head_weight: float,
               temperature_sharpness: float, temperature_mode: config_lib.TemperatureMode,
               direction_consistent_temperature: bool, warmup_rounds: int,
               teacher_confidence_threshold: float = 0.0):
    self.distillation_weight = distillation_weight
    self.self_head_weight = self_head_weight
    self.temperature_sharpness = temperature_sharpness
    self.class_wise = temperature_mode is config_lib.TemperatureMode.CLASS_WISE
    self.direction_consistent_temperature = direction_consistent_temperature
    self.warmup_rounds = warmup_rounds
    self.teacher_confidence_threshold = teacher_confidence_threshold
    self.needs_teacher = distillation_weight > 0

  def active_roles(self) -> dict:
    return _ACTIVE

  def _warm(self, context: base.RoundContext):
    return context.round_num >= self.warmup_rounds

  def round_state(self, context: base.RoundContext) -> RoundState:
    ones = tf.ones([context.model.num_classes])
    zeros = tf.zeros([context.model.num_classes])
    constant = lambda: RoundState(
        distillation.ClassTemperatures(ones, ones, ones, tf.constant(1.0)),
        distillation.TeacherAccuracyCounts(zeros, zeros, zeros))
    if not (self.needs_teacher and self.class_wise):
      return constant()
    return tf.cond(context.is_multimodal & self._warm(context),
                   lambda: self._pre_pass(context), constant)

  def _pre_pass(self, context: base.RoundContext) -> RoundState:
    model, num_classes = context.model, context.model.num_classes
    zeros = tf.zeros([num_classes])

    def accumulate(sums, batch):
      out = model.multimodal(batch['x'], training=False)
      part = (distillation.class_probability_sums(out.self_a, out.self_b, batch['y'],
                                                  num_classes),
              distillation.teacher_accuracy_counts(out.self_a, out.self_b, batch['y'],
                                                   num_classes))
      return tf.nest.map_structure(tf.add, sums, part)

    sums, teacher = context.fold(
        context.batches, (distillation.ClassProbabilitySums(zeros, zeros, zeros),
                          distillation.TeacherAccuracyCounts(zeros, zeros, zeros)),
        accumulate)
    return RoundState(distillation.class_wise_temperatures(
        tf.math.divide_no_nan(sums.sum_a, sums.count),
        tf.math.divide_no_nan(sums.sum_b, sums.count), self.temperature_sharpness), teacher)

  def round_metrics(self, context, state) -> collections.OrderedDict:
    """Summed over clients: how many distil with class-wise temperatures, their per-class
    temperatures, and the global self heads' per-class correct counts on their data."""
    used = tf.cast(context.is_multimodal & self._warm(context), tf.float32)
    return collections.OrderedDict(
        temperature_clients=used,
        class_temperature_sum=used * state.temperatures.client_direction,
        teacher_correct_a=used * state.teacher.correct_a,
        teacher_correct_b=used * state.teacher.correct_b,
        teacher_class_count=used * state.teacher.count)

  def multimodal_loss(self, context, state, x, y) -> base.BatchLoss:
    out = context.model.multimodal(x, training=True)
    loss = (base.cross_entropy(y, out.fused) +
            self.self_head_weight * (base.cross_entropy(y, out.self_a) +
                                     base.cross_entropy(y, out.self_b)))
    if not self.needs_teacher:
      return self.batch_loss(loss, base.CASE_MULTIMODAL)

    def infiltration():
      target = context.teacher.multimodal(x, training=False)
      a_dominant = distillation.dominance_ratio(out.self_a, out.self_b, y) > 1.0
      temperatures = state.temperatures
      if self.direction_consistent_temperature:
        table = tf.where(a_dominant, temperatures.a_dominant, temperatures.b_dominant)
      else:
        table = temperatures.client_direction
      tau = tf.gather(table, tf.cast(y, tf.int32))
      gate = lambda teacher_logits: (
          distillation.confident_rows(teacher_logits, y, self.teacher_confidence_threshold)
          if self.teacher_confidence_threshold > 0 else None)
      # a dominates: the global a-self logits teach b's infiltration logits C_b(z_ba).
      a_teaches = distillation.soft_target_cross_entropy(target.self_a, out.infil_b, tau,
                                                         gate(target.self_a))
      b_teaches = distillation.soft_target_cross_entropy(target.self_b, out.infil_a, tau,
                                                         gate(target.self_b))
      return (tf.where(a_dominant, a_teaches, b_teaches),
              tf.where(a_dominant, base.CASE_A_TEACHES, base.CASE_B_TEACHES))

    inf_loss, case = tf.cond(self._warm(context), infiltration,
                             lambda: (tf.constant(0.0), tf.constant(base.CASE_MULTIMODAL)))
    return self.batch_loss(
        loss + self.distillation_weight * inf_loss, case, distillation_loss_sum=inf_loss,
        a_teaches_batches=tf.cast(tf.equal(case, base.CASE_A_TEACHES), tf.float32),
        b_teaches_batches=tf.cast(tf.equal(case, base.CASE_B_TEACHES), tf.float32))

  def only_a_loss(self, context, state, x, y) -> base.BatchLoss:
    return self.batch_loss(base.cross_entropy(y, context.model.only_a(x, training=True)),
                           base.CASE_ONLY_A)

  def only_b_loss(self, context, state, x, y) -> base.BatchLoss:
    return self.batch_loss(base.cross_entropy(y, context.model.only_b(x, training=True)),
                           base.CASE_ONLY_B)
