"""Adding a method is one file plus one registry line: a toy method trains end to end."""

import json

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry
from fedcmi_tff.programs import experiment
from tests import toy_method

CHANCE = 1.0 / 6.0


def test_smoothed_cross_entropy_golden_number():
  logits = tf.constant([[2.0, 0.0, -1.0]])
  p = np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum()
  targets = np.array([0.9, 0.0, 0.0]) + 0.1 / 3
  expected = -(targets * np.log(p)).sum()
  got = toy_method.smoothed_cross_entropy(tf.constant([0]), logits, 0.1)
  assert float(got) == pytest.approx(expected, rel=1e-6)


def test_a_registered_toy_method_trains_through_the_programs(tmp_path, monkeypatch):
  # The one registry line:
  monkeypatch.setitem(registry._ALGORITHMS, 'fedavg_label_smoothing', registry.Algorithm(
      lambda o: toy_method.LabelSmoothingObjective(0.1), False, (), 'FedAvg + label smoothing'))
  assert 'fedavg_label_smoothing' in registry.method_names(('audio', 'visual'))
  config = registry.method_config('fedavg_label_smoothing', config_lib.ExperimentConfig(
      federation=config_lib.FederationConfig(num_clients=6, clients_per_round=3, rounds=4),
      training=config_lib.LocalTrainingConfig(learning_rate=0.02, min_learning_rate=0.02,
                                              local_epochs=1)), ('audio', 'visual'))
  result = experiment.run_experiment(config, str(tmp_path / 'toy'), log=lambda line: None,
                                     method='fedavg_label_smoothing')
  assert result.summary['best']['acc_fused'] > 2 * CHANCE
  assert result.summary['best']['acc_fused'] > result.rows[0]['acc_fused']
  recorded = json.loads((tmp_path / 'toy' / 'config.json').read_text())
  assert (recorded['method'], recorded['algorithm'], recorded['objective']) == (
      'fedavg_label_smoothing', 'fedavg_label_smoothing', {})
