"""The in-process runtime (backends/inprocess.py) against TFF's C++ worker, and its mechanics.

Equivalence: for the same seed, `--runtime=inprocess` and `--runtime=tff_cpp` give
the same per-round metrics for FedCMI, FedAvg and FedAvg + PMR on the embedded
dataset, and for FedCMI on a prepared CREMA-D fixture.  Not bit for bit: TFF's
worker_binary is its own build of TensorFlow, whose CPU kernels round some
results differently from the pip TensorFlow this process runs (softmax,
convolution gradients and batch norm under oneDNN, the sparse cross-entropy
gradient without it, each by about one float32 ulp).  Stated tolerance, per round:
each accuracy within one test example, losses and temperatures within a relative
1e-4, the final global weights within 1e-4.  The clients' counts, weights and
sampled ids are equal.
"""

import collections
import csv
import dataclasses
import os

import numpy as np
import psutil
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcmi_tff import config as config_lib
from fedcmi_tff.backends import inprocess
from fedcmi_tff.backends import tensorflow_sessions
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import aggregators
from fedcmi_tff.learning import processes
from fedcmi_tff.preparation import crema_d
from fedcmi_tff.programs import experiment
from fedcmi_tff.programs import runtime
from tests import av_fixtures
from tests import tiny

SMALL = config_lib.ExperimentConfig(
    federation=config_lib.FederationConfig(num_clients=6, clients_per_round=3, rounds=3,
                                           seed=3),
    training=config_lib.LocalTrainingConfig(learning_rate=0.03, min_learning_rate=0.003,
                                            constant_lr_rounds=0, local_epochs=1),
    objective=config_lib.ObjectiveConfig(proximal_strength=0.01, distillation_weight=2.0))
_EXACT_COLUMNS = ('round', 'clients', 'multimodal_clients')
_LOSS_COLUMNS = ('train_loss', 'distillation_loss', 'proximal_term', 'mean_class_temperature')


@pytest.fixture(scope='module')
def cache():
  return {}


def _rows(run_dir):
  with open(os.path.join(run_dir, 'metrics.csv'), newline='') as f:
    return list(csv.DictReader(f))


def _checkpoint(run_dir):
  with np.load(os.path.join(run_dir, 'checkpoint.npz')) as data:
    return {k: data[k] for k in data.files}


def _run(config, run_dir, runtime_name, cache):
  runtime.configure_execution_context(runtime_name)
  return experiment.run_experiment(config, str(run_dir), log=lambda _: None,
                                   process_cache=cache)


def _assert_same_rounds(cpp_dir, inprocess_dir, num_test):
  cpp, inp = _rows(cpp_dir), _rows(inprocess_dir)
  assert len(cpp) == len(inp) > 0
  for a, b in zip(cpp, inp):
    assert a.keys() == b.keys()
    for column in a:
      if column in _EXACT_COLUMNS or column.startswith('weight_'):
        assert a[column] == b[column], (a['round'], column)
      elif column.startswith('acc_'):
        x, y = float(a[column]), float(b[column])
        assert (np.isnan(x) and np.isnan(y)) or abs(x - y) <= 1.0 / num_test + 1e-7, (
            a['round'], column, x, y)
      elif column in _LOSS_COLUMNS or column == 'a_teaches_fraction':
        np.testing.assert_allclose(float(b[column]), float(a[column]), rtol=1e-4, atol=1e-6,
                                   err_msg=f'round {a["round"]} {column}')
  weights_cpp, weights_inp = _checkpoint(cpp_dir), _checkpoint(inprocess_dir)
  assert weights_cpp.keys() == weights_inp.keys()
  for key in weights_cpp:
    np.testing.assert_allclose(weights_inp[key], weights_cpp[key], rtol=1e-4, atol=1e-4,
                               err_msg=key)


# FedAvg + PMR's unimodal clients run FedAvg's objective: two algorithms cover infiltration,
# the fused objective and the prototype pre-pass.
@pytest.mark.parametrize('algorithm', ['fedcmi', 'fedavg_pmr'])
def test_inprocess_and_cpp_worker_agree_per_round_on_the_embedded_dataset(
    tmp_path, cache, algorithm):
  config = dataclasses.replace(SMALL, algorithm=algorithm)
  cpp = _run(config, tmp_path / 'cpp', 'tff_cpp', cache)
  result = _run(config, tmp_path / 'inprocess', 'inprocess', cache)
  _assert_same_rounds(tmp_path / 'cpp', tmp_path / 'inprocess', num_test=600)
  assert result.summary['rounds_completed'] == 3
  assert result.summary['runtime'].startswith('inprocess: in-process MapReduceForm runtime')
  assert cpp.summary['runtime'] == 'tff_cpp: local C++ worker'


def _listening_ports(process):
  return [c for c in process.connections(kind='inet') if c.status == psutil.CONN_LISTEN]


def test_inprocess_and_cpp_worker_agree_on_a_prepared_fixture_without_a_worker(
    tmp_path, cache):
  root = str(tmp_path / 'CREMA-D')
  av_fixtures.make_crema_d(root, actors=(1001, 1002, 1003), emotions=('ANG', 'HAP', 'SAD'))
  data_dir = str(tmp_path / 'prepared')
  manifest = crema_d.prepare_crema_d(root, data_dir, workers=2)
  config = dataclasses.replace(
      SMALL, dataset='crema_d', data_dir=data_dir, image_size=32, num_frames=2,
      federation=dataclasses.replace(SMALL.federation, num_clients=3, clients_per_round=2,
                                     rounds=2, multi_ratio=0.34),
      training=dataclasses.replace(SMALL.training, batch_size=4,
                                   augmentation='resized_crop_flip', shuffle_buffer_size=8))
  _run(config, tmp_path / 'cpp', 'tff_cpp', cache)
  runtime.stop_worker_processes()
  assert runtime.wait_for_no_workers()
  me = psutil.Process(os.getpid())
  children_before = {c.pid for c in me.children(recursive=True)}
  _run(config, tmp_path / 'inprocess', 'inprocess', cache)
  # No worker was started and nothing listens: the in-process runtime opens no socket.
  assert {c.pid for c in me.children(recursive=True)} <= children_before
  assert not _listening_ports(me)
  _assert_same_rounds(tmp_path / 'cpp', tmp_path / 'inprocess',
                      num_test=manifest['splits']['test']['count'])


# -- Mechanics, on the tiny model ----------------------------------------------------------

Kind = modalities.ClientKind


@pytest.fixture(scope='module')
def tiny_process():
  return processes.build_process_for_config(
      'fedcmi', tiny.model_fn, tiny.dataset(4).element_spec,
      objective=config_lib.ObjectiveConfig(proximal_strength=0.01, warmup_rounds=0),
      training=config_lib.LocalTrainingConfig(batch_size=4, local_epochs=1))


def _clients():
  return [tiny.dataset(12, Kind.MULTIMODAL, seed=1), tiny.dataset(7, Kind.ONLY_A, seed=2),
          tiny.dataset(9, Kind.ONLY_B, seed=3), tiny.dataset(10, Kind.MULTIMODAL, seed=4)]


def _two_rounds(process, context):
  with tff.framework.get_context_stack().install(context):
    state = process.initialize()
    tf.keras.utils.set_random_seed(0)
    weights = tff.learning.models.ModelWeights(*tiny.weights_of(tiny.model_fn()))
    state = process.set_model_weights(state, weights)
    outputs = []
    for _ in range(2):
      output = process.next(state, _clients())
      state = output.state
      outputs.append(output)
    return outputs, process.get_model_weights(state)


@pytest.fixture(scope='module')
def sequential(tiny_process):
  """Two rounds in a CPU context with one client in flight: (outputs, final weights)."""
  return _two_rounds(tiny_process, inprocess.InProcessContext(devices=[], clients_in_flight=1))


def test_round_results_have_the_cpp_runtimes_python_types(tiny_process, sequential):
  cpp, _ = _two_rounds(tiny_process, tff.backends.native.create_sync_local_cpp_execution_context())
  runtime.stop_worker_processes()
  inp, weights = sequential
  for a, b in zip(cpp, inp):
    assert type(a.state) is type(b.state)
    assert tf.nest.map_structure(type, a.metrics) == tf.nest.map_structure(type, b.metrics)
    assert type(a.state.client_work) is type(b.state.client_work) is np.int32
  assert inp[-1].state.client_work == 2
  assert isinstance(weights, tff.learning.models.ModelWeights)


def test_clients_in_flight_give_the_sequential_result(tiny_process, sequential):
  """Two sessions training clients concurrently: the fold stays in client order."""
  concurrent, _ = _two_rounds(tiny_process, inprocess.InProcessContext(
      devices=[], clients_in_flight=2))
  for a, b in zip(tf.nest.flatten(sequential[0][-1]), tf.nest.flatten(concurrent[-1])):
    np.testing.assert_array_equal(a, b)


def test_placement_is_recorded_and_gpu_pinned_sessions_fall_back_to_the_cpu(tiny_process,
                                                                            sequential):
  """Client work pinned to a GPU that is not there runs on the CPU (soft placement), and
  the context reports which device ran it (what the GPU check prints)."""
  context = inprocess.InProcessContext(devices=['/device:GPU:0'], record_placement=True)
  pinned, _ = _two_rounds(tiny_process, context)
  for a, b in zip(tf.nest.flatten(pinned[-1]), tf.nest.flatten(sequential[0][-1])):
    np.testing.assert_array_equal(a, b)
  assert context.work_placement and all('CPU' in d for d in context.work_placement)
  assert sum(context.work_placement.values()) > 100


def test_pinning_puts_nodes_on_the_device_and_iterators_on_the_host():
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant([[1.0, 2.0]])
    tf.matmul(x, x, transpose_b=True, name='product')
    iterator = tf.compat.v1.data.make_one_shot_iterator(tf.data.Dataset.range(3))
    iterator.get_next(name='next_element')
    with tf.device('/device:CPU:0'):
      tf.identity(x, name='placed')
  pinned = {n.name: n for n in tensorflow_sessions._pinned(  # pylint: disable=protected-access
      graph.as_graph_def(), '/device:GPU:1').node}
  assert pinned['product'].device == '/device:GPU:1'
  assert pinned['next_element'].device == '/device:CPU:0'
  assert pinned['placed'].device == '/device:CPU:0'


def test_a_client_dataset_of_the_wrong_type_is_named(tiny_process):
  wrong = tf.data.Dataset.from_tensor_slices({'y': np.zeros(3, np.int32)})
  with tff.framework.get_context_stack().install(inprocess.InProcessContext(devices=[])):
    state = tiny_process.initialize()
    with pytest.raises(TypeError, match='client 1'):
      tiny_process.next(state, [tiny.dataset(4), wrong])


def test_computations_outside_the_mapreduce_form_are_refused_with_the_alternative():
  @tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
  def stays_at_clients(x):
    return x

  with tff.framework.get_context_stack().install(inprocess.InProcessContext(devices=[])):
    with pytest.raises(ValueError, match='--runtime=tff_cpp'):
      stays_at_clients([1.0, 2.0])


def test_tensorflow_computations_and_state_initialisation_run_in_process():
  @tff.tensorflow.computation(tff.StructType([('a', np.float32), ('b', tff.TensorType(
      np.int32, [2]))]))
  def add(arg):
    return arg.a + 1.0, arg.b * 2

  @tff.federated_computation
  def initial_state():
    return tff.federated_eval(tff.tensorflow.computation(lambda: tf.constant([4.0, 5.0])),
                              tff.SERVER)

  with tff.framework.get_context_stack().install(inprocess.InProcessContext(devices=[])):
    a, b = add({'a': 1.5, 'b': [3, 4]})
    assert a == 2.5 and list(b) == [6, 8]
    np.testing.assert_array_equal(initial_state(), [4.0, 5.0])
    with pytest.raises(TypeError, match='does not fit'):
      add({'a': 1.5, 'b': [3, 4, 5]})


# -- Secure sums ---------------------------------------------------------------------------

_SECAGG_MAX = 2**32 - 1  # SecureSumFactory quantises a float to an integer in [0, 2**32 - 1]


def _quantisation_bound(num_clients, upper, lower):
  """How far SecureSumFactory's sum of floats may lie from the exact sum of clipped values.

  Each client rounds (v - lower) * s, s = (2**32 - 1) / (upper - lower), to an integer
  (tensorflow_federated/python/aggregators/primitives.py); the integers are summed
  exactly and the server divides by s: at most half a step, 0.5 / s, per client.
  """
  return num_clients * 0.5 * (upper - lower) / _SECAGG_MAX


def test_secure_sums_are_the_sums_tffs_own_runtime_computes():
  """Secure sums of 3 clients, in process and in TFF's test runtime (whose compiler puts
  insecure bodies in place of the secure intrinsics), against the exact sums.

  SecureSumFactory(4.0, -2.0) on a float32[3]: within 3 * 0.5 * 6 / (2**32 - 1) ~= 2.1e-9
  of the sum of the clipped values, plus the float32 rounding of the result (2**-24
  relative); SecureSumFactory(50, 0) on an int32 (clipped to [0, 50]), its clipped counts
  and SecureModularSumFactory(10): exactly.
  """
  element = collections.OrderedDict(x=tff.TensorType(np.float32, [3]), n=np.int32)
  vector_sum = tff.aggregators.SecureSumFactory(4.0, -2.0).create(element['x'])
  int_sum = tff.aggregators.SecureSumFactory(50, 0).create(tff.TensorType(np.int32))
  modular_sum = tff.aggregators.SecureModularSumFactory(10).create(tff.TensorType(np.int32))

  @tff.tensorflow.computation(tff.SequenceType(element))
  def last_element(dataset):
    return dataset.reduce(collections.OrderedDict(x=tf.zeros([3]), n=tf.constant(0)),
                          lambda _, e: e)

  @tff.federated_computation(tff.FederatedType(np.int32, tff.SERVER),
                             tff.FederatedType(tff.SequenceType(element), tff.CLIENTS))
  def secure_round(state, data):
    value = tff.federated_map(last_element, data)
    vector = vector_sum.next(vector_sum.initialize(), value.x)
    count = int_sum.next(int_sum.initialize(), value.n)
    modular = modular_sum.next(modular_sum.initialize(), value.n)
    return state, tff.federated_zip(collections.OrderedDict(
        vector=vector.result, vector_clipped=vector.measurements, n=count.result,
        n_mod=modular.result))

  x = np.array([[1.0, -1.5, 3.25], [0.5, 5.0, -2.5], [3.9, 0.1, -0.7]], np.float32)
  n = np.array([7, 45, -3], np.int32)
  clients = [tf.data.Dataset.from_tensors(collections.OrderedDict(x=x[i], n=n[i]))
             for i in range(3)]
  with tff.framework.get_context_stack().install(inprocess.InProcessContext(devices=[])):
    state, inp = secure_round(5, clients)
    _, empty = secure_round(5, [])
  with tff.framework.get_context_stack().install(
      tff.backends.test.create_sync_test_cpp_execution_context()):
    _, reference = secure_round(5, clients)
  runtime.stop_worker_processes()

  assert state == 5
  exact = np.clip(x, -2.0, 4.0).astype(np.float64).sum(axis=0)
  bound = _quantisation_bound(3, 4.0, -2.0) + np.abs(exact) * 2.0**-24
  for sums in (inp, reference):
    assert np.all(np.abs(sums['vector'] - exact) <= bound), (sums['vector'], exact)
    assert sums['vector_clipped']['secure_upper_clipped_count'] == 1  # 5.0 > 4.0
    assert sums['vector_clipped']['secure_lower_clipped_count'] == 1  # -2.5 < -2.0
    assert sums['n'] == 7 + 45 + 0  # -3 clipped to 0
    assert sums['n_mod'] == np.sum(n) % 10
  np.testing.assert_array_equal(inp['vector'], reference['vector'])
  # No client: every sum is 0.
  np.testing.assert_array_equal(empty['vector'], np.zeros(3, np.float32))
  assert empty['n'] == empty['n_mod'] == 0


def _one_round(process):
  with tff.framework.get_context_stack().install(inprocess.InProcessContext(devices=[])):
    state = process.initialize()
    tf.keras.utils.set_random_seed(0)
    weights = tff.learning.models.ModelWeights(*tiny.weights_of(tiny.model_fn()))
    output = process.next(process.set_model_weights(state, weights), _clients())
    return output, process.get_model_weights(output.state)


def test_the_secure_group_mean_agrees_with_the_plain_one():
  """FedAvg's round with secure sums (values within +-64, group weights in [0, 12], the
  largest client's example count) against the same round with plain sums.

  Quantisation moves the value sums by at most 4 * 0.5 * 128 / (2**32 - 1) ~= 6e-8 and
  the weight totals (tens of examples) by at most 4 * 0.5 * 12 / (2**32 - 1) ~= 6e-9: the means by
  less than 1e-8 for the tiny model's updates; float32 rounding of the sums (relative
  ~1e-7 in both runs) dominates, so the new weights agree to 1e-6.
  """
  element_spec = tiny.dataset(4).element_spec
  training = config_lib.LocalTrainingConfig(batch_size=4, local_epochs=1)
  secure = aggregators.GroupMeanFactory(
      processes.variable_groups_of(tiny.model_fn),
      value_sum_factory=tff.aggregators.SecureSumFactory(64.0, -64.0),
      weight_sum_factory=tff.aggregators.SecureSumFactory(12.0, 0.0))
  plain_output, plain = _one_round(processes.build_fedavg(tiny.model_fn, element_spec,
                                                          training=training))
  secure_output, weights = _one_round(processes.build_fedavg(
      tiny.model_fn, element_spec, training=training, aggregator=secure))
  measurements = secure_output.metrics['aggregator']
  for sums in (measurements['value_sum'], measurements['weight_sum']):
    assert sums['secure_upper_clipped_count'] == sums['secure_lower_clipped_count'] == 0
  np.testing.assert_allclose(measurements['group_weight_totals'],
                             plain_output.metrics['aggregator']['group_weight_totals'],
                             rtol=0, atol=1e-6)
  for a, b in zip(tf.nest.flatten(weights), tf.nest.flatten(plain)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
