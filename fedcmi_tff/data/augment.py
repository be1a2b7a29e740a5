"""Training-time image augmentation of the authors' code, as seeded (stateless) TF ops.

The client update applies it to every training batch with a seed made from the
round and the step, so a run is reproducible and every round draws new crops.
Applied to visual inputs only: frame stacks [B, T, H, W, 3] (each frame drawn
independently, as the authors' per-frame torchvision transforms) and images
[B, H, W, 3]; spectrograms (one channel) and token ids pass through.  Evaluation
and the temperature pre-pass see the test-time transform only.

* `resized_crop_flip` (CREMA-D, AVE frames): RandomResizedCrop with torchvision's
  defaults (area 8-100 % of the image, aspect ratio 3/4-4/3), resized back to the
  input size, then a horizontal flip with probability 0.5.
* `crop_flip` (CrisisMMD images): a random crop of 224/228 of each side (the
  authors crop 224 from a 228 image), resized back, then a horizontal flip with
  probability 0.2.
"""

from __future__ import annotations

import tensorflow as tf

AUGMENTATIONS = ('none', 'resized_crop_flip', 'crop_flip')
_AREA_RANGE = (0.08, 1.0)
_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
_CRISISMMD_CROP = 224.0 / 228.0


def _random_resized_box(seed):
  """A normalised [y0, x0, y1, x1] box with area and aspect ratio in torchvision's ranges.

  `tf.image.stateless_sample_distorted_bounding_box` draws the box; it falls
  back to the whole image when no sample fits, as torchvision does.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_size=tf.constant([1000, 1000, 1], tf.int32),
      bounding_boxes=tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.0,
      aspect_ratio_range=_ASPECT_RANGE, area_range=_AREA_RANGE, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  top_left = tf.cast(begin[:2], tf.float32) / 1000.0
  extent = tf.cast(size[:2], tf.float32) / 1000.0
  return tf.concat([top_left, top_left + extent], axis=0)


def _random_crop_box(seed):
  offset = tf.random.stateless_uniform([2], seed, 0.0, 1.0 - _CRISISMMD_CROP)
  return tf.concat([offset, offset + _CRISISMMD_CROP], axis=0)


def augment_images(images: tf.Tensor, kind: str, seed: tf.Tensor) -> tf.Tensor:
  """Augments a batch of images [N, H, W, C] (each image its own draw)."""
  if kind == 'none':
    return images
  if kind not in AUGMENTATIONS:
    raise ValueError(f'augmentation must be one of {AUGMENTATIONS}, got {kind!r}')
  count = tf.shape(images)[0]
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
  per_image = tf.random.stateless_uniform([count, 2], seeds[0], minval=None, maxval=None,
                                          dtype=tf.int64)
  box_fn = _random_resized_box if kind == 'resized_crop_flip' else _random_crop_box
  boxes = tf.map_fn(box_fn, per_image, fn_output_signature=tf.float32)
  height, width = images.shape[1], images.shape[2]
  cropped = tf.image.crop_and_resize(images, boxes, tf.range(count), (height, width))
  flip_probability = 0.5 if kind == 'resized_crop_flip' else 0.2
  flip = tf.random.stateless_uniform([count], seeds[1]) < flip_probability
  return tf.where(flip[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


def augment_inputs(x: dict, kind: str, seed: tf.Tensor) -> dict:
  """Augments the visual entries of a batch's input dict (see the module docstring)."""
  if kind == 'none':
    return x
  out = dict(x)
  for slot, (name, value) in enumerate(x.items()):
    shape = value.shape
    if len(shape) == 5 and shape[-1] == 3:  # [B, T, H, W, 3]: every frame its own draw
      frames = tf.reshape(value, (-1,) + tuple(shape[2:]))
      augmented = augment_images(frames, kind, seed + slot)
      out[name] = tf.reshape(augmented, tf.shape(value))
    elif len(shape) == 4 and shape[-1] == 3:
      out[name] = augment_images(value, kind, seed + slot)
  return out
