r"""Finite-volume solver for the mean-field (McKean-Vlasov) equation of theory.md section 11.

Coordinates.  docs/theory.md section 11 writes the PDE for the density ``f_u`` in the flat
chart ``u = sigma^{1/N}``.
This solver works in ``rho = log sigma`` for every depth (the only chart with an ``N = inf``
limit, positivity of ``sigma`` is automatic and the reflecting boundary ``u = 0`` is sent to
``rho = -inf``).  With ``du = (u/N) drho`` the density is ``f_u = (N/u) f`` (``f`` = density in
``rho``), the flat metric ``N du^2`` becomes ``(u^2/N) drho^2`` and the free energy reads

    F[f] = int V_0 f drho - W/2 iint log k_N(e^rho, e^rho') f f + [1/beta int f (log f + log N)]
    V_0(rho) = e(e^rho) - [rho / (N beta)],            W = (d - 1) / (2 beta),

the terms in brackets being present only with diffusion (``-rho/(N beta)`` is the Jacobian of
``f_u log f_u``; it vanishes at ``N = inf``, where ``log N`` is dropped with the kernel's).  The
PDE ``f_t = (1/N) d_u (f_u d_u dF/df)`` becomes

    f_t = d_rho ( a(rho) f d_rho mu ),   mu = V[f] + (1/beta) (log f + 1),
    V[f](rho) = V_0(rho) - W int log k_N(e^rho, e^rho') f(rho') drho',

with mobility ``a = N e^{-2 rho/N}`` per unit ``t``, ``e^{-2 rho/N}`` per unit ``tau = N t`` and
``a = 1`` at ``N = inf`` (rescaled time only).  ``diffusion=False`` drops the ``1/beta`` terms
(pure aggregation).  The interaction weight is ``W = (d-1)/(2 beta)`` for the model as given.

Space.  A co-moving uniform grid ``rho = m(t) + s(t) xi`` (``cells`` cells of width ``dxi``).
The initial grid covers the initial density's support trimmed at ``tail`` (mass ``<= tail``
beyond each end, padded by 15% of its width, at least ``span`` standard deviations on each
side).  Without diffusion the grid obeys the ODE ``dm/dt`` = rate of change of the mean of
``rho``, ``d log s/dt`` = that of its standard deviation (the PDE's moment identities, free of
the upwind scheme's numerical diffusion), so a bump that narrows toward a Dirac mass keeps a
fixed number of cells and only the nonlinear part of the velocity crosses cells.  With
diffusion it follows the quartiles instead (centre ``(q_1 + q_3)/2``, scale
``(q_3 - q_1)/1.349``, ``dq/dt = -a dmu/drho`` at ``q``): the std of ``rho`` is dominated by the
slowly decaying tail toward ``sigma = 0`` and its growth dragged the cells through the bump.
Both add a weak pull onto the masses' centre and scale.  ``s`` stops at ``min_width`` (then the
bump narrows inside the grid, a numerical Dirac mass).  ``adapt=True`` also regrids during the
run (``remap``: conservative, positive, second order) when the trimmed support nears a wall or
fills less than 2/3 of the grid.
Unknowns are the cell masses ``M_i``.
Arbitrary Lagrangian-Eulerian finite volumes: ``dM_i/dt = -(J_{i+1/2} - J_{i-1/2})`` with the
flux relative to the moving edges (edge velocity ``w``), zero flux at both ends.  With diffusion
the flux is Scharfetter-Gummel,

    J = a/(beta h^2) [B(z) M_i - B(-z) M_{i+1}],   z = beta (V_{i+1} - V_i + h w / a),
    B(z) = z / (e^z - 1),

exact for discrete Gibbs states and second order for smooth solutions; without diffusion it is
the ``beta -> inf`` limit, first-order upwind in the velocity ``-a dV/drho - w`` relative to the
grid.  Potential jumps ``V_{i+1} - V_i`` are computed without cancellation (Gauss-Legendre
quadrature of ``dE/drho`` and of ``psi_N'`` over the cell), so that they stay accurate down to
cells of relative width ``1e-10``.

Nonlocal term.  On the uniform grid ``log k_N(e^{x_i}, e^{x_j}) = (1-1/N)(x_i + x_j) +
psi_N((i - j) h)`` is Toeplitz plus rank 2, so ``sum_j log k_N M_j`` and its jumps are one FFT
convolution each, ``O(n log n)`` and exact to round-off; ``kernel="direct"`` keeps the ``O(n^2)``
sum of ``particles.entropy.log_kernel`` as the reference.

Time.  Modified Patankar-Runge-Kutta MPRK22 (Burchard, Deleersnijder, Meister 2003) on the
linear-in-``M`` flux form, with Heun's method for the grid: two tridiagonal M-matrix solves per
step, so every step is positive and conservative for any ``dt`` (unconditionally stable), and
second order.  Step rule: the embedded first-order stage (modified Patankar-Euler with Euler's
grid) gives the local error ``err`` = max of the W1 distance (in ``log sigma``) and of the L1
distance of the cell masses (the latter not once ``s = min_width``) between the two solutions;
a step is accepted when ``err <= rtol`` and the next is ``dt * min(2.5, max(0.2, 0.9
sqrt(rtol / err)))``, capped by ``max_step`` and the save times (``dt=``: fixed steps).
The W1 distance is ``int |C_1 - C_2| drho`` of the piecewise-linear distribution functions.
A bump collapsed into one cell of a grid at ``min_width`` (without diffusion) moves with the
grid, and its centre is stiff (rate ``p a sigma^p``): the centre then takes ROS2 steps
(``Scheme.step``).  The mobility is capped at ``mobility_cap`` times its value at ``sigma_*``
(``Scheme.mobility``), which binds only in the far tail toward ``sigma = 0`` at small ``N``.

Dissipation guard (with diffusion).  On a fixed grid the SG fluxes dissipate the discrete ``F``
exactly; the moving grid's ALE terms (the edge velocity inside ``z``) only up to ``O(h^2)``.  When
the grid's scale follows a slowly decaying tail (the density decays like ``e^{rho/N}`` toward
``sigma = 0``: at ``(d, N, p, beta) = (4, 50, 2, 1)`` the scale grew from 0.22 to 3, cells ~2 wide
in ``log sigma``) those terms outweighed the dissipation and ``F`` rose.  A step that raises the
discrete ``F`` more than ``1e-11 (1 + |F|)`` above the lowest ``F`` so far (not the last step's:
rises within the slack added up to 2.9e-11 between saves at ``(1024, inf, 4, 10)``) is redone on
the frozen grid, and a frozen step that still raises it with half the step;
``frozen_grid_steps`` counts the frozen steps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.fft import irfft, next_fast_len, rfft
from scipy.linalg import solve_banded
from scipy.special import ndtr

from dlnsim.particles.datasets import provenance
from dlnsim.particles.entropy import log_kernel, psi
from dlnsim.particles.model import Model
from dlnsim.particles.pairsum.coefficients import one_minus
from dlnsim.particles.validation import (
    check_choice,
    check_integer,
    check_positive,
    check_times,
    fail,
)
from dlnsim.particles.version import __version__

__all__ = ["solve", "kernel_potential", "kernel_jumps", "remap", "tail_beyond"]

_GAUSS = {k: np.polynomial.legendre.leggauss(k) for k in (4, 6, 8)}  # nodes, weights on [-1, 1]
_IQR = 1.3489795003921634  # interquartile range of the standard normal distribution
_RHO_MIN = -600.0  # lowest grid edge in log sigma (below, exp underflows in the outputs' sums)
_SCAN = 4096  # points of the scan that locates a callable initial density
_DISSIPATION_SLACK = 1e-11  # relative rise of the discrete F that the step guard tolerates
_ROS2_GAMMA = 1.0 + 1.0 / math.sqrt(2.0)  # the L-stable choice of ROS2's gamma


# ------------------------------------------------------------------ nonlocal term
def toeplitz_apply(table: np.ndarray, masses: np.ndarray, n_out: int) -> np.ndarray:
    """``out_k = sum_j table[k - j + n - 1] M_j`` for ``k < n_out`` (linear convolution by FFT).

    Parameters
    ----------
    table : numpy.ndarray
        The kernel on the grid offsets: offset ``k - j`` at index ``k - j + n - 1``.
    masses : numpy.ndarray
        The cell masses ``M_j``, length ``n``.
    n_out : int
        Number of outputs.

    Returns
    -------
    numpy.ndarray
        ``out_k`` for ``k < n_out``.
    """
    n = masses.size
    size = next_fast_len(table.size + n - 1, real=True)
    conv = irfft(rfft(table, size) * rfft(masses, size), size)
    return conv[n - 1 : n - 1 + n_out]


def _check_grid(x0: float, h: float, masses: np.ndarray, depth, method: str):
    check_choice(method, "method", ("fft", "direct"))
    if not (math.isfinite(x0) and math.isfinite(h) and h > 0):
        raise fail("h", h, "the grid spacing must be finite and > 0")
    masses = np.asarray(masses, dtype=np.float64)
    if masses.ndim != 1 or masses.size < 2:
        raise fail("masses", masses.shape, "must be a 1-D array of >= 2 cell masses")
    return masses


def kernel_potential(
    x0: float, h: float, masses: np.ndarray, depth: int | float, method: str = "fft"
) -> np.ndarray:
    """``v_i = sum_j log k_N(e^{x_i}, e^{x_j}) M_j`` on the uniform grid ``x_i = x0 + i h``.

    ``x`` is ``log sigma``; ``log k_N`` is ``particles.entropy.log_kernel`` (``log N`` dropped at
    ``N = inf``).  ``method="fft"``: ``(1-1/N)(x_i sum M + sum x_j M_j) + sum_j psi_N((i-j)h)
    M_j`` by one FFT convolution, ``O(n log n)``; ``"direct"``: the ``O(n^2)`` sum.

    Parameters
    ----------
    x0 : float
        ``log sigma`` of the first grid point.
    h : float
        Grid spacing in ``log sigma``, finite and > 0.
    masses : numpy.ndarray
        Cell masses ``M_j``, 1-D, length ``n >= 2``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"fft", "direct"}, default "fft"
        The summation method.

    Returns
    -------
    numpy.ndarray
        ``v``, float64, shape ``(n,)``.

    Raises
    ------
    ValueError
        ``bad method=...``, ``bad h=...`` (or a non-finite ``x0``), ``bad masses=...``.
    """
    masses = _check_grid(x0, h, masses, depth, method)
    n = masses.size
    x = x0 + h * np.arange(n)
    if method == "direct":
        out = np.empty(n)
        for lo in range(0, n, 512):  # row blocks keep the memory O(512 n)
            out[lo : lo + 512] = log_kernel(x[lo : lo + 512, None], x[None, :], depth) @ masses
        return out
    table = psi(h * np.arange(-(n - 1), n), depth)
    lin = one_minus(depth) * (x * masses.sum() + x @ masses)
    return lin + toeplitz_apply(table, masses, n)


def _gauss(h: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre rule for an interval of length ``h`` (in ``log sigma``): 4 nodes up to
    ``h = 1/2`` (error ~ ``6e-10 h^8`` relative for functions analytic in a strip of width
    ``pi``), 8 beyond."""
    return _GAUSS[4] if h <= 0.5 else _GAUSS[8]


def _jump_table(h: float, n: int, depth: int | float) -> np.ndarray:
    """``D_l = psi_N((l+1) h) - psi_N(l h)`` for ``l = -(n-1) .. n-2``, by Gauss-Legendre
    quadrature of ``psi_N'`` over ``[l h, (l+1) h]`` (no cancellation when ``h`` is tiny)."""
    gx, gw = _gauss(h)
    mid = h * (np.arange(-(n - 1), n - 1) + 0.5)
    nodes = mid[:, None] + 0.5 * h * gx[None, :]
    return 0.5 * h * (psi(nodes, depth, 1) @ gw)


def kernel_jumps(
    x0: float, h: float, masses: np.ndarray, depth: int | float, method: str = "fft"
) -> np.ndarray:
    """``v_{i+1} - v_i`` (length ``n - 1``) for ``v`` of ``kernel_potential``.

    ``"fft"``: ``(1-1/N) h sum M + sum_j D_{i-j} M_j`` with the accurate jump table ``D`` of
    ``psi_N`` (one FFT convolution); ``"direct"``: differences of the direct ``log_kernel`` sums
    (loses digits to cancellation when ``h`` is small: the reference for moderate ``h``).

    Parameters
    ----------
    x0 : float
        ``log sigma`` of the first grid point.
    h : float
        Grid spacing in ``log sigma``, finite and > 0.
    masses : numpy.ndarray
        Cell masses ``M_j``, 1-D, length ``n >= 2``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"fft", "direct"}, default "fft"
        The summation method.

    Returns
    -------
    numpy.ndarray
        ``v_{i+1} - v_i``, float64, shape ``(n - 1,)``.

    Raises
    ------
    ValueError
        ``bad method=...``, ``bad h=...`` (or a non-finite ``x0``), ``bad masses=...``.
    """
    masses = _check_grid(x0, h, masses, depth, method)
    n = masses.size
    if method == "direct":
        x = x0 + h * np.arange(n)
        out = np.empty(n - 1)
        for lo in range(0, n - 1, 512):
            rows = x[lo : min(lo + 512, n - 1)]
            diff = log_kernel(rows[:, None] + h, x[None, :], depth) - log_kernel(
                rows[:, None], x[None, :], depth
            )
            out[lo : lo + rows.size] = diff @ masses
        return out
    lin = one_minus(depth) * h * masses.sum()
    return lin + toeplitz_apply(_jump_table(h, n, depth), masses, n - 1)


# ---------------------------------------------------------------- discretization
def _bernoulli(z: np.ndarray) -> np.ndarray:
    """``B(z) = z / (e^z - 1)``, ``B(0) = 1``; overflow-free for large ``|z|``."""
    small = np.abs(z) < 1e-6
    zs = np.where(small, 1.0, z)
    with np.errstate(over="ignore"):
        big = zs / np.expm1(zs)
    return np.where(small, 1.0 - 0.5 * z, big)


@dataclass
class Scheme:
    """The semi-discrete operator on the co-moving grid ``rho = m + s xi`` (theory.md 13.7):
    cell fluxes, the nonlocal term and the grid's own motion, shared by ``solve`` and
    ``meanfield.equilibrium``.

    Parameters
    ----------
    model : Model
        The particle model whose density is evolved.
    diffusion : bool
        Whether the ``1/beta`` diffusion term is on.
    rescaled : bool
        Time ``tau = N t`` if True, ``t`` if False.
    xi_edges : numpy.ndarray
        The ``n + 1`` reference cell edges in ``xi``.
    kernel : str
        How the nonlocal term is summed (``"fft"`` or ``"direct"``).
    """

    model: Model
    diffusion: bool
    rescaled: bool
    xi_edges: np.ndarray  # n + 1 reference edges
    kernel: str

    def __post_init__(self) -> None:
        self.set_edges(self.xi_edges)
        m = self.model
        self.weight = (m.width - 1) / (2.0 * m.beta)
        self.jacobian = 0.0 if (m.infinite or not self.diffusion) else 1.0 / (m.depth * m.beta)
        self.pull_rate = 0.0  # least rate at which the grid is pulled onto the moments
        self.mobility_cap = math.inf  # largest mobility (solve sets it from mobility_cap)

    def mobility(self, rho: np.ndarray) -> np.ndarray:
        """The mobility ``a(rho) = N e^{-2 rho/N}`` (per unit ``t``; ``e^{-2 rho/N}`` per unit
        ``tau``, 1 at ``N = inf``), capped at ``mobility_cap`` (``solve``'s ``mobility_cap``
        times its value at ``sigma_*``).  The cap binds only in the far tail toward
        ``sigma = 0``, where ``a`` grows like ``sigma^{-2/N}``: a zero-flux (stationary) state
        does not depend on ``a``, and any ``a > 0`` dissipates ``F``, so the cap changes neither;
        it slows the tail's relaxation there from rates ~1e30 to ``cap / (beta h^2)``, which
        stays ``>= cap`` times the bulk's.
        """
        return np.minimum(self.model.time_factor(rho, self.rescaled), self.mobility_cap)

    def set_edges(self, xi_edges: np.ndarray) -> None:
        """Use the uniform reference edges ``xi_edges`` (after a regrid)."""
        self.xi_edges = xi_edges
        self.n = xi_edges.size - 1
        self.dxi = float(xi_edges[1] - xi_edges[0])
        self.xi = 0.5 * (xi_edges[1:] + xi_edges[:-1])
        self.xi_inner = xi_edges[1:-1]
        self._tables = {}

    def _table(self, h: float) -> np.ndarray:
        table = self._tables.get(h)
        if table is None:
            if len(self._tables) >= 2:
                self._tables.pop(next(iter(self._tables)))
            table = self._tables[h] = _jump_table(h, self.n, self.model.depth)
        return table

    def jumps(self, masses: np.ndarray, m: float, s: float) -> np.ndarray:
        """``V_{i+1} - V_i`` of the potential ``V[f]`` between adjacent cell centres."""
        h = s * self.dxi
        gx, gw = _GAUSS[6] if h <= 0.5 else _GAUSS[8]
        nodes = (m + s * self.xi_inner)[:, None] + 0.5 * h * gx[None, :]
        g, _ = self.model.energy.log_derivatives(nodes)
        out = 0.5 * h * (g @ gw) - self.jacobian * h
        if self.weight != 0.0:
            if self.kernel == "fft":  # kernel_jumps with the jump table cached across calls
                inter = one_minus(self.model.depth) * h * float(masses.sum())
                inter = inter + toeplitz_apply(self._table(h), masses, self.n - 1)
            else:
                inter = kernel_jumps(m + s * self.xi[0], h, masses, self.model.depth, "direct")
            out -= self.weight * inter
        return out

    def coefficients(
        self, dv: np.ndarray, w: np.ndarray | float, m: float, s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Edge flux ``J = alpha M_i - gamma M_{i+1}`` relative to edges moving at ``w``."""
        h = s * self.dxi
        a = self.mobility(m + s * self.xi_inner)
        dv_eff = dv + h * w / a
        if self.diffusion:
            beta = self.model.beta
            coef = a / (beta * h * h)
            z = beta * dv_eff
            return coef * _bernoulli(z), coef * _bernoulli(-z)
        u = -a * dv_eff / h
        return np.maximum(u, 0.0) / h, np.maximum(-u, 0.0) / h

    def moment_rates(
        self, dv: np.ndarray, weights: np.ndarray, m: float, s: float
    ) -> tuple[float, float]:
        """``d/dt`` of the mean and variance of ``rho`` under the PDE without diffusion (not
        the upwind scheme): ``E[b]`` and ``2 E[(rho - mu) b]`` with the drift
        ``b = -a dV/drho`` (cell-centre average of the edge values), free of the upwind
        scheme's numerical diffusion, so that the grid follows a bump that narrows toward a
        Dirac mass.  (With diffusion the grid follows the quartiles instead: ``grid_rates``.
        The PDE's moment identity there adds ``E[a']/beta`` and wall terms ``[a f]/beta``
        that cancel catastrophically where the mobility ``a = N e^{-2 rho/N}`` is ~1e11.)
        """
        h = s * self.dxi
        xi_bar = float(weights @ self.xi)
        u = -self.mobility(m + s * self.xi_inner) * dv / h
        b = np.empty(self.n)
        b[1:-1] = 0.5 * (u[1:] + u[:-1])
        b[0], b[-1] = 1.5 * u[0] - 0.5 * u[1], 1.5 * u[-1] - 0.5 * u[-2]
        y = s * (self.xi - xi_bar)  # rho - mean, without the cancellation of m + s xi - mean
        mean_rate = float(weights @ b)
        var_rate = 2.0 * float(weights @ (y * (b - mean_rate)))
        return mean_rate, var_rate

    def centre_stiffness(self, masses: np.ndarray, m: float, s: float, mean_rate: float) -> float:
        """``min(0, d(mean rate)/dm)`` with the masses held in their cells (a one-sided
        difference, step ``1e-7`` in ``rho``): the stiffness of the centre of a bump that moves
        with the grid (collapsed inside one cell, without diffusion); ``step``'s ROS2 uses it.
        """
        delta = 1e-7 * max(1.0, abs(m))
        shifted = m + delta
        dv = self.jumps(masses, shifted, s)
        rate, _ = self.moment_rates(dv, masses / float(masses.sum()), shifted, s)
        return min(0.0, (rate - mean_rate) / (shifted - m))

    def edges(self, m: float, s: float) -> np.ndarray:
        """Cell edges in ``rho`` of the grid ``(m, s)``."""
        return m + s * self.xi_edges

    def grid_rates(
        self, dv: np.ndarray, masses: np.ndarray, m: float, s: float, min_width: float
    ) -> tuple[float, float, float, float, float]:
        """``(mass, centre - m, scale, dm/dt, ds/dt)``: the grid follows the density's bulk.

        Without diffusion the centre and scale are the mean and std of ``rho`` and the rates
        are the PDE's moment rates (``ds/dt = s d(log std)/dt``).  With diffusion they are those
        of the quartiles ``q_1, q_3``: centre ``(q_1 + q_3)/2``, scale ``(q_3 - q_1)/1.349``
        (the std of a Gaussian), ``dq/dt = J(q)/f(q) = -a d(mu)/drho`` at ``q``.  The std of
        ``rho`` is dominated by a slowly decaying tail toward ``sigma = 0`` (``e^{rho/N}``),
        whose growth moved the edges of a std-following grid through the bump at ~100 per unit
        time at ``(d, N, p, beta) = (2, 2, 2, 0.5)``, and the steps shrank to 1e-6.

        ``ds/dt`` is not below 0 once ``s`` has reached ``min_width`` and not above 0 while the
        scale is below ``s / 2`` (a bump narrower than the floor).
        """
        if self.diffusion:
            total, offset, std, mean_rate, s_rate = self.quartile_rates(dv, masses, m, s)
        else:
            total, offset, std = self.moments(masses, m, s)
            mean_rate, var_rate = self.moment_rates(dv, masses / total, m, s)
            s_rate = s * var_rate / (2.0 * std * std)
        if std < 0.5 * s:  # a bump narrower than the grid (at min_width): it does not widen
            s_rate = min(s_rate, 0.0)
        if s <= min_width * (1.0 + 1e-9):
            s_rate = max(s_rate, 0.0)
        return total, offset, std, mean_rate, s_rate

    def quartile_rates(
        self, dv: np.ndarray, masses: np.ndarray, m: float, s: float
    ) -> tuple[float, float, float, float, float]:
        """``(mass, centre - m, scale, d centre/dt, d scale/dt)`` of the quartiles (with
        diffusion; see ``grid_rates``): the CDF linear in each cell, ``dq/dt`` the velocity
        ``J/f`` interpolated linearly between the cell's edges."""
        total = float(masses.sum())
        w = masses / total
        cum = np.concatenate(([0.0], np.cumsum(w)))
        h = s * self.dxi
        # the PDE's velocity -a (V' + (log f)'/beta) at the inner edges (centred differences:
        # no upwind numerical diffusion, which at high Peclet number kept the grid from
        # following a narrowing bump)
        a = self.mobility(m + s * self.xi_inner)
        logw = np.log(np.maximum(w, 1e-300))
        vel = -a * (dv + np.diff(logw) / self.model.beta) / h
        xi_q, rate_q = [], []
        for q in (0.25, 0.75):
            i = int(np.clip(np.searchsorted(cum, q, side="right") - 1, 0, self.n - 1))
            frac = min(max((q - cum[i]) / w[i], 0.0), 1.0) if w[i] > 0 else 0.5
            xi_q.append(self.xi_edges[i] + frac * self.dxi)
            left, right = vel[max(i - 1, 0)], vel[min(i, self.n - 2)]  # edges i and i + 1
            rate_q.append(left + frac * (right - left))
        iqr = max(xi_q[1] - xi_q[0], 1e-3 * self.dxi)
        offset = s * 0.5 * (xi_q[0] + xi_q[1])
        scale = s * iqr / _IQR
        # d log(scale)/dt = (r_3 - r_1) / (s iqr): ds/dt = s d log(scale)/dt
        return total, offset, scale, 0.5 * (rate_q[0] + rate_q[1]), (rate_q[1] - rate_q[0]) / iqr

    def step(
        self,
        masses: np.ndarray,
        m: float,
        s: float,
        dv0: np.ndarray,
        rates0: tuple[float, float, float, float, float],
        dt: float,
        min_width: float,
        frozen: bool = False,
        stiffness: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float], tuple[float, float]]:
        """One MPRK22 step of the masses with Heun's method for the grid ``(m, s)``
        (``frozen``: the grid stays put, edge velocity 0).

        ``stiffness`` ``J <= 0``: an estimate of ``d(dm/dt)/dm``.  When it is not 0 the centre
        is advanced by the two-stage Rosenbrock W-method ROS2 (Verwer, Spee, Blom, Hundsdorfer
        1999; second order for any ``J``, L-stable for the exact one) instead of Heun's:
        ``k_1 = g r(m)``, ``k_2 = g (r(m + dt k_1) - 2 k_1)``, ``g = 1/(1 - (1 + 1/sqrt 2) dt J)``,
        ``m_2 = m + dt (3 k_1 + k_2)/2``; the edge velocities ``k_1`` and ``2 k_1 + k_2`` of the
        two flux stages keep the grid and the masses' ALE fluxes consistent.  ``solve`` uses it
        for a bump collapsed inside one cell of a grid at ``min_width``, which moves with the
        grid: its centre relaxes at the rate ``-J = 2 a sigma^2`` (~1e5 at (1024, 50, 2, 0.5)),
        and Heun's stability bound ``dt < 2/|J|`` held such runs to 40 000 steps.

        The grid ODE is ``dm/dt = mean rate + c_m``, ``ds/dt = s dlog(std)/dt + c_s``, with
        constant corrections ``c = k (target - grid)`` that pull the grid onto the mean and std
        of the masses at the rate ``k = 1/T + |d log s/dt|`` (``T`` the final time; at most a
        tenth of the mismatch per step, so the grid never jumps as ``dt -> 0``).  Returns the
        second-order masses, the first-order (modified Patankar-Euler) stage and their grids.
        """
        _, offset, std, mean_rate, s_rate = rates0
        pull = min(self.pull_rate + abs(s_rate) / s, 0.1 / dt)
        if frozen:
            mean_rate = s_rate = pull = 0.0
        c_m = pull * offset
        c_s = pull * (max(std, min_width) - s)
        gain = 1.0 / (1.0 - _ROS2_GAMMA * dt * stiffness) if stiffness < 0 and not frozen else 1.0
        vm0 = gain * (mean_rate + c_m)
        s1 = max(s + dt * (s_rate + c_s), min_width)
        vs0 = (s1 - s) / dt
        m1 = m + dt * vm0
        a_n, g_n = self.coefficients(dv0, vm0 + vs0 * self.xi_inner, m, s)
        stage = _solve_tridiagonal(a_n, g_n, dt, masses)
        dv1 = self.jumps(stage, m1, s1)
        _, _, _, mean_rate1, s_rate1 = self.grid_rates(dv1, stage, m1, s1, min_width)
        if frozen:
            mean_rate1 = s_rate1 = 0.0
        vm1, vs1 = mean_rate1 + c_m, s_rate1 + c_s
        if gain != 1.0:  # ROS2: the second stage's velocity 2 k_1 + k_2
            vm1 = 2.0 * vm0 + gain * (vm1 - 2.0 * vm0)
        a_1, g_1 = self.coefficients(dv1, vm1 + vs1 * self.xi_inner, m1, s1)
        ratio = np.divide(masses, stage, out=np.ones_like(masses), where=stage > 0)
        new = _solve_tridiagonal(a_n * ratio[:-1] + a_1, g_n * ratio[1:] + g_1, 0.5 * dt, masses)
        m2 = m + 0.5 * dt * (vm0 + vm1)
        s2 = max(s + 0.5 * dt * (vs0 + vs1), min_width, 0.25 * s) if not frozen else s
        return new, stage, (m1, s1), (m2, s2)

    def moments(self, masses: np.ndarray, m: float, s: float) -> tuple[float, float, float]:
        """Mass, mean minus ``m`` and standard deviation of ``rho`` (piecewise constant)."""
        total = float(masses.sum())
        xi_bar = float(masses @ self.xi) / total
        var = float(masses @ (self.xi - xi_bar) ** 2) / total + self.dxi**2 / 12.0
        return total, s * xi_bar, s * math.sqrt(var)

    def free_energy(self, masses: np.ndarray, m: float, s: float) -> float:
        """Discrete ``F[f]`` (theory.md section 11; in ``u`` for finite ``N``, ``rho`` at inf)."""
        model = self.model
        h = s * self.dxi
        x = m + s * self.xi
        out = float(masses @ model.energy.e(np.exp(x)))
        if self.weight != 0.0:
            v = kernel_potential(x[0], h, masses, model.depth, self.kernel)
            out -= 0.5 * self.weight * float(masses @ v)
        if self.diffusion:
            pos = masses > 0
            ent = float(masses[pos] @ np.log(masses[pos] / h))
            if not model.infinite:
                ent += float(masses.sum()) * math.log(model.depth) - float(masses @ x) / model.depth
            out += ent / model.beta
        return out


def _wasserstein(m1: np.ndarray, e1: np.ndarray, m2: np.ndarray, e2: np.ndarray) -> float:
    """W1 between two piecewise-constant densities (masses on cells with edges ``e``, each
    normalized here), as ``int |C_1(x) - C_2(x)| dx`` of the piecewise-linear distribution
    functions on the merged edges, exact (a piece whose difference changes sign is integrated
    as two triangles).  Not as ``int_0^1 |Q_1 - Q_2| dq``: the quantile functions' slopes are
    cell width / cell mass, which overflow to inf on denormal masses in the tails (a grid at
    ``min_width`` rejected every step with an infinite error, 60 000 steps at (8, 50, 1.5, 0.5)
    without diffusion)."""
    c1 = np.concatenate(([0.0], np.cumsum(m1)))
    c2 = np.concatenate(([0.0], np.cumsum(m2)))
    c1 /= c1[-1]
    c2 /= c2[-1]
    x = np.union1d(e1, e2)
    g = np.interp(x, e1, c1) - np.interp(x, e2, c2)  # 0 left of a grid, 1 right of it
    a, b = np.abs(g[:-1]), np.abs(g[1:])
    total = a + b
    crossing = g[:-1] * g[1:] < 0
    # |g| integrates to (a + b)/2 per unit length on a piece of one sign, (a^2 + b^2)/(2(a + b))
    # on a piece where g crosses zero
    mean = np.where(crossing, (a * a + b * b) / np.where(crossing, 2.0 * total, 1.0), 0.5 * total)
    return float(mean @ np.diff(x))


def tail_beyond(masses: np.ndarray, h: float, side: int) -> float:
    """Estimated mass beyond one end of the grid, from the geometric decay of the last cells.

    Parameters
    ----------
    masses : numpy.ndarray
        Cell masses on a uniform grid.
    h : float
        The cell width (unused: the decay is measured per cell).
    side : int
        0 for the left end, -1 for the right end.

    Returns
    -------
    float
        ``M_end r / (1 - r)`` with ``r`` the mean decay ratio per cell over the last 8 cells
        (``inf`` when the density does not decay toward that end).
    """
    if side == 0:
        end, nxt = masses[0], masses[min(8, masses.size - 1)]
    else:
        end, nxt = masses[-1], masses[max(-9, -masses.size)]
    if end <= 0:
        return 0.0
    ratio = (end / nxt) ** (1.0 / 8.0) if nxt > 0 else math.inf
    if not ratio < 1.0:
        return math.inf
    return float(end * ratio / (1.0 - ratio))


def _trimmed_support(masses: np.ndarray, edges: np.ndarray, tail: float) -> tuple[float, float]:
    """``[a, b]`` (cell edges) outside which the masses sum to at most ``tail`` on each side."""
    cum = np.cumsum(masses)
    total = cum[-1]
    lo = int(np.searchsorted(cum, tail * total, side="right"))
    hi = int(np.searchsorted(cum, (1.0 - tail) * total, side="left"))
    lo, hi = min(lo, masses.size - 1), max(min(hi, masses.size - 1), lo)
    return float(edges[lo]), float(edges[hi + 1])


def _target_extent(
    support: tuple[float, float], floor: float, grown: tuple[bool, bool] = (False, False)
) -> tuple[float, float]:
    """The grid extent for a trimmed support: padded by 15% of its width on each side (40% on
    a side where the grid grows), at least ``floor`` wide."""
    a, b = support
    width = b - a
    a -= (0.4 if grown[0] else 0.15) * width
    b += (0.4 if grown[1] else 0.15) * width
    if b - a < floor:
        mid = 0.5 * (a + b)
        a, b = mid - 0.5 * floor, mid + 0.5 * floor
    return a, b


def remap(masses: np.ndarray, edges: np.ndarray, new_edges: np.ndarray) -> np.ndarray:
    """Cell masses on ``new_edges`` of the density with cell masses ``masses`` on ``edges``.

    The density is reconstructed piecewise linearly (minmod-limited slopes, so non-negative
    and equal to the cell averages on average), its cumulative distribution (piecewise
    quadratic) is differenced at ``new_edges``: second order for smooth densities, positive,
    and conservative (the mass outside ``new_edges`` goes to the end cells).

    Parameters
    ----------
    masses : numpy.ndarray
        Cell masses ``>= 0`` on ``edges``.
    edges : numpy.ndarray
        Increasing cell edges (uniformly spaced), ``masses.size + 1`` of them.
    new_edges : numpy.ndarray
        Increasing cell edges of the new grid, at least 3.

    Returns
    -------
    numpy.ndarray
        The new cell masses, ``>= 0``, summing to ``masses.sum()`` up to round-off.

    Raises
    ------
    ValueError
        ``bad edges=...`` / ``bad new_edges=...`` when not increasing or of the wrong size.
    """
    masses = np.asarray(masses, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    new_edges = np.asarray(new_edges, dtype=np.float64)
    if edges.shape != (masses.size + 1,) or not np.all(np.diff(edges) > 0):
        raise fail("edges", edges.shape, "must be masses.size + 1 increasing cell edges")
    if new_edges.ndim != 1 or new_edges.size < 3 or not np.all(np.diff(new_edges) > 0):
        raise fail("new_edges", new_edges.shape, "must be >= 3 increasing cell edges")
    h = np.diff(edges)
    u = masses / h
    du = np.diff(u) / (0.5 * (h[1:] + h[:-1]))
    slope = np.zeros_like(u)
    slope[1:-1] = np.where(
        du[1:] * du[:-1] > 0, np.sign(du[1:]) * np.minimum(np.abs(du[1:]), np.abs(du[:-1])), 0.0
    )
    cum = np.concatenate(([0.0], np.cumsum(masses)))
    x = np.clip(new_edges, edges[0], edges[-1])
    i = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, masses.size - 1)
    y = x - edges[i]
    # int_{e_i}^{x} (u_i + slope_i (t - c_i)) dt, c_i the cell centre
    cdf = cum[i] + u[i] * y + 0.5 * slope[i] * y * (y - h[i])
    cdf = np.maximum.accumulate(np.clip(cdf, 0.0, cum[-1]))
    out = np.diff(cdf)
    out[0] += cdf[0]
    out[-1] += cum[-1] - cdf[-1]
    return out


def _solve_tridiagonal(alpha: np.ndarray, gamma: np.ndarray, dt: float, rhs: np.ndarray):
    """Solve ``(I - dt A) M = rhs``, ``(A M)_i = -(J_{i+1/2} - J_{i-1/2})`` (an M-matrix)."""
    n = rhs.size
    ab = np.empty((3, n))
    ab[0, 0] = 0.0
    ab[0, 1:] = -dt * gamma
    ab[2, -1] = 0.0
    ab[2, :-1] = -dt * alpha
    ab[1] = 1.0
    ab[1, :-1] += dt * alpha
    ab[1, 1:] += dt * gamma
    return solve_banded((1, 1), ab, rhs, overwrite_ab=True, check_finite=False)


# ------------------------------------------------------------------ initial data
def _check_support(support) -> tuple[float, float] | None:
    if support is None:
        return None
    try:
        lo, hi = (float(v) for v in support)
    except (TypeError, ValueError):
        raise fail("support", support, "must be a pair (sigma_lo, sigma_hi)") from None
    if not (0 < lo < hi < math.inf):
        raise fail("support", support, "must satisfy 0 < sigma_lo < sigma_hi < inf")
    return lo, hi


def _rho_density(fn: Callable, rho: np.ndarray) -> np.ndarray:
    """``f_rho(rho) = f_sigma(e^rho) e^rho`` from the user's density of ``sigma``."""
    sigma = np.exp(rho)
    try:
        vals = np.asarray(fn(sigma), dtype=np.float64)
    except Exception as exc:  # any failure of the user's callable is a bad argument
        raise fail("initial", fn, f"calling it on an array of sigma failed: {exc}") from None
    if vals.shape != sigma.shape:
        vals = np.broadcast_to(vals, sigma.shape)
    if not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise fail("initial", fn, "the density must be finite and >= 0")
    return vals * sigma


def _locate(
    fn: Callable, support, centre: float, tail: float
) -> tuple[float, float, float, float]:
    """Mean and std of ``rho`` and its trimmed support (mass ``<= tail`` beyond each end).

    Scans ``support`` (default ``centre * 10^(+-8)``) and zooms in on the non-negligible range
    (values above ``1e-16`` of the maximum) until it spans the scan.
    """
    lo, hi = (math.log(v) for v in support) if support else (centre - 18.4, centre + 18.4)
    for _ in range(8):
        rho = np.linspace(lo, hi, _SCAN)
        vals = _rho_density(fn, rho)
        peak = float(vals.max())
        if not peak > 0:
            raise fail(
                "initial",
                fn,
                "the density vanishes on the scan of log sigma in "
                f"[{lo:.4g}, {hi:.4g}]; pass support=(sigma_lo, sigma_hi)",
            )
        idx = np.flatnonzero(vals > 1e-16 * peak)
        step = rho[1] - rho[0]
        new_lo, new_hi = rho[idx[0]] - step, rho[idx[-1]] + step
        if idx.size > _SCAN // 4:
            break
        lo, hi = max(lo, new_lo), min(hi, new_hi)
    weights = vals / vals.sum()
    mean = float(weights @ rho)
    std = math.sqrt(max(float(weights @ (rho - mean) ** 2), 0.0) + step**2 / 12.0)
    scan_edges = np.append(rho - 0.5 * step, rho[-1] + 0.5 * step)
    lo, hi = _trimmed_support(weights, scan_edges, tail)
    return mean, std, lo, hi


def _masses_from_callable(fn: Callable, xi_edges: np.ndarray, m: float, s: float) -> np.ndarray:
    """Cell masses ``int f_rho drho`` by 6-point Gauss-Legendre quadrature on each cell."""
    h = s * (xi_edges[1] - xi_edges[0])
    centres = m + s * 0.5 * (xi_edges[1:] + xi_edges[:-1])
    gx, gw = _GAUSS[6]
    nodes = centres[:, None] + 0.5 * h * gx[None, :]
    return 0.5 * h * (_rho_density(fn, nodes) @ gw)


def _masses_from_samples(rho: np.ndarray, bandwidth: float, xi_edges, m: float, s: float):
    """Binned Gaussian kernel density estimate of the ``rho`` samples on the grid.

    Linear binning to the cell centres, then convolution with the cell masses of a Gaussian of
    std ``bandwidth`` (both second-order accurate in the cell width).
    """
    n = xi_edges.size - 1
    dxi = xi_edges[1] - xi_edges[0]
    pos = ((rho - m) / s - xi_edges[0]) / dxi - 0.5  # fractional cell-centre index
    pos = np.clip(pos, 0.0, n - 1.0)
    left = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    frac = pos - left
    masses = np.bincount(left, 1.0 - frac, minlength=n) + np.bincount(left + 1, frac, minlength=n)
    width = bandwidth / (s * dxi)  # kernel std in cells
    if width > 0.05:
        half = int(math.ceil(8.0 * width)) + 1
        k = np.arange(-half, half + 1)
        weights = ndtr((k + 0.5) / width) - ndtr((k - 0.5) / width)
        masses = np.convolve(masses, weights)[half : half + n]  # centred, mass off-grid lost
    return masses


# ---------------------------------------------------------------------- the solver
def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise fail(name, value, "must be True or False")
    return bool(value)


def _optional_positive(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == math.inf:
        return None
    return check_positive(value, name)


def solve(
    model: Model,
    initial: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    times: np.ndarray,
    *,
    diffusion: bool = True,
    cells: int = 256,
    span: float = 5.0,
    tail: float = 1e-10,
    adapt: bool = False,
    rescaled: bool | None = None,
    rtol: float = 1e-5,
    dt: float | None = None,
    max_step: float | None = None,
    min_width: float = 1e-10,
    mobility_cap: float = 1e8,
    support: tuple[float, float] | None = None,
    kernel: str = "fft",
    max_steps: int = 1_000_000,
) -> xr.Dataset:
    """Solve the mean-field equation of ``model`` from ``initial``; save at ``times``.

    ``initial``: a vectorized callable ``f(sigma) >= 0`` (a density of ``sigma``, normalized
    here; its mass is located by a scan of ``support``, default ``sigma_* 10^(+-8)``), or a
    1-D array of samples of ``sigma`` (binned Gaussian kernel density estimate, Silverman
    bandwidth in ``log sigma``, at least ``min_width``).  ``times``: increasing, ``>= 0``; in
    ``t``, or ``tau = N t`` when ``rescaled`` (default and only choice at ``depth = inf``).

    ``cells`` cells cover the initial density's support trimmed at ``tail`` (at least
    ``span`` standard deviations of ``log sigma`` on each side), moving with the bulk (mean
    and std without diffusion, quartiles with it; ``min_width``: smallest grid scale in
    ``log sigma``).  ``rtol``: local
    error per step (max of the W1 distance in ``log sigma`` and the L1 distance of the cell
    masses); ``dt``: fixed steps instead (still shortened so that the grid shrinks by at most
    40% per step); ``max_step``: cap on the step.  ``kernel``: ``"fft"`` (fast, exact to
    round-off) or ``"direct"`` (``O(n^2)`` reference, for moderate cell widths).

    Returns a Dataset with dims ``(time, cell)``: ``density`` (w.r.t. ``d sigma``,
    ``sum(density * cell_width) = 1``), ``cell_width``, 2-D coordinates ``sigma`` (cell
    centres in ``sigma``), ``sigma_lower``/``sigma_upper`` (cell edges) since the grid moves,
    1-D ``xi`` (the co-moving cell coordinate: ``log sigma = grid_center + grid_scale xi``), and
    per time ``free_energy``, ``mass``, ``sigma_mean``, ``sigma_std``, ``sigma_de_mean``
    (``E[sigma e'(sigma)]``; moments by midpoint sums over the cell centres in ``log sigma``,
    spectrally accurate, not the moments of the piecewise-constant ``density``), ``grid_center``,
    ``grid_scale``.

    Parameters
    ----------
    model : Model
        The particle model whose mean-field limit is solved.
    initial : callable or numpy.ndarray
        Density ``f(sigma)`` (vectorized, >= 0), or 1-D positive samples of ``sigma``.
    times : numpy.ndarray
        Save times, 1-D, increasing, >= 0 (``t``, or ``tau = N t`` when rescaled).
    diffusion : bool, default True
        Include the diffusion (entropy/temperature) term.
    cells : int, default 256
        Number of grid cells, >= 8.
    span : float, default 5.0
        Least half-width of the grid in standard deviations of ``log sigma``, >= 2.
    tail : float, default 1e-10
        Mass trimmed beyond each end: the initial grid covers the initial density's support
        with at most ``tail`` beyond each end (padded by 15% of its width), in ``(0, 1e-3)``.
    adapt : bool, default False
        Regrid during the run (conservative, positive, second-order remap) whenever the
        trimmed support nears a wall or fills less than 2/3 of the grid (attr ``regrids``).
        Experimental: a remap changes the discrete ``F`` (it can rise at a save).
    rescaled : bool or None, default None
        Times in ``tau = N t`` (None: the model's default).
    rtol : float, default 1e-5
        Local error per step, in ``(0, 0.1)``.
    dt : float or None, default None
        Fixed step > 0 (None or ``inf``: adaptive).
    max_step : float or None, default None
        Step cap > 0 (None or ``inf``: none).
    min_width : float, default 1e-10
        Smallest grid std in ``log sigma``, in ``(0, 0.1]``.
    mobility_cap : float or None, default 1e8
        Largest mobility, as a multiple of its value at ``sigma_*``, ``>= 1`` (None or
        ``inf``: none).
        The mobility ``N e^{-2 rho/N}`` reaches ~1e30 in the far tail toward ``sigma = 0``
        at small ``N`` (below ``sigma_* e^{-9.2 N}`` for the default); capping it there keeps
        the stationary states and the dissipation of ``F`` (``Scheme.mobility``) and the tail's
        relaxation ``>= cap`` times faster than the bulk's.  Uncapped, the run at
        ``(d, N, beta) = (2, 2, 0.5)`` took over 100 000 steps to ``t = 1``; capped, 2 245 to
        ``t = 40``.
    support : tuple of (float, float) or None, default None
        ``sigma`` interval scanned for a callable's mass (default ``sigma_* 10^(+-8)``).
    kernel : {"fft", "direct"}, default "fft"
        Nonlocal-term method.
    max_steps : int, default 1_000_000
        Step budget, >= 1.

    Returns
    -------
    xarray.Dataset
        The solution described above, dims ``(time, cell)``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument (``model``, ``times``, ``diffusion``,
        ``cells``, ``span``, ``tail``, ``adapt``, ``rtol``, ``dt``, ``max_step``,
        ``min_width``, ``mobility_cap``, ``support``, ``kernel``, ``max_steps``, ``initial``
        (not callable or samples, non-positive samples, no mass on the grid)).
    RuntimeError
        Step size underflow, more than ``max_steps`` steps, or non-positive/non-finite masses.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    rescaled = model.resolve_rescaled(rescaled)
    times = check_times(times)
    diffusion = _check_bool(diffusion, "diffusion")
    adapt = _check_bool(adapt, "adapt")
    cells = check_integer(cells, "cells", minimum=8)
    span = check_positive(span, "span")
    if span < 2:
        raise fail("span", span, "must be >= 2 (standard deviations on each side)")
    rtol = check_positive(rtol, "rtol")
    if rtol >= 0.1:
        raise fail("rtol", rtol, "must be < 0.1")
    dt_fixed = _optional_positive(dt, "dt")
    max_step = _optional_positive(max_step, "max_step") or math.inf
    min_width = check_positive(min_width, "min_width")
    mobility_cap = _optional_positive(mobility_cap, "mobility_cap") or math.inf
    if mobility_cap < 1.0:
        raise fail("mobility_cap", mobility_cap, "must be >= 1 (times the value at sigma_*)")
    if min_width > 0.1:
        raise fail("min_width", min_width, "must be <= 0.1 (a width in log sigma)")
    tail = check_positive(tail, "tail")
    if tail >= 1e-3:
        raise fail("tail", tail, "must be < 1e-3 (the mass trimmed beyond each end of the grid)")
    support = _check_support(support)
    kernel = check_choice(kernel, "kernel", ("fft", "direct"))
    max_steps = check_integer(max_steps, "max_steps")

    # ---- initial grid and masses
    star = model.equilibrium()
    centre = math.log(star) if star > 0 else 0.0  # log sigma_* (0 when sigma_* = 0)
    if callable(initial):
        mean, std, lo, hi = _locate(initial, support, centre, tail)
        std = max(std, min_width)
        a, b = _target_extent(((lo - mean) / std, (hi - mean) / std), 2.0 * span)
        xi_edges = np.linspace(a, b, cells + 1)
        masses = _masses_from_callable(initial, xi_edges, mean, std)
        label = f"callable {getattr(initial, '__name__', type(initial).__name__)}"
    else:
        try:
            samples = np.asarray(initial, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise fail("initial", initial, "must be a callable or an array of samples") from None
        if samples.size == 0 or not np.all(np.isfinite(samples)) or np.any(samples <= 0):
            raise fail("initial", initial, "samples of sigma must be positive and finite")
        rho = np.log(samples)
        bandwidth = max(1.06 * float(rho.std()) * samples.size ** (-0.2), min_width)
        mean = float(rho.mean())
        std = math.sqrt(float(rho.var()) + bandwidth**2)
        reach = 5.0 * bandwidth
        extent = ((rho.min() - reach - mean) / std, (rho.max() + reach - mean) / std)
        a, b = _target_extent(extent, 2.0 * span)
        xi_edges = np.linspace(a, b, cells + 1)
        masses = _masses_from_samples(rho, bandwidth, xi_edges, mean, std)
        label = f"{samples.size} samples (kernel density, bandwidth {bandwidth:.3g} in log sigma)"
    total0 = float(masses.sum())
    if not (math.isfinite(total0) and total0 > 0):
        raise fail("initial", initial, "the initial density has no mass on the grid")
    masses = masses / total0
    scheme = Scheme(model, diffusion, rescaled, xi_edges, kernel)
    scheme.pull_rate = 1.0 / float(times[-1]) if times[-1] > 0 else 0.0
    scheme.mobility_cap = mobility_cap * float(model.time_factor(np.array([centre]), rescaled)[0])
    m, s = mean, std
    if callable(initial):  # centre the grid on the discrete moments (the scan's are O(h^2) off)
        for _ in range(2):
            _, offset, s = scheme.moments(masses, m, s)
            m += offset
            s = max(s, min_width)
            masses = _masses_from_callable(initial, xi_edges, m, s)
            masses = masses / masses.sum()

    _check_extinction(model, diffusion, rescaled, times, masses, scheme.edges(m, s), tail)

    # ---- time stepping
    out_masses = np.empty((times.size, cells))
    out_grid = np.empty((times.size, 2))
    t, k_out, steps, rejected = 0.0, 0, 0, 0
    while k_out < times.size and times[k_out] <= 0.0:
        out_masses[k_out], out_grid[k_out] = masses, (m, s)
        k_out += 1
    dt_try = dt_fixed
    free = scheme.free_energy(masses, m, s) if diffusion else 0.0
    frozen_steps = regrids = 0
    while k_out < times.size:
        if dt_fixed is not None:
            dt_try = dt_fixed
        dv0 = scheme.jumps(masses, m, s)
        rates0 = scheme.grid_rates(dv0, masses, m, s, min_width)
        _, _, std, mean_rate, s_rate = rates0
        # a bump collapsed inside one cell of a grid at min_width moves with the grid
        trapped = not diffusion and s <= min_width * (1.0 + 1e-9) and std < 0.5 * s
        stiffness = scheme.centre_stiffness(masses, m, s, mean_rate) if trapped else 0.0
        if dt_try is None:  # the step controller corrects this guess within a few steps
            speed = abs(mean_rate) + abs(s_rate) / s + 1.0 / float(times[-1])
            dt_try = 0.1 * math.sqrt(rtol) / speed
        frozen = False
        while True:
            step = min(dt_try, max_step, times[k_out] - t)
            if s_rate < 0 and not frozen:  # keep s + dt ds/dt >= 0.6 s in the Euler stage
                step = min(step, 0.4 * s / -s_rate)
            # underflow relative to t (at t = 0 a step of 1e-15 is legitimate: from sigma =
            # 100 sigma_* at p = 4, N = 50 the initial rates are ~1e10 and the first steps
            # ~1e-15; an absolute floor of 1e-14 failed those runs at once)
            if step <= 1e-14 * abs(t) or step < 1e-250:
                raise RuntimeError(
                    f"meanfield.solve: step size underflow at t={t:.6g} (step {step:.3g}; the "
                    f"grid's rates are {abs(mean_rate):.3g} (centre) and {abs(s_rate / s):.3g} "
                    "(log scale) per unit time: the density moves faster than the step control "
                    "can follow; try a smaller rtol or start nearer sigma_*)"
                )
            new, stage, grid1, grid2 = scheme.step(
                masses, m, s, dv0, rates0, step, min_width, frozen, stiffness
            )
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"meanfield.solve: more than max_steps={max_steps} steps")
            if diffusion:
                # dissipation guard: the fixed-grid scheme dissipates the discrete F exactly in
                # space, the moving grid only up to O(h^2) (ALE terms); a step that raises F is
                # redone on the frozen grid, and a frozen step that raises F with a shorter step
                new_free = scheme.free_energy(new, *grid2)
                if new_free > free + _DISSIPATION_SLACK * (1.0 + abs(free)):
                    rejected += 1
                    if not frozen:
                        frozen = True
                    else:
                        dt_try = 0.5 * step
                    continue
            if dt_fixed is not None:
                break
            # local error of the 1st-order solution: W1 distance (in log sigma), and L1 distance
            # of the cell masses (the shape in the co-moving cells, however narrow the bump;
            # not once the grid is at min_width, where the shape is no longer resolved)
            err = _wasserstein(stage, scheme.edges(*grid1), new, scheme.edges(*grid2))
            if min(s, grid2[1]) > min_width * 1.001:
                err = max(err, float(np.abs(new - stage).sum()))
            err /= rtol
            if err <= 1.0:
                if step == dt_try:
                    dt_try = step * min(2.5, max(0.2, 0.9 / math.sqrt(max(err, 1e-12))))
                break
            rejected += 1
            dt_try = step * max(0.2, 0.9 / math.sqrt(err))
        if not (np.all(new >= 0) and np.all(np.isfinite(new))):
            raise RuntimeError(f"meanfield.solve: non-positive or non-finite masses at t={t:.6g}")
        masses, (m, s) = new, grid2
        if diffusion:  # the guard compares with the lowest F so far, so that small rises
            free = min(free, new_free)  # cannot add up between saves
            frozen_steps += int(frozen)
        new_edges = _regrid(scheme, masses, m, s, span, tail, min_width) if adapt else None
        if new_edges is not None:
            masses = remap(masses, scheme.xi_edges, new_edges)
            scheme.set_edges(new_edges)
            regrids += 1
            if diffusion:
                free = scheme.free_energy(masses, m, s)
        t = times[k_out] if step == times[k_out] - t else t + step
        while k_out < times.size and times[k_out] <= t:
            out_masses[k_out], out_grid[k_out] = masses, (m, s)
            k_out += 1

    attrs = {
        **model.describe(),
        "kind": "meanfield",
        "rescaled_time": int(rescaled),
        "diffusion": int(diffusion),
        "cells": cells,
        "span": span,
        "tail": tail,
        "rtol": rtol,
        "dt": "adaptive" if dt_fixed is None else dt_fixed,
        "max_step": "none" if max_step == math.inf else max_step,
        "min_width": min_width,
        "mobility_cap": "none" if mobility_cap == math.inf else mobility_cap,
        "kernel": kernel,
        "initial": label,
        "steps": steps,
        "rejected_steps": rejected,
        "frozen_grid_steps": frozen_steps,
        "adapt": int(adapt),
        "regrids": regrids,
        "scheme": "co-moving ALE finite volumes in log sigma, "
        + ("Scharfetter-Gummel" if diffusion else "upwind")
        + " flux, MPRK22 (positive, conservative) + Heun grid, W1/L1 step control",
        "dlnsim_version": __version__,
    }
    return _dataset(scheme, times, out_masses, out_grid, rescaled, attrs)


def _check_extinction(model, diffusion, rescaled, times, masses, edges, tail) -> None:
    """At ``N = 1`` without diffusion there is no interaction (``k_1 = 1``) and each ``sigma``
    follows ``sigma' = -e'(sigma)``; for ``Schatten(p < 2)`` that reaches ``sigma = 0`` at
    ``t = sigma_0^{2-p} / (2-p)``, after which ``log sigma`` runs to ``-inf`` ever faster (the
    sampled sweep's runs never finished).  Refuse a horizon past the lowest mass's extinction."""
    p = getattr(model.energy, "p", None)
    if model.infinite or model.depth != 1 or diffusion or p is None or p >= 2:
        return
    first = int(np.searchsorted(np.cumsum(masses), tail))  # lowest cell below which <= tail
    sigma_lo = math.exp(float(edges[first]))
    t_ext = sigma_lo ** (2.0 - p) / (2.0 - p)  # t = tau at N = 1
    if times[-1] >= t_ext:
        raise fail(
            "times",
            float(times[-1]),
            f"at N = 1 without diffusion each sigma follows sigma' = -sigma^(p-1) (no "
            f"interaction), which reaches sigma = 0 at t = {t_ext:.4g} from the lowest mass "
            f"(sigma = {sigma_lo:.3g}, p = {p:g} < 2); the log-sigma grid cannot follow it there: "
            "end before, or use diffusion=True or p >= 2",
        )


def _regrid(
    scheme: Scheme,
    masses: np.ndarray,
    m: float,
    s: float,
    span: float,
    tail: float,
    min_width: float,
) -> np.ndarray | None:
    """New reference edges when the grid no longer fits the trimmed support, else None.

    The support (mass ``<= tail`` beyond each end) plus its padding must lie inside the grid
    (else the grid grows, by 40% of the support's width on that side), and fill at least 2/3
    of it (else the grid shrinks onto it).  Floor: ``2 span`` standard deviations of ``rho``
    and ``2 span min_width`` in ``rho``, so that a numerical Dirac mass is not chased.  The
    grid does not reach below ``rho = -600`` (``sigma ~ 1e-261``) nor, at finite ``N``, below
    ``rho = -17.3 N`` (mobility ``e^{-2 rho/N} <= 1e15``); the mass of a slowly decaying tail
    toward ``sigma = 0`` below it stays at the wall.
    """
    edges = scheme.xi_edges
    support = _trimmed_support(masses, edges, tail)
    _, _, std = scheme.moments(masses, 0.0, 1.0)  # std in xi
    floor = 2.0 * span * max(std, min_width / s)
    a, b = _target_extent(support, floor)
    pad = 0.15 * (support[1] - support[0])
    # grow where the support nears a wall, or where the density does not decay toward it fast
    # enough for the mass beyond (a wall cuts the tail) to be below tail
    grown = (
        support[0] - edges[0] < 0.5 * pad or tail_beyond(masses, 0.0, 0) > tail,
        edges[-1] - support[1] < 0.5 * pad or tail_beyond(masses, 0.0, -1) > tail,
    )
    if any(grown):
        a, b = _target_extent(support, floor, grown)
    elif edges[-1] - edges[0] <= 1.5 * (b - a):
        return None
    # lowest edge: sigma ~ 1e-261, and a mobility N e^{-2 rho/N} at most ~1e15 (beyond, the
    # implicit solves lose the conservation of mass to round-off)
    rho_min = _RHO_MIN if scheme.model.infinite else max(_RHO_MIN, -17.3 * scheme.model.depth)
    lowest = (rho_min - m) / s
    if a < lowest:
        a = lowest
        if not grown[1] and edges[0] <= lowest + 0.01 * (b - a):
            return None  # the grid already reaches the floor of rho
    return np.linspace(a, b, edges.size)


def _dataset(
    scheme: Scheme,
    times: np.ndarray,
    masses: np.ndarray,
    grid: np.ndarray,
    rescaled: bool,
    attrs: dict,
) -> xr.Dataset:
    """Pack the saved cell masses and grids into the documented Dataset."""
    m, s = grid[:, :1], grid[:, 1:]
    lower = np.exp(m + s * scheme.xi_edges[None, :-1])
    width = lower * np.expm1(s * scheme.dxi)  # exact, even for cells of relative width 1e-12
    centre = lower + 0.5 * width
    density = masses / width
    mass = masses.sum(axis=1)
    # moments of sigma by the scheme's own quadrature: the masses are point values at the cell
    # centres x_i (the SG flux is exact for the discrete Gibbs state M_i ~ exp(-beta V(x_i)) h),
    # so midpoint sums in log sigma are spectrally accurate for a smooth density, where the
    # moments of the piecewise-constant `density` in sigma are only O(h^2) (1.4e-3 in E[sigma],
    # 1.1e-2 in Var[sigma] at (d, N, p, beta) = (16, 4, 2, 32), 256 cells; theory.md 13.7);
    # e^{x_i} = e^m (1 + q_i) with q = expm1(s xi): no cancellation in the variance
    x = m + s * scheme.xi[None, :]
    q = np.expm1(s * scheme.xi[None, :])
    q_bar = (masses * q).sum(axis=1) / mass
    scale = np.exp(m[:, 0])
    mean = scale * (1.0 + q_bar)
    std = scale * np.sqrt((masses * (q - q_bar[:, None]) ** 2).sum(axis=1) / mass)
    de_mean = (masses * scheme.model.energy.log_derivatives(x)[0]).sum(axis=1) / mass
    free = np.array(
        [scheme.free_energy(mk, mk_m, mk_s) for mk, (mk_m, mk_s) in zip(masses, grid, strict=True)]
    )
    dims = ("time", "cell")
    ds = xr.Dataset(
        {
            "density": (
                dims,
                density,
                {"long_name": "density of singular values w.r.t. d sigma", "units": "1"},
            ),
            "cell_width": (dims, width, {"long_name": "cell width in sigma", "units": "1"}),
            "free_energy": (
                "time",
                free,
                {
                    "long_name": "discrete mean-field free energy F[f] (theory.md section 11)",
                    "units": "1",
                },
            ),
            "mass": (
                "time",
                mass,
                {"long_name": "total mass sum(density * cell_width)", "units": "1"},
            ),
            "sigma_mean": ("time", mean, {"long_name": "mean of sigma", "units": "1"}),
            "sigma_std": ("time", std, {"long_name": "standard deviation of sigma", "units": "1"}),
            "sigma_de_mean": (
                "time",
                de_mean,
                {"long_name": "E[sigma e'(sigma)] (virial moment)", "units": "1"},
            ),
            "grid_center": (
                "time",
                grid[:, 0],
                {"long_name": "grid centre m in log sigma (mean of log sigma)", "units": "1"},
            ),
            "grid_scale": (
                "time",
                grid[:, 1],
                {"long_name": "grid scale s in log sigma (std of log sigma)", "units": "1"},
            ),
        },
        coords={
            "time": (
                "time",
                times,
                {
                    "long_name": "rescaled time tau = N t" if rescaled else "time t",
                    "units": "1",
                },
            ),
            "xi": (
                "cell",
                scheme.xi,
                {
                    "long_name": "co-moving cell coordinate xi: log sigma = grid_center + "
                    "grid_scale * xi (the grid moves: see sigma)",
                    "units": "1",
                },
            ),
            "sigma": (dims, centre, {"long_name": "cell centre in sigma", "units": "1"}),
            "sigma_lower": (dims, lower, {"long_name": "lower cell edge in sigma", "units": "1"}),
            "sigma_upper": (
                dims,
                lower + width,
                {"long_name": "upper cell edge in sigma", "units": "1"},
            ),
        },
    )
    ds.attrs.update(provenance(**attrs))
    return ds
