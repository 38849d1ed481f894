r"""Compiled pair sums of the chamber entropy: ``F_i = sum_{j != i} psi_N'(rho_i - rho_j)``.

``dS_N/drho_i = a + F_i / 2`` (theory.md section 2, 13.6); ``particles.entropy`` is the numpy
reference the kernels are tested against.  One module per concern, each depending only on
those above it:

==================  ===========================================================================
``coefficients``    every series coefficient (Bernoulli, ``psi_N'`` near coincidence, ``L'``,
                    the polynomials of exp/log/cos), exact rationals; also used by ``entropy``
``portable``        exp, log, log1p, ``cos(pi n/den)`` without libm, Horner, fixed-order sums:
                    the same bits on every CPU
``pairs``           the pair force of one pair (near series, far quotients, the rational form
                    in ``u``) and the per-particle exponentials it takes
``exact``           the exact ``O(d^2)`` sum of one member: branch-free, sorted, scalar
``lanes``           the small-width sums vectorized across members (``d < SORT_WIDTH``,
                    ``N <= SMALL_DEPTH``)
``chebyshev``       fast summation of one member (``method="fast"``)
``dispatch``        the choice per member, the thread policy, the public entry points
``values``          the entropy's value ``S_N`` (the pair sum of ``psi_N``), for free energies
==================  ===========================================================================

Public entry points (all in ``dispatch``): ``pair_force(rho, N)`` and ``pair_force_u(u, N)``
(the pair sum ``F``, from ``rho`` or from ``u = sigma^{1/N}``), ``entropy_gradient_rho`` and
``entropy_gradient_rho_at_u`` (``dS_N/drho``), ``entropy_gradient_rho_at_u_into`` (the same
without checks, for the engines), ``default_threads``.

Same bits on every CPU.  No kernel is compiled with fast-math flags: without reassociation and
contraction LLVM may neither reorder a sum nor fuse a multiply-add, and those are what it does
differently per target (vector width, FMA).  Sums over pairs therefore have an order fixed by the
source (the pair values of a row go to a scratch row, summed by ``portable.sum_lanes`` with 8
partial sums; the lanes kernels vectorize across members, whose lanes are independent), and no
libm or vector-library transcendental is called (they differ between machines in the last bit):
``portable`` supplies them in plain IEEE arithmetic (tests/test_cpu_independence.py compares the
host target with ``NUMBA_CPU_NAME=generic``).  The price is the FMA: ~10-25% of the speed on a
CPU that has it (benchmarks/compare_kernels.py).

numba's on-disk cache (``cache=True``) checks only the file that defines a function: after
editing a module here, the cached code of the modules that call it (``dispatch`` calls all) is
stale.  Touch them, or clear the ``__pycache__`` folder, before measuring or testing.
"""

from __future__ import annotations

from .dispatch import (
    CROSSOVER_WIDTH,
    DEFAULT_TOL,
    KERNEL_NAMES,
    default_threads,
    entropy_gradient_rho,
    entropy_gradient_rho_at_u,
    entropy_gradient_rho_at_u_into,
    pair_force,
    pair_force_u,
)
from .exact import SORT_WIDTH
from .lanes import LANES
from .pairs import NEAR_CUT, SMALL_DEPTH, SPREAD_MAX
from .portable import portable_log
from .values import entropy_values

#: the former name of ``entropy_gradient_rho_at_u_into`` (the engines import it; to be removed)
hot_entropy_gradient_u = entropy_gradient_rho_at_u_into

__all__ = [
    "CROSSOVER_WIDTH",
    "DEFAULT_TOL",
    "KERNEL_NAMES",
    "LANES",
    "NEAR_CUT",
    "SMALL_DEPTH",
    "SORT_WIDTH",
    "SPREAD_MAX",
    "default_threads",
    "entropy_gradient_rho",
    "entropy_gradient_rho_at_u",
    "entropy_gradient_rho_at_u_into",
    "entropy_values",
    "hot_entropy_gradient_u",
    "pair_force",
    "pair_force_u",
    "portable_log",
]
