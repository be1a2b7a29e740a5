"""Audio decoding and the log-spectrogram recipes of the FedCMI / PMR / OGM-GE code.

A recipe turns a mono clip into a `(257, steps)` float32 log-spectrogram:

1. `tile_and_cut`: repeat the clip until it fills `recipe.seconds` and truncate
   it to `recipe.num_samples`, then clip to [-1, 1] (the authors tile x3, which
   is enough for CREMA-D's > 1-s clips; we tile as often as needed).
2. a power (`'scipy'`) or magnitude (`'stft'`) spectrogram with a 512-point FFT,
3. `log(S + 1e-7)`, and for the scipy recipes a z-normalisation by the clip's
   own mean and standard deviation, `(L - mean) / (std + 1e-9)`.

The `'scipy'` method is `scipy.signal.spectrogram(x, fs, nperseg=512,
noverlap=353)` with scipy's other defaults: a periodic Tukey window
(alpha = 0.25), per-frame mean removal (`detrend='constant'`), one-sided density
scaling `2 |X_k|^2 / (fs * sum(w^2))` (the DC and Nyquist bins are not
doubled), no padding, hop 512 - 353 = 159.  `fs` is the recipe's sample rate:
the authors' preprocessing scripts pass the clip's rate as scipy's second
(positional) argument, which divides the density by fs before the 1e-7 floor.
The `'stft'` method is librosa's `stft(n_fft=512, hop_length=353)` as of
librosa 0.10: periodic Hann window, the signal centred by zero-padding 256
samples on each side, `|X_k|`.  Both are computed in float64 and returned as
float32.

Shapes: 16 kHz x 3 s -> (257, 299); 22.05 kHz x 3 s -> (257, 188);
16 kHz x 10 s -> (257, 1004).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading

import numpy as np
from scipy import signal
import tensorflow as tf
import tensorflow_io as tfio

from fedcmi_tff.data import prepared
from fedcmi_tff.preparation import raw_files

N_FFT = 512
FREQUENCY_BINS = N_FFT // 2 + 1  # 257
SCIPY_NOVERLAP = 353  # scipy recipe: overlap between frames, so the hop is 512 - 353 = 159
STFT_HOP = 353  # STFT recipe: hop between frames
LOG_FLOOR = 1e-7  # log(S + LOG_FLOOR)
STD_FLOOR = 1e-9  # (L - mean) / (std + STD_FLOOR)
METHODS = ('scipy', 'stft')
# tensorflow-io's AudioIOTensor is not thread-safe: two threads opening files at once can find
# each other's reader resource gone ("... AudioReadableResource does not exist").  Preparation
# programs decode clips in threads, so opening and reading a file is serialised.
_TFIO_LOCK = threading.Lock()


class AudioDecodeError(ValueError):
  """An audio file that cannot be read: the message names the file and the reason.

  Attributes:
    path: the file.
    reason: why.
    unreadable: the file itself cannot be read (missing, not a regular file, no
      permission, I/O error), as opposed to content that does not decode.
  """

  def __init__(self, path: str, reason: str, unreadable: bool = False):
    super().__init__(f'cannot read audio file {raw_files.quote(path)}: {reason}')
    self.path = path
    self.reason = reason
    self.unreadable = unreadable


@dataclasses.dataclass(frozen=True)
class SpectrogramRecipe:
  """How a clip becomes a log-spectrogram (see the module docstring).

  Attributes:
    name: key in `RECIPES`.
    sample_rate: the rate (Hz) the clip must have before `log_spectrogram`.
    seconds: the clip is tiled and cut to this duration.
    method: 'scipy' (density power spectrogram, no centring) or 'stft'
      (centred magnitude STFT).
    normalise: z-normalise the log-spectrogram by its own mean and std.
  """

  name: str
  sample_rate: int
  seconds: float
  method: str
  normalise: bool

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'recipe {self.name!r}: method must be one of {METHODS}, got {self.method!r}')
    if self.sample_rate <= 0 or self.seconds <= 0:
      raise ValueError(f'recipe {self.name!r}: sample_rate and seconds must be positive')
    if self.method == 'scipy' and self.num_samples < N_FFT:
      raise ValueError(f'recipe {self.name!r}: {self.num_samples} samples are fewer than one '
                       f'{N_FFT}-sample frame')

  @property
  def num_samples(self) -> int:
    """Samples after `tile_and_cut`: round(sample_rate * seconds)."""
    return int(round(self.sample_rate * self.seconds))

  @property
  def output_shape(self) -> tuple:
    """(257, steps) of `log_spectrogram` under this recipe."""
    if self.method == 'scipy':
      steps = (self.num_samples - N_FFT) // (N_FFT - SCIPY_NOVERLAP) + 1
    else:
      steps = 1 + self.num_samples // STFT_HOP
    return (FREQUENCY_BINS, steps)


SCIPY_16K_3S = SpectrogramRecipe('scipy_16k_3s', 16000, 3.0, 'scipy', True)
STFT_22K_3S = SpectrogramRecipe('stft_22k_3s', 22050, 3.0, 'stft', False)
SCIPY_16K_10S = SpectrogramRecipe('scipy_16k_10s', 16000, 10.0, 'scipy', True)
RECIPES = {r.name: r for r in (SCIPY_16K_3S, STFT_22K_3S, SCIPY_16K_10S)}


def _op_error_reason(error: tf.errors.OpError) -> str:
  """A TF op error message without the '{{function_node ...}}' prefix and '[Op:...]' suffix."""
  text = re.sub(r'\{\{[^}]*\}\}\s*', '', error.message)
  return re.sub(r'\s*\[Op:[^\]]*\].*$', '', text).strip() or type(error).__name__


def _samples_as_float(samples: np.ndarray, path: str) -> np.ndarray:
  """Decoded PCM of any stored sample format as float in [-1, 1]."""
  if samples.dtype == np.int16:
    return samples.astype(np.float32) / 32768.0
  if samples.dtype == np.int32:  # 24- and 32-bit PCM, scaled to the int32 range
    return (samples.astype(np.float64) / 2.0**31).astype(np.float32)
  if samples.dtype == np.uint8:
    return (samples.astype(np.float32) - 128.0) / 128.0
  if samples.dtype in (np.float32, np.float64):
    return samples.astype(np.float32)
  raise AudioDecodeError(path, f'unsupported sample format {samples.dtype}')


def read_wav(path: str, sample_rate: int) -> np.ndarray:
  """Reads an audio file as float32 mono samples in [-1, 1] at `sample_rate`.

  Decoded with `tfio.audio.AudioIOTensor` (WAV as 8/16/24/32-bit PCM or float;
  also FLAC, Ogg and MP3), channels averaged, resampled with
  `tfio.audio.resample` when the file's rate differs, then clipped to [-1, 1]
  (resampling can overshoot slightly).

  Args:
    path: the audio file.
    sample_rate: the wanted rate in Hz.

  Returns:
    float32 array of shape [samples].

  Raises:
    AudioDecodeError: the file is missing, not a regular file or unreadable
      (`unreadable` set), undecodable or has no samples.
  """
  if sample_rate <= 0:
    raise ValueError(f'sample_rate must be positive, got {sample_rate}')
  try:
    raw_files.check_readable(path)  # a FIFO or device is refused before it is opened
  except raw_files.UnreadableFile as e:
    raise AudioDecodeError(path, e.reason, unreadable=True) from None
  if os.path.getsize(path) == 0:
    raise AudioDecodeError(path, 'the file is empty')
  try:
    with _TFIO_LOCK:
      io_tensor = tfio.audio.AudioIOTensor(path)
      file_rate = int(io_tensor.rate.numpy())
      stored = io_tensor.to_tensor().numpy()
  except tf.errors.OpError as e:
    raise AudioDecodeError(path, f'cannot decode ({_op_error_reason(e)})') from e
  if stored.ndim != 2 or stored.shape[0] == 0 or stored.shape[1] == 0:
    raise AudioDecodeError(path, f'no audio samples (decoded shape {stored.shape})')
  if file_rate <= 0:
    raise AudioDecodeError(path, f'invalid sample rate {file_rate}')
  mono = _samples_as_float(stored, path).mean(axis=1, dtype=np.float32)
  if file_rate != sample_rate:
    mono = tfio.audio.resample(tf.constant(mono), rate_in=file_rate, rate_out=sample_rate).numpy()
    if mono.size == 0:
      raise AudioDecodeError(path, f'no samples left after resampling {file_rate} Hz -> {sample_rate} Hz')
  return np.clip(mono, -1.0, 1.0).astype(np.float32)


def segment(samples: np.ndarray, sample_rate: int, start_seconds: float,
            end_seconds: float) -> np.ndarray:
  """samples[round(start * rate) : round(end * rate)], the interval clamped to the clip.

  Raises:
    ValueError: the clamped segment is empty.
  """
  samples = np.asarray(samples)
  start = min(max(int(round(start_seconds * sample_rate)), 0), len(samples))
  end = min(max(int(round(end_seconds * sample_rate)), 0), len(samples))
  if end <= start:
    raise ValueError(f'segment [{start_seconds}, {end_seconds}] s is empty in a clip of '
                     f'{len(samples) / sample_rate:.3f} s ({len(samples)} samples at {sample_rate} Hz)')
  return samples[start:end]


def tile_and_cut(samples: np.ndarray, num_samples: int) -> np.ndarray:
  """The clip repeated ceil(num_samples / len) times, cut to `num_samples`, clipped to [-1, 1].

  Raises:
    ValueError: `samples` is empty or `num_samples` is not positive.
  """
  samples = np.asarray(samples)
  samples = samples.astype(np.result_type(samples.dtype, np.float32), copy=False)
  if samples.ndim != 1 or samples.size == 0:
    raise ValueError(f'need a non-empty 1-D clip, got shape {samples.shape}')
  if num_samples <= 0:
    raise ValueError(f'num_samples must be positive, got {num_samples}')
  repeats = math.ceil(num_samples / samples.size)
  return np.clip(np.tile(samples, repeats)[:num_samples], -1.0, 1.0)


def _scipy_power(samples: np.ndarray, sample_rate: int) -> np.ndarray:
  """scipy.signal.spectrogram power, one-sided density, [257, steps]."""
  _, _, power = signal.spectrogram(samples, sample_rate, nperseg=N_FFT, noverlap=SCIPY_NOVERLAP)
  return power


def _periodic_hann(length: int) -> np.ndarray:
  """w[n] = 0.5 - 0.5 cos(2 pi n / length), n = 0..length-1."""
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _centred_stft_magnitude(samples: np.ndarray) -> np.ndarray:
  """|STFT| with librosa's centring (zero padding of N_FFT // 2 each side), [257, steps]."""
  padded = np.pad(samples, N_FFT // 2, mode='constant')
  steps = 1 + (len(padded) - N_FFT) // STFT_HOP
  frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::STFT_HOP][:steps]
  return np.abs(np.fft.rfft(frames * _periodic_hann(N_FFT), axis=1)).T


def _z_normalise(values: np.ndarray) -> np.ndarray:
  """(values - mean) / (std + STD_FLOOR) over the whole array."""
  return (values - values.mean()) / (values.std() + STD_FLOOR)


def log_spectrogram(samples: np.ndarray, recipe: SpectrogramRecipe) -> np.ndarray:
  """The recipe applied to a mono clip already at `recipe.sample_rate`.

  Args:
    samples: 1-D clip of any length >= 1 (it is tiled and cut here).
    recipe: a `SpectrogramRecipe`, e.g. `SCIPY_16K_3S`.

  Returns:
    float32 array of shape `recipe.output_shape`.
  """
  clip = tile_and_cut(samples, recipe.num_samples).astype(np.float64)
  if recipe.method == 'scipy':
    spectrum = _scipy_power(clip, recipe.sample_rate)
  else:
    spectrum = _centred_stft_magnitude(clip)
  log_spectrum = np.log(spectrum + LOG_FLOOR)
  if recipe.normalise:
    log_spectrum = _z_normalise(log_spectrum)
  assert log_spectrum.shape == recipe.output_shape, (log_spectrum.shape, recipe)
  return log_spectrum.astype(np.float32)


def spectrogram_from_wav(path: str, recipe: SpectrogramRecipe) -> np.ndarray:
  """`log_spectrogram(read_wav(path, recipe.sample_rate), recipe)`."""
  return log_spectrogram(read_wav(path, recipe.sample_rate), recipe)


def audio_visual_modalities(recipe: SpectrogramRecipe) -> tuple:
  """How CREMA-D and AVE store their two modalities: the recipe's spectrogram and
  JPEG frames normalised with ImageNet statistics when loaded."""
  return (prepared.ModalitySpec('audio', 'float_tensor', tuple(recipe.output_shape)),
          prepared.ModalitySpec('visual', 'jpeg_frames', (), normalisation='imagenet'))
