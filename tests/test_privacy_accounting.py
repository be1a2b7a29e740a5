"""Client-level DP accounting against references written here from the published formulas.

The references use only numpy/scipy and the RDP orders of the module (an input, not a
result): the Gaussian mechanism's RDP, the RDP -> (epsilon, delta) conversion of Canonne,
Kamath, Steinke 2020 (Proposition 12, the one dp_accounting uses), the exact Gaussian-DP
curve of Balle & Wang 2018, and the sampling-without-replacement bound of Wang, Balle,
Kasiviswanathan 2019 (Theorem 27).  Replace-one sensitivity of the clipped sum: 2C.
"""

import dataclasses
import math
import time

import numpy as np
import pytest
from scipy import optimize
from scipy import stats

from fedcmi_tff.privacy import accounting

SENSITIVITY = 2.0  # replace-one: ||u - u'|| <= 2C, in units of the clip norm C
DELTA = 1e-5


def _mechanism(z, m, n, rounds, delta=DELTA):
  return accounting.DpFedAvgMechanism(z, m, n, rounds, delta)


def _rdp_to_epsilon(orders, rdp, delta):
  """min over orders of rdp + log(1 - 1/a) - log(delta * a) / (a - 1); (epsilon, argmin).

  Orders <= 1.01 are skipped (as dp_accounting does); an order whose KL bound
  sqrt(1 - exp(-rdp)) is already below delta gives epsilon 0.
  """
  a, r = np.asarray(orders, np.float64), np.asarray(rdp, np.float64)
  eps = r + np.log1p(-1 / a) - np.log(delta * a) / (a - 1)
  eps = np.where(a > 1.01, eps, np.inf)
  eps = np.where(-np.expm1(-r) < delta**2, 0.0, eps)
  best = int(np.argmin(eps))
  return max(0.0, float(eps[best])), best


def _composed_gaussian_rdp(orders, rounds, z):
  """RDP of `rounds` Gaussian mechanisms of sensitivity 2C and noise std z * C."""
  a = np.asarray(orders, np.float64)
  return rounds * a * SENSITIVITY**2 / (2 * z**2)


def _gdp_epsilon(mu, delta):
  """Exact epsilon of mu-GDP at delta: the root of Phi(-e/mu + mu/2) - e^e Phi(-e/mu - mu/2)."""
  def excess(eps):
    return (stats.norm.cdf(-eps / mu + mu / 2)
            - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta)
  return optimize.brentq(excess, 0.0, 200.0, xtol=1e-12)


def _wor_gaussian_cgf(alpha, q, sigma):
  """(alpha - 1) * RDP at integer order alpha >= 2 of a Gaussian (noise std / replace-one
  sensitivity = sigma) on a sample of fraction q drawn without replacement: the log of
  1 + q^2 C(a,2) min(4(e^e(2) - 1), 2 e^e(2))
    + sum_{j=3..a} q^j C(a,j) min(4 sqrt(D_{2 floor(j/2)} D_{2 ceil(j/2)}), 2 e^{(j-1) e(j)}),
  with e(j) = j / (2 sigma^2) and D_k the k-th forward difference at 0 of l -> e^{(l-1) e(l)}.
  """
  def rdp(j):
    return j / (2 * sigma**2)
  g = [math.exp((l - 1) * rdp(l)) for l in range(alpha + 2)]

  def forward_difference(k):
    return math.fsum((-1)**(k - l) * math.comb(k, l) * g[l] for l in range(k + 1))

  terms = [1.0, q**2 * math.comb(alpha, 2) * min(4 * math.expm1(rdp(2)), 2 * math.exp(rdp(2)))]
  for j in range(3, alpha + 1):
    low, high = forward_difference(2 * (j // 2)), forward_difference(2 * ((j + 1) // 2))
    terms.append(q**j * math.comb(alpha, j)
                 * min(4 * math.sqrt(low * high), 2 * math.exp((j - 1) * rdp(j))))
  return math.log(math.fsum(terms))


@pytest.mark.parametrize('z,rounds', [(10.0, 50), (3.0, 1), (1.0, 100), (40.0, 1000)])
def test_without_sampling_matches_the_composed_gaussian_reference(z, rounds):
  orders = accounting.RDP_ORDERS
  want, best = _rdp_to_epsilon(orders, _composed_gaussian_rdp(orders, rounds, z), DELTA)
  assert 0 < best < len(orders) - 1  # the optimum order is inside the list
  got = accounting.epsilon(_mechanism(z, 100, 100, rounds))
  assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize('z,rounds', [(10.0, 50), (3.0, 1), (40.0, 1000), (4.0, 10)])
def test_without_sampling_rdp_bounds_the_exact_gaussian_curve(z, rounds):
  """RDP over-states the exact epsilon of the Gaussian mechanism, here by about 8 %: the
  exact (Balle & Wang) epsilon must be below the module's and at least 1/1.15 of it."""
  exact = _gdp_epsilon(SENSITIVITY * math.sqrt(rounds) / z, DELTA)
  got = accounting.epsilon(_mechanism(z, 50, 50, rounds))
  assert exact <= got <= 1.15 * exact


@pytest.mark.parametrize('z,m,n,rounds,max_order', [
    (2.0, 10, 1000, 100, 30),
    (1.0, 50, 1000, 200, 16),
    (3.0, 20, 500, 30, 30),
])
def test_sampled_matches_the_without_replacement_reference(z, m, n, rounds, max_order):
  """Integer orders 2..max_order exactly, orders between two integers by interpolating
  (alpha - 1) * RDP linearly (it is convex; Wang et al. Corollary 10), as the accountant
  does.  The module's optimum must be one of these orders: the reference's optimum is
  inside them, and the module may not be smaller (it has more orders) nor larger."""
  sigma = z / SENSITIVITY
  cgf = {j: rounds * _wor_gaussian_cgf(j, m / n, sigma) for j in range(2, max_order + 1)}
  orders = [a for a in accounting.RDP_ORDERS if 2 <= a <= max_order]
  rdp = []
  for a in orders:
    j, t = math.floor(a), a - math.floor(a)
    rdp.append(cgf[j] / (j - 1) if t == 0 else ((1 - t) * cgf[j] + t * cgf[j + 1]) / (a - 1))
  want, best = _rdp_to_epsilon(orders, rdp, DELTA)
  assert orders[best] < max_order
  got = accounting.epsilon(_mechanism(z, m, n, rounds))
  assert got == pytest.approx(want, rel=1e-6)


def test_sampling_amplifies_and_epsilon_is_monotone():
  sampled = accounting.epsilon(_mechanism(2.0, 10, 100, 50))
  assert sampled < accounting.epsilon(_mechanism(2.0, 100, 100, 50))
  assert sampled < accounting.epsilon(_mechanism(2.0, 20, 100, 50))
  by_rounds = [accounting.epsilon(_mechanism(2.0, 10, 100, t)) for t in (1, 10, 50, 200)]
  assert np.all(np.diff(by_rounds) > 0)
  by_noise = [accounting.epsilon(_mechanism(z, 10, 100, 50)) for z in (1.0, 2.0, 4.0, 8.0)]
  assert np.all(np.diff(by_noise) < 0)


def test_no_noise_is_no_privacy():
  assert accounting.epsilon(_mechanism(0.0, 10, 100, 5)) == math.inf
  assert accounting.epsilon_per_round(_mechanism(0.0, 100, 100, 3)) == [math.inf] * 3


@pytest.mark.parametrize('m,n', [(10, 100), (100, 100)])
def test_per_round_epsilon_is_epsilon_after_that_many_rounds(m, n):
  mechanism = _mechanism(2.0, m, n, 60)
  per_round = accounting.epsilon_per_round(mechanism)
  assert len(per_round) == 60
  assert np.all(np.diff(per_round) >= 0) and per_round[-1] > per_round[0]
  for t in (1, 2, 17, 60):
    want = accounting.epsilon(dataclasses.replace(mechanism, rounds=t))
    assert per_round[t - 1] == pytest.approx(want, rel=1e-12)


def test_per_round_epsilon_is_cheap_for_a_thousand_rounds():
  """Recomposing from scratch every round would take minutes here (one sampled accountant
  costs ~0.3 s); the bound is loose so that other jobs on the machine do not matter."""
  start = time.perf_counter()
  per_round = accounting.epsilon_per_round(_mechanism(3.0, 10, 1000, 1000))
  assert time.perf_counter() - start < 10.0
  assert len(per_round) == 1000


@pytest.mark.parametrize('target,m,n,rounds', [(2.0, 50, 1000, 200), (5.0, 100, 100, 40)])
def test_noise_multiplier_for_a_target_epsilon(target, m, n, rounds):
  rtol = 1e-3
  z = accounting.noise_multiplier_for(target, m, n, rounds, DELTA, rtol=rtol)
  reached = accounting.epsilon(_mechanism(z, m, n, rounds))
  assert target * (1 - 0.01) <= reached <= target
  assert accounting.epsilon(_mechanism(z * (1 - 2 * rtol), m, n, rounds)) > target


def test_noise_multiplier_for_an_unreachable_target():
  """Below the order-1024 floor (0.0035 here) epsilon drops to 0 only when the RDP of 1000
  rounds at order 1.05, 1000 * 1.05 * 2 / z^2, is below delta^2: z > 4.5e6, above 2**20."""
  with pytest.raises(ValueError, match='not reached'):
    accounting.noise_multiplier_for(1e-3, 100, 100, 1000, DELTA)


def test_default_delta():
  assert accounting.default_delta(100) == pytest.approx(10**-2.2, rel=1e-12)
  assert accounting.default_delta(1000) == pytest.approx(10**-3.3, rel=1e-12)
  with pytest.raises(ValueError, match='num_clients'):
    accounting.default_delta(1)


@pytest.mark.parametrize('change,field', [
    (dict(clients_per_round=101), 'clients_per_round'),
    (dict(clients_per_round=0), 'clients_per_round'),
    (dict(clients_per_round=2.5), 'clients_per_round'),
    (dict(num_clients=0), 'num_clients'),
    (dict(rounds=0), 'rounds'),
    (dict(delta=0.0), 'delta'),
    (dict(delta=1.0), 'delta'),
    (dict(noise_multiplier=-0.5), 'noise_multiplier'),
    (dict(noise_multiplier=math.nan), 'noise_multiplier'),
])
def test_validate_names_the_bad_field(change, field):
  good = _mechanism(1.0, 10, 100, 5)
  good.validate()
  bad = dataclasses.replace(good, **change)
  with pytest.raises(ValueError, match=f'^{field} must be'):
    bad.validate()
  with pytest.raises(ValueError, match=f'^{field} must be'):
    accounting.epsilon(bad)
