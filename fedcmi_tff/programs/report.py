"""The grid's report: tables (CSV, Markdown) and figures (PNG) from finished runs.

Reads each run's summary.json, metrics.csv and per_class.csv.  Every cell's table gives
each method's final-round and last-rounds-mean test accuracy as mean ± the 95 % t-interval
over seeds; FedCMI (and its variants) are set against each baseline by paired t-tests over
seeds, counted as win / tie / loss over cells, and the cells where FedCMI loses are named;
FedAvg's flattening shows whether the runs have converged (programs/statistics.py).
"""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fedcmi_tff import files  # noqa: E402
from fedcmi_tff.programs import comparison  # noqa: E402
from fedcmi_tff.programs import statistics  # noqa: E402


_KEYS = ('dominant', 'method', 'alpha', 'ratio', 'seed')
# Runs written before summary.json recorded last_rounds_mean: the same rule, 5 rounds.
_OLD_RUNS_LAST_ROUNDS = 5


def load_runs(cells: list) -> tuple:
  """(final-round frame, per-round frame, per-class frame) of the finished cells.

  Every frame has the keys dominant ('' for a grid without a dominant-modality axis),
  method, alpha, ratio and seed.  The final frame also holds `last_<column>`: the mean of
  the run's last rounds (summary.json `last_rounds_mean`), `epsilon` (inf without DP) and
  `update_bytes` (per client per round; NaN for runs of earlier versions).

  Args:
    cells: dicts with keys method, algorithm, alpha, ratio, seed, dir (and dominant).
  """
  finals, rounds, classes = [], [], []
  for cell in cells:
    with open(os.path.join(cell['dir'], 'summary.json')) as f:
      summary = json.load(f)
    names = summary['modality_names']
    keys = {k: cell.get(k, '') for k in _KEYS}
    per_round = pd.read_csv(os.path.join(cell['dir'], 'metrics.csv'))
    last = summary.get('last_rounds_mean') or per_round.tail(_OLD_RUNS_LAST_ROUNDS).mean(
        numeric_only=True).to_dict()
    final = dict(keys, **summary['final'])
    aggregation = summary.get('aggregation', {})  # runs of earlier versions have none
    final['epsilon'] = aggregation.get('privacy', {}).get('epsilon', math.inf)
    final['update_bytes'] = aggregation.get('update_bytes_per_client_per_round', math.nan)
    final.update({f'last_{k}': v for k, v in last.items()})
    for m in names:
      own = comparison.unimodal_path_column(cell['algorithm'], m)
      final[f'acc_{m}_own'] = summary['final'][own]
      final[f'last_acc_{m}_own'] = last[own]
      per_round[f'acc_{m}_own'] = per_round[own]
    finals.append(final)
    for k, v in keys.items():
      per_round[k] = v
    rounds.append(per_round)
    per_class = pd.read_csv(os.path.join(cell['dir'], 'per_class.csv'))
    last_class = per_class[per_class['round'] == per_class['round'].max()]
    for k, v in keys.items():
      last_class = last_class.assign(**{k: v})
    classes.append(last_class)
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


def is_partition_free(method: str) -> bool:
  return method.startswith('unimodal_') or method == 'centralised'


def _cell_title(dominant, alpha, ratio) -> str:
  lead = f'{dominant} dominant, ' if dominant else ''
  return f'{lead}dirichlet_alpha = {alpha}, multi_ratio = {ratio}'


def _weak(dominant: str, finals: pd.DataFrame, modality_names) -> str:
  if dominant:
    return [m for m in modality_names if m != dominant][0]
  return weak_modality(finals, modality_names)


def interval_text(values) -> str:
  mean, half = statistics.t_interval(values)
  return f'{100 * mean:.1f}' + ('' if np.isnan(half) else f' ± {100 * half:.1f}')


def interval_columns(group: pd.DataFrame, columns, last_rounds: bool = True) -> tuple:
  """(table texts, record fields) of `columns` over a group's seeds: each text the final
  round's mean ± 95 % half-width, then (`last_rounds`) the last-rounds mean's in brackets;
  the fields <c>_mean, <c>_ci95, last_<c>_mean, last_<c>_ci95."""
  texts, fields = [], {}
  for c in columns:
    texts.append(interval_text(group[c]) +
                 (f' ({interval_text(group["last_" + c])})' if last_rounds else ''))
    for prefix in ('', 'last_'):
      mean, half = statistics.t_interval(group[prefix + c])
      fields[f'{prefix}{c}_mean'], fields[f'{prefix}{c}_ci95'] = mean, half
  return texts, fields


def cell_table(rows: pd.DataFrame, columns, labels, last_rounds: bool = True) -> tuple:
  """(Markdown, flat records) of one cell: per method, the final round and (`last_rounds`)
  in brackets the last-rounds mean, each as mean ± the 95 % t-interval half-width."""
  header = ['method', 'seeds'] + [labels[c] for c in columns]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  records = []
  for method, group in rows.groupby('method', sort=False):
    texts, fields = interval_columns(group, columns, last_rounds)
    cells = [method, str(len(group))] + texts
    record = dict(method=method, seeds=len(group), **fields)
    lines.append('| ' + ' | '.join(cells) + ' |')
    records.append(record)
  return '\n'.join(lines) + '\n', records


def candidate_pairs(methods) -> list:
  """(ours, baseline) pairs: FedCMI (and each FedCMI variant) against every other
  multimodal method; variants are also set against FedCMI itself, not each other."""
  ours = [m for m in methods if m.startswith('fedcmi')]
  pairs = []
  for c in ours:
    for o in methods:
      if o == c or is_partition_free(o):
        continue
      # Of the FedCMI family, only (variant, 'fedcmi') is a pair.
      if o.startswith('fedcmi') and (c == 'fedcmi' or o != 'fedcmi'):
        continue
      pairs.append((c, o))
  return pairs


def paired_differences(finals: pd.DataFrame, modality_names) -> pd.DataFrame:
  """Every (cell, ours, baseline, metric, statistic) paired test over the shared seeds.

  Metrics: fused accuracy and the weak modality's own path; statistics: the final round
  and the mean of the last rounds.
  """
  records = []
  multimodal = finals[~finals['method'].map(is_partition_free)]
  for (dominant, alpha, ratio), rows in multimodal.groupby(['dominant', 'alpha', 'ratio'],
                                                          sort=False):
    weak = _weak(dominant, finals, modality_names)
    by_method = {m: g.set_index('seed') for m, g in rows.groupby('method', sort=False)}
    for ours, theirs in candidate_pairs(list(by_method)):
      seeds = sorted(set(by_method[ours].index) & set(by_method[theirs].index))
      if not seeds:
        continue
      for metric, column in (('fused', 'acc_fused'), (f'{weak} own path', f'acc_{weak}_own')):
        for statistic, prefix in (('final', ''), ('last-rounds mean', 'last_')):
          d = statistics.paired_difference(by_method[ours].loc[seeds, prefix + column],
                                           by_method[theirs].loc[seeds, prefix + column])
          records.append(dict(dominant=dominant, alpha=alpha, ratio=ratio, ours=ours,
                              baseline=theirs, metric=metric.replace(weak, 'weak'),
                              weak=weak, statistic=statistic, difference=d.mean,
                              ci95=d.half_width, p_value=d.p_value, seeds=d.seeds,
                              outcome=d.outcome))
  return pd.DataFrame.from_records(records)


def paired_lines(paired: pd.DataFrame, statistic: str = 'final') -> str:
  """One line per (ours, baseline): the paired differences of the fused accuracy and the
  weak own path with their 95 % intervals, p-values and outcomes."""
  if paired.empty:
    return ''
  lines = []
  sel = paired[paired['statistic'] == statistic]
  for (ours, base), group in sel.groupby(['ours', 'baseline'], sort=False):
    parts = []
    for _, r in group.iterrows():
      metric = f'{r["weak"]} own path' if r['metric'] == 'weak own path' else r['metric']
      parts.append(f'{metric} {100 * r["difference"]:+.1f} ± {100 * r["ci95"]:.1f} '
                   f'(p = {r["p_value"]:.3f}, {r["outcome"]})')
    lines.append(f'- {ours} − {base}, paired over {group["seeds"].iloc[0]} seeds: '
                 + '; '.join(parts))
  return '\n'.join(lines) + ('\n' if lines else '')


def win_tie_loss(paired: pd.DataFrame) -> str:
  """Markdown: per (ours, baseline), wins / ties / losses over cells, per metric and statistic."""
  if paired.empty:
    return 'No paired comparison (FedCMI and a baseline over shared seeds) in this grid.\n'
  keys = [('fused', 'final'), ('fused', 'last-rounds mean'), ('weak own path', 'final'),
          ('weak own path', 'last-rounds mean')]
  header = ['ours', 'baseline', 'cells'] + [f'{m}, {s}' for m, s in keys]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for (ours, base), group in paired.groupby(['ours', 'baseline'], sort=False):
    cells = [ours, base]
    counts = []
    for metric, statistic in keys:
      sel = group[(group['metric'] == metric) & (group['statistic'] == statistic)]
      n = sel['outcome'].value_counts()
      counts.append(f'{n.get("win", 0)} / {n.get("tie", 0)} / {n.get("loss", 0)}')
    cells.append(str(len(group) // len(keys)))
    lines.append('| ' + ' | '.join(cells + counts) + ' |')
  return '\n'.join(lines) + '\n'


def where_fedcmi_loses(paired: pd.DataFrame) -> str:
  """Plain sentences naming every cell where FedCMI is significantly worse (last-rounds
  mean), with the difference and its interval."""
  if paired.empty:
    return ''
  sel = paired[(paired['ours'] == 'fedcmi') & (paired['statistic'] == 'last-rounds mean') &
               (paired['outcome'] == 'loss')]
  if sel.empty:
    return ('FedCMI is not significantly worse than any baseline in any cell (last-rounds '
            'mean, paired t-test at p < 0.05).\n')
  lines = ['FedCMI is significantly worse (last-rounds mean, paired t-test at p < 0.05) in:\n']
  for _, r in sel.iterrows():
    metric = f'{r["weak"]} own path' if r['metric'] == 'weak own path' else r['metric']
    lines.append(f'- {_cell_title(r["dominant"], r["alpha"], r["ratio"])}: {metric} vs '
                 f'{r["baseline"]}: {100 * r["difference"]:+.1f} ± {100 * r["ci95"]:.1f} points '
                 f'(p = {r["p_value"]:.3f}, {r["seeds"]} seeds)')
  return '\n'.join(lines) + '\n'


def flattening_curves(rounds: pd.DataFrame, method: str = 'fedavg') -> tuple:
  """(column, {(dominant, alpha, ratio): mean curve over seeds}) of `method`'s validation
  fused accuracy per round (test, when the runs have no validation split)."""
  column = 'val_acc_fused' if 'val_acc_fused' in rounds.columns else 'acc_fused'
  rows = rounds[rounds['method'] == method]
  return column, {cell: group.groupby('round')[column].mean() for cell, group in
                  rows.groupby(['dominant', 'alpha', 'ratio'], sort=False)}


def flattening_table(rounds: pd.DataFrame, method: str = 'fedavg') -> tuple:
  """(Markdown, frame) of `method`'s validation (else test) fused-accuracy change over the
  last rounds, per cell, mean curve over seeds; the criterion is statistics.is_flat."""
  column, curves = flattening_curves(rounds, method)
  records = []
  for (dominant, alpha, ratio), curve in curves.items():
    change = statistics.flattening(curve.values)
    records.append(dict(dominant=dominant, alpha=alpha, ratio=ratio, rounds=len(curve),
                        change=change, flat=statistics.is_flat(change)))
  frame = pd.DataFrame.from_records(records)
  if frame.empty:
    return f'No {method} runs: flattening not checked.\n', frame
  w, tol = statistics.FLAT_WINDOW, statistics.FLAT_TOLERANCE
  lines = [f'{method}\'s {"validation" if column.startswith("val_") else "test"} fused accuracy '
           f'(mean over seeds): mean of the last {w} rounds minus the mean of the {w} before; '
           f'flat when within {100 * tol:.0f} point.  {int(frame["flat"].sum())} of '
           f'{len(frame)} cells flat.\n',
           '| cell | rounds | change (points) | flat |', '|---|---|---|---|']
  for _, r in frame.iterrows():
    lines.append(f'| {_cell_title(r["dominant"], r["alpha"], r["ratio"])} | {r["rounds"]} | '
                 + (f'{100 * r["change"]:+.2f} | {"yes" if r["flat"] else "**no**"} |'
                    if not np.isnan(r['change']) else f'n/a | no (fewer than {2 * w} rounds) |'))
  return '\n'.join(lines) + '\n', frame


def write_report(finals: pd.DataFrame, rounds: pd.DataFrame, classes: pd.DataFrame,
                 modality_names, out_dir: str, write, figure_cell: tuple | None = None,
                 preamble: str = '') -> list:
  """Writes report.csv, paired.csv, report.md and the figures; returns the written paths.

  `write(path, text)` writes a text file atomically.  Partition-free methods
  (unimodal, centralised) are shown in every (alpha, ratio) table.  The per-round
  and per-class figures show `figure_cell` = (alpha label, ratio label) when the
  grid has it (of the first dominant modality), else its first cell.  `preamble`
  (Markdown) opens report.md: the setting, the tuned values.
  """
  columns, labels = report_columns(modality_names)
  written = []
  partition_free = finals[finals['ratio'] == 'any']
  sections, tables = [], []
  cells = finals[finals['ratio'] != 'any'][['dominant', 'alpha', 'ratio']].drop_duplicates()
  for _, cell in cells.iterrows():
    rows = finals[(finals['dominant'] == cell['dominant']) & (finals['alpha'] == cell['alpha'])
                  & (finals['ratio'] == cell['ratio'])]
    refs = partition_free[(partition_free['dominant'] == cell['dominant']) &
                          ((partition_free['alpha'] == cell['alpha']) |
                           (partition_free['alpha'] == 'any'))]
    markdown, records = cell_table(pd.concat([rows, refs]), columns, labels)
    tables.append(pd.DataFrame.from_records(records).assign(
        dominant=cell['dominant'], alpha=cell['alpha'], ratio=cell['ratio']))
    sections.append(f'### {_cell_title(cell["dominant"], cell["alpha"], cell["ratio"])}\n\n'
                    + markdown)
  if tables:
    path = os.path.join(out_dir, 'report.csv')
    write(path, pd.concat(tables).to_csv(index=False))
    written.append(path)
  paired = paired_differences(finals, modality_names)
  if not paired.empty:
    path = os.path.join(out_dir, 'paired.csv')
    write(path, paired.to_csv(index=False))
    written.append(path)
  flat_text, _ = flattening_table(rounds)
  seeds = sorted(finals['seed'].unique())
  path = os.path.join(out_dir, 'report.md')
  write(path, preamble +
        f'Test accuracy (%) over seeds {", ".join(str(s) for s in seeds)}: each entry is the '
        'final round, then in brackets the mean of the last rounds, each as mean ± the '
        'half-width of the 95 % Student-t interval over seeds.  "Own path": the inference '
        'path a method trains for unimodal clients (FedCMI: infiltration-filled; others: '
        'zero-filled).  Best rounds are never chosen on the test split.\n\n'
        '## Has training converged?\n\n' + flat_text +
        '\n## FedCMI against each baseline: win / tie / loss over cells\n\n'
        'Paired over seeds (same partition, initialisation and sampling); win or loss when '
        'the paired t-test gives p < 0.05, else tie.  Differences per cell: paired.csv.\n\n'
        + win_tie_loss(paired) + '\n## Where FedCMI loses\n\n' + where_fedcmi_loses(paired)
        + '\n## Every cell\n\n' + '\n'.join(sections))
  written.append(path)
  if len(cells):
    first = cells.iloc[0]
    chosen = (first['dominant'], first['alpha'], first['ratio'])
    if figure_cell is not None:
      for d, a, r in zip(cells['dominant'], cells['alpha'], cells['ratio']):
        if (a, r) == tuple(figure_cell) and d == first['dominant']:
          chosen = (d, a, r)
          break
    written += _figures(rounds, classes, finals, chosen, columns, labels, modality_names,
                        out_dir)
    written += _diagnostics_figure(rounds, paired, modality_names, out_dir)
    written += _flattening_figure(rounds, out_dir)
  return written


def _cell_rows(frame, dominant, alpha, ratio):
  frame = frame[frame['dominant'] == dominant]
  return frame[((frame['alpha'] == alpha) & (frame['ratio'] == ratio)) |
               ((frame['ratio'] == 'any') & ((frame['alpha'] == alpha) |
                                             (frame['alpha'] == 'any')))]


def _figures(rounds, classes, finals, cell, columns, labels, modality_names, out_dir):
  del columns
  dominant, alpha, ratio = cell
  title = _cell_title(dominant, alpha, ratio)
  paths = []
  weak = _weak(dominant, finals, modality_names)
  strong = [m for m in modality_names if m != weak][0]
  weak_column = f'acc_{weak}_own'
  cell_rounds = _cell_rows(rounds, dominant, alpha, ratio)
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
  fig.suptitle(f'accuracy per round (mean over seeds), {title}')
  fig.tight_layout()
  paths.append(save_figure(fig, os.path.join(out_dir, 'fig_accuracy_per_round.png')))

  cell_classes = _cell_rows(classes, dominant, alpha, ratio)
  fused = cell_classes[cell_classes['path'] == 'fused']
  class_columns = [c for c in fused.columns
                   if c not in ('round', 'path') + _KEYS]
  means = fused.groupby('method', sort=False)[class_columns].mean()
  fig, ax = plt.subplots(figsize=(11, 4))
  width = 0.8 / max(len(means), 1)
  x = np.arange(len(class_columns))
  for i, (method, row) in enumerate(means.iterrows()):
    ax.bar(x + i * width, row.values, width, label=method)
  ax.set_xticks(x + 0.4 - width / 2)
  ax.set_xticklabels(class_columns)
  ax.set_ylabel('final-round accuracy (fused)')
  ax.set_title(f'per-class accuracy, {title}')
  ax.legend(fontsize=7, ncol=3)
  fig.tight_layout()
  paths.append(save_figure(fig, os.path.join(out_dir, 'fig_per_class.png')))

  a_col, b_col = f'acc_{strong}_own', f'acc_{weak}_own'
  gaps = finals[finals['dominant'] == dominant]
  gaps = gaps.assign(gap=gaps[a_col] - gaps[b_col])
  gaps = gaps[~gaps['method'].str.startswith('unimodal_')]
  table = gaps.groupby(['method', 'ratio'], sort=False)['gap'].mean().unstack('ratio')
  fig, ax = plt.subplots(figsize=(11, 4))
  table.plot.bar(ax=ax)
  ax.axhline(0, color='black', linewidth=0.8)
  ax.set_ylabel(f'{labels[a_col]} - {labels[b_col]}')
  lead = f'{dominant} dominant, ' if dominant else ''
  ax.set_title(f'gap between the modalities\' own-path accuracies ({lead}mean over seeds '
               'and alphas)')
  fig.tight_layout()
  paths.append(save_figure(fig, os.path.join(out_dir, 'fig_modality_gap.png')))
  return paths


# FedCMI's per-round diagnostics (metrics.csv) and how each is drawn.
def _diagnostic_series(modality_names):
  a, b = modality_names
  return [(f'teacher_acc_{a}', f'teacher ({a} self head) accuracy on distilling clients'),
          (f'teacher_acc_{b}', f'teacher ({b} self head) accuracy on distilling clients'),
          ('a_teaches_fraction', f'share of distilling batches where {a} teaches'),
          ('min_class_temperature', 'smallest class temperature'),
          ('max_class_temperature', 'largest class temperature'),
          ('distillation_loss', 'distillation loss')]


def _diagnostics_figure(rounds, paired, modality_names, out_dir) -> list:
  """FedCMI's diagnostics per round in the cell where it does worst and where it does
  best against FedAvg (weak own path, last-rounds mean); nothing without such pairs."""
  if paired.empty:
    return []
  sel = paired[(paired['ours'] == 'fedcmi') & (paired['baseline'] == 'fedavg') &
               (paired['metric'] == 'weak own path') &
               (paired['statistic'] == 'last-rounds mean')]
  if sel.empty or 'teacher_acc_' + modality_names[0] not in rounds.columns:
    return []
  worst, best = sel.loc[sel['difference'].idxmin()], sel.loc[sel['difference'].idxmax()]
  series = _diagnostic_series(modality_names)
  fig, axes = plt.subplots(2, 3, figsize=(14, 7), sharex=True)
  for row, tag in ((worst, 'lowest'), (best, 'highest')):
    runs = rounds[(rounds['method'] == 'fedcmi') & (rounds['dominant'] == row['dominant']) &
                  (rounds['alpha'] == row['alpha']) & (rounds['ratio'] == row['ratio'])]
    mean = runs.groupby('round')[[c for c, _ in series]].mean()
    label = (f'{tag}: {_cell_title(row["dominant"], row["alpha"], row["ratio"])} '
             f'({100 * row["difference"]:+.1f} vs FedAvg)')
    for ax, (column, title) in zip(axes.flat, series):
      ax.plot(mean.index, mean[column], label=label)
      ax.set_title(title, fontsize=9)
      ax.grid(alpha=0.3)
  for ax in axes[1]:
    ax.set_xlabel('round')
  handles, names = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, names, loc='lower center', ncol=2, fontsize=8)
  fig.suptitle('FedCMI diagnostics per round (mean over seeds): the cells of its lowest and '
               'highest difference from FedAvg on the weak own path (last-rounds mean)')
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  return [save_figure(fig, os.path.join(out_dir, 'fig_fedcmi_diagnostics.png'))]


def _flattening_figure(rounds, out_dir, method: str = 'fedavg') -> list:
  """`method`'s validation (else test) fused accuracy per round, mean over seeds, one line per
  cell, with the two windows the flattening criterion compares shaded."""
  column, curves = flattening_curves(rounds, method)
  if not curves:
    return []
  fig, ax = plt.subplots(figsize=(11, 4.5))
  last = max(int(curve.index.max()) for curve in curves.values())
  w = statistics.FLAT_WINDOW
  ax.axvspan(last - 2 * w + 0.5, last - w + 0.5, color='grey', alpha=0.12)
  ax.axvspan(last - w + 0.5, last + 0.5, color='grey', alpha=0.25)
  for (dominant, alpha, ratio), curve in curves.items():
    ax.plot(curve.index, curve.values, label=_cell_title(dominant, alpha, ratio), linewidth=1)
  ax.set_xlabel('round')
  ax.set_ylabel(('validation' if column.startswith('val_') else 'test') + ' fused accuracy')
  ax.set_title(f'{method} per cell (mean over seeds); shaded: the two {w}-round windows the '
               'flattening check compares')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  return [save_figure(fig, os.path.join(out_dir, 'fig_flattening.png'))]


def save_figure(fig, path):
  with files.atomic_path(path, suffix='.png') as tmp:
    fig.savefig(tmp, dpi=110)
  plt.close(fig)
  return path
