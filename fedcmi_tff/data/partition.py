"""Statistical and modality heterogeneity (docs/algorithm.md, 'Federation set-up').

Pure numpy, seeded: the same arguments always give the same split.
"""

from __future__ import annotations

import math

import numpy as np

from fedcmi_tff.data import modalities


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple:
  """Holds out round(fraction * n_c) examples of every class c, chosen at random.

  Carved before the label split, so every client's data and the validation split are
  disjoint and the validation split has the training split's class proportions.

  Returns:
    (kept, held_out): sorted int64 index arrays that partition range(N).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'labels must be 1-D, got shape {labels.shape}')
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'validation fraction must be in [0, 1), got {fraction}')
  # A stream of its own: the label split's draws stay those of `seed`.
  rng = np.random.default_rng([seed, 0x76616C])
  held_out = []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    held_out.extend(idx[:int(round(fraction * len(idx)))].tolist())
  held_out = np.sort(np.asarray(held_out, dtype=np.int64))
  kept = np.setdiff1d(np.arange(labels.shape[0], dtype=np.int64), held_out)
  return kept, held_out


def dirichlet_label_partition(labels: np.ndarray, num_clients: int, alpha: float,
                              seed: int, balance_cap: float = 1.1) -> list:
  """Splits example indices over clients, class by class, with Dirichlet proportions.

  For each class (in index order): draw p ~ Dir(alpha * 1_M); clients that already
  hold >= balance_cap * N / M examples get p_j = 0; renormalise; cut the shuffled
  class indices at the cumulative proportions.  `alpha = inf` gives equal
  proportions (an exact IID split up to rounding).

  Returns:
    A list of `num_clients` sorted int64 index arrays that partition range(N).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'labels must be 1-D, got shape {labels.shape}')
  if num_clients <= 0:
    raise ValueError(f'num_clients must be > 0, got {num_clients}')
  if not alpha > 0:
    raise ValueError(f'alpha must be > 0, got {alpha}')
  rng = np.random.default_rng(seed)
  n = labels.shape[0]
  cap = balance_cap * n / num_clients
  assigned = [[] for _ in range(num_clients)]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if math.isinf(alpha):
      p = np.full(num_clients, 1.0 / num_clients)
    else:
      p = rng.dirichlet(np.full(num_clients, float(alpha)))
    sizes = np.array([len(a) for a in assigned])
    capped = np.where(sizes >= cap, 0.0, p)
    # Every client at the cap: fall back to the uncapped draw rather than drop the class.
    p = capped / capped.sum() if capped.sum() > 0 else p
    cuts = (np.cumsum(p) * len(idx)).astype(int)[:-1]
    for client, part in enumerate(np.split(idx, cuts)):
      assigned[client].extend(part.tolist())
  return [np.sort(np.asarray(a, dtype=np.int64)) for a in assigned]


def assign_client_kinds(num_clients: int, multi_ratio: float, seed: int,
                        only: int | None = None) -> list:
  """Client kinds as in the authors' `allocate_client_modality`.

  floor(multi_ratio * M) randomly chosen clients are multimodal; of the rest,
  floor(half) are slot-a-only and the remainder slot-b-only.  With `only` = 0 or
  1 every client holds just that slot (the unimodal-FL baseline).

  Returns:
    A list of `modalities.ClientKind`, one per client.
  """
  if not 0.0 <= multi_ratio <= 1.0:
    raise ValueError(f'multi_ratio must be in [0, 1], got {multi_ratio}')
  if only is not None:
    kind = modalities.ClientKind.ONLY_A if only == 0 else modalities.ClientKind.ONLY_B
    return [kind] * num_clients
  rng = np.random.default_rng(seed)
  order = rng.permutation(num_clients)
  num_multi = int(math.floor(multi_ratio * num_clients))
  rest = order[num_multi:]
  num_a = len(rest) // 2
  kinds = [modalities.ClientKind.MULTIMODAL] * num_clients
  for i in rest[:num_a]:
    kinds[i] = modalities.ClientKind.ONLY_A
  for i in rest[num_a:]:
    kinds[i] = modalities.ClientKind.ONLY_B
  return kinds
