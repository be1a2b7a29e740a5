"""Where TFF computations run (the `--runtime` flag), and clean-up of TFF's worker process.

  inprocess   (default) the learning process's MapReduceForm, run inside this
              Python process (backends/inprocess.py): no subprocess, no listening
              socket; client work on the visible GPUs, else the CPU.
  tff_cpp     TFF's local C++ `worker_binary`, started on first use (CPU only: the
              pip build has no CUDA kernels; it serves unauthenticated gRPC on all
              interfaces while it runs).
  tff_remote  `worker_binary` services already running at `--workers` (one: all
              computations go to it; several: clients are split across them with
              TFF's mergeable context).

A TFF worker outlives a Python process that exits without stopping it and keeps
that process's pipes open, so `configure_execution_context` registers
`stop_worker_processes` to run at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import time

import psutil

_WORKER_NAME = 'worker_binary'
_registered = False

RUNTIMES = ('inprocess', 'tff_cpp', 'tff_remote')
DEFAULT_RUNTIME = 'inprocess'
_installed = []  # [context, description] of the last configure_execution_context


def _worker_children():
  try:
    children = psutil.Process(os.getpid()).children(recursive=True)
  except psutil.Error:
    return []
  found = []
  for child in children:
    try:
      if _WORKER_NAME in ' '.join(child.cmdline()):
        found.append(child)
    except psutil.Error:
      continue
  return found


def _has_exited(process) -> bool:
  try:
    return process.status() == psutil.STATUS_ZOMBIE
  except psutil.NoSuchProcess:
    return True


def _wait_without_reaping(workers, timeout: float):
  """Waits until each worker has exited; returns those still running.

  The exited worker is left for TFF to reap: TFF's local `ServiceManager` holds
  the `subprocess.Popen` and, on its next use, signals and waits on that pid
  before starting a fresh worker.  Reaping it here (`psutil.wait_procs` does)
  frees the pid, and TFF's `os.kill` then raises ProcessLookupError, so a
  second computation in the same process would fail.
  """
  deadline = time.time() + timeout
  alive = list(workers)
  while alive and time.time() < deadline:
    alive = [w for w in alive if not _has_exited(w)]
    if alive:
      time.sleep(0.05)
  return alive


def stop_worker_processes(timeout: float = 5.0) -> int:
  """Stops the TFF worker processes this process started; returns how many.

  TFF computations may still run afterwards: TFF starts a new worker on demand.
  """
  workers = _worker_children()
  for w in workers:
    try:
      w.send_signal(signal.SIGINT)
    except psutil.Error:
      pass
  for w in _wait_without_reaping(workers, timeout):
    try:
      w.kill()
    except psutil.Error:
      pass
  _wait_without_reaping(workers, timeout)
  return len(workers)


def let_workers_be_interrupted() -> None:
  """Makes the TFF workers this process starts stop on SIGINT, as TFF expects.

  A process started in the background by a non-interactive shell (`cmd &` in a script,
  a CI runner) inherits SIGINT as ignored, and so would every worker it starts; TFF
  stops its local worker with SIGINT and then waits for it, forever.  Installing
  Python's own SIGINT handler (KeyboardInterrupt) here gives started workers the default
  disposition again (exec resets handled signals).  Only possible in the main thread;
  elsewhere this does nothing.
  """
  try:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
      signal.signal(signal.SIGINT, signal.default_int_handler)
  except ValueError:  # not the main thread
    pass


def _register_cleanup():
  global _registered
  let_workers_be_interrupted()
  if not _registered:
    atexit.register(stop_worker_processes)
    _registered = True


def _remote_context(address: str, sync: bool):
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  options = [('grpc.max_send_message_length', 2 * 10**9),
             ('grpc.max_receive_message_length', 2 * 10**9)]
  stub = tff.framework.RemoteExecutorGrpcStub(grpc.insecure_channel(address, options))

  def stack_fn(cardinalities):
    if cardinalities.get(tff.CLIENTS) is None:
      cardinalities[tff.CLIENTS] = 0  # initialize() has no clients argument
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor

  context_cls = tff.framework.SyncExecutionContext if sync else tff.framework.AsyncExecutionContext
  return context_cls(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)


def check_runtime(runtime: str, workers: tuple = (),
                  max_concurrent_clients: int | None = None) -> None:
  """Raises ValueError (a one-line message) for an inconsistent runtime choice."""
  if runtime not in RUNTIMES:
    raise ValueError(f'unknown runtime {runtime!r}; expected one of {", ".join(RUNTIMES)}')
  workers = tuple(w for w in workers if w)
  if runtime == 'tff_remote' and not workers:
    raise ValueError('--runtime=tff_remote needs --workers=host:port[,host:port...]')
  if runtime != 'tff_remote' and workers:
    raise ValueError(f'--workers is only used with --runtime=tff_remote, not {runtime}')
  if max_concurrent_clients is not None and max_concurrent_clients < 1:
    raise ValueError(f'--max_concurrent_clients must be >= 1, got {max_concurrent_clients}')


def configure_execution_context(runtime: str = DEFAULT_RUNTIME, workers: tuple = (),
                                max_concurrent_clients: int | None = None) -> str:
  """Installs the TFF execution context of `runtime` as the default context.

  Args:
    runtime: one of RUNTIMES (see the module docstring).
    workers: tff_remote only: addresses (host:port) of running `worker_binary`
      services.
    max_concurrent_clients: clients trained at once: the in-process runtime's
      clients in flight (default one per GPU, or two per CPU core up to 8), or the
      local C++ worker's cap on parallel client computations (TFF's OOM guard;
      default none).

  Returns:
    A one-line description of the context.

  Raises:
    ValueError: see `check_runtime`.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  check_runtime(runtime, workers, max_concurrent_clients)
  workers = tuple(w for w in workers if w)
  _register_cleanup()  # also catches a worker something else might start
  if runtime == 'inprocess':
    from fedcmi_tff.backends import inprocess  # pylint: disable=g-import-not-at-top
    context = inprocess.InProcessContext(clients_in_flight=max_concurrent_clients)
    tff.framework.set_default_context(context)
    description = f'inprocess: {context.describe()}'
  elif runtime == 'tff_cpp':
    tff.backends.native.set_sync_local_cpp_execution_context(
        max_concurrent_computation_calls=max_concurrent_clients or -1)
    description = 'tff_cpp: local C++ worker' + (
        f' (max {max_concurrent_clients} concurrent clients)' if max_concurrent_clients else '')
  elif len(workers) == 1:
    tff.framework.set_default_context(_remote_context(workers[0], sync=True))
    description = f'tff_remote: remote worker {workers[0]}'
  else:
    tff.backends.native.set_mergeable_comp_execution_context(
        [_remote_context(a, sync=False) for a in workers])
    description = (f'tff_remote: {len(workers)} remote workers (mergeable): '
                   f'{", ".join(workers)}')
  _installed[:] = [tff.framework.get_context_stack().current, description]
  return description


def current_runtime() -> str:
  """A one-line description of TFF's current execution context (recorded in summary.json)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  context = tff.framework.get_context_stack().current
  if _installed and _installed[0] is context:
    return _installed[1]
  describe = getattr(context, 'describe', None)
  return describe() if callable(describe) else type(context).__name__


def run_program(main) -> None:
  """absl's app.run(main), from the directory the user ran `bazel run` in.

  Under `bazel run` a program starts in its runfiles tree; relative --flagfile and
  --output_dir paths should resolve as they would with `python -m`.
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  if os.environ.get('BUILD_WORKING_DIRECTORY'):
    os.chdir(os.environ['BUILD_WORKING_DIRECTORY'])
  app.run(main)


def wait_for_no_workers(timeout: float = 5.0) -> bool:
  """True once no worker child remains (used by tests)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if not _worker_children():
      return True
    time.sleep(0.1)
  return not _worker_children()
