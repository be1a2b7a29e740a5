"""Audio decoding and spectrogram recipes (preparation/audio.py), ffmpeg frames and soundtracks
(preparation/video.py), and the raw-layout fixtures (tests/av_fixtures.py)."""

import csv
import os
import wave

import numpy as np
import pytest
import tensorflow as tf

from fedcmi_tff.preparation import audio
from fedcmi_tff.preparation import video
from tests import av_fixtures as fx

# ----------------------------------------------------------------------------- independent reference


def _reference_tile_and_clip(clip, num_samples):
  out = []
  while len(out) < num_samples:
    out.extend(clip.tolist())
  return np.array([min(1.0, max(-1.0, v)) for v in out[:num_samples]])


def _reference_periodic_tukey(length, alpha):
  """Tukey window: cosine tapers over the first and last alpha/2 of the span, 1 between.

  Periodic (what scipy uses for spectra) = the symmetric window of length + 1
  without its last point.
  """
  span = length  # symmetric length + 1 points -> positions n / length
  x = np.arange(length + 1) / span
  w = np.ones(length + 1)
  rise, fall = x < alpha / 2, x > 1 - alpha / 2
  w[rise] = 0.5 * (1 - np.cos(2 * np.pi * x[rise] / alpha))
  w[fall] = 0.5 * (1 - np.cos(2 * np.pi * (1 - x[fall]) / alpha))
  return w[:length]


def _reference_periodic_hann(length):
  return np.array([np.sin(np.pi * n / length)**2 for n in range(length)])


def _dft_rows(n_fft):
  """The first n_fft // 2 + 1 rows of the DFT matrix, exp(-2 pi i k n / n_fft)."""
  k = np.arange(n_fft // 2 + 1)[:, None]
  n = np.arange(n_fft)[None, :]
  return np.exp(-2j * np.pi * k * n / n_fft)


def _reference_scipy_recipe(clip, sample_rate, seconds):
  x = _reference_tile_and_clip(clip, int(sample_rate * seconds))
  window, dft = _reference_periodic_tukey(512, 0.25), _dft_rows(512)
  hop = 512 - 353
  columns = []
  for start in range(0, len(x) - 512 + 1, hop):
    frame = x[start:start + 512]
    frame = frame - frame.mean()  # detrend='constant'
    power = np.abs(dft @ (frame * window))**2 / (sample_rate * np.sum(window**2))
    power[1:-1] *= 2  # one-sided: every bin but DC and Nyquist carries its mirror
    columns.append(power)
  log_power = np.log(np.stack(columns, axis=1) + 1e-7)
  mean = log_power.mean()
  std = np.sqrt(np.mean((log_power - mean)**2))
  return (log_power - mean) / (std + 1e-9)


def _reference_stft_recipe(clip, sample_rate, seconds):
  x = _reference_tile_and_clip(clip, int(round(sample_rate * seconds)))
  padded = np.concatenate([np.zeros(256), x, np.zeros(256)])
  window, dft = _reference_periodic_hann(512), _dft_rows(512)
  columns = [np.abs(dft @ (padded[s:s + 512] * window)) for s in range(0, len(x) + 1, 353)]
  return np.log(np.stack(columns, axis=1) + 1e-7)


def _random_clip(seed, samples):
  """Uniform noise reaching beyond [-1, 1] (to exercise clipping) with a silent stretch."""
  clip = np.random.RandomState(seed).uniform(-1.3, 1.3, samples)
  clip[samples // 3:samples // 3 + 1200] = 0.0  # whole frames of silence: the 1e-7 floor matters
  return clip


# ----------------------------------------------------------------------------- spectrogram recipes


def test_recipe_table():
  assert set(audio.RECIPES) == {'scipy_16k_3s', 'stft_22k_3s', 'scipy_16k_10s'}
  assert audio.SCIPY_16K_3S.output_shape == (257, 299)
  assert audio.STFT_22K_3S.output_shape == (257, 188)
  assert audio.STFT_22K_3S.num_samples == 66150
  assert audio.SCIPY_16K_10S.output_shape == (257, 1004)
  assert audio.SCIPY_16K_10S.num_samples == 160000
  with pytest.raises(ValueError, match='method'):
    audio.SpectrogramRecipe('bad', 16000, 3.0, 'mel', True)


@pytest.mark.parametrize('file_rate', [16000, 22050])
@pytest.mark.parametrize('name, shape', [('scipy_16k_3s', (257, 299)), ('stft_22k_3s', (257, 188)),
                                         ('scipy_16k_10s', (257, 1004))])
def test_spectrogram_shape_from_1s_sine_wav(tmp_path, file_rate, name, shape):
  path = fx.write_wav(str(tmp_path / 'sine.wav'), fx.sine(440.0, 1.0, file_rate), file_rate)
  recipe = audio.RECIPES[name]
  spectrogram = audio.spectrogram_from_wav(path, recipe)
  assert spectrogram.shape == shape == recipe.output_shape
  assert spectrogram.dtype == np.float32
  assert np.all(np.isfinite(spectrogram))
  if recipe.normalise:
    assert abs(float(spectrogram.mean())) < 1e-4
    assert abs(float(spectrogram.std()) - 1.0) < 1e-4
  # The 440 Hz line is the loudest row: bin 440 / (rate / 512).
  peak_bin = int(np.argmax(spectrogram.mean(axis=1)))
  assert peak_bin == round(440.0 / (recipe.sample_rate / 512))


@pytest.mark.parametrize('recipe', [audio.SCIPY_16K_3S, audio.SCIPY_16K_10S], ids=lambda r: r.name)
def test_scipy_recipe_matches_numpy_reference(recipe):
  clip = _random_clip(0, 5900)
  expected = _reference_scipy_recipe(clip, recipe.sample_rate, recipe.seconds)
  np.testing.assert_allclose(audio.log_spectrogram(clip, recipe), expected, rtol=1e-5, atol=1e-5)


def test_stft_recipe_matches_numpy_reference():
  clip = _random_clip(1, 9000)
  expected = _reference_stft_recipe(clip, 22050, 3.0)
  assert expected.shape == (257, 188)
  np.testing.assert_allclose(audio.log_spectrogram(clip, audio.STFT_22K_3S), expected,
                             rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- reading and shaping audio


def test_read_wav_resamples_22k_sine_to_16k_keeping_440hz(tmp_path):
  path = fx.write_wav(str(tmp_path / 'a.wav'), fx.sine(440.0, 1.0, 22050), 22050)
  samples = audio.read_wav(path, 16000)
  assert samples.dtype == np.float32 and samples.shape == (16000,)
  spectrum = np.abs(np.fft.rfft(samples))  # 1-Hz bins over one second
  assert int(np.argmax(spectrum)) == 440
  assert np.max(np.abs(samples)) == pytest.approx(0.5, abs=0.02)


def test_read_wav_scales_int16_and_downmixes_by_mean(tmp_path):
  left = fx.sine(300.0, 0.25, 16000, amplitude=0.5)
  stereo = np.stack([left, -0.5 * left], axis=1)
  path = fx.write_wav(str(tmp_path / 'stereo.wav'), stereo, 16000)
  with wave.open(path) as w:
    pcm = np.frombuffer(w.readframes(w.getnframes()), '<i2').reshape(-1, 2)
  expected = (pcm[:, 0] / 32768.0 + pcm[:, 1] / 32768.0) / 2
  np.testing.assert_allclose(audio.read_wav(path, 16000), expected, atol=1e-7)


def test_tile_and_cut_repeats_exactly_and_clips():
  clip = np.random.RandomState(2).uniform(-0.9, 0.9, 16000).astype(np.float32)
  tiled = audio.tile_and_cut(clip, 48000)
  np.testing.assert_array_equal(tiled, np.concatenate([clip, clip, clip]))
  short = np.array([0.5, 1.5, -2.0, 0.25])
  np.testing.assert_array_equal(audio.tile_and_cut(short, 10),
                                [0.5, 1.0, -1.0, 0.25, 0.5, 1.0, -1.0, 0.25, 0.5, 1.0])
  np.testing.assert_array_equal(audio.tile_and_cut(clip, 100), clip[:100])
  with pytest.raises(ValueError):
    audio.tile_and_cut(np.zeros(0), 10)


def test_segment_clamps_to_the_clip_and_rejects_empty():
  samples = np.arange(40.0)  # 4 s at 10 Hz
  np.testing.assert_array_equal(audio.segment(samples, 10, 1, 3), np.arange(10.0, 30.0))
  np.testing.assert_array_equal(audio.segment(samples, 10, 3, 10), np.arange(30.0, 40.0))
  with pytest.raises(ValueError, match='empty'):
    audio.segment(samples, 10, 5, 8)


def test_audio_decode_errors_name_the_file(tmp_path):
  data = fx.make_crema_d(str(tmp_path), with_frame_folders=False,
                         missing_wav=['1001_DFA_ANG_XX'], corrupt_wav=['1002_DFA_HAP_XX'])
  missing, corrupt = data['wav']['1001_DFA_ANG_XX'], data['wav']['1002_DFA_HAP_XX']
  with pytest.raises(audio.AudioDecodeError, match='no such file') as error:
    audio.read_wav(missing, 16000)
  assert missing in str(error.value)
  with pytest.raises(audio.AudioDecodeError) as error:
    audio.spectrogram_from_wav(corrupt, audio.SCIPY_16K_3S)
  assert corrupt in str(error.value)
  empty = fx.write_wav(str(tmp_path / 'empty.wav'), np.zeros(0), 16000)
  with pytest.raises(audio.AudioDecodeError, match='no audio samples') as error:
    audio.read_wav(empty, 16000)
  assert empty in str(error.value)
  assert isinstance(error.value, ValueError)
  good = audio.spectrogram_from_wav(data['wav']['1003_DFA_ANG_XX'], audio.SCIPY_16K_3S)
  assert good.shape == (257, 299)


# ----------------------------------------------------------------------------- video


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
  folder = tmp_path_factory.mktemp('clips')
  return {
      'three': fx.write_video(str(folder / 'three.mp4'), 3),
      'four': fx.write_video(str(folder / 'four.mp4'), 4, frequency=1000.0),
      'silent': fx.write_video(str(folder / 'silent.mp4'), 2, with_audio=False),
  }


def _decoded(frames):
  return [tf.io.decode_jpeg(f).numpy().astype(np.int32) for f in frames]


def test_one_frame_per_second(clips):
  frames = video.extract_frames(clips['three'])
  assert len(frames) == 3
  assert all(image.shape == (48, 64, 3) for image in _decoded(frames))


def test_segment_keeps_the_first_frame_of_each_second_inside_it(clips):
  every_second = _decoded(video.extract_frames(clips['four']))
  assert len(every_second) == 4
  inside = _decoded(video.extract_frames(clips['four'], start_seconds=1, end_seconds=3))
  assert len(inside) == 2
  for got, want in zip(inside, every_second[1:3]):
    assert np.abs(got - want).mean() < 1.0  # the same frames (t = 1 s, 2 s)
  assert np.abs(inside[0] - inside[1]).mean() > 5.0  # testsrc frames differ


def test_min_frames_pads_with_evenly_spaced_frames(clips):
  padded = video.extract_frames(clips['four'], start_seconds=1, end_seconds=3, min_frames=10)
  assert len(padded) == 10
  again = video.extract_frames(clips['four'], start_seconds=1, end_seconds=3, min_frames=10)
  assert padded == again  # deterministic
  first_second = _decoded(video.extract_frames(clips['four'], start_seconds=1, end_seconds=3))[0]
  assert np.abs(_decoded(padded[:1])[0] - first_second).mean() < 1.0  # starts at the segment start
  # 0.5 s of 30-fps video = 15 frames -> indices 0, 5, 10.
  assert len(video.extract_frames(clips['four'], start_seconds=3.5, min_frames=3)) == 3
  with pytest.raises(video.VideoDecodeError, match='no video frame'):
    video.extract_frames(clips['four'], start_seconds=6, end_seconds=8)


def test_extract_audio_length_and_pitch(clips):
  samples = video.extract_audio(clips['four'], 16000)
  assert samples.dtype == np.float32
  assert abs(len(samples) - 4 * 16000) < 0.05 * 16000  # AAC priming adds a few ms
  spectrum = np.abs(np.fft.rfft(samples[:16000]))
  assert int(np.argmax(spectrum)) == 1000
  with pytest.raises(video.VideoDecodeError, match='no audio track') as error:
    video.extract_audio(clips['silent'])
  assert clips['silent'] in str(error.value)


def test_corrupt_and_missing_videos_raise(tmp_path):
  bad = tmp_path / 'bad.mp4'
  bad.write_bytes(b'not a video at all' * 20)
  with pytest.raises(video.VideoDecodeError, match='ffmpeg failed') as error:
    video.extract_frames(str(bad))
  assert str(bad) in str(error.value)
  with pytest.raises(video.VideoDecodeError, match='no such file'):
    video.extract_audio(str(tmp_path / 'absent.mp4'))


def test_ffmpeg_missing_gives_an_actionable_error(monkeypatch):
  monkeypatch.setattr(video.shutil, 'which', lambda name: None)
  with pytest.raises(FileNotFoundError, match='ffmpeg.*setup.sh.*frame folder'):
    video.ffmpeg_path()


def test_read_frame_folder_orders_by_frame_number(tmp_path):
  folder = tmp_path / 'clip'
  written = {}
  for name in ('00120.jpg', '00000.jpg', '00030.jpg'):  # shuffled creation order
    written[name] = fx.write_jpeg(str(folder / name), 8, 8, seed=len(written))
  (folder / 'notes.txt').write_text('ignored')
  assert video.read_frame_folder(str(folder)) == [
      written['00000.jpg'], written['00030.jpg'], written['00120.jpg']]
  unpadded = tmp_path / 'unpadded'
  for number in (120, 0, 30):  # name order would be 0, 120, 30
    written[number] = fx.write_jpeg(str(unpadded / f'frame_{number}.jpg'), 8, 8, seed=number)
  assert video.read_frame_folder(str(unpadded)) == [written[0], written[30], written[120]]


def test_read_frame_folder_errors_name_the_file(tmp_path):
  data = fx.make_crema_d(str(tmp_path), corrupt_jpeg=['1002_DFA_ANG_XX'])
  frames = video.read_frame_folder(data['frames']['1001_DFA_ANG_XX'])
  assert len(frames) == 3
  broken = os.path.join(data['frames']['1002_DFA_ANG_XX'], fx.CREMA_D_CORRUPT_FRAME)
  with pytest.raises(video.VideoDecodeError, match='corrupt JPEG') as error:
    video.read_frame_folder(data['frames']['1002_DFA_ANG_XX'])
  assert broken in str(error.value)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(video.VideoDecodeError, match='no .jpg'):
    video.read_frame_folder(str(tmp_path / 'empty'))
  with pytest.raises(video.VideoDecodeError, match='no such frame folder'):
    video.read_frame_folder(str(tmp_path / 'absent'))


def test_non_regular_files_are_refused_before_they_are_opened(tmp_path):
  fifo_wav = fx.make_fifo(str(tmp_path / 'pipe.wav'))
  with pytest.raises(audio.AudioDecodeError) as error:
    audio.read_wav(fifo_wav, 16000)
  assert error.value.unreadable and error.value.reason == 'a FIFO (named pipe), not a regular file'
  assert fifo_wav in str(error.value)
  (tmp_path / 'folder.wav').mkdir()
  with pytest.raises(audio.AudioDecodeError, match='a folder, not a regular file') as error:
    audio.read_wav(str(tmp_path / 'folder.wav'), 16000)
  assert error.value.unreadable
  with pytest.raises(audio.AudioDecodeError, match='no such file') as error:
    audio.read_wav(str(tmp_path / 'absent.wav'), 16000)
  assert error.value.unreadable
  fifo_video = fx.make_fifo(str(tmp_path / 'pipe.mp4'))
  for read in (video.extract_frames, video.extract_audio):
    with pytest.raises(video.VideoDecodeError, match='a FIFO') as error:
      read(fifo_video)
    assert error.value.unreadable and error.value.path == fifo_video
  folder = tmp_path / 'frames'
  fx.write_jpeg(str(folder / '00000.jpg'), 8, 8, seed=0)
  fx.make_fifo(str(folder / '00030.jpg'))
  with pytest.raises(video.VideoDecodeError, match='00030.jpg.*a FIFO') as error:
    video.read_frame_folder(str(folder))
  assert error.value.unreadable
  corrupt = fx.make_crema_d(str(tmp_path / 'c'), corrupt_jpeg=['1002_DFA_ANG_XX'])
  with pytest.raises(video.VideoDecodeError, match='corrupt JPEG') as error:
    video.read_frame_folder(corrupt['frames']['1002_DFA_ANG_XX'])
  assert not error.value.unreadable  # undecodable content, not an unreadable file


# ----------------------------------------------------------------------------- fixture quirks


def test_crema_d_fixture_layout_and_quirks(tmp_path):
  data = fx.make_crema_d(
      str(tmp_path), with_videos=True, missing_wav=['1002_DFA_ANG_XX'],
      extra_split_rows=['1001_DFA_ANG_XX,XYZ', '1099_DFA_SAD_XX,SAD'],
      malformed_split_rows=['1001_DFA_HAP_XX'])
  paths = data['paths']
  train_bytes = open(paths['train_csv'], 'rb').read()
  lines = train_bytes.split(b'\r\n')
  assert lines[-1] == b'' and all(b'\n' not in line for line in lines)  # CRLF only
  assert lines[0] == b'1002_DFA_HAP_XX,HAP'  # no header
  assert lines[-4:-1] == [b'1001_DFA_ANG_XX,XYZ', b'1099_DFA_SAD_XX,SAD', b'1001_DFA_HAP_XX']
  with open(paths['test_csv'], newline='') as f:
    test_rows = list(csv.reader(f))
  assert {label for _, label in test_rows} == {'ANG', 'HAP'}
  assert len(data['train']) > len(data['test'])
  stat_bytes = open(paths['stat_csv'], 'rb').read()
  assert stat_bytes.startswith(b'\xef\xbb\xbfNEU\r\n')
  with open(paths['stat_csv'], encoding='utf-8-sig', newline='') as f:
    assert [row[0] for row in csv.reader(f)] == list(fx.CREMA_D_CLASSES)
  assert '1002_DFA_ANG_XX' in data['train'] and not os.path.exists(data['wav']['1002_DFA_ANG_XX'])
  with wave.open(data['wav']['1001_DFA_ANG_XX']) as w:
    assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (
        16000, 1, 2, 16000)
  assert sorted(os.listdir(data['frames']['1003_DFA_HAP_XX'])) == list(fx.CREMA_D_FRAME_NAMES)
  flv = data['video']['1003_DFA_HAP_XX']
  assert flv == os.path.join(str(tmp_path), 'VideoFlash', '1003_DFA_HAP_XX.flv')
  assert len(video.extract_frames(flv)) == 1  # a 1-s clip
  assert abs(len(video.extract_audio(flv)) - 16000) < 800


def test_ave_fixture_layout_and_quirks(tmp_path):
  data = fx.make_ave(str(tmp_path), corrupt_video=[fx.ave_video_id(2, 2)],
                     malformed_split_rows=['Bark&onlytwo'])
  paths = data['paths']
  annotations = open(paths['annotations'], encoding='utf-8').read().splitlines()
  assert annotations[0] == fx.AVE_HEADER
  assert len(annotations) == 1 + len(data['train']) + len(data['val']) + len(data['test'])
  for split in ('train', 'val', 'test'):
    first = open(paths[split], encoding='utf-8').readline()
    assert not first.startswith('Category&')  # no header
  test_rows = [line.rstrip('\n').split('&') for line in open(paths['test'], encoding='utf-8')]
  assert all(len(row) == 5 and row[2] == 'good' for row in test_rows)
  order = list(dict.fromkeys(row[0] for row in test_rows))
  assert order == list(fx.AVE_CLASSES) != sorted(order)
  assert any(',' in name for name in order) and any('(' in name for name in order)
  train_rows = [line.rstrip('\n').split('&') for line in open(paths['train'], encoding='utf-8')]
  assert train_rows[-1] == ['Bark', 'onlytwo']
  segments = [(int(r[3]), int(r[4])) for r in train_rows[:-1] if r[1] == data['duplicate_id']]
  assert len(segments) == 2 and segments[0] != segments[1]
  assert data['duplicate_id'].startswith('-')
  first_train_order = list(dict.fromkeys(row[0] for row in train_rows[:-1]))
  assert first_train_order != order
  for vid in data['labels']:
    assert os.path.exists(os.path.join(str(tmp_path), 'AVE', vid + '.mp4'))
  clip = data['videos'][data['duplicate_id']]
  assert len(video.extract_frames(clip, start_seconds=1, end_seconds=3)) == 2
  assert abs(len(video.extract_audio(clip)) - 4 * 16000) < 800
  with pytest.raises(video.VideoDecodeError):
    video.extract_frames(data['videos'][fx.ave_video_id(2, 2)])
