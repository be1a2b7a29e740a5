"""Named methods: every baseline and ablation as a change to one experiment configuration.

Everything else (data, partition, model, evaluation, optimiser) stays as the base
configuration gives it, so that only the method differs between the rows of a table.

  fedcmi, fedavg, fedprox, fedavg_ogm_ge, fedavg_pmr   the algorithms
  fedcmi_no_infiltration        lambda = 0 (no distillation into the weak modality)
  fedcmi_constant_temperature   tau_c = 1 for every class (global teacher kept)
  fedcmi_no_proximal            mu = 0
  fedcmi_direction_consistent   temperatures for the direction each batch distils in
  unimodal_<modality>           FedAvg with every client holding only that modality
  centralised                   FedAvg with one client holding all the (multimodal)
                                training data: centralised training on the pooled data,
                                with the momentum restarted every round of local epochs
"""

from __future__ import annotations

import dataclasses
import math

from fedcmi_tff import config as config_lib

_ABLATIONS = {
    'fedcmi_no_infiltration': dict(distillation_weight=0.0),
    'fedcmi_constant_temperature': dict(temperature_mode=config_lib.TemperatureMode.CONSTANT),
    'fedcmi_no_proximal': dict(proximal_strength=0.0),
    'fedcmi_direction_consistent': dict(direction_consistent_temperature=True),
}


def method_names(modality_names) -> tuple:
  return (config_lib.ALGORITHMS + tuple(_ABLATIONS) +
          tuple(f'unimodal_{m}' for m in modality_names) + ('centralised',))


def is_partition_free(method: str) -> bool:
  """Methods whose result does not depend on multi_ratio (and, centralised, on alpha)."""
  return method.startswith('unimodal_') or method == 'centralised'


def method_config(method: str, base: config_lib.ExperimentConfig,
                  modality_names) -> config_lib.ExperimentConfig:
  """The configuration of `method` built on `base`.

  Raises:
    ValueError: for an unknown method name.
  """
  fed = base.federation
  if method in config_lib.ALGORITHMS:
    return dataclasses.replace(base, algorithm=method)
  if method in _ABLATIONS:
    return dataclasses.replace(base, algorithm='fedcmi', objective=dataclasses.replace(
        base.objective, **_ABLATIONS[method]))
  if method.startswith('unimodal_') and method[len('unimodal_'):] in modality_names:
    return dataclasses.replace(base, algorithm='fedavg', federation=dataclasses.replace(
        fed, only_modality=method[len('unimodal_'):], multi_ratio=0.0))
  if method == 'centralised':
    return dataclasses.replace(base, algorithm='fedavg', federation=dataclasses.replace(
        fed, num_clients=1, clients_per_round=1, multi_ratio=1.0, dirichlet_alpha=math.inf,
        only_modality=None))
  raise ValueError(f'unknown method {method!r}; expected one of '
                   f'{", ".join(method_names(modality_names))}')
