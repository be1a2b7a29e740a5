"""TensorFlow Datasets builders for CREMA-D, AVE and CrisisMMD (manual download).

Three `tfds.core.GeneratorBasedBuilder`s, registered as `fedcmi_crema_d`,
`fedcmi_ave` and `fedcmi_crisismmd`, expose the datasets through the usual TFDS
calls once the raw download sits in a `manual_dir`:

    import tensorflow_datasets as tfds
    from fedcmi_tff.preparation import tfds_builders  # registers the builders

    config = tfds.download.DownloadConfig(manual_dir='/data/CREMA-D',
                                          try_download_gcs=False)
    train = tfds.load('fedcmi_crema_d', split='train', data_dir='/data/tfds',
                      try_gcs=False,
                      download_and_prepare_kwargs={'download_config': config})

There is one preparation code path: `_split_generators` runs the project's own
preparation (`crema_d.prepare_crema_d`, `ave.prepare_ave`,
`crisismmd.prepare_crisismmd`) on `dl_manager.manual_dir` into a working folder,
`preparation_dir(...)` =
`<download_dir>/fedcmi_prepared/<builder>/<config>-<hash of manual_dir>`, and
`_generate_examples` re-reads the prepared TFRecords (`prepared.py`).  The
folder is deterministic, so a rerun (e.g. into another data_dir with the same
download_dir) finds the finished preparation and reuses it, and an interrupted
one resumes; delete the folder to prepare again.

Class names.  `_info` runs before any data is read, so ClassLabel names come
from the config: CREMA-D `crema_d.DEFAULT_CLASSES` (stat.csv order), CrisisMMD
`crisismmd.TASK_CLASSES[task]`, AVE the 28 names in the PMR / FedCMI order
(first appearance in testSet.txt, docs/datasets.md 'AVE'), `AVE_CLASSES`.
AVE's preparation derives the order from testSet.txt; rather than mutate the
ClassLabel after `_info` (TFDS lets a label without names get them later, but
then `builder.info` means different things before and after preparation) the
builder checks, after preparation, that the manifest's class list equals the
config's and raises `prepared.DataFormatError` otherwise.  A different class
list (a subset, a fixture) goes through a custom config, e.g.
`AveConfig(name='mine', class_names=(...))` passed as `config=`.

Network.  These datasets are never on the public TFDS bucket, yet
`DatasetBuilder.__init__` asks it for precomputed info of every builder that is
not prepared yet, and `download_and_prepare` asks whether a prepared copy can
be downloaded unless `try_download_gcs=False` (each probe is a network call,
minutes long behind an unreachable proxy).  The builders skip the first probe
(`_LocalDatasetInfo`) and always set `try_download_gcs=False`; pass
`try_gcs=False` to `tfds.load` as well.

Importing this module imports TF, TFDS and the light `prepared` / `crisismmd`
modules only; the audio/video stack (scipy, tensorflow-io, ffmpeg) is imported
when a CREMA-D or AVE builder is constructed.  Importing it twice (e.g.
`importlib.reload`) keeps the first registration instead of failing.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import crisismmd

VERSION = tfds.core.Version('1.0.0')
RELEASE_NOTES = {'1.0.0': 'Initial release: the fedcmi_tff preparation recipes.'}
PREPARED_FOLDER = 'fedcmi_prepared'  # under the download dir

# The 28 AVE classes in the PMR / FedCMI index order (first appearance in testSet.txt).
AVE_CLASSES = (
    'Church bell', 'Male speech, man speaking', 'Bark', 'Fixed-wing aircraft, airplane',
    'Race car, auto racing', 'Female speech, woman speaking', 'Helicopter', 'Violin, fiddle',
    'Flute', 'Ukulele', 'Frying (food)', 'Truck', 'Shofar', 'Motorcycle', 'Acoustic guitar',
    'Train horn', 'Clock', 'Banjo', 'Goat', 'Baby cry, infant cry', 'Bus', 'Chainsaw', 'Cat',
    'Horse', 'Toilet flush', 'Rodents, rats, mice', 'Accordion', 'Mandolin',
)

CREMA_D_INSTRUCTIONS = """\
Get CREMA-D from https://github.com/CheyneyComputerScience/CREMA-D (clone with
git-lfs; a zip without LFS holds only pointers) and the split files
data/CREMAD/train.csv, test.csv and stat.csv of the OGM-GE / PMR / FedCMI
repositories.  `manual_dir` must contain, side by side:

  AudioWAV/<clip>.wav             the 16 kHz WAVs, e.g. AudioWAV/1001_DFA_ANG_XX.wav
  train.csv, test.csv, stat.csv   the split files, as published (no header, CRLF;
                                  stat.csv lists the classes, with a UTF-8 BOM)

and the video frames, either

  Image-01-FPS/<clip>/00000.jpg, 00030.jpg, ...   1-fps frame folders (used when present)
or
  VideoFlash/<clip>.flv           the videos (frames extracted with ffmpeg, which
                                  must then be on PATH)

Clips named by a split file but missing on disk are skipped and reported in
`info.metadata['preparation_report']`.
"""

AVE_INSTRUCTIONS = """\
Download AVE_Dataset.zip (Tian et al., ECCV 2018; https://github.com/YapengTian/AVE-ECCV18)
and extract it.  `manual_dir` must be the AVE_Dataset folder, containing:

  AVE/<VideoID>.mp4                        the 10-s clips
  Annotations.txt                          with its header line
  trainSet.txt, valSet.txt, testSet.txt    the '&'-separated split files
  Audios/<VideoID>.wav                     optional: audio already extracted

ffmpeg must be on PATH (frames, and audio when Audios/ is absent).  The class
order is the order of first appearance in testSet.txt (28 classes).
"""

CRISISMMD_INSTRUCTIONS = """\
Download CrisisMMD_v2.0.tar.gz from https://crisisnlp.qcri.org/crisismmd and
extract it; inside the CrisisMMD_v2.0 folder unzip crisismmd_datasplit_all.zip
(and crisismmd_datasplit_agreed_label.zip for the *_agreed configs).
`manual_dir` must be the CrisisMMD_v2.0 folder, containing:

  data_image/<event>/<d_m_yyyy>/<tweet_id>_<n>.jpg
  crisismmd_datasplit_all/task_{informative,humanitarian}_text_img_{train,dev,test}.tsv
      (a doubly nested crisismmd_datasplit_all/crisismmd_datasplit_all/ is accepted)
  crisismmd_datasplit_agreed_label/
      task_{informative,humanitarian}_text_img_agreed_lab_{train,dev,test}.tsv
      (the *_agreed configs only)
"""


def preparation_dir(builder_name: str, config_name: str, download_dir: os.PathLike | str,
                    manual_dir: os.PathLike | str) -> str:
  """The working folder a builder prepares `manual_dir` into.

  Args:
    builder_name: e.g. 'fedcmi_crema_d'.
    config_name: the builder config's name.
    download_dir: the TFDS download dir (default `<data_dir>/downloads`).
    manual_dir: the raw download; its absolute path is hashed into the name, so
      two raw copies never share a preparation.

  Returns:
    `<download_dir>/fedcmi_prepared/<builder_name>/<config_name>-<12 hex digits>`.
  """
  digest = hashlib.sha256(os.path.abspath(os.fspath(manual_dir)).encode()).hexdigest()[:12]
  return os.path.join(os.fspath(download_dir), PREPARED_FOLDER, builder_name,
                      f'{config_name}-{digest}')


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """DatasetInfo of a dataset that exists only where the user prepared it.

  `DatasetBuilder.__init__` calls `initialize_from_bucket` for a builder not yet
  prepared, which probes gs://tfds-data over the network; these datasets are
  never there, so the probe is skipped.
  """

  def initialize_from_bucket(self) -> None:
    return None


def _skip_if_registered(name: str) -> bool:
  """Whether `name` is registered by an earlier import of this very module.

  Lets the module be imported twice (a reload, or under a second module path)
  without TFDS's "already registered" error; a builder of another module with
  the same name still collides.
  """
  try:
    existing = tfds.core.registered.imported_builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    return False
  return existing.__module__.rsplit('.', 1)[-1] == __name__.rsplit('.', 1)[-1]


def _progress(builder_name: str):
  def progress(items, total, desc):
    return tfds.core.utils.tqdm(items, total=total, desc=f'Preparing {builder_name} ({desc})',
                                unit=' examples', leave=False)
  return progress


def _example_features(example: tf.train.Example, specs: tuple) -> dict:
  """The stored modalities of one prepared example as TFDS feature values."""
  feature = example.features.feature
  out = {}
  for spec in specs:
    value = feature[spec.name]
    if spec.encoding == 'float_tensor':
      (data,) = value.bytes_list.value
      out[spec.name] = tf.io.parse_tensor(data, tf.float32).numpy()
    elif spec.encoding == 'jpeg_frames':
      out[spec.name] = list(value.bytes_list.value)
    elif spec.encoding == 'jpeg_image':
      (out[spec.name],) = value.bytes_list.value
    else:
      out[spec.name] = np.asarray(value.int64_list.value, np.int64)
  return out


@dataclasses.dataclass(eq=False)
class CremaDConfig(tfds.core.BuilderConfig):
  """A CREMA-D recipe.

  Attributes:
    spectrogram: the `audio.RECIPES` key passed to `prepare_crema_d`.
    audio_shape: the spectrogram's (bins, steps).
    class_names: the ClassLabel names; empty means `crema_d.DEFAULT_CLASSES`.
  """

  spectrogram: str = 'scipy_16k_3s'
  audio_shape: tuple = (257, 299)
  class_names: tuple = ()


@dataclasses.dataclass(eq=False)
class AveConfig(tfds.core.BuilderConfig):
  """The AVE recipe.

  Attributes:
    class_names: the ClassLabel names, which must equal the order of first
      appearance in testSet.txt.
  """

  class_names: tuple = AVE_CLASSES


@dataclasses.dataclass(eq=False)
class CrisisMMDConfig(tfds.core.BuilderConfig):
  """A CrisisMMD task.

  Attributes:
    task: 'informative' or 'humanitarian'.
    agreed: read the agreed-label split files.
  """

  task: str = 'informative'
  agreed: bool = False


class _PreparedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose examples come from a fedcmi_tff preparation of manual_dir.

  Subclasses set `_DATASET` (the manifest's dataset name), `_REQUIRED` (entries
  manual_dir must hold: a name, or a tuple of alternatives) and implement
  `_prepare`, `_class_names` and `_modality_features`.
  """

  VERSION = VERSION
  RELEASE_NOTES = RELEASE_NOTES
  _DATASET = ''
  _REQUIRED = ()
  _DESCRIPTION = ''
  _HOMEPAGE = ''
  _CITATION = ''

  def __init__(self, *, workers: int = 1, **kwargs):
    """Creates the builder.

    Args:
      workers: raw items the preparation decodes at once (threads).
      **kwargs: as `tfds.core.GeneratorBasedBuilder` (data_dir, config, version, ...).
    """
    self._workers = max(1, int(workers))
    super().__init__(**kwargs)

  def download_and_prepare(self, *, download_config: tfds.download.DownloadConfig | None = None,
                           **kwargs) -> None:
    """As TFDS's, but never looks for a prepared copy on gs://tfds-data (there is none)."""
    download_config = download_config or tfds.download.DownloadConfig()
    if download_config.try_download_gcs:
      download_config = dataclasses.replace(download_config, try_download_gcs=False)
    super().download_and_prepare(download_config=download_config, **kwargs)

  # -- to implement

  @abc.abstractmethod
  def _prepare(self, raw_dir: str, output_dir: str, progress) -> dict:
    """Runs the project's preparation of raw_dir into output_dir; returns the manifest."""

  @abc.abstractmethod
  def _class_names(self) -> tuple:
    """The ClassLabel names of the builder config."""

  @abc.abstractmethod
  def _modality_features(self) -> dict:
    """{modality name: (stored encoding, stored shape, TFDS feature)}."""

  # -- shared

  def _info(self) -> tfds.core.DatasetInfo:
    features = {name: feature for name, (_, _, feature) in self._modality_features().items()}
    features['label'] = tfds.features.ClassLabel(names=list(self._class_names()))
    features['example_id'] = tfds.features.Text()
    return _LocalDatasetInfo(
        builder=self,
        description=self._DESCRIPTION,
        features=tfds.features.FeaturesDict(features),
        homepage=self._HOMEPAGE,
        citation=self._CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  def _check_manual_dir(self, raw_dir: str) -> None:
    missing = []
    for entry in self._REQUIRED:
      alternatives = entry if isinstance(entry, tuple) else (entry,)
      if not any(os.path.exists(os.path.join(raw_dir, a)) for a in alternatives):
        missing.append(' or '.join(alternatives))
    if missing:
      raise prepared.DataFormatError(
          f'manual_dir {raw_dir} lacks {", ".join(missing)}.\n'
          f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')

  def _check_manifest(self, manifest: dict, output_dir: str) -> tuple:
    """The manifest's modality specs, after checking it matches this builder's features."""
    where = os.path.join(output_dir, prepared.MANIFEST_NAME)
    if manifest.get('dataset') != self._DATASET:
      raise prepared.DataFormatError(
          f'{where}: holds dataset {manifest.get("dataset")!r}, expected {self._DATASET!r}')
    names = tuple(manifest['class_names'])
    expected = tuple(self._class_names())
    if names != expected:
      hint = ''
      if hasattr(self.builder_config, 'class_names'):
        hint = (f'; build with a config whose class_names equal the prepared ones, e.g. '
                f'{type(self.builder_config).__name__}(name=..., class_names=...)')
      raise prepared.DataFormatError(
          f'{where}: the prepared classes {list(names)} differ from the classes of config '
          f'{self.builder_config.name!r} {list(expected)}{hint}')
    specs = tuple(prepared.ModalitySpec.from_dict(d) for d in manifest['modalities'])
    stored = {s.name: (s.encoding, tuple(s.shape)) for s in specs}
    wanted = {name: (encoding, tuple(shape))
              for name, (encoding, shape, _) in self._modality_features().items()}
    if stored != wanted:
      raise prepared.DataFormatError(
          f'{where}: stored modalities {stored} differ from the builder\'s {wanted}')
    return specs

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    raw_dir = os.fspath(dl_manager.manual_dir)  # TFDS explains a missing or empty manual_dir
    self._check_manual_dir(raw_dir)
    output_dir = preparation_dir(self.name, self.builder_config.name, dl_manager.download_dir,
                                 raw_dir)
    os.makedirs(os.path.dirname(output_dir), exist_ok=True)
    manifest = self._prepare(raw_dir, output_dir, _progress(self.name))
    specs = self._check_manifest(manifest, output_dir)
    self.info.metadata['prepared_recipe'] = manifest['recipe']
    self.info.metadata['preparation_report'] = manifest['report']
    self._add_metadata(manifest)
    return {split: self._generate_examples(output_dir, manifest, specs, split)
            for split in prepared.SPLITS}

  def _add_metadata(self, manifest: dict) -> None:
    del manifest

  def _generate_examples(self, prepared_dir: str, manifest: dict, specs: tuple, split: str):
    """Yields (example_id, features) for every example of one prepared split, in order."""
    ids = manifest['splits'][split]['example_ids']
    labels = manifest['splits'][split]['labels']
    paths = [prepared.example_path(prepared_dir, split, i) for i in ids]
    records = tf.data.TFRecordDataset(paths).as_numpy_iterator()
    count = 0
    for example_id, label, record in zip(ids, labels, records):
      example = tf.train.Example.FromString(record)
      feature = example.features.feature
      stored_id = feature['example_id'].bytes_list.value[0].decode()
      stored_label = int(feature['label'].int64_list.value[0])
      if (stored_id, stored_label) != (example_id, int(label)):
        raise prepared.DataFormatError(
            f'{prepared.example_path(prepared_dir, split, example_id)}: holds example '
            f'{stored_id!r} with label {stored_label}, but dataset.json lists {example_id!r} '
            f'with label {label}; prepare again')
      features = _example_features(example, specs)
      features['label'] = stored_label
      features['example_id'] = example_id
      count += 1
      yield example_id, features
    if count != len(ids):
      raise prepared.DataFormatError(
          f'{prepared_dir}/{split}: {count} records read for {len(ids)} listed examples')


def _audio_visual_features(audio_shape: tuple) -> dict:
  return {
      'audio': ('float_tensor', tuple(audio_shape),
                tfds.features.Tensor(shape=tuple(audio_shape), dtype=np.float32)),
      'visual': ('jpeg_frames', (),
                 tfds.features.Sequence(
                     tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'))),
  }


class FedcmiCremaD(_PreparedBuilder, skip_registration=_skip_if_registered('fedcmi_crema_d')):
  """CREMA-D audio-visual emotion recognition, OGM-GE / PMR / FedCMI split and recipe."""

  name = 'fedcmi_crema_d'
  MANUAL_DOWNLOAD_INSTRUCTIONS = CREMA_D_INSTRUCTIONS
  BUILDER_CONFIGS = [
      CremaDConfig(name='scipy_16k_3s', spectrogram='scipy_16k_3s', audio_shape=(257, 299),
                   description='PMR / FedCMI audio: 16 kHz, 3 s, scipy log-spectrogram, '
                   'z-normalised per clip (257 x 299).'),
      CremaDConfig(name='stft_22k_3s', spectrogram='stft_22k_3s', audio_shape=(257, 188),
                   description='OGM-GE audio: 22.05 kHz, 3 s, STFT log-magnitude (257 x 188).'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'scipy_16k_3s'
  _DATASET = 'crema_d'
  _REQUIRED = ('AudioWAV', 'train.csv', 'test.csv', 'stat.csv', ('Image-01-FPS', 'VideoFlash'))
  _DESCRIPTION = ('CREMA-D (7,442 clips of 91 actors, 6 emotions) as prepared by fedcmi_tff: '
                  'a log-spectrogram and the 1-fps video frames (JPEG, temporal order, at '
                  'least 3) per clip; the train.csv / test.csv split of the OGM-GE, PMR and '
                  'FedCMI repositories, classes in stat.csv order.')
  _HOMEPAGE = 'https://github.com/CheyneyComputerScience/CREMA-D'
  _CITATION = """\
@article{cao2014crema,
  title={{CREMA-D}: Crowd-sourced emotional multimodal actors dataset},
  author={Cao, Houwei and Cooper, David G and Keutmann, Michael K and Gur, Ruben C and
          Nenkova, Ani and Verma, Ragini},
  journal={IEEE Transactions on Affective Computing},
  volume={5}, number={4}, pages={377--390}, year={2014}
}"""

  def _class_names(self) -> tuple:
    if self.builder_config.class_names:
      return tuple(self.builder_config.class_names)
    from fedcmi_tff.preparation import crema_d  # pylint: disable=g-import-not-at-top
    return tuple(crema_d.DEFAULT_CLASSES)

  def _modality_features(self) -> dict:
    return _audio_visual_features(self.builder_config.audio_shape)

  def _prepare(self, raw_dir, output_dir, progress):
    from fedcmi_tff.preparation import crema_d  # pylint: disable=g-import-not-at-top
    return crema_d.prepare_crema_d(raw_dir, output_dir,
                                   spectrogram=self.builder_config.spectrogram,
                                   workers=self._workers, progress=progress)


class FedcmiAve(_PreparedBuilder, skip_registration=_skip_if_registered('fedcmi_ave')):
  """AVE audio-visual event classification, PMR / FedCMI recipe (annotated segments)."""

  name = 'fedcmi_ave'
  MANUAL_DOWNLOAD_INSTRUCTIONS = AVE_INSTRUCTIONS
  BUILDER_CONFIGS = [
      AveConfig(name='scipy_16k_10s',
                description='PMR / FedCMI "SE" recipe: the annotated segment, audio tiled to '
                '10 s at 16 kHz (257 x 1004), frames at 1 fps (at least 10).'),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'scipy_16k_10s'
  _DATASET = 'ave'
  _REQUIRED = ('AVE', 'Annotations.txt', 'trainSet.txt', 'valSet.txt', 'testSet.txt')
  _DESCRIPTION = ('AVE (4,143 annotated 10-s YouTube segments, 28 event classes) as prepared '
                  'by fedcmi_tff: a log-spectrogram and the 1-fps frames of each annotated '
                  'segment; trainSet.txt -> train, testSet.txt -> test, classes in order of '
                  'first appearance in testSet.txt.')
  _HOMEPAGE = 'https://sites.google.com/view/audiovisualresearch'
  _CITATION = """\
@inproceedings{tian2018ave,
  title={Audio-Visual Event Localization in Unconstrained Videos},
  author={Tian, Yapeng and Shi, Jing and Li, Bochen and Duan, Zhiyao and Xu, Chenliang},
  booktitle={ECCV}, year={2018}
}"""

  def _class_names(self) -> tuple:
    return tuple(self.builder_config.class_names)

  def _modality_features(self) -> dict:
    return _audio_visual_features((257, 1004))

  def _prepare(self, raw_dir, output_dir, progress):
    from fedcmi_tff.preparation import ave  # pylint: disable=g-import-not-at-top
    return ave.prepare_ave(raw_dir, output_dir, workers=self._workers, progress=progress)


class FedcmiCrisismmd(_PreparedBuilder,
                      skip_registration=_skip_if_registered('fedcmi_crisismmd')):
  """CrisisMMD v2.0 tweets (image + text), the FedCMI recipe."""

  name = 'fedcmi_crisismmd'
  MANUAL_DOWNLOAD_INSTRUCTIONS = CRISISMMD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      CrisisMMDConfig(name=f'{task}{"_agreed" if agreed else ""}', task=task, agreed=agreed,
                      description=(f'{task} task ({len(crisismmd.TASK_CLASSES[task])} classes), '
                                   f'{"agreed-label" if agreed else "all"} split files, '
                                   '"label" column.'))
      for agreed in (False, True) for task in crisismmd.TASK_CLASSES
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'informative'
  _DATASET = crisismmd.DATASET_NAME
  _REQUIRED = ('data_image',)
  _DESCRIPTION = ('CrisisMMD v2.0 as prepared by fedcmi_tff: per image, the image padded to a '
                  'centred square and resized to 228 x 228 (JPEG), and the cleaned tweet as '
                  '40 token ids (0 = padding, 1 = out of vocabulary) of a vocabulary adapted '
                  'on the train tweets, stored in info.metadata["vocabulary"]; the train and '
                  'test split files (dev is validated only).')
  _HOMEPAGE = 'https://crisisnlp.qcri.org/crisismmd'
  _CITATION = """\
@inproceedings{alam2018crisismmd,
  title={{CrisisMMD}: Multimodal Twitter Datasets from Natural Disasters},
  author={Alam, Firoj and Ofli, Ferda and Imran, Muhammad},
  booktitle={ICWSM}, year={2018}
}"""

  def _class_names(self) -> tuple:
    return tuple(crisismmd.TASK_CLASSES[self.builder_config.task])

  def _modality_features(self) -> dict:
    size, length = crisismmd.STORED_IMAGE_SIZE, crisismmd.DEFAULT_MAX_LENGTH
    return {
        'image': ('jpeg_image', (size, size),
                  tfds.features.Image(shape=(size, size, 3), encoding_format='jpeg')),
        'text': ('token_ids', (length,), tfds.features.Tensor(shape=(length,), dtype=np.int64)),
    }

  def _prepare(self, raw_dir, output_dir, progress):
    return crisismmd.prepare_crisismmd(raw_dir, output_dir, task=self.builder_config.task,
                                       agreed=self.builder_config.agreed,
                                       workers=self._workers, progress=progress)

  def _add_metadata(self, manifest: dict) -> None:
    self.info.metadata['vocabulary'] = list(manifest['vocabulary'])
    self.info.metadata['text'] = dict(manifest['text'])
