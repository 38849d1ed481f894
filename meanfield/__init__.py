"""dlnsim meanfield: the density (McKean-Vlasov) limit of the particle system, theory.md section 11.

``solve(model, initial, times)`` integrates the mean-field equation with a positive,
conservative, co-moving finite-volume scheme and returns an ``xarray.Dataset``;
``equilibrium(model)`` computes the stationary density directly, as the fixed point
``f = exp(-beta V[f]) / Z``.
"""

from .equilibrium import equilibrium
from .solver import kernel_jumps, kernel_potential, solve

__all__ = ["equilibrium", "kernel_jumps", "kernel_potential", "solve"]
