"""A tiny raw CrisisMMD v2.0 folder for loader tests (layout: docs/datasets.md, 'CrisisMMD v2.0').

Writes the split TSVs (tab-separated, one header row, the nine CrisisMMD
columns) for the informative and humanitarian tasks, optionally the
agreed-label variant, and small JPEGs under
`data_image/<event>/<d_m_yyyy>/<tweet_id>_<n>.jpg`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

HEADER = ('event_name', 'tweet_id', 'image_id', 'tweet_text', 'image', 'label', 'label_text',
          'label_image', 'label_text_image')
TASKS = ('informative', 'humanitarian')
SPLITS = ('train', 'dev', 'test')
# A tweet text with commas, quotes, emoji, a URL, a leading 'RT ' and hashtags.
TRICKY_TEXT = ('RT @CalFire: Evacuate now, "Santa Rosa" is burning \U0001F525\U0001F525 '
               '#CaliforniaFires https://t.co/AbC123xyz')
TRICKY_TEXT_CLEANED = ('@CalFire: Evacuate now, "Santa Rosa" is burning \U0001F525\U0001F525 '
                       'CaliforniaFires')
# The id of the image stored 32 wide and 20 high (the others are 32 x 32).
WIDE_IMAGE_ID = '901646074527535105_0'


class FixtureRow(NamedTuple):
  """One image of the fixture: labels as (label, label_text, label_image) per task."""

  split: str
  event: str
  date: str
  tweet_id: str
  n: int
  text: str
  informative: tuple
  humanitarian: tuple

  @property
  def image_id(self) -> str:
    return f'{self.tweet_id}_{self.n}'

  @property
  def image(self) -> str:
    return f'data_image/{self.event}/{self.date}/{self.image_id}.jpg'


_INF, _NOT = 'informative', 'not_informative'
_NOT_HUM = 'not_humanitarian'
_INFRA = 'infrastructure_and_utility_damage'
_RESCUE = 'rescue_volunteering_or_donation_effort'

ROWS = (
    # Two images of one tweet; the second one's image label disagrees.
    FixtureRow('train', 'california_wildfires', '10_10_2017', '917791291823591425', 0,
               TRICKY_TEXT, (_INF, _INF, _INF), (_INFRA, _INFRA, _INFRA)),
    FixtureRow('train', 'california_wildfires', '10_10_2017', '917791291823591425', 1,
               TRICKY_TEXT, (_INF, _INF, _NOT), (_INFRA, _INFRA, _NOT_HUM)),
    FixtureRow('train', 'hurricane_harvey', '28_8_2017', '901646074527535105', 0,
               '"Houston" flood water rising fast, stay safe www.example.com/news',
               (_INF, _INF, _INF), ('affected_individuals',) * 3),
    FixtureRow('train', 'hurricane_harvey', '28_8_2017', '901646074527535106', 0,
               'Happy Monday everyone', (_NOT, _NOT, _NOT), (_NOT_HUM,) * 3),
    FixtureRow('train', 'mexico_earthquake', '20_9_2017', '910279379483557888', 0,
               'Rescue teams search the rubble in Mexico City #sismo', (_INF, _INF, _INF),
               (_RESCUE,) * 3),
    FixtureRow('train', 'srilanka_floods', '31_5_2017', '869541213366898688', 0,
               'Just had lunch', (_NOT, _NOT, _INF),
               (_NOT_HUM, _NOT_HUM, 'other_relevant_information')),
    FixtureRow('dev', 'california_wildfires', '10_10_2017', '917800000000000001', 0,
               'Fire crews at work', (_INF, _INF, _INF), (_RESCUE,) * 3),
    FixtureRow('dev', 'hurricane_harvey', '28_8_2017', '901600000000000002', 0,
               'Nice sunset', (_NOT, _NOT, _NOT), (_NOT_HUM,) * 3),
    FixtureRow('test', 'california_wildfires', '10_10_2017', '917900000000000001', 0,
               'Water rising fast in Santa Rosa', (_INF, _INF, _INF), (_INFRA,) * 3),
    FixtureRow('test', 'hurricane_harvey', '28_8_2017', '901700000000000001', 0,
               'Lunch with friends', (_NOT, _NOT, _NOT), (_NOT_HUM,) * 3),
    FixtureRow('test', 'mexico_earthquake', '20_9_2017', '910300000000000001', 0,
               'Injured people taken to hospital', (_INF, _INF, _INF),
               ('injured_or_dead_people',) * 3),
    FixtureRow('test', 'mexico_earthquake', '20_9_2017', '910300000000000001', 1,
               'Injured people taken to hospital', (_INF, _INF, _NOT),
               ('injured_or_dead_people', 'injured_or_dead_people', 'vehicle_damage')),
)


def split_file_name(task: str, split: str, agreed: bool) -> str:
  return f'task_{task}_text_img_{"agreed_lab_" if agreed else ""}{split}.tsv'


def row_fields(row: FixtureRow, task: str) -> list:
  """The nine TSV fields of a fixture row for one task."""
  label, label_text, label_image = getattr(row, task)
  agreement = 'Positive' if label_text == label_image else 'Negative'
  return [row.event, row.tweet_id, row.image_id, row.text, row.image, label, label_text,
          label_image, agreement]


def _agrees(row: FixtureRow, task: str) -> bool:
  _, label_text, label_image = getattr(row, task)
  return label_text == label_image


def _write_tsv(path: str, lines: list) -> None:
  with open(path, 'w', encoding='utf-8', newline='') as f:
    for line in lines:
      f.write(line + '\n')


def _write_image(path: str, height: int, width: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  colour = rng.integers(120, 256, size=3)
  image = np.broadcast_to(colour, (height, width, 3)).astype(np.uint8)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(tf.io.encode_jpeg(tf.constant(image), quality=95).numpy())


def make_crisismmd(root: str, *, nested: bool = False, agreed: bool = False,
                   missing_images: tuple = (), corrupt_images: tuple = (),
                   extra_rows: tuple = ()) -> dict:
  """Writes a raw CrisisMMD folder under `root`.

  Args:
    root: the dataset root (created if needed).
    nested: put the split TSVs in crisismmd_datasplit_all/crisismmd_datasplit_all/.
    agreed: also write the agreed-label TSVs (rows whose text and image labels
      agree) in crisismmd_datasplit_agreed_label/.
    missing_images: image_ids whose JPEG is not written.
    corrupt_images: image_ids whose JPEG file holds bytes that do not decode.
    extra_rows: (split, line) pairs appended, in order, to the informative
      'all' TSV of that split; `line` is a raw string or a sequence of fields
      (joined with tabs).

  Returns:
    A dict with
      root: the dataset root;
      split_dir: the folder of the 'all' TSVs;
      files: {(task, split, agreed): TSV path};
      rows: {split: [FixtureRow, ...]} in file order;
      labels: {(task, agreed): {split: [(image_id, class name), ...]}} of the
        rows in each TSV, in file order (extra rows not included);
      extra_lines: {split: [line number of each extra row]};
      image_paths: {image_id: absolute JPEG path};
      image_sizes: {image_id: (height, width)}.
  """
  split_dir = os.path.join(root, 'crisismmd_datasplit_all')
  if nested:
    split_dir = os.path.join(split_dir, 'crisismmd_datasplit_all')
  agreed_dir = os.path.join(root, 'crisismmd_datasplit_agreed_label')
  os.makedirs(split_dir, exist_ok=True)
  files, labels, extra_lines = {}, {}, {s: [] for s in SPLITS}
  variants = [False, True] if agreed else [False]
  for is_agreed in variants:
    folder = agreed_dir if is_agreed else split_dir
    os.makedirs(folder, exist_ok=True)
    for task in TASKS:
      labels[(task, is_agreed)] = {}
      for split in SPLITS:
        chosen = [r for r in ROWS if r.split == split and (not is_agreed or _agrees(r, task))]
        lines = ['\t'.join(HEADER)] + ['\t'.join(row_fields(r, task)) for r in chosen]
        if task == 'informative' and not is_agreed:
          for extra_split, extra in extra_rows:
            if extra_split == split:
              lines.append(extra if isinstance(extra, str) else '\t'.join(extra))
              extra_lines[split].append(len(lines))
        path = os.path.join(folder, split_file_name(task, split, is_agreed))
        _write_tsv(path, lines)
        files[(task, split, is_agreed)] = path
        labels[(task, is_agreed)][split] = [(r.image_id, getattr(r, task)[0]) for r in chosen]
  image_paths, image_sizes = {}, {}
  for index, row in enumerate(ROWS):
    path = os.path.abspath(os.path.join(root, row.image))
    size = (20, 32) if row.image_id == WIDE_IMAGE_ID else (32, 32)
    image_paths[row.image_id], image_sizes[row.image_id] = path, size
    if row.image_id in missing_images:
      continue
    if row.image_id in corrupt_images:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 this is not a JPEG')
      continue
    _write_image(path, size[0], size[1], seed=index)
  return {
      'root': root,
      'split_dir': split_dir,
      'files': files,
      'rows': {s: [r for r in ROWS if r.split == s] for s in SPLITS},
      'labels': labels,
      'extra_lines': extra_lines,
      'image_paths': image_paths,
      'image_sizes': image_sizes,
  }
