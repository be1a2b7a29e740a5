"""Equal-budget hyper-parameter search on the validation split, and applying its choice.

Every algorithm gets the same number of trials (`budget`) over its own search space
(`SEARCH_SPACES`): trial 0 is the base configuration's values (the preset), trials
1..budget-1 are drawn log-uniformly from the space's ranges, stratified (one draw in each
1/(budget-1) of every range's log scale, in a random order per value: a Latin hypercube).  The learning rates come from
a generator seeded with the sampler seed alone, so every algorithm tries the same learning
rates (the hyper-parameter all share); the algorithm's own values from one seeded also with
its name, so adding an algorithm changes no other algorithm's trials.  A trial's score is the mean over the tuning seeds of its validation
fused accuracy averaged over the last rounds (`summary.json`'s `last_rounds_mean`); the
test split plays no part.  The chosen values are recorded per algorithm (`tuned.json`)
and applied by `tuned_config` to every method built on that algorithm (an ablation of
FedCMI trains with FedCMI's tuned values, then its own change on top; unimodal and
centralised runs with FedAvg's).

No TensorFlow: plain Python and numpy on configurations and summaries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib

import numpy as np

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import registry as method_registry

# The learning rate moves the whole schedule: min_learning_rate keeps its ratio to it.
LEARNING_RATE = 'training.learning_rate'

# (low, high) of each tuned value, sampled log-uniformly.  The learning rate for every
# algorithm; lambda and mu for FedCMI, mu for FedProx, alpha for OGM-GE and PMR.
SEARCH_SPACES = {
    'fedavg': {LEARNING_RATE: (0.01, 0.1)},
    'fedprox': {LEARNING_RATE: (0.01, 0.1), 'objective.proximal_strength': (0.001, 0.1)},
    'fedcmi': {LEARNING_RATE: (0.01, 0.1), 'objective.distillation_weight': (0.25, 4.0),
               'objective.proximal_strength': (0.001, 0.1)},
    'fedavg_ogm_ge': {LEARNING_RATE: (0.01, 0.1), 'objective.modulation_strength': (0.1, 1.0)},
    'fedavg_pmr': {LEARNING_RATE: (0.01, 0.1), 'objective.modulation_strength': (0.1, 1.0)},
}

# What a trial is scored on: validation fused accuracy, mean of the last rounds.
SCORE_COLUMN = 'val_acc_fused'
CRITERION = ('mean over the tuning seeds of the validation fused accuracy averaged over the '
             'last rounds of the run (summary.json last_rounds_mean.val_acc_fused)')


def search_space(algorithm: str) -> dict:
  """The tuned values of `algorithm` and their ranges.

  Raises:
    ValueError: no search space is defined for `algorithm`.
  """
  if algorithm not in SEARCH_SPACES:
    raise ValueError(f'no search space for algorithm {algorithm!r}; tune knows '
                     f'{", ".join(SEARCH_SPACES)} (programs/tuning.py SEARCH_SPACES)')
  return SEARCH_SPACES[algorithm]


def _get(config: config_lib.ExperimentConfig, name: str):
  group, field = name.split('.')
  return getattr(getattr(config, group), field)


def apply_values(config: config_lib.ExperimentConfig, values: dict
                 ) -> config_lib.ExperimentConfig:
  """`config` with the tuned `values` ('group.field' -> value) set.

  Setting the learning rate scales min_learning_rate by the same factor, so the decay
  keeps its shape (the preset's 0.03 -> 0.003 becomes 0.05 -> 0.005).

  Raises:
    ValueError: a name that is not a 'group.field' of the configuration.
  """
  groups = {}
  for name, value in values.items():
    group, _, field = name.partition('.')
    if not field or not dataclasses.is_dataclass(getattr(config, group, None)) or not hasattr(
        getattr(config, group), field):
      raise ValueError(f'tuned value {name!r} is not a group.field of the configuration')
    groups.setdefault(group, {})[field] = value
    if name == LEARNING_RATE:
      training = config.training
      groups[group]['min_learning_rate'] = (
          training.min_learning_rate * value / training.learning_rate)
  changes = {g: dataclasses.replace(getattr(config, g), **f) for g, f in groups.items()}
  return dataclasses.replace(config, **changes)


def _significant(value: float, digits: int = 3) -> float:
  return float(f'{value:.{digits}g}')


def trials(algorithm: str, base: config_lib.ExperimentConfig, budget: int,
           sampler_seed: int) -> list:
  """The `budget` value dicts tried for `algorithm`: the base values, then random draws.

  Raises:
    ValueError: budget < 1, or no search space for `algorithm`.
  """
  if budget < 1:
    raise ValueError(f'the tuning budget must be >= 1 trial, got {budget}')
  space = search_space(algorithm)
  # The learning rates come from a stream shared by every algorithm, so all of them try the
  # same learning rates; their own values from a stream of their own.
  shared = np.random.default_rng([sampler_seed])
  own = np.random.default_rng([sampler_seed, zlib.crc32(algorithm.encode())])
  draws = budget - 1
  columns = {}
  for name, (lo, hi) in space.items():
    u = _stratified(draws, shared if name == LEARNING_RATE else own)
    columns[name] = [_significant(math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))))
                     for x in u]
  return [{name: _get(base, name) for name in space}] + [
      {name: columns[name][k] for name in space} for k in range(draws)]


def _stratified(n: int, rng: np.random.Generator) -> np.ndarray:
  """n points in [0, 1), one uniform draw in each of n equal strata, in random order (a
  Latin hypercube when each dimension has its own order): no two trials of a budget crowd
  one end of a range."""
  return (rng.permutation(n) + rng.uniform(size=n)) / n


def choose(scores: list) -> int:
  """Index of the best trial: highest score, the earlier trial on a tie.

  Raises:
    ValueError: no scores, or a score that is not finite (a diverged trial must be
      reported, not silently ranked).
  """
  if not scores:
    raise ValueError('no trial scores to choose from')
  for i, s in enumerate(scores):
    if not math.isfinite(s):
      raise ValueError(f'trial {i} has a non-finite score {s}')
  return int(np.argmax(scores))


def tuned_config(base: config_lib.ExperimentConfig, method: str, modality_names,
                 tuned: dict | None) -> config_lib.ExperimentConfig:
  """`method`'s configuration with its algorithm's tuned values applied first.

  `tuned` is a loaded tuned.json (None: the base values).  Methods whose algorithm
  was not tuned keep the base values.
  """
  algorithm = method_registry.method_config(method, base, modality_names).algorithm
  if tuned and algorithm in tuned['algorithms']:
    base = apply_values(base, tuned['algorithms'][algorithm]['values'])
  return method_registry.method_config(method, base, modality_names)


def load_tuned(path: str) -> dict:
  """A tuned.json written by `python -m fedcmi_tff.tune`.

  Raises:
    ValueError: the file is not such a record (naming the file and the missing field).
    OSError: it cannot be read.
  """
  with open(path) as f:
    try:
      tuned = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not JSON ({e})') from None
  if not isinstance(tuned, dict) or not isinstance(tuned.get('algorithms'), dict):
    raise ValueError(f'{path}: expected an object with an "algorithms" object (a tuned.json '
                     'written by python -m fedcmi_tff.tune)')
  for algorithm, record in tuned['algorithms'].items():
    if not isinstance(record, dict) or not isinstance(record.get('values'), dict):
      raise ValueError(f'{path}: algorithms.{algorithm} has no "values" object')
  return tuned
