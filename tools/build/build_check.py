"""Checks that the BUILD files and the Python sources describe the same code.

Every .py file under fedcmi_tff/ must be in the `srcs` of a target (or be the
`<name>.py` of a `py_program`) in its own folder's BUILD file, every tests/test_*.py must be the `src` of a `pytest_test`
in tests/BUILD, and every other tests/*.py must be in some target's srcs.
Usage: `build_check.py [repo root]`; exit status 1 and one line per problem on drift.
"""

from __future__ import annotations

import os
import re
import sys

_CALL = re.compile(r'(\w+)\(\s*name\s*=\s*"([^"]+)"(.*?)\n\)', re.S)
_STRINGS = re.compile(r'"([^"]+\.py)"')


def targets_in(build_text: str) -> dict:
  """{target name: (rule, [.py files named in srcs/src])} of one BUILD file."""
  out = {}
  for rule, name, body in _CALL.findall(build_text):
    files = []
    for attr in ('srcs', 'src'):
      match = re.search(attr + r'\s*=\s*(\[[^\]]*\]|"[^"]*")', body)
      if match:
        files.extend(_STRINGS.findall(match.group(1)))
    if rule == 'py_program':  # tools/build/program.bzl: the source is <name>.py
      files.append(f'{name}.py')
    out[name] = (rule, [f for f in files if not f.startswith('//')])
  return out


def find_drift(root: str) -> list:
  """Problems found under `root`, as human-readable lines (empty when consistent)."""
  problems = []
  for folder, _, files in sorted(os.walk(os.path.join(root, 'fedcmi_tff'))):
    sources = sorted(f for f in files if f.endswith('.py'))
    if not sources:
      continue
    rel = os.path.relpath(folder, root)
    build = os.path.join(folder, 'BUILD')
    if not os.path.exists(build):
      problems.append(f'{rel}/BUILD is missing ({len(sources)} Python files)')
      continue
    with open(build) as f:
      covered = {s for _, srcs in targets_in(f.read()).values() for s in srcs}
    for s in sources:
      if s not in covered:
        problems.append(f'{rel}/{s} has no target in {rel}/BUILD')
  tests = os.path.join(root, 'tests')
  if os.path.isdir(tests):
    build = os.path.join(tests, 'BUILD')
    targets = {}
    if os.path.exists(build):
      with open(build) as f:
        targets = targets_in(f.read())
    else:
      problems.append('tests/BUILD is missing')
    pytest_srcs = {s for rule, srcs in targets.values() if rule == 'pytest_test' for s in srcs}
    any_srcs = {s for _, srcs in targets.values() for s in srcs}
    for name in sorted(os.listdir(tests)):
      if not name.endswith('.py'):
        continue
      if name.startswith('test_') and name not in pytest_srcs:
        problems.append(f'tests/{name} has no pytest_test in tests/BUILD')
      elif not name.startswith('test_') and name not in any_srcs:
        problems.append(f'tests/{name} has no target in tests/BUILD')
  return problems


def main(argv) -> int:
  root = argv[1] if len(argv) > 1 else os.getcwd()
  problems = find_drift(root)
  for p in problems:
    print(p)
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
