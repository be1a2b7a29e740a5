"""End to end: the experiment driver, the train program, its outputs and its errors."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import tensorflow_federated as tff
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff import train
from fedcmi_tff.programs import experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANCE = 1.0 / 6.0

FAST = config_lib.ExperimentConfig(
    federation=config_lib.FederationConfig(num_clients=6, clients_per_round=3, rounds=3,
                                           seed=7),
    training=config_lib.LocalTrainingConfig(learning_rate=0.02, min_learning_rate=0.02,
                                            local_epochs=1))


@pytest.fixture(scope='module')
def cache():
  return {}


def _quiet(_):
  pass


def _read(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def _accuracies(rows):
  return [{k: v for k, v in r.items() if k.startswith('acc_') or k == 'train_loss'}
          for r in rows]


def test_fedcmi_learns_well_above_chance(tmp_path, cache):
  config = config_lib.ExperimentConfig(
      federation=config_lib.FederationConfig(num_clients=10, clients_per_round=5, rounds=8),
      training=config_lib.LocalTrainingConfig(learning_rate=0.02, min_learning_rate=0.02))
  result = experiment.run_experiment(config, str(tmp_path / 'run'), log=_quiet,
                                     process_cache=cache)
  first, best = result.rows[0], result.summary['best']
  assert best['acc_fused'] > 3.5 * CHANCE  # > 0.58
  assert best['acc_fused'] > first['acc_fused'] + 0.2
  assert result.summary['best_per_column']['acc_visual_path'] > 2 * CHANCE
  # Infiltration ran from round 2 on (warm-up 1), mostly with audio teaching.
  assert result.rows[0]['a_teaches_fraction'] == 0.0
  assert max(r['a_teaches_fraction'] for r in result.rows[1:]) > 0.5


def test_outputs_and_same_seed_gives_identical_metrics(tmp_path, cache):
  one = experiment.run_experiment(FAST, str(tmp_path / 'one'), log=_quiet, process_cache=cache)
  two = experiment.run_experiment(FAST, str(tmp_path / 'two'), log=_quiet, process_cache=cache)
  rows_one = _read(tmp_path / 'one' / 'metrics.csv')
  assert [int(r['round']) for r in rows_one] == [1, 2, 3]
  for column in ('acc_fused', 'acc_audio_path', 'acc_visual_path', 'acc_audio_zero',
                 'acc_visual_zero', 'acc_macro', 'acc_worst_class'):
    assert column in rows_one[0]
  assert _accuracies(rows_one) == _accuracies(_read(tmp_path / 'two' / 'metrics.csv'))
  summary = json.loads((tmp_path / 'one' / 'summary.json').read_text())
  assert summary['final'] == one.summary['final'] == two.summary['final']
  assert summary['config']['federation']['seed'] == 7
  recorded = json.loads((tmp_path / 'one' / 'config.json').read_text())
  assert recorded['method'] == 'fedcmi' and recorded['objective']['proximal_strength'] == 0.01
  assert 'modulation_strength' not in recorded['objective']
  assert summary['final_round'] == 3 and 1 <= summary['best_round'] <= 3
  assert summary['best']['acc_fused'] == max(float(r['acc_fused']) for r in rows_one)
  per_class = _read(tmp_path / 'one' / 'per_class.csv')
  # Five inference paths, and FedCMI's three diagnostic rows, per round.
  assert [r['path'] for r in per_class[:8]] == [
      'fused', 'audio_path', 'visual_path', 'audio_zero', 'visual_zero', 'teacher_audio',
      'teacher_visual', 'temperature']
  assert len(per_class) == 3 * 8 and set(per_class[0]) >= {'round', 'path', 'class_0'}
  assert any(f.startswith('events.out.tfevents')
             for f in os.listdir(tmp_path / 'one' / 'tensorboard'))
  assert summary['selected_on'] == 'test' and summary['last_rounds'] == 3
  assert summary['last_rounds_mean']['acc_fused'] == pytest.approx(
      sum(float(r['acc_fused']) for r in rows_one) / 3)
  # Another seed, with a validation split: the best round is chosen on it.
  other_seed = experiment.run_experiment(
      dataclasses.replace(FAST, federation=dataclasses.replace(
          FAST.federation, seed=8, validation_fraction=0.2)),
      str(tmp_path / 'three'), log=_quiet, process_cache=cache)
  assert other_seed.summary['final'] != one.summary['final']
  rows = _read(tmp_path / 'three' / 'metrics.csv')
  val = [float(r['val_acc_fused']) for r in rows]
  assert other_seed.summary['selected_on'] == 'validation'
  assert other_seed.summary['best_round'] == 1 + val.index(max(val))
  assert other_seed.summary['best']['acc_fused'] == float(
      rows[other_seed.summary['best_round'] - 1]['acc_fused'])
  assert 'val_acc_visual_path' in other_seed.summary['last_rounds_mean']
  assert 'val_acc_fused' not in rows_one[0]


def test_existing_output_is_protected_and_resume_continues_exactly(tmp_path, cache, fault_row):
  full = experiment.run_experiment(FAST, str(tmp_path / 'full'), log=_quiet, process_cache=cache)
  short = dataclasses.replace(FAST, federation=dataclasses.replace(FAST.federation, rounds=2))
  experiment.run_experiment(short, str(tmp_path / 'part'), log=_quiet, process_cache=cache)
  before = (tmp_path / 'part' / 'metrics.csv').read_text()
  with pytest.raises(experiment.OutputDirectoryError, match='--resume') as e:
    experiment.run_experiment(short, str(tmp_path / 'part'), log=_quiet, process_cache=cache)
  fault_row('an existing run folder without `--resume` or `--overwrite`', str(e.value))
  assert (tmp_path / 'part' / 'metrics.csv').read_text() == before
  changed = dataclasses.replace(short, objective=dataclasses.replace(
      short.objective, distillation_weight=2.0))
  with pytest.raises(experiment.OutputDirectoryError, match='differs'):
    experiment.run_experiment(changed, str(tmp_path / 'part'), resume=True, log=_quiet,
                              process_cache=cache)
  resumed = experiment.run_experiment(FAST, str(tmp_path / 'part'), resume=True, log=_quiet,
                                      process_cache=cache)
  assert [r['round'] for r in resumed.rows] == [1, 2, 3]
  assert _accuracies(_read(tmp_path / 'part' / 'metrics.csv')) == _accuracies(
      _read(tmp_path / 'full' / 'metrics.csv'))
  assert resumed.summary['final'] == full.summary['final']
  # The same through TFF's own program-state manager (a SavedModel per version).
  state_dir = str(tmp_path / 'tff_state')
  experiment.run_experiment(short, str(tmp_path / 'tff'), log=_quiet, process_cache=cache,
                            program_state_manager=tff.program.FileProgramStateManager(
                                state_dir, keep_total=1, keep_first=False))
  assert os.listdir(state_dir) == ['program_state_2']
  experiment.run_experiment(FAST, str(tmp_path / 'tff'), resume=True, log=_quiet,
                            process_cache=cache,
                            program_state_manager=tff.program.FileProgramStateManager(
                                state_dir, keep_total=1, keep_first=False))
  assert _accuracies(_read(tmp_path / 'tff' / 'metrics.csv')) == _accuracies(
      _read(tmp_path / 'full' / 'metrics.csv'))


def test_runs_saved_before_a_config_field_existed_still_count_as_finished(tmp_path):
  config = dataclasses.replace(FAST, federation=dataclasses.replace(FAST.federation, rounds=3))
  saved = json.loads(json.dumps(config.to_dict()))
  # Written by an older version: no augmentation / shuffle buffer / frame fields yet, and
  # fields since removed (training.total_rounds, the objective enum).
  del saved['training']['augmentation'], saved['training']['shuffle_buffer_size']
  del saved['num_frames'], saved['image_size'], saved['synthetic_train_examples']
  del saved['aggregation']
  saved['training']['total_rounds'] = 3
  saved['objective']['objective'] = 'fedcmi'
  (tmp_path / 'summary.json').write_text(json.dumps({'config': saved, 'rounds_completed': 3}))
  assert experiment.finished_summary(config, str(tmp_path))['rounds_completed'] == 3
  # DP parameters do not change the plain mean: still the same run.
  unused = dataclasses.replace(config, aggregation=config_lib.AggregationConfig(
      noise_multiplier=7.0))
  assert experiment.finished_summary(unused, str(tmp_path))['rounds_completed'] == 3
  # A field that differs from its default still makes it another run.
  changed = dataclasses.replace(config, training=dataclasses.replace(
      config.training, augmentation='crop_flip'))
  with pytest.raises(experiment.OutputDirectoryError, match='different configuration'):
    experiment.finished_summary(changed, str(tmp_path))
  private = dataclasses.replace(config, aggregation=config_lib.AggregationConfig(
      mechanisms=('dp',)))
  with pytest.raises(experiment.OutputDirectoryError, match='different configuration'):
    experiment.finished_summary(private, str(tmp_path))


def test_resume_that_cannot_reproduce_the_fresh_run_is_refused(tmp_path, cache, fault_row):
  decaying = dataclasses.replace(
      FAST, federation=dataclasses.replace(FAST.federation, rounds=2),
      training=dataclasses.replace(FAST.training, min_learning_rate=0.002,
                                   constant_lr_rounds=0))
  run = tmp_path / 'run'
  experiment.run_experiment(decaying, str(run), log=_quiet, process_cache=cache)
  files_before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
  longer = dataclasses.replace(decaying, federation=dataclasses.replace(
      decaying.federation, rounds=4))
  with pytest.raises(experiment.OutputDirectoryError, match='decays after round 1') as e:
    experiment.run_experiment(longer, str(run), resume=True, log=_quiet, process_cache=cache)
  fault_row('`--resume` with more `--rounds` after the learning rate decayed', str(e.value))
  shorter = dataclasses.replace(decaying, federation=dataclasses.replace(
      decaying.federation, rounds=1))
  with pytest.raises(experiment.OutputDirectoryError, match='2 finished rounds, more than') as e:
    experiment.run_experiment(shorter, str(run), resume=True, log=_quiet, process_cache=cache)
  fault_row('`--resume` with fewer `--rounds` than finished', str(e.value))
  assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files_before
  (run / 'checkpoint.npz').write_bytes(b'not a zip file')
  with pytest.raises(experiment.OutputDirectoryError, match='checkpoint.npz cannot be read'):
    experiment.run_experiment(decaying, str(run), resume=True, log=_quiet, process_cache=cache)
  (run / 'checkpoint.npz').unlink()
  with pytest.raises(experiment.OutputDirectoryError, match='program state .* is missing') as e:
    experiment.run_experiment(decaying, str(run), resume=True, log=_quiet, process_cache=cache)
  fault_row('`--resume` after `checkpoint.npz` was deleted', str(e.value))
  assert (run / 'metrics.csv').read_bytes() == files_before['metrics.csv']


@pytest.mark.parametrize('args,message', [
    (['--dataset=cifar'], 'unknown dataset'),
    (['--algorithm=fedsgd'], 'unknown method'),
    (['--method=unimodal_smell'], "unknown method 'unimodal_smell'"),
    (['--small_encoder_channels=16,x'], 'small_encoder_channels must be integers'),
    (['--multi_ratio=1.5'], 'multi_ratio must be in [0, 1]'),
    (['--clients_per_round=11', '--num_clients=10'], 'clients_per_round (11) must be <='),
    (['--rounds=0'], 'rounds must be > 0'),
    (['--runtime=tff_remote'], '--runtime=tff_remote needs --workers'),
    (['--workers=127.0.0.1:8001'], '--workers is only used with --runtime=tff_remote'),
    (['--max_concurrent_clients=0'], '--max_concurrent_clients must be >= 1'),
])
def test_bad_flags_stop_with_one_line_before_training(tmp_path, capsys, args, message,
                                                      fault_row):
  out = tmp_path / 'never'
  with flagsaver.flagsaver():
    flags.FLAGS(['train', f'--output_dir={out}'] + args)
    assert train.main(['train']) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1
  assert not out.exists()
  fault_row(f'bad flag `{" ".join(args)}`', err)


def _worker_pids():
  pids = set()
  for p in psutil.process_iter(['cmdline']):
    if 'worker_binary' in ' '.join(p.info['cmdline'] or []):
      pids.add(p.pid)
  return pids


def _children_and_listening_ports(pid):
  """({child pid: its command line}, TCP ports listened on by the process or its children)
  of a running process."""
  children, ports = {}, set()
  try:
    process = psutil.Process(pid)
    tree = [process] + process.children(recursive=True)
  except psutil.Error:
    return children, ports
  for p in tree:
    try:
      ports |= {c.laddr.port for c in p.connections(kind='inet')
                if c.status == psutil.CONN_LISTEN}
      if p.pid != pid:
        children[p.pid] = ' '.join(p.cmdline()) or p.name()  # a zombie has no cmdline
    except psutil.Error:
      continue
  return children, ports


# tff_cpp's worker lifetime: tests/test_faults.py (SIGKILL, a dead worker).
@pytest.mark.parametrize('runtime_name', ['inprocess'])
def test_program_exits_cleanly_without_orphan_worker(tmp_path, runtime_name):
  """tff_cpp: the worker the program started is gone when it exits.  inprocess (the
  default): no worker process and no listening socket at any time during the run.  Imports
  may flash short helpers by (numpy.testing runs `lscpu`, platform runs `uname -p`, both
  when TensorFlow and TFF are imported), which the run itself does not start."""
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  # stdout is a pipe: an orphaned worker holding it would make communicate() time out.
  proc = subprocess.Popen(
      [sys.executable, '-m', 'fedcmi_tff.train', '--rounds=1', '--num_clients=2',
       '--clients_per_round=2', '--local_epochs=1', f'--output_dir={tmp_path / "run"}'] +
      ([f'--runtime={runtime_name}'] if runtime_name != 'inprocess' else []),
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  seen_children, seen_ports = {}, set()
  while proc.poll() is None:
    children, ports = _children_and_listening_ports(proc.pid)
    seen_children.update(children)
    seen_ports |= ports
    time.sleep(0.2)
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, out
  assert 'round   1/1' in out and 'train: done' in out
  if runtime_name == 'inprocess':
    assert 'TFF runtime: inprocess: in-process MapReduceForm runtime' in out
    helpers = {'lscpu', 'uname -p', 'uname'}
    started = {pid: cmd for pid, cmd in seen_children.items() if cmd not in helpers}
    assert not started and not seen_ports, (started, seen_ports)
  else:
    assert 'TFF runtime: tff_cpp: local C++ worker' in out
    assert seen_children and seen_ports  # the worker listened while it ran
  time.sleep(1.0)
  # The program's own workers (not those of other test processes) are gone.
  assert not set(seen_children) & _worker_pids()
