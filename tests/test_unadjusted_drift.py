"""The Langevin schemes WITHOUT the Metropolis test: their one-step drift and noise against
independent truth (docs/theory.md sections 9, 10; ``particles.langevin``, ``particles.baselines``,
``particles.proximal``).

Why these tests exist (issue 18, mutation testing).  With ``metropolis=True`` the stationary
law of the matrix variant is exact whatever the proposal: a wrong factor in its smooth drift,
in the pair coefficient ``kappa`` or in the chart noise variance only lowers the acceptance
rate, and every Metropolis test still passes; at ``N = 1`` (the fast exact-law tests) the
factors ``1/N`` are invisible too.  The unadjusted schemes have no such safety net, so their
drift and noise are checked here directly, at ``N > 1`` and ``N = inf``:

* the one-step drift at ``T = 0`` (deterministic) against ``-(1/N) dF/du`` in ``u = sigma^{1/N}``
  (``-dF/drho`` in ``rho`` at ``N = inf``, time ``tau``), computed by central finite differences
  of a free energy written out here, ``F = sum sigma^2 / 2 - [S_N + O] / beta`` with ``S_N`` the
  chamber entropy ``particles.entropy.entropy`` (tested against closed forms and mpmath in
  test_entropy.py) and, for the matrix variant, ``O = sum_{i<j} log(u_i^2 - u_j^2)``
  (``log(rho_i - rho_j)`` at ``N = inf``).  The chamber model's Euler step is explicit, so one
  step is the drift up to rounding; the matrix variant's split step is implicit in the pair
  force, so its ``(z - x) / h`` is Richardson-extrapolated to ``h -> 0``;
* the matrix variant's stationary law at ``T = 1/beta``: the virial identity of its density
  ``exp(-beta E) prod_{i<j} sqrt(|u_i^2 - u_j^2| |u_i^{2N} - u_j^{2N}|)`` w.r.t. ``du``
  (homogeneous of degree ``gamma = d (d - 1) (N + 1) / 2`` apart from ``exp(-beta E)``):
  ``beta E[u . grad E] = d + gamma``, i.e. for ``E = sum sigma^2 / 2``
  ``E[sum sigma^2] = (d + gamma) / (N beta)`` (``d^2 / beta`` at ``N = 1``: Ginibre).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlnsim.particles import MatrixVariant, Model, Schatten
from dlnsim.particles.baselines import simulate_baseline_members
from dlnsim.particles.entropy import entropy as chamber_entropy
from dlnsim.particles.langevin import simulate_members


def free_energy_chart(x: np.ndarray, depth: float, beta: float, orbit: bool = True) -> float:
    """``F`` with ``E = sum sigma^2 / 2`` in the flat chart (``u`` for finite ``N``, ``rho`` at
    ``N = inf``), written out independently of the package's models: the matrix variant's
    (``orbit``) or the chamber model's."""
    rho = x.copy() if depth == math.inf else depth * np.log(x)
    i, j = np.triu_indices(x.size, 1)
    if not orbit:
        orbit = 0.0
    elif depth == math.inf:
        orbit = np.log(rho[i] - rho[j]).sum()
    else:
        orbit = np.log(x[i] ** 2 - x[j] ** 2).sum()
    energy = 0.5 * np.exp(2.0 * rho).sum()
    return float(energy - (chamber_entropy(rho, depth) + orbit) / beta)


def exact_drift(x: np.ndarray, depth: float, beta: float, orbit: bool = True) -> np.ndarray:
    """``-(1/N) dF/du`` (``-dF/drho`` at ``N = inf``) by central differences (error ~1e-10)."""
    grad = np.empty_like(x)
    eps = 1e-6
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = eps
        up = free_energy_chart(x + e, depth, beta, orbit)
        grad[k] = (up - free_energy_chart(x - e, depth, beta, orbit)) / (2.0 * eps)
    return -grad if depth == math.inf else -grad / depth


@pytest.mark.parametrize("depth", [3, math.inf])
def test_chamber_one_step_is_the_exact_drift(depth):
    """The chamber model's Euler-Maruyama step at ``T = 0`` from a fixed state: ``(x_1 - x_0) /
    h`` is the exact drift to 1e-7 (the FD error), in ``u`` (time ``t``) and at ``N = inf`` in
    ``rho`` (time ``tau``).  Planted: the ``N = inf`` step's drift scaled by 0.9 (a factor no
    test at finite ``N`` sees)."""
    d, beta, h = 3, 1.5, 1e-3
    model = Model(d, depth, beta, Schatten(2.0))
    sigma0 = np.array([1.5, 1.0, 0.6])
    x0 = np.log(sigma0) if depth == math.inf else sigma0 ** (1.0 / depth)
    block = simulate_members(model, sigma0[None], [0], [h], h, 0, temperature=0.0)
    s = block.sigma[0, -1]
    x1 = np.log(s) if depth == math.inf else s ** (1.0 / depth)
    expected = exact_drift(x0, depth, beta, orbit=False)
    np.testing.assert_allclose((x1 - x0) / h, expected, rtol=0, atol=1e-7 * np.abs(expected).max())


@pytest.mark.parametrize("depth", [2, 3, math.inf])
def test_one_step_drift_matches_the_free_energy(depth):
    """One unadjusted split step at ``T = 0`` from a fixed state: the Richardson extrapolation
    ``2 d(h/2) - d(h)`` of ``d(h) = (z - x) / h`` (error ``O(h^2)``, measured 2e-7 at
    ``h = 5e-5``) equals the exact drift within 2e-6 of its size.  Planted (tests/mutation.py,
    each fails here): the smooth drift divided by an extra ``N``
    (``MatrixVariant.smooth_drift``), ``kappa = 1/beta`` instead of ``1/(N beta)``, ``h kappa``
    scaled by 0.9 in the prox, the explicit smooth step scaled by 0.9; none of them changes a
    Metropolis-adjusted stationary law."""
    d, beta = 3, 1.5
    system = MatrixVariant(d, depth, beta, Schatten(2.0))
    sigma0 = np.array([1.5, 1.0, 0.6])
    x0 = np.log(sigma0) if depth == math.inf else sigma0 ** (1.0 / depth)

    def one_step(h: float) -> np.ndarray:
        block = simulate_baseline_members(system, sigma0[None], [0], [h], h, 0, temperature=0.0)
        s = block.sigma[0, -1]
        x = np.log(s) if depth == math.inf else s ** (1.0 / depth)
        return (x - x0) / h

    h = 5e-5
    extrapolated = 2.0 * one_step(h / 2) - one_step(h)
    expected = exact_drift(x0, depth, beta)
    tol = 2e-6 * np.abs(expected).max()
    np.testing.assert_allclose(extrapolated, expected, rtol=0, atol=tol)
    # the step itself is O(h) off (measured 2e-4 relative): the comparison resolves the O(h^2)
    # remainder of the extrapolation (measured 2e-7), not a coarse agreement
    assert np.abs(one_step(h) - expected).max() > 10 * tol


def test_unadjusted_stationary_law_virial():
    """N = 2, d = 3, beta = 1, E = sum sigma^2 / 2, ``metropolis=False`` at ``dt = 0.01``:
    ``E[sum sigma^2]`` = (d + d (d - 1) (N + 1) / 2) / (N beta) = 6 exactly (module docstring).

    Statistics: each member's time average over t in [1.5, 6] (19 saved states; the ensemble
    mean has relaxed by t = 1 from this start) is one independent sample; the standard error is
    over 160 members (measured 1.3% of the mean).  The scheme's O(dt) bias is < 1% here (-0.7%
    for N = 1 at this dt, particles.proximal's docstring; measured with t in [2, 8]:
    +0.4% +- 1.3%), so 4 SE detects a ~5% error in the stationary mean.  Planted: the chart
    noise 2T/N -> 2T (invisible with Metropolis, whose proposal density uses the same variance)
    and the variance halved (T instead of 2T) both fail here (tests/mutation.py)."""
    d, depth, beta, m = 3, 2, 1.0, 160
    system = MatrixVariant(d, depth, beta, Schatten(2.0))
    exact = (d + d * (d - 1) * (depth + 1) / 2) / (depth * beta)
    start = np.tile(np.array([1.9, 1.3, 0.7]), (m, 1))
    times = np.arange(1.5, 6.01, 0.25)
    block = simulate_baseline_members(system, start, np.arange(m), times, 0.01, 17)
    assert np.all(np.isnan(block.failed_time)) and np.all(block.accepted == block.steps)
    per_member = (block.sigma**2).sum(axis=-1).mean(axis=1)
    mean, se = per_member.mean(), per_member.std(ddof=1) / math.sqrt(m)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    assert se < 0.02 * exact, se  # the power stated above
