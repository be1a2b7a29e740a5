"""The modality-masked group mean as a TFF aggregation factory, and the server update.

`GroupMeanFactory` is FedCMI's server aggregation (docs/algorithm.md, "Server:
modality-masked group averaging"): every variable belongs to a group (slot a,
slot b, fusion) and each client sends one weight per group, float32[3] =
(n * has_a, n * has_b, n); the mean of a variable is
sum(weight[group] * value) / sum(weight[group]), and 0 for a group no client
holds (so a delta leaves those weights, batch-norm statistics included,
unchanged).  Like `tff.aggregators.MeanFactory`, it delegates the two sums to
inner `tff.aggregators.UnweightedAggregationFactory`s (default `SumFactory`), so
TFF's differential-privacy, secure-summation or compression factories can take
their place.

`build_server_update_finalizer` applies the mean delta: trainable weights through
a `tff.learning.optimizers` optimiser (`build_sgdm(learning_rate=1.0)`, plain
w - delta, is FedAvg's server step; momentum gives FedAvgM, Adam FedAdam),
non-trainable weights (batch-norm statistics) as w - delta.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff.learning import aggregation

ModelWeights = tff.learning.models.ModelWeights
GROUP_WEIGHT_TYPE = tff.TensorType(np.float32, [3])


class GroupMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """Weighted mean with one weight per (client, variable group).

  Type signature of the created process's `next`:
    (<state@SERVER, ModelWeights@CLIENTS, float32[3]@CLIENTS> ->
     <state@SERVER, ModelWeights@SERVER, <group_weight_totals=float32[3], ...>@SERVER>)
  """

  def __init__(self, variable_groups: tuple,
               value_sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None,
               weight_sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None):
    """Args:
      variable_groups: (trainable groups, non-trainable groups): the group index
        (0 slot a, 1 slot b, 2 fusion) of every variable, in ModelWeights order
        (`DecomposedModel.variable_groups()`).
      value_sum_factory: sums the group-weighted values (default `SumFactory`).
      weight_sum_factory: sums the per-group weights (default `SumFactory`).
    """
    self._groups = tuple(tuple(g) for g in variable_groups)
    self._value_sum_factory = value_sum_factory or tff.aggregators.SumFactory()
    self._weight_sum_factory = weight_sum_factory or tff.aggregators.SumFactory()

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not weight_type.is_equivalent_to(GROUP_WEIGHT_TYPE):
      raise TypeError(f'GroupMeanFactory needs float32[3] weights, got {weight_type}')
    trainable_groups, non_trainable_groups = self._groups
    value_sum = self._value_sum_factory.create(value_type)
    weight_sum = self._weight_sum_factory.create(GROUP_WEIGHT_TYPE)

    @tff.tensorflow.computation(value_type, GROUP_WEIGHT_TYPE)
    def weigh(value, group_weights):
      return ModelWeights(
          trainable=aggregation.weigh_by_group(value.trainable, trainable_groups,
                                               group_weights),
          non_trainable=aggregation.weigh_by_group(value.non_trainable, non_trainable_groups,
                                                   group_weights))

    @tff.tensorflow.computation(value_type, GROUP_WEIGHT_TYPE)
    def divide(sums, totals):
      return ModelWeights(
          trainable=aggregation.divide_by_group(sums.trainable, trainable_groups, totals),
          non_trainable=aggregation.divide_by_group(sums.non_trainable, non_trainable_groups,
                                                    totals))

    @tff.federated_computation
    def init_fn():
      return tff.federated_zip(collections.OrderedDict(
          value_sum=value_sum.initialize(), weight_sum=weight_sum.initialize()))

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(GROUP_WEIGHT_TYPE, tff.CLIENTS))
    def next_fn(state, value, group_weights):
      sums = value_sum.next(state.value_sum, tff.federated_map(weigh, (value, group_weights)))
      totals = weight_sum.next(state.weight_sum, group_weights)
      mean = tff.federated_map(divide, (sums.result, totals.result))
      new_state = tff.federated_zip(collections.OrderedDict(
          value_sum=sums.state, weight_sum=totals.state))
      measurements = tff.federated_zip(collections.OrderedDict(
          group_weight_totals=totals.result, value_sum=sums.measurements,
          weight_sum=totals.measurements))
      return tff.templates.MeasuredProcessOutput(new_state, mean, measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def build_server_update_finalizer(weights_type, server_optimizer: tff.learning.optimizers.Optimizer
                                  ) -> tff.learning.templates.FinalizerProcess:
  """Trainable weights: the server optimiser on the mean delta; non-trainable: w - delta.

  With `build_sgdm(learning_rate=1.0)` the trainable update is w - 1.0 * delta,
  bit for bit the plain FedAvg step.
  """
  trainable_specs = tuple(tff.types.type_to_tf_tensor_specs(weights_type.trainable))

  @tff.tensorflow.computation
  def init_optimizer():
    return server_optimizer.initialize(trainable_specs)

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(init_optimizer, tff.SERVER)

  optimizer_state_type = init_optimizer.type_signature.result

  @tff.tensorflow.computation(optimizer_state_type, weights_type, weights_type)
  def apply_delta(optimizer_state, weights, delta):
    optimizer_state, trainable = server_optimizer.next(
        optimizer_state, tuple(weights.trainable), tuple(delta.trainable))
    non_trainable = tf.nest.map_structure(tf.subtract, weights.non_trainable,
                                          delta.non_trainable)
    return optimizer_state, ModelWeights(trainable=list(trainable),
                                         non_trainable=non_trainable)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(weights_type, tff.SERVER),
                             tff.FederatedType(weights_type, tff.SERVER))
  def next_fn(state, weights, delta):
    new_state, new_weights = tff.federated_map(apply_delta, (state, weights, delta))
    return tff.templates.MeasuredProcessOutput(new_state, new_weights,
                                               tff.federated_value((), tff.SERVER))

  return tff.learning.templates.FinalizerProcess(init_fn, next_fn)
