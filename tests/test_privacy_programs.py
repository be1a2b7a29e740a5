"""End to end: experiments with --aggregator dp / secure / compressed, and the privacy grid."""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff import privacy_grid
from fedcmi_tff.backends import inprocess
from fedcmi_tff.privacy import accounting
from fedcmi_tff.programs import experiment
from fedcmi_tff.programs import flag_config
from fedcmi_tff.programs import privacy_report

import tensorflow_federated as tff

FAST = config_lib.ExperimentConfig(
    algorithm='fedavg',
    federation=config_lib.FederationConfig(num_clients=6, clients_per_round=3, rounds=3,
                                           seed=7),
    training=config_lib.LocalTrainingConfig(learning_rate=0.02, min_learning_rate=0.02,
                                            local_epochs=1))


@pytest.fixture(autouse=True)
def inprocess_context():
  tff.framework.get_context_stack().set_default_context(
      inprocess.InProcessContext(devices=[]))


@pytest.fixture(scope='module')
def cache():
  return {}


def _quiet(_):
  pass


def _rows(run_dir):
  with open(run_dir / 'metrics.csv', newline='') as f:
    return list(csv.DictReader(f))


def _with(aggregation, rounds=3):
  return dataclasses.replace(
      FAST, aggregation=aggregation,
      federation=dataclasses.replace(FAST.federation, rounds=rounds))


def test_private_run_reports_epsilon_per_round_and_resumes_from_its_state(tmp_path, cache):
  dp = config_lib.AggregationConfig(mechanisms=('dp',), noise_multiplier=1.5, clip_norm=0.5)
  lines = []
  experiment.run_experiment(_with(dp, rounds=2), str(tmp_path / 'run'), log=lines.append,
                            process_cache=cache)
  # The DP state (TFF's query state with its accounting event) survives the checkpoint.
  experiment.run_experiment(_with(dp), str(tmp_path / 'run'), resume=True, log=lines.append,
                            process_cache=cache)
  rows = _rows(tmp_path / 'run')
  expected = accounting.epsilon_per_round(accounting.DpFedAvgMechanism(
      noise_multiplier=1.5, clients_per_round=3, num_clients=6, rounds=3,
      delta=accounting.default_delta(6)))
  assert [float(r['dp_epsilon']) for r in rows] == pytest.approx(expected, rel=1e-12)
  assert [float(r['dp_clip_norm']) for r in rows] == [0.5] * 3
  # Public denominators: 3 sampled of 6 clients, each kind's share of the population.
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  holders = summary['aggregation']['expected_holders']
  assert holders[2] == 3.0 and 0 < holders[0] <= 3 and 0 < holders[1] <= 3
  assert float(rows[0]['weight_audio']) == pytest.approx(holders[0])
  privacy = summary['aggregation']['privacy']
  assert privacy['epsilon'] == pytest.approx(expected[-1]) and privacy['rounds'] == 3
  assert any('eps ' in line for line in lines if line.startswith('round   3/3'))
  assert any(line.startswith('aggregation: dp: noise multiplier 1.5') for line in lines)


def test_secure_run_counts_the_values_its_bound_clips(tmp_path, cache):
  secure = config_lib.AggregationConfig(mechanisms=('secure',), secure_value_bound=1e-4)
  experiment.run_experiment(_with(secure, rounds=1), str(tmp_path / 's'), log=_quiet,
                            process_cache=cache)
  assert float(_rows(tmp_path / 's')[0]['secure_clipped_values']) > 0  # a tiny bound clips


def test_privacy_grid_writes_accuracy_against_epsilon_and_bytes(tmp_path, capfd):
  out = tmp_path / 'privacy'
  with flagsaver.flagsaver():
    flags.FLAGS(['privacy_grid', f'--output_dir={out}', '--methods=fedavg', '--seeds=0',
                 '--noise_multipliers=2', '--quantization_bit_levels=4', '--rounds=1',
                 '--num_clients=6', '--clients_per_round=3', '--local_epochs=1',
                 '--dp_clip_norm=0.5'])
    assert privacy_grid.main(['privacy_grid']) == 0
  printed = capfd.readouterr().out
  assert 'privacy_grid: 3 runs, 0 already finished, 3 to run' in printed
  report = (out / 'report.md').read_text()
  epsilon = accounting.epsilon(accounting.DpFedAvgMechanism(
      noise_multiplier=2.0, clients_per_round=3, num_clients=6, rounds=1,
      delta=accounting.default_delta(6)))
  assert f'| dp_z2 | fedavg | 1 | {epsilon:.2f} |' in report
  assert '| mean | fedavg | 1 | none |' in report
  assert '| compressed_4bit | fedavg | 1 | none |' in report
  compressed = out / 'compressed_4bit' / 'fedavg' / 'seed_0'
  summary = json.loads((compressed / 'summary.json').read_text())['aggregation']
  with np.load(compressed / 'checkpoint.npz') as saved:
    sizes = [saved[k].size for k in saved.files if k[0] in 'tn' and k[1:].isdigit()]
  # float32: 4 bytes a value and 12 for the group weights; quantised: bit-packed 4-bit
  # values in 32-bit words plus each tensor's minimum and maximum.
  assert summary['dense_update_bytes_per_client_per_round'] == 4 * sum(sizes) + 12
  assert summary['update_bytes_per_client_per_round'] == sum(
      4 * math.ceil(n * 4 / 32) + 8 for n in sizes) + 12
  for name in ('report.csv', 'fig_accuracy_vs_epsilon.png', 'fig_accuracy_vs_bytes.png'):
    assert (out / name).exists(), name
  assert math.isinf(float([line for line in (out / 'report.csv').read_text().splitlines()
                           if line.startswith('mean,')][0].split(',')[3]))


def test_privacy_grid_refuses_methods_outside_the_population(tmp_path, capsys):
  with flagsaver.flagsaver():
    flags.FLAGS(['privacy_grid', f'--output_dir={tmp_path}', '--methods=centralised'])
    assert privacy_grid.main(['privacy_grid']) == 2
  assert 'does not train on the federated population' in capsys.readouterr().err


def test_privacy_preset_covers_three_noise_levels_at_a_population_of_hundreds(monkeypatch):
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  with flagsaver.flagsaver():
    flags.FLAGS(['privacy_grid', '--flagfile=configs/privacy.flags'])
    base = flag_config.base_config()
    setting_list = privacy_report.settings(base.aggregation,
                                           [float(z) for z in flags.FLAGS.noise_multipliers],
                                           [int(b) for b in flags.FLAGS.quantization_bit_levels])
    cells = privacy_report.privacy_cells(base, flag_config.METHODS.value, setting_list,
                                         [int(s) for s in flag_config.SEEDS.value],
                                         ('audio', 'visual'), flag_config.OUTPUT_DIR.value)
  assert base.federation.num_clients >= 200 and base.synthetic_train_examples == 6000
  noise = sorted({c['config'].aggregation.noise_multiplier for c in cells
                  if c['config'].aggregation.private})
  assert len(noise) >= 3 and {c['method'] for c in cells} == {'fedcmi', 'fedavg'}
  # 2 methods x (mean + 3 DP + 3 quantised) x 3 seeds, each in its own folder.
  assert len(cells) == 2 * 7 * 3 == len({c['dir'] for c in cells})
