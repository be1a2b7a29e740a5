"""Atomic file writes (fedcmi_tff/files.py): content, failures, temporary files, file modes."""

import os
import stat

import pytest

from fedcmi_tff import files


def _names(folder):
  return sorted(os.listdir(folder))


def test_bytes_and_text_are_written_and_replace_the_old_content(tmp_path):
  path = str(tmp_path / 'out.bin')
  files.write_bytes(path, b'\x00first\xff')
  with open(path, 'rb') as f:
    assert f.read() == b'\x00first\xff'
  files.write_text(path, 'zweite Fassung: \u00e9\n')
  with open(path, 'rb') as f:
    assert f.read() == 'zweite Fassung: \u00e9\n'.encode('utf-8')
  assert _names(tmp_path) == ['out.bin']


def test_atomic_path_renames_a_file_written_by_name(tmp_path):
  path = str(tmp_path / 'table')
  files.write_text(path, 'old\n')
  with files.atomic_path(path, suffix='.csv') as tmp:  # for writers that go by the extension
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith(files.TEMPORARY_PREFIX)
    assert tmp.endswith('.csv')
    with open(tmp, 'w') as f:
      f.write('new\n')
    with open(path) as f:
      assert f.read() == 'old\n'  # the target changes only when the block ends
  with open(path) as f:
    assert f.read() == 'new\n'
  assert _names(tmp_path) == ['table']


def test_failure_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
  path = str(tmp_path / 'checkpoint.npz')
  files.write_bytes(path, b'old')
  with pytest.raises(RuntimeError, match='disk on fire'):
    with files.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        f.write(b'half of the new')
      raise RuntimeError('disk on fire')
  with open(path, 'rb') as f:
    assert f.read() == b'old'
  assert _names(tmp_path) == ['checkpoint.npz']


def test_failure_on_a_new_file_creates_nothing(tmp_path):
  with pytest.raises(KeyboardInterrupt):
    with files.atomic_path(str(tmp_path / 'new.json')):
      raise KeyboardInterrupt
  assert _names(tmp_path) == []


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, mode):
  previous = os.umask(umask)
  try:
    files.write_bytes(str(tmp_path / 'a.bin'), b'x')
    with files.atomic_path(str(tmp_path / 'b.tfrecord')) as tmp:
      with open(tmp, 'wb') as f:
        f.write(b'y')
  finally:
    os.umask(previous)
  for name in ('a.bin', 'b.tfrecord'):
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name
