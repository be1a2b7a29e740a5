"""Model structure, forward paths and the embedded dataset."""

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.data import client_data
from fedcmi_tff.data import modalities
from fedcmi_tff.data import partition
from fedcmi_tff.data import synthetic_av
from fedcmi_tff.models import encoders
from fedcmi_tff.models import fedcmi_model
from tests import tiny

Kind = modalities.ClientKind


@pytest.fixture(scope='module')
def model():
  tf.keras.utils.set_random_seed(0)
  return tiny.model_fn()


def test_variable_groups_follow_owners(model):
  roles = model.variable_roles()
  trainable, non_trainable = model.variable_groups()
  for v, role, group in zip(model.trainable_variables, roles, trainable):
    owner = v.name.replace('fedcmi_model/', '').split('/')[0]
    if role == 'fusion':
      assert group == fedcmi_model.GROUP_FUSION and owner == 'fusion'
    else:
      expected_name = 'audio' if role.endswith('_a') else 'visual'
      assert owner.startswith(expected_name), (v.name, role)
      assert group == (fedcmi_model.GROUP_A if role.endswith('_a') else fedcmi_model.GROUP_B)
  for v, group in zip(model.non_trainable_variables, non_trainable):
    assert 'moving' in v.name
    owner = v.name.replace('fedcmi_model/', '')
    assert group == (fedcmi_model.GROUP_A if owner.startswith('audio') else fedcmi_model.GROUP_B)
  assert sorted(set(roles)) == sorted(fedcmi_model.ROLES)


def test_paths_share_heads_and_zero_fill_matches_fusion_algebra(model):
  x = tiny.examples(5)['x']
  paths = model.evaluation_logits(x)
  f_a = model.encoder_a(x['audio'])
  z_aa = model.self_projector_a(f_a)
  z_ab = model.infil_projector_a(f_a)
  kernel, bias = model.fusion.kernel.numpy(), model.fusion.bias.numpy()
  d = model.feature_dim
  np.testing.assert_allclose(paths['audio_zero'].numpy(), z_aa.numpy() @ kernel[:d] + bias,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(paths['audio_path'].numpy(),
                             z_aa.numpy() @ kernel[:d] + z_ab.numpy() @ kernel[d:] + bias,
                             rtol=1e-5, atol=1e-5)
  out = model.multimodal(x)
  np.testing.assert_allclose(out.fused.numpy(), paths['fused'].numpy(), rtol=1e-5, atol=1e-6)
  # The infiltration logits of slot a go through slot a's classifier.
  np.testing.assert_allclose(out.infil_a.numpy(), model.classifier_a(z_ab).numpy(), rtol=1e-5)
  np.testing.assert_allclose(model.only_a(x).numpy(), paths['audio_path'].numpy(), rtol=1e-5)


def test_call_zero_fills_by_mask_without_running_absent_encoder(model):
  x_a = tiny.examples(4, Kind.ONLY_A)['x']
  np.testing.assert_allclose(model(x_a).numpy(), model.zero_filled_a(x_a).numpy(), rtol=1e-5)
  x_b = tiny.examples(4, Kind.ONLY_B)['x']
  np.testing.assert_allclose(model(x_b).numpy(), model.zero_filled_b(x_b).numpy(), rtol=1e-5)
  before = [v.numpy().copy() for v in model.encoder_b.non_trainable_variables]
  model(x_a, training=True)
  for b, v in zip(before, model.encoder_b.non_trainable_variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_resnet18_body_has_torchvision_parameter_count():
  # torchvision resnet18 has 11,689,512 parameters; its fc layer has 512*1000+1000.
  visual = encoders.build_encoder((64, 64, 3), 'resnet18', 'v')
  assert visual.output_shape == (None, 512)
  assert sum(int(np.prod(v.shape)) for v in visual.trainable_variables) == 11_689_512 - 513_000
  # Frames are folded into the batch and averaged over frames and space.
  frames = encoders.build_encoder((2, 32, 32, 3), 'resnet18', 'f')
  assert frames(tf.zeros((3, 2, 32, 32, 3))).shape == (3, 512)


def test_synthetic_av_is_deterministic_and_audio_dominant_by_default():
  cfg = synthetic_av.SyntheticAVConfig(train_examples=60, test_examples=30)
  a, b = synthetic_av.make_synthetic_av(cfg), synthetic_av.make_synthetic_av(cfg)
  for name in ('audio', 'visual'):
    np.testing.assert_array_equal(a.train.inputs[name], b.train.inputs[name])
  np.testing.assert_array_equal(np.bincount(a.train.labels), [10] * 6)
  assert a.train.inputs['audio'].shape == (60, 24, 20, 1)
  assert a.train.inputs['visual'].shape == (60, 2, 16, 16, 3)
  difficulty = synthetic_av.class_difficulty(cfg)
  # Opposite per-class difficulty: class 0 easiest for audio, hardest for visual.
  assert difficulty['audio'][0] == 1.0 and difficulty['visual'][0] == cfg.hardest_class_scale
  other = synthetic_av.make_synthetic_av(
      synthetic_av.SyntheticAVConfig(train_examples=60, test_examples=30, dominant='visual'))
  assert synthetic_av.class_difficulty(
      synthetic_av.SyntheticAVConfig(dominant='visual'))['visual'][0] == 1.0
  assert other.description != a.description
  with pytest.raises(ValueError, match='dominant'):
    synthetic_av.make_synthetic_av(synthetic_av.SyntheticAVConfig(dominant='smell'))


def test_client_data_zero_fills_absent_modality_and_serialises():
  splits = tiny.small_synthetic()
  data = client_data.build_federated_splits(splits, num_clients=4, dirichlet_alpha=1.0,
                                            multi_ratio=0.5, seed=0)
  cd = data.client_data
  kinds = [cd.kind(c) for c in cd.client_ids]
  assert sorted(kinds) == [Kind.MULTIMODAL, Kind.MULTIMODAL, Kind.ONLY_A, Kind.ONLY_B]
  assert sum(cd.num_examples(c) for c in cd.client_ids) == 240
  for cid in cd.client_ids:
    mask = cd.kind(cid).modality_mask()
    for built in (cd.create_tf_dataset_for_client(cid), cd.serializable_dataset_fn(cid)):
      n = 0
      for e in built:
        n += 1
        np.testing.assert_array_equal(e['x']['modality_mask'].numpy(), mask)
        for slot, name in enumerate(('audio', 'visual')):
          assert (np.abs(e['x'][name].numpy()).sum() > 0) == (mask[slot] > 0)
      assert n == cd.num_examples(cid)
  with pytest.raises(ValueError, match='only_modality'):
    client_data.build_federated_splits(splits, num_clients=4, dirichlet_alpha=1.0,
                                       multi_ratio=0.5, seed=0, only_modality='text')


def test_validation_split_is_stratified_disjoint_seeded_and_carved_before_the_label_split():
  labels = np.repeat(np.arange(3), [10, 20, 31])
  kept, held = partition.validation_split(labels, 0.2, seed=4)
  # round(0.2 * n_c) of every class: 2, 4 and 6 (31 * 0.2 = 6.2).
  assert [int(np.sum(labels[held] == c)) for c in range(3)] == [2, 4, 6]
  assert not set(kept) & set(held) and len(kept) + len(held) == len(labels)
  again, _ = partition.validation_split(labels, 0.2, seed=4)
  other, _ = partition.validation_split(labels, 0.2, seed=5)
  np.testing.assert_array_equal(kept, again)
  assert not np.array_equal(kept, other)
  assert len(partition.validation_split(labels, 0.0, seed=4)[1]) == 0
  with pytest.raises(ValueError, match='fraction'):
    partition.validation_split(labels, 1.0, seed=4)

  splits = tiny.small_synthetic()
  without = client_data.build_federated_splits(splits, num_clients=4, dirichlet_alpha=1.0,
                                               multi_ratio=0.5, seed=0)
  assert without.validation is None
  data = client_data.build_federated_splits(splits, num_clients=4, dirichlet_alpha=1.0,
                                            multi_ratio=0.5, seed=0, validation_fraction=0.25)
  val_labels = np.array([int(e['y']) for e in data.validation])
  train_total = sum(data.client_data.num_examples(c) for c in data.client_data.client_ids)
  assert len(val_labels) + train_total == len(splits.train.labels)
  expected = [round(0.25 * np.sum(splits.train.labels == c)) for c in range(6)]
  assert np.bincount(val_labels, minlength=6).tolist() == expected
  # The held-out examples reach no client: every client example's audio differs from
  # every validation example's.
  val_audio = np.stack([e['x']['audio'].numpy() for e in data.validation]).reshape(
      len(val_labels), -1)
  for cid in data.client_data.client_ids:
    for e in data.client_data.create_tf_dataset_for_client(cid):
      if e['x']['modality_mask'][0] > 0:
        assert np.min(np.abs(val_audio - e['x']['audio'].numpy().reshape(1, -1)).sum(1)) > 0


def test_image_text_model_adapts_both_encoders_and_groups_the_text_encoder():
  config = tiny.MODEL_CONFIG.__class__(small_encoder_channels=(4, 8), feature_dim=5)
  model = fedcmi_model.DecomposedModel(('image', 'text'), {'image': (16, 16, 3), 'text': (6,)},
                                       2, config, vocabulary_sizes={'text': 9})
  assert model.feature_dim == 5
  x = {'image': tf.random.normal((3, 16, 16, 3)),
       'text': tf.constant([[3, 8, 1, 0, 0, 0]] * 3, tf.float32),
       modalities.MODALITY_MASK_KEY: tf.ones((3, 2))}
  outputs = model.multimodal(x, training=False)
  assert outputs.fused.shape == (3, 2) and outputs.feature_b.shape == (3, 5)
  # Small text encoder: embedding (9 x 64), width-3 convolution with 8 filters, then the
  # 5-d adapter; all of it in slot b's group, the embedding included.
  roles = dict(zip((v.name for v in model.trainable_variables), model.variable_roles()))
  embedding = [n for n in roles if 'text_encoder_embedding' in n]
  assert len(embedding) == 1 and roles[embedding[0]] == 'encoder_b'
  shapes = {v.name.split('/')[-2]: tuple(v.shape) for v in model.encoder_b.trainable_variables
            if 'kernel' in v.name or 'embeddings' in v.name}
  assert shapes == {'text_encoder_embedding': (9, 64), 'text_encoder_conv': (3, 64, 8),
                    'text_encoder_adapter': (8, 5)}
  wide_text = tiny.MODEL_CONFIG.__class__(small_encoder_channels=(4, 8), text_encoder='wide')
  with pytest.raises(ValueError, match='equal feature sizes, got 8 and 512'):
    fedcmi_model.DecomposedModel(('image', 'text'), {'image': (16, 16, 3), 'text': (6,)}, 2,
                                 wide_text, vocabulary_sizes={'text': 9})
  with pytest.raises(ValueError, match='needs the vocabulary size'):
    encoders.build_encoder((6,), 'small', 'text_encoder')


def test_pretrained_text_encoder_is_loaded_from_a_local_file(tmp_path):
  ids = tf.keras.Input((6,), dtype=tf.int32)
  body = tf.keras.layers.GlobalAveragePooling1D()(tf.keras.layers.Embedding(9, 4)(ids))
  pretrained = tf.keras.Model(ids, body)
  path = str(tmp_path / 'text.keras')
  pretrained.save(path)
  encoder = encoders.build_encoder((6,), 'small', 'text_encoder', pretrained_path=path)
  tokens = tf.constant([[3, 8, 1, 0, 0, 0]], tf.float32)
  np.testing.assert_allclose(encoder(tokens), pretrained(tf.cast(tokens, tf.int32)), rtol=1e-6)
  assert len(encoder.trainable_variables) == 1  # the pretrained embedding is fine-tuned


def test_densenet121_image_encoder_gives_the_1000_d_top():
  encoder = encoders.build_encoder((32, 32, 3), 'densenet121', 'image_encoder')
  assert encoder.output_shape == (None, 1000)
  assert encoder.count_params() == 8_062_504  # Keras' DenseNet-121 with its 1000-way top
  with pytest.raises(ValueError, match='densenet121 is an image encoder'):
    encoders.build_encoder((2, 32, 32, 3), 'densenet121', 'visual_encoder')
