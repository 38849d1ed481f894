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
    n_avg: int = 41,
    seed: int = 0,
    scheduler: str | None = "serial",
    progress: bool | None = False,
) -> xr.Dataset:
    """Stationary mean and variance of ``sigma``: Langevin particles against the PDE equilibrium.

    For each width ``d`` at ``beta = b d``: ``members * (max(widths) // d)`` independent
    particle systems (the same number of particles at every width: the small widths, where the
    mean-field error is largest, are cheap), each
    time-averaged over ``n_avg`` saves in ``[t_burn, t_end]`` (after a burn-in from ``sigma_*``);
    the one-particle mean and variance with standard errors over members, at ``dt`` and
    ``dt/2`` (independent runs) and Richardson-extrapolated to ``dt -> 0`` (Euler-Maruyama's
    stationary bias is ``O(dt)``).  The PDE side is ``meanfield.equilibrium``.  The relative
    errors ``(particles - PDE) / PDE`` are fitted as ``A d^{-q}`` with their 95% profile
    likelihood interval (``fit_order``: weighted by the standard errors; an infinite end means
    that the data do not bound the order on that side, e.g. errors within noise).  Expected
    (theory.md section 11, "Finite d"): ``q = 1`` for the variance, ``q = 2`` for the mean.

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
    counts = []
    for d in widths:
        model = Model(d, depth, b * d, Schatten(p))
        eq = equilibrium(model)
        mean_pde, var_pde = float(eq.sigma_mean), float(eq.sigma_var)
        count = members * max(1, widths[-1] // d)
        counts.append(count)
        coarse = _mean_var_se(
            *_member_moments(model, count, dt, t_burn, t_end, n_avg, seed, scheduler, progress)
        )
        fine = _mean_var_se(
            *_member_moments(model, count, dt / 2, t_burn, t_end, n_avg, seed, scheduler, progress)
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
            "members": ("width", np.array(counts), {"long_name": "independent systems per run"}),
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
        attrs.update(_order_attrs(name, d_arr, err, se))
    ds.attrs.update(provenance(**attrs))
    return ds
