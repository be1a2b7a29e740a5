"""absl flags shared by the entry points, mapped onto `config.ExperimentConfig`.

Only entry points (train.py, grid.py, ...) import this module; the library never
reads flags.  Every configuration field has exactly one flag, whose default is the
field's default: `_FIELD_FLAGS` maps fields to flags, and importing this module fails
if a field of the dataclasses has no flag (so a field cannot be added in one place
and missed in another).
"""

from __future__ import annotations

import collections
import dataclasses

from absl import flags

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry as method_registry
from fedcmi_tff.data import registry as data_registry
from fedcmi_tff.programs import runtime as runtime_lib

_D = config_lib.ExperimentConfig()

# What and where.
METHOD = flags.DEFINE_string(
    'method', _D.algorithm, 'What to train: an algorithm (' +
    ', '.join(method_registry.ALGORITHMS) + '), an ablation (fedcmi_no_infiltration, '
    'fedcmi_constant_temperature, fedcmi_no_proximal, fedcmi_direction_consistent; beyond '
    'the paper: fedcmi_confident_teacher), '
    'unimodal_<modality> or centralised (algorithms/registry.py).')
flags.DEFINE_alias('algorithm', 'method')
DATASET = flags.DEFINE_string('dataset', _D.dataset, 'Dataset name (synthetic_av is embedded).')
DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder of a prepared dataset.')
SYNTHETIC_DOMINANT = flags.DEFINE_string('synthetic_dominant', _D.synthetic_dominant,
                                         'Dominant modality of synthetic_av: audio or visual.')
DATASET_SEED = flags.DEFINE_integer('dataset_seed', _D.dataset_seed,
                                    'Seed of the embedded dataset generator.')
SYNTHETIC_TRAIN_EXAMPLES = flags.DEFINE_integer(
    'synthetic_train_examples', _D.synthetic_train_examples,
    'Training examples of the embedded dataset (synthetic_av).')
NUM_FRAMES = flags.DEFINE_integer('num_frames', _D.num_frames,
                                  'Prepared video datasets: the first T frames per clip.')
IMAGE_SIZE = flags.DEFINE_integer('image_size', _D.image_size,
                                  'Prepared datasets: frames and images resized to this square.')
OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where results are written.')
OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing output_dir.')
RESUME = flags.DEFINE_bool('resume', False, 'Continue the run in output_dir from its checkpoint.')

# Several runs (grid, compare): method names x seeds.
METHODS = flags.DEFINE_list(
    'methods', ['fedcmi', 'fedavg'], 'grid and compare: method names (as --method; compare\'s '
    'default adds unimodal_visual, or the weak modality of the dataset).')
SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'grid and compare: training seeds.')
NUM_SHARDS = flags.DEFINE_integer(
    'num_shards', 1, 'grid and tune: split the runs into this many shards, to run as that many '
    'processes at once (each with its own --shard_index, same flags otherwise); the '
    'report is written by whichever finishes last.')
SHARD_INDEX = flags.DEFINE_integer('shard_index', 0, 'grid and tune: which shard this '
                                   'process runs, in [0, --num_shards).')

# Federation.
_F = _D.federation
ROUNDS = flags.DEFINE_integer('rounds', _F.rounds, 'Communication rounds.')
NUM_CLIENTS = flags.DEFINE_integer('num_clients', _F.num_clients, 'Number of clients.')
CLIENTS_PER_ROUND = flags.DEFINE_integer('clients_per_round', _F.clients_per_round,
                                         'Clients sampled per round.')
MULTI_RATIO = flags.DEFINE_float('multi_ratio', _F.multi_ratio,
                                 'Fraction of multimodal clients, in [0, 1].')
DIRICHLET_ALPHA = flags.DEFINE_float('dirichlet_alpha', _F.dirichlet_alpha,
                                     'Dirichlet concentration of the label split; inf = IID.')
BALANCE_CAP = flags.DEFINE_float('balance_cap', _F.balance_cap,
                                 'Clients at >= cap * N / M examples get no more of a class.')
ONLY_MODALITY = flags.DEFINE_string('only_modality', None,
                                    'Give every client only this modality (unimodal FL).')
VALIDATION_FRACTION = flags.DEFINE_float(
    'validation_fraction', _F.validation_fraction,
    'Fraction of the training examples held out (per class, seeded by --seed) before the label '
    'split; rounds and hyper-parameters are then selected on it, never on the test split.')
SEED = flags.DEFINE_integer('seed', _F.seed, 'Seed of partition, client kinds, init, sampling.')

# Model.
ENCODER = flags.DEFINE_string('encoder', _D.model.encoder, 'small or resnet18.')
PROJECTOR = flags.DEFINE_string('projector', _D.model.projector, 'linear or mlp.')
TEXT_ENCODER = flags.DEFINE_string('text_encoder', _D.model.text_encoder,
                                   'Encoder of token ids, trained from scratch: small or wide.')
TEXT_ENCODER_PATH = flags.DEFINE_string(
    'text_encoder_path', None, 'A local Keras model file (token ids -> features) used as the '
    'text encoder; it must match the prepared vocabulary.')
FEATURE_DIM = flags.DEFINE_integer('feature_dim', None,
                                   'If set, both encoders end in Linear+BN+ReLU to this size.')
SMALL_ENCODER_CHANNELS = flags.DEFINE_list(
    'small_encoder_channels', [str(c) for c in _D.model.small_encoder_channels],
    'Channels of the small encoder\'s convolution blocks.')

# Local training.
_T = _D.training
LEARNING_RATE = flags.DEFINE_float('learning_rate', _T.learning_rate, 'Client SGD learning rate.')
MIN_LEARNING_RATE = flags.DEFINE_float('min_learning_rate', _T.min_learning_rate,
                                       'Learning rate reached at the last round after decay.')
CONSTANT_LR_ROUNDS = flags.DEFINE_integer('constant_lr_rounds', _T.constant_lr_rounds,
                                          'Rounds with a constant learning rate.')
MOMENTUM = flags.DEFINE_float('momentum', _T.momentum, 'Client SGD momentum.')
WEIGHT_DECAY = flags.DEFINE_float('weight_decay', _T.weight_decay, 'Coupled L2 weight decay.')
LOCAL_EPOCHS = flags.DEFINE_integer('local_epochs', _T.local_epochs, 'Local epochs per round.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', _T.batch_size, 'Client batch size.')
AUGMENTATION = flags.DEFINE_string(
    'augmentation', _T.augmentation, 'Training-time image augmentation: none, resized_crop_flip '
    '(CREMA-D/AVE frames) or crop_flip (CrisisMMD images).')
SHUFFLE_BUFFER_SIZE = flags.DEFINE_integer(
    'shuffle_buffer_size', _T.shuffle_buffer_size,
    'Examples held by the local shuffle; 0 = the whole client dataset.')

# FedCMI objective.
_O = _D.objective
DISTILLATION_WEIGHT = flags.DEFINE_float('distillation_weight', _O.distillation_weight,
                                         'lambda: weight of the infiltration loss.')
SELF_HEAD_WEIGHT = flags.DEFINE_float('self_head_weight', _O.self_head_weight,
                                      'beta: weight of each self-head cross-entropy.')
TEMPERATURE_SHARPNESS = flags.DEFINE_float('temperature_sharpness', _O.temperature_sharpness,
                                           'gamma of the class-wise temperature.')
TEMPERATURE_MODE = flags.DEFINE_string('temperature_mode', _O.temperature_mode.value,
                                       'class_wise or constant.')
DIRECTION_CONSISTENT = flags.DEFINE_bool(
    'direction_consistent_temperature', _O.direction_consistent_temperature,
    'Use the temperature table of the direction each batch distils in.')
TEACHER_CONFIDENCE_THRESHOLD = flags.DEFINE_float(
    'teacher_confidence_threshold', _O.teacher_confidence_threshold,
    'BEYOND THE PAPER (FedCMI): distil only rows whose teacher gives the true class a '
    'probability >= this value; 0 = every row, as the paper.')
WARMUP_ROUNDS = flags.DEFINE_integer('warmup_rounds', _O.warmup_rounds,
                                     'Rounds before the infiltration loss starts.')
PROXIMAL_STRENGTH = flags.DEFINE_float('proximal_strength', _O.proximal_strength,
                                       'mu of the proximal term (FedCMI, FedProx).')

# OGM-GE / PMR (algorithms fedavg_ogm_ge, fedavg_pmr).
MODULATION_STRENGTH = flags.DEFINE_float('modulation_strength', _O.modulation_strength,
                                         'alpha of OGM-GE / PMR.')
MODULATION_START_ROUND = flags.DEFINE_integer('modulation_start_round',
                                              _O.modulation_start_round,
                                              'First round of OGM-GE / PMR modulation.')
MODULATION_END_ROUND = flags.DEFINE_integer('modulation_end_round', _O.modulation_end_round,
                                            'Last round of OGM-GE / PMR modulation.')

# Server.
_S = _D.server
SERVER_OPTIMIZER = flags.DEFINE_enum(
    'server_optimizer', _S.optimizer, ['sgd', 'adam'],
    'Server optimiser on the mean client delta: sgd (learning rate 1, momentum 0: FedAvg; '
    'momentum > 0: FedAvgM) or adam (FedAdam).')
SERVER_LEARNING_RATE = flags.DEFINE_float('server_learning_rate', _S.learning_rate,
                                          'Server learning rate.')
SERVER_MOMENTUM = flags.DEFINE_float('server_momentum', _S.momentum,
                                     'Server momentum of the sgd server optimiser.')

# Server aggregation (beyond the paper; docs/privacy.md).
_A = _D.aggregation
AGGREGATOR = flags.DEFINE_list(
    'aggregator', ['mean'], 'How the server sums client updates: mean (the group mean), or '
    'dp, secure, compressed, or dp,secure (DP\'s clipped records summed securely).')
DP_NOISE_MULTIPLIER = flags.DEFINE_float(
    'dp_noise_multiplier', _A.noise_multiplier,
    'dp: z; Gaussian noise of standard deviation z * C on every coordinate of the sum.')
DP_CLIP_NORM = flags.DEFINE_float('dp_clip_norm', _A.clip_norm,
                                  'dp: C, the L2 clip of a client\'s whole update (the initial '
                                  'C with --dp_adaptive_clipping).')
DP_ADAPTIVE_CLIPPING = flags.DEFINE_bool(
    'dp_adaptive_clipping', _A.adaptive_clipping,
    'dp: move C towards --dp_target_unclipped_quantile of the update norms.')
DP_TARGET_UNCLIPPED_QUANTILE = flags.DEFINE_float(
    'dp_target_unclipped_quantile', _A.target_unclipped_quantile,
    'dp, adaptive clipping: the share of updates to leave unclipped.')
DP_CLIP_LEARNING_RATE = flags.DEFINE_float('dp_clip_learning_rate', _A.clip_learning_rate,
                                           'dp, adaptive clipping: geometric step of C.')
DP_DELTA = flags.DEFINE_float('dp_delta', _A.privacy_delta,
                              'dp: delta of the reported (epsilon, delta); 0 = '
                              '1 / num_clients^1.1.')
SECURE_VALUE_BOUND = flags.DEFINE_float(
    'secure_value_bound', _A.secure_value_bound,
    'secure: every coordinate of a client\'s update is clipped to +-this before secure '
    'summation (clips are counted per round).')
QUANTIZATION_BITS = flags.DEFINE_integer('quantization_bits', _A.quantization_bits,
                                         'compressed: bits per quantised value.')
QUANTIZATION_MIN_SIZE = flags.DEFINE_integer(
    'quantization_min_size', _A.quantization_min_size,
    'compressed: tensors of at most this many values are sent unquantised.')


# Runtime.
RUNTIME = flags.DEFINE_enum(
    'runtime', runtime_lib.DEFAULT_RUNTIME, runtime_lib.RUNTIMES,
    'Where TFF computations run: inprocess (the learning process\'s MapReduceForm in this '
    'process; GPUs if visible), tff_cpp (TFF\'s local C++ worker, CPU only) or tff_remote '
    '(running TFF workers at --workers).')
WORKERS = flags.DEFINE_list('workers', [], '--runtime=tff_remote: host:port of running TFF '
                            'worker_binary services.')
MAX_CONCURRENT_CLIENTS = flags.DEFINE_integer(
    'max_concurrent_clients', None, 'Clients trained at once (inprocess: default one per GPU, '
    'or two per CPU core up to 8; tff_cpp: default no cap).')
WORKER_TIMEOUT = flags.DEFINE_float(
    'worker_timeout', 60.0, 'tff_cpp / tff_remote: seconds a TFF worker may be unreachable '
    '(or a local worker dead) before the program stops with an error (TFF would retry '
    'forever).')
EVAL_BATCH_SIZE = flags.DEFINE_integer('eval_batch_size', _D.eval_batch_size,
                                       'Test batch size.')


def check_runtime_flags() -> None:
  """Raises ValueError for an inconsistent --runtime / --workers / --max_concurrent_clients
  (or --aggregator)."""
  runtime_lib.check_runtime(RUNTIME.value, tuple(WORKERS.value), MAX_CONCURRENT_CLIENTS.value)
  if 'secure' in AGGREGATOR.value and RUNTIME.value != 'inprocess':
    raise ValueError(f'--aggregator=secure runs on --runtime=inprocess (TFF\'s worker_binary '
                     f'has no secure-summation executor), not --runtime={RUNTIME.value}')
  if WORKER_TIMEOUT.value <= 0:
    raise ValueError(f'--worker_timeout must be > 0, got {WORKER_TIMEOUT.value}')


def shard() -> tuple:
  """(index, count) of --shard_index / --num_shards; raises ValueError if inconsistent."""
  if NUM_SHARDS.value < 1 or not 0 <= SHARD_INDEX.value < NUM_SHARDS.value:
    raise ValueError(f'--shard_index must be in [0, --num_shards) and --num_shards >= 1, got '
                     f'{SHARD_INDEX.value} and {NUM_SHARDS.value}')
  return SHARD_INDEX.value, NUM_SHARDS.value


def configure_runtime(program: str) -> str:
  """Installs the execution context the runtime flags describe; returns its description.

  Raises:
    runtime_lib.WorkerError: a TFF worker could not be started or reached.
  """
  return runtime_lib.configure_execution_context(
      RUNTIME.value, tuple(WORKERS.value), MAX_CONCURRENT_CLIENTS.value,
      worker_timeout=WORKER_TIMEOUT.value, program=program)


def _temperature_mode(value: str) -> config_lib.TemperatureMode:
  try:
    return config_lib.TemperatureMode(value)
  except ValueError:
    raise ValueError(f'temperature_mode must be class_wise or constant, got {value!r}') from None


def _channels(values: list) -> tuple:
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise ValueError(f'small_encoder_channels must be integers, got {",".join(values)}') from None


# (group, field) -> (flag, conversion of its value); group None = ExperimentConfig itself.
# `algorithm` comes from --method through the method registry.
_FIELD_FLAGS = {
    (None, 'dataset'): (DATASET, None),
    (None, 'data_dir'): (DATA_DIR, None),
    (None, 'synthetic_dominant'): (SYNTHETIC_DOMINANT, None),
    (None, 'dataset_seed'): (DATASET_SEED, None),
    (None, 'synthetic_train_examples'): (SYNTHETIC_TRAIN_EXAMPLES, None),
    (None, 'num_frames'): (NUM_FRAMES, None),
    (None, 'image_size'): (IMAGE_SIZE, None),
    (None, 'eval_batch_size'): (EVAL_BATCH_SIZE, None),
    ('federation', 'num_clients'): (NUM_CLIENTS, None),
    ('federation', 'clients_per_round'): (CLIENTS_PER_ROUND, None),
    ('federation', 'rounds'): (ROUNDS, None),
    ('federation', 'dirichlet_alpha'): (DIRICHLET_ALPHA, None),
    ('federation', 'balance_cap'): (BALANCE_CAP, None),
    ('federation', 'multi_ratio'): (MULTI_RATIO, None),
    ('federation', 'only_modality'): (ONLY_MODALITY, None),
    ('federation', 'validation_fraction'): (VALIDATION_FRACTION, None),
    ('federation', 'seed'): (SEED, None),
    ('model', 'encoder'): (ENCODER, None),
    ('model', 'small_encoder_channels'): (SMALL_ENCODER_CHANNELS, _channels),
    ('model', 'projector'): (PROJECTOR, None),
    ('model', 'text_encoder'): (TEXT_ENCODER, None),
    ('model', 'text_encoder_path'): (TEXT_ENCODER_PATH, None),
    ('model', 'feature_dim'): (FEATURE_DIM, None),
    ('training', 'learning_rate'): (LEARNING_RATE, None),
    ('training', 'min_learning_rate'): (MIN_LEARNING_RATE, None),
    ('training', 'constant_lr_rounds'): (CONSTANT_LR_ROUNDS, None),
    ('training', 'momentum'): (MOMENTUM, None),
    ('training', 'weight_decay'): (WEIGHT_DECAY, None),
    ('training', 'local_epochs'): (LOCAL_EPOCHS, None),
    ('training', 'batch_size'): (BATCH_SIZE, None),
    ('training', 'shuffle_buffer_size'): (SHUFFLE_BUFFER_SIZE, None),
    ('training', 'augmentation'): (AUGMENTATION, None),
    ('objective', 'distillation_weight'): (DISTILLATION_WEIGHT, None),
    ('objective', 'self_head_weight'): (SELF_HEAD_WEIGHT, None),
    ('objective', 'temperature_sharpness'): (TEMPERATURE_SHARPNESS, None),
    ('objective', 'temperature_mode'): (TEMPERATURE_MODE, _temperature_mode),
    ('objective', 'direction_consistent_temperature'): (DIRECTION_CONSISTENT, None),
    ('objective', 'warmup_rounds'): (WARMUP_ROUNDS, None),
    ('objective', 'teacher_confidence_threshold'): (TEACHER_CONFIDENCE_THRESHOLD, None),
    ('objective', 'proximal_strength'): (PROXIMAL_STRENGTH, None),
    ('objective', 'modulation_strength'): (MODULATION_STRENGTH, None),
    ('objective', 'modulation_start_round'): (MODULATION_START_ROUND, None),
    ('objective', 'modulation_end_round'): (MODULATION_END_ROUND, None),
    ('server', 'optimizer'): (SERVER_OPTIMIZER, None),
    ('server', 'learning_rate'): (SERVER_LEARNING_RATE, None),
    ('server', 'momentum'): (SERVER_MOMENTUM, None),
    ('aggregation', 'mechanisms'): (AGGREGATOR, config_lib.aggregation_mechanisms),
    ('aggregation', 'noise_multiplier'): (DP_NOISE_MULTIPLIER, None),
    ('aggregation', 'clip_norm'): (DP_CLIP_NORM, None),
    ('aggregation', 'adaptive_clipping'): (DP_ADAPTIVE_CLIPPING, None),
    ('aggregation', 'target_unclipped_quantile'): (DP_TARGET_UNCLIPPED_QUANTILE, None),
    ('aggregation', 'clip_learning_rate'): (DP_CLIP_LEARNING_RATE, None),
    ('aggregation', 'privacy_delta'): (DP_DELTA, None),
    ('aggregation', 'secure_value_bound'): (SECURE_VALUE_BOUND, None),
    ('aggregation', 'quantization_bits'): (QUANTIZATION_BITS, None),
    ('aggregation', 'quantization_min_size'): (QUANTIZATION_MIN_SIZE, None),
}
_NOT_FLAGS = {(None, 'algorithm')}  # set by --method


def config_fields() -> set:
  """Every (group, field) of `ExperimentConfig`, one level of nested dataclasses deep."""
  out = set()
  for f in dataclasses.fields(config_lib.ExperimentConfig):
    value = getattr(_D, f.name)
    if dataclasses.is_dataclass(value):
      out.update((f.name, g.name) for g in dataclasses.fields(value))
    else:
      out.add((None, f.name))
  return out


def _check_field_flags() -> None:
  missing = config_fields() - set(_FIELD_FLAGS) - _NOT_FLAGS
  unknown = set(_FIELD_FLAGS) - config_fields()
  if missing or unknown:
    raise AssertionError(
        f'programs/flag_config.py is out of step with config.py: fields without a flag '
        f'{sorted(missing, key=str)}, flags of no field {sorted(unknown, key=str)}')


_check_field_flags()


def base_config(**overrides) -> config_lib.ExperimentConfig:
  """The configuration the flags describe, without --method (algorithm: fedcmi).

  `overrides` replace top-level fields.  Raises ValueError for a flag value that
  cannot be converted.
  """
  top, groups = {}, collections.defaultdict(dict)
  for (group, field), (flag, convert) in _FIELD_FLAGS.items():
    value = convert(flag.value) if convert else flag.value
    if group is None:
      top[field] = value
    else:
      groups[group][field] = value
  for group, values in groups.items():
    top[group] = type(getattr(_D, group))(**values)
  return dataclasses.replace(config_lib.ExperimentConfig(**top), **overrides)


def validated_base_config(**overrides) -> config_lib.ExperimentConfig:
  """`base_config(**overrides)`, validated; raises ValueError naming the bad field."""
  base = base_config(**overrides)
  base.validate(data_registry.DATASET_NAMES, method_registry.algorithm_names())
  return base


def check_cells(cells) -> tuple:
  """Validates each cell's configuration and the runtime flags; returns `shard()`.

  The common check of the programs that run many configurations (grid, tune,
  compare, privacy_grid) before any run starts.  Raises ValueError.
  """
  for cell in cells:
    cell['config'].validate(data_registry.DATASET_NAMES, method_registry.algorithm_names())
  check_runtime_flags()
  return shard()


def method_and_config(**overrides) -> tuple:
  """(--method, the configuration of that method on `base_config(**overrides)`).

  Raises:
    ValueError: an unknown method or dataset, or a flag value that cannot be converted.
  """
  base = base_config(**overrides)
  if base.dataset not in data_registry.DATASET_MODALITIES:
    raise ValueError(f'unknown dataset {base.dataset!r}; expected one of '
                     f'{", ".join(data_registry.DATASET_NAMES)}')
  names = data_registry.DATASET_MODALITIES[base.dataset]
  return METHOD.value, method_registry.method_config(METHOD.value, base, names)
