"""Runs one TFF TensorFlow computation in this process, the way TFF's C++ runtime does.

A TFF TensorFlow computation is a serialized GraphDef plus bindings that name its
parameter and result tensors and an optional initialize op.  TFF's C++ executor
(`tensorflow_executor.cc`, `session_provider.cc` in TFF 0.87) runs it in a pool of
`tensorflow::Session`s, one graph per session, with run-time Grappler off (the
graphs were optimised once when the computation was compiled), soft placement and
GPU memory growth; each call runs the initialize op and then fetches the results,
and a dataset parameter arrives as a serialized dataset graph that a
`DatasetFromGraph` op turns back into a dataset.  `ComputationSessions` does the
same with `tf.compat.v1.Session`s in the Python process: the graph is imported
once per session, every session gets its own variables (a session has its own
devices and resource managers), and a session pinned to a GPU gets that GPU on
every node that has no device (iterator ops stay on the CPU, as in TFF; with soft
placement, ops without a GPU kernel fall back to the CPU).

Values are flat lists of leaves in the pre-order of the computation's type: numpy
arrays for tensors, `tf.data.Dataset`s for sequences.  `flatten_value` and
`pack_value` convert between Python structures and such lists, guided by a TFF
type.
"""

from __future__ import annotations

import collections.abc
import queue
import threading
import weakref
from typing import Any, Sequence

import attrs
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

# Iterator ops stay on the CPU even in a GPU session (as TFF's session provider does).
_HOST_ONLY_OP_PREFIXES = ('IteratorGetNext', 'MakeIterator', 'AnonymousIterator')


def session_config(log_device_placement: bool = False) -> tf.compat.v1.ConfigProto:
  """TFF's session options: no run-time Grappler or JIT, soft placement, GPU growth."""
  config = tf.compat.v1.ConfigProto()
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
  config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.OFF
  config.gpu_options.allow_growth = True
  config.experimental.optimize_for_static_graph = True
  config.experimental.disable_output_partition_graphs = True
  config.allow_soft_placement = True
  config.log_device_placement = log_device_placement
  return config


class _Leaf(collections.namedtuple('_Leaf', ['is_sequence', 'tensor_name'])):
  """One parameter or result of a computation: a tensor, or a dataset's variant."""


def _binding_leaves(binding) -> list:
  """The tensor names of a TFF `TensorFlow.Binding`, in pre-order."""
  kind = binding.WhichOneof('binding')
  if kind == 'tensor':
    return [_Leaf(False, binding.tensor.tensor_name)]
  if kind == 'sequence':
    if binding.sequence.WhichOneof('binding') != 'variant_tensor_name':
      raise ValueError(f'unsupported sequence binding {binding.sequence}')
    return [_Leaf(True, binding.sequence.variant_tensor_name)]
  if kind == 'struct':
    return [leaf for element in binding.struct.element for leaf in _binding_leaves(element)]
  raise ValueError(f'unsupported binding kind {kind!r}')


def _pinned(graph_def: tf.compat.v1.GraphDef, device: str | None) -> tf.compat.v1.GraphDef:
  """A copy of graph_def with `device` on every top-level node that has none."""
  if device is None:
    return graph_def
  pinned = tf.compat.v1.GraphDef()
  pinned.CopyFrom(graph_def)
  for node in pinned.node:
    if node.op.startswith(_HOST_ONLY_OP_PREFIXES):
      node.device = '/device:CPU:0'
    elif not node.device:
      node.device = device
  return pinned


_serialized_datasets = weakref.WeakKeyDictionary()
_serialized_lock = threading.Lock()


def serialized_dataset(dataset: tf.data.Dataset) -> bytes:
  """The dataset as a serialized graph (what TFF sends to its workers), cached per object.

  Client datasets are built once per experiment and passed again every round;
  serialising them once saves a graph traversal (and for in-memory datasets a
  copy of their tensors) per client and round.
  """
  with _serialized_lock:
    cached = _serialized_datasets.get(dataset)
  if cached is None:
    cached = tf.raw_ops.DatasetToGraphV2(
        input_dataset=tf.data.experimental.to_variant(dataset)).numpy()
    with _serialized_lock:
      _serialized_datasets[dataset] = cached
  return cached


class _Session:
  """One imported copy of the computation's graph and the session that runs it."""

  def __init__(self, graph_def, parameters, results, initialize_op: str, device: str | None,
               config: tf.compat.v1.ConfigProto):
    self.graph = tf.Graph()
    with self.graph.as_default():
      input_map, self._feeds = {}, []
      for i, leaf in enumerate(parameters):
        if leaf.is_sequence:
          with tf.device('/device:CPU:0'):
            serialized = tf.compat.v1.placeholder(tf.string, [], name=f'serialized_dataset_{i}')
            variant = tf.raw_ops.DatasetFromGraph(graph_def=serialized)
          input_map[leaf.tensor_name] = variant
          input_map['^' + leaf.tensor_name.split(':')[0]] = variant
          self._feeds.append(serialized)
        else:
          self._feeds.append(None)
      tf.graph_util.import_graph_def(_pinned(graph_def, device), input_map=input_map,
                                     name='computation')
      for i, leaf in enumerate(parameters):
        if not leaf.is_sequence:
          self._feeds[i] = self.graph.get_tensor_by_name('computation/' + leaf.tensor_name)
      self._fetches = [self.graph.get_tensor_by_name('computation/' + leaf.tensor_name)
                       for leaf in results]
      self._initialize = (self.graph.get_operation_by_name('computation/' + initialize_op)
                          if initialize_op else None)
      self.session = tf.compat.v1.Session(graph=self.graph, config=config)
    self._parameters = parameters
    # Callables with fixed feeds and fetches skip Session.run's per-call feed handling.
    self._run_initialize = (
        self.session.make_callable(self._initialize, feed_list=self._feeds)
        if self._initialize is not None and results else None)
    self._run = (self.session.make_callable(self._fetches, feed_list=self._feeds,
                                            accept_options=True) if results else None)

  def run(self, leaves: Sequence[Any], run_options=None, run_metadata=None) -> list:
    if self._run is None:
      return []
    values = [serialized_dataset(value) if leaf.is_sequence else value
              for leaf, value in zip(self._parameters, leaves)]
    if self._run_initialize is not None:
      self._run_initialize(*values)
    return self._run(*values, options=run_options, run_metadata=run_metadata)


class ComputationSessions:
  """A TFF TensorFlow computation imported into this process, with one session per device.

  Calls may come from several threads: each call borrows a free session (and so
  a device) from the pool and gives it back afterwards.
  """

  def __init__(self, computation, devices: Sequence[str | None] = (None,),
               config: tf.compat.v1.ConfigProto | None = None):
    """Imports `computation` once per entry of `devices` (None: no pinning)."""
    proto = tff.framework.ConcreteComputation.get_proto(computation)
    if proto.WhichOneof('computation') != 'tensorflow':
      raise ValueError(f'not a TensorFlow computation: {computation.type_signature}')
    self.type_signature = computation.type_signature
    graph_def = tf.compat.v1.GraphDef()
    if not proto.tensorflow.graph_def.Unpack(graph_def):
      raise ValueError('the computation does not hold a GraphDef')
    parameters = (_binding_leaves(proto.tensorflow.parameter)
                  if proto.tensorflow.HasField('parameter') else [])
    results = _binding_leaves(proto.tensorflow.result)
    if any(leaf.is_sequence for leaf in results):
      raise ValueError(f'computations returning datasets are not supported: '
                       f'{self.type_signature}')
    self.num_parameters = len(parameters)
    config = config or session_config()
    self._sessions = [_Session(graph_def, parameters, results, proto.tensorflow.initialize_op,
                               device, config) for device in devices]
    self._free = queue.SimpleQueue()
    for session in self._sessions:
      self._free.put(session)

  def __call__(self, leaves: Sequence[Any] = (), run_options=None, run_metadata=None) -> list:
    """Runs the computation on a flat list of parameter leaves; returns the result leaves."""
    if len(leaves) != self.num_parameters:
      raise ValueError(f'expected {self.num_parameters} parameter values, got {len(leaves)}')
    session = self._free.get()
    try:
      return session.run(leaves, run_options, run_metadata)
    finally:
      self._free.put(session)


def members(value, type_spec: tff.StructType) -> list:
  """The values of a Python structure's members, in the order of `type_spec`."""
  elements = tff.structure.to_elements(type_spec)
  if isinstance(value, tff.structure.Struct):
    members = [v for _, v in tff.structure.to_elements(value)]
  elif isinstance(value, collections.abc.Mapping):
    missing = [name for name, _ in elements if name not in value]
    if missing or len(value) != len(elements):
      raise TypeError(f'a mapping with keys {sorted(value)} does not match {type_spec}')
    members = [value[name] for name, _ in elements]
  elif attrs.has(type(value)):
    members = [getattr(value, name) for name, _ in elements]
  elif isinstance(value, (list, tuple)):
    members = list(value)
  else:
    raise TypeError(f'a {type(value).__name__} is not a structure of type {type_spec}')
  if len(members) != len(elements):
    raise TypeError(f'{len(members)} values do not match the {len(elements)} members of '
                    f'{type_spec}')
  return members


def flatten_value(value, type_spec: tff.types.Type) -> list:
  """The leaves of `value` in the pre-order of `type_spec` (federated types unwrapped).

  Tensors become numpy arrays of the type's dtype (a wrong shape raises); sequences
  must be `tf.data.Dataset`s.  A non-all-equal federated value (a list of client
  values) cannot be flattened into one list: callers handle client data.
  """
  if isinstance(type_spec, tff.FederatedType):
    if not type_spec.all_equal:
      raise TypeError(f'per-client values of {type_spec} cannot be flattened into one list')
    return flatten_value(value, type_spec.member)
  if isinstance(type_spec, tff.StructType):
    return [leaf for member, (_, member_type) in zip(
        members(value, type_spec), tff.structure.to_elements(type_spec))
            for leaf in flatten_value(member, member_type)]
  if isinstance(type_spec, tff.TensorType):
    array = np.asarray(value, dtype=type_spec.dtype)
    if not _shape_fits(array.shape, type_spec.shape):
      raise TypeError(f'a value of shape {array.shape} does not fit {type_spec}')
    return [array]
  if isinstance(type_spec, tff.SequenceType):
    if not isinstance(value, tf.data.Dataset):
      raise TypeError(f'expected a tf.data.Dataset for {type_spec}, got {type(value).__name__}')
    return [value]
  raise TypeError(f'unsupported type {type_spec}')


def _shape_fits(shape: tuple, declared) -> bool:
  if declared is None:
    return True
  return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))


def count_leaves(type_spec: tff.types.Type) -> int:
  """How many leaves a value of `type_spec` flattens to."""
  if isinstance(type_spec, tff.FederatedType):
    return count_leaves(type_spec.member)
  if isinstance(type_spec, tff.StructType):
    return sum(count_leaves(t) for _, t in tff.structure.to_elements(type_spec))
  return 1


def pack_value(leaves: Sequence[Any], type_spec: tff.types.Type):
  """The inverse of `flatten_value`: leaves -> the Python value TFF's runtimes return.

  Structures come back in the containers the type records (named tuples, attrs
  classes, OrderedDicts...), as `tff.types.type_to_py_container` gives them.
  """
  iterator = iter(leaves)

  def build(t):
    if isinstance(t, tff.FederatedType):
      return build(t.member)
    if isinstance(t, tff.StructType):
      return tff.structure.Struct([(name, build(member))
                                   for name, member in tff.structure.to_elements(t)])
    return next(iterator)

  value = build(type_spec)
  if next(iterator, None) is not None:
    raise ValueError(f'more leaves than {type_spec} holds')
  return tff.types.type_to_py_container(value, type_spec)
