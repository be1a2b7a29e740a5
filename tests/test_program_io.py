"""Program state and release managers (programs/program_io.py), the method registry's
applied configuration, the flag table, and evaluation.accuracy_metrics: no training."""

import asyncio
import collections
import dataclasses
import json
import math

import numpy as np
import pytest
import tensorflow_federated as tff
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry
from fedcmi_tff.learning import evaluation
from fedcmi_tff.programs import experiment
from fedcmi_tff.programs import flag_config
from fedcmi_tff.programs import program_io

Weights = tff.learning.models.ModelWeights


def _state(seed):
  rng = np.random.default_rng(seed)
  return {'round': np.int64(0),
          'weights': Weights(trainable=[rng.normal(size=(2, 3)).astype(np.float32)],
                             non_trainable=[rng.normal(size=3).astype(np.float32)]),
          'state': collections.OrderedDict(
              a=rng.normal(size=4).astype(np.float32), b=(np.int32(seed), np.float32(2.5)))}


def test_npz_program_state_round_trip_keeps_only_the_latest_version(tmp_path):
  manager = program_io.NpzProgramStateManager(str(tmp_path))
  assert asyncio.run(manager.get_versions()) is None
  assert asyncio.run(manager.load_latest(_state(0))) == (None, 0)
  asyncio.run(manager.save(_state(1), 3))
  asyncio.run(manager.save(_state(2), 4))
  assert asyncio.run(manager.get_versions()) == [4]
  loaded, version = asyncio.run(manager.load_latest(_state(0)))
  expected = _state(2)
  assert version == 4 and loaded['round'] == 4
  np.testing.assert_array_equal(loaded['state']['a'], expected['state']['a'])
  assert loaded['state']['b'][0] == 2 and isinstance(loaded['state'], collections.OrderedDict)
  np.testing.assert_array_equal(loaded['weights'].trainable[0], expected['weights'].trainable[0])
  with pytest.raises(tff.program.ProgramStateNotFoundError):
    asyncio.run(manager.load(3, _state(0)))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.npz']


def test_legacy_corrupt_and_foreign_checkpoints_are_named(tmp_path):
  path = tmp_path / 'checkpoint.npz'
  # The weight-only format of earlier versions.
  np.savez(path, round=np.int64(5), num_trainable=np.int64(1), num_non_trainable=np.int64(0),
           t0=np.ones(3, np.float32))
  manager = program_io.NpzProgramStateManager(str(tmp_path))
  with pytest.raises(program_io.LegacyCheckpointError) as legacy:
    asyncio.run(manager.load(5, _state(0)))
  assert legacy.value.round_num == 5 and legacy.value.weights[0][0].tolist() == [1, 1, 1]
  asyncio.run(manager.save(_state(1), 2))
  bigger = _state(1)
  bigger['state']['c'] = np.zeros(2)
  with pytest.raises(program_io.CheckpointError, match='another model or process'):
    asyncio.run(manager.load(2, bigger))
  path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(program_io.CheckpointError, match=str(path)):
    asyncio.run(manager.get_versions())


def test_rows_csv_release_replaces_the_rounds_it_repeats(tmp_path):
  path = tmp_path / 'metrics.csv'
  manager = program_io.RowsCSVReleaseManager(str(path))
  for key in (1, 2, 3):
    asyncio.run(manager.release(collections.OrderedDict(b=key * 1.5, a=f'c{key} x'), key))
  asyncio.run(manager.release([{'b': 9.0, 'a': 'again'}, {'b': 10.0, 'a': 'twice'}], 2))
  lines = path.read_text().splitlines()
  assert lines == ['round,b,a', '1,1.5,c1 x', '2,9.0,again', '2,10.0,twice']
  assert program_io.read_rows(str(path), 1) == [{'round': 1, 'b': 1.5, 'a': 'c1 x'}]


def test_accuracy_metrics_golden_numbers():
  # Class counts [2, 4, 0] (class 2 absent); fused right on 1 of 2 and 4 of 4.
  counts = {'fused': (np.array([1., 4., 0.]), np.array([2., 4., 0.])),
            'audio_path': (np.array([0., 3., 0.]), np.array([2., 4., 0.]))}
  metrics, per_class = evaluation.accuracy_metrics(counts, ['x', 'y', 'z'])
  assert metrics['acc_fused'] == pytest.approx(5 / 6)
  assert metrics['acc_audio_path'] == pytest.approx(3 / 6)
  assert metrics['acc_macro'] == pytest.approx((0.5 + 1.0) / 2)  # absent class left out
  assert metrics['acc_worst_class'] == pytest.approx(0.5)
  assert metrics['acc_class_spread'] == pytest.approx(0.5)
  assert metrics['acc_class_x'] == 0.5 and metrics['acc_class_y'] == 1.0
  assert math.isnan(metrics['acc_class_z'])
  np.testing.assert_allclose(per_class['audio_path'][:2], [0.0, 0.75])
  assert list(metrics)[:2] == ['acc_fused', 'acc_audio_path']


def test_runs_record_only_the_objective_fields_their_algorithm_applies():
  base = config_lib.ExperimentConfig()
  applied = {a: registry.applied_config(dataclasses.replace(base, algorithm=a))['objective']
             for a in registry.ALGORITHMS}
  assert applied['fedavg'] == {}
  assert applied['fedprox'] == {'proximal_strength': 0.01}
  assert set(applied['fedavg_ogm_ge']) == set(applied['fedavg_pmr']) == {
      'modulation_strength', 'modulation_start_round', 'modulation_end_round'}
  assert set(applied['fedcmi']) == {
      'distillation_weight', 'self_head_weight', 'temperature_sharpness', 'temperature_mode',
      'direction_consistent_temperature', 'warmup_rounds', 'teacher_confidence_threshold',
      'proximal_strength'}
  # A FedAvg run compares equal whatever FedCMI's unused lambda is ...
  fedavg = dataclasses.replace(base, algorithm='fedavg')
  other_lambda = dataclasses.replace(fedavg, objective=dataclasses.replace(
      base.objective, distillation_weight=7.0))
  assert experiment.comparable(fedavg) == experiment.comparable(other_lambda)
  # ... and to the config.json an earlier version wrote (every objective field, the
  # objective / modulation enums, training.total_rounds).
  old = json.loads(json.dumps(fedavg.to_dict()))
  old['objective'].update(objective='fused_only', modulation='none', distillation_weight=7.0)
  old['training']['total_rounds'] = 40
  assert experiment.comparable(old) == experiment.comparable(fedavg)


def test_every_config_field_has_one_flag_with_the_field_default():
  assert set(flag_config._FIELD_FLAGS) | flag_config._NOT_FLAGS == flag_config.config_fields()
  defaults = config_lib.ExperimentConfig()
  for (group, field), (flag, convert) in flag_config._FIELD_FLAGS.items():
    holder = defaults if group is None else getattr(defaults, group)
    value = convert(flag.default) if convert else flag.default
    assert value == getattr(holder, field), (group, field)
  with flagsaver.flagsaver():
    flags.FLAGS.unparse_flags()  # every flag at its default, without the programs' validators
    flags.FLAGS.mark_as_parsed()
    assert flag_config.base_config() == defaults


def test_method_names_cover_algorithms_ablations_unimodal_and_centralised():
  names = registry.method_names(('image', 'text'))
  assert names[:len(registry.ALGORITHMS)] == registry.ALGORITHMS
  assert {'fedcmi_no_proximal', 'unimodal_image', 'unimodal_text', 'centralised'} <= set(names)
  base = config_lib.ExperimentConfig()
  ablation = registry.method_config('fedcmi_no_proximal', base, ('image', 'text'))
  assert (ablation.algorithm, ablation.objective.proximal_strength) == ('fedcmi', 0.0)
  assert registry.ignores_multi_ratio('unimodal_text', ('image', 'text'))
  assert not registry.ignores_label_split('unimodal_text', ('image', 'text'))
  assert registry.ignores_label_split('centralised', ('image', 'text'))
  with pytest.raises(ValueError, match='unknown method .unimodal_audio.'):
    registry.method_config('unimodal_audio', base, ('image', 'text'))


def test_distillation_diagnostics_hand_values():
  train = {'teacher_correct_a': np.array([3.0, 0.0, 1.0]),
           'teacher_correct_b': np.array([1.0, 0.0, 0.0]),
           'teacher_class_count': np.array([4.0, 0.0, 2.0]),
           'class_temperature_sum': np.array([2.0, 1.2, 1.6]), 'temperature_clients': 2.0}
  columns, paths = experiment._distillation_diagnostics(train, ('audio', 'visual'))
  assert columns['teacher_acc_audio'] == 4 / 6 and columns['teacher_acc_visual'] == 1 / 6
  np.testing.assert_allclose(paths['teacher_audio'], [0.75, np.nan, 0.5])
  np.testing.assert_allclose(paths['temperature'], [1.0, 0.6, 0.8])
  assert (columns['min_class_temperature'], columns['max_class_temperature']) == (0.6, 1.0)
  assert experiment._distillation_diagnostics({'loss_sum': 1.0}, ('a', 'b')) == ({}, {})
