"""AVE (audio-visual event localisation): from the published download to the prepared format.

Raw inputs (docs/datasets.md, 'AVE'):
  <raw_dir>/AVE/<VideoID>.mp4          10-s clips (one video may carry several events)
  <raw_dir>/Annotations.txt            header "Category&VideoID&Quality&StartTime&EndTime"
  <raw_dir>/trainSet.txt, valSet.txt, testSet.txt   the same 5 '&' fields, no header
  <raw_dir>/Audios/<VideoID>.wav       optional: audio already extracted (else ffmpeg)

Category names contain commas and parentheses ("Male speech, man speaking",
"Frying (food)"), so rows are split on '&' only.  Class indices follow the order
of first appearance in testSet.txt (the PMR / FedCMI order).  As the PMR /
FedCMI "SE" preparation: audio and frames are restricted to the annotated
segment [StartTime, EndTime]; audio is tiled to 10 s at 16 kHz -> 257 x 1004
log-spectrogram; frames at 1 fps inside the segment, at least `MIN_FRAMES`
(evenly spaced when the segment is shorter).  The validation split is read and
checked but not written (the code does not use it).
"""

from __future__ import annotations

import os

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import audio
from fedcmi_tff.preparation import raw_files
from fedcmi_tff.preparation import video
from fedcmi_tff.preparation import writer as writer_lib

DATASET = 'ave'
HEADER = ('Category', 'VideoID', 'Quality', 'StartTime', 'EndTime')
SPLIT_FILES = {'train': 'trainSet.txt', 'val': 'valSet.txt', 'test': 'testSet.txt'}
MIN_FRAMES = 10
CLIP_SECONDS = 10


class Row(tuple):
  """(line, category, video_id, start, end) of one annotation row."""

  line = property(lambda self: self[0])
  category = property(lambda self: self[1])
  video_id = property(lambda self: self[2])
  start = property(lambda self: self[3])
  end = property(lambda self: self[4])


def read_rows(path: str, *, header: bool) -> list:
  """Rows of Annotations.txt (header=True) or a split file (header=False).

  Raises:
    DataFormatError: naming file and line, for a missing/wrong header, a row
      without exactly 5 '&'-separated fields, or start/end times that are not
      integers with 0 <= start < end <= 10.
  """
  lines = writer_lib.numbered_lines(path, encoding='utf-8-sig')
  if header:
    if not lines or tuple(lines[0][1].split('&')) != HEADER:
      raise prepared.DataFormatError(
          f'{path}:1: expected the header {"&".join(HEADER)!r}, got '
          f'{raw_files.quote(lines[0][1] if lines else "")}')
    lines = lines[1:]
  elif lines and tuple(lines[0][1].split('&')) == HEADER:
    raise prepared.DataFormatError(f'{path}:1: split files have no header line')
  rows = []
  for number, line in lines:
    if not line.strip():
      continue
    fields = line.split('&')
    if len(fields) != 5:
      raise prepared.DataFormatError(
          f'{path}:{number}: expected 5 "&"-separated fields '
          f'(Category&VideoID&Quality&StartTime&EndTime), got {len(fields)}: '
          f'{raw_files.quote(line)}')
    category, video_id, _, start, end = (x.strip() for x in fields)
    try:
      start_s, end_s = int(start), int(end)
    except ValueError:
      raise prepared.DataFormatError(
          f'{path}:{number}: StartTime/EndTime must be integers, got {raw_files.quote(start)}, '
          f'{raw_files.quote(end)}') from None
    if not 0 <= start_s < end_s <= CLIP_SECONDS:
      raise prepared.DataFormatError(
          f'{path}:{number}: need 0 <= StartTime < EndTime <= {CLIP_SECONDS}, got {start_s}, {end_s}')
    if not category or not video_id or os.sep in video_id or video_id.startswith('.'):
      raise prepared.DataFormatError(
          f'{path}:{number}: empty category or bad video id: {raw_files.quote(line)}')
    writer_lib.check_example_id(f'{video_id}_{start_s}_{end_s}', f'{path}:{number}')
    rows.append(Row((number, category, video_id, start_s, end_s)))
  if not rows:
    raise prepared.DataFormatError(f'{path}: no rows')
  return rows


def class_order(test_rows: list) -> tuple:
  """Categories in order of first appearance in testSet.txt."""
  order = []
  for row in test_rows:
    if row.category not in order:
      order.append(row.category)
  return tuple(order)


def prepare_ave(raw_dir: str, output_dir: str, *, workers: int = 1,
                progress=writer_lib.identity_progress, overwrite: bool = False,
                verify: bool | None = None) -> dict:
  """Prepares AVE into output_dir; returns the manifest.

  A finished preparation of the same recipe and inputs is returned as is (its missing
  or damaged example files are made again); one of other inputs or another recipe is
  refused unless `overwrite` (which deletes it first).  `verify` checksums reused
  example files (None: when cheap); sizes are always checked.
  """
  recipe_obj = audio.SCIPY_16K_10S
  annotations_file = os.path.join(raw_dir, 'Annotations.txt')
  annotations = read_rows(annotations_file, header=True)
  split_files = {s: os.path.join(raw_dir, f) for s, f in SPLIT_FILES.items()}
  rows = {s: read_rows(path, header=False) for s, path in split_files.items()}
  classes = class_order(rows['test'])
  annotated = {(r.category, r.video_id, r.start, r.end) for r in annotations}
  for split, split_rows in rows.items():
    for r in split_rows:
      if r.category not in classes:
        raise prepared.DataFormatError(
            f'{os.path.join(raw_dir, SPLIT_FILES[split])}:{r.line}: unknown category '
            f'{raw_files.quote(r.category)} (not in testSet.txt, which defines the '
            f'{len(classes)} classes)')
  recipe = {'spectrogram': 'scipy_16k_10s', 'spectrogram_shape': list(recipe_obj.output_shape),
            'segment': 'annotated [StartTime, EndTime]',
            'frames': {'fps': 1, 'min_frames': MIN_FRAMES}, 'class_order': 'testSet.txt'}
  modalities = audio.audio_visual_modalities(recipe_obj)
  inputs = writer_lib.input_identity(raw_dir, [annotations_file] + list(split_files.values()))
  if overwrite:
    video.ffmpeg_path()  # before anything is deleted
  done = writer_lib.finished_manifest(
      output_dir, writer_lib.preparation_identity(DATASET, recipe, modalities, classes, inputs),
      overwrite=overwrite, verify=verify)
  if done is not None:
    return done

  report = writer_lib.PreparationReport()
  report.count_read('val', len(rows['val']))
  report.notes.append(f'valSet.txt: {len(rows["val"])} rows checked, not written (unused by '
                      'the FedCMI code)')
  items, unannotated = [], []
  for split in prepared.SPLITS:
    seen = set()
    for r in rows[split]:
      report.count_read(split)
      example_id = f'{r.video_id}_{r.start}_{r.end}'
      where = f'{SPLIT_FILES[split]}:{r.line}'
      if example_id in seen:
        report.skip(f'segment listed twice in {SPLIT_FILES[split]}', f'{example_id} ({where})')
        continue
      seen.add(example_id)
      if (r.category, r.video_id, r.start, r.end) not in annotated:
        unannotated.append(where)
      items.append((split, example_id, classes.index(r.category), r))
  if unannotated:
    report.notes.append(f'{len(unannotated)} split rows are not in Annotations.txt (kept): '
                        f'{", ".join(unannotated[:5])}{", ..." if len(unannotated) > 5 else ""}')

  def build_features(r):
    clip = os.path.join(raw_dir, 'AVE', f'{r.video_id}.mp4')
    if not os.path.exists(clip):
      raise writer_lib.SkipExample('video file missing', clip)
    try:
      raw_files.check_readable(clip)  # a FIFO or device is refused before ffmpeg opens it
    except raw_files.UnreadableFile as e:
      raise writer_lib.SkipExample('video file unreadable', str(e)) from None
    wav = os.path.join(raw_dir, 'Audios', f'{r.video_id}.wav')
    try:
      if os.path.exists(wav):
        samples = audio.read_wav(wav, recipe_obj.sample_rate)
      else:
        samples = video.extract_audio(clip, recipe_obj.sample_rate)
    except (audio.AudioDecodeError, video.VideoDecodeError) as e:
      reason = 'audio file unreadable' if e.unreadable else 'audio undecodable'
      raise writer_lib.SkipExample(reason, str(e)) from None
    try:
      samples = audio.segment(samples, recipe_obj.sample_rate, r.start, r.end)
    except ValueError as e:  # the clip ends before the annotated segment starts
      raise writer_lib.SkipExample('audio segment empty', f'{clip} [{r.start}, {r.end}]: {e}') from None
    spec = audio.log_spectrogram(samples, recipe_obj)
    try:
      frames = video.extract_frames(clip, fps=1.0, start_seconds=r.start, end_seconds=r.end,
                                    min_frames=MIN_FRAMES)
    except video.VideoDecodeError as e:
      reason = 'video file unreadable' if e.unreadable else 'frames undecodable'
      raise writer_lib.SkipExample(reason, str(e)) from None
    return {'audio': spec, 'visual': frames}

  if items:
    video.ffmpeg_path()  # fails early with install instructions
  writer = writer_lib.PreparedDatasetWriter(
      output_dir, DATASET, modalities, classes, recipe, source=os.path.abspath(raw_dir),
      inputs=inputs, verify=verify)
  writer_lib.prepare_examples(writer, report, items, build_features, workers=workers,
                              progress=progress)
  return writer.finish(report)
