r"""Infinite-depth limit experiments: how the depth-``N`` model converges to ``N = inf``.

Everything is compared in the rescaled time ``tau = N t`` (theory.md section 4), where

    drho/dtau = -exp(-2 rho / N) dF_N/drho     ->     drho/dtau = -dF_inf/drho.

Orders of convergence in ``1/N`` (derived from theory.md sections 2, 4, 5, 7):

- the time factor ``exp(-2 rho/N) = 1 - 2 rho/N + O(N^-2)``;
- the entropy: the linear coefficient ``(1 - 1/N)(d-1)/2`` differs from ``(d-1)/2`` by ``O(1/N)``,
  and ``psi_N'(x) - psi_inf'(x) = -L'(x/N)/N = -x/(3 N^2) + O(N^-4)``;
- hence the vector fields differ by ``O(1/N)`` uniformly on compact sets, and by Gronwall the
  trajectories on a fixed ``tau`` window differ by ``O(1/N)``: **order 1**;
- ``sigma_*(N)^p = c_inf (1 - 1/N)`` for Schatten-p: ``sigma_*(N) - sigma_*(inf) ~ -sigma_*/(p N)``,
  **order 1** (for any energy with ``e'' + e'/s != 0`` by the implicit function theorem);
- the rates per unit ``tau``, ``lambda(N)/N = sigma_*^{2-2/N} [...]``: ``sigma_*^{-2/N} =
  1 - (2/N) log sigma_* + ...`` and ``(1 - 1/N)``, ``(1 + 1/N)`` factors: **order 1** for both;
- the stationary law (density ``exp(-beta E + S_N) du`` with ``du = (u/N) drho`` carrying
  ``e^{rho/N}``): its moments differ by ``O(1/N)``: **order 1** (measured with error bars).

Note: ``exp(-beta E + S_inf) drho`` is normalizable only for ``d >= 4`` (one particle alone at
``rho -> -inf`` has density ``~ |rho|^{-(d-1)/2}``), so the stationary part needs ``d >= 4``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from dlnsim.particles import Model, Schatten, gradient_flow
from dlnsim.particles.datasets import provenance
from dlnsim.particles.validation import (
    check_depth,
    check_singular_values,
    check_times,
    check_width,
    fail,
)

__all__ = ["DEFAULT_DEPTHS", "depth_sweep", "fit_order", "convergence_orders"]

DEFAULT_DEPTHS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, math.inf)

#: The orders of convergence are fitted over the finite depths >= this (``fit_order``).
MIN_FIT_DEPTH = 16

def fit_order(depths: np.ndarray, errors: np.ndarray, min_depth: float = MIN_FIT_DEPTH) -> float:
    """Least-squares slope of ``log error`` against ``log(1/N)`` over finite ``N >= min_depth``.

    An error ``~ C N^{-q}`` gives the order ``q``; non-finite or zero errors are skipped.

    Parameters
    ----------
    depths : array_like
        Depths ``N`` (``inf`` entries are skipped).
    errors : array_like
        Errors at those depths, the same length.
    min_depth : float, default MIN_FIT_DEPTH
        Smallest depth in the fit (the asymptotic regime).

    Returns
    -------
    float
        The fitted order ``q``.

    Raises
    ------
    ValueError
        ``bad depths=...`` with fewer than two usable depths.
    """
    depths = np.asarray(depths, dtype=float)
    errors = np.asarray(errors, dtype=float)
    use = np.isfinite(depths) & (depths >= min_depth) & np.isfinite(errors) & (errors > 0)
    if use.sum() < 2:
        raise fail(
            "depths",
            depths.tolist(),
            f"need two finite depths >= {min_depth} with a finite error > 0 to fit (errors "
            f"{errors.tolist()})",
        )
    return float(np.polyfit(np.log(1.0 / depths[use]), np.log(errors[use]), 1)[0])


def depth_sweep(
    width: int,
    beta: float,
    p: float,
    sigma0: Sequence[float],
    taus: Sequence[float],
    depths: Sequence[float] = DEFAULT_DEPTHS,
    *,
    ensemble: dict | None = None,
) -> xr.Dataset:
    """Flow (and optionally Langevin ensembles) for each depth, in rescaled time ``tau``.

    Returns a Dataset with dimension ``depth`` (a float coordinate; ``inf`` is an IEEE float and
    round-trips through NetCDF and Zarr): ``sigma (depth, time, particle)`` from the flow,
    ``sigma_star``, ``rate_uniform``, ``rate_relative`` (per unit ``tau``; NaN where
    ``sigma_* = 0``, i.e. ``N = 1``), ``trajectory_error`` (sup over the window and particles of
    ``|sigma_N - sigma_inf|``), ``sigma_star_error``, ``rate_*_error``; with ``ensemble`` (keyword
    arguments for ``particles.langevin_ensemble``: members, dt, seed, burn_in fraction, ...) also
    ``stationary_mean``/``stationary_spread`` and their standard errors.  Fitted orders in attrs.

    Parameters
    ----------
    width : int
        Width ``d``.
    beta : float
        Inverse temperature ``beta > 0``.
    p : float
        Schatten exponent ``p > 0`` of the energy.
    sigma0 : sequence of float
        Initial singular values, length ``d``.
    taus : sequence of float
        Save times in rescaled time ``tau = N t``, increasing, ``>= 0``.
    depths : sequence of float, default DEFAULT_DEPTHS
        Distinct depths, including ``math.inf`` (the limit compared against).
    ensemble : dict, optional
        Keyword arguments of the Langevin ensembles (``members``, ``dt``, ``seed``,
        ``tau_end``, ``burn_in``, ...); without it, the flow only.

    Returns
    -------
    xarray.Dataset
        The variables above over ``depth``, ``kind = "depth_sweep"`` and ``order_*`` attributes.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument, or depths without ``inf`` or repeated.
    """
    d = check_width(width)
    depth_list = [check_depth(n, "depths") for n in depths]
    if math.inf not in depth_list:
        raise fail("depths", list(depths), "must include inf (the limit compared against)")
    if len(set(depth_list)) != len(depth_list):
        raise fail("depths", list(depths), "must not repeat")
    sigma0 = check_singular_values(sigma0, d, "sigma0")
    taus = check_times(taus, "taus")
    force = Model(d, math.inf, beta, Schatten(p)).entropic_force
    if d > 1 and not force >= np.finfo(np.float64).tiny:  # the depth dependence would vanish
        raise fail(
            "beta", beta, f"the entropic force (d-1)/(2 beta) = {force:.3g} underflows: too large"
        )
    n_depth = len(depth_list)
    sig = np.empty((n_depth, taus.size, d))
    star = np.empty(n_depth)
    rates = np.full((n_depth, 2), np.nan)
    for k, n in enumerate(depth_list):
        model = Model(d, n, beta, Schatten(p))
        sig[k] = gradient_flow(model, sigma0, taus, rescaled=True, progress=False).sigma.values
        star[k] = model.equilibrium()
        if star[k] > 0:
            rates[k] = model.relaxation_rates(rescaled=True)
    inf_k = depth_list.index(math.inf)
    depth_arr = np.array(depth_list, dtype=float)
    traj_err = np.max(np.abs(sig - sig[inf_k]), axis=(1, 2))
    star_err = np.abs(star - star[inf_k])
    rate_err = np.abs(rates - rates[inf_k])
    ds = xr.Dataset(
        {
            "sigma": (
                ("depth", "time", "particle"),
                sig,
                {"long_name": "singular values along the gradient flow", "units": "1"},
            ),
            "sigma_star": ("depth", star, {"long_name": "equilibrium sigma_*", "units": "1"}),
            "rate_uniform": (
                "depth",
                rates[:, 0],
                {"long_name": "uniform relaxation rate per unit tau", "units": "1"},
            ),
            "rate_relative": (
                "depth",
                rates[:, 1],
                {"long_name": "relative relaxation rate per unit tau", "units": "1"},
            ),
            "trajectory_error": (
                "depth",
                traj_err,
                {"long_name": "sup over the tau window of |sigma_N - sigma_inf|", "units": "1"},
            ),
            "sigma_star_error": (
                "depth",
                star_err,
                {"long_name": "|sigma_*(N) - sigma_*(inf)|", "units": "1"},
            ),
            "rate_uniform_error": (
                "depth",
                rate_err[:, 0],
                {"long_name": "|lambda_u(N) - lambda_u(inf)| per tau", "units": "1"},
            ),
            "rate_relative_error": (
                "depth",
                rate_err[:, 1],
                {"long_name": "|lambda_r(N) - lambda_r(inf)| per tau", "units": "1"},
            ),
        },
        coords={
            "depth": ("depth", depth_arr, {"long_name": "depth N (inf = the limit model)"}),
            "time": ("time", taus, {"long_name": "rescaled time tau = N t", "units": "1"}),
            "particle": ("particle", np.arange(1, d + 1), {"long_name": "singular value index"}),
        },
    )
    orders = {
        "order_trajectory": fit_order(depth_arr, traj_err),
        "order_sigma_star": fit_order(depth_arr, star_err),
        "order_rate_uniform": fit_order(depth_arr, rate_err[:, 0]),
        "order_rate_relative": fit_order(depth_arr, rate_err[:, 1]),
    }
    if ensemble is not None:
        per_member, trajectories = _stationary(d, beta, p, sigma0, depth_list, dict(ensemble))
        ds = ds.merge(trajectories, combine_attrs="override")
        orders.update(trajectories.attrs)  # seed, dt, burn-in of the ensembles
        root_m = math.sqrt(per_member.shape[-1])
        for j, name in enumerate(("mean", "spread")):
            values = per_member[j]  # (depth, member)
            # the same seed at every depth: member k shares its noise across depths (common
            # random numbers), so the error against N = inf is estimated from paired differences
            diff = values - values[inf_k]
            what = "mean of sigma" if name == "mean" else "mean of max sigma - min sigma"
            ds[f"stationary_{name}"] = (
                "depth",
                values.mean(axis=1),
                {"long_name": f"stationary {what}", "units": "1"},
            )
            ds[f"stationary_{name}_se"] = (
                "depth",
                values.std(axis=1, ddof=1) / root_m,
                {"long_name": "standard error", "units": "1"},
            )
            ds[f"stationary_{name}_error"] = (
                "depth",
                np.abs(diff.mean(axis=1)),
                {"long_name": f"|stationary {name}(N) - stationary {name}(inf)|", "units": "1"},
            )
            ds[f"stationary_{name}_error_se"] = (
                "depth",
                diff.std(axis=1, ddof=1) / root_m,
                {"long_name": "standard error of the paired difference", "units": "1"},
            )
            orders[f"order_stationary_{name}"] = fit_order(depth_arr, np.abs(diff.mean(axis=1)))
    ds.attrs.update(
        provenance(
            kind="depth_sweep",
            width=d,
            beta=float(beta),
            p=float(p),
            energy="schatten",
            depths=",".join(map(str, depth_list)),
            **orders,
        )
    )
    return ds


def _stationary(d, beta, p, sigma0, depth_list, options: dict) -> tuple[np.ndarray, xr.Dataset]:
    """Per-member stationary averages, shape ``(2, depth, member)``: the mean of all singular
    values and the mean spread (max - min), time-averaged over the saved times after
    ``burn_in`` (a fraction of ``tau_end``).  Members are independent, so standard errors are
    standard deviations over members / sqrt(members).  Also returns the ensemble trajectories
    ``ensemble_sigma (depth, member, ensemble_time, particle)``."""
    from dlnsim.particles import langevin_ensemble

    burn_in = float(options.pop("burn_in", 0.5))
    tau_end = float(options.pop("tau_end", 20.0))
    n_saves = int(options.pop("n_saves", 41))
    taus = np.linspace(0.0, tau_end, n_saves)
    keep = taus >= burn_in * tau_end
    out = []
    runs = []
    for n in depth_list:
        model = Model(d, n, beta, Schatten(p))
        ds = langevin_ensemble(model, sigma0, taus, rescaled=True, **options)
        runs.append(ds.sigma.values)
        sig = ds.sigma.values[:, keep]  # (member, time, particle)
        out.append(
            (np.nanmean(sig, axis=(1, 2)), np.nanmean(sig.max(axis=-1) - sig.min(axis=-1), axis=1))
        )
    trajectories = xr.Dataset(
        {
            "ensemble_sigma": (
                ("depth", "member", "ensemble_time", "particle"),
                np.array(runs),
                {"long_name": "Langevin ensemble singular values", "units": "1"},
            )
        },
        coords={
            "ensemble_time": (
                "ensemble_time",
                taus,
                {"long_name": "rescaled time tau = N t of the ensembles", "units": "1"},
            ),
            "member": ("member", np.arange(len(runs[0])), {"long_name": "ensemble member"}),
        },
        attrs={
            "ensemble_seed": str(ds.attrs["seed"]),
            "ensemble_dt": float(ds.attrs["dt"]),
            "burn_in_tau": float(taus[keep][0]),
        },
    )
    return np.array(out).transpose(1, 0, 2), trajectories


def convergence_orders(ds: xr.Dataset) -> dict[str, float]:
    """The fitted orders stored in a depth-sweep Dataset's attributes.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``depth_sweep`` dataset.

    Returns
    -------
    dict of str to float
        ``order_<quantity>`` -> fitted order in ``1/N`` (expected 1).
    """
    return {k: float(v) for k, v in ds.attrs.items() if k.startswith("order_")}
