"""Each real dataset end to end: fixture in the published layout -> prepare program -> train program.

The README's steps from a real download, on generated fixtures: `python -m
fedcmi_tff.prepare` (run as a subprocess, as a user would), then
`python -m fedcmi_tff.train --dataset=<name> --data_dir=<prepared> --rounds=2`
(in process), which must train FedCMI and write its metrics.
"""

import csv
import json
import os
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import train
from fedcmi_tff.data import prepared
from fedcmi_tff.data import registry
from fedcmi_tff.preparation import crisismmd
from tests import av_fixtures
from tests import crisismmd_fixture
from tests import prepared_faults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_prepare(name, raw_dir, output_dir, *extra):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, '-m', 'fedcmi_tff.prepare', f'--dataset={name}', f'--raw_dir={raw_dir}',
       f'--output_dir={output_dir}', '--noprogress', *extra],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def _prepare(name, raw_dir, output_dir, *extra):
  proc = _run_prepare(name, raw_dir, output_dir, *extra)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc.stdout


def _raw(name, root):
  if name == 'crema_d':
    return av_fixtures.make_crema_d(root, actors=(1001, 1002, 1003, 1004),
                                    emotions=('ANG', 'HAP', 'SAD'), missing_wav=('1004_DFA_SAD_XX',))
  if name == 'ave':
    return av_fixtures.make_ave(root)
  return crisismmd_fixture.make_crisismmd(root)


# AVE is prepared but not trained: its model and inputs are CREMA-D's (audio + frames).
@pytest.mark.parametrize('name,modalities,trained', [
    ('crema_d', ('audio', 'visual'), True),
    ('ave', ('audio', 'visual'), False),
    ('crisismmd', ('image', 'text'), True),
])
def test_prepare_then_train_two_rounds(tmp_path, name, modalities, trained):
  raw = tmp_path / 'raw'
  _raw(name, str(raw))
  prepared_dir = tmp_path / 'prepared'
  out = _prepare(name, raw, prepared_dir)
  assert f'prepare: {name} -> {prepared_dir}' in out and 'skipped:' in out
  manifest = json.loads((prepared_dir / 'dataset.json').read_text())
  assert manifest['dataset'] == name
  if name == 'crema_d':  # the clip missing on disk is counted and named, not dropped silently
    assert '1 x audio file missing' in out and '1004_DFA_SAD_XX' in out
  if name == 'crema_d':  # a second run finds the finished preparation and does no work
    again = _prepare(name, raw, prepared_dir)
    assert 'holds a finished preparation' in again
  if not trained:
    splits = registry.load_dataset(name, data_dir=str(prepared_dir))
    assert splits.modality_names == modalities
    return

  # The dataset's preset (augmentation included), scaled down to the fixture and a 2-core CPU.
  run = tmp_path / 'run'
  with flagsaver.flagsaver():
    flags.FLAGS(['train', f'--flagfile={os.path.join(REPO, "configs", name + ".flags")}',
                 f'--data_dir={prepared_dir}', '--rounds=2', '--encoder=small',
                 '--text_encoder=small', '--num_clients=3', '--clients_per_round=2',
                 '--multi_ratio=0.34', '--dirichlet_alpha=1', '--local_epochs=1',
                 '--batch_size=4', '--image_size=32', '--num_frames=2',
                 '--shuffle_buffer_size=8', f'--output_dir={run}'])
    assert train.main(['train']) == 0
  with open(run / 'metrics.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert [int(r['round']) for r in rows] == [1, 2]
  a, b = modalities
  for column in ('acc_fused', f'acc_{a}_path', f'acc_{b}_path', f'acc_{a}_zero', f'acc_{b}_zero'):
    assert 0.0 <= float(rows[-1][column]) <= 1.0
  summary = json.loads((run / 'summary.json').read_text())
  assert summary['class_names'] == manifest['class_names']
  assert summary['config']['data_dir'] == str(prepared_dir)
  assert summary['config']['algorithm'] == 'fedcmi'
  assert summary['config']['training']['augmentation'] == (
      'crop_flip' if name == 'crisismmd' else 'resized_crop_flip')


def test_train_names_a_missing_or_unprepared_data_dir(tmp_path, capsys):
  for args, message in (([], 'needs --data_dir'),
                        ([f'--data_dir={tmp_path}'], 'dataset.json not found')):
    with flagsaver.flagsaver():
      flags.FLAGS(['train', '--dataset=crema_d', f'--output_dir={tmp_path / "run"}'] + args)
      assert train.main(['train']) == 2
    assert message in capsys.readouterr().err
  assert not (tmp_path / 'run').exists()


def test_prepare_prints_the_skip_report_when_nothing_was_prepared_and_overwrites(tmp_path):
  ids = [r.image_id for r in crisismmd_fixture.ROWS]
  raw = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'), missing_images=ids)['root']
  out = tmp_path / 'prepared'
  proc = _run_prepare('crisismmd', raw, out)
  assert proc.returncode == 2
  assert '  skipped: 10' in proc.stdout and '    10 x image file missing: ' in proc.stdout
  assert 'data_image' in proc.stdout  # the first items are named
  assert proc.stderr.strip().splitlines()[-1].startswith(
      f'prepare: error: {out}: no train example was prepared (6 train rows read; skipped 10 x '
      'image file missing); see the skip report above')
  crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))  # the images arrive
  assert 'train: read 6, written 6' in _prepare('crisismmd', raw, out)
  refused = _run_prepare('crisismmd', raw, out, '--max_length=20')
  assert refused.returncode == 2
  assert 'recipe.max_length 40 (prepared) vs 20 (now)' in refused.stderr
  assert '--overwrite' in refused.stderr
  again = _prepare('crisismmd', raw, out, '--max_length=20', '--overwrite')
  assert 'is deleted once the raw split files are read' in again
  assert json.loads((out / 'dataset.json').read_text())['recipe']['max_length'] == 20


def test_train_refuses_a_damaged_prepared_folder_before_building_a_model(tmp_path, capsys):
  raw = crisismmd_fixture.make_crisismmd(str(tmp_path / 'raw'))['root']
  prepared_dir = str(tmp_path / 'prepared')
  manifest = crisismmd.prepare_crisismmd(raw, prepared_dir)
  damaged = prepared.example_path(prepared_dir, 'train',
                                  manifest['splits']['train']['example_ids'][2])
  with open(damaged, 'wb'):
    pass  # zero bytes: formerly dropped without a word
  with flagsaver.flagsaver():
    flags.FLAGS(['train', '--dataset=crisismmd', f'--data_dir={prepared_dir}', '--rounds=1',
                 f'--output_dir={tmp_path / "run"}'])
    assert train.main(['train']) == 2
  err = capsys.readouterr().err
  assert f'train: error: {damaged}: 0 bytes, but dataset.json records' in err
  assert not (tmp_path / 'run').exists()


def test_every_fault_case_shows_what_the_table_says(tmp_path, fault_row):
  cases = prepared_faults.fault_cases()
  assert len({c.name for c in cases}) == len(cases) >= 20
  for case in cases:
    outcome = case.run(str(tmp_path))
    assert '\n' not in outcome and str(tmp_path) not in outcome, (case.name, outcome)
    assert case.matches(outcome), (case.name, outcome)
    assert case['what_the_user_sees'] == case.what_the_user_sees
    fault_row(f'prepared data: {case.name}', outcome)
