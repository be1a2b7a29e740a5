"""Named methods and the resumable grid runner with its report."""

import math
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff import grid
from fedcmi_tff.programs import methods

NAMES = ('audio', 'visual')


def test_each_method_changes_only_its_own_settings():
  base = config_lib.ExperimentConfig()
  expect = {
      'fedcmi_no_infiltration': ('objective', 'distillation_weight', 0.0),
      'fedcmi_constant_temperature': ('objective', 'temperature_mode',
                                      config_lib.TemperatureMode.CONSTANT),
      'fedcmi_no_proximal': ('objective', 'proximal_strength', 0.0),
      'fedcmi_direction_consistent': ('objective', 'direction_consistent_temperature', True),
  }
  for method, (group, field, value) in expect.items():
    config = methods.method_config(method, base, NAMES)
    assert config.algorithm == 'fedcmi' and getattr(getattr(config, group), field) == value
    assert config.federation == base.federation and config.training == base.training
  unimodal = methods.method_config('unimodal_visual', base, NAMES)
  assert (unimodal.algorithm, unimodal.federation.only_modality,
          unimodal.federation.multi_ratio) == ('fedavg', 'visual', 0.0)
  central = methods.method_config('centralised', base, NAMES)
  assert (central.federation.num_clients, central.federation.clients_per_round,
          central.federation.multi_ratio) == (1, 1, 1.0)
  assert math.isinf(central.federation.dirichlet_alpha)
  assert methods.method_config('fedavg_pmr', base, NAMES).algorithm == 'fedavg_pmr'
  with pytest.raises(ValueError, match='unknown method'):
    methods.method_config('unimodal_smell', base, NAMES)


def test_grid_cells_run_partition_free_methods_once():
  base = config_lib.ExperimentConfig()
  cells = grid.grid_cells(base, ['fedavg', 'unimodal_audio', 'centralised'], [0.1, 1.0],
                          [1.0, 0.5], [0, 1], NAMES, '/out')
  count = {m: sum(c['method'] == m for c in cells) for m in ('fedavg', 'unimodal_audio',
                                                            'centralised')}
  assert count == {'fedavg': 2 * 2 * 2, 'unimodal_audio': 2 * 2, 'centralised': 2}
  assert len({c['dir'] for c in cells}) == len(cells)


def _run_grid(out, rounds, capfd):
  with flagsaver.flagsaver():
    flags.FLAGS(['grid', f'--output_dir={out}', '--methods=fedavg,unimodal_visual',
                 '--dirichlet_alphas=1.0', '--multi_ratios=0.5', '--seeds=0',
                 f'--rounds={rounds}', '--num_clients=4', '--clients_per_round=2',
                 '--local_epochs=1'])
    assert grid.main(['grid']) == 0
  return capfd.readouterr().out


def test_grid_skips_finished_cells_and_resumes_unfinished_ones(tmp_path, capfd):
  out = tmp_path / 'grid'
  first = _run_grid(out, 1, capfd)
  assert 'grid: 2 cells, 0 already finished, 2 to run' in first
  assert 'grid: 2/2 cells done' in first
  for name in ('report.md', 'report.csv', 'fig_accuracy_per_round.png', 'fig_per_class.png',
               'fig_modality_gap.png'):
    assert (out / name).exists(), name
  metrics = out / 'alpha_1' / 'ratio_0.5' / 'fedavg' / 'seed_0' / 'metrics.csv'
  stamp = os.stat(metrics).st_mtime_ns
  second = _run_grid(out, 1, capfd)
  assert 'grid: 2 cells, 2 already finished, 0 to run' in second
  assert os.stat(metrics).st_mtime_ns == stamp  # nothing finished is rewritten
  third = _run_grid(out, 2, capfd)
  assert 'grid: 2 cells, 0 already finished, 2 to run' in third
  rows = metrics.read_text().strip().splitlines()
  assert [r.split(',')[0] for r in rows[1:]] == ['1', '2']
  assert '| fedavg | 1 |' in (out / 'report.md').read_text()
