"""Former single-file home of the compiled pair force: now the subpackage ``particles.pairsum``.

Kept for this round so that existing imports keep working; new code imports from
``dlnsim.particles.pairsum``.  The names below are the subpackage's objects (no copies), three
under their old names:

* ``entropy_gradient`` is ``pairsum.entropy_gradient_rho`` (``dS_N/drho`` from ``rho``);
* ``entropy_gradient_u`` is ``pairsum.entropy_gradient_rho_at_u`` (``dS_N/drho``, not
  ``dS/du``, at ``rho = N log u``);
* ``hot_entropy_gradient_u`` is ``pairsum.entropy_gradient_rho_at_u_into``.
"""

from __future__ import annotations

from .pairsum import (
    CROSSOVER_WIDTH,
    DEFAULT_TOL,
    KERNEL_NAMES,
    LANES,
    NEAR_CUT,
    SMALL_DEPTH,
    SORT_WIDTH,
    SPREAD_MAX,
    default_threads,
    pair_force,
    pair_force_u,
    portable_log,
)
from .pairsum import entropy_gradient_rho as entropy_gradient
from .pairsum import entropy_gradient_rho_at_u as entropy_gradient_u
from .pairsum import entropy_gradient_rho_at_u_into as hot_entropy_gradient_u

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
    "entropy_gradient",
    "entropy_gradient_u",
    "hot_entropy_gradient_u",
    "pair_force",
    "pair_force_u",
    "portable_log",
]
