"""Prepares a downloaded dataset once: `python -m fedcmi_tff.prepare --dataset=... --raw_dir=...`.

Writes the prepared format (`fedcmi_tff/data/prepared.py`) to --output_dir, with
a progress bar and a final report of the items read, written and skipped (and
why).  A finished preparation of the same recipe is detected and not redone; an
interrupted one is resumed (example files already written are kept).  Then
train with `python -m fedcmi_tff.train --dataset=<name> --data_dir=<output_dir>`.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from fedcmi_tff.data import prepared  # noqa: E402
from fedcmi_tff.data import registry  # noqa: E402
from fedcmi_tff.preparation import ave  # noqa: E402
from fedcmi_tff.preparation import crema_d  # noqa: E402
from fedcmi_tff.preparation import crisismmd  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_DATASET = flags.DEFINE_enum('dataset', None, list(registry.PREPARED_DATASETS),
                             'Which raw download --raw_dir holds.')
_RAW_DIR = flags.DEFINE_string('raw_dir', None, 'Folder of the raw download.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Folder of the prepared dataset.')
_NUM_THREADS = flags.DEFINE_integer('num_threads', 2, 'Examples decoded in parallel.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
# CREMA-D.
_SPLIT_DIR = flags.DEFINE_string(
    'split_dir', None, 'crema_d: folder of train.csv, test.csv and stat.csv (the OGM-GE / PMR / '
    'FedCMI data/CREMAD files); default --raw_dir.')
_FRAMES_DIR = flags.DEFINE_string(
    'frames_dir', None, 'crema_d: existing 1-fps frame folders <clip>/00000.jpg ...; default '
    '<raw_dir>/Image-01-FPS.')
_FRAME_SOURCE = flags.DEFINE_enum(
    'frame_source', 'auto', list(crema_d.FRAME_SOURCES),
    'crema_d: frames from --frames_dir (folder), from VideoFlash/*.flv with ffmpeg (video), '
    'or the folder when it exists (auto).')
_SPECTROGRAM = flags.DEFINE_enum(
    'spectrogram', 'scipy_16k_3s', ['scipy_16k_3s', 'stft_22k_3s'],
    'crema_d: 257x299 (16 kHz, PMR/FedCMI) or 257x188 (22.05 kHz, OGM-GE) log-spectrogram.')
# CrisisMMD.
_TASK = flags.DEFINE_enum('task', 'informative', list(crisismmd.TASK_CLASSES),
                          'crisismmd: classification task.')
_AGREED = flags.DEFINE_bool('agreed', False,
                            'crisismmd: the agreed-label split files instead of the "all" ones.')
_MAX_LENGTH = flags.DEFINE_integer('max_length', 40, 'crisismmd: tokens per tweet.')
_MAX_TOKENS = flags.DEFINE_integer('max_tokens', 20000, 'crisismmd: vocabulary size.')
_VOCABULARY_FILE = flags.DEFINE_string(
    'vocabulary_file', None, 'crisismmd: fixed vocabulary (one token per line), e.g. to match '
    'a pretrained --text_encoder_path; default: adapted on the training tweets.')

flags.mark_flags_as_required(['dataset', 'raw_dir', 'output_dir'])


def _progress(items, total, desc):
  if not _PROGRESS.value:
    return items
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(items, total=total, desc=desc, unit='ex', file=sys.stderr)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  name, raw_dir, output_dir = _DATASET.value, _RAW_DIR.value, _OUTPUT_DIR.value
  if not os.path.isdir(raw_dir):
    print(f'prepare: error: --raw_dir {raw_dir} is not a folder', file=sys.stderr)
    return 2
  started = time.time()
  if os.path.exists(os.path.join(output_dir, prepared.MANIFEST_NAME)):
    print(f'prepare: {output_dir} holds a finished preparation; checking that its recipe '
          'matches (nothing is redone)')
  common = dict(progress=_progress)
  try:
    if name == 'crema_d':
      manifest = crema_d.prepare_crema_d(
          raw_dir, output_dir, split_dir=_SPLIT_DIR.value, frames_dir=_FRAMES_DIR.value,
          frame_source=_FRAME_SOURCE.value, spectrogram=_SPECTROGRAM.value,
          workers=_NUM_THREADS.value, **common)
    elif name == 'ave':
      manifest = ave.prepare_ave(raw_dir, output_dir, workers=_NUM_THREADS.value, **common)
    else:
      manifest = crisismmd.prepare_crisismmd(
          raw_dir, output_dir, task=_TASK.value, agreed=_AGREED.value,
          max_length=_MAX_LENGTH.value, max_tokens=_MAX_TOKENS.value,
          vocabulary_file=_VOCABULARY_FILE.value, workers=_NUM_THREADS.value, **common)
  except (prepared.DataFormatError, OSError) as e:
    print(f'prepare: error: {e}', file=sys.stderr)
    return 2
  report = manifest['report']
  print(f'prepare: {name} -> {output_dir} in {time.time() - started:.1f}s '
        f'(train {manifest["splits"]["train"]["count"]}, test {manifest["splits"]["test"]["count"]}, '
        f'{len(manifest["class_names"])} classes)')
  for split in sorted(set(report['read']) | set(report['written'])):
    print(f'  {split}: read {report["read"].get(split, 0)}, written '
          f'{report["written"].get(split, 0)}')
  skipped = report['skipped']
  print(f'  skipped: {sum(skipped.values())}' + ('' if skipped else ' (nothing)'))
  for reason, count in sorted(skipped.items()):
    named = report['skipped_examples'].get(reason, [])
    print(f'    {count} x {reason}: {", ".join(named)}{", ..." if count > len(named) else ""}')
  for note in report.get('notes', []):
    print(f'  note: {note}')
  print(f'train with: python -m fedcmi_tff.train --dataset={name} --data_dir={output_dir} '
        f'--flagfile=configs/{name}.flags --output_dir=<runs folder>')
  return 0


if __name__ == '__main__':
  runtime.run_program(main)
