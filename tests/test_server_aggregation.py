"""The group mean's private, secure and compressed forms (learning/aggregators.py).

Golden values come from numpy written here: the clipped, masked records over public
denominators, the noise's standard deviation, the adaptive clip's geometric step, the
quantisation error bounds of TFF's secure sum and of the uniform quantiser, and the
bit-packed sizes.  Aggregation processes run in TFF's test context, which gives the
secure-summation intrinsics TFF's own reference semantics (plain sums of the clipped,
quantised values).
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff.learning import aggregation
from fedcmi_tff.learning import aggregators

ModelWeights = tff.learning.models.ModelWeights
# Trainable tensors in slot a, slot b, fusion; one non-trainable in slot a.
SIZES = ((4, 3, 2), (2,))
GROUPS = ((0, 1, 2), (0,))
HOLDERS = (2.0, 1.5, 3.0)


@pytest.fixture(autouse=True)
def test_context():
  tff.backends.test.set_sync_test_cpp_execution_context()


def _weights_type(sizes=SIZES):
  return tff.types.tensorflow_to_type(ModelWeights(
      trainable=[tf.TensorSpec([n], tf.float32) for n in sizes[0]],
      non_trainable=[tf.TensorSpec([n], tf.float32) for n in sizes[1]]))


def _values(seed, count=3, scale=1.0, sizes=SIZES):
  rng = np.random.default_rng(seed)
  return [ModelWeights(
      trainable=[(scale * rng.normal(size=n)).astype(np.float32) for n in sizes[0]],
      non_trainable=[(scale * rng.normal(size=n)).astype(np.float32) for n in sizes[1]])
          for _ in range(count)]


# A multimodal client, an a-only client, a b-only client.
WEIGHTS = [np.array(w, np.float32) for w in ([5, 5, 5], [3, 0, 3], [0, 2, 2])]


def _process(config, sizes=SIZES, groups=GROUPS, holders=HOLDERS, max_examples=5):
  factory = aggregators.build_group_mean_factory(
      groups, config, expected_holders=holders, max_client_examples=max_examples)
  return factory.create(_weights_type(sizes), aggregators.GROUP_WEIGHT_TYPE)


def _flat(weights):
  return np.concatenate([np.ravel(x) for x in list(weights.trainable) + list(weights.non_trainable)])


def _group_of_each_value(sizes=SIZES, groups=GROUPS):
  return np.concatenate([np.full(n, g) for n, g in zip(sizes[0] + sizes[1], groups[0] + groups[1])])


def _plain_group_mean(values, weights):
  group = _group_of_each_value()
  w = np.stack([wk[group] for wk in weights])
  total = w.sum(0)
  return np.where(total > 0, (w * np.stack([_flat(v) for v in values])).sum(0) /
                  np.where(total > 0, total, 1), 0.0)


def _dp(**kw):
  return config_lib.AggregationConfig(mechanisms=('dp',), **kw)


def test_private_mean_is_the_sum_of_clipped_masked_records_over_public_denominators():
  clip = 2.8
  values = _values(0, scale=1.0)
  process = _process(_dp(noise_multiplier=0.0, clip_norm=clip))
  out = process.next(process.initialize(), values, WEIGHTS)
  group = _group_of_each_value()
  expected = np.zeros_like(_flat(values[0]))
  for v, w in zip(values, WEIGHTS):
    record = _flat(v) * (w[group] > 0)  # every client counts once; groups it lacks zeroed
    norm = np.linalg.norm(record)
    expected += record * min(1.0, clip / norm)
  expected /= np.array(HOLDERS)[group]
  norms = [np.linalg.norm(_flat(v) * (w[group] > 0)) for v, w in zip(values, WEIGHTS)]
  assert max(norms) > clip > min(norms)  # the test clips some records and not others
  np.testing.assert_allclose(_flat(out.result), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.measurements['group_weight_totals'], HOLDERS)


@pytest.mark.parametrize('scale', [1000.0, 3e19])
def test_clipping_bound_holds_for_one_huge_update(scale):
  """3e19: finite float32 values whose float32 norm overflows (TF's clip alone gives NaN)."""
  clip = 0.25
  values = _values(1, count=1, scale=scale)
  assert np.all(np.isfinite(_flat(values[0])))
  process = _process(_dp(noise_multiplier=0.0, clip_norm=clip), holders=(1.0, 1.0, 1.0))
  out = process.next(process.initialize(), values, [np.array([9, 9, 9], np.float32)])
  assert np.linalg.norm(_flat(out.result)) == pytest.approx(clip, rel=1e-5)
  direction = _flat(values[0]).astype(np.float64)
  np.testing.assert_allclose(_flat(out.result), clip * direction / np.linalg.norm(direction),
                             rtol=1e-5, atol=1e-7)


def test_bound_norm_scales_only_records_above_the_bound():
  small = [tf.constant([3.0, 4.0]), tf.constant([[0.0]])]  # norm 5
  out = aggregation.bound_norm(small, 5.0)
  for o, v in zip(out, small):
    np.testing.assert_array_equal(o.numpy(), v.numpy())  # unchanged, bit for bit
  huge = [tf.constant([3e19, -4e19], tf.float32), tf.constant([[0.0]])]  # norm 5e19
  assert not np.isfinite(tf.linalg.global_norm(huge).numpy())  # float32 overflows
  out = aggregation.bound_norm(huge, 1e15)
  np.testing.assert_allclose(out[0].numpy(), [0.6e15, -0.8e15], rtol=1e-6)
  assert out[1].numpy()[0, 0] == 0.0 and out[0].dtype == tf.float32
  zero = aggregation.bound_norm([tf.zeros([3])], 1.0)
  np.testing.assert_array_equal(zero[0].numpy(), np.zeros(3))


def test_noise_standard_deviation_is_the_noise_multiplier_times_the_clip():
  """Zero updates: the result times the denominator is the noise alone, N(0, (z C)^2)."""
  z, clip, n = 0.7, 2.0, 40000
  sizes = ((n,), ())
  process = _process(_dp(noise_multiplier=z, clip_norm=clip), sizes=sizes,
                     groups=((2,), ()), holders=(1.0, 1.0, 4.0))
  zeros = [ModelWeights(trainable=[np.zeros(n, np.float32)], non_trainable=[])] * 2
  out = process.next(process.initialize(), zeros, [np.array([1, 1, 1], np.float32)] * 2)
  noise = np.asarray(out.result.trainable[0]) * 4.0
  # The sample standard deviation of 40000 normals is within 2 % of sigma with
  # probability > 1 - 1e-9 (its relative standard error is 1 / sqrt(2n) = 0.35 %).
  assert np.std(noise) == pytest.approx(z * clip, rel=0.02)
  assert abs(np.mean(noise)) < 5 * z * clip / math.sqrt(n)


def test_adaptive_clip_takes_the_geometric_step_of_the_unclipped_share():
  """Noise 0 and every record above the clip: the unclipped share is 0, so the next
  clip is C * exp(learning_rate * target_quantile) (Andrew et al. 2021)."""
  config = _dp(noise_multiplier=0.0, clip_norm=0.01, adaptive_clipping=True,
               target_unclipped_quantile=0.6, clip_learning_rate=0.3)
  process = _process(config)
  out = process.next(process.initialize(), _values(2), WEIGHTS)
  clip = out.measurements['dp']['dp_query_metrics']['clip']
  assert clip == pytest.approx(0.01 * math.exp(0.3 * 0.6), rel=1e-5)


def test_secure_group_mean_equals_the_plain_mean_within_its_quantisation():
  """TFF's secure sum of floats clips to [-B, B] and rounds each summand to one of 2**32
  levels, so each client's value is off by at most B / (2**32 - 1); weights lie in [0, 1]
  (divided by the largest client), off by at most 0.5 / (2**32 - 1).  The mean's error is
  then below 1e-5 for these magnitudes (float32 arithmetic dominates)."""
  bound = 4.0
  values = _values(3)
  secure = _process(config_lib.AggregationConfig(mechanisms=('secure',),
                                                 secure_value_bound=bound))
  out = secure.next(secure.initialize(), values, WEIGHTS)
  np.testing.assert_allclose(_flat(out.result), _plain_group_mean(values, WEIGHTS), atol=1e-5)
  np.testing.assert_allclose(out.measurements['group_weight_totals'], [8, 7, 10], rtol=1e-6)
  assert out.measurements['value_sum']['secure_upper_clipped_count'] == 0
  # A coordinate beyond the bound is clipped, and counted.
  values[0].trainable[0][0] = 50.0
  out = secure.next(secure.initialize(), values, WEIGHTS)
  assert out.measurements['value_sum']['secure_upper_clipped_count'] == 1


def test_compressed_mean_error_is_within_the_quantisation_bound():
  """Uniform quantisation to b bits of a weighted tensor t is off by at most
  (max t - min t) / (2**b - 1) per value; the group's error is the sum over clients
  divided by the group's total weight."""
  bits = 4
  values = _values(4)
  process = _process(config_lib.AggregationConfig(mechanisms=('compressed',),
                                                  quantization_bits=bits))
  out = process.next(process.initialize(), values, WEIGHTS)
  group = _group_of_each_value()
  sizes = SIZES[0] + SIZES[1]
  starts = np.cumsum((0,) + sizes)
  bound = np.zeros(sum(sizes))
  total = np.stack([w[group] for w in WEIGHTS]).sum(0)
  for v, w in zip(values, WEIGHTS):
    weighted = _flat(v) * w[group]
    for i in range(len(sizes)):
      part = slice(starts[i], starts[i + 1])
      bound[part] += (weighted[part].max() - weighted[part].min()) / (2**bits - 1)
  error = np.abs(_flat(out.result) - _plain_group_mean(values, WEIGHTS))
  assert np.all(error <= bound / total + 1e-6)
  assert error.max() > 0  # 4 bits do change the values


@pytest.mark.parametrize('mechanisms', [(), ('secure',), ('compressed',), ('dp',),
                                        ('dp', 'secure')])
def test_a_group_nobody_holds_keeps_its_values(mechanisms):
  """No client holds slot b: its delta is exactly 0 (DP: no holder in the population)."""
  config = config_lib.AggregationConfig(mechanisms=mechanisms, noise_multiplier=0.5)
  process = _process(config, holders=(2.0, 0.0, 2.0))
  weights = [np.array([4, 0, 4], np.float32), np.array([2, 0, 2], np.float32)]
  out = process.next(process.initialize(), _values(5, count=2), weights)
  np.testing.assert_array_equal(out.result.trainable[1], np.zeros(3))
  assert np.any(out.result.trainable[0] != 0)


def test_private_process_type_signature():
  process = _process(_dp())
  weights_type = _weights_type()
  process.next.type_signature.parameter[1].check_equivalent_to(
      tff.FederatedType(weights_type, tff.CLIENTS))
  process.next.type_signature.parameter[2].check_equivalent_to(
      tff.FederatedType(aggregators.GROUP_WEIGHT_TYPE, tff.CLIENTS))
  process.next.type_signature.result.result.check_equivalent_to(
      tff.FederatedType(weights_type, tff.SERVER))
  process.next.type_signature.result.measurements.member.group_weight_totals.check_equivalent_to(
      aggregators.GROUP_WEIGHT_TYPE)


def test_update_bytes_counts_bit_packed_quantised_tensors():
  # Sizes 4, 3, 2 | 2; quantised above 2 values at 8 bits: 4 -> 1 word + min, max = 12
  # bytes; 3 -> 12; the two 2-value tensors stay float32: 8 each; the 3 group weights 12.
  compressed = config_lib.AggregationConfig(mechanisms=('compressed',), quantization_bits=8,
                                            quantization_min_size=2)
  assert aggregators.update_bytes(_weights_type(), compressed) == 12 + 12 + 8 + 8 + 12
  assert aggregators.update_bytes(_weights_type(), config_lib.AggregationConfig()) == \
      4 * (4 + 3 + 2 + 2) + 12
  # 100 values at 3 bits: 300 bits -> 10 words.
  big = _weights_type(((100,), ()))
  assert aggregators.update_bytes(big, config_lib.AggregationConfig(
      mechanisms=('compressed',), quantization_bits=3)) == 40 + 8 + 12


def test_expected_holders_follow_the_population():
  masks = [(1, 1)] * 3 + [(1, 0)] * 4 + [(0, 1)] * 3
  assert aggregators.expected_group_holders(masks, 5) == (3.5, 3.0, 5.0)
  with pytest.raises(ValueError, match='clients_per_round'):
    aggregators.expected_group_holders(masks, 11)


def test_aggregator_names_and_combinations_are_checked():
  assert config_lib.aggregation_mechanisms(['mean']) == ()
  assert config_lib.aggregation_mechanisms(['secure', 'dp']) == ('dp', 'secure')
  with pytest.raises(ValueError, match='unknown aggregator fast'):
    config_lib.aggregation_mechanisms(['fast'])
  with pytest.raises(ValueError, match='cannot be combined'):
    config_lib.aggregation_mechanisms(['mean', 'dp'])
  with pytest.raises(ValueError, match=r"dp,secure, got 'dp,compressed'"):
    config_lib.AggregationConfig(mechanisms=('dp', 'compressed')).validate()
  with pytest.raises(ValueError, match='fixed clip_norm'):
    config_lib.AggregationConfig(mechanisms=('dp', 'secure'), adaptive_clipping=True).validate()
  with pytest.raises(ValueError, match=r'clip_norm must be in \(0, 1e\+15\], got 2e\+15'):
    _dp(clip_norm=2e15).validate()
  with pytest.raises(ValueError, match='needs expected_holders'):
    aggregators.build_group_mean_factory(GROUPS, _dp())
