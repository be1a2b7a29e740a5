"""Benchmark: training on a prepared dataset streams from disk, so memory does not grow with it.

For each size, writes a CREMA-D-shaped raw folder (tests/av_fixtures.py: 1-s WAVs,
three 64x64 frames per clip, the published split files), prepares it with
`python -m fedcmi_tff.prepare`, then runs one FedCMI round over all clients
with `python -m fedcmi_tff.train` and samples the resident memory of the
training process and its children (a TFF worker under --runtime=tff_cpp) every
0.1 s.  Prints one table row per size.

  venv/bin/python benchmarks/streaming_memory.py --actors=10,40 --image_size=112

With streaming, peak memory stays about flat while the dataset grows; holding
every client's decoded examples would add (spectrogram + frames) x clips, which
the table's last column shows for comparison.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests import av_fixtures  # noqa: E402  pylint: disable=g-import-not-at-top

_ACTORS = flags.DEFINE_list('actors', ['10', '40'], 'Actors per size; 6 clips per actor.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 112, 'Frames are decoded at this size.')
_WORK_DIR = flags.DEFINE_string('work_dir', None, 'Where the data go (default: a temp folder).')
_RUNTIME = flags.DEFINE_string('runtime', 'inprocess', 'The train program\'s --runtime.')


def _peak_rss(proc: subprocess.Popen) -> tuple:
  """Runs until proc ends; returns (peak RSS of proc + its children in MiB, seconds)."""
  peak, started = 0, time.time()
  stop = threading.Event()

  def sample():
    nonlocal peak
    root = psutil.Process(proc.pid)
    while not stop.is_set():
      try:
        total = root.memory_info().rss + sum(c.memory_info().rss
                                             for c in root.children(recursive=True))
        peak = max(peak, total)
      except psutil.Error:
        pass
      time.sleep(0.1)

  thread = threading.Thread(target=sample, daemon=True)
  thread.start()
  out, _ = proc.communicate()
  stop.set()
  thread.join()
  if proc.returncode != 0:
    raise RuntimeError(out[-3000:])
  return peak / 2**20, time.time() - started


def _du(path: str) -> float:
  total = 0
  for folder, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
  return total / 2**20


def main(argv):
  del argv
  work = _WORK_DIR.value or tempfile.mkdtemp(prefix='fedcmi-bench-')
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
  size = _IMAGE_SIZE.value
  decoded_mib = (257 * 299 + 2 * size * size * 3) * 4 / 2**20  # one example as float32
  rows = []
  for actors in (int(a) for a in _ACTORS.value):
    raw, prepared_dir = os.path.join(work, f'raw{actors}'), os.path.join(work, f'prep{actors}')
    if not os.path.exists(raw):
      av_fixtures.make_crema_d(raw, actors=tuple(range(1001, 1001 + actors)),
                               emotions=av_fixtures.CREMA_D_CLASSES)
    started = time.time()
    subprocess.run([sys.executable, '-m', 'fedcmi_tff.prepare', '--dataset=crema_d',
                    f'--raw_dir={raw}', f'--output_dir={prepared_dir}', '--noprogress'],
                   cwd=REPO, env=env, check=True, capture_output=True)
    prepare_seconds = time.time() - started
    run_dir = os.path.join(work, f'run{actors}_{int(time.time())}')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'fedcmi_tff.train', '--dataset=crema_d',
         f'--data_dir={prepared_dir}', '--rounds=1', '--num_clients=4', '--clients_per_round=4',
         '--multi_ratio=1', '--dirichlet_alpha=inf', '--local_epochs=1', '--batch_size=16',
         '--shuffle_buffer_size=64', '--eval_batch_size=32', f'--image_size={size}',
         '--augmentation=resized_crop_flip', f'--runtime={_RUNTIME.value}',
         f'--output_dir={run_dir}'],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, train_seconds = _peak_rss(proc)
    clips = actors * 6
    rows.append((clips, _du(prepared_dir), prepare_seconds, train_seconds, peak,
                 clips * decoded_mib))
    print(f'done: {clips} clips', file=sys.stderr, flush=True)
  print(f'| clips | prepared on disk (MiB) | prepare (s) | 1 round, 4 clients (s) | '
        f'peak RSS, train + TFF worker (MiB) | all examples decoded at {size}px (MiB) |')
  print('|---:|---:|---:|---:|---:|---:|')
  for clips, disk, prep, train, peak, decoded in rows:
    print(f'| {clips} | {disk:.0f} | {prep:.1f} | {train:.1f} | {peak:.0f} | {decoded:.0f} |')


if __name__ == '__main__':
  app.run(main)
