"""CrisisMMD v2.0: from the raw download to the prepared-dataset format.

Reads the split TSVs of `crisismmd_datasplit_all` (or the agreed-label
variant) and the tweet images under `data_image/`, and writes a prepared
dataset (`prepared.py`) with two modalities (docs/datasets.md, 'CrisisMMD v2.0'):

  image  one JPEG per example: padded to a centred black square, resized to
         228 x 228, re-encoded at quality 95; centre-cropped to 224/228 and
         normalised with mean = std = 0.5 when loaded.
  text   the cleaned tweet (leading 'RT', URLs and '#' removed) as max_length
         token ids of a `tf.keras.layers.TextVectorization` vocabulary, either
         adapted on the cleaned train tweets or read from a user's vocabulary
         file; id 0 is padding and id 1 is out-of-vocabulary.

The train split becomes 'train' and the test split 'test' (the FedCMI code
evaluates on the test split); the dev split is read and validated only.
Example ids are the `image_id` column (`<tweet_id>_<n>`), so a tweet with
several images gives several examples.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import raw_files
from fedcmi_tff.preparation import writer as writer_lib

DATASET_NAME = 'crisismmd'
MODALITY_NAMES = ('image', 'text')
# Class index order.  informative = 1 as in the authors' code (the HF copy uses
# alphabetical order, i.e. informative = 0).
TASK_CLASSES = {
    'informative': ('not_informative', 'informative'),
    'humanitarian': (
        'affected_individuals',
        'infrastructure_and_utility_damage',
        'injured_or_dead_people',
        'missing_or_found_people',
        'not_humanitarian',
        'other_relevant_information',
        'rescue_volunteering_or_donation_effort',
        'vehicle_damage',
    ),
}
COLUMNS = ('event_name', 'tweet_id', 'image_id', 'tweet_text', 'image', 'label', 'label_text',
           'label_image', 'label_text_image')
LABEL_COLUMNS = ('label', 'label_text', 'label_image')
SOURCE_SPLITS = ('train', 'dev', 'test')
# Source split -> prepared split; the dev split is validated but not written.
WRITTEN_SPLITS = {'train': 'train', 'test': 'test'}

STORED_IMAGE_SIZE = 228
CROP_SIZE = 224
JPEG_QUALITY = 95
DEFAULT_MAX_LENGTH = 40
DEFAULT_MAX_TOKENS = 20000
PADDING_TOKEN = ''
OOV_TOKEN = '[UNK]'
STANDARDIZE = 'lower_and_strip_punctuation'
# Recorded in the recipe; change it whenever clean_tweet changes.
TEXT_CLEANING = ('v1: strip a leading RT, remove http(s):// and www. URLs, remove #, '
                 'collapse whitespace')

# Folders (relative to the raw directory) that hold the split TSVs in known unzips.
_ALL_FOLDERS = ('crisismmd_datasplit_all',
                os.path.join('crisismmd_datasplit_all', 'crisismmd_datasplit_all'))
_AGREED_FOLDERS = ('crisismmd_datasplit_agreed_label',
                   os.path.join('crisismmd_datasplit_agreed_label',
                                'crisismmd_datasplit_agreed_label'))

_LEADING_RT = re.compile(r'^\s*RT\b')
_URL = re.compile(r'(?:https?://|www\.)\S*', re.IGNORECASE)
_SAFE_ID = re.compile(r'^[A-Za-z0-9_-][A-Za-z0-9_.-]*$')


class Row(NamedTuple):
  """One row of a split TSV.

  Attributes:
    line: 1-based line number in the file (the header is line 1).
    event_name: e.g. 'california_wildfires'.
    tweet_id: the tweet's id (shared by the images of one tweet).
    image_id: '<tweet_id>_<n>', the example id.
    tweet_text: the raw tweet text.
    image: image path relative to the dataset root ('data_image/...jpg').
    label_name: the class name in the chosen label column.
    label_index: index of `label_name` in the task's classes.
  """

  line: int
  event_name: str
  tweet_id: str
  image_id: str
  tweet_text: str
  image: str
  label_name: str
  label_index: int


def _check_task(task: str) -> tuple:
  if task not in TASK_CLASSES:
    raise ValueError(f'task must be one of {tuple(TASK_CLASSES)}, got {task!r}')
  return TASK_CLASSES[task]


def split_file_name(task: str, split: str, agreed: bool) -> str:
  """The TSV name of one split, e.g. 'task_informative_text_img_agreed_lab_dev.tsv'."""
  _check_task(task)
  if split not in SOURCE_SPLITS:
    raise ValueError(f'split must be one of {SOURCE_SPLITS}, got {split!r}')
  return f'task_{task}_text_img_{"agreed_lab_" if agreed else ""}{split}.tsv'


def find_split_file(raw_dir: str, task: str, split: str, agreed: bool) -> str:
  """Locates the TSV of one split under a raw CrisisMMD folder.

  Looks in raw_dir itself, in `crisismmd_datasplit_all/` (also doubly nested, as
  some unzips leave it), in the agreed-label folder
  `crisismmd_datasplit_agreed_label/` (also doubly nested) and in any other
  `crisismmd_datasplit*` folder of raw_dir and its same-named subfolder.

  Args:
    raw_dir: the dataset root (holding `data_image/`).
    task: a key of TASK_CLASSES.
    split: 'train', 'dev' or 'test'.
    agreed: the agreed-label split files (`..._agreed_lab_<split>.tsv`).

  Returns:
    The path of the TSV.

  Raises:
    DataFormatError: not found; the message lists every folder searched.
  """
  name = split_file_name(task, split, agreed)
  if not os.path.isdir(raw_dir):
    raise prepared.DataFormatError(f'CrisisMMD folder {raw_dir} does not exist')
  known = _AGREED_FOLDERS + _ALL_FOLDERS if agreed else _ALL_FOLDERS + _AGREED_FOLDERS
  folders = [raw_dir] + [os.path.join(raw_dir, f) for f in known]
  for entry in sorted(os.listdir(raw_dir)):
    if entry.startswith('crisismmd_datasplit') and os.path.isdir(os.path.join(raw_dir, entry)):
      for folder in (os.path.join(raw_dir, entry), os.path.join(raw_dir, entry, entry)):
        if folder not in folders:
          folders.append(folder)
  for folder in folders:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  searched = '\n  '.join(folders)
  raise prepared.DataFormatError(
      f'{name} not found under {raw_dir}; searched:\n  {searched}\n'
      'Unzip crisismmd_datasplit_all.zip (or the agreed-label zip) inside the CrisisMMD_v2.0 '
      'folder.')


def read_split(path: str, classes: tuple, label_column: str = 'label') -> list:
  """Reads and validates one split TSV.

  Tab-separated with exactly one header row naming (at least) the nine
  CrisisMMD columns in COLUMNS; quotes in tweet texts are kept literally.
  Blank lines are ignored.

  Args:
    path: the TSV.
    classes: the task's class names; labels are indices into it.
    label_column: one of LABEL_COLUMNS.

  Returns:
    A list of `Row`, in file order.

  Raises:
    DataFormatError: empty file, no data rows, header without a required
      column, a row with the wrong number of fields, an unusable image_id or a
      label not in `classes`; the message names the file and line.
  """
  if label_column not in LABEL_COLUMNS:
    raise ValueError(f'label_column must be one of {LABEL_COLUMNS}, got {label_column!r}')
  classes = tuple(classes)
  rows = []
  text = raw_files.read_text(path, 'utf-8-sig')  # names the line of a non-UTF-8 byte
  try:
    with io.StringIO(text, newline='') as f:
      reader = csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
      header = next(reader, None)
      if header is None:
        raise prepared.DataFormatError(f'{path}: empty file; expected a header row with the '
                                       f'columns {" ".join(COLUMNS)}')
      header = [name.strip() for name in header]
      missing = [c for c in COLUMNS if c not in header]
      if missing:
        raise prepared.DataFormatError(
            f'{path}: line 1: the header lacks the column(s) {", ".join(missing)}; expected '
            f'the tab-separated columns {" ".join(COLUMNS)}')
      position = {name: header.index(name) for name in COLUMNS}
      for fields in reader:
        line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
          continue
        if len(fields) != len(header):
          raise prepared.DataFormatError(
              f'{path}: line {line}: {len(fields)} tab-separated fields, expected '
              f'{len(header)} (one per header column)')
        value = {name: fields[i] for name, i in position.items()}
        label_name = value[label_column].strip()
        if label_name not in classes:
          raise prepared.DataFormatError(
              f'{path}: line {line}: unknown label {raw_files.quote(label_name)} in column '
              f'{label_column}; expected one of {", ".join(classes)}')
        image_id = value['image_id'].strip()
        if not _SAFE_ID.match(image_id):
          raise prepared.DataFormatError(
              f'{path}: line {line}: image_id {raw_files.quote(image_id)} is not a '
              '<tweet_id>_<n> id')
        writer_lib.check_example_id(image_id, f'{path}: line {line}')
        rows.append(Row(line=line, event_name=value['event_name'].strip(),
                        tweet_id=value['tweet_id'].strip(), image_id=image_id,
                        tweet_text=value['tweet_text'], image=value['image'].strip(),
                        label_name=label_name, label_index=classes.index(label_name)))
  except csv.Error as e:
    raise prepared.DataFormatError(f'{path}: line {reader.line_num}: {e}') from None
  if not rows:
    raise prepared.DataFormatError(f'{path}: a header but no data rows')
  return rows


def clean_tweet(text: str) -> str:
  """The tweet text as the model sees it before tokenisation.

  Strips a leading 'RT' (as a word), removes URLs (http://, https:// and
  www.), removes '#' characters and collapses runs of whitespace.
  """
  text = _LEADING_RT.sub(' ', text, count=1)
  text = _URL.sub(' ', text)
  text = text.replace('#', '')
  return ' '.join(text.split())


def _new_text_vectorizer(max_length: int, max_tokens: int | None, vocabulary=None):
  return tf.keras.layers.TextVectorization(
      max_tokens=max_tokens, standardize=STANDARDIZE, split='whitespace',
      output_mode='int', output_sequence_length=max_length, vocabulary=vocabulary)


def build_vocabulary(cleaned_texts: list, max_tokens: int = DEFAULT_MAX_TOKENS) -> list:
  """The vocabulary `TextVectorization.adapt` learns from `cleaned_texts`.

  Deterministic: tokens by descending count, ties broken by the tokens
  (Keras sorts them in descending order).

  Returns:
    ['', '[UNK]', token, ...] with at most max_tokens entries; a token's id is
    its position.
  """
  if max_tokens < 3:
    raise ValueError(f'max_tokens must be >= 3 (padding, OOV and one token), got {max_tokens}')
  if not cleaned_texts:
    raise ValueError('no texts to build a vocabulary from')
  vectorizer = _new_text_vectorizer(1, max_tokens)
  vectorizer.adapt(tf.constant(list(cleaned_texts), tf.string), batch_size=1024)
  return [t.decode() if isinstance(t, bytes) else t for t in vectorizer.get_vocabulary()]


def read_vocabulary_file(path: str) -> list:
  """A vocabulary from a file of one token per line, as build_vocabulary returns it.

  The file's tokens get ids 2, 3, ... in file order (0 is padding, 1 OOV); a
  file that starts with an empty line and '[UNK]' (what `get_vocabulary()`
  writes) already holds those two entries.  Texts are lower-cased and stripped
  of ASCII punctuation before lookup, so only such tokens can ever match.

  Raises:
    DataFormatError: missing file, an empty or repeated token (file and line).
  """
  if not os.path.exists(path):
    raise prepared.DataFormatError(f'vocabulary file {path} does not exist')
  with io.StringIO(raw_files.read_text(path), newline='') as f:
    lines = [line.rstrip('\r\n') for line in f]
  start = 2 if lines[:2] == [PADDING_TOKEN, OOV_TOKEN] else 0
  tokens, seen = [], set()
  for number, token in enumerate(lines[start:], start=start + 1):
    token = token.strip()
    if not token:
      if number == len(lines) and tokens:
        continue  # a trailing empty line
      raise prepared.DataFormatError(f'{path}: line {number}: empty token')
    if token in seen or token == OOV_TOKEN:
      raise prepared.DataFormatError(f'{path}: line {number}: token {raw_files.quote(token)} '
                                     'repeated or reserved')
    seen.add(token)
    tokens.append(token)
  if not tokens:
    raise prepared.DataFormatError(f'{path}: no tokens')
  return [PADDING_TOKEN, OOV_TOKEN] + tokens


def make_text_vectorizer(vocabulary: list, max_length: int = DEFAULT_MAX_LENGTH):
  """A `TextVectorization` layer mapping cleaned tweets to max_length token ids.

  Args:
    vocabulary: as returned by build_vocabulary / read_vocabulary_file.
    max_length: ids per text; longer texts are truncated, shorter padded with 0.
  """
  if max_length < 1:
    raise ValueError(f'max_length must be >= 1, got {max_length}')
  return _new_text_vectorizer(max_length, None, list(vocabulary))


def token_ids(vectorizer, cleaned_texts: list) -> np.ndarray:
  """int64 [len(cleaned_texts), max_length] token ids."""
  if not cleaned_texts:
    return np.zeros([0, vectorizer.get_config()['output_sequence_length']], np.int64)
  return vectorizer(tf.constant(list(cleaned_texts), tf.string)).numpy().astype(np.int64)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _square_image_jpeg(encoded):
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  side = tf.maximum(height, width)
  image = tf.image.pad_to_bounding_box(image, (side - height) // 2, (side - width) // 2, side,
                                       side)
  image = tf.image.resize(image, (STORED_IMAGE_SIZE, STORED_IMAGE_SIZE), antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.io.encode_jpeg(image, quality=JPEG_QUALITY)


def encode_stored_image(encoded: bytes) -> bytes:
  """An image file's bytes -> the stored JPEG (black centred square, 228 x 228, quality 95).

  Raises:
    tf.errors.OpError: the bytes are not a decodable image.
  """
  return _square_image_jpeg(tf.constant(encoded, tf.string)).numpy()


def modality_specs(max_length: int = DEFAULT_MAX_LENGTH, vocabulary_size: int = 0) -> tuple:
  """The stored modalities, in slot order ('image', 'text')."""
  return (prepared.ModalitySpec('image', 'jpeg_image', (STORED_IMAGE_SIZE, STORED_IMAGE_SIZE),
                                normalisation='half',
                                centre_crop_fraction=CROP_SIZE / STORED_IMAGE_SIZE),
          prepared.ModalitySpec('text', 'token_ids', (max_length,),
                                vocabulary_size=vocabulary_size))


def _file_sha256(path: str) -> str:
  try:
    return raw_files.sha256_and_size(path)[0]
  except raw_files.UnreadableFile as e:
    raise prepared.DataFormatError(f'vocabulary file {path}: cannot read: {e.reason}') from None


def vocabulary_sha256(vocabulary: list) -> str:
  """SHA-256 of the vocabulary (tokens joined by newlines, UTF-8): part of the recipe."""
  return hashlib.sha256('\n'.join(vocabulary).encode('utf-8', 'surrogatepass')).hexdigest()


def _recipe(task, agreed, label_column, max_length, max_tokens, vocabulary_file) -> dict:
  """JSON-native, so it compares equal to the copy read back from dataset.json."""
  return {
      'task': task,
      'agreed': bool(agreed),
      'label_column': label_column,
      'splits': dict(WRITTEN_SPLITS),
      'image_size': STORED_IMAGE_SIZE,
      'crop_size': CROP_SIZE,
      'image_padding': 'centred square, black',
      'jpeg_quality': JPEG_QUALITY,
      'text_cleaning': TEXT_CLEANING,
      'max_length': int(max_length),
      'max_tokens': None if vocabulary_file else int(max_tokens),
      'vocabulary': ({'file_sha256': _file_sha256(vocabulary_file)} if vocabulary_file
                     else 'adapted on the cleaned train tweets (one text per tweet_id)'),
  }


def _stored_image_features(payload) -> dict:
  """(image path, token ids) -> the features of one example; SkipExample if unusable."""
  image_path, ids = payload
  try:
    encoded = raw_files.read_regular_file(image_path)  # a FIFO is refused, not waited on
  except raw_files.UnreadableFile as e:
    if e.missing or not os.path.lexists(image_path):
      raise writer_lib.SkipExample('image file missing', image_path) from None
    raise writer_lib.SkipExample('image file unreadable', str(e)) from None
  try:
    jpeg = encode_stored_image(encoded)
  except (tf.errors.OpError, ValueError):
    raise writer_lib.SkipExample('image undecodable', image_path) from None
  return {'image': jpeg, 'text': ids}


def prepare_crisismmd(raw_dir: str, output_dir: str, *, task: str = 'informative',
                      agreed: bool = False, label_column: str = 'label',
                      max_length: int = DEFAULT_MAX_LENGTH,
                      max_tokens: int = DEFAULT_MAX_TOKENS, vocabulary_file: str | None = None,
                      workers: int = 1,
                      progress: Callable = writer_lib.identity_progress,
                      overwrite: bool = False, verify: bool | None = None) -> dict:
  """Turns a raw CrisisMMD v2.0 folder into a prepared dataset.

  Reads and validates the train, dev and test TSVs before writing anything,
  builds the vocabulary from the train split (or reads `vocabulary_file`),
  then writes one example per train/test row.  The identity of a preparation is
  the recipe (the vocabulary's SHA-256 included), the classes, the stored
  modalities and the raw inputs (raw_dir and the three TSVs' sizes and SHA-256).
  A rerun after an interruption reuses the example files already written when
  that identity matches; a rerun of a finished preparation of the same identity
  returns its manifest without work (making again only missing or damaged
  example files); another identity is refused unless `overwrite`.

  Skipped, counted and named in the report: a missing image file ('image file
  missing'), one that is not a readable regular file ('image file unreadable':
  a FIFO, a device, a folder, no permission), an image that does not decode
  ('image undecodable'), a repeated image_id within a split ('duplicate image_id').

  Args:
    raw_dir: the CrisisMMD_v2.0 folder (holding data_image/ and the split folder).
    output_dir: the prepared dataset's folder.
    task: 'informative' (2 classes) or 'humanitarian' (8 classes).
    agreed: read the agreed-label splits instead of the 'all' splits.
    label_column: the TSV column giving the label (the FedCMI code: 'label').
    max_length: token ids per tweet.
    max_tokens: vocabulary size (with padding and OOV) of an adapted vocabulary.
    vocabulary_file: one token per line, for a pretrained text encoder; replaces
      the adapted vocabulary.
    workers: images decoded at once.
    progress: `progress(items, total, desc)` returns an iterable over items
      (e.g. tqdm); the library prints nothing itself.
    overwrite: delete a prepared dataset already in output_dir (only if it holds
      one) once the TSVs are validated, and prepare again.
    verify: checksum the example files of a finished or interrupted preparation
      before reusing them (None: when they total at most
      `prepared.AUTO_CHECKSUM_BYTES`); their sizes are always checked.

  Returns:
    The manifest (the content of dataset.json).

  Raises:
    DataFormatError: a TSV is missing or malformed (naming file and line), nothing
      usable is left (`writer.NothingPrepared`), or output_dir holds a (finished or
      unfinished) preparation of another identity.
  """
  classes = _check_task(task)
  if label_column not in LABEL_COLUMNS:
    raise ValueError(f'label_column must be one of {LABEL_COLUMNS}, got {label_column!r}')
  if max_length < 1:
    raise ValueError(f'max_length must be >= 1, got {max_length}')
  if vocabulary_file is None and max_tokens < 3:
    raise ValueError(f'max_tokens must be >= 3, got {max_tokens}')
  if vocabulary_file is not None and not os.path.exists(vocabulary_file):
    raise prepared.DataFormatError(f'vocabulary file {vocabulary_file} does not exist')
  recipe = _recipe(task, agreed, label_column, max_length, max_tokens, vocabulary_file)

  report = writer_lib.PreparationReport()
  paths = {s: find_split_file(raw_dir, task, s, agreed) for s in SOURCE_SPLITS}
  rows = {}
  for split in SOURCE_SPLITS:
    rows[split] = read_split(paths[split], classes, label_column)
    report.count_read(split, len(rows[split]))
  report.notes.append(f'dev split {paths["dev"]}: {len(rows["dev"])} rows read and validated, '
                      'not written (evaluation uses the test split)')

  if vocabulary_file is None:
    train_texts = {}
    for row in rows['train']:
      train_texts.setdefault(row.tweet_id, clean_tweet(row.tweet_text))
    vocabulary = build_vocabulary(list(train_texts.values()), max_tokens)
    vocabulary_source = (f'adapted on the {len(train_texts)} cleaned train tweets of '
                         f'{paths["train"]}')
  else:
    vocabulary = read_vocabulary_file(vocabulary_file)
    vocabulary_source = f'read from {vocabulary_file}'
  # The token ids stored in every example depend on the vocabulary: a changed train TSV
  # or vocabulary file changes the identity, so no example of the old one is reused.
  recipe['vocabulary_sha256'] = vocabulary_sha256(vocabulary)
  modalities = modality_specs(max_length, len(vocabulary))
  inputs = writer_lib.input_identity(raw_dir, [paths[s] for s in SOURCE_SPLITS])
  manifest = writer_lib.finished_manifest(
      output_dir, writer_lib.preparation_identity(DATASET_NAME, recipe, modalities, classes,
                                                  inputs),
      overwrite=overwrite, verify=verify)
  if manifest is not None:
    return manifest
  vectorizer = make_text_vectorizer(vocabulary, max_length)

  items = []
  for source_split, split in WRITTEN_SPLITS.items():
    split_rows = rows[source_split]
    ids = token_ids(vectorizer, [clean_tweet(r.tweet_text) for r in split_rows])
    seen = set()
    for row, row_ids in zip(split_rows, ids):
      if row.image_id in seen:
        report.skip('duplicate image_id', f'{paths[source_split]}:{row.line} {row.image_id}')
        continue
      seen.add(row.image_id)
      payload = (os.path.join(raw_dir, row.image), [int(i) for i in row_ids])
      items.append((split, row.image_id, row.label_index, payload))

  writer = writer_lib.PreparedDatasetWriter(
      output_dir, DATASET_NAME, modalities, classes, recipe, source=os.path.abspath(raw_dir),
      inputs=inputs, verify=verify)
  writer_lib.prepare_examples(writer, report, items, _stored_image_features, workers=workers,
                              progress=progress)
  text = {
      'cleaning': TEXT_CLEANING,
      'tokenizer': 'tf.keras.layers.TextVectorization',
      'standardize': STANDARDIZE,
      'split': 'whitespace',
      'max_length': max_length,
      'max_tokens': recipe['max_tokens'],
      'vocabulary_size': len(vocabulary),
      'vocabulary_source': vocabulary_source,
      'padding_id': 0,
      'oov_id': 1,
  }
  return writer.finish(report, extra={'vocabulary': list(vocabulary), 'text': text})
