"""The client update against independent eager references (learning/client_update.py)."""

import collections
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import registry
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import client_update
from fedcmi_tff.learning import dataset_loops
from tests import tiny

Kind = modalities.ClientKind
FEDCMI = 'fedcmi'
FUSED = 'fedavg'


def _ce(y, logits):
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def _h(teacher, student, tau):
  p = tf.nn.softmax(tf.stop_gradient(teacher) / tau[:, None])
  return tf.reduce_mean(-tf.reduce_sum(p * tf.nn.log_softmax(student / tau[:, None]), -1))


def _mm(y, out):
  return _ce(y, out.fused) + 2 * _ce(y, out.self_a) + 2 * _ce(y, out.self_b)


OBJECTIVE = config_lib.ObjectiveConfig(distillation_weight=1.5, proximal_strength=0.3)
TRAINING = config_lib.LocalTrainingConfig(learning_rate=0.1, min_learning_rate=0.1,
                                          local_epochs=3, batch_size=64, weight_decay=1e-2)


class Built:
  """A model pair and its traced client update (tracing is the slow part: share it)."""

  def __init__(self, algorithm, objective=OBJECTIVE, loop=dataset_loops.DATASET_ITERATOR,
               training=TRAINING):
    tf.keras.utils.set_random_seed(1)
    self.model, self.teacher = tiny.model_fn(), tiny.model_fn()
    self.initial = tiny.weights_of(self.model)
    self.objective = registry.client_objective(algorithm, objective)
    self.fn = client_update.build_client_update_fn(
        self.model, self.teacher, self.objective, training,
        registry.proximal_strength(algorithm, objective), loop)

  def run(self, dataset, round_num, initial=None):
    return self.fn(initial or self.initial, dataset, tf.constant(round_num))


@pytest.fixture(scope='module')
def fedcmi():
  return Built(FEDCMI)


@pytest.fixture(scope='module')
def fused_only():
  return Built('fedprox', config_lib.ObjectiveConfig(proximal_strength=0.3))


@pytest.fixture(scope='module')
def models(fedcmi):
  return fedcmi.model, fedcmi.teacher


def _case_losses(model, teacher, data):
  x, y = data['x'], data['y']
  tau = tf.ones([len(y)])
  return {
      (FEDCMI, base.CASE_MULTIMODAL): lambda: _mm(y, model.multimodal(x, training=True)),
      (FEDCMI, base.CASE_A_TEACHES): lambda: (
          lambda o, t: _mm(y, o) + _h(t.self_a, o.infil_b, tau))(
              model.multimodal(x, training=True), teacher.multimodal(x)),
      (FEDCMI, base.CASE_B_TEACHES): lambda: (
          lambda o, t: _mm(y, o) + _h(t.self_b, o.infil_a, tau))(
              model.multimodal(x, training=True), teacher.multimodal(x)),
      (FEDCMI, base.CASE_ONLY_A): lambda: _ce(y, model.only_a(x, training=True)),
      (FEDCMI, base.CASE_ONLY_B): lambda: _ce(y, model.only_b(x, training=True)),
      (FUSED, base.CASE_MULTIMODAL): lambda: _ce(
          y, model.multimodal(x, training=True).fused),
      (FUSED, base.CASE_ONLY_A): lambda: _ce(y, model.zero_filled_a(x, training=True)),
      (FUSED, base.CASE_ONLY_B): lambda: _ce(y, model.zero_filled_b(x, training=True)),
  }


def test_activity_table_matches_which_parameters_get_a_gradient(models):
  model, teacher = models
  data = tiny.examples(4)
  roles = model.variable_roles()
  for (objective, case), loss_fn in _case_losses(model, teacher, data).items():
    with tf.GradientTape() as tape:
      loss = loss_fn()
    grads = tape.gradient(loss, model.trainable_variables)
    reached = {r for r, g in zip(roles, grads) if g is not None}
    assert reached == registry.client_objective(objective, OBJECTIVE).active_roles()[case], (
        objective, case)


def _reference_update(model, teacher, data, objective, training, round_num):
  """Eager re-implementation: PyTorch-style SGD, parameters without gradient skipped."""
  x, y = data['x'], data['y']
  w0 = [v.numpy() for v in model.trainable_variables]
  temps = np.ones(tiny.NUM_CLASSES, np.float32)
  warm = round_num >= objective.warmup_rounds
  if warm:
    out = model.multimodal(x, training=False)
    p_a = tf.gather(tf.nn.softmax(out.self_a), y, batch_dims=1).numpy()
    p_b = tf.gather(tf.nn.softmax(out.self_b), y, batch_dims=1).numpy()
    mean_a = np.array([p_a[y == c].mean() if (y == c).any() else 0.0
                       for c in range(tiny.NUM_CLASSES)])
    mean_b = np.array([p_b[y == c].mean() if (y == c).any() else 0.0
                       for c in range(tiny.NUM_CLASSES)])
    ratios = [mean_a[c] / mean_b[c] for c in range(tiny.NUM_CLASSES) if mean_b[c] > 0]
    average = np.mean(ratios)
    for c in range(tiny.NUM_CLASSES):
      if mean_b[c] == 0:
        continue
      r = mean_a[c] / mean_b[c] if average > 1 else mean_b[c] / mean_a[c]
      threshold = average if average > 1 else 1 / average
      temps[c] = 1 / (1 + 2.0 * math.log(r / threshold)) if r > threshold else 1.0
  momentum = [None] * len(w0)
  directions = []
  for _ in range(training.local_epochs):
    with tf.GradientTape() as tape:
      out = model.multimodal(x, training=True)
      loss = _ce(y, out.fused) + 2 * _ce(y, out.self_a) + 2 * _ce(y, out.self_b)
      if warm:
        s_a = tf.reduce_sum(tf.gather(tf.nn.softmax(out.self_a), y, batch_dims=1))
        s_b = tf.reduce_sum(tf.gather(tf.nn.softmax(out.self_b), y, batch_dims=1))
        target = teacher.multimodal(x, training=False)
        tau = tf.constant(temps[y])
        if float(s_a / s_b) > 1:
          directions.append('a')
          loss += objective.distillation_weight * _h(target.self_a, out.infil_b, tau)
        else:
          directions.append('b')
          loss += objective.distillation_weight * _h(target.self_b, out.infil_a, tau)
    grads = tape.gradient(loss, model.trainable_variables)
    for i, (v, g) in enumerate(zip(model.trainable_variables, grads)):
      if g is None:
        continue
      g = g.numpy() + training.weight_decay * v.numpy() + objective.proximal_strength * (
          v.numpy() - w0[i])
      momentum[i] = g if momentum[i] is None else training.momentum * momentum[i] + g
      v.assign(v.numpy() - training.learning_rate * momentum[i])
  return [v.numpy() for v in model.trainable_variables], \
      [v.numpy() for v in model.non_trainable_variables], directions


@pytest.mark.parametrize('round_num', [0, 1])
def test_multimodal_update_matches_eager_reference(fedcmi, round_num):
  reference, ref_teacher = tiny.model_fn(), tiny.model_fn()
  data = tiny.examples(12, seed=5)
  out = fedcmi.run(tf.data.Dataset.from_tensor_slices(data), round_num)

  initial = fedcmi.initial
  for m in (reference, ref_teacher):
    for v, w in zip(m.trainable_variables + m.non_trainable_variables, initial[0] + initial[1]):
      v.assign(w)
  ref_trainable, ref_non_trainable, directions = _reference_update(
      reference, ref_teacher, data, OBJECTIVE, TRAINING, round_num)
  got_trainable = [w - u.numpy() for w, u in zip(initial[0], out.update[0])]
  got_non_trainable = [w - u.numpy() for w, u in zip(initial[1], out.update[1])]
  for got, want in zip(got_trainable + got_non_trainable, ref_trainable + ref_non_trainable):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert out.metrics['a_teaches_batches'].numpy() == directions.count('a')
  assert out.metrics['b_teaches_batches'].numpy() == directions.count('b')
  assert out.metrics['num_batches'].numpy() == TRAINING.local_epochs
  assert out.metrics['temperature_clients'].numpy() == round_num
  np.testing.assert_allclose(out.group_weights.numpy(), [12, 12, 12])


def test_pre_pass_reports_the_global_self_heads_per_class_accuracy(fedcmi):
  data = tiny.examples(12, seed=6)
  out = fedcmi.run(tf.data.Dataset.from_tensor_slices(data), 1)
  reference = tiny.model_fn()
  for v, w in zip(reference.trainable_variables + reference.non_trainable_variables,
                  fedcmi.initial[0] + fedcmi.initial[1]):
    v.assign(w)
  heads = reference.multimodal(data['x'], training=False)
  y = np.asarray(data['y'])
  for head, key in ((heads.self_a, 'teacher_correct_a'), (heads.self_b, 'teacher_correct_b')):
    hit = np.argmax(head.numpy(), -1) == y
    want = [hit[y == c].sum() for c in range(tiny.NUM_CLASSES)]
    np.testing.assert_array_equal(out.metrics[key].numpy(), want)
  np.testing.assert_array_equal(out.metrics['teacher_class_count'].numpy(),
                                np.bincount(y, minlength=tiny.NUM_CLASSES))
  # Round 0 is the warm-up: no distillation, so nothing is reported.
  warm_up = fedcmi.run(tf.data.Dataset.from_tensor_slices(data), 0)
  assert warm_up.metrics['teacher_class_count'].numpy().sum() == 0


def test_confident_teacher_gate_of_one_distils_nothing():
  data = tf.data.Dataset.from_tensor_slices(tiny.examples(12, seed=5))
  gated = Built(FEDCMI, dataclasses.replace(OBJECTIVE, teacher_confidence_threshold=1.0))
  plain = Built(FEDCMI)
  assert plain.run(data, 1).metrics['distillation_loss_sum'].numpy() > 0
  out = gated.run(data, 1)
  assert out.metrics['distillation_loss_sum'].numpy() == 0
  assert out.metrics['a_teaches_batches'].numpy() + out.metrics['b_teaches_batches'].numpy() \
      == TRAINING.local_epochs


def _force_dominance(model, dominant_slot):
  """Head of the dominant slot predicts class 0 confidently, the other is uniform."""
  heads = (model.classifier_a, model.classifier_b)
  for slot, head in enumerate(heads):
    kernel, bias = head.kernel, head.bias
    kernel.assign(tf.zeros_like(kernel))
    bias.assign([8.0, 0.0, 0.0] if slot == dominant_slot else [0.0, 0.0, 0.0])


@pytest.mark.parametrize('dominant_slot,learner,idle', [(0, 'infil_b', 'infil_a'),
                                                        (1, 'infil_a', 'infil_b')])
def test_per_batch_direction_switch(fedcmi, dominant_slot, learner, idle):
  scratch = tiny.model_fn()
  for v, w in zip(scratch.trainable_variables + scratch.non_trainable_variables,
                  fedcmi.initial[0] + fedcmi.initial[1]):
    v.assign(w)
  _force_dominance(scratch, dominant_slot)
  out = fedcmi.run(tiny.dataset(8, labels=[0] * 8), 1, initial=tiny.weights_of(scratch))
  teaching = 'a_teaches_batches' if dominant_slot == 0 else 'b_teaches_batches'
  assert out.metrics[teaching].numpy() == TRAINING.local_epochs
  roles = fedcmi.model.variable_roles()
  moved = {r for r, u in zip(roles, out.update[0]) if np.any(u.numpy() != 0)}
  assert learner in moved and idle not in moved


@pytest.mark.parametrize('kind,absent_group', [(Kind.ONLY_A, 1), (Kind.ONLY_B, 0)])
@pytest.mark.parametrize('objective', [FEDCMI, FUSED])
def test_unimodal_client_leaves_absent_modality_and_its_statistics_untouched(
    fedcmi, fused_only, kind, absent_group, objective):
  built = fedcmi if objective == FEDCMI else fused_only
  out = built.run(tiny.dataset(10, kind), 3)
  trainable_groups, non_trainable_groups = built.model.variable_groups()
  roles = built.model.variable_roles()
  case = base.CASE_ONLY_A if kind == Kind.ONLY_A else base.CASE_ONLY_B
  for role, group, update in zip(roles, trainable_groups, out.update[0]):
    stepped = role in built.objective.active_roles()[case]
    assert np.any(update.numpy() != 0) == stepped, role
    if group == absent_group:
      assert not np.any(update.numpy())
  for group, update in zip(non_trainable_groups, out.update[1]):
    assert np.any(update.numpy() != 0) == (group != absent_group)
  expected_weights = [10, 0, 10] if kind == Kind.ONLY_A else [0, 10, 10]
  np.testing.assert_allclose(out.group_weights.numpy(), expected_weights)
  if objective == FEDCMI:
    assert out.metrics['temperature_clients'].numpy() == 0
  else:  # FedAvg's family reports no temperatures
    assert 'temperature_clients' not in out.metrics


def test_no_state_leaks_between_calls(fedcmi):
  data = tiny.dataset(9)
  first = fedcmi.run(data, 2)
  second = fedcmi.run(data, 2)
  for a, b in zip(tf.nest.flatten(first), tf.nest.flatten(second)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert first.metrics['temperature_clients'].numpy() == 1


def test_empty_client_returns_zero_update_and_weight(fedcmi):
  out = fedcmi.run(tiny.dataset(4).take(0), 1)
  assert all(not np.any(u.numpy()) for u in out.update[0] + out.update[1])
  np.testing.assert_array_equal(out.group_weights.numpy(), [0, 0, 0])


def test_non_finite_update_is_zeroed_with_zero_weight_and_counted(fused_only):
  """A client whose training produces NaN sends a zero update with zero weight (so the
  group mean ignores it) and is counted, as TFF's own client works do."""
  def poison(e):
    x = collections.OrderedDict(e['x'])
    x[tiny.NAMES[0]] = x[tiny.NAMES[0]] * float('nan')
    return collections.OrderedDict(x=x, y=e['y'])
  bad = fused_only.run(tiny.dataset(9).map(poison), 1)
  assert all(not np.any(u.numpy()) for u in bad.update[0] + bad.update[1])
  np.testing.assert_array_equal(bad.group_weights.numpy(), [0, 0, 0])
  assert bad.metrics['non_finite_clients'].numpy() == 1.0
  # Its NaN sums do not reach the round's totals; it still counts as a client.
  assert bad.metrics['loss_sum'].numpy() == 0.0 and bad.metrics['clients'].numpy() == 1.0
  good = fused_only.run(tiny.dataset(9), 1)
  assert good.metrics['non_finite_clients'].numpy() == 0.0
  np.testing.assert_array_equal(good.group_weights.numpy(), [9, 9, 9])


def _op_types(concrete_function) -> set:
  graph_def = concrete_function.graph.as_graph_def()
  ops = {n.op for n in graph_def.node}
  for function in graph_def.library.function:
    ops.update(n.op for n in function.node_def)
  return ops


_MIXED_KINDS = [(Kind.MULTIMODAL, 20, 1), (Kind.ONLY_A, 7, 2), (Kind.ONLY_B, 9, 3)]


@pytest.mark.parametrize('algorithm', ['fedcmi', 'fedavg_pmr', 'fedavg_ogm_ge'])
def test_iterator_loops_give_the_reduce_loops_results_without_a_dataset_reduce(algorithm):
  """The iterator-loop update (the default) equals the tf.data-reduce one on every client
  kind and round: weights bit for bit, the summed metrics to float32 rounding (the loss
  sum once differed in its last bit).  Its graph holds no ReduceDataset op."""
  training = dataclasses.replace(TRAINING, batch_size=8, local_epochs=2)
  iterator = Built(algorithm, OBJECTIVE, dataset_loops.DATASET_ITERATOR, training)
  reduce = Built(algorithm, OBJECTIVE, dataset_loops.DATASET_REDUCE, training)
  for kind, n, seed in _MIXED_KINDS:
    for round_num in (0, 2):
      data = tiny.dataset(n, kind, seed=seed)
      got = iterator.run(data, round_num, initial=iterator.initial)
      want = reduce.run(data, round_num, initial=iterator.initial)
      for a, b in zip(tf.nest.flatten((got.update, got.group_weights)),
                      tf.nest.flatten((want.update, want.group_weights))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
      for name, value in got.metrics.items():
        np.testing.assert_allclose(value.numpy(), want.metrics[name].numpy(), rtol=1e-6,
                                   err_msg=name)
  signature = (iterator.initial, tiny.dataset(4), tf.constant(0))
  assert 'ReduceDataset' not in _op_types(iterator.fn.get_concrete_function(*signature))
  assert 'ReduceDataset' in _op_types(reduce.fn.get_concrete_function(*signature))
