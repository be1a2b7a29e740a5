"""Fault injection: every fault and bad input of a run, and what the user sees.

Each test reproduces one case and records a row of the fault table the test run prints
at its end (`pytest tests/test_faults.py` prints just this table; the README's table is
this one).  Cases of prepared datasets are in tests/prepared_faults.py.
"""

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import config as config_lib
from fedcmi_tff import files
from fedcmi_tff import train
from fedcmi_tff.programs import experiment
from fedcmi_tff.programs import program_io

_TF_CPP_LOG = re.compile(r'^\d{4}-\d\d-\d\d [\d:.]+: [EWI] (tensorflow|external)/')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ['--rounds=2', '--num_clients=4', '--clients_per_round=2', '--local_epochs=1']
TINY = config_lib.ExperimentConfig(
    federation=config_lib.FederationConfig(num_clients=4, clients_per_round=2, rounds=2),
    training=config_lib.LocalTrainingConfig(learning_rate=0.02, min_learning_rate=0.02,
                                            local_epochs=1))


@pytest.fixture(scope='module')
def cache():
  return {}


def _train(args, capsys):
  """(exit status, stderr lines) of train.main with these flags."""
  handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
  with flagsaver.flagsaver():
    flags.FLAGS(['train'] + args)
    status = train.main(['train'])
  # The program's stop-after-the-round handlers are removed when it returns.
  assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  return status, err


def _one_error_line(err):
  errors = [line for line in err if ': error: ' in line]
  assert len(errors) == 1 and len(err) == 1, err
  return errors[0]


# -- Bad output folders ----------------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys, fault_row):
  folder = tmp_path / 'thesis'
  folder.mkdir()
  (folder / 'thesis.tex').write_text('years of work')
  status, err = _train([f'--output_dir={folder}', '--overwrite'] + TINY_FLAGS, capsys)
  line = _one_error_line(err)
  assert status == 2 and 'nothing was deleted' in line
  assert (folder / 'thesis.tex').read_text() == 'years of work'
  (folder / 'config.json').write_text('{}')  # a run folder holding a foreign file
  status, err = _train([f'--output_dir={folder}', '--overwrite'] + TINY_FLAGS, capsys)
  assert status == 2 and 'thesis.tex' in _one_error_line(err)
  assert sorted(p.name for p in folder.iterdir()) == ['.lock', 'config.json', 'thesis.tex']
  fault_row('`--overwrite` on a folder that is not only a run\'s', line)


def test_output_dir_that_is_a_file_or_cannot_be_created(tmp_path, capsys, fault_row):
  path = tmp_path / 'afile'
  path.write_text('x')
  status, err = _train([f'--output_dir={path}'] + TINY_FLAGS, capsys)
  line = _one_error_line(err)
  assert status == 2 and 'is a file, not a folder' in line
  fault_row('`--output_dir` is a file', line)
  status, err = _train(['--output_dir=/proc/fedcmi_cannot_exist/run'] + TINY_FLAGS, capsys)
  line = _one_error_line(err)
  assert status == 2 and '/proc/fedcmi_cannot_exist' in line
  fault_row('`--output_dir` cannot be created', line)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, fault_row):
  def full(path, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
  monkeypatch.setattr(files, 'write_bytes', full)
  status, err = _train([f'--output_dir={tmp_path / "run"}'] + TINY_FLAGS, capsys)
  line = _one_error_line(err)
  assert status == 2 and 'No space left on device' in line and 'config.json' in line
  fault_row('the disk is full (simulated ENOSPC)', line)


def test_a_folder_in_use_by_another_run_is_refused(tmp_path, capsys, fault_row):
  run = tmp_path / 'run'
  run.mkdir()
  holder = experiment._RunLock(str(run))  # what a running train holds
  try:
    status, err = _train([f'--output_dir={run}', '--resume'] + TINY_FLAGS, capsys)
  finally:
    holder.release()
  line = _one_error_line(err)
  assert status == 2 and f'in use by another run (process {os.getpid()})' in line
  fault_row('a second run on a folder in use (e.g. two `--resume`)', line)


# -- Divergence, temporary files, TensorBoard, corrupt state --------------------------------


def test_divergence_stops_with_status_3_and_keeps_the_last_good_round(tmp_path, capsys,
                                                                      fault_row):
  run = tmp_path / 'run'
  status, err = _train([f'--output_dir={run}', '--learning_rate=3', '--min_learning_rate=3']
                       + TINY_FLAGS, capsys)
  line = _one_error_line(err)
  assert status == 3 and 'round 1: ' in line and 'training diverged' in line
  assert not (run / 'summary.json').exists() and not (run / 'checkpoint.npz').exists()
  fault_row('training diverges (`--learning_rate=3`)', line)


def test_interrupted_writes_are_cleaned_and_tensorboard_has_one_value_per_step(
    tmp_path, cache, fault_row):
  run = tmp_path / 'run'
  one = experiment.run_experiment(
      TINY.__class__(**{**TINY.__dict__, 'federation': TINY.federation.__class__(
          **{**TINY.federation.__dict__, 'rounds': 1})}), str(run), log=lambda line: None,
      process_cache=cache)
  assert one.summary['rounds_completed'] == 1
  (run / (files.TEMPORARY_PREFIX + 'abc-metrics.csv')).write_text('half a write')
  lines = []
  experiment.run_experiment(TINY, str(run), resume=True, log=lines.append, process_cache=cache)
  removed = [line for line in lines if 'temporary file' in line]
  assert removed and not any(p.name.startswith(files.TEMPORARY_PREFIX) for p in run.iterdir())
  fault_row('a temporary file left by a write the run was killed in', removed[0])
  steps = _tensorboard_steps(run / 'tensorboard', 'acc_fused')
  assert steps == [1, 2]
  fault_row('TensorBoard after `--resume`', f'one value per round: steps {steps} '
            '(the event files are rewritten from metrics.csv on resume)')
  (run / 'checkpoint.npz').write_bytes(b'\x00' * 10)
  longer = TINY.__class__(**{**TINY.__dict__, 'federation': TINY.federation.__class__(
      **{**TINY.federation.__dict__, 'rounds': 3})})
  with pytest.raises(experiment.OutputDirectoryError, match='checkpoint.npz cannot be read'):
    experiment.run_experiment(longer, str(run), resume=True, log=lambda line: None,
                              process_cache=cache)
  fault_row('a corrupt `checkpoint.npz` on `--resume`',
            f'error: {run}/checkpoint.npz cannot be read (BadZipFile: ...); move it away to '
            'start the run afresh')


def _tensorboard_steps(folder, tag):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  steps = []
  for name in sorted(os.listdir(folder)):
    for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
      steps += [event.step for v in event.summary.value if v.tag == tag]
  return sorted(steps)


# -- Signals and TFF workers (separate processes) ------------------------------------------


def _start_train(tmp_path, *args):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen(
      [sys.executable, '-m', 'fedcmi_tff.train', '--num_clients=4', '--clients_per_round=2',
       '--local_epochs=1', f'--output_dir={tmp_path / "run"}'] + list(args),
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(stream, text, timeout=180):
  deadline = time.time() + timeout
  seen = []
  while time.time() < deadline:
    line = stream.readline()
    if not line:
      break
    seen.append(line)
    if text in line:
      return seen
  raise AssertionError(f'{text!r} not printed: {"".join(seen)[-2000:]}')


def _workers_of(pid):
  try:
    return [p for p in psutil.Process(pid).children(recursive=True)
            if 'worker_binary' in ' '.join(p.cmdline())]
  except psutil.Error:
    return []


def test_sigterm_stops_after_the_round_with_its_state_saved(tmp_path, fault_row):
  proc = _start_train(tmp_path, '--rounds=6')
  _wait_for_line(proc.stdout, 'round   1/6')
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=180)
  assert proc.returncode == 143, err[-2000:]
  stopped = [line for line in err.splitlines() if 'stopped after round' in line]
  assert stopped and '--resume' in stopped[0]
  done = int(stopped[0].split('stopped after round ')[1].split()[0])
  rows = program_io.read_rows(str(tmp_path / 'run' / 'metrics.csv'))
  with np.load(tmp_path / 'run' / 'checkpoint.npz') as saved:
    assert int(saved['round']) == len(rows) == done < 6
  fault_row('SIGTERM or Ctrl-C (SIGINT) during a run', stopped[0] + ' (exit status 143 / 130)')


def test_sigkill_of_a_tff_cpp_run_leaves_no_worker_and_no_open_pipe(tmp_path, fault_row):
  proc = _start_train(tmp_path, '--rounds=6', '--runtime=tff_cpp')
  _wait_for_line(proc.stdout, 'round   1/6')
  workers = _workers_of(proc.pid)
  assert len(workers) == 1
  ports = {c.laddr.port for c in workers[0].connections(kind='inet')
           if c.status == psutil.CONN_LISTEN}
  proc.kill()
  _, err = proc.communicate(timeout=30)  # returns: no worker holds the pipes
  warning = [line for line in err.splitlines() if line.startswith('WARNING: --runtime=tff_cpp')]
  assert warning and f'port {sorted(ports)[0]} of every network interface' in warning[0]
  fault_row('`--runtime=tff_cpp` (TFF\'s worker binds every interface)', warning[0])
  gone, alive = psutil.wait_procs(workers, timeout=10)
  assert not alive and gone
  fault_row('SIGKILL of a `--runtime=tff_cpp` run',
            f'the worker (port {sorted(ports)}) dies with it (parent-death signal); '
            '`train ... | tee` ends')


def _watchdog_failure(monkeypatch, addresses, timeout):
  """Runs the worker watchdog with its exit replaced by a recorder; returns the message."""
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  failures = []
  monkeypatch.setattr(runtime, '_fail', failures.append)
  runtime.start_worker_watchdog(addresses, timeout, 'train', interval=0.5)
  return runtime, failures


def test_a_dead_local_worker_ends_the_run_with_status_4(monkeypatch, fault_row):
  """The watchdog of a --runtime=tff_cpp run (the exit itself: runtime._fail, status 4)."""
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  port = runtime.start_local_worker()
  try:
    _, failures = _watchdog_failure(monkeypatch, (), 5.0)
    time.sleep(1.5)
    assert not failures  # a running worker is not reported
    runtime._local_workers[-1][0].kill()
    deadline = time.time() + 10
    while not failures and time.time() < deadline:
      time.sleep(0.1)
  finally:
    runtime.stop_worker_processes()
  assert failures and f'local TFF worker (port {port}) exited' in failures[0]
  fault_row('the local TFF worker dies during a run',
            failures[0] + ' (exit status 4, within 2 s)')


def test_a_remote_worker_lost_during_a_run_ends_it_within_the_timeout(monkeypatch, fault_row):
  import portpicker  # pylint: disable=g-import-not-at-top
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  worker = subprocess.Popen([runtime.worker_binary_path(), f'--port={port}'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    runtime.check_workers_reachable((f'localhost:{port}',), 30.0)
    _, failures = _watchdog_failure(monkeypatch, (f'localhost:{port}',), 2.0)
    time.sleep(1.5)
    assert not failures
    worker.kill()
    lost = time.time()
    while not failures and time.time() - lost < 20:
      time.sleep(0.1)
    waited = time.time() - lost
  finally:
    worker.kill()
    worker.wait()
    runtime._workers_stopping.set()  # ends the watchdog thread
  assert failures and f'localhost:{port} unreachable for 2s (--worker_timeout)' in failures[0]
  assert 2.0 <= waited < 10
  fault_row('a remote worker is lost during a run',
            failures[0] + f' (exit status 4, {waited:.0f} s after the loss)')


def test_an_unreachable_remote_worker_fails_within_the_timeout(tmp_path, fault_row):
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]  # closed again: nothing listens there
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  started = time.time()
  out = subprocess.run(
      [sys.executable, '-m', 'fedcmi_tff.train', '--runtime=tff_remote',
       f'--workers=127.0.0.1:{port}', '--worker_timeout=2', f'--output_dir={tmp_path / "r"}']
      + TINY_FLAGS, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 4
  # Exactly one line besides TensorFlow's own C++ start-up log (its CUDA plug-in
  # registration lines): no traceback, no noise from TFF's finalisers at exit.
  err = [line for line in out.stderr.splitlines()
         if line.strip() and not _TF_CPP_LOG.match(line)]
  assert len(err) == 1 and f'127.0.0.1:{port} not reachable within 2s' in err[0], err
  assert time.time() - started < 60
  fault_row('`--workers` address unreachable (or the worker dies)', err[0] + ' (exit status 4)')


def test_an_error_exit_prints_one_line_and_nothing_from_tffs_finalisers(tmp_path, fault_row):
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run([sys.executable, '-m', 'fedcmi_tff.train', '--rounds=0',
                        f'--output_dir={tmp_path / "never"}'], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
  err = [line for line in out.stderr.splitlines()
         if line.strip() and not _TF_CPP_LOG.match(line)]
  assert out.returncode == 2 and err == ['train: error: rounds must be > 0, got 0'], err
  fault_row('any error exit', f'{err[0]} and nothing else on stderr (no traceback, no TFF '
            'finaliser noise at shutdown)')
