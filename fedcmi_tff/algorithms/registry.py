"""Every method name the programs accept, and what each one trains with.

Two tables, one vocabulary:

  _ALGORITHMS  algorithm -> its client objective (built from `ObjectiveConfig`), whether it
               uses the proximal term, and which `ObjectiveConfig` fields it reads.
  _METHODS     method -> the algorithm plus a change to the experiment configuration:

  fedcmi, fedavg, fedprox, fedavg_ogm_ge, fedavg_pmr   the algorithms themselves
  fedcmi_no_infiltration        lambda = 0 (no distillation into the weak modality)
  fedcmi_constant_temperature   tau_c = 1 for every class (global teacher kept)
  fedcmi_no_proximal            mu = 0
  fedcmi_direction_consistent   temperatures for the direction each batch distils in
  fedcmi_confident_teacher      BEYOND THE PAPER: distil only rows whose teacher gives the
                                true class probability >= 0.5 (teacher_confidence_threshold)
  unimodal_<modality>           FedAvg with every client holding only that modality
  centralised                   FedAvg with one client holding all the (multimodal)
                                training data: centralised training on the pooled data,
                                with the momentum restarted every round of local epochs

Everything else (data, partition, model, evaluation, optimiser) stays as the base
configuration gives it, so only the method differs between the rows of a table.

Adding an algorithm: a file with its objective (see base.py) and one `_ALGORITHMS` entry;
it is then a method of the same name for `train --method`, `grid --methods` and the tests.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

from fedcmi_tff import config as config_lib
from fedcmi_tff.algorithms import base
from fedcmi_tff.algorithms import fedcmi
from fedcmi_tff.algorithms import fused_ce
from fedcmi_tff.algorithms import ogm_ge
from fedcmi_tff.algorithms import pmr


def _fedcmi(o: config_lib.ObjectiveConfig) -> base.ClientObjective:
  return fedcmi.FedCMIObjective(
      distillation_weight=o.distillation_weight, self_head_weight=o.self_head_weight,
      temperature_sharpness=o.temperature_sharpness, temperature_mode=o.temperature_mode,
      direction_consistent_temperature=o.direction_consistent_temperature,
      warmup_rounds=o.warmup_rounds, teacher_confidence_threshold=o.teacher_confidence_threshold)


def _window(o: config_lib.ObjectiveConfig) -> fused_ce.ModulationWindow:
  return fused_ce.ModulationWindow(o.modulation_strength, o.modulation_start_round,
                                   o.modulation_end_round)


class Algorithm(NamedTuple):
  """How an algorithm trains: its objective from the configuration, and the proximal term."""

  objective: Callable[[config_lib.ObjectiveConfig], base.ClientObjective]
  uses_proximal_term: bool
  # The ObjectiveConfig fields the objective reads (proximal_strength is added when
  # uses_proximal_term): the only objective fields a run of this algorithm records.
  objective_fields: tuple
  description: str


_FEDCMI_FIELDS = ('distillation_weight', 'self_head_weight', 'temperature_sharpness',
                  'temperature_mode', 'direction_consistent_temperature', 'warmup_rounds',
                  'teacher_confidence_threshold')
_MODULATION_FIELDS = ('modulation_strength', 'modulation_start_round', 'modulation_end_round')

_ALGORITHMS = {
    'fedcmi': Algorithm(_fedcmi, True, _FEDCMI_FIELDS,
                        'FedCMI: infiltration distillation with class-wise temperature, '
                        'proximal term'),
    'fedavg': Algorithm(lambda o: fused_ce.FusedCrossEntropyObjective(), False, (),
                        'FedAvg: CE of the fused logits, unimodal clients zero-fill'),
    'fedprox': Algorithm(lambda o: fused_ce.FusedCrossEntropyObjective(), True, (),
                         'FedProx: FedAvg plus the proximal term'),
    'fedavg_ogm_ge': Algorithm(lambda o: ogm_ge.OGMGEObjective(_window(o)), False,
                               _MODULATION_FIELDS,
                               'FedAvg + OGM-GE gradient modulation on multimodal clients'),
    'fedavg_pmr': Algorithm(lambda o: pmr.PMRObjective(_window(o)), False, _MODULATION_FIELDS,
                            'FedAvg + PMR prototype rebalancing on multimodal clients'),
}
# The algorithms this file defines (for help texts); `algorithm_names()` is the live list.
ALGORITHMS = tuple(_ALGORITHMS)


def algorithm_names() -> tuple:
  """Every registered algorithm name."""
  return tuple(_ALGORITHMS)


def _algorithm(name: str) -> Algorithm:
  if name not in _ALGORITHMS:
    raise ValueError(f'unknown algorithm {name!r}; expected one of '
                     f'{", ".join(algorithm_names())}')
  return _ALGORITHMS[name]


def client_objective(algorithm: str, objective: config_lib.ObjectiveConfig
                     ) -> base.ClientObjective:
  """The client objective `algorithm` trains with under `objective`'s settings."""
  return _algorithm(algorithm).objective(objective)


def proximal_strength(algorithm: str, objective: config_lib.ObjectiveConfig) -> float:
  """mu for `algorithm` (0 for algorithms without the proximal term)."""
  return objective.proximal_strength if _algorithm(algorithm).uses_proximal_term else 0.0


def description(algorithm: str) -> str:
  return _algorithm(algorithm).description


def objective_fields(algorithm: str) -> tuple:
  """The `ObjectiveConfig` fields a run of `algorithm` applies."""
  a = _algorithm(algorithm)
  return a.objective_fields + (('proximal_strength',) if a.uses_proximal_term else ())


class Method(NamedTuple):
  """A named row of a results table: an algorithm and a change to the configuration."""

  configure: Callable  # (base ExperimentConfig, modality names) -> ExperimentConfig
  # The result does not depend on multi_ratio (unimodal, centralised) ...
  ignores_multi_ratio: bool
  # ... nor on the label split (centralised).
  ignores_label_split: bool
  description: str


def _objective_change(**changes) -> Callable:
  def configure(config, modality_names):
    del modality_names
    return dataclasses.replace(config, algorithm='fedcmi', objective=dataclasses.replace(
        config.objective, **changes))
  return configure


def _unimodal(modality: str) -> Callable:
  def configure(config, modality_names):
    del modality_names
    return dataclasses.replace(config, algorithm='fedavg', federation=dataclasses.replace(
        config.federation, only_modality=modality, multi_ratio=0.0))
  return configure


def _centralised(config, modality_names):
  del modality_names
  return dataclasses.replace(config, algorithm='fedavg', federation=dataclasses.replace(
      config.federation, num_clients=1, clients_per_round=1, multi_ratio=1.0,
      dirichlet_alpha=math.inf, only_modality=None))


# fedcmi_confident_teacher's gate (a method keeps one value; the field takes any in [0, 1]).
CONFIDENT_TEACHER_THRESHOLD = 0.5

_ABLATIONS = {
    'fedcmi_no_infiltration': Method(_objective_change(distillation_weight=0.0), False, False,
                                     'FedCMI with lambda = 0'),
    'fedcmi_constant_temperature': Method(
        _objective_change(temperature_mode=config_lib.TemperatureMode.CONSTANT), False, False,
        'FedCMI with tau_c = 1 for every class'),
    'fedcmi_no_proximal': Method(_objective_change(proximal_strength=0.0), False, False,
                                 'FedCMI with mu = 0'),
    'fedcmi_direction_consistent': Method(
        _objective_change(direction_consistent_temperature=True), False, False,
        'FedCMI with the temperatures of the direction each batch distils in'),
    # Beyond the paper (docs/algorithm.md, 'Beyond the paper'): the default stays the paper's.
    'fedcmi_confident_teacher': Method(
        _objective_change(teacher_confidence_threshold=CONFIDENT_TEACHER_THRESHOLD), False,
        False, 'BEYOND THE PAPER: FedCMI distilling only rows its teacher classifies with '
        f'true-class probability >= {CONFIDENT_TEACHER_THRESHOLD}'),
}


def _methods(modality_names) -> dict:
  out = {name: Method(lambda c, m, name=name: dataclasses.replace(c, algorithm=name),
                      False, False, a.description)
         for name, a in _ALGORITHMS.items()}
  out.update(_ABLATIONS)
  for m in modality_names:
    out[f'unimodal_{m}'] = Method(_unimodal(m), True, False,
                                  f'FedAvg, every client holding only {m}')
  out['centralised'] = Method(_centralised, True, True,
                              'FedAvg with one client holding all training data')
  return out


def method_names(modality_names) -> tuple:
  """Every method name for a dataset with these modality slot names."""
  return tuple(_methods(modality_names))


def _method(name: str, modality_names) -> Method:
  table = _methods(modality_names)
  if name not in table:
    raise ValueError(f'unknown method {name!r}; expected one of {", ".join(table)}')
  return table[name]


def method_config(method: str, base_config: config_lib.ExperimentConfig,
                  modality_names) -> config_lib.ExperimentConfig:
  """The configuration of `method` built on `base_config`.

  Raises:
    ValueError: for an unknown method name.
  """
  return _method(method, modality_names).configure(base_config, modality_names)


def ignores_multi_ratio(method: str, modality_names) -> bool:
  return _method(method, modality_names).ignores_multi_ratio


def ignores_label_split(method: str, modality_names) -> bool:
  return _method(method, modality_names).ignores_label_split


def applied_config(config: config_lib.ExperimentConfig) -> dict:
  """`config.to_dict()` with only the objective fields its algorithm applies.

  This is what a run records (config.json, summary.json): a FedAvg run does not list
  FedCMI's lambda, a FedCMI run does not list OGM-GE's alpha.
  """
  out = config.to_dict()
  keep = objective_fields(config.algorithm)
  out['objective'] = {k: v for k, v in out['objective'].items() if k in keep}
  return out
