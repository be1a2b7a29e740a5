"""absl flags shared by the entry points, mapped onto `config.ExperimentConfig`.

Only entry points (train.py, compare.py) import this module; the library never
reads flags.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from fedcmi_tff import config as config_lib
from fedcmi_tff.programs import runtime as runtime_lib

_D = config_lib.ExperimentConfig()

# What and where.
ALGORITHM = flags.DEFINE_string('algorithm', _D.algorithm,
                                f'One of: {", ".join(config_lib.ALGORITHMS)}.')
DATASET = flags.DEFINE_string('dataset', _D.dataset, 'Dataset name (synthetic_av is embedded).')
DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder of a prepared dataset.')
SYNTHETIC_DOMINANT = flags.DEFINE_string('synthetic_dominant', _D.synthetic_dominant,
                                         'Dominant modality of synthetic_av: audio or visual.')
DATASET_SEED = flags.DEFINE_integer('dataset_seed', _D.dataset_seed,
                                    'Seed of the embedded dataset generator.')
NUM_FRAMES = flags.DEFINE_integer('num_frames', _D.num_frames,
                                  'Prepared video datasets: the first T frames per clip.')
IMAGE_SIZE = flags.DEFINE_integer('image_size', _D.image_size,
                                  'Prepared datasets: frames and images resized to this square.')
OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Where results are written.')
OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing output_dir.')
RESUME = flags.DEFINE_bool('resume', False, 'Continue the run in output_dir from its checkpoint.')

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
EVAL_BATCH_SIZE = flags.DEFINE_integer('eval_batch_size', _D.eval_batch_size,
                                       'Test batch size.')


def check_runtime_flags() -> None:
  """Raises ValueError for an inconsistent --runtime / --workers / --max_concurrent_clients."""
  runtime_lib.check_runtime(RUNTIME.value, tuple(WORKERS.value), MAX_CONCURRENT_CLIENTS.value)


def configure_runtime() -> str:
  """Installs the execution context the runtime flags describe; returns its description."""
  return runtime_lib.configure_execution_context(RUNTIME.value, tuple(WORKERS.value),
                                                 MAX_CONCURRENT_CLIENTS.value)


def experiment_config(**overrides) -> config_lib.ExperimentConfig:
  """The configuration the flags describe; `overrides` replace top-level fields."""
  try:
    temperature_mode = config_lib.TemperatureMode(TEMPERATURE_MODE.value)
  except ValueError:
    raise ValueError(f'temperature_mode must be class_wise or constant, got '
                     f'{TEMPERATURE_MODE.value!r}') from None
  config = config_lib.ExperimentConfig(
      algorithm=ALGORITHM.value, dataset=DATASET.value, data_dir=DATA_DIR.value,
      synthetic_dominant=SYNTHETIC_DOMINANT.value, dataset_seed=DATASET_SEED.value,
      federation=config_lib.FederationConfig(
          num_clients=NUM_CLIENTS.value, clients_per_round=CLIENTS_PER_ROUND.value,
          rounds=ROUNDS.value, dirichlet_alpha=DIRICHLET_ALPHA.value,
          balance_cap=BALANCE_CAP.value, multi_ratio=MULTI_RATIO.value,
          only_modality=ONLY_MODALITY.value, seed=SEED.value),
      num_frames=NUM_FRAMES.value, image_size=IMAGE_SIZE.value,
      model=config_lib.ModelConfig(encoder=ENCODER.value, projector=PROJECTOR.value,
                                   text_encoder=TEXT_ENCODER.value,
                                   text_encoder_path=TEXT_ENCODER_PATH.value,
                                   feature_dim=FEATURE_DIM.value),
      training=config_lib.LocalTrainingConfig(
          learning_rate=LEARNING_RATE.value, min_learning_rate=MIN_LEARNING_RATE.value,
          constant_lr_rounds=CONSTANT_LR_ROUNDS.value, total_rounds=ROUNDS.value,
          momentum=MOMENTUM.value, weight_decay=WEIGHT_DECAY.value,
          local_epochs=LOCAL_EPOCHS.value, batch_size=BATCH_SIZE.value,
          shuffle_buffer_size=SHUFFLE_BUFFER_SIZE.value, augmentation=AUGMENTATION.value),
      objective=config_lib.ObjectiveConfig(
          distillation_weight=DISTILLATION_WEIGHT.value, self_head_weight=SELF_HEAD_WEIGHT.value,
          temperature_sharpness=TEMPERATURE_SHARPNESS.value, temperature_mode=temperature_mode,
          direction_consistent_temperature=DIRECTION_CONSISTENT.value,
          warmup_rounds=WARMUP_ROUNDS.value, proximal_strength=PROXIMAL_STRENGTH.value,
          modulation_strength=MODULATION_STRENGTH.value,
          modulation_start_round=MODULATION_START_ROUND.value,
          modulation_end_round=MODULATION_END_ROUND.value),
      eval_batch_size=EVAL_BATCH_SIZE.value)
  return dataclasses.replace(config, **overrides)
