"""Atomic file writes: the one helper every layer uses to write a result or a prepared file.

A file is written under a temporary name in its own folder and renamed over the target,
so a reader (or a run killed mid-write) sees either the old or the new content, never a
part.  The temporary file is removed if writing fails, and the result gets the mode an
ordinary `open(path, 'w')` would give (0666 minus the umask), not mkstemp's 0600.
Plain Python: no TensorFlow, no absl.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

TEMPORARY_PREFIX = '.tmp-'


def _default_mode() -> int:
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = '') -> Iterator[str]:
  """Yields a temporary path beside `path`; on success it is renamed to `path`.

  For writers that need a file name (TFRecordWriter, savefig).  `suffix` is appended to
  the temporary name, for writers that choose the format from the extension.
  """
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX,
                             suffix='-' + os.path.basename(path) + suffix)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, _default_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  write_bytes(path, text.encode('utf-8'))
