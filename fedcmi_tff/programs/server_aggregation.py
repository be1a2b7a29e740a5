"""The server aggregation an experiment runs with: its factory, privacy ledger and bytes.

Driver layer between `config.AggregationConfig` and the TFF wiring
(`learning/aggregators.py`): derives what the mechanisms need from the federated data
(the expected holders of each group for 'dp', the largest client for 'secure'), the
(epsilon, delta) after every round for 'dp' (`privacy/accounting.py`), the bytes a
client sends per round, and the per-round columns and summary entries the experiment
writes (docs/privacy.md).
"""

from __future__ import annotations

import collections
import dataclasses
import json

import numpy as np

from fedcmi_tff import config as config_lib
from fedcmi_tff.learning import aggregators
from fedcmi_tff.privacy import accounting

ACCOUNTING = ('user-level; RDP accountant (dp_accounting); each round samples clients_per_round '
              'of num_clients without replacement; neighbouring populations differ by one '
              'client replaced (sensitivity 2C)')


@dataclasses.dataclass(frozen=True)
class ServerAggregation:
  """One experiment's aggregation: the factory and what is reported about it."""

  config: config_lib.AggregationConfig
  factory: object  # tff.aggregators.WeightedAggregationFactory
  # What the factory was built from beyond `config` (enters the process cache key).
  inputs: dict
  update_bytes: int
  dense_update_bytes: int
  clients_per_round: int
  epsilons: tuple = ()  # 'dp': epsilon after rounds 1..T
  delta: float | None = None

  def cache_key(self) -> str:
    return json.dumps(self.inputs, sort_keys=True)

  def describe(self) -> str:
    """One log line: the mechanisms, their parameters and the bytes per client."""
    c = self.config
    parts = []
    if c.private:
      clip = (f'adaptive clip from {c.clip_norm:g} towards the {c.target_unclipped_quantile:g} '
              'quantile' if c.adaptive_clipping else f'clip {c.clip_norm:g}')
      holders = ', '.join(f'{h:.2f}' for h in self.inputs['expected_holders'])
      parts.append(f'dp: noise multiplier {c.noise_multiplier:g}, {clip}, denominators '
                   f'(expected holders per round) {holders}; epsilon after '
                   f'{len(self.epsilons)} rounds {self.epsilons[-1]:.2f} at delta '
                   f'{self.delta:.1e}; training metrics are summed without noise')
    if 'secure' in c.mechanisms:
      bound = c.clip_norm if c.private else c.secure_value_bound
      parts.append(f'secure sums, each coordinate clipped to +-{bound:g}')
    if 'compressed' in c.mechanisms:
      parts.append(f'{c.quantization_bits}-bit quantisation of tensors over '
                   f'{c.quantization_min_size} values')
    return (f'aggregation: {"; ".join(parts)}; {self.update_bytes} bytes per client per round '
            f'({self.dense_update_bytes} uncompressed)')

  def round_columns(self, round_num: int, measurements) -> collections.OrderedDict:
    """Per-round metrics.csv columns from the aggregator's measurements."""
    out = collections.OrderedDict()
    if self.config.private:
      out['dp_epsilon'] = self.epsilons[round_num - 1]
      clip = measurements['dp']['dp_query_metrics'].get('clip')
      out['dp_clip_norm'] = float(clip) if clip is not None else self.config.clip_norm
    if 'secure' in self.config.mechanisms:
      secure = (measurements['dp']['dp'] if self.config.private
                else measurements['value_sum'])
      out['secure_clipped_values'] = float(np.sum(secure['secure_upper_clipped_count']) +
                                           np.sum(secure['secure_lower_clipped_count']))
    return out

  def progress(self, round_num: int) -> str:
    """The part of the progress line about privacy ('' without dp)."""
    if not self.config.private:
      return ''
    return f'  eps {self.epsilons[round_num - 1]:.2f} (delta {self.delta:.1e})'

  def summary(self, rounds_completed: int) -> dict:
    """summary.json's 'aggregation' entry."""
    out = {'mechanisms': list(self.config.mechanisms) or ['mean'],
           'update_bytes_per_client_per_round': self.update_bytes,
           'dense_update_bytes_per_client_per_round': self.dense_update_bytes,
           'uplink_bytes_per_round': self.update_bytes * self.clients_per_round}
    out.update(self.inputs)
    if self.config.private:
      out['privacy'] = {
          'epsilon': self.epsilons[rounds_completed - 1], 'delta': self.delta,
          'noise_multiplier': self.config.noise_multiplier,
          'rounds': rounds_completed, 'accounting': ACCOUNTING}
    return out


def build(aggregation_config: config_lib.AggregationConfig, *, variable_groups: tuple,
          weights_type, modality_masks: list, client_examples: list,
          federation: config_lib.FederationConfig) -> ServerAggregation:
  """The aggregation of an experiment.

  Args:
    aggregation_config: the mechanisms and their parameters.
    variable_groups: the model's variable groups (`processes.model_structure`).
    weights_type: the TFF type of the model weights (`processes.model_structure`).
    modality_masks: (has_a, has_b) of every client of the population.
    client_examples: every client's training example count.
    federation: population, clients per round and rounds.
  """
  c = aggregation_config
  inputs = {}
  if c.private:
    inputs['expected_holders'] = list(aggregators.expected_group_holders(
        modality_masks, federation.clients_per_round))
  elif 'secure' in c.mechanisms:
    inputs['max_client_examples'] = int(max(client_examples))
  factory = aggregators.build_group_mean_factory(
      variable_groups, c, expected_holders=inputs.get('expected_holders'),
      max_client_examples=inputs.get('max_client_examples'))
  epsilons, delta = (), None
  if c.private:
    delta = c.privacy_delta or accounting.default_delta(federation.num_clients)
    epsilons = tuple(accounting.epsilon_per_round(accounting.DpFedAvgMechanism(
        noise_multiplier=c.noise_multiplier, clients_per_round=federation.clients_per_round,
        num_clients=federation.num_clients, rounds=federation.rounds, delta=delta)))
  return ServerAggregation(
      config=c, factory=factory, inputs=inputs,
      update_bytes=aggregators.update_bytes(weights_type, c),
      dense_update_bytes=aggregators.update_bytes(weights_type, config_lib.AggregationConfig()),
      clients_per_round=federation.clients_per_round, epsilons=epsilons, delta=delta)
