"""The experiment pipeline behind ``dlnsim run``: TOML configs, experiment kinds, outputs.

A config is a TOML file with an optional top-level ``out`` (output folder) and a list of
``[[experiment]]`` tables, each with a ``kind`` and that kind's parameters (unknown keys are an
error).  ``dlnsim run`` with no config runs ``DEFAULT_EXPERIMENTS``.  Each experiment writes its
dataset(s) and figures into the output folder as soon as they are done and returns summary
lines, which are printed and appended to ``summary.txt``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnsim.particles import Model, Schatten, gradient_flow
from dlnsim.particles.datasets import save
from dlnsim.particles.validation import (
    check_depth,
    check_integer,
    check_positive,
    check_singular_values,
    check_width,
    fail,
)

from .relaxation import relaxation_runs

__all__ = ["EXPERIMENTS", "DEFAULT_EXPERIMENTS", "load_config", "run_experiments", "model_from"]

Runner = Callable[[dict[str, Any], Path], list[str]]


@dataclass(frozen=True)
class Experiment:
    """An experiment kind: its parameters with defaults, and the function that runs it."""

    defaults: Mapping[str, Any]
    run: Runner
    doc: str


MODEL_DEFAULTS = {"width": 2, "depth": 10, "beta": 5.0, "p": 2.0}


def model_from(params: Mapping[str, Any]) -> Model:
    """``Model(width, depth, beta, Schatten(p))`` from experiment parameters."""
    return Model(params["width"], params["depth"], params["beta"], Schatten(params["p"]))


def _initial_states(params: Mapping[str, Any], model: Model) -> np.ndarray:
    """``initial`` as given, or ``members`` random chamber points (log-uniform, seeded)."""
    if params.get("initial") is not None:
        return np.asarray(params["initial"], dtype=float)
    rng = np.random.default_rng(check_integer(params["seed"], "seed", 0))
    s = model.equilibrium() or 1.0
    members = check_integer(params["members"], "members")
    return s * np.exp(rng.uniform(-2.0, 1.0, size=(members, model.width)))


def run_flow(params: dict[str, Any], out: Path) -> list[str]:
    """Deterministic gradient flow: trajectories, phase portrait (d = 2), relaxation rates."""
    from .plots import phase_portrait, relaxation_figure

    model = model_from(params)
    name = params["name"]
    t_end = check_positive(params["t_end"], "t_end")
    times = np.linspace(0.0, t_end, check_integer(params["n_times"], "n_times", 2))
    ds = gradient_flow(model, _initial_states(params, model), times)
    save(ds, out / f"{name}.nc")
    lines = [f"[{name}] gradient flow, {model.describe()}"]
    s_star = model.equilibrium()
    reached = ds.sigma.isel(time=-1).values
    lines.append(f"  {'quantity':<28}{'predicted':>16}{'reached/fitted':>18}{'rel. error':>12}")

    def row(label: str, predicted: float, got: float) -> str:
        err = abs(got - predicted) / abs(predicted) if predicted else math.nan
        return f"  {label:<28}{predicted:>16.10g}{got:>18.10g}{err:>12.2e}"

    worst = reached.flat[np.argmax(np.abs(reached - s_star))]
    lines.append(row(f"sigma_* (worst of {reached.size})", s_star, float(worst)))
    lines.append(
        row(
            "F_beta at sigma_*",
            float(model.free_energy(np.full(model.width, s_star))),
            float(np.max(ds.free_energy.isel(time=-1).values)),
        )
    )
    if s_star > 0:
        runs = relaxation_runs(model)
        for run in runs:
            lines.append(row(f"{run.mode} relaxation rate", run.predicted, run.fitted))
        fig = relaxation_figure(runs, model)
        fig.savefig(out / f"{name}_relaxation.png", dpi=120)
    if model.width == 2 and params["phase_portrait"]:
        fig = phase_portrait(model, limit=max(1.0, 3 * s_star))
        fig.savefig(out / f"{name}_phase_portrait.png", dpi=120)
    return lines


@contextlib.contextmanager
def _executor(scheduler: str | None):
    """Keyword arguments telling ``langevin_ensemble`` where to run, shared by several calls:
    ``"local"`` starts ONE LocalCluster (a process per core, one thread each) for all of them."""
    if scheduler != "local":
        yield {"scheduler": scheduler}
        return
    from dlnsim.particles.ensemble import _local_cluster  # the one LocalCluster configuration

    executor = _local_cluster(os.cpu_count() or 1)
    try:
        yield {"client": executor.client}
    finally:
        executor.close()


def run_ensemble(params: dict[str, Any], out: Path) -> list[str]:
    """Langevin ensembles at temperature 1/beta (and a temperature scan) vs the gradient flow."""
    from dlnsim.particles import langevin_ensemble

    from .plots import ensemble_figure, temperature_figure

    model = model_from(params)
    name = params["name"]
    s_star = model.equilibrium()
    if params["initial"] is None:
        scale = s_star if s_star > 0 else 1.0
        sigma0 = scale * np.geomspace(3.0, 1 / 3, model.width)
    else:
        sigma0 = np.asarray(params["initial"], dtype=float)
    times = np.linspace(
        0.0,
        check_positive(params["t_end"], "t_end"),
        check_integer(params["n_times"], "n_times", 2),
    )
    burn = times >= check_positive(params["burn_in"], "burn_in") * times[-1]
    temperatures = params["temperatures"] or [1 / (model.beta * 2**k) for k in range(4)]
    common = {
        "dt": check_positive(params["dt"], "dt"),
        "progress": None,
        "chunk_size": params["chunk_size"] or None,
    }
    members = check_integer(params["members"], "members")
    flow = gradient_flow(model, sigma0, times, progress=False)
    rows = []
    main_ds = None
    with _executor(params["scheduler"]) as where:
        for k, temp in enumerate(temperatures):
            store = out / (f"{name}.zarr" if k == 0 else f"{name}_T{k}.zarr")
            ds = langevin_ensemble(
                model,
                sigma0,
                times,
                members,
                seed=params["seed"] + k,
                temperature=float(temp),
                store=store,
                overwrite=True,
                **where,
                **common,
            )
            sig = ds.sigma.values[:, burn]  # (member, time, particle)
            per_member_mean = sig.mean(axis=(1, 2))
            per_member_spread = (sig.max(axis=-1) - sig.min(axis=-1)).mean(axis=1)
            root_m = math.sqrt(members)
            rows.append(
                (
                    temp,
                    per_member_mean.mean(),
                    per_member_mean.std(ddof=1) / root_m,
                    per_member_spread.mean(),
                    per_member_spread.std(ddof=1) / root_m,
                    int(ds.failed.values.sum()),
                )
            )
            if k == 0:
                main_ds = ds
    rows_arr = np.array(rows, dtype=float)
    import xarray as xr

    from dlnsim.particles.datasets import provenance

    scan = xr.Dataset(
        {
            "mean_sigma": (
                "temperature",
                rows_arr[:, 1],
                {"long_name": "stationary ensemble mean of sigma", "units": "1"},
            ),
            "mean_sigma_se": (
                "temperature",
                rows_arr[:, 2],
                {"long_name": "standard error (member averages)", "units": "1"},
            ),
            "spread": (
                "temperature",
                rows_arr[:, 3],
                {"long_name": "stationary mean of max sigma - min sigma", "units": "1"},
            ),
            "spread_se": (
                "temperature",
                rows_arr[:, 4],
                {"long_name": "standard error (member averages)", "units": "1"},
            ),
        },
        coords={
            "temperature": (
                "temperature",
                rows_arr[:, 0],
                {"long_name": "noise temperature T", "units": "1"},
            )
        },
        attrs=provenance(
            kind="temperature_scan",
            sigma_star=s_star,
            members=members,
            burn_in_time=float(times[burn][0]),
            **model.describe(),
        ),
    )
    save(scan, out / f"{name}_temperatures.nc")
    main_ds.attrs["sigma_star"] = s_star
    ensemble_figure(main_ds, flow).savefig(out / f"{name}_trajectories.png", dpi=120)
    temperature_figure(scan).savefig(out / f"{name}_temperature.png", dpi=120)
    lines = [
        f"[{name}] Langevin ensemble, {members} members, dt = {common['dt']}, "
        f"{model.describe()}; stationary averages over t >= {times[burn][0]:g}",
        f"  {'temperature T':>14}{'<sigma>':>12}{'SE':>10}{'<sigma>-sigma_*':>17}"
        f"{'spread':>10}{'SE':>10}{'failed':>8}",
    ]
    for temp, mean, se, spread, spread_se, failed in rows:
        lines.append(
            f"  {temp:>14.5g}{mean:>12.6f}{se:>10.2e}{mean - s_star:>17.3e}"
            f"{spread:>10.5f}{spread_se:>10.2e}{failed:>8d}"
        )
    gap = np.abs(rows_arr[:, 1] - s_star)
    if len(rows) >= 3 and np.all(gap > 0):
        order = np.polyfit(np.log(rows_arr[:, 0]), np.log(gap), 1)[0]
        lines.append(f"  sigma_* = {s_star:.6g}; |<sigma> - sigma_*| ~ T^{order:.3f} as T -> 0")
    return lines


def run_meanfield(params: dict[str, Any], out: Path) -> list[str]:
    """Mean-field PDE vs Langevin particles at beta = b d for growing widths d."""
    from .particles_vs_pde import particles_vs_pde
    from .plots import particles_vs_pde_figure

    name = params["name"]
    ds = particles_vs_pde(
        widths=params["widths"],
        b=params["b"],
        depth=params["depth"],
        p=params["p"],
        times=params["times"],
        n_samples=params["n_samples"],
        dt=params["dt"],
        seed=params["seed"],
        cells=params["cells"],
    )
    save(ds, out / f"{name}.nc")
    particles_vs_pde_figure(ds).savefig(out / f"{name}_densities.png", dpi=110)
    lines = [
        f"[{name}] mean-field PDE vs particles, beta = b d (b = {params['b']}), "
        f"N = {params['depth']}, {params['n_samples']} pooled samples per width",
        f"  {'d':>6}{'time':>8}{'W1':>11}{'W1 noise floor':>16}{'L1':>9}{'L1 floor':>10}",
    ]
    for d in ds.width.values:
        for k, t in enumerate(ds.time.values):
            v = ds.sel(width=d).isel(time=k)
            lines.append(
                f"  {d:>6}{t:>8g}{float(v.w1):>11.3e}{float(v.w1_floor):>16.3e}"
                f"{float(v.l1):>9.4f}{float(v.l1_floor):>10.4f}"
            )
    lines.append(
        f"  fitted W1 ~ d^{ds.attrs['w1_rate']:.3f}, L1 ~ d^{ds.attrs['l1_rate']:.3f} "
        "at the last time (floors: the same distances for exact samples of the PDE)"
    )
    return lines


def run_repulsion(params: dict[str, Any], out: Path) -> list[str]:
    """Repulsion statistics: DLN chamber model vs random-matrix baselines (<r>, gamma, verdict)."""
    from .plots import repulsion_figure
    from .repulsion_experiment import repulsion_comparison, repulsion_verdict

    name = params["name"]
    systems = params["systems"] or None
    kwargs = {"systems": systems} if systems else {}
    ds = repulsion_comparison(
        rows=check_integer(params["rows"], "rows", 50),
        seed=check_integer(params["seed"], "seed", 0),
        dt=check_positive(params["dt"], "dt"),
        **kwargs,
    )
    save(ds, out / f"{name}.nc")
    repulsion_figure(ds).savefig(out / f"{name}.png", dpi=110)
    lines = [
        f"[{name}] repulsion: <r> (Poisson 0.386, GOE 0.531, GUE 0.600, GSE 0.674), "
        "exponent gamma with 95% bootstrap CI",
        f"  {'system':<38}{'<r>':>8}{'SE':>8}{'gamma':>8}{'95% CI':>18}{'P(s<0.1)':>10}"
        f"{'expect':>8}",
    ]
    for k, label in enumerate(ds.system.values):
        v = {
            n: float(ds[n].values[k])
            for n in (
                "mean_ratio",
                "mean_ratio_se",
                "gamma",
                "gamma_low",
                "gamma_high",
                "small_fraction",
                "gamma_expected",
            )
        }
        ci = f"({v['gamma_low']:.2f}, {v['gamma_high']:.2f})"
        lines.append(
            f"  {label:<38}{v['mean_ratio']:>8.4f}{v['mean_ratio_se']:>8.4f}"
            f"{v['gamma']:>8.3f}{ci:>18}{v['small_fraction']:>10.4f}"
            f"{v['gamma_expected']:>8g}"
        )
    lines.append("  " + repulsion_verdict(ds).text)
    return lines


def run_depth(params: dict[str, Any], out: Path) -> list[str]:
    """Depth sweep toward N = inf in rescaled time: flow, equilibrium, rates (and ensembles)."""
    from .depth import convergence_orders, depth_sweep
    from .plots import depth_figures

    name = params["name"]
    depths = [math.inf if str(n) == "inf" else n for n in params["depths"]]
    taus = np.linspace(
        0.0,
        check_positive(params["tau_end"], "tau_end"),
        check_integer(params["n_times"], "n_times", 2),
    )
    ensemble = None
    if params["members"]:
        ensemble = {
            "members": check_integer(params["members"], "members"),
            "dt": check_positive(params["dt"], "dt"),
            "seed": params["seed"],
            "tau_end": params["ensemble_tau_end"],
            "progress": False,
            "scheduler": "serial",  # many small runs: a cluster would cost more than it saves
        }
    ds = depth_sweep(
        params["width"],
        params["beta"],
        params["p"],
        params["initial"],
        taus,
        depths,
        ensemble=ensemble,
    )
    save(ds, out / f"{name}.nc")
    for label, fig in depth_figures(ds).items():
        fig.savefig(out / f"{name}_{label}.png", dpi=120)
    lines = [
        f"[{name}] depth sweep to N = inf (rescaled time), d = {params['width']}, "
        f"beta = {params['beta']}, p = {params['p']}; expected order 1 in 1/N for all"
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


EXPERIMENTS: dict[str, Experiment] = {
    "flow": Experiment(
        defaults={
            **MODEL_DEFAULTS,
            "name": "flow",
            "initial": None,
            "members": 8,
            "seed": 0,
            "t_end": 20.0,
            "n_times": 201,
            "phase_portrait": True,
        },
        run=run_flow,
        doc=run_flow.__doc__ or "",
    ),
    "ensemble": Experiment(
        defaults={
            **MODEL_DEFAULTS,
            "width": 4,
            "name": "ensemble",
            "initial": None,
            "members": 128,
            "dt": 2e-3,
            "t_end": 3.0,
            "n_times": 51,
            "seed": 0,
            "temperatures": [],
            "burn_in": 0.5,
            "scheduler": "local",
            "chunk_size": 0,
        },
        run=run_ensemble,
        doc=run_ensemble.__doc__ or "",
    ),
    "meanfield": Experiment(
        defaults={
            "name": "meanfield",
            "widths": [8, 32, 128],
            "b": 1.0,
            "depth": 4,
            "p": 2.0,
            "times": [0.0, 0.2, 0.5, 1.0],
            "n_samples": 1024,
            "dt": 1e-3,
            "seed": 0,
            "cells": 128,
        },
        run=run_meanfield,
        doc=run_meanfield.__doc__ or "",
    ),
    "repulsion": Experiment(
        defaults={"name": "repulsion", "rows": 600, "seed": 0, "dt": 1e-3, "systems": []},
        run=run_repulsion,
        doc=run_repulsion.__doc__ or "",
    ),
    "depth": Experiment(
        defaults={
            "name": "depth",
            # d = 6: the N = inf stationary law needs d >= 4 to be normalizable (analysis.depth)
            "width": 6,
            "beta": 2.0,
            "p": 2.0,
            "initial": [2.0, 1.37, 0.94, 0.64, 0.44, 0.3],
            "depths": [1, 2, 4, 8, 16, 32, 64, 128, 256, "inf"],
            "tau_end": 3.0,
            "n_times": 31,
            "members": 64,
            "dt": 0.01,
            "seed": 0,
            "ensemble_tau_end": 20.0,
        },
        run=run_depth,
        doc=run_depth.__doc__ or "",
    ),
}

DEFAULT_EXPERIMENTS: list[dict[str, Any]] = [
    {"kind": "flow"},
    {"kind": "ensemble"},
    {"kind": "meanfield"},
    {"kind": "repulsion"},
    {"kind": "depth"},
]


def resolve(experiment: Mapping[str, Any]) -> tuple[Experiment, dict[str, Any]]:
    """The experiment kind and its full parameters (defaults overlaid); checks every key."""
    kind = experiment.get("kind")
    if kind not in EXPERIMENTS:
        raise fail("kind", kind, f"must be one of {', '.join(EXPERIMENTS)}")
    exp = EXPERIMENTS[kind]
    params = dict(exp.defaults)
    for key, value in experiment.items():
        if key == "kind":
            continue
        if key not in exp.defaults:
            raise fail(
                key,
                value,
                f"unknown key for an experiment of kind {kind!r} "
                f"(known: {', '.join(exp.defaults)})",
            )
        params[key] = value
    # validate the common parameters before any work starts
    if "widths" in params:
        if not isinstance(params["widths"], list) or len(params["widths"]) < 2:
            raise fail("widths", params["widths"], "must be a list of at least two widths")
        for w in params["widths"]:
            check_integer(w, "widths", 2)
        check_depth(params["depth"], "depth")
        check_positive(params["b"], "b")
        check_positive(params["p"], "p")
    if {"width", "depth", "beta", "p"} <= params.keys():
        model = model_from(params)
        if params.get("initial") is not None:
            check_singular_values(params["initial"], model.width, "initial")
    if "depths" in params:
        if not isinstance(params["depths"], list) or not params["depths"]:
            raise fail("depths", params["depths"], "must be a non-empty list")
        for n in params["depths"]:
            check_depth(n, "depths")
        check_singular_values(params["initial"], check_width(params["width"]), "initial")
        Model(params["width"], math.inf, params["beta"], Schatten(params["p"]))
    if "tau_end" in params:
        check_positive(params["tau_end"], "tau_end")
    if "t_end" in params:
        check_positive(params["t_end"], "t_end")
    if "n_times" in params:
        check_integer(params["n_times"], "n_times", 2)
    return exp, params


def load_config(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a TOML config: ``(experiments, out)``; every experiment is validated up front."""
    path = Path(path)
    if not path.is_file():
        raise fail("config", str(path), "no such file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise fail("config", str(path), f"not valid TOML ({exc})") from None
    unknown = set(data) - {"out", "experiment"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, data[key], "unknown top-level config key (known: out, experiment)")
    experiments = data.get("experiment", [])
    if not isinstance(experiments, list) or not experiments:
        raise fail("experiment", experiments, "the config needs at least one [[experiment]]")
    for exp in experiments:
        resolve(exp)
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise fail("out", out, "must be a folder name")
    return experiments, out


def run_experiments(
    experiments: list[dict[str, Any]], out: str | Path, echo: Callable[[str], None] = print
) -> list[str]:
    """Run each experiment in turn, writing into ``out``; returns all summary lines."""
    resolved = [resolve(e) for e in experiments]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.txt"
    summary.write_text("")
    all_lines: list[str] = []
    for exp, params in resolved:
        lines = exp.run(params, out)
        with summary.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        for line in lines:
            echo(line)
        all_lines.extend(lines)
    return all_lines
