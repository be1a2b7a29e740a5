"""The prepared-dataset format: writing, reading, errors, resuming, and clients streaming from it."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.data import client_data
from fedcmi_tff.data import modalities
from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import writer as writer_lib

SPECS = (prepared.ModalitySpec('audio', 'float_tensor', (5, 4)),
         prepared.ModalitySpec('visual', 'jpeg_frames', (), normalisation='imagenet'))
TEXT_SPECS = (prepared.ModalitySpec('image', 'jpeg_image', (32, 32), normalisation='half',
                                    centre_crop_fraction=0.25),
              prepared.ModalitySpec('text', 'token_ids', (6,), vocabulary_size=9))
OPTIONS = prepared.LoadOptions(num_frames=3, image_size=8)


def _jpeg(value, size=12):
  pixels = np.full((size, size, 3), value, np.uint8)
  return tf.io.encode_jpeg(pixels, quality=100).numpy()


def _audio(i):
  return np.arange(20, dtype=np.float32).reshape(5, 4) + 100 * i


def _write_av(root, n_train=6, n_test=3, frames_per_clip=2):
  writer = writer_lib.PreparedDatasetWriter(str(root), 'toy', SPECS, ('a', 'b', 'c'),
                                            {'recipe': 1}, source='generated')
  for split, n in (('train', n_train), ('test', n_test)):
    for i in range(n):
      frames = [_jpeg(40 * f + 10 * i) for f in range(frames_per_clip)]
      writer.write(split, f'{split}{i}', i % 3, {'audio': _audio(i), 'visual': frames})
  report = writer_lib.PreparationReport()
  report.skip('audio file missing', 'x.wav')
  return writer.finish(report)


@pytest.fixture(scope='module')
def av_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('prepared') / 'toy'
  _write_av(root)
  return str(root)


def test_round_trip_shapes_values_and_frame_padding(av_dir):
  splits = prepared.load_prepared(av_dir, 'toy', OPTIONS)
  assert splits.modality_names == ('audio', 'visual')
  assert splits.class_names == ('a', 'b', 'c')
  assert list(splits.train.labels) == [0, 1, 2, 0, 1, 2] and len(splits.test) == 3
  assert splits.train.input_shapes == {'audio': (5, 4, 1), 'visual': (3, 8, 8, 3)}
  examples = list(splits.train.examples([4, 1], ('audio', 'visual')))
  np.testing.assert_array_equal(examples[0]['audio'][..., 0], _audio(4))
  assert int(examples[0]['label']) == 1
  visual = examples[0]['visual'].numpy()
  assert visual.shape == (3, 8, 8, 3)
  # Two stored frames, three requested: the last frame repeats.  Uniform grey JPEGs
  # decode to their value (+-1), then ImageNet normalisation.
  mean, std = np.array(prepared.NORMALISATIONS['imagenet'][0]), np.array(
      prepared.NORMALISATIONS['imagenet'][1])
  for frame, value in zip(visual, (40, 80, 80)):
    expected = ((value / 255.0) - mean) / std
    np.testing.assert_allclose(frame.mean(axis=(0, 1)), expected, atol=0.03)


def test_image_crop_and_token_ids(tmp_path):
  writer = writer_lib.PreparedDatasetWriter(str(tmp_path / 'mm'), 'toy_text', TEXT_SPECS,
                                            ('no', 'yes'), {}, source='generated')
  pixels = np.zeros((32, 32, 3), np.uint8)
  pixels[8:24, 8:24] = 200  # a bright centre square, black around it
  image = tf.io.encode_jpeg(pixels, quality=100).numpy()
  for split in prepared.SPLITS:
    writer.write(split, 'e0', 1, {'image': image, 'text': [3, 8, 1, 0, 0, 0]})
  writer.finish(writer_lib.PreparationReport())
  splits = prepared.load_prepared(str(tmp_path / 'mm'), 'toy_text', OPTIONS)
  assert splits.train.vocabulary_sizes == {'text': 9}
  assert splits.train.input_shapes == {'image': (8, 8, 3), 'text': (6,)}
  (e,) = list(splits.train.examples([0], ('image', 'text')))
  np.testing.assert_array_equal(e['text'], [3, 8, 1, 0, 0, 0])
  # The centre-quarter crop lies inside the bright square: (200/255 - 0.5) / 0.5 everywhere.
  np.testing.assert_allclose(e['image'].numpy(), (200 / 255 - 0.5) / 0.5, atol=0.03)


def test_manifest_errors_name_the_problem(tmp_path, av_dir):
  with pytest.raises(prepared.DataFormatError, match='does not exist'):
    prepared.load_prepared(str(tmp_path / 'nowhere'))
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(prepared.DataFormatError, match='dataset.json not found'):
    prepared.load_prepared(str(tmp_path / 'empty'))
  with pytest.raises(prepared.DataFormatError, match="holds dataset 'toy', but --dataset=ave"):
    prepared.load_prepared(av_dir, 'ave')
  copy = tmp_path / 'copy'
  _write_av(copy)
  manifest = json.loads((copy / 'dataset.json').read_text())
  manifest['format_version'] = 99
  (copy / 'dataset.json').write_text(json.dumps(manifest))
  with pytest.raises(prepared.DataFormatError, match='format_version 99'):
    prepared.load_prepared(str(copy))
  manifest['format_version'] = prepared.FORMAT_VERSION
  (copy / 'dataset.json').write_text(json.dumps(manifest))
  os.unlink(copy / 'train' / 'train2.tfrecord')
  with pytest.raises(prepared.DataFormatError, match='1 train example files are missing'):
    prepared.load_prepared(str(copy))


def test_writer_refuses_finished_or_foreign_preparations(tmp_path, av_dir):
  with pytest.raises(prepared.DataFormatError, match='already holds a finished'):
    writer_lib.PreparedDatasetWriter(av_dir, 'toy', SPECS, ('a', 'b', 'c'), {'recipe': 1}, 'x')
  assert writer_lib.finished_manifest(av_dir, 'toy', {'recipe': 1})['dataset'] == 'toy'
  with pytest.raises(prepared.DataFormatError, match='choose another output folder'):
    writer_lib.finished_manifest(av_dir, 'toy', {'recipe': 2})
  assert writer_lib.finished_manifest(str(tmp_path / 'new'), 'toy', {'recipe': 1}) is None
  writer_lib.PreparedDatasetWriter(str(tmp_path / 'half'), 'toy', SPECS, ('a', 'b', 'c'),
                                   {'recipe': 1}, 'x')
  with pytest.raises(prepared.DataFormatError, match='unfinished preparation with another'):
    writer_lib.PreparedDatasetWriter(str(tmp_path / 'half'), 'toy', SPECS, ('a', 'b', 'c'),
                                     {'recipe': 2}, 'x')


def test_prepare_examples_counts_skips_and_resumes(tmp_path):
  built = []

  def build(payload):
    built.append(payload)
    if payload == 'missing':
      raise writer_lib.SkipExample('audio file missing', 'clip-missing.wav')
    return {'audio': _audio(0), 'visual': [_jpeg(10)]}

  items = [('train', 'a', 0, 'a'), ('train', 'missing', 1, 'missing'), ('train', 'b', 1, 'b'),
           ('test', 'c', 2, 'c')]

  def run():
    writer = writer_lib.PreparedDatasetWriter(str(tmp_path / 'p'), 'toy', SPECS, ('a', 'b', 'c'),
                                              {}, 'x')
    report = writer_lib.PreparationReport()
    writer_lib.prepare_examples(writer, report, items, build, workers=2)
    return writer, report

  writer, report = run()
  assert report.skipped == {'audio file missing': 1}
  assert report.written == {'train': 2, 'test': 1}
  assert sorted(built) == ['a', 'b', 'c', 'missing']
  # An interrupted preparation (no manifest yet) resumes: only the skipped item is rebuilt.
  built.clear()
  writer, report = run()
  assert built == ['missing'] and report.written == {'train': 2, 'test': 1}
  assert report.notes == ['resumed: 3 example files of an interrupted preparation reused']
  manifest = writer.finish(report)
  assert manifest['splits']['train'] == {'count': 2, 'example_ids': ['a', 'b'], 'labels': [0, 1]}
  assert manifest['report']['skipped_examples'] == {'audio file missing': ['clip-missing.wav']}
  assert not os.path.exists(tmp_path / 'p' / '.preparing.json')
  assert any('1 x audio file missing: clip-missing.wav' in line for line in report.lines())


def test_clients_stream_from_disk_and_read_only_what_they_hold(av_dir, tmp_path):
  splits = prepared.load_prepared(av_dir, 'toy', OPTIONS)
  kinds = [modalities.ClientKind.MULTIMODAL, modalities.ClientKind.ONLY_A,
           modalities.ClientKind.ONLY_B]
  cd = client_data.MultimodalClientData(splits.train, [[0, 3], [1, 4], [2, 5]], kinds,
                                        splits.modality_names)
  for cid, idx in zip(cd.client_ids, ([0, 3], [1, 4], [2, 5])):
    direct = list(cd.create_tf_dataset_for_client(cid))
    serial = list(cd.serializable_dataset_fn(tf.constant(cid)))
    assert [int(e['y']) for e in direct] == [int(splits.train.labels[i]) for i in idx]
    for d, s in zip(direct, serial):
      for name in ('audio', 'visual', 'modality_mask'):
        np.testing.assert_allclose(d['x'][name], s['x'][name], atol=1e-6)
  only_a = list(cd.create_tf_dataset_for_client('1'))
  assert not np.any(only_a[0]['x']['visual']) and np.any(only_a[0]['x']['audio'])
  # An audio-only client never decodes frames: it still reads examples whose JPEGs are broken.
  broken = tmp_path / 'broken'
  writer = writer_lib.PreparedDatasetWriter(str(broken), 'toy', SPECS, ('a', 'b', 'c'), {}, 'x')
  for split in prepared.SPLITS:
    writer.write(split, 'e', 0, {'audio': _audio(1), 'visual': [b'not a jpeg']})
  writer.finish(writer_lib.PreparationReport())
  bad = prepared.load_prepared(str(broken), 'toy', OPTIONS)
  cd = client_data.MultimodalClientData(bad.train, [[0], [0]],
                                        [modalities.ClientKind.ONLY_A,
                                         modalities.ClientKind.MULTIMODAL], bad.modality_names)
  assert len(list(cd.create_tf_dataset_for_client('0'))) == 1
  with pytest.raises(tf.errors.InvalidArgumentError):
    list(cd.create_tf_dataset_for_client('1'))
