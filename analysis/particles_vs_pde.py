"""Particles against the mean-field PDE as the width grows (theory.md section 11).

For each width ``d`` the model is taken at ``beta = b d`` (fixed ``b``), the scaling in which the
one-particle density has a mean-field limit.  The particles start from independent draws of one
smooth density (``log sigma`` normal), which is also the PDE's initial datum; at common times the
pooled particle samples (all members and particles) are compared with the PDE density by the
exact 1-Wasserstein distance and the L1 distance to the histogram on the PDE cells
(``analysis.meanfield_compare``).  ``n_samples`` pooled samples per width (``members = n_samples
/ d``) keep the sampling part of the distances the same at every width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from dlnsim.meanfield import solve
from dlnsim.meanfield.solver import toeplitz_apply
from dlnsim.particles import Model, Schatten, langevin_ensemble
from dlnsim.particles.datasets import provenance
from dlnsim.particles.entropy import psi
from dlnsim.particles.pairsum.coefficients import one_minus
from dlnsim.particles.validation import (
    check_depth,
    check_integer,
    check_positive,
    check_times,
    fail,
)

from .meanfield_compare import compare_densities, fit_rate, member_noise, wasserstein_to_density

__all__ = ["particles_vs_pde"]


def particles_vs_pde(
    widths: Sequence[int] = (8, 32, 128, 512),
    b: float = 1.0,
    depth: int | float = 4,
    p: float = 2.0,
    times: Sequence[float] = (0.0, 0.1, 0.3, 1.0),
    n_samples: int = 2048,
    dt: float = 1e-3,
    seed: int = 0,
    spread: float = 0.3,
    cells: int = 128,
    coarsen: int = 8,
    replicas: int = 4,
    scheduler: str | None = "serial",
    progress: bool | None = False,
) -> xr.Dataset:
    """PDE density and Langevin particles for each width at ``beta = b d``; their distances.

    Initial law: ``log sigma ~ Normal(log(1.5 sigma_*), spread^2)`` with ``sigma_*`` the
    equilibrium of the ``d -> inf`` limit (``sigma_*^p = (N-1)/(2 N b)``).  Returns a Dataset
    with dims ``width``, ``time``, ``cell`` (PDE cells: ``density``, ``cell_width`` and the
    cell-centre coordinate ``sigma``) and ``sample`` (the pooled particle samples), ``w1`` and
    ``l1`` (``width, time``), and the fitted log-log slopes of ``w1`` and ``l1`` against ``d``
    at the last time in the attributes (``w1_rate``, ``l1_rate``).  ``l1`` uses bins of
    ``coarsen`` PDE cells (a
    histogram on the fine cells is dominated by sampling noise); ``w1_floor``/``l1_floor`` are the
    same distances for as many independent exact samples of the PDE density (mean over
    ``replicas`` draws), i.e. what the noise of independent samples gives.

    The particles of one system are not independent (they repel: their empirical CDF is far less
    noisy than that of as many independent draws, and ``w1`` falls below ``w1_floor`` once they
    have relaxed), so the W1 comparison uses the members' own noise (``member_noise``):
    ``w1_member_floor`` is the expected ``w1`` if the particles' one-particle law were the PDE's,
    ``w1_se`` the jackknife standard error of ``w1`` over members, and ``w1_excess = w1 -
    w1_member_floor`` estimates the mean-field part of W1 (about ``int |F_particles - F_pde|``
    when it dominates the noise, 0 on average when the laws agree).  The attrs ``w1_order``,
    ``w1_order_low``, ``w1_order_high`` fit ``w1_excess = A d^{-q}`` at the last time with its
    95% interval (``fit_order``; infinite ends: not resolved by the data).

    Parameters
    ----------
    widths : sequence of int, default (8, 32, 128, 512)
        At least two increasing widths ``d >= 2`` (``>= 4`` at ``N = inf``).
    b : float, default 1.0
        ``beta / d``, > 0.
    depth : int or float, default 4
        ``N >= 2`` or ``math.inf``.
    p : float, default 2.0
        Exponent of the energy (``sigma_*^p = (N-1)/(2 N b)``).
    times : sequence of float, default (0.0, 0.1, 0.3, 1.0)
        Comparison times ``t``, increasing, >= 0.
    n_samples : int, default 2048
        Pooled particle samples per time, >= 2, a multiple of every width.
    dt : float, default 1e-3
        Langevin time step, > 0.
    seed : int, default 0
        Seed of the particle runs.
    spread : float, default 0.3
        Std of the initial ``log sigma``, > 0.
    cells : int, default 128
        PDE cells.
    coarsen : int, default 8
        PDE cells per ``l1`` bin.
    replicas : int, default 4
        Draws of independent exact samples averaged in ``w1_floor``/``l1_floor``, >= 1.
    scheduler : str or None, default "serial"
        As in ``langevin_ensemble``.
    progress : bool or None, default False
        Progress bar.

    Returns
    -------
    xarray.Dataset
        The densities, samples and distances described above.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument (``widths``, ``b``, ``depth``, ``times``,
        ``n_samples``, ``spread``, ...).
    """
    widths = [check_integer(w, "widths", 2) for w in widths]
    if len(widths) < 2 or any(a >= c for a, c in zip(widths, widths[1:], strict=False)):
        raise fail("widths", widths, "need at least two increasing widths >= 2")
    b = check_positive(b, "b")
    depth = check_depth(depth)
    if depth == 1:
        raise fail("depth", depth, "N = 1 has no entropy and no mean-field interaction")
    if depth == math.inf and widths[0] <= 3:
        raise fail(
            "widths",
            widths,
            "the N = inf mean field has no equilibrium for d <= 3 (its density decays like "
            "|log sigma|^(-(d-1)/2) toward sigma = 0, not integrable): use widths >= 4",
        )
    times = check_times(times)
    n_samples = check_integer(n_samples, "n_samples", 2)
    for w in widths:
        if n_samples % w or n_samples < 2 * w:
            raise fail(
                "n_samples", n_samples, f"must be a multiple of every width ({w}), >= 2 members"
            )
    replicas = check_integer(replicas, "replicas", 1)
    spread = check_positive(spread, "spread")
    frac = 1.0 if depth == math.inf else (depth - 1) / depth
    s_star = (frac / (2 * b)) ** (1 / p)
    centre = math.log(1.5 * s_star)

    def initial(sigma: np.ndarray) -> np.ndarray:
        z = (np.log(sigma) - centre) / spread
        return np.exp(-0.5 * z * z) / (sigma * spread * math.sqrt(2 * math.pi))

    rng = np.random.default_rng(seed)
    densities, centres, widths_cell, samples, w1, l1 = [], [], [], [], [], []
    l1c, floors, member_floors = [], [], []
    for d in widths:
        model = Model(d, depth, b * d, Schatten(p))
        pde = solve(model, initial, times, cells=cells)
        members = n_samples // d
        sigma0 = np.exp(centre + spread * rng.standard_normal((members, d)))
        ens = langevin_ensemble(
            model, sigma0, times, members, dt, seed=seed, scheduler=scheduler, progress=progress
        )
        pooled = ens.sigma.values.transpose(1, 0, 2).reshape(times.size, -1)  # (time, sample)
        dist = compare_densities(pde, pooled, times)
        # L1 on bins of `coarsen` PDE cells, and both distances for exact samples of the PDE
        # density itself (the sampling-noise floor at this number of samples)
        l1_coarse, w1_floor, l1_floor, member_floor = [], [], [], []
        for k in range(times.size):
            edges = np.append(pde.sigma_lower.values[k], pde.sigma_upper.values[k, -1])
            masses = pde.density.values[k] * pde.cell_width.values[k]
            exact = [_sample_cells(edges, masses, pooled.shape[1], rng) for _ in range(replicas)]
            l1_coarse.append(_coarse_l1(edges, masses, pooled[k], coarsen))
            l1_floor.append(np.mean([_coarse_l1(edges, masses, y, coarsen) for y in exact]))
            w1_floor.append(np.mean([wasserstein_to_density(edges, masses, y) for y in exact]))
            member_floor.append(member_noise(edges, masses, ens.sigma.values[:, k, :]))
        floors.append((w1_floor, l1_floor))
        member_floors.append(member_floor)
        l1c.append(l1_coarse)
        densities.append(pde.density.values)
        centres.append(pde.sigma.values)
        widths_cell.append(pde.cell_width.values)
        samples.append(pooled)
        w1.append(dist.w1.values)
        l1.append(dist.l1.values)
    w1_arr, l1_arr = np.array(w1), np.array(l1c)
    floors_arr = np.array(floors)  # (width, 2, time)
    member_arr = np.array(member_floors)  # (width, time, 2): floor, se
    excess = w1_arr - member_arr[..., 0]
    ds = xr.Dataset(
        {
            "density": (
                ("width", "time", "cell"),
                np.array(densities),
                {"long_name": "mean-field density of sigma (w.r.t. d sigma)", "units": "1"},
            ),
            "cell_width": (
                ("width", "time", "cell"),
                np.array(widths_cell),
                {"long_name": "PDE cell width in sigma", "units": "1"},
            ),
            "samples": (
                ("width", "time", "sample"),
                np.array(samples),
                {"long_name": "pooled particle singular values", "units": "1"},
            ),
            "w1": (
                ("width", "time"),
                w1_arr,
                {"long_name": "1-Wasserstein distance particles vs PDE", "units": "1"},
            ),
            "l1": (
                ("width", "time"),
                l1_arr,
                {
                    "long_name": "L1 distance: histogram (bins of `coarsen` PDE cells) vs PDE",
                    "units": "1",
                },
            ),
            "l1_cells": (
                ("width", "time"),
                np.array(l1),
                {"long_name": "L1 distance: histogram on the PDE cells vs PDE", "units": "1"},
            ),
            "w1_floor": (
                ("width", "time"),
                floors_arr[:, 0],
                {"long_name": "W1 of exact samples of the PDE density (noise floor)", "units": "1"},
            ),
            "w1_member_floor": (
                ("width", "time"),
                member_arr[..., 0],
                {
                    "long_name": "expected W1 if the particles' law were the PDE's (members' "
                    "own noise)",
                    "units": "1",
                },
            ),
            "w1_se": (
                ("width", "time"),
                member_arr[..., 1],
                {"long_name": "standard error of w1 (jackknife over members)", "units": "1"},
            ),
            "w1_excess": (
                ("width", "time"),
                excess,
                {"long_name": "w1 - w1_member_floor (mean-field part of W1)", "units": "1"},
            ),
            "l1_floor": (
                ("width", "time"),
                floors_arr[:, 1],
                {"long_name": "L1 of exact samples of the PDE density (noise floor)", "units": "1"},
            ),
        },
        coords={
            "width": ("width", np.array(widths), {"long_name": "width d (beta = b d)"}),
            "time": (
                "time",
                times,
                {
                    "long_name": "rescaled time tau = N t" if depth == math.inf else "time t",
                    "units": "1",
                },
            ),
            "sigma": (
                ("width", "time", "cell"),
                np.array(centres),
                {"long_name": "PDE cell centre in sigma", "units": "1"},
            ),
        },
    )
    w_arr = np.array(widths, dtype=float)
    ds.attrs.update(
        provenance(
            kind="particles_vs_pde",
            b=b,
            depth="inf" if depth == math.inf else str(depth),
            p=p,
            n_samples=n_samples,
            dt=dt,
            seed=str(seed),
            spread=spread,
            cells=cells,
            coarsen=coarsen,
            sigma_star_limit=s_star,
            replicas=replicas,
            w1_rate=fit_rate(w_arr, w1_arr[:, -1]),
            l1_rate=fit_rate(w_arr, l1_arr[:, -1]),
            **_order_attrs("w1", w_arr, excess[:, -1], member_arr[:, -1, 1]),
        )
    )
    return ds


def _order_attrs(name: str, d: np.ndarray, err: np.ndarray, se: np.ndarray) -> dict:
    """``<name>_order``, ``_low``, ``_high`` from ``fit_order`` (NaN if fewer than 3 widths)."""
    if d.size < 3 or not np.all(se > 0):
        q = lo = hi = math.nan
    else:
        q, lo, hi = fit_order(d, err, se)
    return {f"{name}_order": q, f"{name}_order_low": lo, f"{name}_order_high": hi}


def _sample_cells(edges: np.ndarray, masses: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` exact samples of the piecewise-constant density with cell ``masses``."""
    prob = masses / masses.sum()
    cell = rng.choice(prob.size, size=n, p=prob)
    return edges[cell] + rng.random(n) * (edges[cell + 1] - edges[cell])


def _coarse_l1(edges: np.ndarray, masses: np.ndarray, samples: np.ndarray, coarsen: int) -> float:
    """``int |f - f_hist|`` on bins made of ``coarsen`` consecutive cells (plus the mass of the
    samples outside the grid)."""
    bins = (
        edges[::coarsen]
        if (edges.size - 1) % coarsen == 0
        else np.append(edges[::coarsen], edges[-1])
    )
    cum = np.concatenate(([0.0], np.cumsum(masses)))
    cum /= cum[-1]
    idx = np.searchsorted(edges, bins)
    pde_mass = np.diff(cum[idx])
    counts, _ = np.histogram(samples, bins=bins)
    outside = 1.0 - counts.sum() / samples.size
    return float(np.abs(pde_mass - counts / samples.size).sum() + outside)


def _meanfield_force(model: Model, eq: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``dV~/drho`` on the equilibrium grid: the drift of one particle in the mean field of
    ``f`` (``meanfield.equilibrium``), with ``V~ = e(e^rho) - W int log k_N(rho, rho') f(rho')
    drho'`` (``W = (d-1)/(2 beta)``): the particles' ``dF/drho`` with the sum over the partners
    replaced by ``d - 1`` times the average over ``f``.  Exact on the grid (the derivative
    ``psi_N'`` convolved with the cell masses, ``d_1 log k_N = (1 - 1/N) + psi_N'``); between
    grid points it is interpolated linearly (60 points per standard deviation: a relative error
    ~1e-5 of the force near the bump).  Returns the grid ``rho`` and the force."""
    x = np.asarray(eq.rho.values, dtype=np.float64)
    masses = np.asarray((eq.density * eq.cell_width).values, dtype=np.float64)
    masses = masses / masses.sum()
    n, h = x.size, float(eq.attrs["h"])
    weight = (model.width - 1) / (2.0 * model.beta)
    g_e, _ = model.energy.log_derivatives(x)
    table = psi(h * np.arange(-(n - 1), n), model.depth, 1)
    pair = one_minus(model.depth) + toeplitz_apply(table, masses, n)
    return x, g_e - weight * pair


def _coupled_moments(
    model: Model,
    eq: xr.Dataset,
    members: int,
    dt: float,
    t_burn: float,
    t_end: float,
    seed: int,
    thin: int = 4,
) -> np.ndarray:
    """Per-member time averages of the particle means of ``sigma`` and ``sigma^2`` (every
    ``thin``-th step in ``[t_burn, t_end]``: the states decorrelate over ~100 steps) for the
    interacting particles (rows 0, 1) and for as many independent particles in the mean field
    of the equilibrium ``eq`` (rows 2, 3), both started from the same i.i.d. draws of ``eq``
    and driven by the same normals: shape ``(4, members)``.

    Both are the engine's Euler-Maruyama step (``ChamberEulerMaruyama``): in ``u = sigma^{1/N}``,
    ``u <- |u - h g / u + sqrt(2 h / (N beta)) xi|`` with ``g = dF/drho`` (``advance_u``), in
    ``rho`` at ``N = inf``; only ``g`` differs (the pair sum ``Model.gradient_rho_u`` against
    ``_meanfield_force``).  The mean-field particles' stationary law is the PDE equilibrium
    (to ``O(dt)``): with the same noise their moments follow the particles' closely, so the
    ratio of the two has a far smaller sampling error than either (synchronous coupling), and
    their common ``O(dt)`` bias cancels in it to ``O(dt / d)``."""
    from dlnsim.particles.pairsum import default_threads
    from dlnsim.particles.steppers import advance_u

    d, depth = model.width, model.depth
    x, force = _meanfield_force(model, eq)
    rng = np.random.default_rng([seed, d, int(round(1e9 * dt))])
    masses = np.asarray((eq.density * eq.cell_width).values, dtype=np.float64)
    cdf = np.concatenate(([0.0], np.cumsum(masses)))
    edges = np.append(x - 0.5 * float(eq.attrs["h"]), x[-1] + 0.5 * float(eq.attrs["h"]))
    rho0 = -np.sort(-np.interp(rng.random((members, d)) * cdf[-1], cdf, edges), axis=1)
    n_steps, n_burn = int(round(t_end / dt)), int(round(t_burn / dt))
    amp = math.sqrt(model.noise_variance(1.0 / model.beta) * dt)
    acc, n_avg = np.zeros((4, members)), 0
    rho = [rho0.copy(), rho0.copy()]
    if depth != math.inf:
        u = [np.exp(rho0 / depth), np.exp(rho0 / depth)]
        new_u = [np.empty_like(rho0), np.empty_like(rho0)]
        new_rho = [np.empty_like(rho0), np.empty_like(rho0)]
        hits = np.zeros((members, d), dtype=np.int64)
        bad = np.zeros(members, dtype=np.bool_)
        grad, work = np.empty_like(rho0), np.empty_like(rho0)
        threads = default_threads()
    for step in range(n_steps):
        xi = rng.standard_normal((members, d))
        if depth == math.inf:
            rho[0] = rho[0] - dt * model.gradient_rho(rho[0]) + amp * xi
            rho[1] = rho[1] - dt * np.interp(rho[1], x, force) + amp * xi
        else:
            grads = (
                model.gradient_rho_u(rho[0], u[0], threads, grad, work),
                np.interp(rho[1], x, force),
            )
            for k in (0, 1):
                if advance_u(
                    u[k], grads[k], dt, amp, xi, True, float(depth), hits, new_u[k],
                    new_rho[k], bad,
                ):  # fmt: skip
                    raise RuntimeError(
                        f"moment_comparison: a particle left the float range at d = {d} "
                        f"(step {step}); reduce dt={dt}"
                    )
                u[k], new_u[k] = new_u[k], u[k]
                rho[k], new_rho[k] = new_rho[k], rho[k]
        if step >= n_burn and (step - n_burn) % thin == 0:
            s = np.exp(np.concatenate(rho, axis=1))
            acc[0::2] += s.reshape(members, 2, d).mean(axis=2).T
            s *= s
            acc[1::2] += s.reshape(members, 2, d).mean(axis=2).T
            n_avg += 1
    return acc / n_avg


def _ratio_errors(acc: np.ndarray) -> np.ndarray:
    """From ``_coupled_moments``' member averages: the particles' mean and variance, the
    mean-field particles' mean and variance, and the ratios ``particles / mean-field - 1``."""
    m1, m2, f1, f2 = acc.mean(axis=1)
    var, var_f = m2 - m1 * m1, f2 - f1 * f1
    return np.array([m1, var, f1, var_f, m1 / f1 - 1.0, var / var_f - 1.0])


def _jackknife(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_ratio_errors`` and their jackknife standard errors over the members (columns)."""
    full = _ratio_errors(acc)
    k = acc.shape[1]
    loo = np.array([_ratio_errors(np.delete(acc, i, axis=1)) for i in range(k)])
    se = np.sqrt((k - 1) / k * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
    return full, se


#: Orders searched by ``fit_order``: an interval reaching an end of this range is reported as
#: unbounded on that side (the data do not bound the order there).
ORDER_RANGE = (-1.0, 5.0)
_CHI2_95 = 3.841458820694124  # 95% quantile of chi^2 with one degree of freedom


def _profile_chi2(x: np.ndarray, err: np.ndarray, weight: np.ndarray, q: np.ndarray):
    """``min_A sum w (err - A e^{-q x})^2`` for each ``q`` (the amplitude is linear: closed form)
    and the minimizing amplitudes."""
    g = np.exp(-np.outer(q, x))  # (q, width)
    gwg = (g * g) @ weight
    gwe = g @ (weight * err)
    amp = gwe / gwg
    return float(weight @ (err * err)) - amp * gwe, amp


def fit_order(
    d: np.ndarray, err: np.ndarray, se: np.ndarray, q_range: tuple[float, float] = ORDER_RANGE
) -> tuple[float, float, float]:
    """Fit ``err_d = A d^{-q}`` to signed errors with standard errors ``se`` by weighted least
    squares (weights ``1/se^2``): ``(q, q_low, q_high)``, the fitted order and its 95% profile
    likelihood interval.

    For each ``q`` the amplitude ``A`` is the closed-form weighted least-squares one, giving
    the profile ``chi^2(q)``; ``q`` minimizes it and the interval is the hull of the ``q`` in
    ``q_range`` with ``chi^2(q) <= chi^2(q) + 3.84`` (Wilks; Gaussian errors with known SEs).
    Unlike the normal approximation of the fit's covariance, this interval keeps its coverage
    when the errors are within a few SEs of zero: it then widens to the ends of ``q_range``,
    reported as ``-inf``/``+inf`` (the data do not bound the order on that side).

    Parameters
    ----------
    d : numpy.ndarray
        Widths, > 0, at least three, not all equal.
    err : numpy.ndarray
        Signed errors, finite, same shape.
    se : numpy.ndarray
        Their standard errors, finite and > 0, same shape.
    q_range : tuple of float, default ORDER_RANGE
        The orders searched, ``(low, high)``.

    Returns
    -------
    tuple of (float, float, float)
        ``(q, q_low, q_high)``; ``q_low = -inf`` / ``q_high = inf`` when unbounded.

    Raises
    ------
    ValueError
        ``bad widths=...`` (fewer than three, non-positive or all equal), ``bad err=...``,
        ``bad se=...``, ``bad q_range=...``.
    """
    d, err, se = (np.asarray(v, dtype=np.float64).ravel() for v in (d, err, se))
    if d.size < 3 or not (np.all(np.isfinite(d)) and np.all(d > 0)) or np.ptp(d) == 0:
        raise fail("widths", d.tolist(), "the fitted order needs at least three widths > 0")
    if err.shape != d.shape or not np.all(np.isfinite(err)):
        raise fail("err", err.tolist(), f"must be {d.size} finite errors")
    if se.shape != d.shape or not (np.all(np.isfinite(se)) and np.all(se > 0)):
        raise fail("se", se.tolist(), f"must be {d.size} finite standard errors > 0")
    lo_q, hi_q = (float(v) for v in q_range)
    if not (math.isfinite(lo_q) and math.isfinite(hi_q) and lo_q < hi_q):
        raise fail("q_range", q_range, "must be two finite increasing orders")
    x = np.log(d / math.exp(np.log(d).mean()))  # centred: A is the error at the mean log width
    weight = 1.0 / (se * se)
    grid = np.linspace(lo_q, hi_q, int(round(400 * (hi_q - lo_q))) + 1)
    chi2, _ = _profile_chi2(x, err, weight, grid)
    k = int(np.argmin(chi2))
    # refine the minimum by golden-section search on the bracketing grid cells
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(40):
        c1, c2 = b - g * (b - a), a + g * (b - a)
        f1, f2 = _profile_chi2(x, err, weight, np.array([c1, c2]))[0]
        a, b = (a, c2) if f1 <= f2 else (c1, b)
    q = 0.5 * (a + b)
    best = min(float(_profile_chi2(x, err, weight, np.array([q]))[0][0]), float(chi2[k]))
    inside = np.flatnonzero(chi2 <= best + _CHI2_95)

    def edge(i_in: int, i_out: int) -> float:  # bisection of chi2 = best + 3.84 between grid pts
        q_in, q_out = grid[i_in], grid[i_out]
        for _ in range(50):
            mid = 0.5 * (q_in + q_out)
            if _profile_chi2(x, err, weight, np.array([mid]))[0][0] <= best + _CHI2_95:
                q_in = mid
            else:
                q_out = mid
        return 0.5 * (q_in + q_out)

    low = -math.inf if inside[0] == 0 else edge(inside[0], inside[0] - 1)
    high = math.inf if inside[-1] == grid.size - 1 else edge(inside[-1], inside[-1] + 1)
    return float(q), float(low), float(high)


def moment_comparison(
    widths: Sequence[int] = (8, 16, 32, 64, 128, 256, 512),
    b: float = 1.0,
    depth: int | float = 4,
    p: float = 2.0,
    members: int = 64,
    dt: float = 2e-3,
    t_burn: float = 2.0,
    t_end: float = 6.0,
    seed: int = 0,
) -> xr.Dataset:
    """Stationary mean and variance of ``sigma``: Langevin particles against the PDE equilibrium.

    For each width ``d`` at ``beta = b d``: ``members * (max(widths) // d)`` independent
    particle systems (the same number of particles at every width: the small widths, where the
    mean-field error is largest, are cheap), each time-averaged over every step in ``[t_burn,
    t_end]``, started from i.i.d. draws of the PDE equilibrium (``meanfield.equilibrium``).
    Next to each system runs a control: ``d`` independent particles in the equilibrium's own
    mean field (``V~ = e - W int log k_N f``, whose stationary law is the PDE equilibrium), from
    the same start, with the same Euler-Maruyama step and the same normals.  The relative
    errors are the ratios ``particles / control - 1`` of the means and of the variances, with
    jackknife standard errors over members.  The coupling makes them far more precise than the
    particles alone (the control follows the particles closely: 4x and 13x smaller standard
    errors of the variance at ``d = 8`` and ``32``), and the Euler-Maruyama ``O(dt)`` bias,
    common to both, cancels in the ratio to ``O(dt / d)``.  The particles' moments are
    reported as the PDE's times the ratio; the uncoupled moments of both (biased by ``O(dt)``)
    are kept.

    The errors are fitted as ``A d^{-q}`` with their 95% profile likelihood interval
    (``fit_order``: weighted by the standard errors; an infinite end means that the data do
    not bound the order on that side, e.g. errors within noise).  Expected (theory.md section
    11, "Finite d"): ``q = 1`` for the variance, ``q = 2`` for the mean.

    Parameters
    ----------
    widths : sequence of int, default (8, 16, 32, 64, 128, 256, 512)
        At least three increasing widths ``d >= 2``.
    b : float, default 1.0
        ``beta / d``, > 0.
    depth : int or float, default 4
        ``N >= 2`` or ``math.inf``.
    p : float, default 2.0
        Exponent of the energy.
    members : int, default 64
        Independent particle systems at the largest width (``members * (max(widths) // d)`` at
        width ``d``), >= 4.
    dt : float, default 2e-3
        Langevin time step (in ``t``; in ``tau = N t`` at ``N = inf``), > 0.
    t_burn : float, default 2.0
        Burn-in time, > 0.
    t_end : float, default 6.0
        End time, > ``t_burn``.
    seed : int, default 0
        Seed of the starts and of the normals (numpy ``default_rng([seed, d, dt])``).

    Returns
    -------
    xarray.Dataset
        Dim ``width``: ``mean_pde``, ``var_pde``, ``mean_particles``/``var_particles`` with
        ``*_se``, ``mean_error``/``var_error`` (relative, against the control) with
        ``*_error_se``, the uncoupled ``mean_particles_raw``/``var_particles_raw`` and
        ``mean_control``/``var_control`` (the mean-field particles: their ratio to the PDE is
        the ``O(dt)`` bias); attrs ``mean_order``, ``mean_order_low``, ``mean_order_high``
        (and ``var_*``), and the two-term fit of the variance error ``var_amplitude`` (with
        ``_se``) against ``var_amplitude_theory``, ``var_d2`` (``_amplitude_attrs``).

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument.
    RuntimeError
        A particle left the float range (``dt`` far too large).
    """
    from dlnsim.meanfield import equilibrium

    widths = [check_integer(w, "widths", 2) for w in widths]
    if len(widths) < 3 or any(a >= c for a, c in zip(widths, widths[1:], strict=False)):
        raise fail("widths", widths, "need at least three increasing widths >= 2")
    b = check_positive(b, "b")
    depth = check_depth(depth)
    if depth == 1:
        raise fail("depth", depth, "N = 1 has no entropy and no mean-field interaction")
    if depth == math.inf and widths[0] < 16:
        raise fail(
            "widths",
            widths,
            "at N = inf the equilibrium's tail toward sigma = 0 decays like "
            "|log sigma|^(-(d-1)/2): none exists for d <= 3, and below d = 16 it is too heavy "
            "for the equilibrium grid; use widths >= 16",
        )
    members = check_integer(members, "members", 4)
    dt = check_positive(dt, "dt")
    t_burn = check_positive(t_burn, "t_burn")
    t_end = check_positive(t_end, "t_end")
    if t_end <= t_burn + dt:
        raise fail("t_end", t_end, f"must exceed t_burn={t_burn} by more than dt={dt}")
    seed = check_integer(seed, "seed", 0)
    rows, counts = [], []
    for d in widths:
        model = Model(d, depth, b * d, Schatten(p))
        eq = equilibrium(model)
        count = members * max(1, widths[-1] // d)
        counts.append(count)
        est, se = _jackknife(_coupled_moments(model, eq, count, dt, t_burn, t_end, seed))
        rows.append((float(eq.sigma_mean), float(eq.sigma_var), *est, *se))
    r = np.array(rows)  # mean_pde, var_pde, (m, v, m_ctl, v_ctl, m_err, v_err) and their SEs
    d_arr = np.array(widths, dtype=float)
    mean_err, var_err, mean_err_se, var_err_se = r[:, 6], r[:, 7], r[:, 12], r[:, 13]
    unit = {"units": "1"}

    def var(values, long_name):
        return ("width", values, {"long_name": long_name, **unit})

    ds = xr.Dataset(
        {
            "mean_pde": var(r[:, 0], "E[sigma], PDE equilibrium"),
            "var_pde": var(r[:, 1], "Var[sigma], PDE equilibrium"),
            "mean_particles": var(r[:, 0] * (1 + mean_err), "E[sigma], particles (PDE x ratio)"),
            "mean_particles_se": var(r[:, 0] * mean_err_se, "its standard error"),
            "var_particles": var(r[:, 1] * (1 + var_err), "Var[sigma], particles (PDE x ratio)"),
            "var_particles_se": var(r[:, 1] * var_err_se, "its standard error"),
            "mean_particles_raw": var(r[:, 2], "E[sigma], particles at dt (uncoupled)"),
            "mean_particles_raw_se": var(r[:, 8], "its standard error"),
            "var_particles_raw": var(r[:, 3], "Var[sigma], particles at dt (uncoupled)"),
            "var_particles_raw_se": var(r[:, 9], "its standard error"),
            "mean_control": var(r[:, 4], "E[sigma], mean-field particles at dt (control)"),
            "mean_control_se": var(r[:, 10], "its standard error"),
            "var_control": var(r[:, 5], "Var[sigma], mean-field particles at dt (control)"),
            "var_control_se": var(r[:, 11], "its standard error"),
            "mean_error": var(mean_err, "relative error of E[sigma]: particles / control - 1"),
            "mean_error_se": var(mean_err_se, "its standard error (jackknife over members)"),
            "var_error": var(var_err, "relative error of Var[sigma]: particles / control - 1"),
            "var_error_se": var(var_err_se, "its standard error (jackknife over members)"),
            "members": ("width", np.array(counts), {"long_name": "independent systems"}),
        },
        coords={"width": ("width", np.array(widths), {"long_name": "width d (beta = b d)"})},
    )
    attrs = dict(
        kind="meanfield_moments",
        b=b,
        depth="inf" if depth == math.inf else str(depth),
        p=p,
        members=members,
        dt=dt,
        t_burn=t_burn,
        t_end=t_end,
        seed=str(seed),
        estimator="ratio to mean-field particles driven by the same noise (synchronous "
        "coupling), jackknife over members",
    )
    for name, err, se in (("mean", mean_err, mean_err_se), ("var", var_err, var_err_se)):
        attrs.update(_order_attrs(name, d_arr, err, se))
    attrs.update(_amplitude_attrs(d_arr, var_err, var_err_se, depth, p))
    ds.attrs.update(provenance(**attrs))
    return ds


def _amplitude_attrs(d: np.ndarray, err: np.ndarray, se: np.ndarray, depth, p: float) -> dict:
    """The variance error against theory.md 11's expansion: weighted least squares of
    ``err_d = A (d - 1) / d^2 + B / d^2`` (the Gaussian model's exact ``O(1/d)`` term plus the
    next order), ``var_amplitude`` ``A`` (with ``_se``) against ``var_amplitude_theory``
    ``r^2 / (1 - r)``, ``r = (N + 1) / (3 p N)`` (``1 / (3 p)`` at ``N = inf``; NaN for
    ``r >= 1``), ``var_d2`` ``B`` (with ``_se``) and ``var_fit_chi2`` (``d.size - 2`` degrees of
    freedom).  NaN when the widths are too few or the SEs not all positive."""
    r = 1.0 / (3.0 * p) if depth == math.inf else (depth + 1.0) / (3.0 * p * depth)
    out = {"var_amplitude_theory": r * r / (1.0 - r) if r < 1 else math.nan}
    names = ("var_amplitude", "var_amplitude_se", "var_d2", "var_d2_se", "var_fit_chi2")
    if d.size < 3 or not np.all(se > 0):
        return {**out, **dict.fromkeys(names, math.nan)}
    basis = np.stack([(d - 1.0) / (d * d), 1.0 / (d * d)], axis=1)
    weight = 1.0 / (se * se)
    cov = np.linalg.inv(basis.T @ (basis * weight[:, None]))
    coef = cov @ (basis.T @ (weight * err))
    chi2 = float(((err - basis @ coef) ** 2 * weight).sum())
    values = (coef[0], math.sqrt(cov[0, 0]), coef[1], math.sqrt(cov[1, 1]), chi2)
    return {**out, **{k: float(v) for k, v in zip(names, values, strict=True)}}
