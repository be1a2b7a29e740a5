"""The prepared-dataset format: writing, reading, errors, resuming, and clients streaming from it."""

import dataclasses
import json
import logging
import os
import zlib

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
  with pytest.raises(prepared.DataFormatError,
                     match=r'train2\.tfrecord: missing \(1 of 9 example files'):
    prepared.load_prepared(str(copy))


def _identity(recipe):
  return writer_lib.preparation_identity('toy', recipe, SPECS, ('a', 'b', 'c'))


def test_writer_refuses_finished_or_foreign_preparations(tmp_path, av_dir):
  with pytest.raises(prepared.DataFormatError, match='already holds a finished'):
    writer_lib.PreparedDatasetWriter(av_dir, 'toy', SPECS, ('a', 'b', 'c'), {'recipe': 1}, 'x')
  assert writer_lib.finished_manifest(av_dir, _identity({'recipe': 1}))['dataset'] == 'toy'
  with pytest.raises(prepared.DataFormatError) as error:
    writer_lib.finished_manifest(av_dir, _identity({'recipe': 2}))
  message = str(error.value)
  assert 'recipe.recipe 1 (prepared) vs 2 (now)' in message
  assert 'choose another output folder' in message and '--overwrite' in message
  assert writer_lib.finished_manifest(str(tmp_path / 'new'), _identity({'recipe': 1})) is None
  writer_lib.PreparedDatasetWriter(str(tmp_path / 'half'), 'toy', SPECS, ('a', 'b', 'c'),
                                   {'recipe': 1}, 'x')
  with pytest.raises(prepared.DataFormatError, match='unfinished preparation .* of other inputs '
                     r'or another recipe \(recipe.recipe 1 \(prepared\) vs 2 \(now\)\)'):
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
  train = manifest['splits']['train']
  assert (train['count'], train['example_ids'], train['labels']) == (2, ['a', 'b'], [0, 1])
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


# -- integrity of prepared data


def _copy_of_av(tmp_path, name='copy'):
  root = tmp_path / name
  _write_av(root)
  return root


def test_manifest_records_each_file_size_and_crc32(tmp_path):
  root = _copy_of_av(tmp_path)
  manifest = json.loads((root / 'dataset.json').read_text())
  assert manifest['format_version'] == prepared.FORMAT_VERSION == 2
  for split in prepared.SPLITS:
    entry = manifest['splits'][split]
    for example_id, size, crc in zip(entry['example_ids'], entry['sizes'], entry['crc32']):
      data = (root / split / f'{example_id}.tfrecord').read_bytes()
      assert (size, crc) == (len(data), zlib.crc32(data))
  assert not [n for n in os.listdir(root) if n.startswith('.')]  # no marker or journal left


def test_zero_byte_truncated_and_corrupted_example_files_are_named(tmp_path):
  root = _copy_of_av(tmp_path)
  zero, cut, flipped = (root / 'train' / f'train{i}.tfrecord' for i in (1, 3, 4))
  zero.write_bytes(b'')
  with pytest.raises(prepared.DataFormatError) as error:
    list(prepared.load(str(root), 'train', options=OPTIONS))
  message = str(error.value)
  assert str(zero) in message and '0 bytes, but dataset.json records' in message
  assert '\n' not in message and 'fedcmi_tff.prepare' in message
  _write_av(root / '..' / 'fresh')
  zero.write_bytes((root / '..' / 'fresh' / 'train' / 'train1.tfrecord').read_bytes())
  data = cut.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(prepared.DataFormatError, match=rf'{cut}: \d+ bytes, .*truncated'):
    prepared.load_prepared(str(root), 'toy', OPTIONS)
  cut.write_bytes(data)
  # Same size, other content: only the checksum sees it (checked by default: the files are small).
  data = bytearray(flipped.read_bytes())
  data[len(data) // 2] ^= 0xFF
  flipped.write_bytes(bytes(data))
  with pytest.raises(prepared.DataFormatError, match=rf'{flipped}: CRC-32 [0-9a-f]+, but '):
    prepared.load_prepared(str(root), 'toy', OPTIONS)
  unchecked = dataclasses.replace(OPTIONS, verify_checksums=False)
  assert len(prepared.load_prepared(str(root), 'toy', unchecked).train) == 6
  assert prepared.wants_checksums(None, prepared.AUTO_CHECKSUM_BYTES)
  assert not prepared.wants_checksums(None, prepared.AUTO_CHECKSUM_BYTES + 1)


def test_version_1_manifest_is_read_with_a_one_line_warning(tmp_path, caplog):
  root = _copy_of_av(tmp_path)
  manifest = json.loads((root / 'dataset.json').read_text())
  manifest['format_version'] = 1
  for split in prepared.SPLITS:
    del manifest['splits'][split]['sizes'], manifest['splits'][split]['crc32']
  del manifest['inputs']
  (root / 'dataset.json').write_text(json.dumps(manifest))
  with caplog.at_level(logging.WARNING):
    assert len(prepared.load_prepared(str(root), 'toy', OPTIONS).train) == 6
  (record,) = [r for r in caplog.records if 'format_version 1' in r.getMessage()]
  assert 'prepare again' in record.getMessage() and '\n' not in record.getMessage()
  (root / 'train' / 'train0.tfrecord').write_bytes(b'')  # still never silently dropped
  with pytest.raises(prepared.DataFormatError, match='train0.tfrecord: 0 bytes, too short'):
    prepared.load_prepared(str(root), 'toy', OPTIONS)
  with pytest.raises(prepared.DataFormatError, match='older fedcmi_tff.*--overwrite'):
    writer_lib.finished_manifest(str(root), writer_lib.preparation_identity(
        'toy', {'recipe': 1}, SPECS, ('a', 'b', 'c'), {'raw_dir': '/raw', 'files': {}}))


def _toy_build(built):
  def build(payload):
    built.append(payload)
    if payload == 'missing':
      raise writer_lib.SkipExample('audio file missing', 'clip-missing.wav')
    return {'audio': _audio(0), 'visual': [_jpeg(10)]}
  return build


_ITEMS = [('train', 'a', 0, 'a'), ('train', 'missing', 1, 'missing'), ('train', 'b', 1, 'b'),
          ('test', 'c', 2, 'c')]


def _run_toy(root, built, verify=None):
  writer = writer_lib.PreparedDatasetWriter(str(root), 'toy', SPECS, ('a', 'b', 'c'), {}, 'x',
                                            verify=verify)
  report = writer_lib.PreparationReport()
  writer_lib.prepare_examples(writer, report, _ITEMS, _toy_build(built), workers=2)
  return writer, report


def test_resume_remakes_missing_truncated_and_unjournalled_files(tmp_path):
  root, built = tmp_path / 'p', []
  _run_toy(root, built)  # "interrupted": no finish()
  journal = root / '.preparing-files.jsonl'
  assert len(journal.read_text().splitlines()) == 3
  with open(journal, 'ab') as f:
    f.write(b'["train", "b", 1, 12')  # a line cut by the interruption
  data = (root / 'train' / 'a.tfrecord').read_bytes()
  (root / 'train' / 'a.tfrecord').write_bytes(data[:10])  # truncated
  os.unlink(root / 'test' / 'c.tfrecord')  # deleted
  built.clear()
  writer, report = _run_toy(root, built)
  assert sorted(built) == ['a', 'c', 'missing']
  assert report.notes[0] == 'resumed: 1 example files of an interrupted preparation reused'
  assert report.notes[1].startswith('made again: 2 example files that were missing or damaged: '
                                    'train/a (10 bytes, but the preparation journal records')
  assert 'test/c (missing)' in report.notes[1]
  manifest = writer.finish(report)
  assert manifest['splits']['train']['sizes'][0] == len(data)
  # A file that the journal does not list (written by an older version, or just before an
  # interruption) is not trusted either.
  assert len(prepared.load_prepared(str(root), 'toy', OPTIONS).train) == 2


def test_resume_checks_checksums_when_asked(tmp_path):
  root, built = tmp_path / 'p', []
  _run_toy(root, built)
  path = root / 'train' / 'b.tfrecord'
  data = bytearray(path.read_bytes())
  data[-8] ^= 0xFF
  path.write_bytes(bytes(data))
  built.clear()
  _run_toy(root, built, verify=False)  # sizes only: the change goes unseen
  assert built == ['missing']
  built.clear()
  _, report = _run_toy(root, built, verify=True)
  assert sorted(built) == ['b', 'missing'] and 'train/b (CRC-32' in report.notes[1]


def test_finished_preparation_with_missing_files_is_turned_back_into_a_resume(tmp_path):
  root, built = tmp_path / 'p', []
  writer, report = _run_toy(root, built)
  writer.finish(report)
  identity = writer_lib.preparation_identity('toy', {}, SPECS, ('a', 'b', 'c'))
  assert writer_lib.finished_manifest(str(root), identity) is not None
  os.unlink(root / 'train' / 'b.tfrecord')
  assert writer_lib.finished_manifest(str(root), identity) is None
  assert not (root / 'dataset.json').exists() and (root / '.preparing.json').exists()
  built.clear()
  writer, report = _run_toy(root, built)
  assert sorted(built) == ['b', 'missing']
  assert 'train/b (missing)' in report.notes[1]
  writer.finish(report)
  assert writer_lib.finished_manifest(str(root), identity) is not None


def test_overwrite_deletes_only_a_prepared_dataset(tmp_path):
  plain = tmp_path / 'plain'
  plain.mkdir()
  (plain / 'keep.txt').write_text('mine')
  (plain / 'train').mkdir()
  identity = writer_lib.preparation_identity('toy', {}, SPECS, ('a', 'b', 'c'))
  assert writer_lib.finished_manifest(str(plain), identity, overwrite=True) is None
  assert (plain / 'keep.txt').exists() and (plain / 'train').exists()
  root = _copy_of_av(tmp_path)
  (root / 'notes.txt').write_text('mine')
  assert writer_lib.finished_manifest(str(root), identity, overwrite=True) is None
  assert sorted(os.listdir(root)) == ['notes.txt']
  half, built = tmp_path / 'half', []
  _run_toy(half, built)
  assert writer_lib.remove_preparation(str(half)) and os.listdir(half) == []


def test_nothing_prepared_carries_the_report_and_long_items_are_cut():
  report = writer_lib.PreparationReport()
  report.count_read('train', 2)
  report.skip('image file missing', 'x' * 30_000_000)
  report.skip('image file missing', 'short.jpg')
  (named, short) = report.to_dict()['skipped_examples']['image file missing']
  assert named == 'x' * 400 + '… (30000000 bytes)' and short == 'short.jpg'
  writer = writer_lib.PreparedDatasetWriter.__new__(writer_lib.PreparedDatasetWriter)
  writer.output_dir, writer._examples = 'out', {'train': [], 'test': []}
  with pytest.raises(writer_lib.NothingPrepared) as error:
    writer.finish(report)
  assert str(error.value) == ('out: no train example was prepared (2 train rows read; skipped '
                              '2 x image file missing); see the skip report above')
  assert error.value.report is report
  assert any(line.startswith('  2 x image file missing: xxx') for line in report.lines())
