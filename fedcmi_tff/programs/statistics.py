"""Statistics of results over seeds: t-intervals, paired tests, win/tie/loss, flattening.

Plain numpy and scipy on arrays of per-seed values; the report (report.py) applies them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 0.05
# Flattening: the change of the mean over the last FLAT_WINDOW rounds against the
# FLAT_WINDOW rounds before them must be within FLAT_TOLERANCE (accuracy, 1 point).
FLAT_WINDOW = 10
FLAT_TOLERANCE = 0.01


def t_interval(values, confidence: float = CONFIDENCE) -> tuple:
  """(mean, half-width) of the Student-t interval of the mean; half-width NaN for n < 2."""
  x = np.asarray(values, dtype=np.float64)
  if x.size == 0:
    raise ValueError('no values')
  if x.size < 2:
    return float(x.mean()), math.nan
  quantile = stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)
  return float(x.mean()), float(quantile * x.std(ddof=1) / math.sqrt(x.size))


class PairedDifference(NamedTuple):
  """`ours - theirs` over paired seeds: mean, interval half-width, two-sided p, seeds."""

  mean: float
  half_width: float
  p_value: float
  seeds: int

  @property
  def outcome(self) -> str:
    """'win' / 'loss' when the difference is significant (p < SIGNIFICANCE), else 'tie'."""
    if not self.p_value < SIGNIFICANCE:
      return 'tie'
    return 'win' if self.mean > 0 else 'loss'


def paired_difference(ours, theirs, confidence: float = CONFIDENCE) -> PairedDifference:
  """The paired t-test of `ours - theirs` (same seeds, same order).

  With every difference equal the test is degenerate: p = 1 if they are all 0, else 0.
  With one seed nothing can be tested: p = 1 (a tie), half-width NaN.

  Raises:
    ValueError: the two have different lengths or are empty.
  """
  a, b = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if a.shape != b.shape or a.size == 0:
    raise ValueError(f'paired values must have the same non-zero length, got {a.size} '
                     f'and {b.size}')
  d = a - b
  mean, half = t_interval(d, confidence)
  if d.size < 2:
    p = 1.0
  elif np.all(d == d[0]):
    p = 1.0 if d[0] == 0 else 0.0
  else:
    p = float(stats.ttest_rel(a, b).pvalue)
  return PairedDifference(mean, half, p, int(d.size))


def flattening(curve, window: int = FLAT_WINDOW) -> float:
  """Mean of the last `window` values minus the mean of the `window` before them.

  NaN when the curve is shorter than 2 * window.
  """
  x = np.asarray(curve, np.float64)
  if x.size < 2 * window:
    return math.nan
  return float(x[-window:].mean() - x[-2 * window:-window].mean())


def is_flat(change: float, tolerance: float = FLAT_TOLERANCE) -> bool:
  return abs(change) <= tolerance
