"""A TFF execution context that runs learning processes inside this Python process.

TFF 0.87 executes computations in its C++ `worker_binary`, a subprocess built
without CUDA kernels that serves unauthenticated gRPC on every interface.  TFF
also compiles a round of a learning process (`process.next`) into a
`tff.backends.mapreduce.MapReduceForm`: plain TensorFlow computations meant for
MapReduce-like systems that run nothing but TensorFlow:

  prepare(server_state) -> client_input           once per round
  work(client_data, client_input) -> (update, secure summands)
                                                  once per sampled client
  zero() -> A;  accumulate(A, update) -> A        the updates, folded in client order
  report(A) -> R
  update(server_state, (R, secure sums)) -> (new_state, metrics)

`InProcessContext` is such a system.  Installed as TFF's default context, it
compiles each computation it is asked to run once (`process.next` to its
MapReduceForm, `process.initialize` to its state-initialisation computation, a
TensorFlow computation as it is), imports every TensorFlow graph once into this
process (`tensorflow_sessions.ComputationSessions`) and runs the parts as the
form defines them, with the C++ runtime's session options.  Programs call
`process.initialize()` and `process.next(state, client_data)` unchanged.  Client
work runs on the visible GPUs, round robin, one client in flight per GPU, or on
the CPU, two clients in flight per core.  Nothing is spawned and no port is opened.

Semantics: TFF compiled the form, so this context only sequences its parts.  The
aggregation is the same left fold from `zero` in client order that TFF's C++
runtime performs for `federated_aggregate` (and `federated_sum`, which it
desugars to one), so the two runtimes agree on CPU to float rounding
(tests/test_inprocess.py).

Secure sums (`federated_secure_sum_bitwidth`, `federated_secure_sum`,
`federated_secure_modular_sum`; e.g. `tff.aggregators.SecureSumFactory`) are
simulated: this process sees every client's summands and adds them up, and only
the sums enter `update`, which is all a secure-aggregation protocol would reveal
to the server.  The sums are the ones TFF's own runtime computes (its
`backends/test/compiler.py` replaces the intrinsics with insecure bodies): a
bitwidth-b or max-input-m sum is the plain sum of client values that must lie in
[0, 2**b - 1] (b <= 62) or [0, m], a modular sum is the sum modulo the modulus.
They are exact integer sums (int64 with an overflow check; Python ints for
modular sums), and a value outside its range or a sum that does not fit the
summands' dtype is an error rather than TFF's silent wrap-around.

Computations that are neither TensorFlow computations, nor no-argument
computations returning server state, nor compatible with MapReduceForm are
refused with an error naming the runtime that runs them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import threading
from typing import Sequence

from absl import logging as absl_logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff.backends import tensorflow_sessions


def visible_gpus() -> list:
  """Device names of the GPUs TensorFlow sees, with memory growth turned on."""
  gpus = tf.config.list_physical_devices('GPU')
  for gpu in gpus:
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
      pass  # already initialised; the sessions ask for growth themselves
  return [f'/device:GPU:{i}' for i in range(len(gpus))]


@contextlib.contextmanager
def _without_info_logs():
  """Silences TFF's INFO lines while it compiles ("Using Grappler on MapReduceForm...")."""
  logger = absl_logging.get_absl_logger()
  level = logger.level
  logger.setLevel(max(level, logging.WARNING))
  try:
    yield
  finally:
    logger.setLevel(level)


def default_cpu_clients_in_flight() -> int:
  """Two clients per usable CPU core, at most 8 (each holds its own model variables).

  Small client models leave cores idle within one client's step; on the 2-core
  project machine (FedCMI, demo model, 20 clients per round) 1, 2, 3, 4 and 8 clients
  in flight took 1.12, 0.79, 0.71, 0.69 and 0.80 s per round.
  """
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    cores = os.cpu_count() or 1
  return max(1, min(2 * cores, 8))


class _TensorFlowRunner:
  """A TensorFlow computation, run as it is."""

  def __init__(self, computation, config):
    self._type = computation.type_signature
    self._sessions = tensorflow_sessions.ComputationSessions(computation, config=config)

  def __call__(self, arg):
    leaves = ([] if self._type.parameter is None else
              tensorflow_sessions.flatten_value(arg, self._type.parameter))
    return tensorflow_sessions.pack_value(self._sessions(leaves), self._type.result)


class _InitializeRunner:
  """A no-argument federated computation returning server state (`process.initialize`)."""

  def __init__(self, computation, config):
    self._type = computation.type_signature
    initialize = tff.backends.mapreduce.get_state_initialization_computation(computation)
    self._sessions = tensorflow_sessions.ComputationSessions(initialize, config=config)

  def __call__(self, arg):
    del arg
    return tensorflow_sessions.pack_value(self._sessions(), self._type.result)


# The secure parts of a MapReduceForm, in the order of `work`'s results 1..3.
_SECURE_PARTS = ('secure_sum_bitwidth', 'secure_sum_max_input', 'secure_modular_sum_modulus')
# TFF's largest bitwidth: its sums run in int64 and keep one bit for the carry.
_MAX_SECURE_BITWIDTH = 62


class _SecureSum:
  """One tensor of `work`'s secure summands, summed over the clients as TFF sums it."""

  def __init__(self, part: str, parameter, tensor_type: tff.TensorType):
    self._part, self._type = part, tensor_type
    parameter = np.asarray(parameter)
    self._modulus = None
    if part == 'secure_modular_sum_modulus':
      self._modulus = parameter.astype(object)  # Python ints: nothing overflows
      return
    if part == 'secure_sum_bitwidth':
      if np.any(parameter > _MAX_SECURE_BITWIDTH):
        raise OverflowError(f'secure sum bitwidth {parameter} > {_MAX_SECURE_BITWIDTH} '
                            '(TFF sums in int64)')
      parameter = 2 ** parameter.astype(np.int64) - 1
    self._max_input = parameter.astype(np.int64)

  def add(self, total, summand):
    """total + one client's summand (total None: no client yet)."""
    if self._modulus is not None:
      summand = np.asarray(summand).astype(object) % self._modulus
      return summand if total is None else (total + summand) % self._modulus
    summand = np.asarray(summand, np.int64)
    if np.any(summand < 0) or np.any(summand > self._max_input):
      raise ValueError(f'{self._part}: a client value lies outside [0, {self._max_input}]')
    if total is None:
      return summand
    total = total + summand
    if np.any(total < 0):  # two non-negative int64s wrapped around
      raise OverflowError(f'{self._part}: the sum exceeds int64')
    return total

  def result(self, total) -> np.ndarray:
    if total is None:
      return np.zeros([d or 0 for d in self._type.shape or ()], self._type.dtype)
    if self._modulus is None and np.any(total > np.iinfo(self._type.dtype).max):
      raise OverflowError(f'{self._part}: the sum does not fit {self._type}')
    return np.asarray(total).astype(self._type.dtype)


def _per_tensor(parameters, parameter_type, summand_type) -> list:
  """A secure sum's parameter for each summand tensor (TFF allows one for a structure)."""
  if isinstance(parameter_type, tff.StructType):
    return [p for (_, t), (_, u) in zip(tff.structure.to_elements(parameter_type),
                                        tff.structure.to_elements(summand_type))
            for p in _per_tensor(parameters, t, u)]
  return [next(parameters)] * tensorflow_sessions.count_leaves(summand_type)


def _secure_sums(form, config) -> list:
  """A `_SecureSum` for each tensor of `work`'s secure summands, in order."""
  sums = []
  for index, part in enumerate(_SECURE_PARTS, start=1):
    summand_type = form.work.type_signature.result[index]
    if not tensorflow_sessions.count_leaves(summand_type):
      continue
    computation = getattr(form, part)  # no argument: the bitwidths, max inputs or moduli
    parameters = iter(tensorflow_sessions.ComputationSessions(computation, config=config)())
    sums += [_SecureSum(part, parameter, tensor_type) for parameter, tensor_type in zip(
        _per_tensor(parameters, computation.type_signature.result, summand_type),
        tff.structure.flatten(summand_type))]
  return sums


class _MapReduceRunner:
  """One round of a MapReduceForm-compatible computation (`process.next`)."""

  def __init__(self, computation, work_devices: Sequence[str | None], config,
               placement: collections.Counter | None):
    self._type = computation.type_signature
    form = tff.backends.mapreduce.get_map_reduce_form_for_computation(computation)
    sessions = lambda c: tensorflow_sessions.ComputationSessions(c, config=config)
    self._prepare = sessions(form.prepare)
    self._work = tensorflow_sessions.ComputationSessions(form.work, work_devices, config)
    self._zero = sessions(form.zero)
    self._accumulate = sessions(form.accumulate)
    self._report = sessions(form.report)
    self._update = sessions(form.update)
    # work returns <update, bitwidth, max-input and modular summands>: accumulate folds
    # the update, the summands are summed here and go to `update` after `report`'s result.
    self._update_leaves = tensorflow_sessions.count_leaves(form.work.type_signature.result[0])
    self._secure_sums = _secure_sums(form, config)
    self._client_data_type = form.work.type_signature.parameter[0]
    self._placement = placement
    self._placement_lock = threading.Lock()
    self._in_flight = len(work_devices)
    self._pool = (concurrent.futures.ThreadPoolExecutor(self._in_flight)
                  if self._in_flight > 1 else None)

  def _check_client_data(self, client_data) -> list:
    if not isinstance(client_data, (list, tuple)):
      raise TypeError(f'client data must be a list of tf.data.Dataset, got '
                      f'{type(client_data).__name__}')
    for i, dataset in enumerate(client_data):
      if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f'client {i}: expected a tf.data.Dataset, got {type(dataset).__name__}')
      given = tff.SequenceType(tff.types.tensorflow_to_type(dataset.element_spec))
      if not self._client_data_type.is_assignable_from(given):
        raise TypeError(f'client {i}: a dataset of {given} does not fit '
                        f'{self._client_data_type}')
    return list(client_data)

  def _run_work(self, dataset, client_input) -> list:
    if self._placement is None:
      return self._work([dataset] + client_input)
    metadata = tf.compat.v1.RunMetadata()
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.SOFTWARE_TRACE)
    result = self._work([dataset] + client_input, options, metadata)
    with self._placement_lock:
      for device_stats in metadata.step_stats.dev_stats:
        self._placement[device_stats.device] += len(device_stats.node_stats)
    return result

  def _client_updates(self, client_data: list, client_input: list):
    """Each client's work result, in client order (computed ahead when in flight)."""
    if self._pool is None:
      for dataset in client_data:
        yield self._run_work(dataset, client_input)
      return
    in_flight = collections.deque()
    pending = iter(client_data)
    for dataset in pending:
      in_flight.append(self._pool.submit(self._run_work, dataset, client_input))
      if len(in_flight) >= self._in_flight:
        break
    while in_flight:
      result = in_flight.popleft().result()
      dataset = next(pending, None)
      if dataset is not None:
        in_flight.append(self._pool.submit(self._run_work, dataset, client_input))
      yield result

  def __call__(self, arg):
    state, client_data = tensorflow_sessions.members(arg, self._type.parameter)
    state_leaves = tensorflow_sessions.flatten_value(state, self._type.parameter[0])
    client_data = self._check_client_data(client_data)
    client_input = self._prepare(state_leaves)
    accumulator = self._zero()
    totals = [None] * len(self._secure_sums)
    for result in self._client_updates(client_data, client_input):
      accumulator = self._accumulate(accumulator + result[:self._update_leaves])
      totals = [s.add(t, x) for s, t, x in zip(self._secure_sums, totals,
                                                result[self._update_leaves:])]
    report = self._report(accumulator)
    secure = [s.result(t) for s, t in zip(self._secure_sums, totals)]
    return tensorflow_sessions.pack_value(self._update(state_leaves + report + secure),
                                          self._type.result)


class InProcessContext(tff.framework.SyncContext):
  """Runs TFF computations in this process: learning processes via their MapReduceForm.

  Install it with `tff.framework.set_default_context(InProcessContext())` (or
  `programs.runtime.configure_execution_context('inprocess')`); then
  `process.initialize()`, `process.next(...)`, `process.get_model_weights(...)`
  and `process.set_model_weights(...)` run here.
  """

  def __init__(self, devices: Sequence[str] | None = None, clients_in_flight: int | None = None,
               log_device_placement: bool = False, record_placement: bool = False):
    """Configures where client work runs.

    Args:
      devices: devices for client work, e.g. ['/device:GPU:0', '/device:GPU:1'];
        None: every visible GPU, or the CPU when there is none; []: the CPU.
      clients_in_flight: clients trained at once (one session each, assigned to
        `devices` round robin); default: one per GPU, or on the CPU two per usable
        core, at most 8 (see `default_cpu_clients_in_flight`; TFF's C++ worker also
        trains clients concurrently).
      log_device_placement: TensorFlow logs where each op of each session runs.
      record_placement: count, per device, the ops that ran client work
        (`work_placement`); it slows client work down a little.
    """
    self.devices = visible_gpus() if devices is None else list(devices)
    if clients_in_flight is not None and clients_in_flight < 1:
      raise ValueError(f'clients_in_flight must be >= 1, got {clients_in_flight}')
    slots = clients_in_flight or len(self.devices) or default_cpu_clients_in_flight()
    self._work_devices = [self.devices[i % len(self.devices)] if self.devices else None
                          for i in range(slots)]
    self._config = tensorflow_sessions.session_config(log_device_placement)
    self.work_placement = collections.Counter() if record_placement else None
    self._runners = {}

  @property
  def clients_in_flight(self) -> int:
    return len(self._work_devices)

  def describe(self) -> str:
    where = ', '.join(self.devices) if self.devices else 'CPU'
    return (f'in-process MapReduceForm runtime on {where}, '
            f'{self.clients_in_flight} client(s) in flight')

  def _runner(self, computation):
    key = id(computation)
    if key not in self._runners:
      with _without_info_logs():
        self._runners[key] = (computation, self._compile(computation))
    return self._runners[key][1]

  def _compile(self, computation):
    if not isinstance(computation, tff.framework.ConcreteComputation):
      raise TypeError(f'expected a TFF computation, got {type(computation).__name__}')
    if isinstance(computation.to_building_block(), tff.framework.CompiledComputation):
      return _TensorFlowRunner(computation, self._config)
    if computation.type_signature.parameter is None:
      return _InitializeRunner(computation, self._config)
    try:
      return _MapReduceRunner(computation, self._work_devices, self._config,
                              self.work_placement)
    except (TypeError, ValueError) as e:
      raise ValueError(
          'the inprocess runtime runs TensorFlow computations, state initialisation and '
          'MapReduceForm-compatible rounds; this computation is none of them (run it with '
          f'--runtime=tff_cpp): {computation.type_signature}: {e}') from e

  def invoke(self, comp, arg):
    return self._runner(comp)(arg)
