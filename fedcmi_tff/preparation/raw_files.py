"""Reading raw inputs safely: regular files only, UTF-8 text with line numbers, short echoes.

Every raw file a preparation opens goes through here, so that the failure modes of a raw
download are the same for every dataset (docs/datasets.md, 'Preparing a real dataset'):

- a path that is not a regular file (a FIFO, a device, a socket, a folder named `x.jpg`)
  is refused by an `fstat` of a descriptor opened with `O_NONBLOCK`, before anything is
  read, so a FIFO never blocks the preparation;
- a file that cannot be read (permission, I/O error, a symbolic-link loop) raises
  `UnreadableFile` naming the path and the reason;
- text that is not UTF-8 gives a one-line `DataFormatError` naming the file, the line and
  the byte;
- raw values echoed in a message or stored in dataset.json are cut to `MAX_ECHO`
  characters, with their full size in bytes (`shorten`, `quote`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from fedcmi_tff.data import prepared

MAX_ECHO = 200  # characters of a raw value shown in a message or stored in a report
_BLOCK = 1 << 20


class UnreadableFile(Exception):
  """A raw file that exists (or not) but cannot be read as a regular file.

  Attributes:
    path: the file.
    reason: why, e.g. 'no such file', 'not a regular file (a FIFO)', 'permission denied'.
    missing: the path does not exist at all.
  """

  def __init__(self, path: str, reason: str, missing: bool = False):
    super().__init__(f'{shorten(path)}: {reason}')
    self.path = path
    self.reason = reason
    self.missing = missing


def _size_in_bytes(text: str) -> int:
  return len(text.encode('utf-8', 'surrogatepass'))


def shorten(text, limit: int = MAX_ECHO) -> str:
  """`text` itself, or its first `limit` characters + '… (N bytes)' when longer."""
  text = str(text)
  if len(text) <= limit:
    return text
  return f'{text[:limit]}… ({_size_in_bytes(text)} bytes)'


def quote(text, limit: int = MAX_ECHO) -> str:
  """repr(text), or repr of its first `limit` characters + '… (N bytes)' when longer."""
  text = str(text)
  if len(text) <= limit:
    return repr(text)
  return f'{text[:limit]!r}… ({_size_in_bytes(text)} bytes)'


def _kind(mode: int) -> str:
  if stat.S_ISDIR(mode):
    return 'a folder'
  if stat.S_ISFIFO(mode):
    return 'a FIFO (named pipe)'
  if stat.S_ISCHR(mode):
    return 'a character device'
  if stat.S_ISBLK(mode):
    return 'a block device'
  if stat.S_ISSOCK(mode):
    return 'a socket'
  return 'not a regular file'


def _reason(error: OSError) -> str:
  if error.errno == errno.ENOENT:
    return 'no such file'
  if error.errno in (errno.EACCES, errno.EPERM):
    return 'permission denied'
  return (error.strerror or type(error).__name__).lower()


def _open_regular(path: str) -> int:
  """A read-only descriptor of `path`, which must be a regular file (never blocks)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
  except OSError as e:
    raise UnreadableFile(path, _reason(e), missing=e.errno == errno.ENOENT) from None
  try:
    mode = os.fstat(fd).st_mode
  except OSError as e:
    os.close(fd)
    raise UnreadableFile(path, _reason(e)) from None
  if not stat.S_ISREG(mode):
    os.close(fd)
    raise UnreadableFile(path, f'{_kind(mode)}, not a regular file')
  return fd


def check_readable(path: str) -> None:
  """Raises UnreadableFile unless `path` is a regular file this process can open."""
  os.close(_open_regular(path))


def read_regular_file(path: str) -> bytes:
  """The bytes of a regular file.

  Raises:
    UnreadableFile: missing, not a regular file (checked before reading), or unreadable.
  """
  fd = _open_regular(path)
  try:
    with os.fdopen(fd, 'rb') as f:
      return f.read()
  except OSError as e:
    raise UnreadableFile(path, _reason(e)) from None


def sha256_and_size(path: str) -> tuple:
  """(hex SHA-256, size in bytes) of a regular file; UnreadableFile otherwise."""
  fd = _open_regular(path)
  digest, size = hashlib.sha256(), 0
  try:
    with os.fdopen(fd, 'rb') as f:
      for block in iter(lambda: f.read(_BLOCK), b''):
        digest.update(block)
        size += len(block)
  except OSError as e:
    raise UnreadableFile(path, _reason(e)) from None
  return digest.hexdigest(), size


def decode_text(path: str, data: bytes, encoding: str = 'utf-8') -> str:
  """`data` (the content of `path`) decoded; a one-line error naming file, line and byte.

  Args:
    path: named in the error.
    data: the file's bytes.
    encoding: 'utf-8' or 'utf-8-sig' (a leading BOM is dropped).

  Raises:
    DataFormatError: `{path}:{line}: not UTF-8 text (byte 0xNN at byte column C) ...`.
  """
  if encoding not in ('utf-8', 'utf-8-sig'):
    raise ValueError(f"encoding must be 'utf-8' or 'utf-8-sig', got {encoding!r}")
  # The BOM is dropped here, so that error positions count from the file's first byte.
  offset = 3 if encoding == 'utf-8-sig' and data.startswith(b'\xef\xbb\xbf') else 0
  try:
    return data[offset:].decode('utf-8')
  except UnicodeDecodeError as e:
    start = e.start + offset
    line = data.count(b'\n', 0, start) + 1
    column = start - (data.rfind(b'\n', 0, start) + 1) + 1
    raise prepared.DataFormatError(
        f'{path}:{line}: not UTF-8 text (byte 0x{data[start]:02x} at byte column {column}); '
        'save the file as UTF-8') from None


def read_text(path: str, encoding: str = 'utf-8') -> str:
  """A UTF-8 text file's content (newlines untouched).

  Raises:
    DataFormatError: the file is missing, not a regular file, unreadable, or not UTF-8
      (naming the line).
  """
  try:
    data = read_regular_file(path)
  except UnreadableFile as e:
    if e.missing:
      raise prepared.DataFormatError(f'{path}: file not found') from None
    raise prepared.DataFormatError(f'{path}: cannot read: {e.reason}') from None
  return decode_text(path, data, encoding)
