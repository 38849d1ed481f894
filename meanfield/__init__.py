"""dlnsim meanfield: the density (McKean-Vlasov) limit of the particle system, MODEL section 11.

``solve(model, initial, times)`` integrates the mean-field equation with a positive,
conservative, co-moving finite-volume scheme and returns an ``xarray.Dataset``.
"""

from .solver import kernel_jumps, kernel_potential, solve

__all__ = ["kernel_jumps", "kernel_potential", "solve"]
