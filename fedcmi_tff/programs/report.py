"""The grid's report: tables (CSV, Markdown) and figures (PNG) from finished runs.

Reads each run's summary.json, metrics.csv and per_class.csv; everything is a
mean ± standard deviation over seeds.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fedcmi_tff import files  # noqa: E402
from fedcmi_tff.programs import comparison  # noqa: E402


def load_runs(cells: list) -> tuple:
  """(final-round frame, per-round frame, per-class frame) of the finished cells.

  Args:
    cells: dicts with keys method, algorithm, alpha, ratio, seed, dir.
  """
  finals, rounds, classes = [], [], []
  for cell in cells:
    with open(os.path.join(cell['dir'], 'summary.json')) as f:
      summary = json.load(f)
    names = summary['modality_names']
    keys = {k: cell[k] for k in ('method', 'alpha', 'ratio', 'seed')}
    final = dict(keys, **summary['final'])
    for m in names:
      final[f'acc_{m}_own'] = summary['final'][
          comparison.unimodal_path_column(cell['algorithm'], m)]
    finals.append(final)
    per_round = pd.read_csv(os.path.join(cell['dir'], 'metrics.csv'))
    for m in names:
      per_round[f'acc_{m}_own'] = per_round[
          comparison.unimodal_path_column(cell['algorithm'], m)]
    for k, v in keys.items():
      per_round[k] = v
    rounds.append(per_round)
    per_class = pd.read_csv(os.path.join(cell['dir'], 'per_class.csv'))
    last = per_class[per_class['round'] == per_class['round'].max()]
    for k, v in keys.items():
      last = last.assign(**{k: v})
    classes.append(last)
  return pd.DataFrame(finals), pd.concat(rounds), pd.concat(classes)


def report_columns(modality_names) -> tuple:
  a, b = modality_names
  columns = ['acc_fused', f'acc_{a}_own', f'acc_{b}_own', 'acc_macro', 'acc_worst_class']
  labels = {'acc_fused': 'fused', f'acc_{a}_own': f'{a} (own path)',
            f'acc_{b}_own': f'{b} (own path)', 'acc_macro': 'macro',
            'acc_worst_class': 'worst class'}
  return columns, labels


def weak_modality(finals: pd.DataFrame, modality_names) -> str:
  """The modality with the lower mean own-path accuracy over the multimodal methods' runs.

  Unimodal and centralised runs are left out: a unimodal run's other modality is at
  chance by construction.  With no multimodal run, the unimodal runs decide.
  """
  multimodal = finals[~finals['method'].str.startswith('unimodal_') &
                      (finals['method'] != 'centralised')]
  if len(multimodal):
    means = {m: multimodal[f'acc_{m}_own'].mean() for m in modality_names}
  else:
    means = {m: finals.loc[finals['method'] == f'unimodal_{m}', f'acc_{m}_own'].mean()
             for m in modality_names}
  a, b = modality_names
  return a if means[a] < means[b] else b


def where_fedcmi_loses(table: pd.DataFrame, columns, labels) -> str:
  """One line naming every baseline whose mean beats FedCMI's, per column."""
  if 'fedcmi' not in table.index:
    return ''
  parts = []
  for c in columns:
    ours = table.loc['fedcmi', f'{c}_mean']
    better = [f'{m} (+{100 * (row[f"{c}_mean"] - ours):.1f})' for m, row in table.iterrows()
              if m != 'fedcmi' and row[f'{c}_mean'] > ours]
    parts.append(f'{labels[c]}: {", ".join(better) if better else "none"}')
  return 'Methods with a higher mean than FedCMI — ' + '; '.join(parts) + '.\n'


def write_report(finals: pd.DataFrame, rounds: pd.DataFrame, classes: pd.DataFrame,
                 modality_names, out_dir: str, write, figure_cell: tuple | None = None) -> list:
  """Writes report.csv, report.md and the figures; returns the written paths.

  `write(path, text)` writes a text file atomically.  Partition-free methods
  (unimodal, centralised) are shown in every (alpha, ratio) table.  The per-round
  and per-class figures show `figure_cell` = (alpha label, ratio label) when the
  grid has it, else its first cell.
  """
  columns, labels = report_columns(modality_names)
  written = []
  partition_free = finals[(finals['ratio'] == 'any')]
  sections, tables = [], []
  cells = finals[finals['ratio'] != 'any'][['alpha', 'ratio']].drop_duplicates()
  for _, cell in cells.iterrows():
    rows = finals[(finals['alpha'] == cell['alpha']) & (finals['ratio'] == cell['ratio'])]
    refs = partition_free[(partition_free['alpha'] == cell['alpha']) |
                          (partition_free['alpha'] == 'any')]
    table = comparison.mean_std_table(pd.concat([rows, refs]), columns)
    flat = table.reset_index().assign(alpha=cell['alpha'], ratio=cell['ratio'])
    tables.append(flat)
    sections.append(f'### dirichlet_alpha = {cell["alpha"]}, multi_ratio = {cell["ratio"]}\n\n'
                    + comparison.markdown_table(table, columns, labels) + '\n'
                    + where_fedcmi_loses(table, columns, labels))
  if tables:
    path = os.path.join(out_dir, 'report.csv')
    write(path, pd.concat(tables).to_csv(index=False))
    written.append(path)
  path = os.path.join(out_dir, 'report.md')
  write(path, 'Final-round test accuracy (%), mean ± std over seeds. "Own path": the inference '
        'path a method trains for unimodal clients (FedCMI: infiltration-filled; others: '
        'zero-filled).\n\n' + '\n'.join(sections))
  written.append(path)
  if len(cells):
    chosen = (cells.iloc[0]['alpha'], cells.iloc[0]['ratio'])
    if figure_cell is not None and any(
        (a, r) == tuple(figure_cell) for a, r in zip(cells['alpha'], cells['ratio'])):
      chosen = tuple(figure_cell)
    written += _figures(rounds, classes, finals, chosen[0], chosen[1], columns, labels,
                        modality_names, out_dir)
  return written


def _cell_rows(frame, alpha, ratio):
  return frame[((frame['alpha'] == alpha) & (frame['ratio'] == ratio)) |
               ((frame['ratio'] == 'any') & ((frame['alpha'] == alpha) |
                                             (frame['alpha'] == 'any')))]


def _figures(rounds, classes, finals, alpha, ratio, columns, labels, modality_names, out_dir):
  paths = []
  weak = weak_modality(finals, modality_names)
  dominant = [m for m in modality_names if m != weak][0]
  weak_column = f'acc_{weak}_own'
  cell_rounds = _cell_rows(rounds, alpha, ratio)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
  for method, group in cell_rounds.groupby('method', sort=False):
    mean = group.groupby('round')[['acc_fused', weak_column]].mean()
    axes[0].plot(mean.index, mean['acc_fused'], label=method)
    axes[1].plot(mean.index, mean[weak_column], label=method)
  axes[0].set_title('fused accuracy')
  axes[1].set_title(labels[weak_column])
  for ax in axes:
    ax.set_xlabel('round')
    ax.set_ylabel('test accuracy')
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=7)
  fig.suptitle(f'accuracy per round (mean over seeds), alpha={alpha}, multi_ratio={ratio}')
  fig.tight_layout()
  paths.append(_save(fig, os.path.join(out_dir, 'fig_accuracy_per_round.png')))

  cell_classes = _cell_rows(classes, alpha, ratio)
  fused = cell_classes[cell_classes['path'] == 'fused']
  class_columns = [c for c in fused.columns
                   if c not in ('round', 'path', 'method', 'alpha', 'ratio', 'seed')]
  means = fused.groupby('method', sort=False)[class_columns].mean()
  fig, ax = plt.subplots(figsize=(11, 4))
  width = 0.8 / max(len(means), 1)
  x = np.arange(len(class_columns))
  for i, (method, row) in enumerate(means.iterrows()):
    ax.bar(x + i * width, row.values, width, label=method)
  ax.set_xticks(x + 0.4 - width / 2)
  ax.set_xticklabels(class_columns)
  ax.set_ylabel('final-round accuracy (fused)')
  ax.set_title(f'per-class accuracy, alpha={alpha}, multi_ratio={ratio}')
  ax.legend(fontsize=7, ncol=3)
  fig.tight_layout()
  paths.append(_save(fig, os.path.join(out_dir, 'fig_per_class.png')))

  a_col, b_col = f'acc_{dominant}_own', f'acc_{weak}_own'
  gaps = finals.assign(gap=finals[a_col] - finals[b_col])
  gaps = gaps[~gaps['method'].str.startswith('unimodal_')]
  table = gaps.groupby(['method', 'ratio'], sort=False)['gap'].mean().unstack('ratio')
  fig, ax = plt.subplots(figsize=(11, 4))
  table.plot.bar(ax=ax)
  ax.axhline(0, color='black', linewidth=0.8)
  ax.set_ylabel(f'{labels[a_col]} - {labels[b_col]}')
  ax.set_title('gap between the modalities\' own-path accuracies (mean over seeds and alphas)')
  fig.tight_layout()
  paths.append(_save(fig, os.path.join(out_dir, 'fig_modality_gap.png')))
  return paths


def _save(fig, path):
  with files.atomic_path(path, suffix='.png') as tmp:
    fig.savefig(tmp, dpi=110)
  plt.close(fig)
  return path
