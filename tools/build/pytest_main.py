"""Runs one pytest file as a Bazel py_test: `pytest_main.py <path of the test file>`."""

import os
import sys

import pytest

if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(pytest.main([sys.argv[1], '-q', '-p', 'no:cacheprovider',
                        '-W', 'ignore::DeprecationWarning'] + sys.argv[2:]))
