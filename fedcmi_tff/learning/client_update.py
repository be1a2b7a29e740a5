"""FedCMI's local training on one client, as a pure TensorFlow function.

No TFF here: `build_client_update_fn` returns a `tf.function` that the TFF
wiring (`processes.py`) calls inside a `tff.tensorflow.computation`, and that
unit tests call directly.  It implements docs/algorithm.md, 'Client update':

* weights and a frozen teacher copy are loaded from the global model;
* on multimodal clients, after the warm-up, a class-wise temperature table is
  computed once from the local data with the model in eval mode;
* each batch: the multimodal loss CE(fused) + beta (CE(self_a) + CE(self_b))
  + lambda * L_inf (direction chosen per batch by rho = s_a / s_b), or the
  unimodal loss CE(F([z_aa ; z_ab])) / CE(F([z_ba ; z_bb]));
* SGD with momentum and coupled L2 weight decay, fresh momentum each round,
  plus the proximal gradient mu (w - w_global); like PyTorch, a parameter the
  batch's loss does not reach is not stepped at all (no decay, no momentum).

The fused-only objective (FedAvg / FedProx) shares everything but the loss:
CE(fused) on multimodal clients and CE on the zero-filled path on unimodal ones.
With `objective.modulation` it becomes FedAvg + OGM-GE or FedAvg + PMR: the
centralised modality-imbalance method runs on multimodal clients inside their
local training (losses/modulation.py), as in the FedCMI authors' baselines.

Every pass over the local data (counting, the eval-mode pre-passes, training) is
an iterator loop by default (see `dataset_loops.py`); the tf.data reduce form is
kept behind `loop=` for measurements (benchmarks/round_time.py).
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.data import augment
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import dataset_loops
from fedcmi_tff.losses import distillation
from fedcmi_tff.losses import modulation as modulation_lib
from fedcmi_tff.losses import proximal
from fedcmi_tff.losses import schedule
from fedcmi_tff.models import fedcmi_model

# What a batch's loss is, for the per-parameter "received a gradient" table.
CASE_MULTIMODAL = 0  # multimodal batch without infiltration (warm-up, or fused-only)
CASE_A_TEACHES = 1  # multimodal batch in which slot a dominates: b's infiltration learns
CASE_B_TEACHES = 2  # multimodal batch in which slot b dominates: a's infiltration learns
CASE_ONLY_A = 3
CASE_ONLY_B = 4
NUM_CASES = 5

_MULTIMODAL_ROLES = {'encoder_a', 'self_a', 'head_a', 'encoder_b', 'self_b', 'head_b', 'fusion'}
_FEDCMI_ACTIVE = {
    CASE_MULTIMODAL: _MULTIMODAL_ROLES,
    CASE_A_TEACHES: _MULTIMODAL_ROLES | {'infil_b'},
    CASE_B_TEACHES: _MULTIMODAL_ROLES | {'infil_a'},
    CASE_ONLY_A: {'encoder_a', 'self_a', 'infil_a', 'fusion'},
    CASE_ONLY_B: {'encoder_b', 'self_b', 'infil_b', 'fusion'},
}
_FUSED_ONLY_MULTIMODAL = {'encoder_a', 'self_a', 'encoder_b', 'self_b', 'fusion'}
_FUSED_ONLY_ACTIVE = {
    CASE_MULTIMODAL: _FUSED_ONLY_MULTIMODAL,
    CASE_A_TEACHES: _FUSED_ONLY_MULTIMODAL,
    CASE_B_TEACHES: _FUSED_ONLY_MULTIMODAL,
    CASE_ONLY_A: {'encoder_a', 'self_a', 'fusion'},
    CASE_ONLY_B: {'encoder_b', 'self_b', 'fusion'},
}


def active_roles(objective: config_lib.Objective) -> dict:
  """Roles whose parameters receive a gradient, for each case of `objective`."""
  return _FEDCMI_ACTIVE if objective is config_lib.Objective.FEDCMI else _FUSED_ONLY_ACTIVE


def activity_matrix(objective: config_lib.Objective, roles: list) -> np.ndarray:
  """[NUM_CASES, len(roles)] float32: 1 where that variable is stepped in that case."""
  table = active_roles(objective)
  return np.array([[1.0 if r in table[c] else 0.0 for r in roles] for c in range(NUM_CASES)],
                  np.float32)


class ClientOutput(NamedTuple):
  """What one client sends back.

  Attributes:
    update: (trainable, non_trainable) lists of initial - trained values (the sign
      TFF's finalizers expect).
    group_weights: float32 [3] = (n * has_a, n * has_b, n): the client's aggregation
      weight for slot a's group, slot b's group and the fusion layer.
    metrics: OrderedDict of sums, added up over clients by the server.
  """

  update: tuple
  group_weights: tf.Tensor
  metrics: collections.OrderedDict


def client_kind_of_batch(modality_mask: tf.Tensor) -> tf.Tensor:
  """ClientKind (int32) from a batch's [B, 2] modality mask (all rows agree)."""
  has_a = modality_mask[0, 0] > 0
  has_b = modality_mask[0, 1] > 0
  return tf.where(has_a & has_b, int(modalities.ClientKind.MULTIMODAL),
                  tf.where(has_a, int(modalities.ClientKind.ONLY_A),
                           int(modalities.ClientKind.ONLY_B)))


def _cross_entropy(labels, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.int32), logits=logits))


def build_client_update_fn(model: fedcmi_model.DecomposedModel,
                           teacher: fedcmi_model.DecomposedModel | None,
                           objective: config_lib.ObjectiveConfig,
                           training: config_lib.LocalTrainingConfig,
                           loop: dataset_loops.LoopImplementation = (
                               dataset_loops.DATASET_ITERATOR)):
  """Returns `client_update(initial_weights, dataset, round_num) -> ClientOutput`.

  Args:
    model: the local model; its variables are overwritten on every call.
    teacher: a second instance holding the global weights, run in eval mode; needed
      only when `objective.uses_infiltration`.
    objective: the client loss.
    training: optimiser, schedule, local epochs and batch size.
    loop: how the passes over the local data iterate (results do not depend on it).

  The dataset holds single examples {x: {name_a, name_b, modality_mask}, y};
  the function shuffles (seeded by the round), batches and repeats it itself.
  """
  objective.validate()
  training.validate()
  if objective.uses_infiltration and teacher is None:
    raise ValueError('the infiltration loss needs a teacher model')
  num_classes = model.num_classes
  variables = model.trainable_variables
  roles = model.variable_roles()
  activity = tf.constant(activity_matrix(objective.objective, roles))
  momenta = [tf.Variable(tf.zeros_like(v), trainable=False, name='momentum')
             for v in variables]
  fedcmi = objective.objective is config_lib.Objective.FEDCMI
  class_wise = objective.temperature_mode is config_lib.TemperatureMode.CLASS_WISE
  ogm = objective.modulation is config_lib.Modulation.OGM_GE
  pmr = objective.modulation is config_lib.Modulation.PMR
  # OGM-GE modulates the convolution kernels of each encoder.
  ogm_slot = [0 if (r == 'encoder_a' and len(v.shape) == 4) else
              1 if (r == 'encoder_b' and len(v.shape) == 4) else -1
              for r, v in zip(roles, variables)]
  feature_dim = model.feature_dim
  no_modulation = (tf.constant(1.0), tf.constant(1.0), tf.constant(False))

  def eval_pass(batches, initial, batch_sums):
    """Adds batch_sums(outputs, labels) over one eval-mode pass of the local data."""

    def accumulate(sums, batch):
      part = batch_sums(model.multimodal(batch['x'], training=False), batch['y'])
      return tf.nest.map_structure(tf.add, sums, part)

    return dataset_loops.fold(batches, initial, accumulate, loop)

  def class_temperatures(batches):
    """Class-wise temperature tables (FedCMI)."""
    zeros = tf.zeros([num_classes])
    sums = eval_pass(batches, distillation.ClassProbabilitySums(zeros, zeros, zeros),
                     lambda out, y: distillation.class_probability_sums(
                         out.self_a, out.self_b, y, num_classes))
    return distillation.class_wise_temperatures(
        tf.math.divide_no_nan(sums.sum_a, sums.count),
        tf.math.divide_no_nan(sums.sum_b, sums.count), objective.temperature_sharpness)

  def class_prototypes(batches):
    """Per-class mean encoder features of each modality (PMR)."""
    zeros = tf.zeros([num_classes, feature_dim])
    sums = eval_pass(batches, modulation_lib.PrototypeSums(zeros, zeros,
                                                           tf.zeros([num_classes])),
                     lambda out, y: modulation_lib.prototype_sums(
                         out.feature_a, out.feature_b, y, num_classes))
    return modulation_lib.prototypes_from_sums(sums)

  def multimodal_loss(x, y, warm, temps, modulating, prototypes):
    out = model.multimodal(x, training=True)
    if not fedcmi:
      loss = _cross_entropy(y, out.fused)
      if ogm:
        k_a, k_b = modulation_lib.ogm_coefficients(
            out.embedding_a, out.embedding_b, model.fusion.kernel, model.fusion.bias, y,
            objective.modulation_strength)
        return loss, tf.constant(0.0), CASE_MULTIMODAL, (k_a, k_b, modulating)
      if pmr:
        logits_a = modulation_lib.prototype_logits(out.feature_a, prototypes[0])
        logits_b = modulation_lib.prototype_logits(out.feature_b, prototypes[1])
        beta_a, beta_b = modulation_lib.pmr_coefficients(logits_a, logits_b, y,
                                                         objective.modulation_strength)
        prototype_loss = (beta_a * _cross_entropy(y, logits_a) +
                          beta_b * _cross_entropy(y, logits_b))
        loss += tf.where(modulating, prototype_loss, 0.0)
      return loss, tf.constant(0.0), CASE_MULTIMODAL, no_modulation
    loss = (_cross_entropy(y, out.fused) +
            objective.self_head_weight * (_cross_entropy(y, out.self_a) +
                                          _cross_entropy(y, out.self_b)))
    if not objective.uses_infiltration:
      return loss, tf.constant(0.0), CASE_MULTIMODAL, no_modulation

    def infiltration():
      target = teacher.multimodal(x, training=False)
      a_dominant = distillation.dominance_ratio(out.self_a, out.self_b, y) > 1.0
      if objective.direction_consistent_temperature:
        table = tf.where(a_dominant, temps.a_dominant, temps.b_dominant)
      else:
        table = temps.client_direction
      tau = tf.gather(table, tf.cast(y, tf.int32))
      # a dominates: the global a-self logits teach b's infiltration logits C_b(z_ba).
      a_teaches = distillation.soft_target_cross_entropy(target.self_a, out.infil_b, tau)
      b_teaches = distillation.soft_target_cross_entropy(target.self_b, out.infil_a, tau)
      return (tf.where(a_dominant, a_teaches, b_teaches),
              tf.where(a_dominant, CASE_A_TEACHES, CASE_B_TEACHES))

    inf_loss, case = tf.cond(warm, infiltration,
                             lambda: (tf.constant(0.0), tf.constant(CASE_MULTIMODAL)))
    return loss + objective.distillation_weight * inf_loss, inf_loss, case, no_modulation

  def only_a_loss(x, y):
    logits = model.only_a(x, training=True) if fedcmi else model.zero_filled_a(x, training=True)
    return _cross_entropy(y, logits), tf.constant(0.0), CASE_ONLY_A, no_modulation

  def only_b_loss(x, y):
    logits = model.only_b(x, training=True) if fedcmi else model.zero_filled_b(x, training=True)
    return _cross_entropy(y, logits), tf.constant(0.0), CASE_ONLY_B, no_modulation

  @tf.function
  def client_update(initial_weights, dataset, round_num):
    initial_trainable, initial_non_trainable = initial_weights
    for v, w in zip(model.trainable_variables, initial_trainable):
      v.assign(w)
    for v, w in zip(model.non_trainable_variables, initial_non_trainable):
      v.assign(w)
    if teacher is not None:
      for v, w in zip(teacher.trainable_variables, initial_trainable):
        v.assign(w)
      for v, w in zip(teacher.non_trainable_variables, initial_non_trainable):
        v.assign(w)
    for m in momenta:
      m.assign(tf.zeros_like(m))

    round_num = tf.cast(round_num, tf.int32)
    counts = dataset_loops.fold(
        dataset, tf.zeros([3]),
        lambda acc, e: acc + tf.concat([tf.cast(e['x'][modalities.MODALITY_MASK_KEY],
                                                tf.float32), [1.0]], 0), loop)
    num_examples = counts[2]
    is_multimodal = (counts[0] > 0) & (counts[1] > 0)
    warm = round_num >= objective.warmup_rounds
    batches = dataset.batch(training.batch_size)
    ones = tf.ones([num_classes])
    if objective.uses_infiltration and class_wise:
      temps = tf.cond(is_multimodal & warm, lambda: class_temperatures(batches),
                      lambda: distillation.ClassTemperatures(ones, ones, ones, tf.constant(1.0)))
    else:
      temps = distillation.ClassTemperatures(ones, ones, ones, tf.constant(1.0))
    modulating = ((round_num >= objective.modulation_start_round) &
                  (round_num <= objective.modulation_end_round) & is_multimodal)
    no_prototypes = tf.zeros([num_classes, feature_dim])
    if pmr:
      prototypes = tf.cond(modulating, lambda: class_prototypes(batches),
                           lambda: (no_prototypes, no_prototypes))
    else:
      prototypes = (no_prototypes, no_prototypes)

    learning_rate = schedule.learning_rate_for_round(
        round_num, training.learning_rate, training.min_learning_rate,
        training.constant_lr_rounds, training.total_rounds)
    buffer_size = tf.maximum(tf.cast(num_examples, tf.int64), 1)
    if training.shuffle_buffer_size:
      buffer_size = tf.minimum(buffer_size, training.shuffle_buffer_size)
    shuffled = dataset.shuffle(
        buffer_size,
        seed=tf.cast(round_num, tf.int64), reshuffle_each_iteration=True)
    epochs = shuffled.batch(training.batch_size).repeat(training.local_epochs)

    totals = collections.OrderedDict(
        loss_sum=tf.constant(0.0), distillation_loss_sum=tf.constant(0.0),
        num_batches=tf.constant(0.0), examples_seen=tf.constant(0.0),
        a_teaches_batches=tf.constant(0.0), b_teaches_batches=tf.constant(0.0))
    for batch in (iter(epochs) if loop is dataset_loops.DATASET_ITERATOR else epochs):
      x, y = batch['x'], batch['y']
      step = tf.cast(totals['num_batches'], tf.int32)
      # Training-time augmentation, seeded by (round, step); the teacher sees the same batch.
      x = augment.augment_inputs(x, training.augmentation,
                                 tf.stack([round_num * 1_000_003 + step, -1]))
      kind = client_kind_of_batch(x[modalities.MODALITY_MASK_KEY])
      with tf.GradientTape() as tape:
        loss, inf_loss, case, (k_a, k_b, modulate) = tf.switch_case(kind, [
            lambda: multimodal_loss(x, y, warm, temps, modulating, prototypes),
            lambda: only_a_loss(x, y),
            lambda: only_b_loss(x, y)])
      grads = tape.gradient(loss, variables)
      stepped = tf.unstack(tf.gather(activity, case))
      for i, (v, g, m, w0, on) in enumerate(zip(variables, grads, momenta, initial_trainable,
                                                stepped)):
        g = tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
        if ogm and ogm_slot[i] >= 0:
          seed = tf.stack([round_num * 1_000_003 + step, i])
          k = k_a if ogm_slot[i] == 0 else k_b
          g = tf.cond(modulate, lambda g=g, k=k, seed=seed: modulation_lib.modulated_gradient(
              g, k, seed), lambda g=g: g)
        g = g + training.weight_decay * v
        if objective.proximal_strength > 0:
          g = g + proximal.proximal_gradient(v, w0, objective.proximal_strength)
        new_m = training.momentum * m + g
        m.assign(on * new_m + (1.0 - on) * m)
        v.assign_sub(on * learning_rate * new_m)
      totals['loss_sum'] += loss
      totals['distillation_loss_sum'] += inf_loss
      totals['num_batches'] += 1.0
      totals['examples_seen'] += tf.cast(tf.shape(y)[0], tf.float32)
      totals['a_teaches_batches'] += tf.cast(tf.equal(case, CASE_A_TEACHES), tf.float32)
      totals['b_teaches_batches'] += tf.cast(tf.equal(case, CASE_B_TEACHES), tf.float32)

    update = ([w0 - v for w0, v in zip(initial_trainable, model.trainable_variables)],
              [w0 - v for w0, v in zip(initial_non_trainable, model.non_trainable_variables)])
    used_temps = tf.cast(is_multimodal & warm, tf.float32)
    metrics = collections.OrderedDict(totals)
    metrics['proximal_term'] = proximal.proximal_term(
        model.trainable_variables, initial_trainable, max(objective.proximal_strength, 0.0))
    metrics['clients'] = tf.constant(1.0)
    metrics['multimodal_clients'] = tf.cast(is_multimodal, tf.float32)
    metrics['temperature_clients'] = used_temps
    metrics['class_temperature_sum'] = used_temps * temps.client_direction
    group_weights = tf.stack([counts[0], counts[1], num_examples])
    return ClientOutput(update, group_weights, metrics)

  return client_update
