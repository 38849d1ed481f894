"""Former home of the compiled ``dS_N/drho``: now ``particles.pairsum`` (kept for this round).

``particles.kernels`` held two thin wrappers of ``pair_force``; they were the same contracts as
functions of ``particles.pairsum`` and are now those functions under their old names:

* ``entropy_gradient`` is ``pairsum.entropy_gradient_rho`` (``dS_N/drho`` from ``rho``, compiled;
  the numpy reference is ``particles.entropy.entropy_gradient``);
* ``pair_force_sum`` is ``pairsum.pair_force`` (the pair sum ``sum_{j != i} psi_N'(rho_i -
  rho_j)``).

New code imports them from ``dlnsim.particles.pairsum``.
"""

from __future__ import annotations

from .pairsum import entropy_gradient_rho as entropy_gradient
from .pairsum import pair_force as pair_force_sum

__all__ = ["entropy_gradient", "pair_force_sum"]
