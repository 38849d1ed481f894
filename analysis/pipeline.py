"""The experiment pipeline behind ``dlnsim run``: TOML configs, experiment kinds, outputs.

A config is a TOML file with an optional top-level ``out`` (output folder) and a list of
``[[experiment]]`` tables, each with a ``kind`` and that kind's parameters (unknown keys are an
error).  ``dlnsim run`` with no config runs ``DEFAULT_EXPERIMENTS``.  Each experiment writes its
dataset(s) and figures into the output folder as soon as they are done and returns summary
lines, which are printed and appended to ``summary.txt``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from particles import Model, Schatten, gradient_flow
from particles.datasets import save
from particles.validation import (
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
        for n, m, se in zip(
            ds.depth.values,
            ds.stationary_spread.values,
            ds.stationary_spread_se.values,
            strict=True,
        ):
            lines.append(f"  N = {n:>5g}: stationary spread {m:.5f} +- {se:.5f}")
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
    "depth": Experiment(
        defaults={
            "name": "depth",
            "width": 4,
            "beta": 2.0,
            "p": 2.0,
            "initial": [1.5, 1.0, 0.6, 0.3],
            "depths": [1, 2, 4, 8, 16, 32, 64, 128, 256, "inf"],
            "tau_end": 3.0,
            "n_times": 31,
            "members": 0,
            "dt": 0.01,
            "seed": 0,
            "ensemble_tau_end": 20.0,
        },
        run=run_depth,
        doc=run_depth.__doc__ or "",
    ),
}

DEFAULT_EXPERIMENTS: list[dict[str, Any]] = [{"kind": "flow"}, {"kind": "depth"}]


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
