"""FedCMI and its baselines as TFF learning processes (TFF wiring only).

Every process is composed from TFF's learning templates, the way TFF's own
algorithms are (`tff.learning.templates.compose_learning_process`):

  distributor   `build_broadcast_process`: the global weights go to every client
  client work   `build_multimodal_client_work`: the generic client loop
                (`client_update.py`) on the method's client objective
                (`algorithms/`); the round number, kept as client-work state, is
                broadcast with the weights
  aggregator    `aggregators.GroupMeanFactory` (default): modality-masked mean of
                the deltas, one weight per group and client (a float32[3] "update
                weight"); any `tff.aggregators.WeightedAggregationFactory` with
                that weight type fits
  finalizer     `aggregators.build_server_update_finalizer`: the server optimiser
                (default SGD with learning rate 1: w <- w - mean delta) on the
                trainable weights, w <- w - mean delta on batch-norm statistics
                (moving variances clipped at 0)

Type signature of `next`:
  (<state@SERVER, {<x=<a, b, modality_mask>, y>*}@CLIENTS> -> <state@SERVER, metrics@SERVER>)

The public builders (`build_fedcmi`, `build_fedavg`, `build_fedprox`,
`build_fedavg_ogm_ge`, `build_fedavg_pmr`) take keyword hyper-parameters in the
shape of TFF's `build_weighted_fed_prox`; `build_process_for_config` builds the
algorithm an experiment configuration names.
"""

from __future__ import annotations

import collections
from typing import Callable, NamedTuple

import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import fedcmi
from fedcmi_tff.algorithms import fused_ce
from fedcmi_tff.algorithms import ogm_ge
from fedcmi_tff.algorithms import pmr
from fedcmi_tff.algorithms import registry
from fedcmi_tff.learning import aggregators
from fedcmi_tff.learning import client_update as client_update_lib
from fedcmi_tff.learning import dataset_loops

ModelWeights = tff.learning.models.ModelWeights
DEFAULT_TRAINING = config_lib.LocalTrainingConfig()
# The builders' hyper-parameter defaults are the configuration's: one default per field.
_O = config_lib.ObjectiveConfig()


def _weights_of(model) -> ModelWeights:
  return ModelWeights(trainable=list(model.trainable_variables),
                      non_trainable=list(model.non_trainable_variables))


class ModelStructure(NamedTuple):
  """What the process wiring needs to know about a model, read from one build.

  variable_groups: the model's `variable_groups()`, (trainable groups,
    non-trainable groups), one modality group per weight.
  weights_type: TFF type of the (trainable, non_trainable) weights.
  non_negative: one bool per non-trainable weight, True for a batch-norm moving
    variance (clipped at 0 by the server update).
  """
  variable_groups: tuple
  weights_type: tff.types.Type
  non_negative: tuple


def model_structure(model_fn: Callable) -> ModelStructure:
  """The `ModelStructure` of the model `model_fn` builds (one build, in a fresh graph)."""
  with tf.Graph().as_default():
    model = model_fn()
    specs = tf.nest.map_structure(lambda v: tf.TensorSpec(v.shape, v.dtype), _weights_of(model))
    groups = model.variable_groups()
    non_negative = tuple('moving_variance' in v.name for v in model.non_trainable_variables)
  return ModelStructure(groups, tff.types.tensorflow_to_type(specs), non_negative)


def weights_type_of(model_fn: Callable) -> tff.types.Type:
  """TFF type of a model's (trainable, non_trainable) weights."""
  return model_structure(model_fn).weights_type


def variable_groups_of(model_fn: Callable) -> tuple:
  """The model's (trainable groups, non-trainable groups)."""
  return model_structure(model_fn).variable_groups


def default_server_optimizer() -> tff.learning.optimizers.Optimizer:
  """FedAvg's server step, w <- w - 1.0 * mean delta."""
  return tff.learning.optimizers.build_sgdm(learning_rate=1.0)


def server_optimizer_for(server: config_lib.ServerConfig) -> tff.learning.optimizers.Optimizer:
  """The TFF optimiser a `ServerConfig` describes (sgd: FedAvg / FedAvgM, adam: FedAdam)."""
  server.validate()
  if server.optimizer == 'adam':
    return tff.learning.optimizers.build_adam(learning_rate=server.learning_rate)
  return tff.learning.optimizers.build_sgdm(learning_rate=server.learning_rate,
                                            momentum=server.momentum or None)


def build_multimodal_client_work(model_fn: Callable, element_spec,
                                 objective: base.ClientObjective,
                                 training: config_lib.LocalTrainingConfig,
                                 proximal_strength: float = 0.0,
                                 loop: dataset_loops.LoopImplementation = (
                                     dataset_loops.DATASET_ITERATOR), *,
                                 total_rounds: int | None = None,
                                 weights_type: tff.types.Type | None = None
                                 ) -> tff.learning.templates.ClientWorkProcess:
  """Client work whose state is the round number.

  Type signature of `next`:
    (<int32@SERVER, weights@CLIENTS, {element*}@CLIENTS> ->
     <int32@SERVER, ClientResult(update=weights, update_weight=float32[3])@CLIENTS,
      <train=metrics>@SERVER>)

  `loop` chooses how the client update iterates over the client's data (the
  same results either way; see learning/dataset_loops.py); `total_rounds` is T of
  the learning-rate decay (client_update.build_client_update_fn); `weights_type`, the
  model's (from `model_structure`), saves a model build when the caller has it.
  """
  client_update_lib.schedule_rounds(training, total_rounds)  # fails here, not when traced
  if weights_type is None:
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
    # the tf.function returned by build_client_update_fn (variable assignments made
    # directly in a TFF computation body, outside a tf.function, are silently dropped).
    model = model_fn()
    teacher = model_fn() if objective.needs_teacher else None
    update_fn = client_update_lib.build_client_update_fn(
        model, teacher, objective, training, proximal_strength, loop,
        total_rounds=total_rounds)
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


def build_learning_process(
    model_fn: Callable, element_spec, *, objective: base.ClientObjective,
    training: config_lib.LocalTrainingConfig = DEFAULT_TRAINING,
    total_rounds: int | None = None,
    proximal_strength: float = 0.0,
    server_optimizer: tff.learning.optimizers.Optimizer | None = None,
    aggregator: tff.aggregators.WeightedAggregationFactory | None = None,
    loop: dataset_loops.LoopImplementation = dataset_loops.DATASET_ITERATOR,
    structure: ModelStructure | None = None,
) -> tff.learning.templates.LearningProcess:
  """Composes distributor, client work, aggregator and finalizer for any objective.

  Args:
    model_fn: no-argument callable returning a new `DecomposedModel`; called inside
      TFF computations, so it must build the model from scratch each time.
    element_spec: the client datasets' element spec (single examples).
    objective: what clients compute (algorithms/).
    training: local optimisation (SGD momentum, coupled weight decay, schedule,
      epochs, batch size, augmentation).
    total_rounds: T of the learning-rate decay, the number of rounds the process will
      run; may be None only when `training` does not decay the learning rate.
    proximal_strength: mu of the proximal term; 0 for none.
    server_optimizer: applied to the mean delta of the trainable weights; default
      `build_sgdm(learning_rate=1.0)` (plain FedAvg server step).
    aggregator: a weighted aggregation factory taking float32[3] weights; default
      `aggregators.GroupMeanFactory` with the model's variable groups.
    loop: how client updates iterate over their data (learning/dataset_loops.py).
    structure: `model_structure(model_fn)` if the caller has it already; built
      here otherwise.

  Raises:
    ValueError: an invalid training configuration or proximal strength.
  """
  training.validate()
  if proximal_strength < 0:
    raise ValueError(f'proximal_strength must be >= 0, got {proximal_strength}')
  if structure is None:
    structure = model_structure(model_fn)
  weights_type = structure.weights_type
  if aggregator is None:
    aggregator = aggregators.GroupMeanFactory(structure.variable_groups)

  @tff.tensorflow.computation
  def initial_model_weights():
    return _weights_of(model_fn())

  return tff.learning.templates.compose_learning_process(
      initial_model_weights,
      tff.learning.templates.build_broadcast_process(weights_type),
      build_multimodal_client_work(model_fn, element_spec, objective, training,
                                   proximal_strength, loop, total_rounds=total_rounds,
                                   weights_type=weights_type),
      aggregator.create(weights_type, aggregators.GROUP_WEIGHT_TYPE),
      aggregators.build_server_update_finalizer(
          weights_type, server_optimizer or default_server_optimizer(),
          non_negative=structure.non_negative))


def build_fedcmi(model_fn: Callable, element_spec, *,
                 distillation_weight: float = _O.distillation_weight,
                 self_head_weight: float = _O.self_head_weight,
                 temperature_sharpness: float = _O.temperature_sharpness,
                 temperature_mode: config_lib.TemperatureMode = _O.temperature_mode,
                 direction_consistent_temperature: bool = _O.direction_consistent_temperature,
                 warmup_rounds: int = _O.warmup_rounds,
                 proximal_strength: float = _O.proximal_strength, **process_options
                 ) -> tff.learning.templates.LearningProcess:
  """FedCMI (arXiv 2401.00894): infiltration distillation with class-wise temperature.

  Args:
    model_fn, element_spec: as `build_learning_process`.
    distillation_weight: lambda; 0 turns infiltration off.
    self_head_weight: beta, the weight of each self-head cross-entropy.
    temperature_sharpness: gamma of the class-wise temperature.
    temperature_mode: class-wise, or tau = 1 for every class.
    direction_consistent_temperature: the table of the direction each batch distils in.
    warmup_rounds: rounds before infiltration starts.
    proximal_strength: mu.
    **process_options: `training`, `total_rounds`, `server_optimizer`, `aggregator`,
      `loop`, `structure` of `build_learning_process`.
  """
  objective = fedcmi.FedCMIObjective(
      distillation_weight=distillation_weight, self_head_weight=self_head_weight,
      temperature_sharpness=temperature_sharpness, temperature_mode=temperature_mode,
      direction_consistent_temperature=direction_consistent_temperature,
      warmup_rounds=warmup_rounds)
  return build_learning_process(model_fn, element_spec, objective=objective,
                                proximal_strength=proximal_strength, **process_options)


def build_fedavg(model_fn: Callable, element_spec, **process_options
                 ) -> tff.learning.templates.LearningProcess:
  """FedAvg on the same model and server: clients minimise CE of the fused logits.

  Unimodal clients zero-fill the missing slot; aggregation is the same
  modality-masked group mean as FedCMI's, as in the authors' multimodal FedAvg
  baseline.  `process_options` as `build_learning_process`.
  """
  return build_learning_process(model_fn, element_spec,
                                objective=fused_ce.FusedCrossEntropyObjective(),
                                **process_options)


def build_fedprox(model_fn: Callable, element_spec, *,
                  proximal_strength: float = _O.proximal_strength,
                  **process_options) -> tff.learning.templates.LearningProcess:
  """FedProx: FedAvg's objective plus the proximal term (mu / 2) ||w - w_global||^2."""
  return build_learning_process(model_fn, element_spec,
                                objective=fused_ce.FusedCrossEntropyObjective(),
                                proximal_strength=proximal_strength, **process_options)


def _modulated(objective_class, model_fn, element_spec, modulation_strength,
               modulation_rounds, process_options) -> tff.learning.templates.LearningProcess:
  window = fused_ce.ModulationWindow(modulation_strength, *modulation_rounds)
  return build_learning_process(model_fn, element_spec, objective=objective_class(window),
                                **process_options)


_MODULATION_ROUNDS = (_O.modulation_start_round, _O.modulation_end_round)


def build_fedavg_ogm_ge(model_fn: Callable, element_spec, *,
                        modulation_strength: float = _O.modulation_strength,
                        modulation_rounds: tuple = _MODULATION_ROUNDS, **process_options
                        ) -> tff.learning.templates.LearningProcess:
  """FedAvg + OGM-GE on multimodal clients in rounds modulation_rounds[0]..[1]."""
  return _modulated(ogm_ge.OGMGEObjective, model_fn, element_spec, modulation_strength,
                    modulation_rounds, process_options)


def build_fedavg_pmr(model_fn: Callable, element_spec, *,
                     modulation_strength: float = _O.modulation_strength,
                     modulation_rounds: tuple = _MODULATION_ROUNDS, **process_options
                     ) -> tff.learning.templates.LearningProcess:
  """FedAvg + PMR on multimodal clients in rounds modulation_rounds[0]..[1]."""
  return _modulated(pmr.PMRObjective, model_fn, element_spec, modulation_strength,
                    modulation_rounds, process_options)


def build_process_for_config(algorithm: str, model_fn: Callable, element_spec, *,
                             objective: config_lib.ObjectiveConfig,
                             training: config_lib.LocalTrainingConfig,
                             **process_options) -> tff.learning.templates.LearningProcess:
  """The process of one of `registry.ALGORITHMS` under the configured hyper-parameters.

  `process_options`: `total_rounds`, `server_optimizer`, `aggregator`, `loop`,
  `structure` of `build_learning_process`.
  """
  return build_learning_process(
      model_fn, element_spec, objective=registry.client_objective(algorithm, objective),
      training=training, proximal_strength=registry.proximal_strength(algorithm, objective),
      **process_options)
