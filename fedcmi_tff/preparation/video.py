"""Video frames and soundtracks through the ffmpeg command line, and existing frame folders.

Frame rule (`extract_frames`): at `fps` = 1 the first frame of each second,
as the authors' OpenCV code keeps frame indices 0, fps, 2 fps, ... .  Seconds
are counted from the clip's first video frame (or from `start_seconds` when
the clip is restricted), using the frames' timestamps: a frame with relative
time u is kept when it is the first frame with floor(u * fps) = k, for
k = 0, 1, ...  A segment is half-open, [start, end), as is the audio segment
of `audio.segment`.

Padding rule: when fewer than `min_frames` frames come out (a short clip or
segment), all N frames of the segment are decoded and the frames with indices
floor(i * N / min_frames), i = 0..min_frames-1, are returned instead: evenly
spaced, in temporal order, starting at the segment's first frame, and
repeated when N < min_frames.  Deterministic, unlike the authors' random
extra frames.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import tensorflow as tf

from fedcmi_tff.preparation import audio
from fedcmi_tff.preparation import raw_files

_JPEG_SUFFIXES = ('.jpg', '.jpeg')
_JPEG_MAGIC = b'\xff\xd8'
_TIME_EPSILON = 1e-6  # seconds; absorbs float error in frame timestamps
_NUMBER = re.compile(r'\d+')


class VideoDecodeError(ValueError):
  """A video or frame that cannot be read: the message names the file and the reason.

  Attributes:
    path: the file or frame folder.
    reason: why.
    unreadable: the file itself cannot be read (missing, not a regular file, no
      permission, I/O error), as opposed to content that does not decode.
  """

  def __init__(self, path: str, reason: str, unreadable: bool = False):
    super().__init__(f'cannot read {raw_files.quote(path)}: {reason}')
    self.path = path
    self.reason = reason
    self.unreadable = unreadable


def ffmpeg_path() -> str:
  """The ffmpeg executable on PATH.

  Raises:
    FileNotFoundError: ffmpeg is not installed.
  """
  found = shutil.which('ffmpeg')
  if found is None:
    raise FileNotFoundError(
        'ffmpeg is not on PATH. Install Debian\'s `ffmpeg` package (scripts/setup.sh does: '
        '`apt-get install --no-install-recommends ffmpeg`), or pass an existing frame folder '
        '(e.g. CREMA-D Image-01-FPS/<clip>/) instead of the video.')
  return found


def _last_line(text: str) -> str:
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else 'no message'


def _ffmpeg(video_path: str, arguments: list) -> subprocess.CompletedProcess:
  """Runs `ffmpeg -i video_path *arguments` quietly, capturing its error messages."""
  command = [ffmpeg_path(), '-nostdin', '-hide_banner', '-loglevel', 'error', '-y',
             '-i', os.path.abspath(video_path)] + arguments
  return subprocess.run(command, capture_output=True, text=True, check=False)


def _raise_on_failure(video_path: str, result: subprocess.CompletedProcess) -> None:
  if result.returncode != 0:
    raise VideoDecodeError(video_path, f'ffmpeg failed: {_last_line(result.stderr)}')


def _check_video_file(video_path: str) -> None:
  """A FIFO or device is refused before ffmpeg opens it (it would block)."""
  try:
    raw_files.check_readable(video_path)
  except raw_files.UnreadableFile as e:
    raise VideoDecodeError(video_path, e.reason, unreadable=True) from None


def _segment_condition(start_seconds: float, end_seconds: float | None) -> str:
  """ffmpeg expression: the frame lies in [start, end) (times relative to the first frame)."""
  condition = f'gte(t-start_t+{_TIME_EPSILON}\\,{start_seconds!r})'
  if end_seconds is not None:
    condition += f'*lt(t-start_t+{_TIME_EPSILON}\\,{end_seconds!r})'
  return condition


def _first_frame_per_period_condition(start_seconds: float, fps: float) -> str:
  """ffmpeg expression: the frame is the first of its 1/fps period since `start_seconds`."""
  def period(time):
    return f'floor(({time}-start_t-{start_seconds!r}+{_TIME_EPSILON})*{fps!r})'
  return f'(isnan(prev_selected_t)+gt({period("t")}\\,{period("prev_selected_t")}))'


def _extract_selected(video_path: str, select_expression: str) -> list[bytes]:
  """JPEG bytes of the frames `select_expression` keeps, in temporal order."""
  with tempfile.TemporaryDirectory(prefix='fedcmi_frames_') as folder:
    _raise_on_failure(video_path, _ffmpeg(video_path, [
        '-an', '-vf', f"select='{select_expression}'", '-vsync', 'vfr', '-q:v', '2',
        os.path.join(folder, '%06d.jpg')]))
    names = sorted(os.listdir(folder), key=_frame_number)
    frames = []
    for name in names:
      with open(os.path.join(folder, name), 'rb') as f:
        frames.append(f.read())
  return frames


def _evenly_spaced(frames: list[bytes], count: int) -> list[bytes]:
  """frames[floor(i * N / count)] for i = 0..count-1 (repeats frames when N < count)."""
  indices = (np.arange(count) * len(frames)) // count
  return [frames[i] for i in indices]


def extract_frames(video_path: str, *, fps: float = 1.0, start_seconds: float | None = None,
                   end_seconds: float | None = None, min_frames: int = 1) -> list[bytes]:
  """JPEG bytes of the clip's frames at `fps`, in temporal order (module docstring).

  Args:
    video_path: any container ffmpeg reads (.flv, .mp4, ...).
    fps: frames kept per second; 1.0 keeps the first frame of each second.
    start_seconds: restrict to times >= start (seconds from the first frame).
    end_seconds: restrict to times < end.
    min_frames: when fewer frames than this come out, return this many frames
      evenly spaced over the segment instead.

  Returns:
    list of JPEG-encoded frames (bytes), at least `min_frames` long.

  Raises:
    VideoDecodeError: missing file, ffmpeg failure, or no frame in the segment.
    FileNotFoundError: ffmpeg is not installed.
  """
  if fps <= 0:
    raise ValueError(f'fps must be positive, got {fps}')
  if min_frames < 1:
    raise ValueError(f'min_frames must be at least 1, got {min_frames}')
  start = 0.0 if start_seconds is None else float(start_seconds)
  if start < 0 or (end_seconds is not None and end_seconds <= start):
    raise ValueError(f'invalid segment [{start_seconds}, {end_seconds}]')
  _check_video_file(video_path)
  in_segment = _segment_condition(start, end_seconds)
  frames = _extract_selected(
      video_path, f'{in_segment}*{_first_frame_per_period_condition(start, float(fps))}')
  if len(frames) < min_frames:
    every_frame = _extract_selected(video_path, in_segment)
    frames = _evenly_spaced(every_frame, min_frames) if every_frame else []
  if not frames:
    raise VideoDecodeError(video_path, f'no video frame in [{start}, {end_seconds}) s')
  return frames


def extract_audio(video_path: str, sample_rate: int = 16000) -> np.ndarray:
  """The first audio track as float32 mono samples in [-1, 1] at `sample_rate`.

  ffmpeg downmixes and resamples (`-vn -ac 1 -ar <rate>`) into a temporary
  16-bit WAV that `audio.read_wav` reads.

  Raises:
    VideoDecodeError: missing file, no audio track, or ffmpeg failure.
    FileNotFoundError: ffmpeg is not installed.
  """
  _check_video_file(video_path)
  with tempfile.TemporaryDirectory(prefix='fedcmi_audio_') as folder:
    wav = os.path.join(folder, 'audio.wav')
    result = _ffmpeg(video_path, ['-map', '0:a:0', '-vn', '-ac', '1', '-ar', str(int(sample_rate)),
                                  '-c:a', 'pcm_s16le', wav])
    if result.returncode != 0 and 'matches no streams' in result.stderr:
      raise VideoDecodeError(video_path, 'the video has no audio track')
    _raise_on_failure(video_path, result)
    try:
      return audio.read_wav(wav, sample_rate)
    except audio.AudioDecodeError as e:
      raise VideoDecodeError(video_path, f'its audio track decodes to nothing ({e.reason})') from e


def _frame_number(name: str) -> int:
  """The last integer in a frame file name: '00030.jpg' -> 30, 'frame_0001.jpg' -> 1."""
  numbers = _NUMBER.findall(os.path.splitext(name)[0])
  if not numbers:
    raise ValueError(name)
  return int(numbers[-1])


def _check_jpeg(path: str, data: bytes) -> None:
  """Raises VideoDecodeError naming `path` unless `data` is a JPEG that decodes."""
  if not data.startswith(_JPEG_MAGIC):
    raise VideoDecodeError(path, 'not a JPEG file')
  try:
    tf.io.decode_jpeg(data)
  except tf.errors.OpError as e:
    reason = re.sub(r'\s*\[Op:[^\]]*\].*$', '', e.message.split('}}')[-1]).strip()
    raise VideoDecodeError(path, f'corrupt JPEG ({reason})') from e


def read_frame_folder(folder: str) -> list[bytes]:
  """JPEG bytes of the frames in `folder`, ordered by the frame number in their names.

  E.g. CREMA-D's `Image-01-FPS/<clip>/00000.jpg, 00030.jpg, ...`: files ending
  in .jpg/.jpeg (any case) sorted by the last integer in their name (not by
  `os.listdir` order); other files are ignored.  Every frame is checked to
  decode with `tf.io.decode_jpeg`.

  Raises:
    VideoDecodeError: the folder is missing or has no JPEG, a JPEG has no frame
      number in its name, two JPEGs have the same number, a JPEG is corrupt, or
      one is not a readable regular file (`unreadable` set; a FIFO is refused
      before it is opened); naming that file.
  """
  if not os.path.isdir(folder):
    raise VideoDecodeError(folder, 'no such frame folder')
  try:
    names = [n for n in os.listdir(folder) if n.lower().endswith(_JPEG_SUFFIXES)]
  except OSError as e:
    raise VideoDecodeError(folder, f'cannot list the folder ({e.strerror})',
                           unreadable=True) from None
  if not names:
    raise VideoDecodeError(folder, 'the frame folder has no .jpg file')
  numbered = {}
  for name in names:
    try:
      number = _frame_number(name)
    except ValueError:
      raise VideoDecodeError(os.path.join(folder, name), 'no frame number in the file name') from None
    if number in numbered:
      raise VideoDecodeError(os.path.join(folder, name),
                             f'same frame number {number} as {numbered[number]!r}')
    numbered[number] = name
  frames = []
  for number in sorted(numbered):
    path = os.path.join(folder, numbered[number])
    try:
      data = raw_files.read_regular_file(path)  # a FIFO is refused, not waited on
    except raw_files.UnreadableFile as e:
      raise VideoDecodeError(path, e.reason, unreadable=True) from None
    _check_jpeg(path, data)
    frames.append(data)
  return frames
