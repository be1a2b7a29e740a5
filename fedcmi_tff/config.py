"""Frozen configuration objects shared by the library and the drivers.

No TensorFlow, no absl: the drivers map flags onto these objects and the library
takes them as explicit arguments.  Every field name states the quantity it
controls (docs/algorithm.md, 'Symbols and parameter names' and decisions 1-3).
"""

from __future__ import annotations

import dataclasses
import enum
import math


class TemperatureMode(str, enum.Enum):
  """How the distillation temperature of each class is chosen."""

  CLASS_WISE = 'class_wise'  # tau_c from the client's per-class dominance (3.2).
  CONSTANT = 'constant'  # tau_c = 1 for every class (the no-CWT ablation).


@dataclasses.dataclass(frozen=True)
class LocalTrainingConfig:
  """Client optimisation: SGD with momentum and coupled L2 decay, reset each round."""

  learning_rate: float = 0.05
  min_learning_rate: float = 0.05
  # eta_t = eta for t <= constant_lr_rounds, else eta - (eta - eta_min) * t / T, where T is
  # the run's round count (FederationConfig.rounds), passed to the library separately.
  constant_lr_rounds: int = 80
  momentum: float = 0.9
  weight_decay: float = 1e-4
  local_epochs: int = 2
  batch_size: int = 32
  # Examples held by the per-round shuffle; 0 = the whole client dataset (an exact
  # shuffle, as a PyTorch DataLoader does).  Datasets read from disk bound it to
  # keep memory flat: the buffer holds decoded examples.
  shuffle_buffer_size: int = 0
  # Training-time image augmentation of the authors' code (data/augment.py): 'none',
  # 'resized_crop_flip' (CREMA-D / AVE frames) or 'crop_flip' (CrisisMMD images).
  augmentation: str = 'none'

  def validate(self) -> None:
    _check(self.learning_rate > 0, 'learning_rate must be > 0')
    _check(self.min_learning_rate >= 0, 'min_learning_rate must be >= 0')
    _check(0 <= self.momentum < 1, 'momentum must be in [0, 1)')
    _check(self.weight_decay >= 0, 'weight_decay must be >= 0')
    _check(self.local_epochs > 0, 'local_epochs must be > 0')
    _check(self.batch_size > 0, 'batch_size must be > 0')
    _check(self.shuffle_buffer_size >= 0, 'shuffle_buffer_size must be >= 0')
    _check(self.augmentation in ('none', 'resized_crop_flip', 'crop_flip'),
           f"augmentation must be 'none', 'resized_crop_flip' or 'crop_flip', "
           f'got {self.augmentation!r}')

  @property
  def decays(self) -> bool:
    """Whether the learning rate ever leaves `learning_rate` (then it depends on T)."""
    return self.min_learning_rate != self.learning_rate

  def depends_on_total_rounds(self, rounds_run: int) -> bool:
    """Whether the learning rates of rounds 0..rounds_run-1 depend on the run's round count."""
    return self.decays and rounds_run - 1 > self.constant_lr_rounds


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Hyper-parameters of the client objectives; each algorithm reads only its own.

  Defaults are FedCMI's code defaults (docs/algorithm.md, 'Symbols and parameter names');
  which algorithm reads which field is declared in algorithms/registry.py.
  """

  # lambda: weight of the infiltration (cross-modal distillation) loss; 0 = no infiltration.
  distillation_weight: float = 1.0
  # beta: weight of each modality's self-head cross-entropy on multimodal clients.
  self_head_weight: float = 2.0
  # gamma in tau_c = 1 / (1 + gamma * ln(r_c / r_mean)).
  temperature_sharpness: float = 2.0
  temperature_mode: TemperatureMode = TemperatureMode.CLASS_WISE
  # False: temperatures from the client's overall dominance (faithful to the authors'
  # code); True: temperatures for the direction each batch actually distils in.
  direction_consistent_temperature: bool = False
  # t_w: rounds before the infiltration loss starts (no distillation in round 0 by default).
  warmup_rounds: int = 1
  # BEYOND THE PAPER: distil only rows whose teacher (the global dominant self head) gives
  # the true class a probability >= this value; 0 = every row, as the paper.
  teacher_confidence_threshold: float = 0.0
  # mu: gradient of (mu/2)||w - w_global||^2 added to every parameter with a gradient
  # (FedCMI, FedProx).
  proximal_strength: float = 0.01
  # OGM-GE / PMR on multimodal clients in rounds [modulation_start_round,
  # modulation_end_round], with strength alpha.
  modulation_strength: float = 1.0
  modulation_start_round: int = 0
  modulation_end_round: int = 70

  def validate(self) -> None:
    _check(self.distillation_weight >= 0, 'distillation_weight must be >= 0')
    _check(self.self_head_weight >= 0, 'self_head_weight must be >= 0')
    _check(self.temperature_sharpness >= 0, 'temperature_sharpness must be >= 0')
    _check(self.warmup_rounds >= 0, 'warmup_rounds must be >= 0')
    _check(0.0 <= self.teacher_confidence_threshold <= 1.0,
           'teacher_confidence_threshold must be in [0, 1]')
    _check(self.proximal_strength >= 0, 'proximal_strength must be >= 0')
    _check(self.modulation_strength >= 0, 'modulation_strength must be >= 0')


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """The server optimiser applied to the mean client delta of the trainable weights."""

  # 'sgd': w <- w - learning_rate * (momentum buffer of) the mean delta; learning_rate 1
  # and momentum 0 is FedAvg's server step, momentum > 0 FedAvgM.  'adam': FedAdam.
  optimizer: str = 'sgd'
  learning_rate: float = 1.0
  momentum: float = 0.0

  def validate(self) -> None:
    _check(self.optimizer in ('sgd', 'adam'),
           f"server optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
    _check(self.learning_rate > 0, 'server learning_rate must be > 0')
    _check(0 <= self.momentum < 1, 'server momentum must be in [0, 1)')
    _check(self.optimizer == 'sgd' or self.momentum == 0,
           'server momentum applies to the sgd server optimizer')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Encoder pair and heads (docs/algorithm.md, 'The decomposed model' and decision 8)."""

  # Encoder of spectrogram, frame and image inputs: 'small' (fast, for the embedded
  # data and tests), 'resnet18' (the paper's audio-visual pair) or 'densenet121'
  # (images only: the authors' CrisisMMD image encoder).
  encoder: str = 'small'
  small_encoder_channels: tuple[int, ...] = (16, 32)
  projector: str = 'linear'  # 'linear' or 'mlp'.
  # Encoder of token-id inputs, trained from scratch: 'small' or 'wide' (a 300-d
  # embedding + 512-filter convolution, as wide as ResNet-18's features).
  text_encoder: str = 'small'
  # A local Keras model file (token ids -> features) used as the text encoder instead.
  text_encoder_path: str | None = None
  # If set, both encoders end in Linear + BN + ReLU to this size (CrisisMMD: 100).
  feature_dim: int | None = None

  def validate(self) -> None:
    _check(self.encoder in ('small', 'resnet18', 'densenet121'),
           f"encoder must be 'small', 'resnet18' or 'densenet121', got {self.encoder!r}")
    _check(self.text_encoder in ('small', 'wide'),
           f"text_encoder must be 'small' or 'wide', got {self.text_encoder!r}")
    _check(self.feature_dim is None or self.feature_dim > 0,
           f'feature_dim must be > 0, got {self.feature_dim}')
    _check(self.projector in ('linear', 'mlp'),
           f"projector must be 'linear' or 'mlp', got {self.projector!r}")
    _check(len(self.small_encoder_channels) >= 1 and
           all(c > 0 for c in self.small_encoder_channels),
           'small_encoder_channels must be positive integers')


@dataclasses.dataclass(frozen=True)
class FederationConfig:
  """Who trains: client count, sampling, statistical and modality heterogeneity."""

  num_clients: int = 10
  clients_per_round: int = 5
  rounds: int = 40
  # Dirichlet concentration of the label split; math.inf gives an exact IID split.
  dirichlet_alpha: float = 1.0
  # Clients already holding >= balance_cap * N / M samples get no more of a class.
  balance_cap: float = 1.1
  # Fraction of multimodal clients; the rest split half/half into the two unimodal kinds.
  multi_ratio: float = 0.5
  # If set to a modality name, every client holds only that modality (unimodal FL).
  only_modality: str | None = None
  # Fraction of the training examples held out, per class and seeded by `seed`, before the
  # label split: the validation split on which rounds and hyper-parameters are selected
  # (0 = none; the test split is then the only evaluation and is never used to select).
  validation_fraction: float = 0.0
  seed: int = 0

  def validate(self) -> None:
    _check(self.num_clients > 0, f'num_clients must be > 0, got {self.num_clients}')
    _check(self.clients_per_round > 0,
           f'clients_per_round must be > 0, got {self.clients_per_round}')
    _check(self.clients_per_round <= self.num_clients,
           f'clients_per_round ({self.clients_per_round}) must be <= num_clients '
           f'({self.num_clients})')
    _check(self.rounds > 0, f'rounds must be > 0, got {self.rounds}')
    _check(self.dirichlet_alpha > 0 and not math.isnan(self.dirichlet_alpha),
           f'dirichlet_alpha must be > 0 (inf for IID), got {self.dirichlet_alpha}')
    _check(0.0 <= self.multi_ratio <= 1.0,
           f'multi_ratio must be in [0, 1], got {self.multi_ratio}')
    _check(self.balance_cap > 0, f'balance_cap must be > 0, got {self.balance_cap}')
    _check(0.0 <= self.validation_fraction < 1.0,
           f'validation_fraction must be in [0, 1), got {self.validation_fraction}')


# Layers the server's modality-masked group mean can be built with (docs/privacy.md);
# `AggregationConfig.mechanisms` holds a combination of them in this order.
AGGREGATION_MECHANISMS = ('dp', 'secure', 'compressed')
# The combinations TFF's factories compose: DP's clipped records can be summed securely;
# TFF's encoded (compressed) sum takes no inner sum, and quantising a clipped record could
# raise its norm above the clip the noise is calibrated to.
COMPOSABLE_MECHANISMS = ((), ('dp',), ('secure',), ('compressed',), ('dp', 'secure'))


# The largest DP clip norm: records above it are scaled to it before clipping
# (learning/aggregators.py, RECORD_NORM_BOUND), which leaves any clip up to it exact.
MAX_CLIP_NORM = 1e15


@dataclasses.dataclass(frozen=True)
class AggregationConfig:
  """How the server sums the clients' updates (beyond the paper; docs/privacy.md).

  No mechanism: the modality-masked group mean, weighted by example counts (the paper's).
  'dp': user-level differential privacy: each client's update (every group, those it does
  not hold zeroed) is clipped as a whole to L2 norm `clip_norm`, Gaussian noise of
  standard deviation noise_multiplier * clip_norm is added to every coordinate of the
  sum, and each group's noisy sum is divided by a public constant, the expected number of
  sampled clients holding that group's modality; clients are weighted uniformly.
  'secure': the group sums through TFF's secure summation, each coordinate of a client's
  update clipped to [-secure_value_bound, secure_value_bound] first (clips are counted).
  'compressed': each update tensor with more than `quantization_min_size` elements is
  uniformly quantised to `quantization_bits` bits (TFF's encoded sum).
  """

  mechanisms: tuple[str, ...] = ()
  noise_multiplier: float = 1.0
  # C: the fixed clip, or with adaptive clipping its initial value.
  clip_norm: float = 0.1
  # Adaptive clipping (Andrew et al. 2021, as TFF's DP factory): C moves geometrically
  # towards the `target_unclipped_quantile` of the clients' update norms.
  adaptive_clipping: bool = False
  target_unclipped_quantile: float = 0.5
  clip_learning_rate: float = 0.2
  # delta of the reported (epsilon, delta); 0 = 1 / num_clients ** 1.1.
  privacy_delta: float = 0.0
  secure_value_bound: float = 1.0
  quantization_bits: int = 8
  quantization_min_size: int = 0

  def validate(self) -> None:
    _check(tuple(self.mechanisms) in COMPOSABLE_MECHANISMS,
           'aggregator must be ' + ' | '.join(','.join(m) or 'mean'
                                              for m in COMPOSABLE_MECHANISMS) +
           f', got {",".join(self.mechanisms)!r}')
    _check(self.noise_multiplier >= 0, 'noise_multiplier must be >= 0')
    _check(0 < self.clip_norm <= MAX_CLIP_NORM,
           f'clip_norm must be in (0, {MAX_CLIP_NORM:g}], got {self.clip_norm:g}')
    _check(0 < self.target_unclipped_quantile < 1, 'target_unclipped_quantile must be in (0, 1)')
    _check(self.clip_learning_rate >= 0, 'clip_learning_rate must be >= 0')
    _check(0 <= self.privacy_delta < 1, 'privacy_delta must be in [0, 1) (0: 1 / num_clients^1.1)')
    _check(not (self.adaptive_clipping and 'secure' in self.mechanisms and 'dp' in self.mechanisms),
           'dp with secure needs a fixed clip_norm (the secure sum\'s bound is the clip)')
    _check(self.secure_value_bound > 0, 'secure_value_bound must be > 0')
    _check(1 <= self.quantization_bits <= 16, 'quantization_bits must be in [1, 16]')
    _check(self.quantization_min_size >= 0, 'quantization_min_size must be >= 0')

  @property
  def private(self) -> bool:
    return 'dp' in self.mechanisms


_DP_FIELDS = ('noise_multiplier', 'clip_norm', 'adaptive_clipping', 'target_unclipped_quantile',
              'clip_learning_rate', 'privacy_delta')


def applied_aggregation_fields(mechanisms) -> tuple:
  """The `AggregationConfig` fields that change what the given mechanisms compute."""
  fields = ('mechanisms',)
  if 'dp' in mechanisms:
    fields += _DP_FIELDS
  elif 'secure' in mechanisms:
    fields += ('secure_value_bound',)
  if 'compressed' in mechanisms:
    fields += ('quantization_bits', 'quantization_min_size')
  return fields


def aggregation_mechanisms(names) -> tuple:
  """The canonical mechanisms tuple of aggregator names ('mean' alone = none).

  Raises:
    ValueError: an unknown name, or 'mean' combined with another.
  """
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in AGGREGATION_MECHANISMS + ('mean',)]
  _check(not unknown, f'unknown aggregator {", ".join(unknown)}; expected mean or a '
         f'combination of {", ".join(AGGREGATION_MECHANISMS)}')
  _check(names == ['mean'] or 'mean' not in names,
         'aggregator mean (the plain group mean) cannot be combined with another')
  return tuple(m for m in AGGREGATION_MECHANISMS if m in names)


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """One training run: what data, which algorithm, which hyper-parameters."""

  algorithm: str = 'fedcmi'
  dataset: str = 'synthetic_av'
  data_dir: str | None = None
  # Which modality dominates in synthetic_av ('audio' as on CREMA-D, or 'visual').
  synthetic_dominant: str = 'audio'
  # The embedded dataset's training examples (more for populations of hundreds of clients).
  synthetic_train_examples: int = 1800
  # Seed of the embedded dataset's generator; the data stay fixed across training seeds.
  dataset_seed: int = 0
  # Prepared datasets: the first num_frames video frames, frames and images resized
  # to image_size x image_size (the paper: 2 or 4 frames at 224).
  num_frames: int = 2
  image_size: int = 224
  federation: FederationConfig = FederationConfig()
  model: ModelConfig = ModelConfig()
  training: LocalTrainingConfig = LocalTrainingConfig()
  objective: ObjectiveConfig = ObjectiveConfig()
  server: ServerConfig = ServerConfig()
  aggregation: AggregationConfig = AggregationConfig()
  eval_batch_size: int = 256

  def validate(self, known_datasets: tuple, known_algorithms: tuple) -> None:
    """Raises ValueError naming the first invalid field.

    Args:
      known_datasets: dataset names (data/registry.py).
      known_algorithms: algorithm names (algorithms/registry.py).
    """
    _check(self.algorithm in known_algorithms,
           f'unknown algorithm {self.algorithm!r}; expected one of '
           f'{", ".join(known_algorithms)}')
    _check(self.dataset in known_datasets,
           f'unknown dataset {self.dataset!r}; expected one of {", ".join(known_datasets)}')
    self.federation.validate()
    self.model.validate()
    self.training.validate()
    self.objective.validate()
    self.server.validate()
    self.aggregation.validate()
    _check(self.eval_batch_size > 0, 'eval_batch_size must be > 0')
    _check(self.synthetic_train_examples > 0, f'synthetic_train_examples must be > 0, got '
           f'{self.synthetic_train_examples}')
    _check(self.num_frames > 0, f'num_frames must be > 0, got {self.num_frames}')
    _check(self.image_size >= 8, f'image_size must be >= 8, got {self.image_size}')

  def to_dict(self) -> dict:
    def convert(value):
      if isinstance(value, enum.Enum):
        return value.value
      if isinstance(value, float) and math.isinf(value):
        return 'inf'
      if isinstance(value, tuple):
        return list(value)
      return value
    return {k: (
        {kk: convert(vv) for kk, vv in dataclasses.asdict(v).items()}
        if dataclasses.is_dataclass(v) else convert(v))
            for k, v in ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}
