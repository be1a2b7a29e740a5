"""Client-level (user-level) differential privacy of DP federated averaging, by RDP accounting.

The mechanism (one client = one user, its whole local data set): each of `rounds` rounds
samples exactly `clients_per_round` of the `num_clients` clients uniformly without
replacement, independently of other rounds; every sampled client's model delta (all
parameter groups as one vector) is clipped to L2 norm C; the server adds
N(0, (noise_multiplier * C)^2) to every coordinate of the sum and divides by a public
constant (post-processing, free).  With adaptive clipping the noise multiplier is the total
one that TFF splits between the value sum and the clipped-count query; both queries double
their sensitivity under replace-one, so the halving below holds for their composition too.

Neighbouring relation: REPLACE_ONE (one client's data replaced by another's).  The sample
size and the denominator are fixed, so the number of clients is public and add/remove is
not the natural relation; dp_accounting 0.4.3's RdpAccountant also composes
SampledWithoutReplacementDpEvent only under REPLACE_ONE (PoissonSampledDpEvent only under
ADD_OR_REMOVE_ONE).

Sensitivity: the accountant charges a GaussianDpEvent alpha / (2 sigma^2) at order alpha
under every relation, and the without-replacement bound (Wang, Balle, Kasiviswanathan 2019,
Theorem 27) is built on the same Gaussian RDP; sigma is read as noise std / L2 sensitivity
of the query.  GaussianDpEvent's own definition (sigma = s / C for ||v_i|| <= C) equals that
only for add/remove.  Under replace-one the clipped sum moves by ||u - u'|| <= 2C, so the
event is given sigma = noise_multiplier / 2 (equivalently: the noisy sum divided by 2C is a
sensitivity-1 query with noise std noise_multiplier / 2).  Passing noise_multiplier itself
would under-state the RDP four-fold (google/differential-privacy issue #378).  For the same
noise multiplier, replace-one epsilons are therefore far larger than the add/remove,
Poisson-sampling epsilons usually quoted for DP-SGD.

Without sampling (clients_per_round == num_clients) a round is the Gaussian mechanism and T
rounds compose to RDP T * alpha * 2 / noise_multiplier^2.  RDP converts to (epsilon, delta)
with dp_accounting's conversion (Canonne, Kamath, Steinke 2020, Proposition 12).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp

# RDP orders: 1.05-1.95 by 0.05, 2-10.9 by 0.1, the integers 11-63, then 64-1024.  Any order
# gives a valid bound; an optimum at an end of the list gives a correct but possibly loose
# epsilon (more orders beyond that end might give a smaller one).  At delta ~1e-5 the top end
# (1024) is reached only for epsilon below ~0.01, and without sampling the bottom end (1.05)
# only for epsilon in the thousands.  With sampling the accountant interpolates its bound
# between integer orders and its bound at orders in (1, 2) equals the one at 2, so order 2
# is the effective bottom end: it is the optimum once epsilon exceeds ~15-20 (e.g. noise 1,
# 10 of 100 clients, 100 rounds), where the epsilon is an over-estimate.
RDP_ORDERS = tuple([1.0 + k / 20 for k in range(1, 20)] + [2.0 + k / 10 for k in range(90)]
                   + [float(a) for a in range(11, 64)]
                   + [64.0, 80.0, 96.0, 128.0, 192.0, 256.0, 512.0, 1024.0])
DELTA_EXPONENT = 1.1
_MAX_NOISE_MULTIPLIER = 2.0**20


def default_delta(num_clients: int) -> float:
  """The usual delta for a population of `num_clients`: 1 / num_clients ** 1.1.

  Raises:
    ValueError: num_clients is not an integer >= 2 (delta would not be below 1).
  """
  if not _is_int(num_clients) or num_clients < 2:
    raise ValueError(f'num_clients must be an integer >= 2, got {num_clients!r}')
  return 1.0 / num_clients**DELTA_EXPONENT


@dataclasses.dataclass(frozen=True)
class DpFedAvgMechanism:
  """DP federated averaging as run: `rounds` rounds, each a Gaussian sum of clipped updates.

  Attributes:
    noise_multiplier: noise std / clip norm C (total, value and count queries); 0 = no noise.
    clients_per_round: clients sampled per round, uniformly without replacement.
    num_clients: size of the client population.
    rounds: number of rounds T.
    delta: the delta of the (epsilon, delta) guarantee.
  """

  noise_multiplier: float
  clients_per_round: int
  num_clients: int
  rounds: int
  delta: float

  def validate(self) -> None:
    """Raises ValueError naming the first field out of range and what it must be."""
    z = self.noise_multiplier
    if not isinstance(z, numbers.Real) or not math.isfinite(z) or z < 0:
      raise ValueError(f'noise_multiplier must be a finite number >= 0, got {z!r}')
    if not _is_int(self.num_clients) or self.num_clients < 1:
      raise ValueError(f'num_clients must be an integer >= 1, got {self.num_clients!r}')
    m = self.clients_per_round
    if not _is_int(m) or not 1 <= m <= self.num_clients:
      raise ValueError(f'clients_per_round must be an integer in [1, num_clients='
                       f'{self.num_clients}], got {m!r}')
    if not _is_int(self.rounds) or self.rounds < 1:
      raise ValueError(f'rounds must be an integer >= 1, got {self.rounds!r}')
    d = self.delta
    if not isinstance(d, numbers.Real) or not 0 < d < 1:
      raise ValueError(f'delta must be a number in the open interval (0, 1), got {d!r}')


def epsilon(mechanism: DpFedAvgMechanism) -> float:
  """Epsilon at `mechanism.delta` after `mechanism.rounds` rounds (inf without noise).

  The minimum over RDP_ORDERS of the converted RDP bound; see RDP_ORDERS for what an
  optimum at the end of the list means.
  """
  mechanism.validate()
  if mechanism.noise_multiplier == 0:
    return math.inf
  accountant = _accountant(mechanism, mechanism.rounds)
  return float(accountant.get_epsilon(mechanism.delta))


def epsilon_per_round(mechanism: DpFedAvgMechanism) -> list[float]:
  """[epsilon after round t for t = 1..rounds], each equal to `epsilon` with rounds = t.

  RDP composes additively, so the RDP after t rounds is t times that of one round: one
  accountant is built for one round and each t only costs the conversion, O(T * orders).
  """
  mechanism.validate()
  if mechanism.noise_multiplier == 0:
    return [math.inf] * mechanism.rounds
  one_round = _accountant(mechanism, 1)
  orders, per_round = one_round.orders, one_round.rdp
  return [float(rdp.compute_epsilon(orders, t * per_round, mechanism.delta)[0])
          for t in range(1, mechanism.rounds + 1)]


def noise_multiplier_for(target_epsilon: float, clients_per_round: int, num_clients: int,
                         rounds: int, delta: float, rtol: float = 1e-3) -> float:
  """Smallest noise multiplier, to relative tolerance `rtol`, with epsilon <= target_epsilon.

  Bisection on the noise multiplier (epsilon decreases as it grows); the returned value is
  the upper end of the final bracket, so its epsilon is at most the target.

  Raises:
    ValueError: a bad setting, or a target no noise multiplier up to 2**20 reaches.  Orders
      up to 1024 certify no epsilon below a floor (0.0035 at delta 1e-5);
      smaller targets are met only once the RDP at order 1.05 is below delta**2 (epsilon 0
      by the KL bound), i.e. with noise multipliers of order sqrt(2 * rounds) / delta.
  """
  if not isinstance(target_epsilon, numbers.Real) or not 0 < target_epsilon < math.inf:
    raise ValueError(f'target_epsilon must be a finite number > 0, got {target_epsilon!r}')
  if not 0 < rtol < 1:
    raise ValueError(f'rtol must be in (0, 1), got {rtol!r}')
  base = DpFedAvgMechanism(1.0, clients_per_round, num_clients, rounds, delta)
  base.validate()

  def meets_target(z: float) -> bool:
    return epsilon(dataclasses.replace(base, noise_multiplier=z)) <= target_epsilon

  low, high = 0.0, 1.0
  while not meets_target(high):
    low, high = high, 2 * high
    if high > _MAX_NOISE_MULTIPLIER:
      raise ValueError(f'target_epsilon {target_epsilon} is not reached by any noise '
                       f'multiplier up to {_MAX_NOISE_MULTIPLIER:g}')
  while high - low > rtol * high:
    middle = (low + high) / 2
    if meets_target(middle):
      high = middle
    else:
      low = middle
  return high


def _accountant(mechanism: DpFedAvgMechanism, rounds: int) -> rdp.RdpAccountant:
  """A replace-one RDP accountant with `rounds` rounds composed (noise multiplier > 0)."""
  gaussian = dp_event.GaussianDpEvent(mechanism.noise_multiplier / 2)  # sensitivity 2C
  if mechanism.clients_per_round == mechanism.num_clients:
    event = gaussian
  else:
    event = dp_event.SampledWithoutReplacementDpEvent(
        source_dataset_size=mechanism.num_clients,
        sample_size=mechanism.clients_per_round, event=gaussian)
  accountant = rdp.RdpAccountant(RDP_ORDERS, rdp.NeighborRel.REPLACE_ONE)
  accountant.compose(event, rounds)
  return accountant


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)
