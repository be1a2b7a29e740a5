"""Per-modality encoders (Keras, channels-last).

* `small_*`: a fast conv stack for the embedded dataset and tests on a 2-core CPU.
* `resnet18_*`: the paper's ResNet-18 body (docs/algorithm.md, 'The decomposed model'):
  7x7/2 conv, 3x3/2 max-pool, four stages of two BasicBlocks (64-128-256-512),
  symmetric zero padding as in PyTorch, no conv bias, BN momentum 0.9 / eps 1e-5,
  Kaiming fan-out init.

* `densenet121`: Keras' DenseNet-121 with its 1000-d top as the feature, as the
  authors' CrisisMMD image encoder (trained from scratch).
* text: token ids -> embedding, width-3 convolution, max over time (trained from
  scratch, project decision 7), or a local pretrained Keras model.

Inputs: spectrogram-like [B, H, W, C] for image-like modalities; frame stacks
[B, T, H, W, C] are folded into the batch and the feature map is averaged over
frames and space (the code's 3-D global average pooling); token ids [B, L].
"""

from __future__ import annotations

import tensorflow as tf

_BN = dict(momentum=0.9, epsilon=1e-5)
ENCODERS = ('small', 'resnet18', 'densenet121')
TEXT_ENCODERS = ('small', 'wide')  # wide: 300-d embedding, 512 filters (ResNet-18's width)


def _kaiming():
  # A fresh instance per layer: Keras returns identical values when one unseeded
  # initializer object is reused.
  return tf.keras.initializers.VarianceScaling(2.0, 'fan_out', 'untruncated_normal')


def _conv_bn_relu(x, filters, kernel, stride, name):
  if stride > 1 or kernel > 1:
    x = tf.keras.layers.ZeroPadding2D(kernel // 2, name=f'{name}_pad')(x)
  x = tf.keras.layers.Conv2D(filters, kernel, stride, use_bias=False,
                             kernel_initializer=_kaiming(), name=f'{name}_conv')(x)
  x = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_bn')(x)
  return tf.keras.layers.ReLU(name=f'{name}_relu')(x)


def _small_body(x, channels, name):
  for i, c in enumerate(channels):
    x = _conv_bn_relu(x, c, 3, 2, f'{name}_block{i}')
  return x


def _basic_block(x, filters, stride, name):
  shortcut = x
  y = tf.keras.layers.ZeroPadding2D(1, name=f'{name}_pad1')(x)
  y = tf.keras.layers.Conv2D(filters, 3, stride, use_bias=False, kernel_initializer=_kaiming(),
                             name=f'{name}_conv1')(y)
  y = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_bn1')(y)
  y = tf.keras.layers.ReLU(name=f'{name}_relu1')(y)
  y = tf.keras.layers.ZeroPadding2D(1, name=f'{name}_pad2')(y)
  y = tf.keras.layers.Conv2D(filters, 3, 1, use_bias=False, kernel_initializer=_kaiming(),
                             name=f'{name}_conv2')(y)
  y = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_bn2')(y)
  if stride != 1 or shortcut.shape[-1] != filters:
    shortcut = tf.keras.layers.Conv2D(filters, 1, stride, use_bias=False,
                                      kernel_initializer=_kaiming(),
                                      name=f'{name}_down_conv')(shortcut)
    shortcut = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_down_bn')(shortcut)
  return tf.keras.layers.ReLU(name=f'{name}_out')(tf.keras.layers.Add()([y, shortcut]))


def _resnet18_body(x, name):
  x = tf.keras.layers.ZeroPadding2D(3, name=f'{name}_stem_pad')(x)
  x = tf.keras.layers.Conv2D(64, 7, 2, use_bias=False, kernel_initializer=_kaiming(),
                             name=f'{name}_stem_conv')(x)
  x = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_stem_bn')(x)
  x = tf.keras.layers.ReLU(name=f'{name}_stem_relu')(x)
  x = tf.keras.layers.ZeroPadding2D(1, name=f'{name}_pool_pad')(x)
  x = tf.keras.layers.MaxPool2D(3, 2, name=f'{name}_pool')(x)
  for stage, filters in enumerate((64, 128, 256, 512)):
    for block in range(2):
      stride = 2 if (stage > 0 and block == 0) else 1
      x = _basic_block(x, filters, stride, f'{name}_s{stage}b{block}')
  return x


def _text_body(tokens, kind, name, vocabulary_size, small_channels, pretrained_path):
  """Token ids [B, L] (float-coded, 0 = padding) -> features [B, D]."""
  ids = tf.cast(tokens, tf.int32)
  if pretrained_path:
    body = tf.keras.models.load_model(pretrained_path, compile=False)
    body._name = f'{name}_pretrained'  # pylint: disable=protected-access
    x = body(ids)
    if len(x.shape) != 2:
      raise ValueError(f'text encoder {pretrained_path} must map [batch, length] token ids to '
                       f'[batch, features], got output shape {x.shape}')
    return x
  if not vocabulary_size:
    raise ValueError(f'{name}: a text encoder needs the vocabulary size of the prepared dataset')
  # Trained from scratch (project decision 7): embedding, a width-3 convolution, max over time.
  # The small encoder is as wide as the small image encoder, the wide one as ResNet-18.
  width, channels = (64, small_channels[-1]) if kind == 'small' else (300, 512)
  x = tf.keras.layers.Embedding(vocabulary_size, width, name=f'{name}_embedding')(ids)
  x = tf.keras.layers.Conv1D(channels, 3, padding='same', activation='relu',
                             kernel_initializer=_kaiming(), name=f'{name}_conv')(x)
  return tf.keras.layers.GlobalMaxPooling1D(name=f'{name}_pool_out')(x)


def build_encoder(input_shape: tuple, kind: str, name: str,
                  small_channels: tuple = (16, 32), *, vocabulary_size: int | None = None,
                  pretrained_path: str | None = None,
                  feature_dim: int | None = None) -> tf.keras.Model:
  """Encoder mapping one modality's input to a feature vector [B, D].

  Args:
    input_shape: per-example shape without batch: (H, W, C) for spectrograms and
      images, (T, H, W, C) for frame stacks, (L,) for token ids.
    kind: one of ENCODERS for spectrograms, frames and images ('densenet121':
      images only, the authors' CrisisMMD image encoder, its 1000-d top as the
      feature, trained from scratch); one of TEXT_ENCODERS for token ids.
    name: Keras name of the encoder (used in variable names and groups).
    small_channels: channels of the small conv stack.
    vocabulary_size: token id range of a text input.
    pretrained_path: a local Keras model file used as the text encoder body.
    feature_dim: if set, a Linear + BN + ReLU adapter maps the features to this
      size (docs/algorithm.md, decision 7: both CrisisMMD encoders are adapted to 100-d).
  """
  inputs = tf.keras.Input(shape=input_shape, name=f'{name}_input')
  if len(input_shape) == 1:
    if kind not in TEXT_ENCODERS:
      raise ValueError(f'text encoder kind must be one of {TEXT_ENCODERS}, got {kind!r}')
    x = _text_body(inputs, kind, name, vocabulary_size, small_channels, pretrained_path)
  else:
    if kind not in ENCODERS:
      raise ValueError(f'encoder kind must be one of {ENCODERS}, got {kind!r}')
    is_frames = len(input_shape) == 4
    x = inputs
    if is_frames:
      frames, height, width, channels = input_shape
      x = tf.reshape(x, (-1, height, width, channels))  # fold frames into the batch
    if kind == 'small':
      x = _small_body(x, tuple(small_channels), name)
    elif kind == 'resnet18':
      x = _resnet18_body(x, name)
    else:
      if is_frames:
        raise ValueError('densenet121 is an image encoder; use small or resnet18 for frames')
      net = tf.keras.applications.DenseNet121(
          include_top=True, weights=None, input_shape=tuple(input_shape), classes=1000,
          classifier_activation=None)
      net._name = f'{name}_densenet121'  # pylint: disable=protected-access
      x = net(x)
    if len(x.shape) == 4:
      if is_frames:
        _, h, w, c = x.shape
        x = tf.reshape(x, (-1, frames * h * w, c))  # average over frames and space at once
        x = tf.reduce_mean(x, axis=1)
      else:
        x = tf.keras.layers.GlobalAveragePooling2D(name=f'{name}_pool_out')(x)
  if feature_dim:
    x = tf.keras.layers.Dense(feature_dim, kernel_initializer='glorot_normal',
                              name=f'{name}_adapter')(x)
    x = tf.keras.layers.BatchNormalization(**_BN, name=f'{name}_adapter_bn')(x)
    x = tf.keras.layers.ReLU(name=f'{name}_adapter_relu')(x)
  return tf.keras.Model(inputs, x, name=name)
