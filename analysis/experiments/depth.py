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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from .base import Experiment
from .params import (
    check_equilibrium,
    check_memory,
    check_steps,
    cli_list,
    depth_list,
    documented,
    format_param,
    integer,
    model_from,
    name_param,
    param,
    positive,
    real_array,
)

__all__ = [
    "DEFAULT_DEPTHS",
    "EXPERIMENT",
    "DepthParams",
    "DepthResult",
    "convergence_orders",
    "depth_sweep",
    "figures",
    "fit_order",
    "run",
    "summary",
]

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


# ---------------------------------------------------------------- the experiment


@documented
@dataclass(frozen=True)
class DepthParams:
    """The parameters of the ``depth`` experiment (``[[experiment]] kind = "depth"``)."""

    name: str = name_param("depth")
    # d = 6: the N = inf stationary law needs d >= 4 to be normalizable (see _stationary)
    width: int = param(6, integer(1), int, "width d")
    beta: float = param(2.0, positive, float, "inverse temperature beta")
    p: float = param(2.0, positive, float, "Schatten exponent p")
    initial: np.ndarray | None = param(
        [2.0, 1.37, 0.94, 0.64, 0.44, 0.3], real_array, cli_list, "start (length d)"
    )
    depths: list[int | float] = param(
        [*DEFAULT_DEPTHS[:-1], "inf"], depth_list, cli_list, "depths with inf"
    )
    tau_end: float = param(3.0, positive, float, "final rescaled time of the flows", unit="tau")
    n_times: int = param(31, integer(2), int, "save times of the flows")
    members: int = param(32, integer(0), int, "ensemble size (0: no ensembles)")
    dt: float = param(0.01, positive, float, "Langevin time step (rescaled)", unit="tau")
    seed: int = param(0, integer(0), int, "seed")
    ensemble_tau_end: float = param(
        10.0, positive, float, "final rescaled time of ensembles", unit="tau"
    )
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: ``depths`` with inf, no repeats and two finite depths to fit;
        one start of width ``d``; an equilibrium at every depth; ``d >= 4`` for ensembles; the
        step count and the memory.  Raises ``ValueError`` naming the parameter."""
        depths = values["depths"]
        if math.inf not in depths:
            raise fail("depths", depths, "must include inf (the limit compared against)")
        if len(set(depths)) != len(depths):
            raise fail("depths", depths, "must not repeat")
        if sum(1 for n in depths if math.isfinite(n) and n >= MIN_FIT_DEPTH) < 2:
            raise fail(
                "depths",
                depths,
                f"need two finite depths >= {MIN_FIT_DEPTH} to fit the orders of convergence",
            )
        initial = values["initial"]
        if initial is None or initial.ndim != 1:
            raise fail(
                "initial", values["initial"], f"must be one start of width={values['width']}"
            )
        values["initial"] = check_singular_values(initial, values["width"], "initial")
        for n in depths:
            check_equilibrium(model_from(values, depth=n), values)
        if values["members"]:
            if values["width"] < 4:
                raise fail(
                    "width",
                    values["width"],
                    "the N = inf stationary law of the ensembles is normalizable only for d >= 4 "
                    "(set members = 0 for the flow alone)",
                )
            check_steps(values["ensemble_tau_end"], values["dt"], "ensemble_tau_end", "dt")
            check_memory(
                {"depths": len(depths), "members": values["members"], "width": values["width"]},
                "the ensembles (41 save times)",
                copies=41 * 2,
            )
        check_memory(
            {"depths": len(depths), "n_times": values["n_times"], "width": values["width"]},
            "the flows",
        )


@dataclass(frozen=True)
class DepthResult:
    """What ``run`` computed (``datasets``: ``<name>.nc``).

    Parameters
    ----------
    params : DepthParams
        The parameters.
    sweep : xarray.Dataset
        The ``depth_sweep`` dataset.
    """

    params: DepthParams
    sweep: xr.Dataset

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        return {f"{self.params.name}.nc": self.sweep}


def run(params: DepthParams, out: Path) -> DepthResult:
    """Depth sweep toward N = inf in rescaled time: flow, equilibrium, rates (and ensembles).

    Parameters
    ----------
    params : DepthParams
        The checked parameters.
    out : pathlib.Path
        The output folder (unused: the sweep is returned, written as ``<name>.nc``).

    Returns
    -------
    DepthResult
        The sweep.
    """
    depth_list = [math.inf if str(n) == "inf" else n for n in params.depths]
    taus = np.linspace(0.0, params.tau_end, params.n_times)
    ensemble = None
    if params.members:
        ensemble = {
            "members": params.members,
            "dt": params.dt,
            "seed": params.seed,
            "tau_end": params.ensemble_tau_end,
            "progress": False,
            "scheduler": "serial",  # many small runs: a cluster would cost more than it saves
        }
    ds = depth_sweep(
        params.width, params.beta, params.p, params.initial, taus, depth_list, ensemble=ensemble
    )
    return DepthResult(params, ds)


def summary(result: DepthResult) -> list[str]:
    """The fitted orders of convergence and, with ensembles, the stationary statistics per N.

    Parameters
    ----------
    result : DepthResult
        What ``run`` returned.

    Returns
    -------
    list of str
        The summary lines.
    """
    params, ds = result.params, result.sweep
    lines = [
        f"[{params.name}] depth sweep to N = inf (rescaled time), d = {params.width}, "
        f"beta = {params.beta}, p = {params.p}; expected order 1 in 1/N for all"
    ]
    for key, value in convergence_orders(ds).items():
        lines.append(f"  fitted {key.removeprefix('order_'):<26} order {value:7.3f}")
    if "stationary_spread" in ds:
        lines.append(
            f"  {'N':>6}{'mean sigma':>12}{'SE':>10}{'spread':>10}{'SE':>10}"
            f"{'|spread - spread_inf|':>23}{'SE (paired)':>13}"
        )
        keys = (
            "stationary_mean",
            "stationary_mean_se",
            "stationary_spread",
            "stationary_spread_se",
            "stationary_spread_error",
            "stationary_spread_error_se",
        )
        for k, n in enumerate(ds.depth.values):
            m, m_se, sp, sp_se, err, err_se = (float(ds[key].values[k]) for key in keys)
            lines.append(
                f"  {n:>6g}{m:>12.5f}{m_se:>10.1e}{sp:>10.5f}{sp_se:>10.1e}"
                f"{err:>23.3e}{err_se:>13.1e}"
            )
    return lines


def figures(result: DepthResult) -> dict[str, Any]:
    """``<name>_<label>`` for each figure of ``plots.depth_figures``.

    Parameters
    ----------
    result : DepthResult
        What ``run`` returned.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        File stem -> figure.
    """
    from ..plots import depth_figures

    name = result.params.name
    return {f"{name}_{label}": fig for label, fig in depth_figures(result.sweep).items()}


EXPERIMENT = Experiment("depth", DepthParams, run, summary, figures, dpi=120)
