"""CREMA-D: from the published download to the prepared format.

Raw inputs (docs/datasets.md, 'CREMA-D'):
  <raw_dir>/AudioWAV/<clip>.wav              16 kHz mono PCM
  <raw_dir>/VideoFlash/<clip>.flv            video, used when no frame folder exists
  <frames_dir>/<clip>/00000.jpg, 00030.jpg   frames at 1 fps (the repos' Image-01-FPS)
  <split_dir>/train.csv, test.csv            no header, CRLF, "clip,LABEL"
  <split_dir>/stat.csv                       class list with a UTF-8 BOM, CRLF

Preprocessing as the PMR / FedCMI code: audio -> 257 x 299 log-spectrogram
(16 kHz, 3 s; `audio.SCIPY_16K_3S`), or OGM-GE's 257 x 188 (`audio.STFT_22K_3S`);
frames at 1 fps, at least 3 per clip, stored as JPEG in temporal order.
Clips named by a split file but absent on disk are counted and reported, not
fatal: the published download lacks a few (TFDS skips four).
"""

from __future__ import annotations

import os
import re

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import audio
from fedcmi_tff.preparation import raw_files
from fedcmi_tff.preparation import video
from fedcmi_tff.preparation import writer as writer_lib

DATASET = 'crema_d'
# stat.csv order of the OGM-GE / PMR / FedCMI repositories.
DEFAULT_CLASSES = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')
CLIP_NAME = re.compile(r'^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$')
MIN_FRAMES = 3  # the PMR / FedCMI preparation keeps at least 3 frames per clip
FRAME_SOURCES = ('auto', 'folder', 'video')


def read_class_list(path: str) -> tuple:
  """Class names of stat.csv, one per line, UTF-8 with or without a BOM."""
  names = []
  for number, line in writer_lib.numbered_lines(path, encoding='utf-8-sig'):
    name = line.strip()
    if not name:
      continue
    if ',' in name or not re.fullmatch(r'[A-Z]{3}', name):
      raise prepared.DataFormatError(
          f'{path}:{number}: expected one three-letter emotion code per line, got '
          f'{raw_files.quote(line)}')
    if name in names:
      raise prepared.DataFormatError(f'{path}:{number}: class {name} listed twice')
    names.append(name)
  if not names:
    raise prepared.DataFormatError(f'{path}: no class names')
  return tuple(names)


def read_split(path: str, classes: tuple) -> list:
  """(line number, clip, label index) of a train.csv / test.csv file.

  Raises:
    DataFormatError: naming file and line, for a row that is not "clip,LABEL", a
      clip name not of the form AAAA_SSS_EEE_LL, an unknown label, or a label that
      disagrees with the emotion field of the clip name.
  """
  rows = []
  for number, line in writer_lib.numbered_lines(path):
    if not line.strip():
      continue
    fields = line.split(',')
    if len(fields) != 2:
      raise prepared.DataFormatError(
          f'{path}:{number}: expected 2 comma-separated fields "clip,LABEL", got '
          f'{raw_files.quote(line)}')
    clip, label = fields[0].strip(), fields[1].strip()
    match = CLIP_NAME.match(clip)
    if not match:
      raise prepared.DataFormatError(
          f'{path}:{number}: clip name {raw_files.quote(clip)} is not of the form '
          '1001_DFA_ANG_XX')
    if label not in classes:
      raise prepared.DataFormatError(
          f'{path}:{number}: unknown label {raw_files.quote(label)}; classes are '
          f'{", ".join(classes)}')
    if match.group(3) != label:
      raise prepared.DataFormatError(
          f'{path}:{number}: label {label} disagrees with the clip name {clip}')
    rows.append((number, clip, classes.index(label)))
  if not rows:
    raise prepared.DataFormatError(f'{path}: no rows')
  return rows


def _frame_source(raw_dir: str, frames_dir: str | None, frame_source: str):
  if frame_source not in FRAME_SOURCES:
    raise ValueError(f'frame_source must be one of {FRAME_SOURCES}, got {frame_source!r}')
  frames_dir = frames_dir or os.path.join(raw_dir, 'Image-01-FPS')
  if frame_source == 'auto':
    frame_source = 'folder' if os.path.isdir(frames_dir) else 'video'
  if frame_source == 'folder' and not os.path.isdir(frames_dir):
    raise prepared.DataFormatError(f'frame folder {frames_dir} not found')
  if frame_source == 'video':
    video.ffmpeg_path()  # fails early with install instructions
  return frame_source, frames_dir


def prepare_crema_d(raw_dir: str, output_dir: str, *, split_dir: str | None = None,
                    frames_dir: str | None = None, frame_source: str = 'auto',
                    spectrogram: str = 'scipy_16k_3s', workers: int = 1,
                    progress=writer_lib.identity_progress, overwrite: bool = False,
                    verify: bool | None = None) -> dict:
  """Prepares CREMA-D into output_dir; returns the manifest.

  A finished preparation of the same recipe and inputs is returned as is (its missing
  or damaged example files are made again); one of other inputs or another recipe is
  refused unless `overwrite`.

  Args:
    raw_dir: the CREMA-D folder (AudioWAV/, VideoFlash/).
    output_dir: the prepared dataset's folder.
    split_dir: folder of train.csv, test.csv, stat.csv (default raw_dir).
    frames_dir: existing 1-fps frame folders (default raw_dir/Image-01-FPS).
    frame_source: 'folder', 'video' (ffmpeg on VideoFlash/*.flv), or 'auto'
      (the folder if it exists).
    spectrogram: a key of `audio.RECIPES` ('scipy_16k_3s' or 'stft_22k_3s').
    workers: clips decoded in parallel.
    progress: wraps the example iterator (a progress bar).
    overwrite: delete a prepared dataset already in output_dir first.
    verify: checksum reused example files (None: when cheap); sizes are always checked.
  """
  if spectrogram not in ('scipy_16k_3s', 'stft_22k_3s'):
    raise ValueError(f"CREMA-D spectrogram must be 'scipy_16k_3s' or 'stft_22k_3s', "
                     f'got {spectrogram!r}')
  recipe_obj = audio.RECIPES[spectrogram]
  split_dir = split_dir or raw_dir
  split_files = [os.path.join(split_dir, name) for name in ('stat.csv', 'train.csv', 'test.csv')]
  classes = read_class_list(split_files[0])
  splits = {s: read_split(os.path.join(split_dir, f'{s}.csv'), classes)
            for s in prepared.SPLITS}
  source, frames_dir = _frame_source(raw_dir, frames_dir, frame_source)
  recipe = {'spectrogram': spectrogram, 'spectrogram_shape': list(recipe_obj.output_shape),
            'frames': {'source': source, 'fps': 1, 'min_frames': MIN_FRAMES},
            'split_files': 'train.csv/test.csv (OGM-GE, PMR, FedCMI)'}
  modalities = audio.audio_visual_modalities(recipe_obj)
  inputs = writer_lib.input_identity(
      raw_dir, split_files, {'frames_dir': frames_dir} if source == 'folder' else None)
  done = writer_lib.finished_manifest(
      output_dir, writer_lib.preparation_identity(DATASET, recipe, modalities, classes, inputs),
      overwrite=overwrite, verify=verify)
  if done is not None:
    return done

  report = writer_lib.PreparationReport()
  items = []
  for split, rows in splits.items():
    seen = set()
    for number, clip, label in rows:
      report.count_read(split)
      if clip in seen:
        report.skip(f'clip listed twice in {split}.csv', f'{clip} (line {number})')
        continue
      seen.add(clip)
      items.append((split, clip, label, clip))

  def build_features(clip):
    wav = os.path.join(raw_dir, 'AudioWAV', f'{clip}.wav')
    if not os.path.exists(wav):
      raise writer_lib.SkipExample('audio file missing', wav)
    try:
      spec = audio.spectrogram_from_wav(wav, recipe_obj)
    except audio.AudioDecodeError as e:
      reason = 'audio file unreadable' if e.unreadable else 'audio undecodable'
      raise writer_lib.SkipExample(reason, str(e)) from None
    try:
      if source == 'folder':
        folder = os.path.join(frames_dir, clip)
        if not os.path.isdir(folder):
          raise writer_lib.SkipExample('frame folder missing', folder)
        frames = video.read_frame_folder(folder)
      else:
        clip_video = os.path.join(raw_dir, 'VideoFlash', f'{clip}.flv')
        if not os.path.exists(clip_video):
          raise writer_lib.SkipExample('video file missing', clip_video)
        frames = video.extract_frames(clip_video, fps=1.0, min_frames=MIN_FRAMES)
    except video.VideoDecodeError as e:
      if e.unreadable:
        reason = 'frame file unreadable' if source == 'folder' else 'video file unreadable'
      else:
        reason = 'frames undecodable'
      raise writer_lib.SkipExample(reason, str(e)) from None
    return {'audio': spec, 'visual': frames}

  writer = writer_lib.PreparedDatasetWriter(
      output_dir, DATASET, modalities, classes, recipe, source=os.path.abspath(raw_dir),
      inputs=inputs, verify=verify)
  writer_lib.prepare_examples(writer, report, items, build_features, workers=workers,
                              progress=progress)
  if source == 'folder':
    report.notes.append(f'frames read from {frames_dir}')
  return writer.finish(report)
