"""TFDS builders over fixtures in the published layouts: splits, shapes, labels, reuse, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import gcs_utils

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import crisismmd
from fedcmi_tff.preparation import tfds_builders
from fedcmi_tff.preparation import writer as writer_lib
from tests import av_fixtures
from tests import crisismmd_fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module', autouse=True)
def no_gcs():
  """Any probe of gs://tfds-data fails the test instead of reaching the network."""

  def refuse(*args, **kwargs):
    raise AssertionError(f'TFDS tried to reach GCS: {args} {kwargs}')

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gcs_utils, 'exists', refuse)
    patch.setattr(gcs_utils, 'gcs_dataset_info_files', refuse)
    patch.setattr(gcs_utils, 'is_dataset_on_gcs', refuse)
    yield


def _build(name: str, config, manual_dir: str, data_dir: str, download_dir: str):
  builder = tfds.builder(name, config=config, data_dir=data_dir)
  builder.download_and_prepare(
      download_dir=download_dir,
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir,
                                                   try_download_gcs=False))
  return builder


def _manifest(builder, manual_dir: str, download_dir: str) -> tuple:
  """(prepared dir, manifest) of the preparation a builder made."""
  folder = tfds_builders.preparation_dir(builder.name, builder.builder_config.name, download_dir,
                                         manual_dir)
  return folder, prepared.read_manifest(folder)


def _stored(prepared_dir: str, split: str, example_id: str):
  path = prepared.example_path(prepared_dir, split, example_id)
  (record,) = list(tf.data.TFRecordDataset([path]).as_numpy_iterator())
  return tf.train.Example.FromString(record).features.feature


def _read_splits(builder, manifest: dict) -> dict:
  """{split: {example_id: numpy example}}, after checking counts and labels against the manifest."""
  out = {}
  for split in prepared.SPLITS:
    listed = manifest['splits'][split]
    assert builder.info.splits[split].num_examples == listed['count']
    examples = {ex['example_id'].decode(): ex
                for ex in tfds.as_numpy(builder.as_dataset(split=split))}
    assert {i: int(ex['label']) for i, ex in examples.items()} == dict(
        zip(listed['example_ids'], listed['labels']))
    out[split] = examples
  return out


def _check_audio_visual(builder, prepared_dir: str, manifest: dict, audio_shape: tuple,
                        frame_shape: tuple) -> None:
  for split, examples in _read_splits(builder, manifest).items():
    for example_id, ex in examples.items():
      stored = _stored(prepared_dir, split, example_id)
      assert ex['audio'].shape == audio_shape and ex['audio'].dtype == np.float32
      np.testing.assert_array_equal(
          ex['audio'], tf.io.parse_tensor(stored['audio'].bytes_list.value[0], tf.float32))
      frames = ex['visual']
      assert frames.dtype == np.uint8
      assert frames.shape == (len(stored['visual'].bytes_list.value),) + frame_shape


# -- CREMA-D -------------------------------------------------------------------


@pytest.fixture(scope='module')
def crema(tmp_path_factory):
  base = tmp_path_factory.mktemp('tfds_crema')
  info = av_fixtures.make_crema_d(str(base / 'CREMA-D'))
  data_dir, download_dir = str(base / 'tfds'), str(base / 'downloads')
  builder = _build('fedcmi_crema_d', None, info['root'], data_dir, download_dir)
  return info, builder, data_dir, download_dir


def test_crema_d_default_config_matches_the_preparation(crema):
  info, builder, data_dir, download_dir = crema
  assert builder.builder_config.name == 'scipy_16k_3s'
  from fedcmi_tff.preparation import crema_d  # pylint: disable=g-import-not-at-top
  assert builder.info.features['label'].names == list(crema_d.DEFAULT_CLASSES)
  folder, manifest = _manifest(builder, info['root'], download_dir)
  assert manifest['splits']['train']['count'] == len(info['train'])
  assert builder.info.metadata['prepared_recipe'] == manifest['recipe']
  _check_audio_visual(builder, folder, manifest, (257, 299), (64, 64, 3))
  # tfds.load reads the same data back (names the builder, no download, no GCS).
  train, load_info = tfds.load('fedcmi_crema_d', data_dir=data_dir, split='train', try_gcs=False,
                               download=False, with_info=True)
  labels = {ex['example_id'].decode(): int(ex['label']) for ex in tfds.as_numpy(train)}
  assert labels == dict(zip(manifest['splits']['train']['example_ids'],
                            manifest['splits']['train']['labels']))
  assert load_info.features['audio'].shape == (257, 299)
  assert {e: crema_d.DEFAULT_CLASSES[l] for e, l in labels.items()} == {
      s: info['labels'][s] for s in info['train']}


def test_crema_d_rerun_does_no_work_and_preparation_is_reused(crema, tmp_path, monkeypatch):
  info, builder, data_dir, download_dir = crema
  files = sorted(p for p in builder.data_path.iterdir())
  mtimes = [p.stat().mtime for p in files]

  def fail(*args, **kwargs):
    raise AssertionError('worked again')

  # A second download_and_prepare into the same data_dir: nothing is generated.
  monkeypatch.setattr(tfds_builders.FedcmiCremaD, '_split_generators', fail)
  again = _build('fedcmi_crema_d', None, info['root'], data_dir, download_dir)
  assert sorted(p for p in again.data_path.iterdir()) == files
  assert [p.stat().mtime for p in files] == mtimes
  monkeypatch.undo()
  # Another data_dir with the same download_dir: the finished preparation is found.
  monkeypatch.setattr(writer_lib, 'PreparedDatasetWriter', fail)
  other = _build('fedcmi_crema_d', None, info['root'], str(tmp_path / 'tfds2'), download_dir)
  assert other.info.splits['train'].num_examples == len(info['train'])


def test_crema_d_stft_config(crema, tmp_path):
  info, _, _, _ = crema
  download_dir = str(tmp_path / 'downloads')
  builder = _build('fedcmi_crema_d', 'stft_22k_3s', info['root'], str(tmp_path / 'tfds'),
                   download_dir)
  folder, manifest = _manifest(builder, info['root'], download_dir)
  assert manifest['recipe']['spectrogram'] == 'stft_22k_3s'
  assert builder.info.features['audio'].shape == (257, 188)
  _check_audio_visual(builder, folder, manifest, (257, 188), (64, 64, 3))


def test_manual_dir_missing_or_incomplete_explains_the_layout(crema, tmp_path):
  info, _, _, _ = crema
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(AssertionError, match='Image-01-FPS'):  # TFDS prints our instructions
    _build('fedcmi_crema_d', None, str(empty), str(tmp_path / 'a'), str(tmp_path / 'd'))
  partial = tmp_path / 'partial'
  shutil.copytree(os.path.join(info['root'], 'AudioWAV'), partial / 'AudioWAV')
  shutil.copy(info['paths']['train_csv'], partial)
  with pytest.raises(prepared.DataFormatError,
                     match=r'lacks test\.csv, stat\.csv, Image-01-FPS or VideoFlash'):
    _build('fedcmi_crema_d', None, str(partial), str(tmp_path / 'b'), str(tmp_path / 'd'))
  assert not os.path.exists(tmp_path / 'd' / tfds_builders.PREPARED_FOLDER / 'fedcmi_crema_d'
                            / 'scipy_16k_3s')


# -- AVE -----------------------------------------------------------------------


def test_ave_fixture_config_and_the_28_class_default(tmp_path):
  info = av_fixtures.make_ave(str(tmp_path / 'AVE_Dataset'))
  download_dir = str(tmp_path / 'downloads')
  config = tfds_builders.AveConfig(name='fixture', class_names=av_fixtures.AVE_CLASSES)
  builder = _build('fedcmi_ave', config, info['root'], str(tmp_path / 'tfds'), download_dir)
  folder, manifest = _manifest(builder, info['root'], download_dir)
  assert manifest['class_names'] == list(av_fixtures.AVE_CLASSES)
  assert manifest['splits']['test']['count'] == len(info['test'])
  _check_audio_visual(builder, folder, manifest, (257, 1004), (48, 64, 3))  # 64 x 48 clips

  # The default config carries the 28 real classes; a prepared class list that
  # differs (here the fixture's 3) is refused after preparation, clearly.
  default = tfds_builders.FedcmiAve.BUILDER_CONFIGS[0]
  assert len(default.class_names) == 28 and default.class_names[:2] == (
      'Church bell', 'Male speech, man speaking')
  shutil.copytree(folder, tfds_builders.preparation_dir(
      'fedcmi_ave', default.name, download_dir, info['root']))  # reused: no second ffmpeg run
  with pytest.raises(prepared.DataFormatError, match='differ from the classes of config'):
    _build('fedcmi_ave', None, info['root'], str(tmp_path / 'tfds_default'), download_dir)


# -- CrisisMMD -----------------------------------------------------------------


@pytest.fixture(scope='module')
def crisis_raw(tmp_path_factory):
  return crisismmd_fixture.make_crisismmd(
      str(tmp_path_factory.mktemp('tfds_crisis') / 'CrisisMMD_v2.0'), agreed=True)


@pytest.mark.parametrize('config_name', ['informative', 'humanitarian_agreed'])
def test_crisismmd_configs(crisis_raw, tmp_path, config_name):
  root = crisis_raw['root']
  data_dir, download_dir = str(tmp_path / 'tfds'), str(tmp_path / 'downloads')
  builder = _build('fedcmi_crisismmd', config_name, root, data_dir, download_dir)
  task = builder.builder_config.task
  assert builder.info.features['label'].names == list(crisismmd.TASK_CLASSES[task])
  folder, manifest = _manifest(builder, root, download_dir)
  assert manifest['recipe']['agreed'] == config_name.endswith('_agreed')
  examples = _read_splits(builder, manifest)
  for split, by_id in examples.items():
    expected = dict(crisis_raw['labels'][(task, builder.builder_config.agreed)][split])
    assert {i: crisismmd.TASK_CLASSES[task][int(ex['label'])]
            for i, ex in by_id.items()} == expected
    for example_id, ex in by_id.items():
      assert ex['image'].shape == (228, 228, 3) and ex['image'].dtype == np.uint8
      assert ex['text'].shape == (40,) and ex['text'].dtype == np.int64
      np.testing.assert_array_equal(
          ex['text'], _stored(folder, split, example_id)['text'].int64_list.value)
  # The vocabulary is in the metadata, also when the builder is read back from disk.
  _, reloaded = tfds.load(f'fedcmi_crisismmd/{config_name}', data_dir=data_dir, split='test',
                          try_gcs=False, download=False, with_info=True)
  assert reloaded.metadata['vocabulary'] == manifest['vocabulary']
  assert reloaded.metadata['text']['max_length'] == 40


def test_a_damaged_preparation_folder_is_repaired_by_the_next_build(crisis_raw, tmp_path):
  root, download_dir = crisis_raw['root'], str(tmp_path / 'downloads')
  builder = _build('fedcmi_crisismmd', 'informative', root, str(tmp_path / 'a'), download_dir)
  folder, manifest = _manifest(builder, root, download_dir)
  damaged = prepared.example_path(folder, 'train', manifest['splits']['train']['example_ids'][1])
  with open(damaged, 'wb'):
    pass  # zero bytes: TFRecordDataset would read no record from it
  again = _build('fedcmi_crisismmd', 'informative', root, str(tmp_path / 'b'), download_dir)
  _, repaired = _manifest(again, root, download_dir)
  assert repaired['splits'] == manifest['splits']
  assert any(n.startswith('made again: 1 example files') for n in repaired['report']['notes'])
  _read_splits(again, repaired)


# -- the module ------------------------------------------------------------------


def test_import_is_light_and_safe_twice():
  code = '\n'.join([
      'import importlib, importlib.util, sys',
      'from fedcmi_tff.preparation import tfds_builders as m',
      "heavy = sorted(k for k in ('tensorflow_io', 'fedcmi_tff.preparation.audio',",
      "                           'fedcmi_tff.preparation.video') if k in sys.modules)",
      "assert not heavy, heavy",
      'importlib.reload(m)',
      "spec = importlib.util.spec_from_file_location('other_copy.tfds_builders', m.__file__)",
      'sys.modules[spec.name] = importlib.util.module_from_spec(spec)',
      'spec.loader.exec_module(sys.modules[spec.name])',
      'import tensorflow_datasets as tfds',
      "print(sorted(n for n in tfds.list_builders(with_community_datasets=False)"
      " if n.startswith('fedcmi_')))",
  ])
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == str(
      ['fedcmi_ave', 'fedcmi_crema_d', 'fedcmi_crisismmd'])
