"""Cells and report of the privacy and communication grid (`python -m fedcmi_tff.privacy_grid`).

One label split and modality mix (the base configuration's), methods x aggregation
settings x seeds.  The settings: the plain group mean, user-level DP at each noise
multiplier, and quantised updates at each bit width.  A cell's folder is
<out>/<setting>/<method>/seed_<s>.  The report gives, per setting and method, the
(epsilon, delta) of the rounds run, the bytes a client sends per round, and the fused and
weak-modality accuracy (final round and last-rounds mean, each mean ± 95 % t-interval over
seeds), FedCMI minus FedAvg paired over seeds, and two figures: accuracy against epsilon
and against bytes per round.
"""

from __future__ import annotations

import dataclasses
import math
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fedcmi_tff import config as config_lib  # noqa: E402
from fedcmi_tff.algorithms import registry as method_registry  # noqa: E402
from fedcmi_tff.programs import grid_runner  # noqa: E402
from fedcmi_tff.programs import report  # noqa: E402
from fedcmi_tff.programs import statistics  # noqa: E402

MEAN_SETTING = 'mean'


def settings(base: config_lib.AggregationConfig, noise_multipliers, quantization_bits) -> list:
  """(label, AggregationConfig): the plain mean, DP at each z, quantisation at each width."""
  out = [(MEAN_SETTING, config_lib.AggregationConfig())]
  out += [(f'dp_z{z:g}', dataclasses.replace(base, mechanisms=('dp',), noise_multiplier=z))
          for z in noise_multipliers]
  out += [(f'compressed_{b}bit', dataclasses.replace(base, mechanisms=('compressed',),
                                                     quantization_bits=b))
          for b in quantization_bits]
  return out


def privacy_cells(base: config_lib.ExperimentConfig, methods, setting_list, seeds,
                  modality_names, out_dir) -> list:
  """Every run as a dict (method, algorithm, setting, alpha, ratio, seed, dir, config),
  seeds outermost (a stopped grid has whole seeds).

  Raises:
    ValueError: an unknown method, or one whose result ignores the label split or the
      modality mix (unimodal, centralised: not federated over the same population).
  """
  for method in methods:
    if (method_registry.ignores_label_split(method, modality_names) or
        method_registry.ignores_multi_ratio(method, modality_names)):
      raise ValueError(f'method {method!r} does not train on the federated population; the '
                       'privacy grid compares federated methods')
  alpha = grid_runner.label(base.federation.dirichlet_alpha)
  ratio = grid_runner.label(base.federation.multi_ratio)
  cells = []
  for seed in seeds:
    for setting, aggregation in setting_list:
      for method in methods:
        config = dataclasses.replace(
            base, aggregation=aggregation,
            federation=dataclasses.replace(base.federation, seed=seed))
        config = method_registry.method_config(method, config, modality_names)
        cells.append(dict(method=method, algorithm=config.algorithm, setting=setting,
                          alpha=alpha, ratio=ratio, seed=seed,
                          dir=os.path.join(out_dir, setting, method, f'seed_{seed}'),
                          config=config))
  return cells


def load(cells: list) -> pd.DataFrame:
  """The final-round frame of `report.load_runs` with each run's setting."""
  finals, _, _ = report.load_runs(cells)
  finals['setting'] = [c['setting'] for c in cells]
  return finals


def _epsilon_text(epsilon: float) -> str:
  return 'none' if math.isinf(epsilon) else f'{epsilon:.2f}'


def setting_table(finals: pd.DataFrame, weak: str) -> tuple:
  """(Markdown, records): per setting and method, epsilon, bytes and the accuracies."""
  columns = ['acc_fused', f'acc_{weak}_own']
  header = ['setting', 'method', 'seeds', 'epsilon', 'bytes / client / round',
            'fused', f'{weak} (own path)']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  records = []
  for (setting, method), group in finals.groupby(['setting', 'method'], sort=False):
    epsilon = float(group['epsilon'].max())
    cells = [setting, method, str(len(group)), _epsilon_text(epsilon),
             f'{int(group["update_bytes"].iloc[0]):,}']
    texts, fields = report.interval_columns(group, columns)
    cells += texts
    record = dict(setting=setting, method=method, seeds=len(group), epsilon=epsilon,
                  update_bytes=int(group['update_bytes'].iloc[0]), **fields)
    lines.append('| ' + ' | '.join(cells) + ' |')
    records.append(record)
  return '\n'.join(lines) + '\n', records


def paired_lines(finals: pd.DataFrame, weak: str, ours: str = 'fedcmi',
                 theirs: str = 'fedavg') -> str:
  """Per setting, `ours - theirs` over paired seeds (last-rounds mean), fused and weak path."""
  lines = []
  for setting, group in finals.groupby('setting', sort=False):
    a = group[group['method'] == ours].sort_values('seed')
    b = group[group['method'] == theirs].sort_values('seed')
    seeds = sorted(set(a['seed']) & set(b['seed']))
    if not seeds:
      continue
    a, b = a[a['seed'].isin(seeds)], b[b['seed'].isin(seeds)]
    parts = []
    for column, name in (('last_acc_fused', 'fused'), (f'last_acc_{weak}_own', weak)):
      d = statistics.paired_difference(a[column].to_numpy(), b[column].to_numpy())
      half = '' if np.isnan(d.half_width) else f' ± {100 * d.half_width:.1f}'
      parts.append(f'{name} {100 * d.mean:+.1f}{half} (p {d.p_value:.2f}, {d.outcome})')
    lines.append(f'- {setting}: {ours} - {theirs} over {len(seeds)} seeds: ' + '; '.join(parts))
  return '\n'.join(lines) + '\n'


def write_privacy_report(finals: pd.DataFrame, weak: str, out_dir: str, write_text,
                         preamble: str = '') -> list:
  """report.md, report.csv and the two figures; returns the paths written."""
  table, records = setting_table(finals, weak)
  text = (preamble + '## Accuracy, privacy and bytes\n\nFinal round (last-rounds mean in '
          'brackets), mean ± 95 % t-interval over seeds, in %; epsilon at the delta above for '
          'the rounds run ("none": no DP); bytes one client sends per round.\n\n' + table +
          '\n## FedCMI - FedAvg, paired over seeds (last-rounds mean)\n\n' +
          paired_lines(finals, weak) + '\n![accuracy against epsilon]'
          '(fig_accuracy_vs_epsilon.png)\n![accuracy against bytes](fig_accuracy_vs_bytes.png)\n')
  paths = [os.path.join(out_dir, 'report.md'), os.path.join(out_dir, 'report.csv')]
  write_text(paths[0], text)
  write_text(paths[1], pd.DataFrame(records).to_csv(index=False))
  frame = pd.DataFrame(records)
  for x, name, label in (('epsilon', 'fig_accuracy_vs_epsilon.png', 'epsilon (log scale)'),
                         ('update_bytes', 'fig_accuracy_vs_bytes.png',
                          'bytes per client per round (log scale)')):
    paths.append(_figure(frame, x, label, weak, os.path.join(out_dir, name)))
  return paths


def _figure(frame: pd.DataFrame, x: str, x_label: str, weak: str, path: str) -> str:
  """Accuracy (last-rounds mean ± 95 % interval) against `x`, one line per method and
  accuracy; against epsilon the DP settings, with each method's plain-mean accuracy as a
  dashed line; against bytes the settings without DP."""
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  plain = frame[frame['setting'] == MEAN_SETTING]
  if x == 'epsilon':
    frame = frame[np.isfinite(frame['epsilon'])]
  else:
    frame = frame[~frame['setting'].str.startswith('dp_')]
  for ax, column, title in ((axes[0], 'acc_fused', 'fused'),
                            (axes[1], f'acc_{weak}_own', f'{weak} (own path)')):
    for i, (method, group) in enumerate(frame.groupby('method', sort=False)):
      if x == 'epsilon':
        for value in plain.loc[plain['method'] == method, f'last_{column}_mean']:
          ax.axhline(100 * value, color=f'C{i}', linestyle='--', linewidth=0.8)
      group = group.sort_values(x)
      ax.errorbar(group[x], 100 * group[f'last_{column}_mean'],
                  yerr=100 * group[f'last_{column}_ci95'].fillna(0), marker='o',
                  capsize=3, label=method)
    ax.set_xscale('log')
    ax.set_xlabel(x_label)
    ax.set_ylabel('accuracy (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return report.save_figure(fig, path)
