"""Checks that the BUILD files and the Python sources describe the same code.

Every .py file under fedcmi_tff/ must be in the `srcs` of a target (or be the
`<name>.py` of a `py_program`) in its own folder's BUILD file, every tests/test_*.py must be the `src` of a `pytest_test`
in tests/BUILD, and every other tests/*.py must be in some target's srcs.  Every
`from fedcmi_tff[.pkg] import module` or `from tests import module` in a target's sources must
name a direct dependency of that target (`//fedcmi_tff/pkg:module`, or `:module_lib` for a
`py_program`), because the suite itself does not run under Bazel.
Usage: `build_check.py [repo root]`; exit status 1 and one line per problem on drift.
"""

from __future__ import annotations

import os
import re
import sys

_CALL = re.compile(r'(\w+)\(\s*name\s*=\s*"([^"]+)"(.*?)\n\)', re.S)
_STRINGS = re.compile(r'"([^"]+\.py)"')
_LABELS = re.compile(r'"((?://[\w/]*)?:[\w-]+)"')
_LIST_CONSTANT = re.compile(r'^(_[A-Z_]+)\s*=\s*(\[.*?\])', re.S | re.M)
_IMPORT = re.compile(r'^\s*from ((?:fedcmi_tff|tests)(?:\.\w+)*) import (\w+)', re.M)


def _deps_in(build_text: str, body: str, package: str) -> set:
  """Absolute labels in a target's `deps`, with `_CONSTANT` lists of the BUILD file expanded."""
  match = re.search(r'deps\s*=\s*(.*?)(?:,\n    \w+\s*=|,?\n?$)', body, re.S)
  if not match:
    return set()
  text = match.group(1)
  for const, value in _LIST_CONSTANT.findall(build_text):
    text = text.replace(const, value)
  return {(f'//{package}' + l) if l.startswith(':') else l for l in _LABELS.findall(text)}


def _required_label(module_path: str, name: str, programs: dict) -> str:
  package = module_path.replace('.', '/')
  if name in programs.get(package, ()):
    return f'//{package}:{name}_lib'
  return f'//{package}:{name}'


def _programs(root: str) -> dict:
  """{package: names of its py_program targets}."""
  out = {}
  for folder, _, files in os.walk(root):
    if 'BUILD' in files and '__pycache__' not in folder:
      with open(os.path.join(folder, 'BUILD')) as f:
        names = {n for n, (rule, _) in targets_in(f.read()).items() if rule == 'py_program'}
      if names:
        out[os.path.relpath(folder, root)] = names
  return out


def _target_names(root: str) -> dict:
  """{package: names of its targets (a py_program's `<name>_lib` included)}."""
  out = {}
  for top in ('fedcmi_tff', 'tests'):
    for folder, _, files in os.walk(os.path.join(root, top)):
      if 'BUILD' in files and '__pycache__' not in folder:
        with open(os.path.join(folder, 'BUILD')) as f:
          targets = targets_in(f.read())
        names = set(targets) | {f'{n}_lib' for n, (r, _) in targets.items() if r == 'py_program'}
        out[os.path.relpath(folder, root)] = names
  return out


def find_missing_deps(root: str) -> list:
  """One line per first-party import that is not a direct dependency of its target, and
  per dependency on a first-party target that does not exist."""
  problems = []
  programs = _programs(root)
  known = _target_names(root)
  for top in ('fedcmi_tff', 'tests'):
    for folder, _, files in sorted(os.walk(os.path.join(root, top))):
      build = os.path.join(folder, 'BUILD')
      if '__pycache__' in folder or not os.path.exists(build):
        continue
      package = os.path.relpath(folder, root)
      with open(build) as f:
        text = f.read()
      for name, rule, body in ((n, r, b) for r, n, b in _CALL.findall(text)):
        files_ = targets_in(f'{rule}(\n    name = "{name}"{body}\n)')[name][1]
        if rule == 'py_program' and name.endswith('_lib'):
          continue
        deps = _deps_in(text, body, package)
        for dep in sorted(deps):
          dep_package, _, dep_name = dep[2:].partition(':')
          if dep_package in known and dep_name not in known[dep_package]:
            problems.append(f'//{package}:{name} depends on {dep}, which does not exist')
        for src in files_:
          path = os.path.join(folder, src)
          if not os.path.exists(path):
            continue
          with open(path) as f:
            source = f.read()
          for module_path, module in _IMPORT.findall(source):
            label = _required_label(module_path, module, programs)
            own = f'//{package}:{name}'
            if label != own and label not in deps:
              problems.append(f'{package}/{src} imports {module_path}.{module} but target '
                              f'{own} does not depend on {label}')
  return problems


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
    for s in sorted(covered - set(sources)):
      problems.append(f'{rel}/BUILD names {s}, which does not exist')
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
  problems = find_drift(root) + find_missing_deps(root)
  for p in problems:
    print(p)
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
