"""Training-time augmentation (data/augment.py) and its use in the client update."""

import numpy as np
import tensorflow as tf

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry
from fedcmi_tff.data import augment
from fedcmi_tff.data import modalities
from fedcmi_tff.learning import client_update
from tests import tiny


def _ramp(count, size=32):
  """Images whose channel 0 is the column index and channel 1 the row index."""
  cols, rows = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
  image = np.stack([cols, rows, np.ones_like(cols)], axis=-1)
  return tf.constant(np.repeat(image[None], count, axis=0))


def test_resized_crop_boxes_follow_torchvision_ranges():
  boxes = np.stack([augment._random_resized_box(tf.constant([s, 3], tf.int64)).numpy()
                    for s in range(300)])
  heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  assert np.all(boxes >= 0.0) and np.all(boxes <= 1.0)
  assert np.all(heights * widths >= 0.08 - 0.003) and np.all(heights * widths <= 1.0)
  ratio = widths / heights
  assert np.all(ratio >= 0.75 - 0.01) and np.all(ratio <= 4 / 3 + 0.01)
  assert heights.std() > 0.1 and (heights * widths).min() < 0.3  # they do vary
  crops = np.stack([augment._random_crop_box(tf.constant([s, 3], tf.int64)).numpy()
                    for s in range(50)])
  np.testing.assert_allclose(crops[:, 2:] - crops[:, :2], 224 / 228, rtol=1e-6)
  assert np.all(crops[:, :2] >= 0) and np.all(crops[:, 2:] <= 1 + 1e-6)


def test_flips_happen_at_the_stated_rates_and_crops_keep_the_ramp_linear():
  images = _ramp(2000)
  for kind, rate in (('resized_crop_flip', 0.5), ('crop_flip', 0.2)):
    out = augment.augment_images(images, kind, tf.constant([7, 1])).numpy()
    assert out.shape == images.shape
    # A crop of a column ramp is still monotone in the column index: rising, or falling if flipped.
    step = out[:, 0, -1, 0] - out[:, 0, 0, 0]
    flipped = step < 0
    assert abs(flipped.mean() - rate) < 0.04, (kind, flipped.mean())
    np.testing.assert_allclose(out[..., 2], 1.0, atol=1e-5)
    if kind == 'crop_flip':  # a 224/228 crop spans 224/228 of the 31-pixel ramp
      # crop_and_resize samples a linear ramp exactly: the crop spans (224/228) * 31 columns.
      np.testing.assert_allclose(np.abs(step), 31 * 224 / 228, rtol=1e-4)


def test_augmentation_is_seeded_and_leaves_other_inputs_alone():
  x = {'audio': tf.random.stateless_normal((4, 10, 6, 1), [1, 2]),
       'visual': tf.repeat(_ramp(4, 16)[:, None], 3, axis=1),  # 3 identical frames per clip
       modalities.MODALITY_MASK_KEY: tf.ones((4, 2))}
  one = augment.augment_inputs(x, 'resized_crop_flip', tf.constant([5, -1]))
  two = augment.augment_inputs(x, 'resized_crop_flip', tf.constant([5, -1]))
  other = augment.augment_inputs(x, 'resized_crop_flip', tf.constant([6, -1]))
  np.testing.assert_array_equal(one['visual'], two['visual'])
  assert not np.allclose(one['visual'], other['visual'])
  assert not np.allclose(one['visual'][:, 0], one['visual'][:, 1])  # frames drawn independently
  np.testing.assert_array_equal(one['audio'], x['audio'])
  np.testing.assert_array_equal(one[modalities.MODALITY_MASK_KEY], x[modalities.MODALITY_MASK_KEY])
  zeros = augment.augment_images(tf.zeros((3, 8, 8, 3)), 'crop_flip', tf.constant([1, 1]))
  assert not np.any(zeros.numpy())  # a zero-filled absent modality stays zero
  assert augment.augment_inputs(x, 'none', tf.constant([5, -1])) is x


def test_client_update_with_augmentation_is_reproducible_and_differs_from_none():
  training = config_lib.LocalTrainingConfig(learning_rate=0.1, min_learning_rate=0.1,
                                            local_epochs=1, batch_size=8,
                                            augmentation='resized_crop_flip')
  objective = registry.client_objective('fedavg', config_lib.ObjectiveConfig())
  tf.keras.utils.set_random_seed(3)
  model = tiny.model_fn()
  initial = tiny.weights_of(model)
  data = tiny.dataset(16, seed=4)
  results = {}
  for kind in ('resized_crop_flip', 'none'):
    fn = client_update.build_client_update_fn(
        model, None, objective, config_lib.LocalTrainingConfig(**{
            **training.__dict__, 'augmentation': kind}))
    results[kind] = [fn(initial, data, tf.constant(2)).update[0] for _ in range(2)]
  aug = results['resized_crop_flip']
  for a, b in zip(aug[0], aug[1]):
    np.testing.assert_array_equal(a, b)  # same round: the same draws
  assert any(not np.allclose(a, b) for a, b in zip(aug[0], results['none'][0]))
