"""The experiment pipeline behind ``dlnsim run``: TOML configs, experiment kinds, outputs.

A config is a UTF-8 TOML file with an optional top-level ``out`` (output folder) and a list of
``[[experiment]]`` tables, each with a ``kind`` and that kind's parameters (unknown keys are an
error; every parameter's default and check are in ``analysis.config``, and every experiment is
validated before the first one runs).  ``dlnsim run`` with no config runs
``DEFAULT_EXPERIMENTS``.  Each experiment writes its dataset(s) and figures into the output
folder as soon as they are done and returns summary lines, which are printed and appended to
``summary.txt``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnsim.particles import Model, gradient_flow
from dlnsim.particles.datasets import extra_provenance, save

from .config import (
    SCHEMAS,
    Schema,
    check_names,
    check_out,
    model_from,
    read_config,
    validate,
)
from .relaxation import relaxation_dataset, relaxation_runs

__all__ = ["EXPERIMENTS", "DEFAULT_EXPERIMENTS", "load_config", "run_experiments", "model_from"]

Runner = Callable[[dict[str, Any], Path], list[str]]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experiment:
    """An experiment kind: its parameters (defaults and checks), and the function that runs it
    on checked parameters.

    Parameters
    ----------
    schema : Schema
        The kind's parameters and cross-parameter check.
    run : callable
        ``run(params, out) -> list[str]``: runs on checked parameters, writes into the folder
        ``out``, returns the summary lines.
    doc : str
        One-paragraph description (the first paragraph of ``run``'s docstring), the CLI's
        ``--help`` text.
    """

    schema: Schema
    run: Runner
    doc: str

    @property
    def defaults(self) -> dict[str, Any]:
        return self.schema.defaults


def _initial_states(params: Mapping[str, Any], model: Model) -> np.ndarray:
    """``initial`` as given, or ``members`` random chamber points (log-uniform, seeded)."""
    if params.get("initial") is not None:
        return np.asarray(params["initial"], dtype=float)
    rng = np.random.default_rng(params["seed"])
    s = model.equilibrium() or 1.0
    return s * np.exp(rng.uniform(-2.0, 1.0, size=(params["members"], model.width)))


def run_flow(params: dict[str, Any], out: Path) -> list[str]:
    """Deterministic gradient flow: trajectories, phase portrait (d = 2), relaxation rates.

    Parameters
    ----------
    params : dict[str, Any]
        The checked parameters (``analysis.config.SCHEMAS["flow"]``).
    out : pathlib.Path
        The output folder; writes ``<name>.nc`` and the figures ``<name>_relaxation``,
        ``<name>_phase_portrait`` (d = 2).

    Returns
    -------
    list of str
        The summary lines.
    """
    from .plots import phase_portrait, relaxation_figure, save_figure

    model = model_from(params)
    name = params["name"]
    times = np.linspace(0.0, params["t_end"], params["n_times"])
    ds = gradient_flow(model, _initial_states(params, model), times)
    runs = relaxation_runs(model) if model.equilibrium() > 0 else []
    if runs:  # stored with the flow, so that `dlnsim plot` redraws the relaxation figure
        ds = ds.merge(relaxation_dataset(runs, model), combine_attrs="override")
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
    if runs:
        for run in runs:
            lines.append(row(f"{run.mode} relaxation rate", run.predicted, run.fitted))
        fig = relaxation_figure(runs, model)
        save_figure(fig, out / f"{name}_relaxation", params["format"], dpi=120)
    if model.width == 2 and params["phase_portrait"]:
        fig = phase_portrait(model, limit=max(1.0, 3 * s_star))
        save_figure(fig, out / f"{name}_phase_portrait", params["format"], dpi=120)
    return lines


@contextlib.contextmanager
def _executor(scheduler: str | None):
    """Keyword arguments telling ``langevin_ensemble`` where to run, shared by several calls:
    ``"local"`` starts ONE LocalCluster (a process per core, one thread each) for all of them."""
    if scheduler != "local":
        yield {"scheduler": scheduler}
        return
    from dlnsim.particles.ensemble import local_cluster  # the one LocalCluster configuration

    client = local_cluster()  # options: an enclosing local_cluster_options (the CLI's)
    try:
        yield {"client": client}
    finally:
        client.close()


def _store_flow(store: Path, flow, s_star: float) -> None:
    """Add the deterministic flow and ``sigma_star`` to an ensemble store (for `dlnsim plot`)."""
    import xarray as xr

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


def run_ensemble(params: dict[str, Any], out: Path) -> list[str]:
    """Langevin ensembles at temperature 1/beta (and a temperature scan) vs the gradient flow.

    Parameters
    ----------
    params : dict[str, Any]
        The checked parameters (``analysis.config.SCHEMAS["ensemble"]``).
    out : pathlib.Path
        The output folder; writes the stores ``<name>.zarr``, ``<name>_T<k>.zarr``,
        ``<name>_temperatures.nc`` and the figures ``<name>_trajectories``,
        ``<name>_temperature``.

    Returns
    -------
    list of str
        The summary lines.
    """
    from dlnsim.particles import langevin_ensemble

    from .plots import ensemble_figure, save_figure, temperature_figure

    model = model_from(params)
    name = params["name"]
    s_star = model.equilibrium()
    if params["initial"] is None:
        scale = s_star if s_star > 0 else 1.0
        sigma0 = scale * np.geomspace(3.0, 1 / 3, model.width)
    else:
        sigma0 = np.asarray(params["initial"], dtype=float)
    times = np.linspace(0.0, params["t_end"], params["n_times"])
    burn = times >= params["burn_in"] * times[-1]
    temperatures = params["temperatures"] or [1 / (model.beta * 2**k) for k in range(4)]
    common = {
        "dt": params["dt"],
        "progress": None,
        "chunk_size": params["chunk_size"] or None,
    }
    members = params["members"]
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
    fmt = params["format"]
    save_figure(ensemble_figure(main_ds, flow), out / f"{name}_trajectories", fmt, dpi=120)
    save_figure(temperature_figure(scan), out / f"{name}_temperature", fmt, dpi=120)
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
    """Mean-field PDE vs Langevin particles at beta = b d for growing widths d.

    Parameters
    ----------
    params : dict[str, Any]
        The checked parameters (``analysis.config.SCHEMAS["meanfield"]``).
    out : pathlib.Path
        The output folder; writes ``<name>.nc``, ``<name>_moments.nc`` and the figures
        ``<name>_densities``, ``<name>_moments``.

    Returns
    -------
    list of str
        The summary lines.
    """
    from .particles_vs_pde import moment_comparison, particles_vs_pde
    from .plots import moment_comparison_figure, particles_vs_pde_figure, save_figure

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
    save_figure(particles_vs_pde_figure(ds), out / f"{name}_densities", params["format"], dpi=110)
    moments = moment_comparison(
        widths=params["moment_widths"],
        b=params["b"],
        depth=params["depth"],
        p=params["p"],
        members=params["moment_members"],
        dt=params["moment_dt"],
        seed=params["seed"],
    )
    save(moments, out / f"{name}_moments.nc")
    fig = moment_comparison_figure(moments)
    save_figure(fig, out / f"{name}_moments", params["format"], dpi=110)
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
    lines.append(f"  {'d':>6}{'E[sigma] rel. err':>20}{'SE':>10}{'Var rel. err':>15}{'SE':>10}")
    for k, d in enumerate(moments.width.values):
        v = moments.isel(width=k)
        lines.append(
            f"  {d:>6}{float(v.mean_error):>20.2e}{float(v.mean_error_se):>10.1e}"
            f"{float(v.var_error):>15.2e}{float(v.var_error_se):>10.1e}"
        )
    a = moments.attrs
    lines.append(
        f"  stationary moments vs the PDE equilibrium: E[sigma] error ~ d^-{a['mean_order']:.2f} "
        f"(95% CI [{a['mean_order_low']:.2f}, {a['mean_order_high']:.2f}]), Var ~ "
        f"d^-{a['var_order']:.2f} ([{a['var_order_low']:.2f}, {a['var_order_high']:.2f}])"
    )
    return lines


def run_repulsion(params: dict[str, Any], out: Path) -> list[str]:
    """Repulsion statistics: DLN chamber model vs random-matrix baselines (<r>, gamma, verdict).

    Parameters
    ----------
    params : dict[str, Any]
        The checked parameters (``analysis.config.SCHEMAS["repulsion"]``).
    out : pathlib.Path
        The output folder; writes ``<name>.nc`` and the figure ``<name>``.

    Returns
    -------
    list of str
        The summary lines.
    """
    from .plots import repulsion_figure, save_figure
    from .repulsion_experiment import repulsion_comparison, repulsion_verdict

    name = params["name"]
    systems = params["systems"] or None
    kwargs = {"systems": systems} if systems else {}
    ds = repulsion_comparison(rows=params["rows"], seed=params["seed"], dt=params["dt"], **kwargs)
    save(ds, out / f"{name}.nc")
    save_figure(repulsion_figure(ds), out / name, params["format"], dpi=110)
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
    """Depth sweep toward N = inf in rescaled time: flow, equilibrium, rates (and ensembles).

    Parameters
    ----------
    params : dict[str, Any]
        The checked parameters (``analysis.config.SCHEMAS["depth"]``).
    out : pathlib.Path
        The output folder; writes ``<name>.nc`` and the figures ``<name>_<label>``.

    Returns
    -------
    list of str
        The summary lines.
    """
    from .depth import convergence_orders, depth_sweep
    from .plots import depth_figures, save_figure

    name = params["name"]
    depths = [math.inf if str(n) == "inf" else n for n in params["depths"]]
    taus = np.linspace(0.0, params["tau_end"], params["n_times"])
    ensemble = None
    if params["members"]:
        ensemble = {
            "members": params["members"],
            "dt": params["dt"],
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
        save_figure(fig, out / f"{name}_{label}", params["format"], dpi=120)
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
    # the first paragraph only: the numpy sections of the runners are not --help text
    kind: Experiment(SCHEMAS[kind], run, (run.__doc__ or "").split("\n\n")[0].strip())
    for kind, run in (
        ("flow", run_flow),
        ("ensemble", run_ensemble),
        ("meanfield", run_meanfield),
        ("repulsion", run_repulsion),
        ("depth", run_depth),
    )
}

DEFAULT_EXPERIMENTS: list[dict[str, Any]] = [
    {"kind": "flow"},
    {"kind": "ensemble"},
    {"kind": "meanfield"},
    {"kind": "repulsion"},
    {"kind": "depth"},
]


def resolve(experiment: Mapping[str, Any]) -> tuple[Experiment, dict[str, Any]]:
    """The experiment kind and its full parameters (defaults overlaid), every one checked
    (``analysis.config.validate``).

    Parameters
    ----------
    experiment : Mapping[str, Any]
        One ``[[experiment]]`` table (with ``kind``).

    Returns
    -------
    tuple of (Experiment, dict[str, Any])
        The kind and its normalized parameters.

    Raises
    ------
    ValueError
        As ``analysis.config.validate`` (``bad kind=...``, ``bad <key>=...``, ...).
    """
    kind, params = validate(experiment)
    return EXPERIMENTS[kind], params


def load_config(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a TOML config: ``(experiments, out)``; every experiment is validated up front.

    Parameters
    ----------
    path : str or pathlib.Path
        The UTF-8 TOML file.

    Returns
    -------
    tuple of (list of dict, str or None)
        The ``[[experiment]]`` tables (as written, not normalized) and ``out`` (None if absent).

    Raises
    ------
    ValueError
        As ``analysis.config.read_config`` and ``validate`` (``bad config=...``, ``bad
        kind=...``, ``bad <key>=...``), or ``bad name=...`` for a name used twice.
    """
    experiments, out = read_config(path)
    check_names([validate(exp) for exp in experiments])
    return experiments, out


def config_text(experiments: list[dict[str, Any]]) -> str:
    """The experiments as the text of a TOML config (``load_config`` reads it back).

    Parameters
    ----------
    experiments : list of dict[str, Any]
        The experiment tables (None values are left out).

    Returns
    -------
    str
        One ``[[experiment]]`` block per experiment.
    """

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    blocks = [
        "[[experiment]]\n"
        + "".join(f"{key} = {value(v)}\n" for key, v in exp.items() if v is not None)
        for exp in experiments
    ]
    return "\n".join(blocks)


def run_experiments(
    experiments: list[dict[str, Any]],
    out: str | Path,
    echo: Callable[[str], None] | None = None,
    *,
    config: str | None = None,
) -> list[str]:
    """Run each experiment in turn, writing into ``out``; returns all summary lines.

    Every experiment and ``out`` are checked before anything runs or any file is created.
    Each summary line goes to ``echo`` (default: logged at INFO on the ``dlnsim`` logger).
    Every dataset written carries ``config`` in its ``config`` attribute (default: the
    experiments rendered as TOML by ``config_text``).  Ensemble experiments with ``scheduler =
    "local"`` start one ``local_cluster`` each (options: ``local_cluster_options``).

    Parameters
    ----------
    experiments : list of dict[str, Any]
        The ``[[experiment]]`` tables.
    out : str or pathlib.Path
        The output folder (created; ``summary.txt`` is rewritten).
    echo : callable or None, default None
        ``echo(line)`` for each summary line; None logs them.
    config : str or None, default None
        The text stored in every dataset's ``config`` attribute.

    Returns
    -------
    list of str
        All summary lines, in order.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid experiment (as ``resolve``), a name used twice, or
        ``bad out=...``; and whatever an experiment raises.
    """
    resolved = [resolve(e) for e in experiments]
    check_names(resolved)
    out = check_out(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.txt"
    summary.write_text("")
    all_lines: list[str] = []
    text = config_text(experiments) if config is None else config
    with extra_provenance(config=text):
        for exp, params in resolved:
            lines = exp.run(params, out)
            with summary.open("a") as fh:
                fh.write("\n".join(lines) + "\n")
            for line in lines:
                if echo is None:
                    _log.info("%s", line)
                else:
                    echo(line)
            all_lines.extend(lines)
    return all_lines
