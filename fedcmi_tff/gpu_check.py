"""Checks where client work runs: `scripts/gpu_check.sh` (or `python -m fedcmi_tff.gpu_check`).

Trains two rounds (FedCMI on the embedded dataset unless the flags say otherwise)
with the in-process runtime, counting per device the TensorFlow ops that ran
client work (`InProcessContext(record_placement=True)`), and with TensorFlow's
device-placement log on (kept in the file `--placement_log`).  Prints what TensorFlow was built with, the GPUs it sees and the
per-device counts, then a one-line verdict.  Exit status 0 when a GPU ran client
work, 3 when only the CPU did (the message says why, e.g. no GPU visible), 2 on
bad flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_federated as tff  # noqa: E402

from fedcmi_tff.algorithms import registry as method_registry  # noqa: E402
from fedcmi_tff.backends import inprocess  # noqa: E402
from fedcmi_tff.data import prepared  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.programs import experiment  # noqa: E402
from fedcmi_tff.programs import flag_config  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_PLACEMENT_LOG = flags.DEFINE_string(
    'placement_log', os.path.join('runs', 'gpu_check_placement.log'),
    'Where TensorFlow\'s device-placement log (the device of every op of every session) '
    'goes; empty: no placement log.')


@contextlib.contextmanager
def _output_to(path: str | None):
  """Sends this process's stdout and stderr (C++ included) to `path` for a while.

  Yields a text stream to the original stdout, for progress lines.
  """
  if not path:
    yield sys.stdout
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  console = os.fdopen(os.dup(saved[0]), 'w', buffering=1)
  with open(path, 'w') as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
      yield console
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
      console.close()


def placement_lines(counts: dict) -> list:
  """`device: N ops` lines, most ops first."""
  total = sum(counts.values()) or 1
  return [f'  {device}: {n} ops ({100.0 * n / total:.0f}%)'
          for device, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    method, config = flag_config.method_and_config()
    config = dataclasses.replace(config, federation=dataclasses.replace(
        config.federation, rounds=min(config.federation.rounds, 2)))
    config.validate(registry.DATASET_NAMES, method_registry.algorithm_names())
  except ValueError as e:
    print(f'gpu_check: error: {e}', file=sys.stderr)
    return 2
  info = tf.sysconfig.get_build_info()
  print(f'gpu_check: TensorFlow {tf.__version__}, built with CUDA: '
        f'{tf.test.is_built_with_cuda()} (CUDA {info.get("cuda_version", "-")}, cuDNN '
        f'{info.get("cudnn_version", "-")})', flush=True)
  gpus = inprocess.visible_gpus()
  print(f'gpu_check: GPUs TensorFlow sees: {", ".join(gpus) if gpus else "none"}', flush=True)
  placement_log = _PLACEMENT_LOG.value or None
  context = inprocess.InProcessContext(
      record_placement=True, log_device_placement=bool(placement_log),
      clients_in_flight=flag_config.MAX_CONCURRENT_CLIENTS.value)
  tff.framework.set_default_context(context)
  print(f'gpu_check: {context.describe()}; training {config.federation.rounds} rounds of '
        f'{method} on {config.dataset}', flush=True)
  output_dir = flag_config.OUTPUT_DIR.value or tempfile.mkdtemp(prefix='fedcmi-gpu-check-')
  if placement_log:
    print(f'gpu_check: TensorFlow\'s device-placement log goes to {placement_log}', flush=True)
  try:
    with _output_to(placement_log) as console:
      experiment.run_experiment(config, output_dir, method=method,
                                log=lambda line: print('  ' + line, file=console, flush=True))
  except (experiment.OutputDirectoryError, prepared.DataFormatError) as e:
    print(f'gpu_check: error: {e}', file=sys.stderr)
    return 2
  finally:
    runtime.stop_worker_processes()
  counts = dict(context.work_placement)
  print(f'gpu_check: ops that ran client work, per device (run written to {output_dir}):')
  print('\n'.join(placement_lines(counts)))
  on_gpu = sum(n for device, n in counts.items() if 'GPU' in device.upper())
  if on_gpu:
    print(f'gpu_check: OK: client work ran on a GPU ({on_gpu} ops)')
    return 0
  reason = ('TensorFlow sees no GPU (is the NVIDIA driver installed, and did you run '
            '`scripts/setup.sh --gpu` and `source scripts/gpu_env.sh`?)' if not gpus else
            'a GPU is visible but no client-work op was placed on it')
  print(f'gpu_check: client work ran on the CPU only: {reason}')
  return 3


if __name__ == '__main__':
  runtime.run_program(main)
