"""How a program ends: exit statuses, one-line errors, and a clean stop on SIGINT / SIGTERM.

  0            done
  2            bad flags or input, an output folder that cannot be used or written
  3            training diverged (experiment.DivergenceError)
  4            a TFF worker could not be started or was lost (runtime.WorkerError, or the
               worker watchdog)
  128 + signo  stopped by SIGINT (130) or SIGTERM (143) after a saved round

The first SIGINT or SIGTERM is recorded and the running experiment stops after the
round it is in (every round's state is saved); a second one ends the program at once
(the signal's default action).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from fedcmi_tff.data import prepared
from fedcmi_tff.programs import experiment
from fedcmi_tff.programs import runtime


class StopRequests:
  """Installs the handlers; `requested()` is the signal's name once one arrived."""

  def __init__(self, program: str):
    self._program = program
    self._signal = None
    self._previous = {}

  def install(self) -> 'StopRequests':
    for signum in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: keep the default behaviour
        pass
    return self

  def restore(self) -> None:
    """Puts back the handlers `install` replaced (a program's main called in a test)."""
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum, frame) -> None:
    del frame
    if self._signal is not None:  # the second request: stop now
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    self._signal = signum
    print(f'{self._program}: {signal.Signals(signum).name} received: stopping after the '
          'current round with its state saved (send it again to stop at once)',
          file=sys.stderr, flush=True)

  def requested(self) -> str | None:
    return signal.Signals(self._signal).name if self._signal is not None else None

  def exit_status(self) -> int:
    return 128 + (self._signal or 0)


def describe_os_error(e: OSError) -> str:
  """'cannot write <file>: <reason>' for the OSErrors of writing results."""
  where = e.filename or ''
  reason = e.strerror or str(e)
  return f'cannot use {where}: {reason}' if where else reason


def run_guarded(program: str, body: Callable[[], int], stops: StopRequests) -> int:
  """Runs `body` and maps the failures of a run to one line on stderr and an exit status."""
  try:
    return body()
  except (experiment.OutputDirectoryError, prepared.DataFormatError) as e:
    print(f'{program}: error: {e}', file=sys.stderr)
    return 2
  except experiment.DivergenceError as e:
    print(f'{program}: error: {e}', file=sys.stderr)
    return 3
  except runtime.WorkerError as e:
    print(f'{program}: error: {e}', file=sys.stderr)
    return 4
  except experiment.Interrupted as e:
    print(f'{program}: {e}', file=sys.stderr)
    return stops.exit_status()
  except OSError as e:
    print(f'{program}: error: {describe_os_error(e)}', file=sys.stderr)
    return 2
  finally:
    runtime.stop_worker_processes()
    stops.restore()
