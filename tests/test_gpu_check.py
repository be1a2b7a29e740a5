"""The GPU check program on this CPU-only machine: it trains, reports placement and says why."""

import os

from absl import flags
from absl.testing import flagsaver

from fedcmi_tff import gpu_check


def test_gpu_check_reports_cpu_placement_and_exits_3_without_a_gpu(tmp_path, capfd):
  log = tmp_path / 'placement.log'
  with flagsaver.flagsaver():
    flags.FLAGS(['gpu_check', '--rounds=1', '--num_clients=2', '--clients_per_round=2',
                 '--local_epochs=1', f'--output_dir={tmp_path / "run"}',
                 f'--placement_log={log}'])
    assert gpu_check.main(['gpu_check']) == 3
  out = capfd.readouterr().out
  assert 'GPUs TensorFlow sees: none' in out
  assert 'device:CPU:0:' in out and 'ops (100%)' in out
  assert 'client work ran on the CPU only: TensorFlow sees no GPU' in out
  assert 'round   1/1' in out  # progress reaches the console while the log is redirected
  # TensorFlow's per-op placement log went to the file, not to the console.
  text = log.read_text()
  assert 'device:CPU:0' in text and 'device:CPU:0' not in out.split('ops that ran')[0]
  assert os.path.exists(tmp_path / 'run' / 'metrics.csv')


def test_placement_lines_are_sorted_with_shares():
  assert gpu_check.placement_lines({'/device:CPU:0': 25, '/device:GPU:0': 75}) == [
      '  /device:GPU:0: 75 ops (75%)', '  /device:CPU:0: 25 ops (25%)']
