"""Where TFF computations run (the `--runtime` flag), and the lifetime of TFF's worker process.

  inprocess   (default) the learning process's MapReduceForm, run inside this
              Python process (backends/inprocess.py): no subprocess, no listening
              socket; client work on the visible GPUs, else the CPU.
  tff_cpp     TFF's C++ `worker_binary` on this machine (CPU only: the pip build has
              no CUDA kernels), started here and reached through a remote-executor
              context on localhost.  The binary cannot be told which address to bind:
              it serves unauthenticated gRPC on every network interface while it runs,
              which `configure_execution_context` says loudly.  It dies with this
              process, however this process ends (a parent-death signal), and never
              holds this process's stdout or stderr.
  tff_remote  `worker_binary` services already running at `--workers` (one: all
              computations go to it; several: clients are split across them with
              TFF's mergeable context).  TFF retries an unreachable worker forever;
              `start_worker_watchdog` ends the program with a one-line error when a
              worker stays unreachable for `--worker_timeout` seconds.

`stop_worker_processes` (registered at exit) stops every worker this process started,
including the one TFF's own local C++ context may start.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
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


def _drop_contexts() -> None:
  """At exit, after stop_worker_processes (atexit runs in reverse order): releases TFF's
  contexts while modules are still alive, so their finalisers do not fail noisily
  during interpreter shutdown."""
  import gc  # pylint: disable=g-import-not-at-top
  try:
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    from fedcmi_tff.backends import inprocess  # pylint: disable=g-import-not-at-top
    tff.framework.get_context_stack().set_default_context(inprocess.InProcessContext())
  except Exception:  # pylint: disable=broad-except
    return
  _installed.clear()
  gc.collect()


def stop_worker_processes(timeout: float = 5.0) -> int:
  """Stops the TFF worker processes this process started; returns how many.

  TFF computations may still run afterwards: TFF starts a new worker on demand
  (its own local context), or the program starts one with `start_local_worker`.
  """
  _workers_stopping.set()  # the program stops them: not a lost worker
  own = _stop_local_workers(timeout)
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
  return own + len(workers)


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


class WorkerError(Exception):
  """A TFF worker could not be started or reached."""


_GRPC_OPTIONS = [('grpc.max_send_message_length', 2 * 10**9),
                 ('grpc.max_receive_message_length', 2 * 10**9)]
_PR_SET_PDEATHSIG = 1
_local_workers = []  # [(subprocess.Popen, port)] started by start_local_worker
_workers_stopping = threading.Event()  # set by stop_worker_processes: the watchdog stands down


def worker_binary_path() -> str:
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(tff.__file__), 'data', _WORKER_NAME)


def _die_with_parent():  # runs in the child between fork and exec
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  if os.getppid() == 1:  # the parent died before prctl took effect
    os._exit(1)


def start_local_worker(max_concurrent_computation_calls: int = -1,
                       timeout: float = 60.0) -> int:
  """Starts TFF's worker_binary on a free port, tied to this process; returns the port.

  The worker gets SIGKILL when this process ends (PR_SET_PDEATHSIG: also on SIGKILL of
  this process), reads no stdin and writes to /dev/null, so a pipe this process writes
  to closes when it exits.

  Raises:
    WorkerError: it did not start serving within `timeout` seconds.
  """
  import grpc  # pylint: disable=g-import-not-at-top
  import portpicker  # pylint: disable=g-import-not-at-top
  port = portpicker.pick_unused_port()
  process = subprocess.Popen(
      [worker_binary_path(), f'--port={port}',
       f'--max_concurrent_computation_calls={max_concurrent_computation_calls}'],
      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      # Its own session: a Ctrl-C in the terminal reaches this program (which stops after
      # the round) but not the worker the round needs.
      start_new_session=True, preexec_fn=_die_with_parent)
  _local_workers.append((process, port))
  channel = grpc.insecure_channel(f'localhost:{port}', _GRPC_OPTIONS)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
  except grpc.FutureTimeoutError:
    process.kill()
    raise WorkerError(f'TFF\'s worker_binary did not start serving on port {port} within '
                      f'{timeout:.0f}s (exit status {process.poll()})') from None
  finally:
    channel.close()
  return port


def _stop_local_workers(timeout: float = 5.0) -> int:
  """Stops (and reaps) the workers start_local_worker started; returns how many ran."""
  running = sum(process.poll() is None for process, _ in _local_workers)
  for process, _ in _local_workers:
    if process.poll() is None:
      process.terminate()
  for process, _ in _local_workers:
    try:
      process.wait(timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
  _local_workers.clear()
  return running


def local_worker_exited() -> str | None:
  """'port N: exit status S' for a local worker that has died, else None."""
  for process, port in _local_workers:
    if process.poll() is not None:
      return f'the local TFF worker (port {port}) exited with status {process.returncode}'
  return None


def _unreachable(addresses: tuple, timeout: float) -> list:
  import grpc  # pylint: disable=g-import-not-at-top
  out = []
  for address in addresses:
    channel = grpc.insecure_channel(address)
    try:
      grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
      out.append(address)
    finally:
      channel.close()
  return out


def check_workers_reachable(addresses: tuple, timeout: float) -> None:
  """Raises WorkerError naming the workers not reachable within `timeout` seconds."""
  missing = _unreachable(addresses, timeout)
  if missing:
    raise WorkerError(f'TFF worker{"s" if len(missing) > 1 else ""} {", ".join(missing)} not '
                      f'reachable within {timeout:g}s (--worker_timeout): is worker_binary '
                      'running there, and the port open?')


def start_worker_watchdog(addresses: tuple, timeout: float, program: str,
                          interval: float = 2.0) -> threading.Thread:
  """Ends this process (exit status 4, one line on stderr) when a TFF worker is lost.

  Checks every `interval` seconds that each remote worker accepts connections and that
  no local worker has exited; a remote worker unreachable for `timeout` seconds in a row,
  or a dead local worker, ends the program.  TFF itself would retry forever.  State is
  saved after every round, so `--resume` continues from the last finished round.
  """
  _workers_stopping.clear()

  def watch():
    lost_since = {}
    while not _workers_stopping.wait(interval):
      dead = local_worker_exited()
      if dead:
        _fail(f'{program}: error: {dead}; the run stopped; continue it with --resume')
      for address in addresses:
        if _unreachable((address,), min(interval, timeout)):
          lost_since.setdefault(address, time.time())
          if time.time() - lost_since[address] >= timeout:
            _fail(f'{program}: error: TFF worker {address} unreachable for {timeout:g}s '
                  '(--worker_timeout); the run stopped; continue it with --resume')
        else:
          lost_since.pop(address, None)

  thread = threading.Thread(target=watch, name='tff-worker-watchdog', daemon=True)
  thread.start()
  return thread


def _fail(message: str) -> None:
  if _workers_stopping.is_set():  # the program itself stopped the workers meanwhile
    return
  print(message, file=sys.stderr, flush=True)
  stop_worker_processes()
  os._exit(4)


def _register_cleanup():
  global _registered
  let_workers_be_interrupted()
  if not _registered:
    atexit.register(_drop_contexts)
    atexit.register(stop_worker_processes)
    _registered = True


def _remote_context(address: str, sync: bool):
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  stub = tff.framework.RemoteExecutorGrpcStub(grpc.insecure_channel(address, _GRPC_OPTIONS))

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
                                max_concurrent_clients: int | None = None,
                                worker_timeout: float | None = None,
                                program: str = 'fedcmi_tff') -> str:
  """Installs the TFF execution context of `runtime` as the default context.

  Args:
    runtime: one of RUNTIMES (see the module docstring).
    workers: tff_remote only: addresses (host:port) of running `worker_binary`
      services.
    max_concurrent_clients: clients trained at once: the in-process runtime's
      clients in flight (default one per GPU, or two per CPU core up to 8), or the
      local C++ worker's cap on parallel client computations (TFF's OOM guard;
      default none).
    worker_timeout: with a TFF worker (tff_cpp, tff_remote): seconds a remote worker may
      stay unreachable, checked before the first computation and then by a watchdog
      thread that ends the program (`start_worker_watchdog`); None: no checks (tests).
    program: the name the watchdog's error line starts with.

  Returns:
    A one-line description of the context.

  Raises:
    ValueError: see `check_runtime`.
    WorkerError: the local worker did not start, or a remote one is unreachable.
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
    port = start_local_worker(max_concurrent_clients or -1)
    tff.framework.set_default_context(_remote_context(f'localhost:{port}', sync=True))
    print(f'WARNING: --runtime=tff_cpp: TFF\'s worker_binary serves unauthenticated gRPC on '
          f'port {port} of every network interface while this program runs; any host that '
          f'can reach this machine on that port can run computations as user '
          f'{_user()}.  Use the default --runtime=inprocess (no socket), or block the port '
          'with a firewall.', file=sys.stderr, flush=True)
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
  if worker_timeout is not None and runtime != 'inprocess':
    check_workers_reachable(workers, worker_timeout)
    start_worker_watchdog(workers, worker_timeout, program)
  _installed[:] = [tff.framework.get_context_stack().current, description]
  return description


def _user() -> str:
  try:
    import pwd  # pylint: disable=g-import-not-at-top
    return pwd.getpwuid(os.getuid()).pw_name
  except (ImportError, KeyError):
    return str(os.getuid())


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
  # Also on exits before any runtime is configured (bad flags): TFF's import-time context
  # would otherwise print a traceback from its finaliser during interpreter shutdown.
  _register_cleanup()
  app.run(main)


def wait_for_no_workers(timeout: float = 5.0) -> bool:
  """True once no worker child remains (used by tests)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if not _worker_children():
      return True
    time.sleep(0.1)
  return not _worker_children()
