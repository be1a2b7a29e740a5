"""BUILD files and Python sources cannot drift apart (tools/build/build_check.py)."""

import os
import shutil

from tools.build import build_check

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _copy_tree(tmp_path):
  root = tmp_path / 'repo'
  for part in ('fedcmi_tff', 'tests'):
    shutil.copytree(os.path.join(REPO, part), root / part,
                    ignore=shutil.ignore_patterns('__pycache__'))
  return root


def test_repository_has_no_drift():
  assert build_check.find_drift(REPO) == []


def test_missing_library_target_is_reported(tmp_path):
  root = _copy_tree(tmp_path)
  build = root / 'fedcmi_tff' / 'losses' / 'BUILD'
  text = build.read_text()
  removed = text.replace('py_library(\n    name = "proximal",\n    srcs = ["proximal.py"],\n)\n', '')
  assert removed != text
  build.write_text(removed)
  assert build_check.find_drift(str(root)) == [
      'fedcmi_tff/losses/proximal.py has no target in fedcmi_tff/losses/BUILD']


def test_missing_program_target_is_reported(tmp_path):
  root = _copy_tree(tmp_path)
  build = root / 'fedcmi_tff' / 'BUILD'
  text = build.read_text()
  start = text.index('py_program(\n    name = "grid",')
  end = text.index(')\n', text.index('deps = _TRAIN_DEPS + [', start)) + 2
  build.write_text(text[:start] + text[end:])
  assert build_check.find_drift(str(root)) == [
      'fedcmi_tff/grid.py has no target in fedcmi_tff/BUILD']


def test_missing_test_target_and_missing_build_file_are_reported(tmp_path):
  root = _copy_tree(tmp_path)
  (root / 'tests' / 'test_new_feature.py').write_text('def test_x():\n  assert 1\n')
  (root / 'fedcmi_tff' / 'models' / 'BUILD').unlink()
  problems = build_check.find_drift(str(root))
  assert 'tests/test_new_feature.py has no pytest_test in tests/BUILD' in problems
  assert any(p.startswith('fedcmi_tff/models/BUILD is missing') for p in problems)
  assert len(problems) == 2


def test_repository_imports_only_direct_dependencies():
  assert build_check.find_missing_deps(REPO) == []


def test_import_without_dependency_is_reported(tmp_path):
  root = _copy_tree(tmp_path)
  build = root / 'fedcmi_tff' / 'programs' / 'BUILD'
  text = build.read_text()
  removed = text.replace('        "//fedcmi_tff/learning:evaluation",\n', '', 1)
  assert removed != text
  build.write_text(removed)
  assert build_check.find_missing_deps(str(root)) == [
      'fedcmi_tff/programs/experiment.py imports fedcmi_tff.learning.evaluation but target '
      '//fedcmi_tff/programs:experiment does not depend on //fedcmi_tff/learning:evaluation']


def test_program_import_needs_the_program_library(tmp_path):
  root = _copy_tree(tmp_path)
  build = root / 'tests' / 'BUILD'
  text = build.read_text()
  removed = text.replace('        "//fedcmi_tff:grid_lib",\n', '        "//fedcmi_tff:grid",\n', 1)
  assert removed != text
  build.write_text(removed)
  assert build_check.find_missing_deps(str(root)) == [
      'tests/test_grid.py imports fedcmi_tff.grid but target //tests:test_grid does not depend '
      'on //fedcmi_tff:grid_lib']


def test_dependency_on_a_missing_target_is_reported(tmp_path):
  root = _copy_tree(tmp_path)
  build = root / 'tests' / 'BUILD'
  text = build.read_text()
  changed = text.replace('        "//fedcmi_tff/learning:masked_sgd",\n',
                         '        "//fedcmi_tff/learning:masked_sgd",\n'
                         '        "//fedcmi_tff/programs:methods",\n', 1)
  assert changed != text
  build.write_text(changed)
  assert build_check.find_missing_deps(str(root)) == [
      '//tests:test_masked_sgd depends on //fedcmi_tff/programs:methods, which does not exist']
