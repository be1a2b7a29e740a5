"""Prepares a downloaded dataset once: `python -m fedcmi_tff.prepare --dataset=... --raw_dir=...`.

Writes the prepared format (`fedcmi_tff/data/prepared.py`) to --output_dir, with
a progress bar and a final report of the items read, written and skipped (and
why); the report is printed also when the run stops because a split ended with
no example.  A finished preparation of the same recipe and raw inputs is checked
(every example file's size; its checksum with --verify, or by default when the
files are small) and not redone, except for missing or damaged example files,
which are made again; an interrupted one is resumed (intact example files are
kept).  A preparation of other inputs or another recipe in --output_dir is
refused: choose another folder, or pass --overwrite to delete it (only a folder
holding dataset.json or .preparing.json is ever deleted).  Then train with
`python -m fedcmi_tff.train --dataset=<name> --data_dir=<output_dir>`.
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
from fedcmi_tff.preparation import writer as writer_lib  # noqa: E402
from fedcmi_tff.programs import runtime  # noqa: E402

_DATASET = flags.DEFINE_enum('dataset', None, list(registry.PREPARED_DATASETS),
                             'Which raw download --raw_dir holds.')
_RAW_DIR = flags.DEFINE_string('raw_dir', None, 'Folder of the raw download.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Folder of the prepared dataset.')
_NUM_THREADS = flags.DEFINE_integer('num_threads', 2, 'Examples decoded in parallel.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Delete the prepared dataset in --output_dir (finished or not) and '
    'prepare again; a folder holding no dataset.json or .preparing.json is never deleted.')
_VERIFY = flags.DEFINE_bool(
    'verify', None, 'Checksum the example files of an existing preparation before reusing '
    'them (--verify), or check only their sizes (--noverify); default: checksums when the '
    'files total at most 1 GiB.')
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


def _print_report(report: dict) -> None:
  """The counts, every skip reason with the first names, and the notes."""
  for line in writer_lib.report_lines(report):
    print(f'  {line}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  name, raw_dir, output_dir = _DATASET.value, _RAW_DIR.value, _OUTPUT_DIR.value
  if not os.path.isdir(raw_dir):
    print(f'prepare: error: --raw_dir {raw_dir} is not a folder', file=sys.stderr)
    return 2
  started = time.time()
  manifest_path = os.path.join(output_dir, prepared.MANIFEST_NAME)
  if _OVERWRITE.value and writer_lib.holds_preparation(output_dir):
    print(f'prepare: --overwrite: the prepared dataset in {output_dir} is deleted once the raw '
          'split files are read')
  elif os.path.exists(manifest_path):
    print(f'prepare: {output_dir} holds a finished preparation; checking that its recipe and '
          'raw inputs match and that its example files are intact (only missing or damaged '
          'files are made again)')
  common = dict(progress=_progress, overwrite=_OVERWRITE.value, verify=_VERIFY.value)
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
    if isinstance(e, writer_lib.NothingPrepared):
      print(f'prepare: {name} -> {output_dir} stopped after {time.time() - started:.1f}s')
      _print_report(e.report.to_dict())
    print(f'prepare: error: {e}', file=sys.stderr)
    return 2
  print(f'prepare: {name} -> {output_dir} in {time.time() - started:.1f}s '
        f'(train {manifest["splits"]["train"]["count"]}, test {manifest["splits"]["test"]["count"]}, '
        f'{len(manifest["class_names"])} classes)')
  _print_report(manifest['report'])
  print(f'train with: python -m fedcmi_tff.train --dataset={name} --data_dir={output_dir} '
        f'--flagfile=configs/{name}.flags --output_dir=<runs folder>')
  return 0


if __name__ == '__main__':
  runtime.run_program(main)
