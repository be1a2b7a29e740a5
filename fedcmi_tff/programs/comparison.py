"""Tables that compare algorithms over seeds (pandas)."""

from __future__ import annotations

import pandas as pd


def unimodal_path_column(algorithm: str, modality: str) -> str:
  """The inference path an algorithm's unimodal clients train for `modality`.

  FedCMI's unimodal clients fill the missing slot with the infiltration
  projection (`acc_<m>_path`); FedAvg / FedProx clients fill it with zeros
  (`acc_<m>_zero`).  Comparing each algorithm on its own path is the fair reading
  of "the modality's own accuracy".
  """
  return f'acc_{modality}_path' if algorithm == 'fedcmi' else f'acc_{modality}_zero'


def runs_frame(records: list) -> pd.DataFrame:
  """One row per run: method, seed and the final-round report columns."""
  return pd.DataFrame.from_records(records)


def mean_std_table(frame: pd.DataFrame, columns: list, group: str = 'method') -> pd.DataFrame:
  """Mean and standard deviation (ddof=1; 0 for a single seed) per group."""
  grouped = frame.groupby(group, sort=False)[columns]
  mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
  out = pd.DataFrame(index=mean.index)
  out['seeds'] = grouped.size()
  for c in columns:
    out[f'{c}_mean'] = mean[c]
    out[f'{c}_std'] = std[c]
  return out


def markdown_table(table: pd.DataFrame, columns: list, labels: dict) -> str:
  """'mean ± std' cells, in percent."""
  header = ['method', 'seeds'] + [labels.get(c, c) for c in columns]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for method, row in table.iterrows():
    cells = [str(method), str(int(row['seeds']))]
    for c in columns:
      cells.append(f'{100 * row[f"{c}_mean"]:.1f} ± {100 * row[f"{c}_std"]:.1f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'
