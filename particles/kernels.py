"""Compiled pair sums of the entropy force (numba), for the flow and particle hot paths.

``entropy_gradient(rho, depth)`` computes the same quantity as the numpy reference
``particles.entropy.entropy_gradient`` (which the tests compare it against):

    dS_N/drho_i = 1/2 (1 - 1/N)(d - 1) + 1/2 sum_{j != i} psi_N'(rho_i - rho_j),
    psi_N'(x) = coth x - coth(x/N)/N      (coth x - 1/x for N = inf, 0 for N = 1).

Both functions are thin wrappers of ``particles.pairforce.pair_force`` with ``method="auto"``:
below ``pairforce.CROSSOVER_WIDTH`` particles the exact kernel (rounding-level accuracy, no
transcendental call per pair, each pair evaluated once), above it the Chebyshev fast summation
with relative force error at most ``pairforce.DEFAULT_TOL = 1e-12`` when that is cheaper (the
exact kernel otherwise).  Threads follow ``pairforce.default_threads()`` (1 in worker processes
and non-main threads); results do not depend on the thread count or on the other rows.  The
kernels are compiled with ``cache=True``, so a second process pays no compile time.
"""

from __future__ import annotations

import numpy as np

from .entropy import linear_coefficient
from .pairforce import pair_force
from .validation import check_depth

__all__ = ["entropy_gradient", "pair_force_sum"]


def pair_force_sum(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """``sum_{j != i} psi_N'(rho_i - rho_j)`` for ``rho`` of shape ``(..., d)`` (compiled).

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values, float, shape ``(..., d)``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        The pair sums, float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        ``bad depth=...`` or ``bad rho=...`` (from ``pair_force``).
    """
    return pair_force(rho, depth)


def entropy_gradient(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """``dS_N/drho`` (compiled); same contract as ``particles.entropy.entropy_gradient``.

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values, float, shape ``(..., d)``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``dS_N/drho``, float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        ``bad depth=...`` or ``bad rho=...``.
    """
    n = check_depth(depth)
    forces = pair_force(rho, n)
    return linear_coefficient(forces.shape[-1], n) + 0.5 * forces
