"""FedCMI and FedAvg as TFF learning processes.

The process is composed from TFF's learning templates, the way TFF's own
algorithms are (`tff.learning.templates.compose_learning_process`):

  distributor   `build_broadcast_process`: the global weights go to every client
  client work   `build_multimodal_client_work`: `client_update.py` per client; the
                round number, kept as client-work state, is broadcast with it
  aggregator    `build_group_mean_aggregator`: modality-masked mean of the deltas,
                one weight per group and client (a [3] "update weight")
  finalizer     `build_delta_finalizer`: w <- w - mean delta, for trainable and
                non-trainable (batch-norm) weights alike

Type signature of `next`:
  (<state@SERVER, {<x=<a, b, modality_mask>, y>*}@CLIENTS> -> <state@SERVER, metrics@SERVER>)

A group no sampled client holds gets a zero mean delta: its weights, including
batch-norm statistics, keep their previous values (no NaN from a zero weight).
"""

from __future__ import annotations

import collections
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff.learning import aggregation
from fedcmi_tff.learning import client_update as client_update_lib
from fedcmi_tff.learning import dataset_loops

ModelWeights = tff.learning.models.ModelWeights


def _weights_of(model) -> ModelWeights:
  return ModelWeights(trainable=list(model.trainable_variables),
                      non_trainable=list(model.non_trainable_variables))


def weights_type_of(model_fn: Callable) -> tff.types.Type:
  """TFF type of a model's (trainable, non_trainable) weights."""
  with tf.Graph().as_default():
    model = model_fn()
    specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype), _weights_of(model))
  return tff.types.tensorflow_to_type(specs)


def variable_groups_of(model_fn: Callable) -> tuple:
  with tf.Graph().as_default():
    return model_fn().variable_groups()


def build_multimodal_client_work(model_fn: Callable, element_spec,
                                 objective: config_lib.ObjectiveConfig,
                                 training: config_lib.LocalTrainingConfig,
                                 loop: dataset_loops.LoopImplementation = (
                                     dataset_loops.DATASET_ITERATOR)
                                 ) -> tff.learning.templates.ClientWorkProcess:
  """Client work whose state is the round number.

  `loop` chooses how the client update iterates over the client's data (the
  same results either way; see learning/dataset_loops.py).

  Type signature of `next`:
    (<int32@SERVER, weights@CLIENTS, {element*}@CLIENTS> ->
     <int32@SERVER, ClientResult(update=weights, update_weight=float32[3])@CLIENTS,
      metrics@SERVER>)
  """
  weights_type = weights_type_of(model_fn)
  data_type = tff.SequenceType(tff.types.tensorflow_to_type(element_spec))

  @tff.tensorflow.computation
  def initial_round():
    return tf.constant(0, tf.int32)

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(initial_round, tff.SERVER)

  @tff.tensorflow.computation(tf.int32, weights_type, data_type)
  def train_on_client(round_num, initial_weights, dataset):
    # Build the Keras models inside the computation; the stateful work happens in
    # the tf.function returned by build_client_update_fn: variable assignments made
    # directly in a tff.tensorflow.computation body are silently dropped.
    model = model_fn()
    teacher = model_fn() if objective.uses_infiltration else None
    update_fn = client_update_lib.build_client_update_fn(model, teacher, objective, training,
                                                         loop)
    out = update_fn((initial_weights.trainable, initial_weights.non_trainable), dataset,
                    round_num)
    update = ModelWeights(trainable=out.update[0], non_trainable=out.update[1])
    return tff.learning.templates.ClientResult(update=update,
                                               update_weight=out.group_weights), out.metrics

  @tff.tensorflow.computation(tf.int32)
  def next_round(round_num):
    return round_num + 1

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(data_type, tff.CLIENTS))
  def next_fn(state, weights, client_data):
    round_at_clients = tff.federated_broadcast(state)
    client_result, metrics = tff.federated_map(train_on_client,
                                               (round_at_clients, weights, client_data))
    measurements = tff.federated_zip(collections.OrderedDict(
        train=tff.federated_sum(metrics)))
    return tff.templates.MeasuredProcessOutput(
        tff.federated_map(next_round, state), client_result, measurements)

  return tff.learning.templates.ClientWorkProcess(init_fn, next_fn)


def build_group_mean_aggregator(weights_type, variable_groups: tuple
                                ) -> tff.templates.AggregationProcess:
  """Weighted aggregation with one weight per (client, group).

  Type signature of `next`:
    (<()@SERVER, weights@CLIENTS, float32[3]@CLIENTS> ->
     <()@SERVER, weights@SERVER, <group_weight_totals=float32[3]>@SERVER>)
  """
  trainable_groups, non_trainable_groups = variable_groups
  weight_type = tff.TensorType(np.float32, [3])

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.tensorflow.computation(weights_type, weight_type)
  def weigh(value, group_weights):
    return ModelWeights(
        trainable=aggregation.weigh_by_group(value.trainable, trainable_groups, group_weights),
        non_trainable=aggregation.weigh_by_group(value.non_trainable, non_trainable_groups,
                                                 group_weights))

  @tff.tensorflow.computation(weights_type, weight_type)
  def divide(sums, totals):
    return ModelWeights(
        trainable=aggregation.divide_by_group(sums.trainable, trainable_groups, totals),
        non_trainable=aggregation.divide_by_group(sums.non_trainable, non_trainable_groups,
                                                  totals))

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.CLIENTS),
                             tff.FederatedType(weight_type, tff.CLIENTS))
  def next_fn(state, value, group_weights):
    sums = tff.federated_sum(tff.federated_map(weigh, (value, group_weights)))
    totals = tff.federated_sum(group_weights)
    mean = tff.federated_map(divide, (sums, totals))
    measurements = tff.federated_zip(collections.OrderedDict(group_weight_totals=totals))
    return tff.templates.MeasuredProcessOutput(state, mean, measurements)

  return tff.templates.AggregationProcess(init_fn, next_fn)


def build_delta_finalizer(weights_type) -> tff.learning.templates.FinalizerProcess:
  """w_new = w - mean_delta for every weight (server learning rate 1, as FedAvg)."""

  @tff.federated_computation
  def init_fn():
    return tff.federated_value((), tff.SERVER)

  @tff.tensorflow.computation(weights_type, weights_type)
  def apply_delta(weights, delta):
    return tf.nest.map_structure(tf.subtract, weights, delta)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(weights_type, tff.SERVER))
  def next_fn(state, weights, delta):
    return tff.templates.MeasuredProcessOutput(
        state, tff.federated_map(apply_delta, (weights, delta)),
        tff.federated_value((), tff.SERVER))

  return tff.learning.templates.FinalizerProcess(init_fn, next_fn)


def build_multimodal_process(model_fn: Callable, element_spec, *,
                             objective: config_lib.ObjectiveConfig,
                             training: config_lib.LocalTrainingConfig,
                             loop: dataset_loops.LoopImplementation = (
                                 dataset_loops.DATASET_ITERATOR)
                             ) -> tff.learning.templates.LearningProcess:
  """Composes distributor, client work, group-mean aggregator and finalizer.

  Args:
    model_fn: no-argument callable returning a new `DecomposedModel`; called inside
      TFF computations, so it must build the model from scratch each time.
    element_spec: the client datasets' element spec (single examples).
    objective: the client loss (FedCMI or fused-only).
    training: local optimisation.
    loop: how client updates iterate over their data (learning/dataset_loops.py).
  """
  objective.validate()
  training.validate()
  weights_type = weights_type_of(model_fn)
  groups = variable_groups_of(model_fn)

  @tff.tensorflow.computation
  def initial_model_weights():
    return _weights_of(model_fn())

  return tff.learning.templates.compose_learning_process(
      initial_model_weights,
      tff.learning.templates.build_broadcast_process(weights_type),
      build_multimodal_client_work(model_fn, element_spec, objective, training, loop),
      build_group_mean_aggregator(weights_type, groups),
      build_delta_finalizer(weights_type))


def build_fedcmi(model_fn: Callable, element_spec, *,
                 objective: config_lib.ObjectiveConfig = config_lib.ObjectiveConfig(
                     proximal_strength=0.01),
                 training: config_lib.LocalTrainingConfig = config_lib.LocalTrainingConfig(),
                 loop: dataset_loops.LoopImplementation = dataset_loops.DATASET_ITERATOR
                 ) -> tff.learning.templates.LearningProcess:
  """FedCMI (arXiv 2401.00894): infiltration distillation + proximal term."""
  if objective.objective is not config_lib.Objective.FEDCMI:
    raise ValueError(f'build_fedcmi needs the FedCMI objective, got {objective.objective}')
  return build_multimodal_process(model_fn, element_spec, objective=objective,
                                  training=training, loop=loop)


def fused_only_objective(proximal_strength: float = 0.0,
                         modulation: config_lib.Modulation = config_lib.Modulation.NONE,
                         modulation_strength: float = 1.0, modulation_rounds: tuple = (0, 70)
                         ) -> config_lib.ObjectiveConfig:
  """The client objective of FedAvg / FedProx (+ OGM-GE / PMR): CE of the fused logits."""
  return config_lib.ObjectiveConfig(
      objective=config_lib.Objective.FUSED_ONLY, distillation_weight=0.0, self_head_weight=0.0,
      proximal_strength=proximal_strength, modulation=modulation,
      modulation_strength=modulation_strength, modulation_start_round=modulation_rounds[0],
      modulation_end_round=modulation_rounds[1])


def build_fedavg(model_fn: Callable, element_spec, *, proximal_strength: float = 0.0,
                 modulation: config_lib.Modulation = config_lib.Modulation.NONE,
                 modulation_strength: float = 1.0, modulation_rounds: tuple = (0, 70),
                 training: config_lib.LocalTrainingConfig = config_lib.LocalTrainingConfig(),
                 loop: dataset_loops.LoopImplementation = dataset_loops.DATASET_ITERATOR
                 ) -> tff.learning.templates.LearningProcess:
  """FedAvg on the same model and server; FedProx with proximal_strength > 0.

  Clients minimise CE of the fused logits; unimodal clients zero-fill the missing
  slot.  Aggregation is the same modality-masked group mean as FedCMI's, as in
  the authors' multimodal FedAvg baseline.  `modulation` adds OGM-GE or PMR to the
  multimodal clients' local training in rounds modulation_rounds[0]..[1].
  """
  objective = fused_only_objective(proximal_strength, modulation, modulation_strength,
                                   modulation_rounds)
  return build_multimodal_process(model_fn, element_spec, objective=objective,
                                  training=training, loop=loop)


_MODULATIONS = {'fedavg_ogm_ge': config_lib.Modulation.OGM_GE,
                'fedavg_pmr': config_lib.Modulation.PMR}


def objective_for_algorithm(algorithm: str, objective: config_lib.ObjectiveConfig
                            ) -> config_lib.ObjectiveConfig:
  """The client objective one of config.ALGORITHMS trains with, given the configured one.

  FedCMI uses `objective` as it is; FedProx its proximal_strength; FedAvg + OGM-GE /
  PMR its modulation strength and rounds; FedAvg none of it.
  """
  if algorithm == 'fedcmi':
    if objective.objective is not config_lib.Objective.FEDCMI:
      raise ValueError(f'fedcmi needs the FedCMI objective, got {objective.objective}')
    return objective
  if algorithm == 'fedavg':
    return fused_only_objective()
  if algorithm == 'fedprox':
    return fused_only_objective(proximal_strength=objective.proximal_strength)
  if algorithm in _MODULATIONS:
    return fused_only_objective(
        modulation=_MODULATIONS[algorithm], modulation_strength=objective.modulation_strength,
        modulation_rounds=(objective.modulation_start_round, objective.modulation_end_round))
  raise ValueError(f'unknown algorithm {algorithm!r}; expected one of '
                   f'{", ".join(config_lib.ALGORITHMS)}')


def build_process_for_algorithm(algorithm: str, model_fn: Callable, element_spec, *,
                                objective: config_lib.ObjectiveConfig,
                                training: config_lib.LocalTrainingConfig,
                                loop: dataset_loops.LoopImplementation = (
                                    dataset_loops.DATASET_ITERATOR)
                                ) -> tff.learning.templates.LearningProcess:
  """One of config.ALGORITHMS, trained with `objective_for_algorithm(algorithm, objective)`."""
  return build_multimodal_process(model_fn, element_spec,
                                  objective=objective_for_algorithm(algorithm, objective),
                                  training=training, loop=loop)
