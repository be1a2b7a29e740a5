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

`PrivateGroupMeanFactory` is its user-level differentially private form, and
`build_group_mean_factory` builds whichever form an `AggregationConfig` describes
(plain, differentially private, securely summed, compressed; docs/privacy.md).

`build_server_update_finalizer` applies the mean delta: trainable weights through
a `tff.learning.optimizers` optimiser (`build_sgdm(learning_rate=1.0)`, plain
w - delta, is FedAvg's server step; momentum gives FedAvgM, Adam FedAdam),
non-trainable weights (batch-norm statistics) as w - delta, with the moving variances
projected onto [0, inf) (a no-op for a mean of clients' statistics; noise or quantisation
can push one below zero, which would make batch normalisation NaN).
"""

from __future__ import annotations

import collections

import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp

from fedcmi_tff import config as config_lib
from fedcmi_tff.learning import aggregation

ModelWeights = tff.learning.models.ModelWeights
GROUP_WEIGHT_TYPE = tff.TensorType(np.float32, [3])
# DP records are first scaled to this L2 norm when larger (`aggregation.bound_norm`): the
# clip of a finite record whose float32 norm overflows (about 1.8e19) would be NaN.
RECORD_NORM_BOUND = config_lib.MAX_CLIP_NORM


def _by_group(fn, weights, variable_groups, *args) -> ModelWeights:
  """fn(tensors, their groups, *args) on the trainable and the non-trainable weights."""
  trainable_groups, non_trainable_groups = variable_groups
  return ModelWeights(trainable=fn(weights.trainable, trainable_groups, *args),
                      non_trainable=fn(weights.non_trainable, non_trainable_groups, *args))


class GroupMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """Weighted mean with one weight per (client, variable group).

  Type signature of the created process's `next`:
    (<state@SERVER, ModelWeights@CLIENTS, float32[3]@CLIENTS> ->
     <state@SERVER, ModelWeights@SERVER, <group_weight_totals=float32[3], ...>@SERVER>)
  """

  def __init__(self, variable_groups: tuple,
               value_sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None,
               weight_sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None,
               weight_scale: float = 1.0):
    """Args:
      variable_groups: (trainable groups, non-trainable groups): the group index
        (0 slot a, 1 slot b, 2 fusion) of every variable, in ModelWeights order
        (`DecomposedModel.variable_groups()`).
      value_sum_factory: sums the group-weighted values (default `SumFactory`).
      weight_sum_factory: sums the per-group weights (default `SumFactory`).
      weight_scale: every weight is multiplied by this public constant before both sums
        (the mean is unchanged; 1 / the largest client's example count keeps secure
        summation's values within the bound of an update and its weights within [0, 1]);
        the reported totals are in examples again.
    """
    if not weight_scale > 0:
      raise ValueError(f'weight_scale must be > 0, got {weight_scale}')
    self._weight_scale = float(weight_scale)
    self._groups = tuple(tuple(g) for g in variable_groups)
    self._value_sum_factory = value_sum_factory or tff.aggregators.SumFactory()
    self._weight_sum_factory = weight_sum_factory or tff.aggregators.SumFactory()

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not weight_type.is_equivalent_to(GROUP_WEIGHT_TYPE):
      raise TypeError(f'GroupMeanFactory needs float32[3] weights, got {weight_type}')
    groups = self._groups
    value_sum = self._value_sum_factory.create(value_type)
    weight_sum = self._weight_sum_factory.create(GROUP_WEIGHT_TYPE)

    @tff.tensorflow.computation(value_type, GROUP_WEIGHT_TYPE)
    def weigh(value, group_weights):
      return _by_group(aggregation.weigh_by_group, value, groups, group_weights)

    @tff.tensorflow.computation(value_type, GROUP_WEIGHT_TYPE)
    def divide(sums, totals):
      return _by_group(aggregation.divide_by_group, sums, groups, totals)

    @tff.tensorflow.computation(GROUP_WEIGHT_TYPE)
    def scale(group_weights):
      return group_weights * self._weight_scale

    @tff.tensorflow.computation(GROUP_WEIGHT_TYPE)
    def unscale(totals):
      return totals / self._weight_scale

    @tff.federated_computation
    def init_fn():
      return tff.federated_zip(collections.OrderedDict(
          value_sum=value_sum.initialize(), weight_sum=weight_sum.initialize()))

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(GROUP_WEIGHT_TYPE, tff.CLIENTS))
    def next_fn(state, value, group_weights):
      if self._weight_scale != 1.0:
        group_weights = tff.federated_map(scale, group_weights)
      sums = value_sum.next(state.value_sum, tff.federated_map(weigh, (value, group_weights)))
      totals = weight_sum.next(state.weight_sum, group_weights)
      mean = tff.federated_map(divide, (sums.result, totals.result))
      new_state = tff.federated_zip(collections.OrderedDict(
          value_sum=sums.state, weight_sum=totals.state))
      reported_totals = (totals.result if self._weight_scale == 1.0
                         else tff.federated_map(unscale, totals.result))
      measurements = tff.federated_zip(collections.OrderedDict(
          group_weight_totals=reported_totals, value_sum=sums.measurements,
          weight_sum=totals.measurements))
      return tff.templates.MeasuredProcessOutput(new_state, mean, measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


class PrivateGroupMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """The group mean with user-level differential privacy (docs/privacy.md).

  A client's record is its whole update with the groups it does not hold zeroed
  (`aggregation.mask_by_group`: every client counts once), scaled to norm
  `RECORD_NORM_BOUND` if larger (so the clip cannot overflow to NaN).  TFF's
  `DifferentiallyPrivateFactory` clips each record to L2 norm C (`query`), sums the
  clipped records (`record_sum_factory`: plain or secure) and adds Gaussian noise to
  every coordinate; each group's noisy sum is then divided by a public constant, the
  expected number of sampled clients that hold the group (`expected_holders`), so the
  released mean does not depend on how many sampled clients held each modality.  A group
  no client of the population holds (expected holders 0) keeps its values.

  The example weights are not used (only whether they are > 0); `group_weight_totals`
  reports the public denominators.

  Type signature of the created process's `next`: as `GroupMeanFactory`'s.
  """

  def __init__(self, variable_groups: tuple, expected_holders: tuple,
               query: tfp.SumAggregationDPQuery,
               record_sum_factory: tff.aggregators.UnweightedAggregationFactory | None = None):
    """Args:
      variable_groups: as `GroupMeanFactory`.
      expected_holders: (slot a, slot b, fusion): expected sampled holders per round.
      query: the clipping and noising sum query (`dp_sum_query`).
      record_sum_factory: sums the clipped records (default `SumFactory`).
    """
    if len(expected_holders) != 3 or min(expected_holders) < 0:
      raise ValueError(f'expected_holders must be 3 numbers >= 0, got {expected_holders}')
    self._groups = tuple(tuple(g) for g in variable_groups)
    self._denominators = tuple(float(d) for d in expected_holders)
    self._dp = tff.aggregators.DifferentiallyPrivateFactory(query, record_sum_factory)

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if not weight_type.is_equivalent_to(GROUP_WEIGHT_TYPE):
      raise TypeError(f'PrivateGroupMeanFactory needs float32[3] weights, got {weight_type}')
    groups = self._groups
    dp_sum = self._dp.create(value_type)
    denominators = self._denominators

    @tff.tensorflow.computation(value_type, GROUP_WEIGHT_TYPE)
    def mask(value, group_weights):
      record = _by_group(aggregation.mask_by_group, value, groups, group_weights)
      flat = aggregation.bound_norm(record.trainable + record.non_trainable,
                                    RECORD_NORM_BOUND)
      count = len(record.trainable)
      return ModelWeights(trainable=flat[:count], non_trainable=flat[count:])

    @tff.tensorflow.computation(value_type)
    def divide(sums):
      return _by_group(aggregation.divide_by_constants, sums, groups, denominators)

    @tff.tensorflow.computation
    def public_denominators():
      return tf.constant(denominators, tf.float32)

    @tff.federated_computation
    def init_fn():
      return dp_sum.initialize()

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(GROUP_WEIGHT_TYPE, tff.CLIENTS))
    def next_fn(state, value, group_weights):
      sums = dp_sum.next(state, tff.federated_map(mask, (value, group_weights)))
      measurements = tff.federated_zip(collections.OrderedDict(
          group_weight_totals=tff.federated_eval(public_denominators, tff.SERVER),
          dp=sums.measurements))
      return tff.templates.MeasuredProcessOutput(
          sums.state, tff.federated_map(divide, sums.result), measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def dp_sum_query(aggregation_config: config_lib.AggregationConfig,
                 expected_clients_per_round: float) -> tfp.SumAggregationDPQuery:
  """The clipping and noising sum query of a DP aggregation (as TFF's DP factory builds it).

  Fixed clipping: clip to C, noise standard deviation z * C.  Adaptive: TFF's split
  of the total noise multiplier z between the records and the clipped count, so that
  the whole round is a Gaussian mechanism of noise multiplier z.
  """
  c = aggregation_config
  if not c.adaptive_clipping:
    return tfp.GaussianSumQuery(l2_norm_clip=c.clip_norm, stddev=c.noise_multiplier * c.clip_norm)
  value_noise, count_stddev = tff.aggregators.differential_privacy.adaptive_clip_noise_params(
      c.noise_multiplier, expected_clients_per_round)
  return tfp.QuantileAdaptiveClipSumQuery(
      initial_l2_norm_clip=c.clip_norm, noise_multiplier=value_noise,
      target_unclipped_quantile=c.target_unclipped_quantile,
      learning_rate=c.clip_learning_rate, clipped_count_stddev=count_stddev,
      expected_num_records=expected_clients_per_round, geometric_update=True)


def build_group_mean_factory(variable_groups: tuple,
                             aggregation_config: config_lib.AggregationConfig, *,
                             expected_holders: tuple | None = None,
                             max_client_examples: int | None = None
                             ) -> tff.aggregators.WeightedAggregationFactory:
  """The server's group mean with the mechanisms `aggregation_config` names.

  Args:
    variable_groups: as `GroupMeanFactory`.
    aggregation_config: which mechanisms and their parameters.
    expected_holders: 'dp': (slot a, slot b, fusion) expected sampled holders per round
      (`expected_group_holders`).
    max_client_examples: 'secure' without 'dp': the largest client's example count (the
      weights are divided by it, so they lie in [0, 1]).

  Raises:
    ValueError: an invalid configuration, or a parameter the mechanisms need is missing.
  """
  c = aggregation_config
  c.validate()
  mechanisms = tuple(c.mechanisms)
  if 'dp' in mechanisms:
    if expected_holders is None:
      raise ValueError('a dp aggregation needs expected_holders')
    record_sum = (tff.aggregators.SecureSumFactory(c.clip_norm, -c.clip_norm)
                  if 'secure' in mechanisms else None)
    return PrivateGroupMeanFactory(variable_groups, expected_holders,
                                   dp_sum_query(c, expected_holders[2]), record_sum)
  if 'secure' in mechanisms:
    if not max_client_examples or max_client_examples < 1:
      raise ValueError(f'a secure aggregation needs max_client_examples >= 1, got '
                       f'{max_client_examples}')
    return GroupMeanFactory(
        variable_groups,
        value_sum_factory=tff.aggregators.SecureSumFactory(c.secure_value_bound,
                                                           -c.secure_value_bound),
        weight_sum_factory=tff.aggregators.SecureSumFactory(1.0, 0.0),
        weight_scale=1.0 / max_client_examples)
  if 'compressed' in mechanisms:
    return GroupMeanFactory(variable_groups,
                            value_sum_factory=tff.aggregators.EncodedSumFactory
                            .quantize_above_threshold(c.quantization_bits,
                                                      c.quantization_min_size))
  return GroupMeanFactory(variable_groups)


def expected_group_holders(modality_masks: list, clients_per_round: int) -> tuple:
  """(slot a, slot b, fusion): the expected number of sampled clients holding each group.

  `modality_masks` holds one (has_a, has_b) per client of the population; a round
  samples `clients_per_round` of them uniformly without replacement.
  """
  n = len(modality_masks)
  if n == 0 or not 0 < clients_per_round <= n:
    raise ValueError(f'need 0 < clients_per_round <= population, got {clients_per_round} of {n}')
  holders_a = sum(1 for m in modality_masks if m[0] > 0)
  holders_b = sum(1 for m in modality_masks if m[1] > 0)
  return (clients_per_round * holders_a / n, clients_per_round * holders_b / n,
          float(clients_per_round))


def update_bytes(weights_type, aggregation_config: config_lib.AggregationConfig) -> int:
  """Bytes one client sends per round: its update and its three group weights.

  float32 values take 4 bytes (plain, DP and secure sums; secure aggregation's own
  protocol overhead is not counted); a quantised tensor takes its bit-packed values
  (ceil(size * bits / 32) int32 words) plus its minimum and maximum (two float32).
  """
  c = aggregation_config
  specs = tff.types.type_to_tf_tensor_specs(weights_type)
  total = 4 * 3
  for spec in list(specs.trainable) + list(specs.non_trainable):
    size = int(np.prod(spec.shape, dtype=np.int64))
    if 'compressed' in c.mechanisms and size > c.quantization_min_size:
      total += 4 * math.ceil(size * c.quantization_bits / 32) + 8
    else:
      total += 4 * size
  return total


def build_server_update_finalizer(weights_type, server_optimizer: tff.learning.optimizers.Optimizer,
                                  non_negative: tuple = ()
                                  ) -> tff.learning.templates.FinalizerProcess:
  """Trainable weights: the server optimiser on the mean delta; non-trainable: w - delta.

  With `build_sgdm(learning_rate=1.0)` the trainable update is w - 1.0 * delta,
  bit for bit the plain FedAvg step.  `non_negative`: one bool per non-trainable
  weight (default all False); those marked are clipped at 0 after the update
  (batch-norm moving variances: a DP mean's noise can push them below 0).  Clipping
  the released mean is post-processing: it changes no privacy guarantee, and it never
  changes a mean of non-negative client values.
  """
  non_trainable_count = len(weights_type.non_trainable)
  non_negative = tuple(non_negative) or (False,) * non_trainable_count
  if len(non_negative) != non_trainable_count:
    raise ValueError(f'non_negative has {len(non_negative)} entries for '
                     f'{non_trainable_count} non-trainable weights')
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
    non_trainable = [tf.maximum(w - d, 0.0) if positive else w - d for w, d, positive in
                     zip(weights.non_trainable, delta.non_trainable, non_negative)]
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
