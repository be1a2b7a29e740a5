"""Named methods, the resumable grid runner with its report, and compare (a one-cell grid)."""

import json
import math
import os

import pandas as pd
import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import compare
from fedcmi_tff import config as config_lib
from fedcmi_tff import grid
from fedcmi_tff.algorithms import registry as methods
from fedcmi_tff.programs import grid_runner
from fedcmi_tff.programs import report

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


def test_shards_alternate_the_methods_of_consecutive_cells():
  """Two methods, two shards: plain round robin would give one shard every run of one
  method; each shard gets half of each, and every cell exactly one shard."""
  methods_of_cells = ['fedcmi', 'fedavg'] * 6
  for count in (2, 3):
    shards = [grid_runner.shard_of(i, count) for i in range(len(methods_of_cells))]
    assert sorted(set(shards)) == list(range(count))
  shards = [grid_runner.shard_of(i, 2) for i in range(12)]
  assert shards == [0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
  for shard in (0, 1):
    mine = [m for m, s in zip(methods_of_cells, shards) if s == shard]
    assert mine.count('fedcmi') == mine.count('fedavg') == 3


def test_grid_cells_run_partition_free_methods_once():
  base = config_lib.ExperimentConfig()
  cells = grid_runner.grid_cells(base, ['fedavg', 'unimodal_audio', 'centralised'], [0.1, 1.0],
                          [1.0, 0.5], [0, 1], NAMES, '/out')
  count = {m: sum(c['method'] == m for c in cells) for m in ('fedavg', 'unimodal_audio',
                                                            'centralised')}
  assert count == {'fedavg': 2 * 2 * 2, 'unimodal_audio': 2 * 2, 'centralised': 2}
  assert len({c['dir'] for c in cells}) == len(cells)


def test_grid_cells_run_order_changes_the_order_only():
  base = config_lib.ExperimentConfig()
  args = (base, ['fedavg', 'fedcmi', 'unimodal_audio'], [0.1, 1.0], [1.0, 0.5], [0, 1, 2],
          NAMES, '/out')
  by_seed = grid_runner.grid_cells(*args)
  by_cell = grid_runner.grid_cells(*args, order='cells')
  key = lambda c: c['dir']  # noqa: E731
  assert sorted(map(key, by_seed)) == sorted(map(key, by_cell))
  assert {c['dir']: c['config'] for c in by_seed} == {c['dir']: c['config'] for c in by_cell}
  # Seed-major: seed 0 of every cell first.  Cell-major: (0.1, 1) at every seed first.
  assert [c['seed'] for c in by_seed[:10]] == [0] * 10
  first_cell = [(c['alpha'], c['ratio'], c['seed']) for c in by_cell[:7]]
  assert first_cell == [('0.1', '1', 0)] * 2 + [('0.1', 'any', 0)] + [('0.1', '1', 1)] * 2 + [
      ('0.1', 'any', 1)] + [('0.1', '1', 2)]
  with pytest.raises(ValueError, match="run order must be seeds or cells, got 'methods'"):
    grid_runner.grid_cells(*args, order='methods')


_SHARED_FLAGS = ['--num_clients=4', '--clients_per_round=2', '--local_epochs=1', '--seeds=0']


def _run_grid(out, rounds, capfd):
  with flagsaver.flagsaver():
    flags.FLAGS(['grid', f'--output_dir={out}', '--methods=fedavg,unimodal_visual',
                 '--dirichlet_alphas=1.0', '--multi_ratios=0.5', f'--rounds={rounds}']
                + _SHARED_FLAGS)
    assert grid.main(['grid']) == 0
  return capfd.readouterr().out


def test_grid_skips_finished_cells_and_resumes_unfinished_ones(tmp_path, capfd):
  out = tmp_path / 'grid'
  first = _run_grid(out, 1, capfd)
  assert 'grid: 2 cells, 0 already finished, 2 to run' in first
  assert 'grid: 2/2 cells done' in first
  for name in ('report.md', 'report.csv', 'fig_accuracy_per_round.png', 'fig_per_class.png',
               'fig_modality_gap.png', 'fig_flattening.png'):
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
  # compare is the one-cell grid of the same methods: it finds both runs finished and
  # tabulates their final rounds in the grid's vocabulary.
  with flagsaver.flagsaver():
    flags.FLAGS(['compare', f'--output_dir={out}', '--methods=fedavg,unimodal_visual',
                 '--dirichlet_alpha=1.0', '--multi_ratio=0.5', '--rounds=2'] + _SHARED_FLAGS)
    assert compare.main(['compare']) == 0
  printed = capfd.readouterr().out
  assert 'compare: 2 runs, 2 already finished, 0 to run' in printed
  table = (out / 'comparison.md').read_text()
  assert table.splitlines()[0].startswith('| method | seeds | fused | audio (own path) | '
                                          'visual (own path) | audio infil-filled')
  summary = json.loads((out / 'alpha_1' / 'ratio_any' / 'unimodal_visual' / 'seed_0' /
                        'summary.json').read_text())
  row = [line for line in table.splitlines() if line.startswith('| unimodal_visual |')][0]
  fused = row.split('|')[3].strip()
  assert fused == f'{100 * summary["final"]["acc_fused"]:.1f}'  # one seed: no interval
  assert summary['config']['method'] == 'unimodal_visual'
  csv_rows = (out / 'comparison.csv').read_text().splitlines()
  assert len(csv_rows) == 3 and csv_rows[0].startswith('method,seed,acc_fused')
  assert table in printed
  # --report_only on a larger grid runs nothing, reports the cells whose runs have all
  # finished and names the others.
  with flagsaver.flagsaver():
    flags.FLAGS(['grid', f'--output_dir={out}', '--methods=fedavg,unimodal_visual',
                 '--dirichlet_alphas=1.0,inf', '--multi_ratios=0.5', '--rounds=2',
                 f'--report_dir={out / "partial"}', '--report_only'] + _SHARED_FLAGS)
    assert grid.main(['grid']) == 0
  assert not (out / 'alpha_inf').exists()
  partial = (out / 'partial' / 'report.md').read_text()
  assert ('**Partial report**: 2 of 4 cells have finished every run and are reported here; '
          'left out (runs unfinished or not started): alpha inf, multi_ratio 0.5; alpha inf, '
          'multi_ratio any.') in partial
  reported = pd.read_csv(out / 'partial' / 'report.csv')
  assert sorted(reported['method']) == ['fedavg', 'unimodal_visual']
  assert set(reported['alpha'].astype(str)) == {'1'}
  with flagsaver.flagsaver():
    flags.FLAGS(['grid', f'--output_dir={out}', '--methods=fedavg', '--dirichlet_alphas=inf',
                 '--multi_ratios=0.5', '--rounds=2', '--report_only'] + _SHARED_FLAGS)
    assert grid.main(['grid']) == 2
  assert '--report_only: no cell has finished all its runs' in capfd.readouterr().err


def test_compare_refuses_an_unknown_method(tmp_path, capsys):
  with flagsaver.flagsaver():
    flags.FLAGS(['compare', f'--output_dir={tmp_path / "c"}', '--methods=fedavg,fedsgd'])
    assert compare.main(['compare']) == 2
  assert "unknown method 'fedsgd'" in capsys.readouterr().err
  assert not (tmp_path / 'c').exists()


def test_report_finds_the_weak_modality_from_the_runs():
  finals = pd.DataFrame({'method': ['fedavg', 'fedcmi', 'unimodal_audio'],
                         'acc_audio_own': [0.40, 0.50, 0.9], 'acc_visual_own': [0.7, 0.6, 0.1]})
  assert report.weak_modality(finals, ('audio', 'visual')) == 'audio'
  assert report.weak_modality(finals.assign(acc_audio_own=[0.8, 0.8, 0.1]),
                              ('audio', 'visual')) == 'visual'
