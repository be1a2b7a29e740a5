"""Faults of raw downloads and prepared folders, each reproduced on a small fixture.

`fault_cases()` lists one `FaultCase` per fault of GitHub-style issue #10, items 7-9
(re-running `prepare`, damaged example files, bad raw files) and the integrity checks of
the prepared format (docs/datasets.md).  `case.run(tmp_dir)` reproduces the fault in a
fresh folder under `tmp_dir` by calling the preparation functions and the loader
directly (`prepared.load_prepared`, `registry.load_dataset`; no model, no subprocess; a
few seconds each) and returns the one-line outcome a user sees: the program's error line
(`prepare: error: ...`, `train: error: ...`) or a short description, with `tmp_dir`
written as `<tmp>`.  `case.matches(outcome)` checks that the outcome holds the key
words of `expect`.

    for case in fault_cases():
      outcome = case.run(tmp_dir)
      print(f'| {case.name} | {case.what_the_user_sees} | {case.matches(outcome)} |')

`python -m tests.prepared_faults` prints that table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from typing import Callable

from fedcmi_tff.data import prepared
from fedcmi_tff.data import registry
from fedcmi_tff.preparation import ave
from fedcmi_tff.preparation import crema_d
from fedcmi_tff.preparation import crisismmd
from fedcmi_tff.preparation import writer as writer_lib
from tests import av_fixtures
from tests import crisismmd_fixture


@dataclasses.dataclass(frozen=True)
class FaultCase:
  """One fault, what the user sees, and how to reproduce it.

  Attributes:
    name: the fault, e.g. 'zero-byte example file'.
    what_the_user_sees: one line: the message (paths as <...>) or the behaviour.
    expect: fragments the actual outcome must contain.
    run: run(tmp_dir) -> the actual one-line outcome.
  """

  name: str
  what_the_user_sees: str
  expect: tuple
  run: Callable[[str], str]

  def __getitem__(self, key: str):
    """case['name'] etc., for code that treats cases as dicts."""
    return getattr(self, key)

  def matches(self, outcome: str) -> bool:
    """Whether `outcome` (from `run`) holds every fragment of `expect`."""
    return all(fragment in outcome for fragment in self.expect)


class _Interrupted(Exception):
  pass


def _folder(tmp_dir: str, name: str) -> str:
  return tempfile.mkdtemp(prefix=f'{name}-', dir=tmp_dir)


def _short(text: str, tmp_dir: str) -> str:
  """One line, with tmp_dir written as <tmp>."""
  text = str(text).replace(os.path.realpath(tmp_dir), '<tmp>').replace(tmp_dir, '<tmp>')
  return ' '.join(text.split())


def _prepare_error(call: Callable, tmp_dir: str) -> str:
  """`prepare: error: <message>` of a preparation that must fail (the CLI's line)."""
  try:
    call()
  except prepared.DataFormatError as e:
    return _short(f'prepare: error: {e}', tmp_dir)
  raise AssertionError('the preparation did not fail')


def _train_error(data_dir: str, tmp_dir: str, dataset: str = 'crisismmd', **options) -> str:
  """`train: error: <message>` of loading a prepared folder the way `train` does."""
  try:
    registry.load_dataset(dataset, data_dir=data_dir,
                          load_options=prepared.LoadOptions(**options))
  except prepared.DataFormatError as e:
    return _short(f'train: error: {e}', tmp_dir)
  raise AssertionError('loading did not fail')


def _crisismmd(tmp_dir: str, **fixture) -> tuple:
  """(raw folder, output folder) of a fresh CrisisMMD fixture."""
  root = _folder(tmp_dir, 'crisismmd')
  info = crisismmd_fixture.make_crisismmd(os.path.join(root, 'raw'), **fixture)
  return info, os.path.join(root, 'out')


def _crema_d(tmp_dir: str, **fixture) -> tuple:
  root = _folder(tmp_dir, 'crema_d')
  info = av_fixtures.make_crema_d(os.path.join(root, 'raw'), **fixture)
  return info, os.path.join(root, 'out')


def _stop_after(count: int) -> Callable:
  def progress(items, total, desc):
    del total, desc
    for index, item in enumerate(items):
      if index == count:
        raise _Interrupted()
      yield item
  return progress


def _notes(manifest: dict, prefix: str) -> str:
  return ' '.join(n for n in manifest['report']['notes'] if n.startswith(prefix))


def _skips(manifest: dict, reason: str) -> str:
  report = manifest['report']
  return f'{report["skipped"].get(reason, 0)} x {reason}: ' + ', '.join(
      report['skipped_examples'].get(reason, []))


# -- item 7: re-running prepare


def _changed_tsv_resume(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  try:
    crisismmd.prepare_crisismmd(info['root'], out, progress=_stop_after(3))
  except _Interrupted:
    pass
  path = info['files'][('informative', 'train', False)]
  with open(path, encoding='utf-8') as f:
    text = f.read()
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text.replace('Just had lunch', 'Just had breakfast'))
  return _prepare_error(lambda: crisismmd.prepare_crisismmd(info['root'], out), tmp_dir)


def _other_raw_dir(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  other = crisismmd_fixture.make_crisismmd(os.path.join(os.path.dirname(out), 'raw2'))
  crisismmd.prepare_crisismmd(info['root'], out)
  return _prepare_error(lambda: crisismmd.prepare_crisismmd(other['root'], out), tmp_dir)


def _half_deleted(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  first = crisismmd.prepare_crisismmd(info['root'], out)
  ids = first['splits']['train']['example_ids']
  for example_id in ids[::2]:
    os.unlink(prepared.example_path(out, 'train', example_id))
  again = crisismmd.prepare_crisismmd(info['root'], out)
  loaded = prepared.load_prepared(out, 'crisismmd')
  return _short(f'{_notes(again, "made again")}; train then reads {len(loaded.train)} of '
                f'{len(ids)} examples', tmp_dir)


def _truncated_on_resume(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  try:
    crisismmd.prepare_crisismmd(info['root'], out, progress=_stop_after(3))
  except _Interrupted:
    pass
  first = sorted(os.listdir(os.path.join(out, 'train')))[0]
  with open(os.path.join(out, 'train', first), 'r+b') as f:
    f.truncate(7)
  manifest = crisismmd.prepare_crisismmd(info['root'], out)
  return _short(f'{_notes(manifest, "resumed")}; {_notes(manifest, "made again")}', tmp_dir)


def _overwrite_plain_folder(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  os.makedirs(out)
  with open(os.path.join(out, 'keep.txt'), 'w') as f:
    f.write('not a prepared dataset')
  crisismmd.prepare_crisismmd(info['root'], out, overwrite=True)
  kept = os.path.exists(os.path.join(out, 'keep.txt'))
  return (f'nothing deleted (keep.txt {"kept" if kept else "DELETED"}); the preparation is '
          f'written beside it: {", ".join(sorted(os.listdir(out)))}')


def _overwrite_other_recipe(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  crisismmd.prepare_crisismmd(info['root'], out)
  refused = _prepare_error(lambda: crisismmd.prepare_crisismmd(info['root'], out, max_length=20),
                           tmp_dir)
  manifest = crisismmd.prepare_crisismmd(info['root'], out, max_length=20, overwrite=True)
  return (f'{refused} / with --overwrite: replaced, recipe.max_length now '
          f'{manifest["recipe"]["max_length"]}')


# -- item 8: damaged example files


def _prepared_crisismmd(tmp_dir: str) -> tuple:
  info, out = _crisismmd(tmp_dir)
  manifest = crisismmd.prepare_crisismmd(info['root'], out)
  return out, manifest, prepared.example_path(out, 'train',
                                              manifest['splits']['train']['example_ids'][1])


def _zero_byte(tmp_dir: str) -> str:
  out, _, path = _prepared_crisismmd(tmp_dir)
  open(path, 'wb').close()
  return _train_error(out, tmp_dir)


def _truncated(tmp_dir: str) -> str:
  out, _, path = _prepared_crisismmd(tmp_dir)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  return _train_error(out, tmp_dir)


def _flip_a_byte(path: str) -> None:
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def _corrupted(tmp_dir: str) -> str:
  out, _, path = _prepared_crisismmd(tmp_dir)
  _flip_a_byte(path)
  return _train_error(out, tmp_dir)


def _missing(tmp_dir: str) -> str:
  out, _, path = _prepared_crisismmd(tmp_dir)
  os.unlink(path)
  return _train_error(out, tmp_dir)


def _version_1(tmp_dir: str) -> str:
  out, manifest, _ = _prepared_crisismmd(tmp_dir)
  manifest['format_version'] = 1
  del manifest['inputs']
  for split in prepared.SPLITS:
    del manifest['splits'][split]['sizes'], manifest['splits'][split]['crc32']
  with open(os.path.join(out, prepared.MANIFEST_NAME), 'w') as f:
    json.dump(manifest, f)
  records = []

  class Keep(logging.Handler):
    def emit(self, record):
      records.append(record.getMessage())

  logger, handler = logging.getLogger(prepared.__name__), Keep(logging.WARNING)
  logger.addHandler(handler)
  try:
    splits = registry.load_dataset('crisismmd', data_dir=out)
  finally:
    logger.removeHandler(handler)
  return _short(f'loads ({len(splits.train)} train examples) with the warning: '
                f'{" ".join(records)}', tmp_dir)


# -- item 9: bad raw files


def _non_utf8_crema_d(tmp_dir: str) -> str:
  info, out = _crema_d(tmp_dir)
  with open(info['paths']['train_csv'], 'ab') as f:
    f.write(b'1001_DFA_ANG_XX,ANG\xa0\r\n')
  return _prepare_error(lambda: crema_d.prepare_crema_d(info['root'], out), tmp_dir)


def _non_utf8_ave(tmp_dir: str) -> str:
  root = _folder(tmp_dir, 'ave')
  row = av_fixtures.ave_row(av_fixtures.AVE_CLASSES[0], 'abcdefghijk', 1, 3)
  texts = {'Annotations.txt': f'{av_fixtures.AVE_HEADER}\n{row}\n', 'valSet.txt': f'{row}\n',
           'testSet.txt': f'{row}\n'}
  for name, text in texts.items():
    with open(os.path.join(root, name), 'w', encoding='utf-8') as f:
      f.write(text)
  with open(os.path.join(root, 'trainSet.txt'), 'wb') as f:
    f.write(f'{row}\n'.encode() + b'Church bell&abc\xff&good&1&3\n')
  return _prepare_error(lambda: ave.prepare_ave(root, os.path.join(root, 'out')), tmp_dir)


def _nothing_prepared(tmp_dir: str) -> str:
  ids = [r.image_id for r in crisismmd_fixture.ROWS]
  info, out = _crisismmd(tmp_dir, missing_images=ids)
  try:
    crisismmd.prepare_crisismmd(info['root'], out)
  except writer_lib.NothingPrepared as e:
    # What `python -m fedcmi_tff.prepare` prints: the report, then the error.
    lines = writer_lib.report_lines(e.report.to_dict())
    counts = [line for line in lines if not line.startswith('note:')]
    return _short(' | '.join(counts) + f' ... then prepare: error: {e}', tmp_dir)
  raise AssertionError('the preparation did not fail')


def _huge_field_in_message(tmp_dir: str) -> str:
  info, out = _crema_d(tmp_dir, malformed_split_rows=('A' * (30 << 20),))
  message = _prepare_error(lambda: crema_d.prepare_crema_d(info['root'], out), tmp_dir)
  return f'{message} [{len(message)} characters]'


def _huge_field_in_manifest(tmp_dir: str) -> str:
  row = crisismmd_fixture.row_fields(crisismmd_fixture.ROWS[0], 'informative')
  row[2], row[4] = '917791291823591425_7', 'data_image/' + 'x' * 100_000 + '.jpg'
  info, out = _crisismmd(tmp_dir, extra_rows=[('train', row)])
  manifest = crisismmd.prepare_crisismmd(info['root'], out)
  size = os.path.getsize(os.path.join(out, prepared.MANIFEST_NAME))
  return _short(f'skipped and stored cut: {_skips(manifest, "image file missing")} '
                f'[dataset.json {size} bytes]', tmp_dir)


def _fifo_frame(tmp_dir: str) -> str:
  info, out = _crema_d(tmp_dir)
  stem = info['train'][0]
  frame = os.path.join(info['frames'][stem], av_fixtures.CREMA_D_CORRUPT_FRAME)
  os.unlink(frame)
  av_fixtures.make_fifo(frame)
  manifest = crema_d.prepare_crema_d(info['root'], out)
  return _short(f'skipped, exit 0: {_skips(manifest, "frame file unreadable")}', tmp_dir)


def _fifo_image(tmp_dir: str) -> str:
  image_id = crisismmd_fixture.ROWS[0].image_id
  info, out = _crisismmd(tmp_dir, missing_images=(image_id,))
  av_fixtures.make_fifo(info['image_paths'][image_id])
  manifest = crisismmd.prepare_crisismmd(info['root'], out)
  return _short(f'skipped, exit 0: {_skips(manifest, "image file unreadable")}', tmp_dir)


def _unreadable_wav(tmp_dir: str) -> str:
  info, out = _crema_d(tmp_dir)
  stem = info['train'][0]
  os.unlink(info['wav'][stem])
  os.makedirs(info['wav'][stem])
  manifest = crema_d.prepare_crema_d(info['root'], out)
  return _short(f'skipped, exit 0: {_skips(manifest, "audio file unreadable")}', tmp_dir)


def _unreadable_jpeg(tmp_dir: str) -> str:
  info, out = _crema_d(tmp_dir)
  stem = info['train'][0]
  frame = os.path.join(info['frames'][stem], av_fixtures.CREMA_D_CORRUPT_FRAME)
  os.unlink(frame)
  os.makedirs(frame)
  manifest = crema_d.prepare_crema_d(info['root'], out)
  return _short(f'skipped, exit 0: {_skips(manifest, "frame file unreadable")}', tmp_dir)


# -- integrity of prepared data


def _manifest_records(tmp_dir: str) -> str:
  out, manifest, _ = _prepared_crisismmd(tmp_dir)
  train = manifest['splits']['train']
  inputs = manifest['inputs']
  return (f'format_version {manifest["format_version"]}; every example file with its size and '
          f'crc32 ({len(train["sizes"])} + {len(manifest["splits"]["test"]["crc32"])}); inputs: '
          f'raw_dir and {len(inputs["files"])} split files with size and sha256; recipe with '
          f'vocabulary_sha256 {manifest["recipe"]["vocabulary_sha256"][:12]}…')


def _verify_finished(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  manifest = crisismmd.prepare_crisismmd(info['root'], out)
  _flip_a_byte(prepared.example_path(out, 'test', manifest['splits']['test']['example_ids'][0]))
  unchanged = crisismmd.prepare_crisismmd(info['root'], out, verify=False) == manifest
  again = crisismmd.prepare_crisismmd(info['root'], out, verify=True)
  return _short(f'--noverify: {"no work (sizes match)" if unchanged else "WORK DONE"}; '
                f'--verify: {_notes(again, "made again")}', tmp_dir)


def _intact_rerun(tmp_dir: str) -> str:
  info, out = _crisismmd(tmp_dir)
  manifest = crisismmd.prepare_crisismmd(info['root'], out)

  def refuse(items, total, desc):
    raise AssertionError(f'worked on {desc}')

  again = crisismmd.prepare_crisismmd(info['root'], out, progress=refuse)
  return 'no work: the manifest is returned as is' if again == manifest else 'CHANGED'


def fault_cases() -> list:
  """Every fault of issue #10 items 7-9 and the integrity checks, as `FaultCase`s."""
  return [
      FaultCase(
          'CrisisMMD resumed after its training TSV changed',
          'prepare: error: <out> holds an unfinished preparation (<out>/.preparing.json) of '
          'other inputs or another recipe (recipe.vocabulary_sha256 … (prepared) vs … (now); '
          '<train TSV> changed since it was prepared (…); …); choose another output folder, '
          'or pass --overwrite (overwrite=True) to delete it and prepare again',
          ('holds an unfinished preparation', 'recipe.vocabulary_sha256',
           'task_informative_text_img_train.tsv changed since it was prepared', '--overwrite'),
          _changed_tsv_resume),
      FaultCase(
          'another --raw_dir into a finished folder',
          'prepare: error: <out> holds a finished preparation of other inputs or another recipe '
          '(raw folder <raw> (prepared) vs <raw2> (now)); choose another output folder, or pass '
          '--overwrite (overwrite=True) to delete it and prepare again',
          ('holds a finished preparation of other inputs', 'raw folder', '(prepared) vs',
           '--overwrite'),
          _other_raw_dir),
      FaultCase(
          'half of the example files deleted, prepare run again',
          'only the deleted files are made again: report note "made again: 3 example files that '
          'were missing or damaged: train/<id> (missing), …"; train reads every example',
          ('made again: 3 example files that were missing or damaged', '(missing)',
           'train then reads 6 of 6 examples'),
          _half_deleted),
      FaultCase(
          'interrupted preparation resumed with a truncated example file',
          'report notes "resumed: 2 example files … reused" and "made again: 1 example files … '
          '(7 bytes, but the preparation journal records N (truncated or replaced))"',
          ('resumed: 2 example files', 'made again: 1 example files',
           '7 bytes, but the preparation journal records'),
          _truncated_on_resume),
      FaultCase(
          '--overwrite into a folder that is not a prepared dataset',
          'nothing is deleted (no dataset.json or .preparing.json there); the preparation is '
          'written beside the existing files',
          ('nothing deleted (keep.txt kept)', 'dataset.json', 'keep.txt'),
          _overwrite_plain_folder),
      FaultCase(
          'another recipe into a finished folder, then --overwrite',
          'prepare: error: <out> holds a finished preparation of other inputs or another recipe '
          '(recipe.max_length 40 (prepared) vs 20 (now); modalities.text.shape [40] (prepared) '
          'vs [20] (now)); … --overwrite …; with --overwrite the folder is replaced',
          ('recipe.max_length 40 (prepared) vs 20 (now)',
           'modalities.text.shape [40] (prepared) vs [20] (now)', '--overwrite',
           'replaced, recipe.max_length now 20'),
          _overwrite_other_recipe),
      FaultCase(
          'zero-byte example file',
          'train: error: <out>/train/<id>.tfrecord: 0 bytes, but dataset.json records N '
          '(truncated or replaced) (1 of 10 example files listed in <out>/dataset.json are '
          'missing or damaged); run python -m fedcmi_tff.prepare again …',
          ('train: error:', '.tfrecord: 0 bytes, but dataset.json records',
           '1 of 10 example files', 'fedcmi_tff.prepare again'),
          _zero_byte),
      FaultCase(
          'truncated example file',
          'train: error: <out>/train/<id>.tfrecord: K bytes, but dataset.json records N '
          '(truncated or replaced) (…); run python -m fedcmi_tff.prepare again …',
          ('train: error:', '.tfrecord:', 'bytes, but dataset.json records', 'truncated'),
          _truncated),
      FaultCase(
          'corrupted example file (same size)',
          'train: error: <out>/train/<id>.tfrecord: CRC-32 …, but dataset.json records … (the '
          'content changed: corrupted or replaced) (…); before any model is built (checksums '
          'are verified by default up to 1 GiB of example files)',
          ('train: error:', '.tfrecord: CRC-32', 'but dataset.json records', 'corrupted'),
          _corrupted),
      FaultCase(
          'missing example file',
          'train: error: <out>/train/<id>.tfrecord: missing (1 of 10 example files …); run '
          'python -m fedcmi_tff.prepare again …',
          ('train: error:', '.tfrecord: missing (1 of 10 example files'),
          _missing),
      FaultCase(
          'dataset.json of format version 1 (no sizes or checksums)',
          'loads, with one warning line: "<out>/dataset.json: format_version 1 records no file '
          'sizes or checksums, so only the presence of example files is checked; prepare again '
          'into a new folder to get full checks"',
          ('loads (6 train examples)', 'format_version 1 records no file sizes or checksums'),
          _version_1),
      FaultCase(
          'non-UTF-8 byte in CREMA-D train.csv',
          'prepare: error: <raw>/train.csv:5: not UTF-8 text (byte 0xa0 at byte column 20); '
          'save the file as UTF-8',
          ('train.csv:5: not UTF-8 text (byte 0xa0 at byte column 20)',),
          _non_utf8_crema_d),
      FaultCase(
          'non-UTF-8 byte in AVE trainSet.txt',
          'prepare: error: <raw>/trainSet.txt:2: not UTF-8 text (byte 0xff at byte column 16); '
          'save the file as UTF-8',
          ('trainSet.txt:2: not UTF-8 text (byte 0xff at byte column 16)',),
          _non_utf8_ave),
      FaultCase(
          'no train example was prepared',
          'the skip report is printed ("… train: read 6, written 0 | skipped: 10 | 10 x image '
          'file missing: <first 5 paths>, ..."), then prepare: error: <out>: no train example was '
          'prepared (6 train rows read; skipped 10 x image file missing); see the skip report '
          'above',
          ('train: read 6, written 0', '10 x image file missing: ',
           'no train example was prepared (6 train rows read; skipped 10 x image file missing)'),
          _nothing_prepared),
      FaultCase(
          '30 MB field in a split file',
          "prepare: error: <raw>/train.csv:5: expected 2 comma-separated fields \"clip,LABEL\", "
          "got 'AAAA…(200 characters)'… (31457280 bytes)",
          ("'… (31457280 bytes)", 'expected 2 comma-separated fields'),
          _huge_field_in_message),
      FaultCase(
          '100 kB raw field stored in dataset.json',
          'the skip report (printed and in dataset.json) holds the first 400 characters and "… '
          '(N bytes)", not the field; dataset.json stays a few kB',
          ('1 x image file missing: ', 'xxxx… (', ' bytes) [dataset.json'),
          _huge_field_in_manifest),
      FaultCase(
          'FIFO named *.jpg in a CREMA-D frame folder',
          'no hang: skipped, "1 x frame file unreadable: cannot read \'<frame>\': a FIFO (named '
          'pipe), not a regular file"; exit 0 with the counts',
          ('1 x frame file unreadable', 'a FIFO (named pipe), not a regular file'),
          _fifo_frame),
      FaultCase(
          'FIFO named *.jpg as a CrisisMMD image',
          'no hang: skipped, "1 x image file unreadable: <image>: a FIFO (named pipe), not a '
          'regular file"; exit 0 with the counts',
          ('1 x image file unreadable', 'a FIFO (named pipe), not a regular file'),
          _fifo_image),
      FaultCase(
          'unreadable WAV',
          'skipped, "1 x audio file unreadable: cannot read audio file \'<wav>\': a folder, not '
          'a regular file"; exit 0 with the counts (permission denied, I/O error alike)',
          ('1 x audio file unreadable', 'not a regular file'),
          _unreadable_wav),
      FaultCase(
          'unreadable JPEG frame',
          'skipped like an unreadable WAV: "1 x frame file unreadable: cannot read \'<jpg>\': a '
          'folder, not a regular file"; exit 0 with the counts',
          ('1 x frame file unreadable', 'a folder, not a regular file'),
          _unreadable_jpeg),
      FaultCase(
          'integrity: what dataset.json records',
          'format_version 2; each example file\'s size and crc32; inputs (raw_dir, split files '
          'with size and sha256); the recipe with the vocabulary\'s sha256',
          ('format_version 2', 'size and crc32', 'sha256', 'vocabulary_sha256'),
          _manifest_records),
      FaultCase(
          'integrity: prepare --verify on a finished folder with a same-size corruption',
          '--noverify checks sizes only (no work); --verify makes the file again: "made again: '
          '1 example files … (CRC-32 …, but the preparation journal records …)"',
          ('--noverify: no work', '--verify: made again: 1 example files', 'CRC-32'),
          _verify_finished),
      FaultCase(
          'integrity: prepare into an intact finished folder of the same identity',
          'no work: sizes (and checksums when cheap) check out, the manifest is returned as is',
          ('no work',),
          _intact_rerun),
  ]


def main() -> None:
  """Prints the table of faults (name, what the user sees, actual outcome, match)."""
  with tempfile.TemporaryDirectory() as tmp_dir:
    print('| fault | what the user sees | outcome | matches |')
    print('|---|---|---|---|')
    for case in fault_cases():
      outcome = case.run(tmp_dir)
      print(f'| {case.name} | {case.what_the_user_sees} | {outcome} | {case.matches(outcome)} |')


if __name__ == '__main__':
  main()
