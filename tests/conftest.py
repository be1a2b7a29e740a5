"""Shared pytest set-up: quiet TF logs, one TFF context per test, no TFF worker left behind.

TFF's default execution context is process-global, and the programs under test
install one (`--runtime`, in-process by default).  Each test starts with TFF's
local C++ context, the default after `import tensorflow_federated`, so that no
test depends on which test ran before it; a test that wants another runtime
installs it.  A TFF worker outlives a process that does not stop it and holds
its pipes, so the session stops the workers it started.
"""

import os
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_CPP_CONTEXT = []


@pytest.fixture(autouse=True)
def tff_cpp_context_by_default():
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  runtime.let_workers_be_interrupted()  # before the first worker starts
  if not _CPP_CONTEXT:  # one context (and so at most one worker) for the whole session
    _CPP_CONTEXT.append(tff.backends.native.create_sync_local_cpp_execution_context())
  stack = tff.framework.get_context_stack()
  stack.set_default_context(_CPP_CONTEXT[0])
  yield
  stack.set_default_context(_CPP_CONTEXT[0])


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  runtime.stop_worker_processes()


# -- The fault table (tests/test_faults.py): one row per fault or bad-input case ----------


@pytest.fixture
def fault_row(request):
  """Records (case, what the user sees) for the fault table printed after the run."""
  def record(case: str, seen: str):
    request.node.user_properties.append(('fault_row', (case, ' '.join(seen.split()))))
  return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  del exitstatus, config
  rows = []
  for outcome in ('passed', 'failed'):
    for report in terminalreporter.stats.get(outcome, []):
      if getattr(report, 'when', None) != 'call':
        continue
      for key, value in getattr(report, 'user_properties', ()):
        if key == 'fault_row':
          rows.append((value[0], value[1], 'ok' if outcome == 'passed' else 'FAILED'))
  if not rows:
    return
  terminalreporter.write_sep('-', f'fault table: {len(rows)} cases')
  terminalreporter.write_line('| case | what the user sees | check |')
  terminalreporter.write_line('|---|---|---|')
  for case, seen, check in sorted(rows):
    terminalreporter.write_line(f'| {case} | {seen[:400]} | {check} |')


# -- Order: slowest modules first, so the test processes (scripts/test.sh: pytest -n 2
# --dist loadfile) finish together rather than one waiting on a long module at the end.
# Seconds per module measured under `-n 2` on the project's 2-core machine; modules not
# listed take a few seconds.
_MODULE_SECONDS = {
    'test_inprocess.py': 120, 'test_train_program.py': 110, 'test_real_datasets.py': 90,
    'test_faults.py': 80, 'test_client_update.py': 65, 'test_processes.py': 55,
    'test_tuning.py': 60, 'test_grid.py': 50, 'test_gpu_check.py': 21,
    'test_toy_method.py': 19, 'test_augment.py': 15, 'test_tfds_builders.py': 15,
    'test_runtime.py': 13,
}


def pytest_collection_modifyitems(session, config, items):
  del session, config
  items.sort(key=lambda item: -_MODULE_SECONDS.get(os.path.basename(str(item.fspath)), 0))
