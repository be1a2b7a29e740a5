"""CREMA-D and AVE preparation on fixtures in the published layouts: quirks, shapes, labels, bad input."""

import os

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import ave
from fedcmi_tff.preparation import crema_d
from fedcmi_tff.preparation import writer as writer_lib
from tests import av_fixtures

OPTIONS = prepared.LoadOptions(num_frames=3, image_size=16)


def _stored(prepared_dir, split, example_id):
  """The raw tf.train.Example of one prepared example."""
  path = prepared.example_path(prepared_dir, split, example_id)
  (record,) = list(tf.data.TFRecordDataset([path]).as_numpy_iterator())
  return tf.train.Example.FromString(record).features.feature


# -- CREMA-D -----------------------------------------------------------------


@pytest.fixture(scope='module')
def crema(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('crema') / 'CREMA-D')
  info = av_fixtures.make_crema_d(root, with_videos=True)
  out = str(tmp_path_factory.mktemp('crema_prepared') / 'p')
  manifest = crema_d.prepare_crema_d(root, out, workers=2)
  return info, out, manifest


def test_crema_d_split_files_keep_their_quirks_and_map_labels(crema):
  info, _, _ = crema
  with open(info['paths']['stat_csv'], 'rb') as f:
    stat = f.read()
  assert stat.startswith(b'\xef\xbb\xbf') and b'\r\n' in stat  # BOM, CRLF
  with open(info['paths']['train_csv'], 'rb') as f:
    train = f.read()
  assert b'\r\n' in train and not train.startswith(b'\xef\xbb\xbf')
  classes = crema_d.read_class_list(info['paths']['stat_csv'])
  assert classes == ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')  # no BOM left on 'NEU'
  rows = crema_d.read_split(info['paths']['train_csv'], classes)
  assert [clip for _, clip, _ in rows] == info['train']  # no header row was eaten
  assert {clip: label for _, clip, label in rows} == {
      s: classes.index(info['labels'][s]) for s in info['train']}


def test_crema_d_prepared_shapes_labels_and_frame_order(crema):
  info, out, manifest = crema
  assert manifest['report']['skipped'] == {}, manifest['report']
  assert manifest['splits']['train']['count'] == len(info['train'])
  assert manifest['splits']['test']['count'] == len(info['test'])
  assert manifest['recipe']['frames']['source'] == 'folder'
  splits = prepared.load_prepared(out, 'crema_d', OPTIONS)
  assert splits.class_names == crema_d.DEFAULT_CLASSES
  assert splits.train.input_shapes == {'audio': (257, 299, 1), 'visual': (3, 16, 16, 3)}
  ids = manifest['splits']['train']['example_ids']
  for example, example_id in zip(splits.train.examples(np.arange(len(ids)), ('audio', 'visual')),
                                 ids):
    assert int(example['label']) == crema_d.DEFAULT_CLASSES.index(info['labels'][example_id])
    audio = example['audio'].numpy()
    assert audio.shape == (257, 299, 1)
    # The PMR / FedCMI recipe standardises each clip by its own mean and std.
    assert abs(audio.mean()) < 1e-3 and abs(audio.std() - 1.0) < 1e-3
  # Frames are stored in temporal order (by the number in the file name), not listing order.
  stem = info['train'][0]
  frames = list(_stored(out, 'train', stem)['visual'].bytes_list.value)
  folder = os.path.join(info['paths']['frames_dir'], stem)
  expected = []
  for name in av_fixtures.CREMA_D_FRAME_NAMES:
    with open(os.path.join(folder, name), 'rb') as f:
      expected.append(f.read())
  assert frames == expected


def test_crema_d_optional_recipes_and_refusal_to_mix_them(crema, tmp_path):
  info, out, _ = crema
  with pytest.raises(prepared.DataFormatError, match='choose another output folder'):
    crema_d.prepare_crema_d(info['root'], out, spectrogram='stft_22k_3s')
  other = str(tmp_path / 'stft_video')
  manifest = crema_d.prepare_crema_d(info['root'], other, spectrogram='stft_22k_3s',
                                     frame_source='video')
  assert manifest['recipe']['spectrogram_shape'] == [257, 188]
  assert manifest['recipe']['frames']['source'] == 'video'
  splits = prepared.load_prepared(other, 'crema_d', OPTIONS)
  (example,) = list(splits.test.examples([0], ('audio', 'visual')))
  assert example['audio'].shape == (257, 188, 1)
  stem = manifest['splits']['test']['example_ids'][0]
  assert len(_stored(other, 'test', stem)['visual'].bytes_list.value) >= crema_d.MIN_FRAMES


def test_crema_d_gaps_are_counted_and_named(tmp_path):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_crema_d(
      root, actors=(1001, 1002, 1003, 1004), missing_wav=('1001_DFA_ANG_XX',),
      corrupt_wav=('1002_DFA_HAP_XX',), corrupt_jpeg=('1003_DFA_ANG_XX',),
      extra_split_rows=('1099_DFA_HAP_XX,HAP',))  # a split row naming a clip that does not exist
  manifest = crema_d.prepare_crema_d(root, str(tmp_path / 'p'))
  report = manifest['report']
  assert report['skipped'] == {'audio file missing': 2, 'audio undecodable': 1,
                               'frames undecodable': 1}
  named = report['skipped_examples']
  assert sorted(os.path.basename(p) for p in named['audio file missing']) == [
      '1001_DFA_ANG_XX.wav', '1099_DFA_HAP_XX.wav']
  assert '1002_DFA_HAP_XX.wav' in named['audio undecodable'][0]
  assert '00030.jpg' in named['frames undecodable'][0]
  assert report['read']['train'] == len(info['train']) + 1
  assert manifest['splits']['train']['count'] == len(info['train']) + 1 - 4


@pytest.mark.parametrize('row,message', [
    ('1001_DFA_ANG_XX,XYZ', "unknown label 'XYZ'"),
    ('1001_DFA_ANG_XX', 'expected 2 comma-separated fields'),
    ('1001_DFA_ANG_XX,HAP', 'disagrees with the clip name'),
    ('not-a-clip,ANG', 'is not of the form'),
])
def test_crema_d_bad_split_rows_name_file_and_line(tmp_path, row, message):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_crema_d(root, malformed_split_rows=(row,))
  line = len(info['train']) + 1
  with pytest.raises(prepared.DataFormatError, match=rf'train\.csv:{line}: .*{message}'):
    crema_d.prepare_crema_d(root, str(tmp_path / 'p'))
  assert not os.path.exists(tmp_path / 'p')  # nothing written before the split files are valid


def test_crema_d_missing_split_or_class_file_is_an_error(tmp_path):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_crema_d(root)
  os.unlink(info['paths']['stat_csv'])
  with pytest.raises(prepared.DataFormatError, match=r'stat\.csv: file not found'):
    crema_d.prepare_crema_d(root, str(tmp_path / 'p'))


def _write_bytes(path, data):
  with open(path, 'wb') as f:
    f.write(data)


def test_crema_d_non_utf8_split_or_class_file_names_file_and_line(tmp_path):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_crema_d(root)
  with open(info['paths']['train_csv'], 'rb') as f:
    data = f.read()
  _write_bytes(info['paths']['train_csv'], data + b'1001_DFA_ANG_XX,ANG\xa0\r\n')
  line = len(info['train']) + 1
  with pytest.raises(prepared.DataFormatError) as error:
    crema_d.prepare_crema_d(root, str(tmp_path / 'p'))
  assert str(error.value) == (f'{info["paths"]["train_csv"]}:{line}: not UTF-8 text (byte 0xa0 '
                              'at byte column 20); save the file as UTF-8')
  _write_bytes(info['paths']['train_csv'], data)
  _write_bytes(info['paths']['stat_csv'], '\ufeffNEU\r\nHAP\r\n'.encode() + b'S\xc4D\r\n')
  with pytest.raises(prepared.DataFormatError, match=r'stat\.csv:3: not UTF-8 text \(byte 0xc4'):
    crema_d.prepare_crema_d(root, str(tmp_path / 'p'))


def test_crema_d_long_split_row_is_cut_in_the_message(tmp_path):
  root = str(tmp_path / 'raw')
  av_fixtures.make_crema_d(root, malformed_split_rows=('A' * 30_000_000,))
  with pytest.raises(prepared.DataFormatError) as error:
    crema_d.prepare_crema_d(root, str(tmp_path / 'p'))
  message = str(error.value)
  assert 'expected 2 comma-separated fields' in message and len(message) < 600
  assert message.endswith("'… (30000000 bytes)")


def test_crema_d_unreadable_wav_fifo_and_folder_frames_are_skipped_alike(tmp_path):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_crema_d(root, actors=(1001, 1002, 1003, 1004))
  wav_folder, fifo_frame, folder_frame = '1001_DFA_ANG_XX', '1002_DFA_HAP_XX', '1003_DFA_ANG_XX'
  os.unlink(info['wav'][wav_folder])
  os.makedirs(info['wav'][wav_folder])  # a folder named .wav
  frame = os.path.join(info['frames'][fifo_frame], av_fixtures.CREMA_D_CORRUPT_FRAME)
  os.unlink(frame)
  av_fixtures.make_fifo(frame)  # would block whoever opens it
  other = os.path.join(info['frames'][folder_frame], av_fixtures.CREMA_D_CORRUPT_FRAME)
  os.unlink(other)
  os.makedirs(other)  # a folder named .jpg
  manifest = crema_d.prepare_crema_d(root, str(tmp_path / 'p'))
  report = manifest['report']
  assert report['skipped'] == {'audio file unreadable': 1, 'frame file unreadable': 2}
  (wav_item,) = report['skipped_examples']['audio file unreadable']
  assert info['wav'][wav_folder] in wav_item and 'a folder, not a regular file' in wav_item
  frames = ' '.join(report['skipped_examples']['frame file unreadable'])
  assert frame in frames and 'a FIFO (named pipe), not a regular file' in frames
  assert other in frames
  assert manifest['splits']['train']['count'] == len(info['train']) - 3


def test_crema_d_rerun_checks_raw_dir_and_example_files(tmp_path):
  root, copy = str(tmp_path / 'raw'), str(tmp_path / 'copy')
  info = av_fixtures.make_crema_d(root)
  av_fixtures.make_crema_d(copy)
  out = str(tmp_path / 'p')
  first = crema_d.prepare_crema_d(root, out)
  assert first['inputs']['files'].keys() == {'stat.csv', 'train.csv', 'test.csv'}
  assert first['inputs']['folders'] == {'frames_dir': os.path.realpath(info['paths']['frames_dir'])}
  with pytest.raises(prepared.DataFormatError, match=f'raw folder {root} .prepared. vs {copy}'):
    crema_d.prepare_crema_d(copy, out)
  ids = first['splits']['train']['example_ids']
  os.unlink(prepared.example_path(out, 'train', ids[0]))
  again = crema_d.prepare_crema_d(root, out)
  assert again['splits'] == first['splits']
  assert any(n.startswith(f'made again: 1 example files that were missing or damaged: '
                          f'train/{ids[0]} (missing)') for n in again['report']['notes'])
  assert crema_d.prepare_crema_d(root, out) == again  # intact now: no work
  assert writer_lib.holds_preparation(out)


# -- AVE -----------------------------------------------------------------------


@pytest.fixture(scope='module')
def ave_data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('ave') / 'AVE_Dataset')
  info = av_fixtures.make_ave(root)
  out = str(tmp_path_factory.mktemp('ave_prepared') / 'p')
  return info, out, ave.prepare_ave(root, out, workers=2)


def test_ave_rows_split_on_ampersand_and_classes_follow_test_order(ave_data):
  info, _, manifest = ave_data
  rows = ave.read_rows(info['paths']['test'], header=False)
  assert ave.class_order(rows) == tuple(info['classes'])
  assert tuple(info['classes']) != tuple(sorted(info['classes']))  # not alphabetical
  assert manifest['class_names'] == list(info['classes'])
  assert 'Male speech, man speaking' in manifest['class_names']
  with pytest.raises(prepared.DataFormatError, match='split files have no header'):
    ave.read_rows(info['paths']['annotations'], header=False)
  with pytest.raises(prepared.DataFormatError, match=r'trainSet\.txt:1: expected the header'):
    ave.read_rows(info['paths']['train'], header=True)


def test_ave_prepared_segments_shapes_and_labels(ave_data):
  info, out, manifest = ave_data
  train_ids = manifest['splits']['train']['example_ids']
  assert len(train_ids) == len(info['train'])
  # The video that appears twice in train, with two segments, gives two examples.
  dup = info['duplicate_id']
  assert sum(i.startswith(dup + '_') for i in train_ids) == 2
  assert manifest['splits']['test']['count'] == len(info['test'])
  assert 'val' not in manifest['splits'] and manifest['report']['read']['val'] == len(info['val'])
  assert manifest['recipe']['spectrogram_shape'] == [257, 1004]
  splits = prepared.load_prepared(out, 'ave', OPTIONS)
  for example, (category, video_id, start, end) in zip(
      splits.test.examples(np.arange(len(info['test'])), ('audio', 'visual')), info['test']):
    assert int(example['label']) == info['classes'].index(category)
    assert example['audio'].shape == (257, 1004, 1)
    stored = _stored(out, 'test', f'{video_id}_{start}_{end}')
    assert len(stored['visual'].bytes_list.value) >= ave.MIN_FRAMES


def test_ave_gaps_are_counted_and_named(tmp_path):
  root = str(tmp_path / 'raw')
  v = av_fixtures.ave_video_id
  info = av_fixtures.make_ave(root, missing_video=(v(1, 0), v(2, 1)), corrupt_video=(v(2, 0),),
                              video_without_audio=(v(0, 1),))
  av_fixtures.make_fifo(info['videos'][v(2, 1)])  # a FIFO named .mp4: refused before ffmpeg
  report = ave.prepare_ave(root, str(tmp_path / 'p'))['report']
  assert report['skipped'] == {'video file missing': 1, 'audio undecodable': 2,
                               'video file unreadable': 1}
  assert v(1, 0) in report['skipped_examples']['video file missing'][0]
  named = ' '.join(report['skipped_examples']['audio undecodable'])
  assert v(2, 0) in named and v(0, 1) in named
  (fifo,) = report['skipped_examples']['video file unreadable']
  assert v(2, 1) in fifo and 'a FIFO (named pipe)' in fifo
  assert report['read']['train'] == len(info['train'])


def test_ave_non_utf8_split_file_names_file_and_line(tmp_path):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_ave(root, ids_per_class=2, clip_seconds=4)
  with open(info['paths']['train'], 'ab') as f:
    f.write(b'Church bell&abc\xff&good&1&3\n')
  line = len(info['train']) + 1
  with pytest.raises(prepared.DataFormatError, match=rf'trainSet\.txt:{line}: not UTF-8 text '
                     r'\(byte 0xff at byte column 16\)'):
    ave.prepare_ave(root, str(tmp_path / 'p'))


@pytest.mark.parametrize('row,message', [
    ('Church bell&abc&good&1', 'expected 5 "&"-separated fields'),
    ('Cello&abc&good&1&3', "unknown category 'Cello'"),
    ('Church bell&abc&good&3&1', 'need 0 <= StartTime < EndTime'),
    ('Church bell&abc&good&one&3', 'must be integers'),
])
def test_ave_bad_rows_name_file_and_line(tmp_path, row, message):
  root = str(tmp_path / 'raw')
  info = av_fixtures.make_ave(root, malformed_split_rows=(row,))
  line = len(info['train']) + 1
  with pytest.raises(prepared.DataFormatError, match=rf'trainSet\.txt:{line}: .*{message}'):
    ave.prepare_ave(root, str(tmp_path / 'p'))
