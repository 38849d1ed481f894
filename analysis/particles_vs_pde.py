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
from dlnsim.particles import Model, Schatten, langevin_ensemble
from dlnsim.particles.datasets import provenance
from dlnsim.particles.validation import (
    check_depth,
    check_integer,
    check_positive,
    check_times,
    fail,
)

from .meanfield_compare import compare_densities, fit_rate, wasserstein_to_density

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
    same distances for as many exact samples of the PDE density, i.e. what sampling noise alone
    gives.

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
        if n_samples % w:
            raise fail("n_samples", n_samples, f"must be a multiple of every width ({w})")
    spread = check_positive(spread, "spread")
    frac = 1.0 if depth == math.inf else (depth - 1) / depth
    s_star = (frac / (2 * b)) ** (1 / p)
    centre = math.log(1.5 * s_star)

    def initial(sigma: np.ndarray) -> np.ndarray:
        z = (np.log(sigma) - centre) / spread
        return np.exp(-0.5 * z * z) / (sigma * spread * math.sqrt(2 * math.pi))

    rng = np.random.default_rng(seed)
    densities, centres, widths_cell, samples, w1, l1 = [], [], [], [], [], []
    l1c, floors = [], []
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
        l1_coarse, w1_floor, l1_floor = [], [], []
        for k in range(times.size):
            edges = np.append(pde.sigma_lower.values[k], pde.sigma_upper.values[k, -1])
            masses = pde.density.values[k] * pde.cell_width.values[k]
            exact = _sample_cells(edges, masses, pooled.shape[1], rng)
            l1_coarse.append(_coarse_l1(edges, masses, pooled[k], coarsen))
            l1_floor.append(_coarse_l1(edges, masses, exact, coarsen))
            w1_floor.append(wasserstein_to_density(edges, masses, exact))
        floors.append((w1_floor, l1_floor))
        l1c.append(l1_coarse)
        densities.append(pde.density.values)
        centres.append(pde.sigma.values)
        widths_cell.append(pde.cell_width.values)
        samples.append(pooled)
        w1.append(dist.w1.values)
        l1.append(dist.l1.values)
    w1_arr, l1_arr = np.array(w1), np.array(l1c)
    floors_arr = np.array(floors)  # (width, 2, time)
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
            w1_rate=fit_rate(w_arr, w1_arr[:, -1]),
            l1_rate=fit_rate(w_arr, l1_arr[:, -1]),
        )
    )
    return ds


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


def _member_moments(
    model: Model,
    members: int,
    dt: float,
    t_burn: float,
    t_end: float,
    n_avg: int,
    seed: int,
    scheduler,
    progress,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-member time averages (over ``n_avg`` saves in ``[t_burn, t_end]``) of the particle
    means of ``sigma`` and ``sigma^2``; the members are independent (own seeds, own starts)."""
    run_seed = int(np.random.default_rng([seed, model.width, int(round(1e9 * dt))]).integers(2**62))
    rng = np.random.default_rng(run_seed)
    s_star = model.equilibrium()
    sigma0 = s_star * np.exp(0.05 * rng.standard_normal((members, model.width)))
    times = np.linspace(t_burn, t_end, n_avg)
    ens = langevin_ensemble(
        model,
        sigma0,
        times,
        members,
        dt,
        seed=run_seed,
        scheduler=scheduler,
        progress=progress,
    )
    sig = ens.sigma.values  # (member, time, particle)
    return sig.mean(axis=(1, 2)), (sig * sig).mean(axis=(1, 2))


def _mean_var_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and variance of the one-particle law from per-member ``E sigma`` (``a``) and
    ``E sigma^2`` (``b``), with standard errors over members (delta method for the variance)."""
    k = a.size
    mean, second = float(a.mean()), float(b.mean())
    var = second - mean * mean
    se_mean = float(a.std(ddof=1)) / math.sqrt(k)
    se_var = float((b - 2.0 * mean * a).std(ddof=1)) / math.sqrt(k)
    return mean, se_mean, var, se_var


def fit_order(d: np.ndarray, err: np.ndarray, se: np.ndarray) -> tuple[float, float, float]:
    """Fit ``err_d = A d^{-q}`` by weighted least squares (weights ``1/se^2``, signed errors):
    ``(q, q_low, q_high)`` with the 95% confidence interval of ``q`` (normal approximation of
    the fit's covariance, absolute ``se``).

    Parameters
    ----------
    d : numpy.ndarray
        Widths, at least three.
    err : numpy.ndarray
        Signed errors, same shape.
    se : numpy.ndarray
        Their standard errors, > 0, same shape.

    Returns
    -------
    tuple of (float, float, float)
        ``(q, q_low, q_high)``.

    Raises
    ------
    ValueError
        ``bad widths=...`` for fewer than three widths.
    """
    from scipy.optimize import curve_fit

    d, err, se = (np.asarray(v, dtype=np.float64) for v in (d, err, se))
    if d.size < 3:
        raise fail("widths", d.tolist(), "the fitted order needs at least three widths")
    x = np.log(d / d[0])
    start = np.polyfit(x, np.log(np.abs(err) + 1e-300), 1)
    a0 = math.copysign(math.exp(start[1]), err[np.argmin(se / np.abs(err))])
    popt, pcov = curve_fit(
        lambda xx, amp, q: amp * np.exp(-q * xx),
        x,
        err,
        p0=[a0, max(-start[0], 0.1)],
        sigma=se,
        absolute_sigma=True,
        maxfev=20000,
    )
    q, dq = float(popt[1]), 1.96 * math.sqrt(max(float(pcov[1, 1]), 0.0))
    return q, q - dq, q + dq


def moment_comparison(
    widths: Sequence[int] = (8, 16, 32, 64, 128, 256, 512),
    b: float = 1.0,
    depth: int | float = 4,
    p: float = 2.0,
    members: int = 64,
    dt: float = 2e-3,
    t_burn: float = 2.0,
    t_end: float = 6.0,
    n_avg: int = 41,
    seed: int = 0,
    scheduler: str | None = "serial",
    progress: bool | None = False,
) -> xr.Dataset:
    """Stationary mean and variance of ``sigma``: Langevin particles against the PDE equilibrium.

    For each width ``d`` at ``beta = b d``: ``members`` independent particle systems, each
    time-averaged over ``n_avg`` saves in ``[t_burn, t_end]`` (after a burn-in from ``sigma_*``);
    the one-particle mean and variance with standard errors over members, at ``dt`` and
    ``dt/2`` (independent runs) and Richardson-extrapolated to ``dt -> 0`` (Euler-Maruyama's
    stationary bias is ``O(dt)``).  The PDE side is ``meanfield.equilibrium``.  The relative
    errors ``(particles - PDE) / PDE`` are fitted as ``A d^{-q}`` with a 95% interval.

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
        Independent particle systems per width, >= 4.
    dt : float, default 2e-3
        Langevin time step, > 0 (also run at ``dt/2``).
    t_burn : float, default 2.0
        Burn-in time, > 0.
    t_end : float, default 6.0
        End time, > ``t_burn``.
    n_avg : int, default 41
        Saves averaged in ``[t_burn, t_end]``, >= 2.
    seed : int, default 0
        Seed of the particle runs.
    scheduler : str or None, default "serial"
        As in ``langevin_ensemble``.
    progress : bool or None, default False
        Progress bar.

    Returns
    -------
    xarray.Dataset
        Dim ``width``: ``mean_pde``, ``var_pde``, ``mean_particles``/``var_particles`` with
        ``*_se``, ``mean_error``/``var_error`` (relative) with ``*_error_se``; attrs
        ``mean_order``, ``mean_order_low``, ``mean_order_high`` (and ``var_*``).
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
    if t_end <= t_burn:
        raise fail("t_end", t_end, f"must exceed t_burn={t_burn}")
    n_avg = check_integer(n_avg, "n_avg", 2)
    rows = []
    for d in widths:
        model = Model(d, depth, b * d, Schatten(p))
        eq = equilibrium(model)
        mean_pde, var_pde = float(eq.sigma_mean), float(eq.sigma_var)
        coarse = _mean_var_se(
            *_member_moments(model, members, dt, t_burn, t_end, n_avg, seed, scheduler, progress)
        )
        fine = _mean_var_se(
            *_member_moments(
                model, members, dt / 2, t_burn, t_end, n_avg, seed, scheduler, progress
            )
        )
        mean = 2 * fine[0] - coarse[0]
        se_mean = math.hypot(2 * fine[1], coarse[1])
        var = 2 * fine[2] - coarse[2]
        se_var = math.hypot(2 * fine[3], coarse[3])
        rows.append((mean_pde, var_pde, mean, se_mean, var, se_var, coarse[0], fine[0]))
    r = np.array(rows)
    d_arr = np.array(widths, dtype=float)
    mean_err, mean_err_se = r[:, 2] / r[:, 0] - 1, r[:, 3] / r[:, 0]
    var_err, var_err_se = r[:, 4] / r[:, 1] - 1, r[:, 5] / r[:, 1]
    unit = {"units": "1"}
    ds = xr.Dataset(
        {
            "mean_pde": ("width", r[:, 0], {"long_name": "E[sigma], PDE equilibrium", **unit}),
            "var_pde": ("width", r[:, 1], {"long_name": "Var[sigma], PDE equilibrium", **unit}),
            "mean_particles": ("width", r[:, 2], {"long_name": "E[sigma], particles", **unit}),
            "mean_particles_se": ("width", r[:, 3], {"long_name": "its standard error", **unit}),
            "var_particles": ("width", r[:, 4], {"long_name": "Var[sigma], particles", **unit}),
            "var_particles_se": ("width", r[:, 5], {"long_name": "its standard error", **unit}),
            "mean_particles_dt": (
                "width",
                r[:, 6],
                {"long_name": "E[sigma], particles at dt (no extrapolation)"},
            ),
            "mean_particles_half_dt": (
                "width",
                r[:, 7],
                {"long_name": "E[sigma], particles at dt/2"},
            ),
            "mean_error": ("width", mean_err, {"long_name": "relative error of E[sigma]"}),
            "mean_error_se": ("width", mean_err_se, {"long_name": "its standard error"}),
            "var_error": ("width", var_err, {"long_name": "relative error of Var[sigma]"}),
            "var_error_se": ("width", var_err_se, {"long_name": "its standard error"}),
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
        n_avg=n_avg,
        seed=str(seed),
    )
    for name, err, se in (("mean", mean_err, mean_err_se), ("var", var_err, var_err_se)):
        try:
            q, lo, hi = fit_order(d_arr, err, se)
        except (RuntimeError, ValueError):  # no power law fits (errors within noise)
            q = lo = hi = math.nan
        attrs.update({f"{name}_order": q, f"{name}_order_low": lo, f"{name}_order_high": hi})
    ds.attrs.update(provenance(**attrs))
    return ds
