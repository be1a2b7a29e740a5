"""Tiny model and data factories shared by the tests (fast on a 2-core CPU)."""

import collections

import numpy as np
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.data import modalities
from fedcmi_tff.data import synthetic_av
from fedcmi_tff.models import fedcmi_model

NAMES = ('audio', 'visual')
SHAPES = {'audio': (8, 6, 1), 'visual': (2, 8, 8, 3)}
NUM_CLASSES = 3
MODEL_CONFIG = config_lib.ModelConfig(small_encoder_channels=(4, 8))


def model_fn():
  return fedcmi_model.DecomposedModel(NAMES, SHAPES, NUM_CLASSES, MODEL_CONFIG)


def examples(n, kind=modalities.ClientKind.MULTIMODAL, seed=0, labels=None):
  """n random examples in the pipeline's element layout, as one dict of arrays."""
  rng = np.random.default_rng(seed)
  mask = np.array(kind.modality_mask(), np.float32)
  x = collections.OrderedDict()
  for slot, name in enumerate(NAMES):
    x[name] = (rng.normal(size=(n,) + SHAPES[name]) * mask[slot]).astype(np.float32)
  x[modalities.MODALITY_MASK_KEY] = np.tile(mask, (n, 1))
  y = (rng.integers(0, NUM_CLASSES, size=n) if labels is None
       else np.asarray(labels)).astype(np.int32)
  return collections.OrderedDict(x=x, y=y)


def dataset(n, kind=modalities.ClientKind.MULTIMODAL, seed=0, labels=None):
  return tf.data.Dataset.from_tensor_slices(examples(n, kind, seed, labels))


def weights_of(model):
  return ([v.numpy() for v in model.trainable_variables],
          [v.numpy() for v in model.non_trainable_variables])


def small_synthetic(seed=0):
  return synthetic_av.make_synthetic_av(synthetic_av.SyntheticAVConfig(
      train_examples=240, test_examples=120, num_classes=NUM_CLASSES, spectrogram_bins=8,
      spectrogram_steps=6, frames=2, frame_size=8, seed=seed))
