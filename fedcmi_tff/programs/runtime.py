"""TFF execution contexts and clean-up of the TFF worker process.

TFF 0.87 runs computations in a C++ `worker_binary` subprocess.  It outlives a
Python process that exits without stopping it and keeps that process's pipes
open (STACK.md pitfall 6), so every entry point calls
`configure_execution_context`, which also registers `stop_worker_processes` to
run at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import time

import psutil

_WORKER_NAME = 'worker_binary'
_registered = False


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


def _register_cleanup():
  global _registered
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


def configure_execution_context(workers: tuple = (), max_concurrent_clients: int | None = None
                                ) -> str:
  """Chooses where TFF computations run.

  Args:
    workers: addresses (host:port) of running `worker_binary` services.  None: a
      local worker is started on first use; one: all computations go to it; several:
      clients are split across them (TFF's mergeable context).
    max_concurrent_clients: cap on parallel client computations of the local
      worker (TFF's OOM guard); None for no cap.

  Returns:
    A one-line description of the context.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  _register_cleanup()
  workers = tuple(w for w in workers if w)
  if not workers:
    tff.backends.native.set_sync_local_cpp_execution_context(
        max_concurrent_computation_calls=max_concurrent_clients or -1)
    return 'local C++ worker' + (f' (max {max_concurrent_clients} concurrent clients)'
                                 if max_concurrent_clients else '')
  if len(workers) == 1:
    tff.framework.set_default_context(_remote_context(workers[0], sync=True))
    return f'remote worker {workers[0]}'
  tff.backends.native.set_mergeable_comp_execution_context(
      [_remote_context(a, sync=False) for a in workers])
  return f'{len(workers)} remote workers (mergeable): {", ".join(workers)}'


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
