"""`synthetic_av`: an embedded audio-visual dataset with a dominant modality.

Generated deterministically from a seed, no download.  Each class c has a
log-spectrogram-like audio prototype (a few frequency bands with a time
envelope) and a visual prototype (a coloured spatial pattern) shown in T frames.
A sample is

    audio  = strength_audio  * difficulty_audio[c]  * u * shift(A_c)  + noise
    visual = strength_visual * difficulty_visual[c] * u * shift(V_c)  + noise

with u a per-sample amplitude and random circular shifts in time (audio) and
space (visual), so the encoders need convolution and pooling rather than one
template.  The dominant modality gets the larger signal strength; the
per-class difficulty multipliers run in opposite directions for the two
modalities, so the imbalance differs between classes (some classes are easy
for the weak modality and hard for the dominant one).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf

MODALITY_NAMES = ('audio', 'visual')


class MultimodalArrays(NamedTuple):
  """One split in memory: inputs by modality name, and int32 labels.

  Also a source of examples for `client_data` (the interface
  `prepared.FileExamples` offers for data on disk): `input_shapes`,
  `examples(indices, present)` and `graph_examples(indices, present)`, each
  example a dict {name: float32 input for the names in `present`, 'label': int32}.
  """

  inputs: dict
  labels: np.ndarray

  @property
  def input_shapes(self) -> dict:
    return {n: tuple(v.shape[1:]) for n, v in self.inputs.items()}

  def examples(self, indices, present: tuple) -> tf.data.Dataset:
    idx = np.asarray(indices, np.int64)
    slices = {n: self.inputs[n][idx] for n in present}
    slices['label'] = np.asarray(self.labels, np.int32)[idx]
    return tf.data.Dataset.from_tensor_slices(slices).map(_as_float_inputs)

  def graph_examples(self, indices, present: tuple) -> tf.data.Dataset:
    """Like `examples` for an index tensor (bakes the arrays into the graph)."""
    inputs = {n: tf.constant(self.inputs[n]) for n in present}
    labels = tf.constant(np.asarray(self.labels, np.int32))

    def gather(i):
      e = {n: tf.gather(v, i) for n, v in inputs.items()}
      e['label'] = tf.gather(labels, i)
      return _as_float_inputs(e)

    return tf.data.Dataset.from_tensor_slices(indices).map(gather)


def _as_float_inputs(e: dict) -> dict:
  return {k: (v if k == 'label' else tf.cast(v, tf.float32)) for k, v in e.items()}


class DatasetSplits(NamedTuple):
  """Train and test splits plus what the model needs to know about them."""

  train: MultimodalArrays
  test: MultimodalArrays
  modality_names: tuple
  class_names: tuple
  description: str


@dataclasses.dataclass(frozen=True)
class SyntheticAVConfig:
  """Shape and difficulty of `synthetic_av`.  Defaults make audio dominant."""

  num_classes: int = 6
  train_examples: int = 1800
  test_examples: int = 600
  spectrogram_bins: int = 24  # frequency bins of the "log-spectrogram"
  spectrogram_steps: int = 20  # time steps
  frames: int = 2  # T visual frames
  frame_size: int = 16  # frames are frame_size x frame_size x 3
  dominant: str = 'audio'  # which modality gets `dominant_strength`
  dominant_strength: float = 0.6
  weak_strength: float = 0.35
  # Per-class difficulty of the dominant modality runs from 1.0 down to this value,
  # the weak modality's from this value up to 1.0 (classes in index order).
  hardest_class_scale: float = 0.45
  noise_std: float = 1.0
  seed: int = 0

  def validate(self) -> None:
    if self.dominant not in MODALITY_NAMES:
      raise ValueError(f'synthetic_av: dominant must be one of {MODALITY_NAMES}, '
                       f'got {self.dominant!r}')
    if self.num_classes < 2:
      raise ValueError(f'synthetic_av: num_classes must be >= 2, got {self.num_classes}')
    for name in ('train_examples', 'test_examples', 'spectrogram_bins',
                 'spectrogram_steps', 'frames', 'frame_size'):
      if getattr(self, name) <= 0:
        raise ValueError(f'synthetic_av: {name} must be > 0')


def class_difficulty(config: SyntheticAVConfig) -> dict:
  """Per-class signal multipliers of each modality (1 = easiest)."""
  easy_to_hard = np.linspace(1.0, config.hardest_class_scale, config.num_classes)
  dominant = config.dominant
  weak = MODALITY_NAMES[1 - MODALITY_NAMES.index(dominant)]
  return {dominant: easy_to_hard, weak: easy_to_hard[::-1].copy()}


def _audio_prototypes(rng, config):
  k, f, t = config.num_classes, config.spectrogram_bins, config.spectrogram_steps
  freqs = np.arange(f)[:, None]
  steps = np.arange(t)[None, :]
  protos = np.zeros((k, f, t), np.float64)
  for c in range(k):
    for _ in range(3):  # three harmonic-like bands per class
      centre, width = rng.uniform(0, f), rng.uniform(0.8, 2.0)
      rate, phase = rng.uniform(0.2, 1.2), rng.uniform(0, 2 * np.pi)
      band = np.exp(-0.5 * ((freqs - centre) / width) ** 2)
      protos[c] += band * (0.6 + 0.4 * np.cos(rate * steps + phase))
  return _unit_rms(protos)


def _visual_prototypes(rng, config):
  k, s = config.num_classes, config.frame_size
  smooth = rng.normal(size=(k, s // 4, s // 4, 3))
  protos = np.repeat(np.repeat(smooth, 4, axis=1), 4, axis=2)  # blocky spatial pattern
  return _unit_rms(protos)


def _unit_rms(protos):
  axes = tuple(range(1, protos.ndim))
  protos = protos - protos.mean(axis=axes, keepdims=True)
  return protos / np.sqrt((protos ** 2).mean(axis=axes, keepdims=True))


def _sample(rng, config, audio_protos, visual_protos, labels):
  n = labels.shape[0]
  difficulty = class_difficulty(config)
  strength = {m: (config.dominant_strength if m == config.dominant else config.weak_strength)
              for m in MODALITY_NAMES}
  amplitude = rng.uniform(0.6, 1.4, size=n)
  audio_scale = strength['audio'] * difficulty['audio'][labels] * amplitude
  visual_scale = strength['visual'] * difficulty['visual'][labels] * amplitude
  audio = np.empty((n, config.spectrogram_bins, config.spectrogram_steps, 1), np.float32)
  visual = np.empty((n, config.frames, config.frame_size, config.frame_size, 3), np.float32)
  time_shift = rng.integers(0, config.spectrogram_steps, size=n)
  for i in range(n):
    a = np.roll(audio_protos[labels[i]], time_shift[i], axis=1) * audio_scale[i]
    audio[i, ..., 0] = a + rng.normal(scale=config.noise_std, size=a.shape)
    for f in range(config.frames):
      dy, dx = rng.integers(0, config.frame_size, size=2)
      v = np.roll(visual_protos[labels[i]], (dy, dx), axis=(0, 1)) * visual_scale[i]
      visual[i, f] = v + rng.normal(scale=config.noise_std, size=v.shape)
  return MultimodalArrays({'audio': audio, 'visual': visual}, labels.astype(np.int32))


def make_synthetic_av(config: SyntheticAVConfig = SyntheticAVConfig()) -> DatasetSplits:
  """Generates the train and test splits; identical output for identical config."""
  config.validate()
  rng = np.random.default_rng(config.seed)
  audio_protos = _audio_prototypes(rng, config)
  visual_protos = _visual_prototypes(rng, config)
  # Balanced classes: round-robin labels, then shuffled.
  train_labels = rng.permutation(np.arange(config.train_examples) % config.num_classes)
  test_labels = rng.permutation(np.arange(config.test_examples) % config.num_classes)
  train = _sample(rng, config, audio_protos, visual_protos, train_labels)
  test = _sample(rng, config, audio_protos, visual_protos, test_labels)
  return DatasetSplits(
      train=train, test=test, modality_names=MODALITY_NAMES,
      class_names=tuple(f'class_{c}' for c in range(config.num_classes)),
      description=(f'synthetic_av(seed={config.seed}, dominant={config.dominant}, '
                   f'strengths={config.dominant_strength}/{config.weak_strength})'))
