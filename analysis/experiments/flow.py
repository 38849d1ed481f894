"""The ``flow`` experiment: deterministic gradient flows, relaxation rates, phase portrait.

From ``members`` random chamber points (or the given ``initial`` rows) the flow
``dX/dt = -grad F_beta`` (theory.md section 4) is integrated to ``t_end``; the summary compares
the state reached with the equilibrium ``sigma_*`` and ``F_beta(sigma_*)``, and the fitted decay
rates of the two linear modes with theory.md section 7 (``analysis.relaxation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.particles import Model, gradient_flow
from dlnsim.particles.validation import check_bool, check_singular_values

from ..relaxation import RelaxationRun, relaxation_dataset, relaxation_runs
from .base import Experiment
from .params import (
    ModelParams,
    check_equilibrium,
    check_memory,
    cli_list,
    documented,
    format_param,
    integer,
    model_from,
    name_param,
    param,
    positive,
    real_array,
)

__all__ = ["EXPERIMENT", "FlowParams", "FlowResult", "figures", "run", "summary"]


@documented
@dataclass(frozen=True)
class FlowParams(ModelParams):
    """The parameters of the ``flow`` experiment (``[[experiment]] kind = "flow"``)."""

    name: str = name_param("flow")
    initial: np.ndarray | None = param(None, real_array, cli_list, "starts, one row per member")
    members: int = param(8, integer(1), int, "random starts when initial is omitted")
    seed: int = param(0, integer(0), int, "seed of the random starts")
    t_end: float = param(20.0, positive, float, "final time", unit="t")
    n_times: int = param(201, integer(2), int, "save times")
    phase_portrait: bool = param(True, check_bool, None, "draw Figure 1 (d = 2)")
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: an equilibrium in float64, ``initial`` of width ``d``, the
        trajectories fit in memory.  Raises ``ValueError`` naming the parameter."""
        model = model_from(values)
        check_equilibrium(model, values)
        if values["initial"] is not None:
            initial = check_singular_values(values["initial"], model.width, "initial")
            values["initial"] = initial
            rows = 1 if initial.ndim == 1 else initial.shape[0]
        else:
            rows = values["members"]
        check_memory(
            {"members": rows, "n_times": values["n_times"], "width": values["width"]},
            "the trajectories",
            copies=3,
        )


@dataclass(frozen=True)
class FlowResult:
    """What ``run`` computed (``datasets``: ``<name>.nc``, the flow).

    Parameters
    ----------
    params : FlowParams
        The parameters.
    model : Model
        Their model.
    flow : xarray.Dataset
        The flows (with the relaxation runs merged in).
    runs : list of RelaxationRun
        The relaxation runs (empty when ``sigma_* = 0``).
    """

    params: FlowParams
    model: Model
    flow: xr.Dataset
    runs: list[RelaxationRun]

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        return {f"{self.params.name}.nc": self.flow}


def initial_states(params: FlowParams, model: Model) -> np.ndarray:
    """``initial`` as given, or ``members`` random chamber points: ``sigma_* exp(U)`` with
    ``U`` uniform on ``[-2, 1]`` per coordinate, seeded by ``seed`` (``sigma_*`` replaced by 1
    when it is 0).

    Parameters
    ----------
    params : FlowParams
        The parameters.
    model : Model
        Their model.

    Returns
    -------
    numpy.ndarray
        One start (shape ``(d,)``) or one row per member.
    """
    if params.initial is not None:
        return np.asarray(params.initial, dtype=float)
    rng = np.random.default_rng(params.seed)
    s = model.equilibrium() or 1.0
    return s * np.exp(rng.uniform(-2.0, 1.0, size=(params.members, model.width)))


def run(params: FlowParams, out: Path) -> FlowResult:
    """Deterministic gradient flow: trajectories, phase portrait (d = 2), relaxation rates.

    Parameters
    ----------
    params : FlowParams
        The checked parameters.
    out : pathlib.Path
        The output folder (unused: the flow is returned, written as ``<name>.nc``).

    Returns
    -------
    FlowResult
        The flow (with the relaxation runs merged in, so that ``dlnsim plot`` redraws the
        relaxation figure) and the runs.
    """
    model = params.model()
    times = np.linspace(0.0, params.t_end, params.n_times)
    ds = gradient_flow(model, initial_states(params, model), times)
    runs = relaxation_runs(model) if model.equilibrium() > 0 else []
    if runs:
        ds = ds.merge(relaxation_dataset(runs, model), combine_attrs="override")
    return FlowResult(params, model, ds, runs)


def summary(result: FlowResult) -> list[str]:
    """Reached state against ``sigma_*``, ``F_beta(sigma_*)`` and the relaxation rates.

    Parameters
    ----------
    result : FlowResult
        What ``run`` returned.

    Returns
    -------
    list of str
        The summary lines (predicted, reached or fitted, relative error).
    """
    model, ds = result.model, result.flow
    lines = [f"[{result.params.name}] gradient flow, {model.describe()}"]
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
    for r in result.runs:
        lines.append(row(f"{r.mode} relaxation rate", r.predicted, r.fitted))
    return lines


def figures(result: FlowResult) -> dict[str, Any]:
    """``<name>_relaxation`` (when ``sigma_* > 0``) and ``<name>_phase_portrait`` (d = 2).

    Parameters
    ----------
    result : FlowResult
        What ``run`` returned.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        File stem -> figure.
    """
    from ..plots import phase_portrait, relaxation_figure

    name, model = result.params.name, result.model
    out = {}
    if result.runs:
        out[f"{name}_relaxation"] = relaxation_figure(result.runs, model)
    if model.width == 2 and result.params.phase_portrait:
        out[f"{name}_phase_portrait"] = phase_portrait(
            model, limit=max(1.0, 3 * model.equilibrium())
        )
    return out


EXPERIMENT = Experiment("flow", FlowParams, run, summary, figures, dpi=120, command=False)
