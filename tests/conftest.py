"""Shared pytest set-up: quiet TF logs, and no TFF worker left behind (STACK.md pitfall 6)."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  from fedcmi_tff.programs import runtime  # pylint: disable=g-import-not-at-top
  runtime.stop_worker_processes()
