"""Statistics over seeds and the grid report's paired comparisons, against hand numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from fedcmi_tff.programs import report
from fedcmi_tff.programs import statistics

NAMES = ('audio', 'visual')
# Student-t quantiles from a printed table (two-sided 95 %): df = 4 and df = 2.
T975_DF4 = 2.776445
T975_DF2 = 4.302653


def test_t_interval_matches_the_textbook_formula():
  values = [0.50, 0.60, 0.55, 0.65, 0.70]
  mean = sum(values) / 5  # 0.6
  sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)  # 0.0790569
  got_mean, half = statistics.t_interval(values)
  assert got_mean == pytest.approx(0.6)
  assert half == pytest.approx(T975_DF4 * sd / math.sqrt(5), rel=1e-5)
  assert half == pytest.approx(0.098163, rel=1e-4)
  one_mean, one_half = statistics.t_interval([0.4])
  assert one_mean == 0.4 and math.isnan(one_half)
  with pytest.raises(ValueError):
    statistics.t_interval([])


def test_paired_difference_at_the_five_percent_boundary():
  # Differences with t = mean / (sd / sqrt(n)) at the 97.5 % quantile have p = 0.05
  # exactly; just above it the outcome is a win, just below a tie.
  base = np.array([-1.0, 0.0, 1.0])  # sd 1, mean 0
  theirs = np.array([0.3, 0.5, 0.4])
  for scale, outcome in ((1.001, 'win'), (0.999, 'tie')):
    shift = scale * T975_DF2 / math.sqrt(3)
    ours = theirs + 0.01 * (base + shift)
    d = statistics.paired_difference(ours, theirs)
    assert d.seeds == 3
    assert d.mean == pytest.approx(0.01 * shift)
    assert d.half_width == pytest.approx(0.01 * T975_DF2 / math.sqrt(3), rel=1e-5)
    assert d.p_value == pytest.approx(0.05, abs=2e-4)
    assert d.outcome == outcome
  loss = statistics.paired_difference(theirs - 0.1 + 0.001 * base, theirs)
  assert loss.outcome == 'loss' and loss.mean == pytest.approx(-0.1)


def test_paired_difference_degenerate_cases():
  same = statistics.paired_difference([0.5, 0.6], [0.5, 0.6])
  assert (same.p_value, same.outcome) == (1.0, 'tie')
  constant = statistics.paired_difference([0.6, 0.7], [0.5, 0.6])
  assert constant.p_value == 0.0 and constant.outcome == 'win'
  single = statistics.paired_difference([0.9], [0.1])
  assert single.outcome == 'tie' and math.isnan(single.half_width)
  with pytest.raises(ValueError, match='same non-zero length'):
    statistics.paired_difference([0.1, 0.2], [0.1])


def test_flattening_compares_the_last_two_windows():
  curve = [0.0] * 5 + [0.50] * 10 + [0.52] * 10
  assert statistics.flattening(curve) == pytest.approx(0.02)
  assert not statistics.is_flat(statistics.flattening(curve))
  assert statistics.is_flat(statistics.flattening([0.5] * 10 + [0.505] * 10))
  assert math.isnan(statistics.flattening([0.5] * 19))


def _finals(offset_fedcmi, offset_fedprox):
  """Two cells x 3 seeds of fedcmi, fedavg, fedprox and a unimodal reference."""
  rows = []
  for alpha in ('0.1', '1'):
    for seed, base in enumerate((0.50, 0.60, 0.55)):
      for method, offset in (('fedavg', 0.0), ('fedcmi', offset_fedcmi[alpha][seed]),
                             ('fedprox', offset_fedprox)):
        value = base + offset
        rows.append(dict(dominant='audio', method=method, alpha=alpha, ratio='0.5', seed=seed,
                         acc_fused=value, last_acc_fused=value + 0.01,
                         acc_visual_own=value - 0.2, last_acc_visual_own=value - 0.2,
                         acc_audio_own=0.9, last_acc_audio_own=0.9))
      rows.append(dict(dominant='audio', method='unimodal_visual', alpha=alpha, ratio='any',
                       seed=seed, acc_fused=0.3, last_acc_fused=0.3, acc_visual_own=0.3,
                       last_acc_visual_own=0.3, acc_audio_own=0.16, last_acc_audio_own=0.16))
  return pd.DataFrame(rows)


def test_paired_differences_win_tie_loss_and_where_fedcmi_loses():
  # alpha 0.1: FedCMI 5 points below FedAvg on every seed up to +-0.1 (a loss);
  # alpha 1: +-2 points around FedAvg (a tie).  FedProx is 1 point below FedAvg throughout.
  offsets = {'0.1': [-0.051, -0.049, -0.050], '1': [0.02, -0.02, 0.0]}
  finals = _finals(offsets, -0.01)
  paired = report.paired_differences(finals, NAMES)
  # 2 cells x 2 baselines x 2 metrics x 2 statistics; the unimodal run is not a baseline.
  assert len(paired) == 16
  assert set(paired['baseline']) == {'fedavg', 'fedprox'}
  assert set(paired['weak']) == {'visual'}
  row = paired[(paired['alpha'] == '0.1') & (paired['baseline'] == 'fedavg') &
               (paired['metric'] == 'fused') & (paired['statistic'] == 'final')].iloc[0]
  d = np.array(offsets['0.1'])
  t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
  assert row['difference'] == pytest.approx(-0.05)
  assert row['ci95'] == pytest.approx(T975_DF2 * d.std(ddof=1) / math.sqrt(3), rel=1e-5)
  assert abs(t) > T975_DF2 and row['outcome'] == 'loss'
  tie = paired[(paired['alpha'] == '1') & (paired['baseline'] == 'fedavg')]
  assert set(tie['outcome']) == {'tie'}
  table = report.win_tie_loss(paired)
  line = [l for l in table.splitlines() if l.startswith('| fedcmi | fedavg |')][0]
  assert line == '| fedcmi | fedavg | 2 | 0 / 1 / 1 | 0 / 1 / 1 | 0 / 1 / 1 | 0 / 1 / 1 |'
  # Against FedProx (1 point below FedAvg): alpha 0.1 is -4 points (loss), alpha 1 a tie.
  line = [l for l in table.splitlines() if l.startswith('| fedcmi | fedprox |')][0]
  assert line.endswith('| 2 | 0 / 1 / 1 | 0 / 1 / 1 | 0 / 1 / 1 | 0 / 1 / 1 |')
  text = report.where_fedcmi_loses(paired)
  assert 'audio dominant, dirichlet_alpha = 0.1, multi_ratio = 0.5: fused vs fedavg: -5.0' in text
  assert 'visual own path vs fedprox: -4.0' in text
  assert 'dirichlet_alpha = 1,' not in text


def test_candidate_pairs_set_variants_against_fedcmi_once():
  pairs = report.candidate_pairs(['fedcmi', 'fedavg', 'fedcmi_confident_teacher',
                                  'unimodal_audio', 'fedprox'])
  assert pairs == [('fedcmi', 'fedavg'), ('fedcmi', 'fedprox'),
                   ('fedcmi_confident_teacher', 'fedcmi'),
                   ('fedcmi_confident_teacher', 'fedavg'),
                   ('fedcmi_confident_teacher', 'fedprox')]


def test_flattening_table_reads_fedavg_validation_curves():
  rounds = []
  for seed, top in enumerate((0.60, 0.62)):
    for r in range(1, 31):
      value = top if r > 20 else (top - 0.05 if r > 10 else 0.3)
      rounds.append(dict(dominant='', method='fedavg', alpha='1', ratio='0.5', seed=seed,
                         round=r, val_acc_fused=value, acc_fused=0.0))
  text, frame = report.flattening_table(pd.DataFrame(rounds))
  assert frame['change'].iloc[0] == pytest.approx(0.05)
  assert not frame['flat'].iloc[0]
  assert '0 of 1 cells flat' in text and '+5.00 | **no**' in text


def test_paired_lines_summarise_one_cell_for_compare():
  finals = _finals({'0.1': [-0.051, -0.049, -0.050], '1': [0.0, 0.0, 0.0]}, -0.01)
  paired = report.paired_differences(finals[finals['alpha'] == '0.1'], NAMES)
  lines = report.paired_lines(paired).splitlines()
  assert lines[0] == ('- fedcmi − fedavg, paired over 3 seeds: fused -5.0 ± 0.2 (p = 0.000, loss); '
                      'visual own path -5.0 ± 0.2 (p = 0.000, loss)')
  assert lines[1].startswith('- fedcmi − fedprox, paired over 3 seeds: fused -4.0 ± 0.2')
  assert report.paired_lines(paired.iloc[0:0]) == ''
