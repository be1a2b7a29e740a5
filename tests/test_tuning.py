"""Equal-budget tuning: the trials, the choice on the validation split, and applying it."""

import dataclasses
import json
import math
import os

import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff import grid
from fedcmi_tff import tune
from fedcmi_tff.programs import flag_config
from fedcmi_tff.programs import grid_runner
from fedcmi_tff.programs import tuning

NAMES = ('audio', 'visual')


def _base():
  return config_lib.ExperimentConfig(
      training=config_lib.LocalTrainingConfig(learning_rate=0.03, min_learning_rate=0.003),
      objective=config_lib.ObjectiveConfig(distillation_weight=2.0, proximal_strength=0.01))


def test_every_algorithm_gets_the_same_budget_starting_from_the_base_values():
  base = _base()
  for algorithm, space in tuning.SEARCH_SPACES.items():
    trials = tuning.trials(algorithm, base, 6, sampler_seed=0)
    assert len(trials) == 6
    assert set(trials[0]) == set(space)
    assert trials[0][tuning.LEARNING_RATE] == 0.03
    for values in trials[1:]:
      for name, (lo, hi) in space.items():
        assert lo <= values[name] <= hi * (1 + 1e-3), (algorithm, name, values[name])
    assert len({json.dumps(t, sort_keys=True) for t in trials}) == 6
  # Every algorithm tries the same learning rates; the other values differ per algorithm.
  rates = {a: [t[tuning.LEARNING_RATE] for t in tuning.trials(a, base, 6, 0)]
           for a in tuning.SEARCH_SPACES}
  assert all(r == rates['fedavg'] for r in rates.values())
  assert ([t['objective.proximal_strength'] for t in tuning.trials('fedprox', base, 6, 0)[1:]]
          != [t['objective.proximal_strength'] for t in tuning.trials('fedcmi', base, 6, 0)[1:]])
  fedcmi = tuning.trials('fedcmi', base, 6, 0)
  assert fedcmi[0] == {'training.learning_rate': 0.03, 'objective.distillation_weight': 2.0,
                       'objective.proximal_strength': 0.01}
  # Seeded: reproducible, and another sampler seed draws other values.
  assert tuning.trials('fedcmi', base, 6, 0) == fedcmi
  assert tuning.trials('fedcmi', base, 6, 1) != fedcmi
  # Stratified: each of the 5 draws of every value lies in its own fifth of the log range.
  for name, (lo, hi) in tuning.SEARCH_SPACES['fedcmi'].items():
    strata = sorted(int(5 * (math.log(t[name]) - math.log(lo)) / (math.log(hi) - math.log(lo)))
                    for t in fedcmi[1:])
    assert strata == [0, 1, 2, 3, 4], name
  with pytest.raises(ValueError, match='no search space'):
    tuning.trials('fedsgd', base, 3, 0)
  with pytest.raises(ValueError, match='>= 1 trial'):
    tuning.trials('fedavg', base, 0, 0)


def test_draws_are_log_uniform_over_the_range():
  # 2000 stratified draws of a log-uniform lr in [0.01, 0.1]: the median of log10 is -1.5
  # and a quarter of the draws falls in each quarter of the log range.
  many = tuning.trials('fedavg', _base(), 2001, 3)[1:]
  logs = sorted(math.log10(t[tuning.LEARNING_RATE]) for t in many)
  assert logs[1000] == pytest.approx(-1.5, abs=0.05)
  below = sum(l < -1.75 for l in logs) / len(logs)
  assert below == pytest.approx(0.25, abs=0.04)


def test_apply_values_moves_the_whole_learning_rate_schedule():
  config = tuning.apply_values(_base(), {'training.learning_rate': 0.06,
                                         'objective.proximal_strength': 0.1})
  assert config.training.learning_rate == 0.06
  assert config.training.min_learning_rate == pytest.approx(0.006)
  assert config.objective.proximal_strength == 0.1
  assert config.objective.distillation_weight == 2.0
  with pytest.raises(ValueError, match="'training.speed' is not a group.field"):
    tuning.apply_values(_base(), {'training.speed': 1.0})
  with pytest.raises(ValueError, match='is not a group.field'):
    tuning.apply_values(_base(), {'dataset': 'x'})


def test_choose_takes_the_highest_score_and_refuses_non_finite_ones():
  assert tuning.choose([0.5, 0.7, 0.7, 0.6]) == 1
  with pytest.raises(ValueError, match='trial 1 has a non-finite score'):
    tuning.choose([0.5, math.nan])
  with pytest.raises(ValueError, match='no trial scores'):
    tuning.choose([])


def test_tuned_values_reach_every_method_of_the_algorithm():
  tuned = {'algorithms': {
      'fedcmi': {'values': {'training.learning_rate': 0.06,
                            'objective.distillation_weight': 0.5,
                            'objective.proximal_strength': 0.05}},
      'fedavg': {'values': {'training.learning_rate': 0.02}}}}
  base = _base()
  no_proximal = tuning.tuned_config(base, 'fedcmi_no_proximal', NAMES, tuned)
  # FedCMI's choice first, then the ablation's own change on top.
  assert (no_proximal.training.learning_rate, no_proximal.objective.distillation_weight,
          no_proximal.objective.proximal_strength) == (0.06, 0.5, 0.0)
  unimodal = tuning.tuned_config(base, 'unimodal_visual', NAMES, tuned)
  assert unimodal.training.learning_rate == 0.02
  assert unimodal.federation.only_modality == 'visual'
  # Not tuned: the base values.
  prox = tuning.tuned_config(base, 'fedprox', NAMES, tuned)
  assert prox.training == base.training and prox.algorithm == 'fedprox'
  assert tuning.tuned_config(base, 'fedavg', NAMES, None).training == base.training


def test_load_tuned_names_the_file_and_what_is_missing(tmp_path):
  bad = tmp_path / 'tuned.json'
  bad.write_text('{"algorithms": {"fedavg": {"score": 1}}}')
  with pytest.raises(ValueError, match=r'tuned.json: algorithms.fedavg has no "values"'):
    tuning.load_tuned(str(bad))
  bad.write_text('[1, 2')
  with pytest.raises(ValueError, match='not JSON'):
    tuning.load_tuned(str(bad))


_TINY = ['--num_clients=4', '--clients_per_round=2', '--local_epochs=1', '--rounds=2',
         '--validation_fraction=0.2', '--learning_rate=0.03', '--min_learning_rate=0.003']


def test_tune_scores_trials_on_validation_only_and_grid_trains_with_the_choice(
    tmp_path, capfd):
  out = tmp_path / 'tune'
  with flagsaver.flagsaver():
    flags.FLAGS(['tune', f'--output_dir={out}', '--methods=fedavg', '--tuning_budget=3',
                 '--seeds=5', '--num_shards=2', '--shard_index=1'] + _TINY)
    assert tune.main(['tune']) == 0
  printed = capfd.readouterr().out
  assert 'tune: 3 trials, 0 already finished, 3 to run (shard 1 of 2: 2 of them)' in printed
  assert 'not finished yet' in printed and not (out / 'tuned.json').exists()
  with flagsaver.flagsaver():
    flags.FLAGS(['tune', f'--output_dir={out}', '--methods=fedavg', '--tuning_budget=3',
                 '--seeds=5', '--num_shards=2', '--shard_index=0'] + _TINY)
    assert tune.main(['tune']) == 0
  printed = capfd.readouterr().out
  assert '2 already finished, 1 to run (shard 0 of 2: 1 of them)' in printed
  record = json.loads((out / 'tuned.json').read_text())
  scores = []
  for k in range(3):
    summary = json.loads((out / 'fedavg' / f'trial_{k}' / 'seed_5' / 'summary.json').read_text())
    assert summary['selected_on'] == 'validation'
    rows = (out / 'fedavg' / f'trial_{k}' / 'seed_5' / 'metrics.csv').read_text().splitlines()
    header = rows[0].split(',')
    column = header.index('val_acc_fused')
    values = [float(r.split(',')[column]) for r in rows[1:]]
    scores.append(sum(values) / len(values))  # 2 rounds <= the last-rounds window
    assert summary['config']['training']['learning_rate'] == (
        record['algorithms']['fedavg']['trials'][k]['values']['training.learning_rate'])
  best = max(range(3), key=lambda k: (scores[k], -k))
  entry = record['algorithms']['fedavg']
  assert entry['trial'] == best and entry['score'] == pytest.approx(scores[best])
  assert [t['score'] for t in entry['trials']] == pytest.approx(scores)
  assert record['budget'] == 3 and record['cell']['validation_fraction'] == 0.2
  assert '**chosen**' in (out / 'tuning.md').read_text()
  # The grid trains fedavg with the chosen learning rate (and the schedule moved with it).
  chosen = entry['values']['training.learning_rate']
  with flagsaver.flagsaver():
    flags.FLAGS(['grid', f'--output_dir={tmp_path / "g"}', '--methods=fedavg', '--seeds=0',
                 '--dirichlet_alphas=1.0', '--multi_ratios=0.5', '--synthetic_dominants=visual',
                 f'--tuned={out / "tuned.json"}', f'--report_dir={tmp_path / "g" / "r"}']
                + _TINY)
    assert grid.main(['grid']) == 0
  summary = json.loads((tmp_path / 'g' / 'dominant_visual' / 'alpha_1' / 'ratio_0.5' / 'fedavg'
                        / 'seed_0' / 'summary.json').read_text())
  assert summary['config']['training']['learning_rate'] == chosen
  assert summary['config']['training']['min_learning_rate'] == pytest.approx(chosen / 10)
  assert summary['config']['synthetic_dominant'] == 'visual'
  assert not (tmp_path / 'g' / 'report.md').exists()
  report = (tmp_path / 'g' / 'r' / 'report.md').read_text()
  assert f'fedavg: learning_rate = {chosen:g}' in report
  assert '### visual dominant, dirichlet_alpha = 1, multi_ratio = 0.5' in report


def test_tune_refuses_to_select_without_a_validation_split(tmp_path, capsys):
  with flagsaver.flagsaver():
    flags.FLAGS(['tune', f'--output_dir={tmp_path / "t"}', '--methods=fedavg',
                 '--validation_fraction=0'])
    assert tune.main(['tune']) == 2
  assert 'set --validation_fraction > 0' in capsys.readouterr().err
  with flagsaver.flagsaver():
    flags.FLAGS(['tune', f'--output_dir={tmp_path / "t"}', '--methods=fedcmi_no_proximal',
                 '--validation_fraction=0.2'])
    assert tune.main(['tune']) == 2
  assert 'tune takes algorithms' in capsys.readouterr().err
  assert not (tmp_path / 't').exists()


def test_grid_cells_with_dominants_have_a_folder_level_each():
  base = config_lib.ExperimentConfig()
  cells = grid_runner.grid_cells(base, ['fedavg'], [1.0], [0.5], [0, 1], NAMES, '/out',
                                 dominants=['audio', 'visual'])
  assert [(c['dominant'], c['seed']) for c in cells] == [
      ('audio', 0), ('audio', 1), ('visual', 0), ('visual', 1)]
  assert cells[2]['dir'] == '/out/dominant_visual/alpha_1/ratio_0.5/fedavg/seed_0'
  assert cells[2]['config'] == dataclasses.replace(
      base, algorithm='fedavg', synthetic_dominant='visual')


def _parse(program, flagfile):
  flags.FLAGS([program, f'--flagfile={flagfile}'])
  return flag_config


def test_converged_presets_describe_the_documented_runs(monkeypatch):
  """configs/tune.flags, converged.flags and ablations_converged.flags parse, cover what the
  docs say, and the ablation grid reuses the comparison grid's runs (same folders, same
  configurations)."""
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  tuned = {'algorithms': {'fedcmi': {'values': {'training.learning_rate': 0.05,
                                                 'objective.distillation_weight': 0.7,
                                                 'objective.proximal_strength': 0.02}}}}
  with flagsaver.flagsaver():
    fc = _parse('tune', 'configs/tune.flags')
    base = fc.base_config()
    assert (base.federation.num_clients, base.federation.clients_per_round,
            base.federation.rounds, base.federation.validation_fraction,
            base.federation.dirichlet_alpha, base.federation.multi_ratio) == (
                20, 10, 100, 0.2, 0.3, 0.5)
    trials = tune.trial_cells(base, fc.METHODS.value, flags.FLAGS.tuning_budget,
                              flags.FLAGS.sampler_seed, [int(s) for s in fc.SEEDS.value], 'x')
    assert len(trials) == 5 * 6 and {c['seed'] for c in trials} == {100}

  def cells(flagfile):
    with flagsaver.flagsaver():
      fc = _parse('grid', flagfile)
      assert flags.FLAGS.tuned == 'runs/tune/tuned.json'
      return grid_runner.grid_cells(
          fc.base_config(), fc.METHODS.value, [float(a) for a in flags.FLAGS.dirichlet_alphas],
          [float(r) for r in flags.FLAGS.multi_ratios], [int(s) for s in fc.SEEDS.value],
          NAMES, fc.OUTPUT_DIR.value, dominants=flags.FLAGS.synthetic_dominants,
          tuned=tuned, order=flags.FLAGS.run_order), flags.FLAGS.report_dir

  grid_cells, grid_report = cells('configs/converged.flags')
  # 2 dominant modalities x 4 alphas x 3 ratios x 6 methods x 5 seeds.
  assert len(grid_cells) == 2 * 4 * 3 * 6 * 5 and grid_report is None
  assert {c['config'].federation.rounds for c in grid_cells} == {100}
  # Cell-major: the first 30 runs are one whole cell (6 methods x 5 seeds).
  assert {(c['dominant'], c['alpha'], c['ratio']) for c in grid_cells[:30]} == {
      ('audio', '0.1', '1')}
  assert {c['seed'] for c in grid_cells[:30]} == {0, 1, 2, 3, 4}
  ablation_cells, ablation_report = cells('configs/ablations_converged.flags')
  assert len(ablation_cells) == 7 * 5 and ablation_report == 'runs/converged/ablations'
  by_dir = {c['dir']: c['config'] for c in grid_cells}
  shared = [c for c in ablation_cells if c['dir'] in by_dir]
  assert {c['method'] for c in shared} == {'fedcmi', 'fedcmi_confident_teacher', 'fedavg'}
  assert all(by_dir[c['dir']] == c['config'] for c in shared)
  no_proximal = [c for c in ablation_cells if c['method'] == 'fedcmi_no_proximal'][0]['config']
  assert (no_proximal.training.learning_rate, no_proximal.objective.distillation_weight,
          no_proximal.objective.proximal_strength) == (0.05, 0.7, 0.0)
