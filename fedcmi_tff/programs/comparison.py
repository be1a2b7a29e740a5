"""Which inference path is a method's own path for a modality (shared by compare and report)."""

from __future__ import annotations


def unimodal_path_column(algorithm: str, modality: str) -> str:
  """The inference path an algorithm's unimodal clients train for `modality`.

  FedCMI's unimodal clients fill the missing slot with the infiltration
  projection (`acc_<m>_path`); FedAvg / FedProx clients fill it with zeros
  (`acc_<m>_zero`).  Comparing each algorithm on its own path is the fair reading
  of "the modality's own accuracy".
  """
  return f'acc_{modality}_path' if algorithm == 'fedcmi' else f'acc_{modality}_zero'
