"""The ``ensemble`` experiment: Langevin ensembles at temperature 1/beta and a temperature scan,
against the deterministic gradient flow from the same start.

At each temperature ``T`` (default ``1/beta, 1/(2 beta), 1/(4 beta), 1/(8 beta)``) an ensemble
of ``members`` Langevin trajectories (theory.md section 9) is streamed into a Zarr store; the
stationary averages after ``burn_in`` of the run give ``<sigma>`` and the spread
``max sigma - min sigma`` with standard errors over members, and the fitted order of
``|<sigma> - sigma_*|`` as ``T -> 0``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.particles import Model, gradient_flow
from dlnsim.particles.validation import check_singular_values, fail

from .base import Experiment
from .params import (
    DEFAULT_SCHEDULER,
    ModelParams,
    check_equilibrium,
    check_memory,
    check_scheduler,
    check_steps,
    cli_list,
    documented,
    format_param,
    fraction,
    integer,
    model_from,
    name_param,
    param,
    positive,
    real_array,
    temperature_list,
)

__all__ = [
    "EXPERIMENT",
    "EnsembleParams",
    "EnsembleResult",
    "default_start",
    "executor",
    "figures",
    "run",
    "summary",
]


@documented
@dataclass(frozen=True)
class EnsembleParams(ModelParams):
    """The parameters of the ``ensemble`` experiment (``[[experiment]] kind = "ensemble"``)."""

    width: int = param(4, integer(1), int, "width d")
    name: str = name_param("ensemble")
    initial: np.ndarray | None = param(
        None, real_array, cli_list, "start (default: around sigma_*)"
    )
    members: int = param(128, integer(1), int, "ensemble size")
    dt: float = param(2e-3, positive, float, "time step", unit="t")
    t_end: float = param(3.0, positive, float, "final time", unit="t")
    n_times: int = param(51, integer(2), int, "save times")
    seed: int = param(0, integer(0), int, "root seed (seed + k at the k-th temperature)")
    temperatures: list[float] = param(
        [], temperature_list, cli_list, "noise temperatures ([]: scan)"
    )
    burn_in: float = param(0.5, fraction, float, "fraction of the run before averaging")
    scheduler: str = param(
        DEFAULT_SCHEDULER, check_scheduler, str, "'local', 'serial' or an address"
    )
    chunk_size: int = param(0, integer(0), int, "members per task (0: auto)")
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: an equilibrium in float64, ``initial`` of one or ``members``
        rows of width ``d``, ``t_end / dt`` steps, the trajectories fit in memory."""
        model = model_from(values)
        check_equilibrium(model, values)
        initial = values["initial"]
        if initial is not None:
            arr = check_singular_values(initial, model.width, "initial")
            if arr.ndim == 2 and arr.shape[0] != values["members"]:
                raise fail(
                    "initial",
                    initial.tolist(),
                    f"must be one start of length {model.width} or "
                    f"members={values['members']} rows",
                )
            values["initial"] = arr
        check_steps(values["t_end"], values["dt"], "t_end", "dt")
        check_memory(
            {"members": values["members"], "n_times": values["n_times"], "width": values["width"]},
            "each ensemble's trajectories",
            copies=2,
        )


def default_start(model: Model) -> np.ndarray:
    """The default start of an ensemble: ``sigma_*`` times a geometric spread from 3 down to
    1/3 (1 instead of ``sigma_*`` when it is 0), used by this experiment and ``dlnsim
    ensemble``.

    Parameters
    ----------
    model : Model
        The model.

    Returns
    -------
    numpy.ndarray
        Shape ``(d,)``, decreasing.
    """
    s_star = model.equilibrium()
    return (s_star if s_star > 0 else 1.0) * np.geomspace(3.0, 1 / 3, model.width)


@contextlib.contextmanager
def executor(scheduler: str | None):
    """Keyword arguments telling ``langevin_ensemble`` where to run, shared by several calls:
    ``"local"`` starts ONE LocalCluster (a process per core, one thread each) for all of them.

    Parameters
    ----------
    scheduler : str or None
        ``"local"``, ``"serial"``, an address, or None (``langevin_ensemble``'s default).

    Yields
    ------
    dict
        ``{"client": client}`` for ``"local"``, else ``{"scheduler": scheduler}``.
    """
    if scheduler != "local":
        yield {"scheduler": scheduler}
        return
    from dlnsim.particles.ensemble import local_cluster  # the one LocalCluster configuration

    client = local_cluster()  # options: an enclosing local_cluster_options (the CLI's)
    try:
        yield {"client": client}
    finally:
        client.close()


def _store_flow(store: Path, flow: xr.Dataset, s_star: float) -> None:
    """Add the deterministic flow and ``sigma_star`` to an ensemble store (for `dlnsim plot`)."""
    with xr.open_zarr(store, consolidated=False) as stored:
        attrs = dict(stored.attrs)  # appending replaces the group attributes: keep them
    extra = xr.Dataset(
        {
            "flow_sigma": (
                ("time", "particle"),
                flow.sigma.values,
                {"long_name": "deterministic gradient flow from the same start", "units": "1"},
            )
        },
        attrs={**attrs, "sigma_star": s_star},
    )
    extra.to_zarr(store, mode="a", consolidated=False)


@dataclass(frozen=True)
class EnsembleResult:
    """What ``run`` computed (``datasets``: ``<name>_temperatures.nc``, the scan).

    Parameters
    ----------
    params : EnsembleParams
        The parameters.
    model : Model
        Their model.
    ensemble : xarray.Dataset
        The ensemble at the first temperature (its store ``<name>.zarr`` is written).
    flow : xarray.Dataset
        The deterministic flow from the same start.
    scan : xarray.Dataset
        The stationary averages by temperature.
    rows : list of tuple
        ``(T, <sigma>, SE, spread, SE, failed members)`` per temperature.
    """

    params: EnsembleParams
    model: Model
    ensemble: xr.Dataset
    flow: xr.Dataset
    scan: xr.Dataset
    rows: list[tuple[float, float, float, float, float, int]]

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        return {f"{self.params.name}_temperatures.nc": self.scan}


def _scan_dataset(rows_arr: np.ndarray, model: Model, members: int, burn_in_time: float):
    from dlnsim.particles.datasets import provenance

    def var(k: int, long_name: str):
        return ("temperature", rows_arr[:, k], {"long_name": long_name, "units": "1"})

    return xr.Dataset(
        {
            "mean_sigma": var(1, "stationary ensemble mean of sigma"),
            "mean_sigma_se": var(2, "standard error (member averages)"),
            "spread": var(3, "stationary mean of max sigma - min sigma"),
            "spread_se": var(4, "standard error (member averages)"),
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
            sigma_star=model.equilibrium(),
            members=members,
            burn_in_time=burn_in_time,
            **model.describe(),
        ),
    )


def run(params: EnsembleParams, out: Path) -> EnsembleResult:
    """Langevin ensembles at temperature 1/beta (and a temperature scan) vs the gradient flow.

    Parameters
    ----------
    params : EnsembleParams
        The checked parameters.
    out : pathlib.Path
        The output folder: the stores ``<name>.zarr`` (first temperature) and
        ``<name>_T<k>.zarr`` are streamed into it while they run (with the flow added).

    Returns
    -------
    EnsembleResult
        The first ensemble, the flow, the scan (written as ``<name>_temperatures.nc``).
    """
    from dlnsim.particles import langevin_ensemble

    model = params.model()
    name = params.name
    s_star = model.equilibrium()
    sigma0 = default_start(model) if params.initial is None else np.asarray(params.initial, float)
    times = np.linspace(0.0, params.t_end, params.n_times)
    burn = times >= params.burn_in * times[-1]
    temps = params.temperatures or [1 / (model.beta * 2**k) for k in range(4)]
    members = params.members
    flow = gradient_flow(model, sigma0, times, progress=False)
    rows = []
    main_ds = None
    with executor(params.scheduler) as where:
        for k, temp in enumerate(temps):
            store = out / (f"{name}.zarr" if k == 0 else f"{name}_T{k}.zarr")
            ds = langevin_ensemble(
                model,
                sigma0,
                times,
                members,
                seed=params.seed + k,
                temperature=float(temp),
                store=store,
                overwrite=True,
                dt=params.dt,
                progress=None,
                chunk_size=params.chunk_size or None,
                **where,
            )
            _store_flow(store, flow, s_star)
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
    scan = _scan_dataset(np.array(rows, dtype=float), model, members, float(times[burn][0]))
    main_ds.attrs["sigma_star"] = s_star
    return EnsembleResult(params, model, main_ds, flow, scan, rows)


def summary(result: EnsembleResult) -> list[str]:
    """The stationary averages per temperature and the order of ``|<sigma> - sigma_*|``.

    Parameters
    ----------
    result : EnsembleResult
        What ``run`` returned.

    Returns
    -------
    list of str
        The summary lines.
    """
    params, model, rows = result.params, result.model, result.rows
    s_star = model.equilibrium()
    burn_in_time = result.scan.attrs["burn_in_time"]
    lines = [
        f"[{params.name}] Langevin ensemble, {params.members} members, dt = {params.dt}, "
        f"{model.describe()}; stationary averages over t >= {burn_in_time:g}",
        f"  {'temperature T':>14}{'<sigma>':>12}{'SE':>10}{'<sigma>-sigma_*':>17}"
        f"{'spread':>10}{'SE':>10}{'failed':>8}",
    ]
    for temp, mean, se, spread, spread_se, failed in rows:
        lines.append(
            f"  {temp:>14.5g}{mean:>12.6f}{se:>10.2e}{mean - s_star:>17.3e}"
            f"{spread:>10.5f}{spread_se:>10.2e}{failed:>8d}"
        )
    rows_arr = np.array(rows, dtype=float)
    gap = np.abs(rows_arr[:, 1] - s_star)
    if len(rows) >= 3 and np.all(gap > 0):
        order = np.polyfit(np.log(rows_arr[:, 0]), np.log(gap), 1)[0]
        lines.append(f"  sigma_* = {s_star:.6g}; |<sigma> - sigma_*| ~ T^{order:.3f} as T -> 0")
    return lines


def figures(result: EnsembleResult) -> dict[str, Any]:
    """``<name>_trajectories`` (members, mean and flow) and ``<name>_temperature`` (the scan).

    Parameters
    ----------
    result : EnsembleResult
        What ``run`` returned.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        File stem -> figure.
    """
    from ..plots import ensemble_figure, temperature_figure

    name = result.params.name
    return {
        f"{name}_trajectories": ensemble_figure(result.ensemble, result.flow),
        f"{name}_temperature": temperature_figure(result.scan),
    }


EXPERIMENT = Experiment("ensemble", EnsembleParams, run, summary, figures, dpi=120, command=False)
