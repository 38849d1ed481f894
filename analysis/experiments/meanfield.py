"""The ``meanfield`` experiment: the mean-field PDE against Langevin particles at
``beta = b d`` for growing widths ``d`` (theory.md section 11).

The computations are ``analysis.particles_vs_pde``: ``particles_vs_pde`` (exact W1 and L1
distances between pooled particle samples and the PDE density at common times, with their
sampling floors) and ``moment_comparison`` (stationary mean and variance of sigma against the
PDE equilibrium, with fitted orders in ``1/d``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from dlnsim.particles.validation import check_depth, fail

from .base import Experiment
from .params import (
    check_memory,
    check_steps,
    cli_list,
    cli_number,
    documented,
    format_param,
    integer,
    name_param,
    param,
    positive,
    time_list,
    width_list,
)

__all__ = [
    "EXPERIMENT",
    "MAX_MEANFIELD_DEPTH",
    "MeanfieldParams",
    "MeanfieldResult",
    "figures",
    "run",
    "summary",
]

#: Largest finite depth of the mean-field experiment (``depth = inf`` covers the rest).
MAX_MEANFIELD_DEPTH = 10_000


@documented
@dataclass(frozen=True)
class MeanfieldParams:
    """The parameters of the ``meanfield`` experiment (``[[experiment]] kind = "meanfield"``)."""

    name: str = name_param("meanfield")
    widths: list[int] = param([8, 32, 128], width_list, cli_list, "increasing widths d")
    b: float = param(1.0, positive, float, "beta = b d")
    depth: int | float = param(4, check_depth, cli_number, "depth N >= 2 or 'inf'")
    p: float = param(2.0, positive, float, "Schatten exponent p")
    times: list[float] = param([0.0, 0.2, 0.5, 1.0], time_list, cli_list, "comparison times")
    n_samples: int = param(512, integer(2), int, "pooled samples per width")
    dt: float = param(1e-3, positive, float, "Langevin time step", unit="t")
    seed: int = param(0, integer(0), int, "seed")
    cells: int = param(128, integer(8), int, "PDE cells")
    moment_widths: list[int] = param([8, 16, 32], width_list, cli_list, "widths of the moments")
    moment_members: int = param(
        16, integer(2), int, "members at the largest moment width (x max/d below)"
    )
    moment_dt: float = param(2e-3, positive, float, "Langevin step of the moments", unit="t")
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: increasing widths, ``2 <= N <= MAX_MEANFIELD_DEPTH`` or inf,
        ``n_samples`` a multiple of every width, a finite limit equilibrium, the step count and
        the memory.  Raises ``ValueError`` naming the parameter."""
        from dlnsim.particles import Model, Schatten

        widths_ = values["widths"]
        if len(widths_) < 2 or any(a >= b for a, b in zip(widths_, widths_[1:], strict=False)):
            raise fail("widths", widths_, "need at least two increasing widths >= 2")
        depth = values["depth"]
        if depth == 1:
            raise fail("depth", 1, "N = 1 has no entropy and no mean-field interaction")
        if depth != math.inf and depth > MAX_MEANFIELD_DEPTH:
            raise fail(
                "depth",
                depth,
                f"finite N above {MAX_MEANFIELD_DEPTH} makes the PDE in physical time t too "
                "stiff to integrate (its rates grow like N); use depth = inf, whose time is "
                "tau = N t",
            )
        for w in widths_:
            if values["n_samples"] % w or values["n_samples"] < 2 * w:
                raise fail(
                    "n_samples",
                    values["n_samples"],
                    f"must be a multiple of every width ({w}), >= 2 members",
                )
        for w in widths_:
            if not math.isfinite(values["b"] * w):
                raise fail("b", values["b"], f"beta = b d overflows at d = {w}")
            Model(w, depth, values["b"] * w, Schatten(values["p"]))
        frac = 1.0 if depth == math.inf else (depth - 1) / depth
        try:
            s_star = (frac / (2 * values["b"])) ** (1 / values["p"])
        except OverflowError:
            s_star = math.inf
        if not 0 < 1.5 * s_star < math.inf:
            raise fail(
                "p",
                values["p"],
                f"the limit equilibrium sigma_* = ({frac:g} / (2 b))^(1/p) = {s_star:g} is not "
                "a positive float64 (the initial law is centred on it)",
            )
        moment_widths = values["moment_widths"]
        if len(moment_widths) < 3:
            raise fail(
                "moment_widths", moment_widths, "need at least three widths (a fitted order)"
            )
        if depth == math.inf and min(widths_) <= 3:
            raise fail("widths", widths_, "N = inf needs widths >= 4 (no equilibrium)")
        if depth == math.inf and min(moment_widths) < 16:
            raise fail("moment_widths", moment_widths, "N = inf needs widths >= 16 (heavy tail)")
        check_steps(values["times"][-1], values["dt"], "times[-1]", "dt")
        n_times = len(values["times"])
        check_memory(
            {"n_samples": values["n_samples"], "times": n_times, "widths": len(widths_)},
            "the pooled samples",
            copies=3,
        )
        check_memory(
            {"cells": values["cells"], "times": n_times, "widths": len(widths_)},
            "the PDE densities",
            copies=6,
        )


@dataclass(frozen=True)
class MeanfieldResult:
    """What ``run`` computed (``datasets``: ``<name>.nc`` and ``<name>_moments.nc``).

    Parameters
    ----------
    params : MeanfieldParams
        The parameters.
    distances : xarray.Dataset
        ``particles_vs_pde``: W1 and L1 per width and time.
    moments : xarray.Dataset
        ``moment_comparison``: stationary moments against the PDE equilibrium.
    """

    params: MeanfieldParams
    distances: xr.Dataset
    moments: xr.Dataset

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        name = self.params.name
        return {f"{name}.nc": self.distances, f"{name}_moments.nc": self.moments}


def run(params: MeanfieldParams, out: Path) -> MeanfieldResult:
    """Mean-field PDE vs Langevin particles at beta = b d for growing widths d.

    Parameters
    ----------
    params : MeanfieldParams
        The checked parameters.
    out : pathlib.Path
        The output folder (unused: the datasets are returned, written as ``<name>.nc`` and
        ``<name>_moments.nc``).

    Returns
    -------
    MeanfieldResult
        The distances and the moments.
    """
    from ..particles_vs_pde import moment_comparison, particles_vs_pde

    ds = particles_vs_pde(
        widths=params.widths,
        b=params.b,
        depth=params.depth,
        p=params.p,
        times=params.times,
        n_samples=params.n_samples,
        dt=params.dt,
        seed=params.seed,
        cells=params.cells,
    )
    moments = moment_comparison(
        widths=params.moment_widths,
        b=params.b,
        depth=params.depth,
        p=params.p,
        members=params.moment_members,
        dt=params.moment_dt,
        seed=params.seed,
    )
    return MeanfieldResult(params, ds, moments)


def summary(result: MeanfieldResult) -> list[str]:
    """W1 and L1 per width and time with their floors, the fitted rates, the moment errors.

    Parameters
    ----------
    result : MeanfieldResult
        What ``run`` returned.

    Returns
    -------
    list of str
        The summary lines.
    """
    params, ds, moments = result.params, result.distances, result.moments
    lines = [
        f"[{params.name}] mean-field PDE vs particles, beta = b d (b = {params.b}), "
        f"N = {params.depth}, {params.n_samples} pooled samples per width; W1 noise floor: the "
        "members' own (their particles repel) and that of as many i.i.d. draws",
        f"  {'d':>6}{'time':>8}{'W1':>11}{'SE':>10}{'members floor':>15}{'iid floor':>11}"
        f"{'L1':>9}{'L1 floor':>10}",
    ]
    for d in ds.width.values:
        for k, t in enumerate(ds.time.values):
            v = ds.sel(width=d).isel(time=k)
            lines.append(
                f"  {d:>6}{t:>8g}{float(v.w1):>11.3e}{float(v.w1_se):>10.1e}"
                f"{float(v.w1_member_floor):>15.3e}{float(v.w1_floor):>11.3e}"
                f"{float(v.l1):>9.4f}{float(v.l1_floor):>10.4f}"
            )
    a = ds.attrs
    lines.append(
        f"  fitted W1 - members floor ~ d^-q at the last time: {_order(a, 'w1')} (raw slopes: W1 ~ "
        f"d^{a['w1_rate']:.3f}, L1 ~ d^{a['l1_rate']:.3f}, mostly the sampling noise, which "
        "scales with the bump's width (b d)^-1/2)"
    )
    lines.append(f"  {'d':>6}{'E[sigma] rel. err':>20}{'SE':>10}{'Var rel. err':>15}{'SE':>10}")
    for k, d in enumerate(moments.width.values):
        v = moments.isel(width=k)
        lines.append(
            f"  {d:>6}{float(v.mean_error):>20.2e}{float(v.mean_error_se):>10.1e}"
            f"{float(v.var_error):>15.2e}{float(v.var_error_se):>10.1e}"
        )
    a = moments.attrs
    lines.append(
        f"  stationary moments vs the PDE equilibrium (ratio to mean-field particles on the same "
        f"noise), error ~ d^-q: E[sigma] {_order(a, 'mean')} (theory: q = 2), Var "
        f"{_order(a, 'var')} (theory: q = 1)"
    )
    if math.isfinite(float(a.get("var_amplitude", math.nan))):
        lines.append(
            f"  Var error = A (d-1)/d^2 + B/d^2: A = {a['var_amplitude']:.4f} +- "
            f"{a['var_amplitude_se']:.4f} (theory r^2/(1-r) = {a['var_amplitude_theory']:.4f}), "
            f"B = {a['var_d2']:.3f} +- {a['var_d2_se']:.3f}, chi^2 = {a['var_fit_chi2']:.2f}"
        )
    return lines


def _order(attrs: dict, name: str) -> str:
    """``q = 1.02, 95% CI [0.9, 1.1]``, or that the data do not bound it."""
    q, lo, hi = (float(attrs[f"{name}_order{s}"]) for s in ("", "_low", "_high"))
    if math.isnan(q):
        return "q not fitted"
    if math.isinf(lo) and math.isinf(hi):
        return f"q not resolved (errors within noise; best fit {q:.2f})"
    return f"q = {q:.2f}, 95% CI [{lo:.2f}, {hi:.2f}]"


def figures(result: MeanfieldResult) -> dict[str, Any]:
    """``<name>_densities`` (particles vs PDE) and ``<name>_moments``.

    Parameters
    ----------
    result : MeanfieldResult
        What ``run`` returned.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        File stem -> figure.
    """
    from ..plots import moment_comparison_figure, particles_vs_pde_figure

    name = result.params.name
    return {
        f"{name}_densities": particles_vs_pde_figure(result.distances),
        f"{name}_moments": moment_comparison_figure(result.moments),
    }


EXPERIMENT = Experiment("meanfield", MeanfieldParams, run, summary, figures, dpi=110)
