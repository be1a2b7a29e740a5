"""Label split and modality assignment (data/partition.py)."""

import math

import numpy as np
import pytest

from fedcmi_tff.data import modalities
from fedcmi_tff.data import partition

Kind = modalities.ClientKind


def _labels(per_class=50, classes=4):
  return np.repeat(np.arange(classes), per_class)


@pytest.mark.parametrize('alpha', [0.1, 1.0, math.inf])
def test_partition_covers_every_example_once_and_is_deterministic(alpha):
  labels = _labels()
  parts = partition.dirichlet_label_partition(labels, 7, alpha, seed=3)
  everything = np.concatenate(parts)
  assert sorted(everything.tolist()) == list(range(len(labels)))
  again = partition.dirichlet_label_partition(labels, 7, alpha, seed=3)
  assert all(np.array_equal(a, b) for a, b in zip(parts, again))
  other = partition.dirichlet_label_partition(labels, 7, alpha, seed=4)
  if not math.isinf(alpha):
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_split_gives_each_client_an_equal_share_of_every_class():
  labels = _labels(per_class=40, classes=3)
  parts = partition.dirichlet_label_partition(labels, 4, math.inf, seed=0)
  for p in parts:
    np.testing.assert_array_equal(np.bincount(labels[p], minlength=3), [10, 10, 10])


def test_balance_cap_stops_feeding_full_clients():
  labels = _labels(per_class=100, classes=5)
  n, m, cap = len(labels), 4, 1.1
  parts = partition.dirichlet_label_partition(labels, m, 0.1, seed=11, balance_cap=cap)
  sizes = np.zeros(m)
  saw_capped = False
  for c in range(5):
    got = np.array([np.sum(labels[p] == c) for p in parts])
    full = sizes >= cap * n / m
    if full.any() and not full.all():
      saw_capped = True
      assert np.all(got[full] == 0), (c, sizes, got)
    sizes += got
  assert saw_capped  # the seed was chosen so that the cap is exercised


def test_small_alpha_is_more_skewed_than_large_alpha():
  labels = _labels(per_class=200, classes=4)

  def mean_max_share(alpha):
    parts = partition.dirichlet_label_partition(labels, 5, alpha, seed=0)
    shares = [np.bincount(labels[p], minlength=4).max() / max(len(p), 1) for p in parts if len(p)]
    return np.mean(shares)

  assert mean_max_share(0.1) > mean_max_share(100.0) + 0.2


@pytest.mark.parametrize('num_clients,ratio,expected', [
    (10, 0.5, (5, 2, 3)), (10, 1.0, (10, 0, 0)), (10, 0.0, (0, 5, 5)), (7, 0.2, (1, 3, 3)),
    (5, 0.35, (1, 2, 2))])
def test_client_kind_counts(num_clients, ratio, expected):
  kinds = partition.assign_client_kinds(num_clients, ratio, seed=0)
  counts = tuple(kinds.count(k) for k in (Kind.MULTIMODAL, Kind.ONLY_A, Kind.ONLY_B))
  assert counts == expected


def test_only_modality_and_bad_ratio():
  assert set(partition.assign_client_kinds(4, 0.5, 0, only=1)) == {Kind.ONLY_B}
  with pytest.raises(ValueError, match='multi_ratio'):
    partition.assign_client_kinds(4, 1.5, 0)
