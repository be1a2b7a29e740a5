"""TFF wiring: type signatures, masked group aggregation, and TFF's own builders."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry
from fedcmi_tff.data import client_data
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import aggregators
from fedcmi_tff.learning import processes
from fedcmi_tff.learning import tff_model
from tests import tiny

Kind = modalities.ClientKind
TRAINING = config_lib.LocalTrainingConfig(local_epochs=1, batch_size=16, learning_rate=0.05)
ELEMENT_SPEC = tiny.dataset(1).element_spec


@pytest.fixture(scope='module')
def fedcmi_process():
  return processes.build_fedcmi(tiny.model_fn, ELEMENT_SPEC, training=TRAINING)


def test_process_type_signature(fedcmi_process):
  weights_type = processes.weights_type_of(tiny.model_fn)
  element_type = tff.types.tensorflow_to_type(ELEMENT_SPEC)
  next_type = fedcmi_process.next.type_signature
  state_type = fedcmi_process.initialize.type_signature.result
  next_type.parameter[0].check_equivalent_to(state_type)
  next_type.parameter[1].check_equivalent_to(
      tff.FederatedType(tff.SequenceType(element_type), tff.CLIENTS))
  next_type.result.state.check_equivalent_to(state_type)
  assert next_type.result.metrics.placement is tff.SERVER
  state_type.member.global_model_weights.check_equivalent_to(weights_type)
  state_type.member.client_work.check_equivalent_to(tff.TensorType(np.int32))
  # FedAvg trains the same state on the same data; only its client metrics differ.
  fedavg = processes.build_fedavg(tiny.model_fn, ELEMENT_SPEC, training=TRAINING)
  fedavg.next.type_signature.parameter.check_equivalent_to(next_type.parameter)
  train_metrics = next_type.result.metrics.member.client_work.train
  assert 'distillation_loss_sum' in dir(train_metrics)
  assert 'distillation_loss_sum' not in dir(
      fedavg.next.type_signature.result.metrics.member.client_work.train)


def test_model_structure_matches_the_models_weights():
  groups, weights_type, non_negative = processes.model_structure(tiny.model_fn)
  with tf.Graph().as_default():
    model = tiny.model_fn()
    assert groups == model.variable_groups()
    trainable = [(v.shape.as_list(), v.dtype.as_numpy_dtype) for v in model.trainable_variables]
    non_trainable = [(v.shape.as_list(), v.dtype.as_numpy_dtype)
                     for v in model.non_trainable_variables]
  assert [(list(t.shape), t.dtype) for t in weights_type[0]] == trainable
  assert [(list(t.shape), t.dtype) for t in weights_type[1]] == non_trainable
  trainable_groups, non_trainable_groups = groups
  assert len(trainable_groups) == len(trainable)
  assert len(non_trainable_groups) == len(non_trainable) == len(non_negative)


def test_client_work_and_aggregator_types():
  weights_type = processes.weights_type_of(tiny.model_fn)
  objective = registry.client_objective('fedcmi', config_lib.ObjectiveConfig())
  work = processes.build_multimodal_client_work(tiny.model_fn, ELEMENT_SPEC, objective, TRAINING)
  result = work.next.type_signature.result.result
  assert result.placement is tff.CLIENTS
  result.member.update.check_equivalent_to(weights_type)
  result.member.update_weight.check_equivalent_to(tff.TensorType(np.float32, [3]))
  work.next.type_signature.parameter[0].check_equivalent_to(
      tff.FederatedType(tff.TensorType(np.int32), tff.SERVER))
  aggregator = aggregators.GroupMeanFactory(processes.variable_groups_of(tiny.model_fn)).create(
      weights_type, aggregators.GROUP_WEIGHT_TYPE)
  assert aggregator.is_weighted
  aggregator.next.type_signature.result.result.check_equivalent_to(
      tff.FederatedType(weights_type, tff.SERVER))


def test_group_mean_aggregation_golden_and_empty_group():
  weights = tff.learning.models.ModelWeights(
      trainable=[np.zeros(2, np.float32)] * 3, non_trainable=[np.zeros(1, np.float32)])
  weights_type = tff.types.tensorflow_to_type(tf.nest.map_structure(
      lambda a: tf.TensorSpec(a.shape, tf.float32), weights))
  aggregator = aggregators.GroupMeanFactory(([0, 1, 2], [1])).create(
      weights_type, aggregators.GROUP_WEIGHT_TYPE)

  def value(x):
    return tff.learning.models.ModelWeights(
        trainable=[np.full(2, x, np.float32), np.full(2, 10 * x, np.float32),
                   np.full(2, 100 * x, np.float32)],
        non_trainable=[np.full(1, -x, np.float32)])

  state = aggregator.initialize()
  # A multimodal client (n=2, value 1), an a-only client (n=3, value 2), a b-only (n=1, value 3).
  out = aggregator.next(state, [value(1.0), value(2.0), value(3.0)],
                        [np.array(w, np.float32) for w in ([2, 2, 2], [3, 0, 3], [0, 1, 1])])
  mean = out.result
  np.testing.assert_allclose(mean.trainable[0], [(2 * 1 + 3 * 2) / 5] * 2, rtol=1e-6)
  np.testing.assert_allclose(mean.trainable[1], [10 * (2 * 1 + 1 * 3) / 3] * 2, rtol=1e-6)
  np.testing.assert_allclose(mean.trainable[2], [100 * (2 * 1 + 3 * 2 + 1 * 3) / 6] * 2,
                             rtol=1e-6)
  np.testing.assert_allclose(mean.non_trainable[0], [-(2 * 1 + 1 * 3) / 3], rtol=1e-6)
  np.testing.assert_allclose(out.measurements['group_weight_totals'], [5, 3, 6])
  # No client holds slot b: its mean delta is exactly zero (not NaN).
  out = aggregator.next(state, [value(2.0)], [np.array([3, 0, 3], np.float32)])
  np.testing.assert_array_equal(out.result.trainable[1], [0.0, 0.0])
  np.testing.assert_array_equal(out.result.non_trainable[0], [0.0])
  np.testing.assert_allclose(out.result.trainable[0], [2.0, 2.0])


def _small_weights_type():
  weights = tff.learning.models.ModelWeights(
      trainable=[np.zeros(2, np.float32)] * 3, non_trainable=[np.zeros(1, np.float32)])
  return tff.types.tensorflow_to_type(tf.nest.map_structure(
      lambda a: tf.TensorSpec(a.shape, tf.float32), weights))


def test_group_mean_factory_composes_with_tff_factories_and_checks_its_weight():
  weights_type = _small_weights_type()
  plain = aggregators.GroupMeanFactory(([0, 1, 2], [1])).create(
      weights_type, aggregators.GROUP_WEIGHT_TYPE)
  # TFF's clipping factory wraps a weighted factory; with a norm far above every update
  # it must give the plain group mean.
  clipped = tff.aggregators.clipping_factory(1e6, aggregators.GroupMeanFactory(
      ([0, 1, 2], [1]))).create(weights_type, aggregators.GROUP_WEIGHT_TYPE)
  values = [tff.learning.models.ModelWeights(
      trainable=[np.full(2, x, np.float32), np.full(2, -x, np.float32),
                 np.full(2, 2 * x, np.float32)], non_trainable=[np.full(1, x, np.float32)])
            for x in (1.0, 4.0)]
  group_weights = [np.array([1, 0, 1], np.float32), np.array([3, 2, 5], np.float32)]
  a = plain.next(plain.initialize(), values, group_weights).result
  b = clipped.next(clipped.initialize(), values, group_weights).result
  for x, y in zip(a.trainable + a.non_trainable, b.trainable + b.non_trainable):
    np.testing.assert_allclose(x, y, rtol=1e-6)
  np.testing.assert_allclose(a.trainable[0], [(1 + 12) / 4] * 2, rtol=1e-6)
  with pytest.raises(TypeError, match=r'float32\[3\] weights'):
    aggregators.GroupMeanFactory(([0, 1, 2], [1])).create(
        weights_type, tff.TensorType(np.float32))


def test_server_momentum_is_fedavgm_and_the_default_is_w_minus_delta():
  weights_type = _small_weights_type()
  rng = np.random.default_rng(0)
  w0 = tff.learning.models.ModelWeights(
      trainable=[rng.normal(size=2).astype(np.float32) for _ in range(3)],
      non_trainable=[rng.normal(size=1).astype(np.float32)])
  deltas = [tff.learning.models.ModelWeights(
      trainable=[rng.normal(size=2).astype(np.float32) for _ in range(3)],
      non_trainable=[rng.normal(size=1).astype(np.float32)]) for _ in range(2)]
  for momentum in (0.0, 0.9):
    finalizer = aggregators.build_server_update_finalizer(
        weights_type, processes.server_optimizer_for(config_lib.ServerConfig(
            learning_rate=0.5, momentum=momentum)))
    state, weights = finalizer.initialize(), w0
    for delta in deltas:
      out = finalizer.next(state, weights, delta)
      state, weights = out.state, out.result
    # Reference: m1 = d1, w1 = w0 - lr m1; m2 = momentum m1 + d2, w2 = w1 - lr m2.
    for i in range(3):
      d1, d2 = deltas[0].trainable[i], deltas[1].trainable[i]
      expected = w0.trainable[i] - 0.5 * d1 - 0.5 * (momentum * d1 + d2)
      np.testing.assert_allclose(weights.trainable[i], expected, rtol=1e-5)
    # Batch-norm statistics are not optimised: w - delta each round.
    np.testing.assert_allclose(
        weights.non_trainable[0],
        w0.non_trainable[0] - deltas[0].non_trainable[0] - deltas[1].non_trainable[0],
        rtol=1e-5)


def test_finalizer_clips_only_the_marked_statistics_at_zero():
  weights_type = tff.types.tensorflow_to_type(tff.learning.models.ModelWeights(
      trainable=[tf.TensorSpec([1], tf.float32)],
      non_trainable=[tf.TensorSpec([2], tf.float32), tf.TensorSpec([2], tf.float32)]))
  w = tff.learning.models.ModelWeights(
      trainable=[np.array([1.0], np.float32)],
      non_trainable=[np.array([0.5, 0.1], np.float32), np.array([0.5, 0.1], np.float32)])
  delta = tff.learning.models.ModelWeights(
      trainable=[np.array([2.0], np.float32)],
      non_trainable=[np.array([0.25, 0.3], np.float32), np.array([0.25, 0.3], np.float32)])
  finalizer = aggregators.build_server_update_finalizer(
      weights_type, processes.default_server_optimizer(), non_negative=(False, True))
  out = finalizer.next(finalizer.initialize(), w, delta).result
  np.testing.assert_allclose(out.trainable[0], [-1.0])  # trainable: not clipped
  np.testing.assert_allclose(out.non_trainable[0], [0.25, -0.2], rtol=1e-6)
  np.testing.assert_allclose(out.non_trainable[1], [0.25, 0.0], rtol=1e-6)
  with pytest.raises(ValueError, match='non_negative has 1 entries for 2 non-trainable'):
    aggregators.build_server_update_finalizer(
        weights_type, processes.default_server_optimizer(), non_negative=(True,))


def test_the_moving_variances_are_the_non_negative_statistics():
  model_fn = tiny.model_fn
  with tf.Graph().as_default():
    names = [v.name for v in model_fn().non_trainable_variables]
  marks = processes.model_structure(model_fn).non_negative
  assert len(marks) == len(names) and any(marks)
  assert [n for n, m in zip(names, marks) if m] == [n for n in names if 'moving_variance' in n]
  assert all('moving_mean' in n for n, m in zip(names, marks) if not m)


def _tiny_clients():
  splits = tiny.small_synthetic()
  return client_data.build_federated_splits(splits, num_clients=4, dirichlet_alpha=1.0,
                                            multi_ratio=0.5, seed=0).client_data


def test_round_without_slot_b_keeps_slot_b_weights_and_statistics(fedcmi_process):
  cd = _tiny_clients()
  only_a = [c for c in cd.client_ids if cd.kind(c) == Kind.ONLY_A]
  state = fedcmi_process.initialize()
  before = fedcmi_process.get_model_weights(state)
  out = fedcmi_process.next(state, [cd.create_tf_dataset_for_client(c) for c in only_a])
  after = fedcmi_process.get_model_weights(out.state)
  trainable_groups, non_trainable_groups = processes.variable_groups_of(tiny.model_fn)
  for group, b, a in zip(trainable_groups + non_trainable_groups,
                         before.trainable + before.non_trainable,
                         after.trainable + after.non_trainable):
    assert np.all(np.isfinite(a))
    if group == 1:
      np.testing.assert_array_equal(a, b)
  assert any(np.any(a != b) for g, a, b in zip(trainable_groups, after.trainable,
                                               before.trainable) if g == 0)
  totals = out.metrics['aggregator']['group_weight_totals']
  assert totals[1] == 0 and totals[0] == totals[2] > 0
  assert out.state.client_work == 1


def test_tff_builtin_builders_run_on_the_wrapped_model():
  cd = _tiny_clients()
  model_fn = tff_model.build_tff_model_fn(tiny.model_fn, cd.element_type_structure)
  batched = [cd.create_tf_dataset_for_client(c).batch(16) for c in cd.client_ids]
  fed_avg = tff.learning.algorithms.build_weighted_fed_avg(
      model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.05))
  state = fed_avg.initialize()
  out = fed_avg.next(state, batched)
  train = out.metrics['client_work']['train']
  assert train['num_examples'] == 240 and np.isfinite(train['loss'])
  evaluation = tff.learning.algorithms.build_fed_eval(model_fn)
  eval_state = evaluation.set_model_weights(evaluation.initialize(),
                                            fed_avg.get_model_weights(out.state))
  eval_out = evaluation.next(eval_state, batched)
  assert 0.0 <= eval_out.metrics['client_work']['eval']['current_round_metrics'][
      'sparse_categorical_accuracy'] <= 1.0
  fed_prox = tff.learning.algorithms.build_weighted_fed_prox(
      model_fn, proximal_strength=0.01,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.05))
  assert np.isfinite(fed_prox.next(fed_prox.initialize(), batched[:2]).metrics[
      'client_work']['train']['loss'])
