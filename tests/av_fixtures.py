"""Tiny raw CREMA-D and AVE datasets in their published layouts, with injectable bad input.

The layouts and quirks follow docs/datasets.md ('CREMA-D', 'AVE'): CREMA-D
split files without header and with CRLF line ends,
stat.csv with a UTF-8 BOM; AVE '&'-separated files whose class names contain
commas and parentheses, a header line only in Annotations.txt, a video id that
appears twice in trainSet.txt with two segments, and a class order (first
appearance in testSet.txt) that is not alphabetical.

Everything is generated with numpy, the stdlib `wave` module,
`tf.io.encode_jpeg` and the ffmpeg command line (lavfi `testsrc` and `sine`
sources); the default datasets take well under two seconds to write.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
import wave

import numpy as np
import tensorflow as tf

CREMA_D_CLASSES = ('NEU', 'HAP', 'SAD', 'FEA', 'DIS', 'ANG')  # stat.csv order
CREMA_D_RATE = 16000
CREMA_D_FRAME_NAMES = ('00000.jpg', '00030.jpg', '00060.jpg')  # 1 fps of a 30-fps clip
CREMA_D_CORRUPT_FRAME = '00030.jpg'  # the frame `corrupt_jpeg` breaks
AVE_HEADER = 'Category&VideoID&Quality&StartTime&EndTime'
AVE_CLASSES = ('Church bell', 'Male speech, man speaking', 'Frying (food)')
AVE_SEGMENT = (1, 3)  # StartTime, EndTime of every row but the full-clip ones
_YOUTUBE_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
_GARBAGE = b'this is not a media file \x00\x01\x02' * 8


def _parent(path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _write_text(path: str, text: str) -> None:
  """Writes `text` as UTF-8 exactly as given (no newline translation)."""
  _parent(path)
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text)


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> str:
  """16-bit PCM WAV of float samples in [-1, 1], shape [n] (mono) or [n, channels]."""
  samples = np.asarray(samples, np.float64)
  if samples.ndim == 1:
    samples = samples[:, None]
  pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype('<i2')
  _parent(path)
  with wave.open(path, 'wb') as w:
    w.setnchannels(pcm.shape[1])
    w.setsampwidth(2)
    w.setframerate(int(sample_rate))
    w.writeframes(pcm.tobytes())
  return path


def sine(frequency: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
  """amplitude * sin(2 pi f n / rate), n = 0 .. round(seconds * rate) - 1."""
  n = np.arange(int(round(seconds * sample_rate)))
  return amplitude * np.sin(2.0 * np.pi * frequency * n / sample_rate)


def write_jpeg(path: str, height: int, width: int, seed: int) -> bytes:
  """A random RGB JPEG of height x width drawn from `seed`; returns its bytes."""
  pixels = np.random.RandomState(seed).randint(0, 256, size=(height, width, 3)).astype(np.uint8)
  data = tf.io.encode_jpeg(tf.constant(pixels), quality=90).numpy()
  _parent(path)
  with open(path, 'wb') as f:
    f.write(data)
  return data


def corrupt_jpeg_bytes(data: bytes) -> bytes:
  """A JPEG cut in half: starts like a JPEG, does not decode."""
  return data[:len(data) // 2]


def write_video(path: str, seconds: float, with_audio: bool = True, fps: int = 30,
                size: tuple = (64, 48), *, frequency: float = 440.0,
                audio_rate: int = 44100) -> str:
  """A test-pattern clip (ffmpeg lavfi `testsrc`, size = (width, height)) with a sine soundtrack.

  .flv gets Sorenson H.263 video (`-c:v flv`) + 16-bit PCM (FLV allows PCM at
  11025, 22050 or 44100 Hz only; AAC or MP3 in FLV would keep ~0.07 s of encoder
  priming), .mp4 MPEG-4 part 2 + AAC (the priming is trimmed by the mp4 edit
  list); any other extension ffmpeg's defaults.
  """
  if seconds <= 0:  # lavfi sources never end by themselves: always bound them
    raise ValueError(f'seconds must be positive, got {seconds}')
  width, height = size
  command = [shutil.which('ffmpeg') or 'ffmpeg', '-nostdin', '-hide_banner', '-loglevel', 'error',
             '-y', '-f', 'lavfi', '-i', f'testsrc=size={width}x{height}:rate={fps}']
  if with_audio:
    command += ['-f', 'lavfi', '-i', f'sine=frequency={frequency}:sample_rate={audio_rate}']
  command += ['-t', repr(float(seconds))]
  extension = os.path.splitext(path)[1].lower()
  if extension == '.flv':
    command += ['-c:v', 'flv']
  elif extension == '.mp4':
    command += ['-c:v', 'mpeg4', '-pix_fmt', 'yuv420p']
  if with_audio and extension == '.flv':
    command += ['-c:a', 'pcm_s16le']
  elif with_audio and extension == '.mp4':
    command += ['-c:a', 'aac']
  _parent(path)
  subprocess.run(command + [os.path.abspath(path)], check=True, capture_output=True)
  return path


def make_fifo(path: str, release_for: float = 60.0) -> str:
  """A FIFO (named pipe) at `path` that never blocks a reader for long.

  Code that refuses non-regular files never opens it.  Code that does open it
  would block until a writer appears, so a daemon thread keeps opening the write
  end (non-blocking) for `release_for` seconds: whenever a reader waits, it gets
  an empty read instead of hanging the test.
  """
  _parent(path)
  os.mkfifo(path)

  def release():
    deadline = time.monotonic() + release_for
    while time.monotonic() < deadline and os.path.exists(path):
      try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
      except OSError as e:
        if e.errno not in (errno.ENXIO, errno.ENOENT):
          return
      time.sleep(0.05)

  threading.Thread(target=release, daemon=True).start()
  return path


def _lines(lines, end: str) -> str:
  """Every line followed by `end` (also the last one)."""
  return ''.join(line + end for line in lines)


def _unknown(names, known, what: str) -> None:
  unknown = sorted(set(names) - set(known))
  if unknown:
    raise ValueError(f'unknown {what}: {unknown}')


# ----------------------------------------------------------------------------- CREMA-D


def crema_d_stem(actor: int, sentence: str, emotion: str, level: str = 'XX') -> str:
  """'AAAA_SSS_EEE_LL', e.g. 1001_DFA_ANG_XX."""
  return f'{actor}_{sentence}_{emotion}_{level}'


def make_crema_d(root: str, *, actors=(1001, 1002, 1003), emotions=('ANG', 'HAP'),
                 sentence: str = 'DFA', wav_seconds: float = 1.0, with_videos: bool = False,
                 with_frame_folders: bool = True, missing_wav=(), corrupt_wav=(),
                 corrupt_jpeg=(), extra_split_rows=(), malformed_split_rows=()) -> dict:
  """Writes a tiny CREMA-D under `root`.

  Layout: `AudioWAV/<stem>.wav` (16 kHz mono int16 sine, a frequency per
  stem); with `with_videos`, `VideoFlash/<stem>.flv` (wav_seconds long, 30
  fps 64x48 test pattern, the same sine as 22.05 kHz PCM);
  with `with_frame_folders`, `Image-01-FPS/<stem>/00000.jpg, 00030.jpg,
  00060.jpg` (64x64, written in the order 00060, 00000, 00030);
  `train.csv` and `test.csv` (`stem,LABEL`, no header, CRLF, train rows in
  reverse-sorted order); `stat.csv` (the six classes, UTF-8 BOM, CRLF).
  The last actor's stems are the test split (one per emotion), the others train.

  Bad input: `missing_wav` stems stay in the split files without a WAV;
  `corrupt_wav` stems get garbage bytes; `corrupt_jpeg` stems get a truncated
  00030.jpg; `extra_split_rows` and then `malformed_split_rows` are raw lines
  (without line end) appended to train.csv.

  Returns:
    dict with 'root', 'classes', 'stems' (generated, sorted), 'train' and
    'test' (stems in file order, without the appended rows), 'labels'
    ({stem: emotion}), 'wav' / 'video' / 'frames' ({stem: path}; a missing
    WAV keeps its would-be path), 'frame_names', and 'paths' (audio_dir,
    video_dir, frames_dir, train_csv, test_csv, stat_csv; None when not written).
  """
  if len(actors) < 2:
    raise ValueError('need at least two actors: the last one is the test split')
  _unknown(emotions, CREMA_D_CLASSES, 'emotions')
  stems = {crema_d_stem(a, sentence, e): e for a in actors for e in emotions}
  for name, chosen in (('missing_wav', missing_wav), ('corrupt_wav', corrupt_wav),
                       ('corrupt_jpeg', corrupt_jpeg)):
    _unknown(chosen, stems, f'{name} stems')
  if corrupt_jpeg and not with_frame_folders:
    raise ValueError('corrupt_jpeg needs with_frame_folders=True')

  paths = {
      'audio_dir': os.path.join(root, 'AudioWAV'),
      'video_dir': os.path.join(root, 'VideoFlash') if with_videos else None,
      'frames_dir': os.path.join(root, 'Image-01-FPS') if with_frame_folders else None,
      'train_csv': os.path.join(root, 'train.csv'),
      'test_csv': os.path.join(root, 'test.csv'),
      'stat_csv': os.path.join(root, 'stat.csv'),
  }
  os.makedirs(paths['audio_dir'], exist_ok=True)
  wavs, videos, frames = {}, {}, {}
  for index, (stem, emotion) in enumerate(sorted(stems.items())):
    frequency = 220.0 + 110.0 * emotions.index(emotion) + 20.0 * (index // len(emotions))
    wavs[stem] = os.path.join(paths['audio_dir'], stem + '.wav')
    if stem in corrupt_wav:
      with open(wavs[stem], 'wb') as f:
        f.write(_GARBAGE)
    elif stem not in missing_wav:
      write_wav(wavs[stem], sine(frequency, wav_seconds, CREMA_D_RATE), CREMA_D_RATE)
    if with_videos:
      videos[stem] = write_video(os.path.join(paths['video_dir'], stem + '.flv'), wav_seconds,
                                 frequency=frequency, audio_rate=22050)
    if with_frame_folders:
      frames[stem] = os.path.join(paths['frames_dir'], stem)
      for k in (2, 0, 1):  # not in name order
        name = CREMA_D_FRAME_NAMES[k]
        data = write_jpeg(os.path.join(frames[stem], name), 64, 64, seed=100 * index + k)
        if stem in corrupt_jpeg and name == CREMA_D_CORRUPT_FRAME:
          with open(os.path.join(frames[stem], name), 'wb') as f:
            f.write(corrupt_jpeg_bytes(data))

  test = [s for s in sorted(stems) if s.startswith(f'{actors[-1]}_')]
  train = [s for s in sorted(stems, reverse=True) if s not in test]
  _write_text(paths['train_csv'], _lines([f'{s},{stems[s]}' for s in train]
                                         + list(extra_split_rows) + list(malformed_split_rows),
                                         '\r\n'))
  _write_text(paths['test_csv'], _lines([f'{s},{stems[s]}' for s in test], '\r\n'))
  _write_text(paths['stat_csv'], '\ufeff' + _lines(CREMA_D_CLASSES, '\r\n'))
  return {
      'root': root, 'classes': CREMA_D_CLASSES, 'stems': sorted(stems), 'train': train,
      'test': test, 'labels': dict(stems), 'wav': wavs, 'video': videos, 'frames': frames,
      'frame_names': CREMA_D_FRAME_NAMES, 'paths': paths,
  }


# ----------------------------------------------------------------------------- AVE


def ave_video_id(class_index: int, k: int) -> str:
  """The fixture's 11-character YouTube-like id of video k of class `class_index`.

  Drawn from a fixed seed over [A-Za-z0-9-_]; ave_video_id(0, 0) starts with
  '-' (as some real ids do), so tools that take it for an option fail.
  """
  rng = np.random.RandomState(1000 + 97 * class_index + k)
  chars = ''.join(rng.choice(list(_YOUTUBE_ALPHABET), 11))
  return '-' + chars[1:] if (class_index, k) == (0, 0) else chars


def ave_row(category: str, video_id: str, start: int, end: int) -> str:
  """'Category&VideoID&good&Start&End'."""
  return '&'.join([category, video_id, 'good', str(start), str(end)])


def make_ave(root: str, *, classes=AVE_CLASSES, ids_per_class: int = 2, clip_seconds: int = 4,
             missing_video=(), video_without_audio=(), corrupt_video=(), extra_split_rows=(),
             malformed_split_rows=()) -> dict:
  """Writes a tiny AVE under `root`.

  Per class c: videos ave_video_id(c, k) for k < ids_per_class - 1 are train,
  k = ids_per_class - 1 is test, and one more, k = ids_per_class, is val.
  Layout: `AVE/<VideoID>.mp4` (clip_seconds long, 30 fps 64x48 test pattern,
  44.1 kHz AAC sine at a frequency per class); `Annotations.txt` (header
  line, then every row sorted by VideoID); `trainSet.txt`, `valSet.txt`,
  `testSet.txt` ('&'-separated `Category&VideoID&good&Start&End`, no
  header, LF).  Train and val rows use the segment 1&3, test rows the whole
  clip 0&clip_seconds; video ave_video_id(0, 0) (a train video) appears a
  second time, first in trainSet.txt, with the whole clip.  testSet.txt lists the
  classes in `classes` order (the class index order; the default is not
  alphabetical) and trainSet.txt in the reverse order.

  Bad input (video ids): `missing_video` rows have no mp4; `video_without_audio`
  mp4s have no audio track; `corrupt_video` mp4s are garbage bytes;
  `extra_split_rows` and then `malformed_split_rows` are raw lines appended to
  trainSet.txt.

  Returns:
    dict with 'root', 'classes' (index order), 'train' / 'val' / 'test'
    (rows as (category, video_id, start, end) in file order, without the
    appended rows), 'labels' ({video_id: category}), 'videos' ({video_id:
    path}; a missing video keeps its would-be path), 'duplicate_id', and
    'paths' (video_dir, annotations, train, val, test).
  """
  if ids_per_class < 2:
    raise ValueError('ids_per_class must be at least 2 (train and test)')
  if clip_seconds <= AVE_SEGMENT[1]:
    raise ValueError(f'clip_seconds must exceed the segment end {AVE_SEGMENT[1]}')
  full = (0, int(clip_seconds))
  rows = {'train': [], 'val': [], 'test': []}
  for c, category in enumerate(classes):
    for k in range(ids_per_class + 1):
      split = 'train' if k < ids_per_class - 1 else ('test' if k == ids_per_class - 1 else 'val')
      start, end = full if split == 'test' else AVE_SEGMENT
      rows[split].append((category, ave_video_id(c, k), start, end))
  rows['train'].sort(key=lambda r: classes.index(r[0]), reverse=True)
  duplicate = (classes[0], ave_video_id(0, 0)) + full  # already in train with 1&3
  rows['train'].insert(0, duplicate)
  labels = {vid: category for split in rows.values() for category, vid, _, _ in split}
  _unknown(list(missing_video) + list(video_without_audio) + list(corrupt_video), labels,
           'video ids')

  paths = {
      'video_dir': os.path.join(root, 'AVE'),
      'annotations': os.path.join(root, 'Annotations.txt'),
      'train': os.path.join(root, 'trainSet.txt'),
      'val': os.path.join(root, 'valSet.txt'),
      'test': os.path.join(root, 'testSet.txt'),
  }
  os.makedirs(paths['video_dir'], exist_ok=True)
  videos = {}
  for vid, category in sorted(labels.items()):
    videos[vid] = os.path.join(paths['video_dir'], vid + '.mp4')
    if vid in corrupt_video:
      with open(videos[vid], 'wb') as f:
        f.write(_GARBAGE)
    elif vid not in missing_video:
      write_video(videos[vid], clip_seconds, with_audio=vid not in video_without_audio,
                  frequency=300.0 + 200.0 * classes.index(category))

  everything = sorted(rows['train'] + rows['val'] + rows['test'], key=lambda r: (r[1], r[2]))
  _write_text(paths['annotations'], _lines([AVE_HEADER] + [ave_row(*r) for r in everything], '\n'))
  _write_text(paths['train'], _lines([ave_row(*r) for r in rows['train']] + list(extra_split_rows)
                                     + list(malformed_split_rows), '\n'))
  _write_text(paths['val'], _lines([ave_row(*r) for r in rows['val']], '\n'))
  _write_text(paths['test'], _lines([ave_row(*r) for r in rows['test']], '\n'))
  return {
      'root': root, 'classes': tuple(classes), 'train': rows['train'], 'val': rows['val'],
      'test': rows['test'], 'labels': labels, 'videos': videos, 'duplicate_id': duplicate[1],
      'paths': paths,
  }
