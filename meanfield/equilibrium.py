r"""The stationary mean-field density as a fixed point (theory.md section 11), independently of
``meanfield.solve``'s time stepping.

In ``rho = log sigma`` (see ``meanfield.solver``) a stationary density of the PDE has zero flux,
``f d_rho mu = 0`` with ``mu = V[f] + (1/beta)(log f + 1)``, so

    f(rho) = exp(-beta V[f](rho)) / Z,
    V[f](rho) = e(e^rho) - rho / (N beta) - W int log k_N(e^rho, e^rho') f(rho') drho',

``W = (d - 1) / (2 beta)`` (the ``-rho/(N beta)`` chart term is absent at ``N = inf``).  The
fixed point is computed on a uniform grid of ``rho`` (cell centres ``x_i``, spacing ``h``) by
damped Picard iteration on the point values ``M_i = f(x_i) h``: the nonlocal term is the FFT
convolution of ``meanfield.kernel_potential``.  For an analytic, decaying ``f`` the midpoint sums
are spectrally accurate, so moments of the grid solution agree with the continuum to round-off
once ``h`` resolves the bump (default: 60 cells per standard deviation of ``log sigma``).

Exact check (a virial identity; derive it by integrating ``d_rho f = -beta f d_rho V`` over the
line and symmetrizing the double integral, ``d_1 log k_N + d_2 log k_N = 2 (1 - 1/N)``)::

    E[sigma e'(sigma)] = c + 1/(N beta),     c = (d - 1)(N - 1) / (2 N beta),

(``= c`` at ``N = inf``), which every stationary density satisfies whatever its shape.

Support.  The grid covers the trimmed support: it is extended (doubling the distance from the
mode) until the estimated mass beyond each end is below ``tail``.  Toward ``sigma = 0`` the
density decays like ``e^{rho/N}`` at finite ``N`` (a density in ``u = sigma^{1/N}`` that is
positive at ``u = 0``), and like ``|rho|^{-(d-1)/2}`` at ``N = inf``: there no equilibrium
exists for ``d <= 3``, and the tail is too heavy to trim on a grid for small ``d``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import xarray as xr
from scipy.fft import next_fast_len

from dlnsim.particles.datasets import provenance
from dlnsim.particles.entropy import psi
from dlnsim.particles.model import Model
from dlnsim.particles.pairsum.coefficients import one_minus
from dlnsim.particles.validation import check_integer, check_positive, fail
from dlnsim.particles.version import __version__

from .solver import Scheme, tail_beyond, toeplitz_apply

__all__ = ["equilibrium", "check_equilibrium_exists"]

_log = logging.getLogger("dlnsim.meanfield")


def check_equilibrium_exists(model: Model, diffusion: bool = True) -> None:
    """Raise ``ValueError`` when the mean-field equation of ``model`` has no equilibrium.

    With diffusion at ``N = inf`` the stationary density decays like ``|log sigma|^{-(d-1)/2}``
    toward ``sigma = 0``, which is integrable only for ``d >= 4``.

    Parameters
    ----------
    model : Model
        The particle model.
    diffusion : bool, default True
        Whether the equation has the diffusion term.

    Raises
    ------
    ValueError
        ``bad width=...`` for ``N = inf``, ``d <= 3`` with diffusion.
    """
    if diffusion and model.infinite and model.width <= 3:
        raise fail(
            "width",
            model.width,
            "the N = inf mean field with diffusion has no equilibrium for d <= 3 (its density "
            "decays like |log sigma|^(-(d-1)/2) toward sigma = 0, not integrable): use d >= 4, "
            "a finite depth, or diffusion=False",
        )


def _bump_width(model: Model) -> float:
    """Std of ``log sigma`` of the Laplace approximation at ``sigma_*`` (a first grid scale)."""
    s_star = model.equilibrium()
    _, g2 = model.energy.log_derivatives(np.array([math.log(s_star)]))
    weight = (model.width - 1) / (2.0 * model.beta)
    curv = float(g2[0]) - weight * float(psi(0.0, model.depth, 2))  # V'' at the mode
    if not (curv > 0 and math.isfinite(curv)):
        return 1.0
    return min(1.0, 1.0 / math.sqrt(model.beta * curv))


class _Grid:
    """Uniform grid of ``rho`` with the cached FFT table of ``psi_N``."""

    def __init__(self, model: Model, lo: float, h: float, n: int) -> None:
        self.model, self.lo, self.h, self.n = model, lo, h, n
        self.x = lo + h * (np.arange(n) + 0.5)
        depth = model.depth
        self.table = psi(h * np.arange(-(n - 1), n), depth)
        self.size = next_fast_len(2 * n - 1 + n - 1, real=True)
        self.weight = (model.width - 1) / (2.0 * model.beta)
        jac = 0.0 if model.infinite else 1.0 / (model.depth * model.beta)
        self.v0 = model.energy.e(np.exp(self.x)) - jac * self.x

    def potential(self, masses: np.ndarray) -> np.ndarray:
        """``V[f](x_i)`` for point masses ``M_j = f(x_j) h``."""
        if self.weight == 0.0:
            return self.v0.copy()
        lin = one_minus(self.model.depth) * (self.x * masses.sum() + self.x @ masses)
        return self.v0 - self.weight * (lin + toeplitz_apply(self.table, masses, self.n))

    def gibbs(self, masses: np.ndarray) -> np.ndarray:
        """``exp(-beta V[f]) / Z`` as point masses (normalized to sum 1)."""
        a = -self.model.beta * self.potential(masses)
        a -= a.max()
        out = np.exp(a)
        return out / out.sum()

    def rounding_floor(self, masses: np.ndarray, new: np.ndarray) -> float:
        """The L1 residual ``|G(M) - M|`` that float64 cannot go below, estimated from the data:
        the convolution evaluated on the reversed masses (``psi_N`` is even, so it is the same
        sum in exact arithmetic) differs by its rounding error ``dC``, which moves each
        ``exp(-beta V)`` by the factor ``beta W dC``: ``sum_i G_i beta W |dC_i|``.  Measured
        against the residual's plateau when the iteration stagnates: 2-4x above it for 1440
        to 23760 cells (the plateau grows like the number of cells)."""
        if self.weight == 0.0:
            return 0.0
        forward = toeplitz_apply(self.table, masses, self.n)
        backward = toeplitz_apply(self.table, masses[::-1], self.n)[::-1]
        return float(new @ (self.model.beta * self.weight * np.abs(forward - backward)))


def _fixed_point(grid: _Grid, masses: np.ndarray, tol: float, max_iter: int):
    """Damped Picard iteration ``M <- (1 - w) M + w G(M)``; ``w`` halves when the residual grows.

    Stops when the L1 residual ``|G(M) - M|`` is at most ``tol``, or when it has stopped
    decreasing (no 10% decrease in 5 iterations) at most at the rounding floor
    (``_Grid.rounding_floor``): below it the residual is float64 noise, and it grows with the
    number of cells (a plateau near 1e-13 at 25 000 cells).  Returns the masses, the residual,
    the number of iterations and the floor (NaN when not evaluated).
    """
    damping, prev, floor = 0.7, math.inf, math.nan
    best, since = math.inf, 0
    for it in range(1, max_iter + 1):
        new = grid.gibbs(masses)
        res = float(np.abs(new - masses).sum())
        if res <= tol:
            return new, res, it, floor
        if res < 0.9 * best:
            best, since = res, 0
        else:
            since += 1
        if since >= 5:
            floor = grid.rounding_floor(masses, new)
            if res <= floor:
                return new, res, it, floor
        if res > prev:
            damping = max(0.5 * damping, 1e-3)
        prev = res
        masses = (1.0 - damping) * masses + damping * new
    raise RuntimeError(
        f"meanfield.equilibrium: the fixed-point iteration did not converge in max_iter="
        f"{max_iter} iterations (residual {res:.3g} > tol={tol:g} and above the rounding "
        f"floor {floor:.3g})"
    )


def equilibrium(
    model: Model,
    *,
    h: float | None = None,
    cells_per_std: int = 60,
    tail: float = 1e-13,
    tol: float = 1e-13,
    max_cells: int = 2**18,
    max_iter: int = 20_000,
) -> xr.Dataset:
    """The stationary density of the mean-field equation (with diffusion) of ``model``.

    Solves ``f = exp(-beta V[f]) / Z`` (module docstring) on a uniform grid of
    ``rho = log sigma``.

    Parameters
    ----------
    model : Model
        Width, depth, inverse temperature and energy.  ``N = inf`` needs ``d >= 4``.
    h : float, optional
        Grid spacing in ``log sigma``; default: the bump's standard deviation (Laplace
        approximation at ``sigma_*``, at most 1) divided by ``cells_per_std``.
    cells_per_std : int
        Cells per standard deviation of ``log sigma`` when ``h`` is not given.
    tail : float
        The grid is extended until the estimated mass beyond each end is below ``tail``.
    tol : float
        Convergence: L1 distance between ``f`` and ``exp(-beta V[f]) / Z`` on the grid at
        most ``tol``, or at most its float64 rounding floor when that is larger (estimated
        from the data: the nonlocal sum's rounding error, measured by summing in reverse
        order; it grows with the number of cells and passes 1e-13 near 25 000 cells); attrs
        ``residual``, ``rounding_floor`` and ``stopped_by`` (``"tol"`` or
        ``"rounding floor"``) say which.
    max_cells, max_iter : int
        Caps on the grid size and on the iterations.

    Returns
    -------
    xarray.Dataset
        Dim ``cell``: ``density`` (w.r.t. ``d sigma``), ``cell_width``, ``potential``
        (``V[f]`` at the cell centres), coordinates ``sigma`` (cell centres ``e^{x_i}``),
        ``rho`` (``x_i``), ``sigma_lower``/``sigma_upper``; scalars ``sigma_mean``,
        ``sigma_var``, ``sigma_de_mean`` (``E[sigma e'(sigma)]``) and ``free_energy`` (the
        discrete ``F[f]`` of ``meanfield.solve``); attrs ``residual``, ``rounding_floor``
        (NaN when not needed), ``stopped_by``, ``iterations``, ``virial_exact``
        (``c + 1/(N beta)``).

    Raises
    ------
    ValueError
        Bad arguments, or a model without equilibrium (``N = inf``, ``d <= 3``).
    RuntimeError
        No convergence within ``max_iter``, or a tail that does not fit in ``max_cells``.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    check_equilibrium_exists(model, True)
    cells_per_std = check_integer(cells_per_std, "cells_per_std", 4)
    tail = check_positive(tail, "tail")
    if tail >= 0.01:
        raise fail("tail", tail, "must be < 0.01")
    tol = check_positive(tol, "tol")
    max_cells = check_integer(max_cells, "max_cells", 64)
    max_iter = check_integer(max_iter, "max_iter")
    s_star = model.equilibrium()
    if not s_star > 0:
        raise fail("model", model, "c = 0 (d = 1 or N = 1): no entropic force, no bump")
    width = _bump_width(model)
    h = width / cells_per_std if h is None else check_positive(h, "h")
    mode = math.log(s_star)
    lo_dist, hi_dist = 12.0 * width, 12.0 * width
    masses, prev_x = None, None
    while True:
        n = int(math.ceil((lo_dist + hi_dist) / h))
        if n > max_cells:
            raise RuntimeError(
                f"meanfield.equilibrium: covering the density's tail needs more than max_cells="
                f"{max_cells} cells of width h={h:.3g} (log sigma in [{mode - lo_dist:.4g}, "
                f"{mode + hi_dist:.4g}]); the tail toward sigma = 0 decays slowly at this "
                "(d, N, beta): raise max_cells or h, or loosen tail"
            )
        grid = _Grid(model, mode - lo_dist, h, n)
        if masses is None or prev_x is None:
            start = np.exp(-0.5 * ((grid.x - mode) / width) ** 2)
        else:  # the previous solution (constant beyond its ends)
            start = np.exp(np.interp(grid.x, prev_x, np.log(np.maximum(masses, 1e-300))))
        masses, residual, iterations, floor = _fixed_point(grid, start / start.sum(), tol, max_iter)
        left, right = tail_beyond(masses, h, 0), tail_beyond(masses, h, -1)
        if left <= tail and right <= tail:
            break
        prev_x = grid.x
        if left > tail:
            lo_dist *= 2.0
        if right > tail:
            hi_dist *= 2.0
    if residual > tol:
        _log.info(
            "meanfield.equilibrium: stopped at the rounding floor, residual %.3g > tol=%g "
            "(floor %.3g, %d cells)",
            residual, tol, floor, grid.n,
        )  # fmt: skip
    stopped_by = "tol" if residual <= tol else "rounding floor"
    return _equilibrium_dataset(model, grid, masses, residual, iterations, tail, floor, stopped_by)


def _equilibrium_dataset(
    model, grid: _Grid, masses, residual, iterations, tail, floor, stopped_by
) -> xr.Dataset:

    x, h = grid.x, grid.h
    sigma = np.exp(x)
    lower = np.exp(x - 0.5 * h)
    width = lower * np.expm1(h)
    g, _ = model.energy.log_derivatives(x)
    mean = float(masses @ sigma)
    var = float(masses @ (sigma - mean) ** 2)
    xi_edges = np.arange(grid.n + 1) * h
    scheme = Scheme(model, True, model.resolve_rescaled(None), xi_edges, "fft")
    free = scheme.free_energy(masses, grid.lo, 1.0)  # x_i = lo + 1 * xi_i
    jac = 0.0 if model.infinite else 1.0 / (model.depth * model.beta)
    attrs = {
        **model.describe(),
        "kind": "meanfield_equilibrium",
        "h": h,
        "cells": grid.n,
        "tail": tail,
        "residual": residual,
        "rounding_floor": floor,
        "stopped_by": stopped_by,
        "iterations": iterations,
        "virial_exact": model.entropic_force + jac,
        "method": "damped Picard iteration of f = exp(-beta V[f]) / Z on a uniform grid of "
        "log sigma (FFT convolution)",
        "dlnsim_version": __version__,
    }
    unit = {"units": "1"}
    ds = xr.Dataset(
        {
            "density": (
                "cell",
                masses / width,
                {"long_name": "equilibrium density of sigma w.r.t. d sigma", **unit},
            ),
            "cell_width": ("cell", width, {"long_name": "cell width in sigma", **unit}),
            "potential": ("cell", grid.potential(masses), {"long_name": "V[f]", **unit}),
            "sigma_mean": ((), mean, {"long_name": "E[sigma]", **unit}),
            "sigma_var": ((), var, {"long_name": "Var[sigma]", **unit}),
            "sigma_de_mean": ((), float(masses @ g), {"long_name": "E[sigma e'(sigma)]", **unit}),
            "free_energy": ((), free, {"long_name": "discrete mean-field F[f]", **unit}),
        },
        coords={
            "sigma": ("cell", sigma, {"long_name": "cell centre exp(rho) in sigma", **unit}),
            "rho": ("cell", x, {"long_name": "cell centre in log sigma", **unit}),
            "sigma_lower": ("cell", lower, {"long_name": "lower cell edge in sigma", **unit}),
            "sigma_upper": ("cell", lower + width, {"long_name": "upper cell edge", **unit}),
        },
    )
    ds.attrs.update(provenance(**attrs))
    return ds
