"""Figures of every dlnsim result, as ``matplotlib.figure.Figure`` objects outside pyplot.

The figures are created with ``matplotlib.figure.Figure`` directly, never through
``matplotlib.pyplot``: importing or calling this module does not choose or switch the backend,
registers nothing in pyplot's figure manager (so nothing leaks into a notebook's pyplot state and
nothing needs closing), and a figure is freed when its last reference goes.  In Jupyter a returned
figure displays as the value of a cell; ``save_figure`` writes it in several formats at once.

Every figure with several series keeps them apart without colour: each series has its own
line style and marker (``SERIES_STYLES``).  ``dataset_figures`` redraws the figures of any saved
dlnsim dataset from the dataset alone, chosen by its ``kind`` attribute (``dlnsim plot``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.figure import Figure

from dlnsim.particles import Model, Schatten, gradient_flow
from dlnsim.particles.validation import check_depth, check_positive, fail

from .relaxation import RelaxationRun, relaxation_dataset

__all__ = [
    "SERIES_STYLES",
    "check_formats",
    "dataset_figures",
    "depth_figures",
    "ensemble_figure",
    "flow_figure",
    "particles_vs_pde_figure",
    "phase_portrait",
    "relaxation_figure",
    "repulsion_figure",
    "save_figure",
    "temperature_figure",
]

DEFAULT_STARTS = (
    (0.95, 0.05),
    (0.9, 0.5),
    (0.6, 0.02),
    (0.05, 0.8),
    (0.5, 0.95),
    (0.98, 0.98),
    (0.03, 0.03),
    (0.3, 0.9),
)

_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*", "<", ">", "p", "h")
#: ``(linestyle, marker)`` of series ``k`` of a multi-series figure: pairwise distinct for the
#: first 12 series, so that a figure printed in grey keeps every series apart.
SERIES_STYLES: tuple[tuple[str, str], ...] = tuple(
    (_LINESTYLES[k % len(_LINESTYLES)], _MARKERS[k]) for k in range(len(_MARKERS))
)


def _style(k: int) -> dict[str, str]:
    ls, marker = SERIES_STYLES[k % len(SERIES_STYLES)]
    return {"ls": ls, "marker": marker}


def _markevery(n: int) -> int:
    """About eight markers per line, whatever its length."""
    return max(1, n // 8)


def _new_figure(**kwargs) -> Figure:
    """A figure not registered with pyplot (constrained layout)."""
    return Figure(layout="constrained", **kwargs)


# ----------------------------------------------------------------- formats and saving
def check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Validate a list of figure formats.

    Parameters
    ----------
    formats : str or sequence of str
        Format names such as ``"png"`` or ``"pdf"``, as a sequence or one comma-separated
        string (``"png,pdf"``).  Case-insensitive; a leading dot is ignored.

    Returns
    -------
    tuple of str
        The formats in the given order, lower case, without repetitions.

    Raises
    ------
    ValueError
        ``bad format=...`` if the list is empty or names a format matplotlib cannot write.
    """
    if isinstance(formats, str):
        items = formats.split(",")
    elif isinstance(formats, Sequence) and all(isinstance(f, str) for f in formats):
        items = list(formats)
    else:
        raise fail("format", formats, "must be a comma-separated string or a list of strings")
    known = FigureCanvasBase.get_supported_filetypes()
    out: list[str] = []
    for item in items:
        name = item.strip().lower().lstrip(".")
        if not name:
            continue
        if name not in known:
            raise fail("format", formats, f"unknown format {name!r} (known: {', '.join(known)})")
        if name not in out:
            out.append(name)
    if not out:
        raise fail("format", formats, "must name at least one format, e.g. 'png,pdf'")
    return tuple(out)


def save_figure(
    fig: Figure, stem: str | os.PathLike, formats: str | Sequence[str] = ("png",), dpi: int = 120
) -> list[Path]:
    """Write ``fig`` once per format, as ``<stem>.<format>`` side by side.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to write (any figure, pyplot-managed or not).
    stem : str or path-like
        Path without the format suffix; a suffix that is itself a known format (``pp.png``)
        is replaced.  Missing parent folders are created.
    formats : str or sequence of str, default ("png",)
        Output formats (see ``check_formats``); ``"png,pdf"`` adds vector output beside the PNG.
    dpi : int, default 120
        Resolution of the raster formats.

    Returns
    -------
    list of pathlib.Path
        The files written, one per format.

    Raises
    ------
    ValueError
        ``bad format=...`` or ``bad fig=...`` (not a matplotlib Figure).
    """
    if not isinstance(fig, Figure):
        raise fail("fig", type(fig).__name__, "must be a matplotlib.figure.Figure")
    formats = check_formats(formats)
    stem = Path(stem)
    if stem.suffix.lower().lstrip(".") in FigureCanvasBase.get_supported_filetypes():
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"
        fig.savefig(path, dpi=dpi, format=fmt)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ the gradient flow
def _model_from_attrs(attrs) -> Model | None:
    """The ``Model`` described by dataset attributes, or None (not a Schatten model)."""
    if attrs.get("energy") != "schatten":
        return None
    try:
        return Model(
            int(attrs["width"]),
            check_depth(attrs["depth"] if str(attrs["depth"]) == "inf" else int(attrs["depth"])),
            float(attrs["beta"]),
            Schatten(float(attrs["p"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _time_label(rescaled: bool) -> str:
    return "rescaled time " + r"$\tau = N t$" if rescaled else "time $t$"


def phase_portrait(
    model: Model,
    limit: float = 1.0,
    starts: Sequence[Sequence[float]] = DEFAULT_STARTS,
    t_end: float = 20.0,
    grid: int = 60,
) -> Figure:
    """Streamlines of ``dsigma/dt = -grad_{g^N} F_beta`` in ``(sigma_1, sigma_2)`` (``d = 2``).

    Draws the invariant diagonal, the equilibrium ``sigma_* (1, 1)`` and flow trajectories from
    ``starts`` (computed by ``particles.gradient_flow``), as in Figure 1 of the source.  The
    stream colour is ``log10`` of the speed ``|dsigma/dt|``.

    Parameters
    ----------
    model : dlnsim.particles.Model
        A model of width ``d = 2``.
    limit : float, default 1.0
        Both axes span ``[0, limit]`` (singular values).
    starts : sequence of (float, float), default DEFAULT_STARTS
        Initial points ``(sigma_1, sigma_2)`` of the drawn trajectories (any labelling).
    t_end : float, default 20.0
        Integration time of each trajectory, in ``t`` (in ``tau = N t`` at ``depth = inf``).
    grid : int, default 60
        Streamline grid points per axis.

    Returns
    -------
    matplotlib.figure.Figure
        The phase portrait (one axes and its colour bar).

    Raises
    ------
    ValueError
        If ``model`` is not a width-2 ``Model`` or ``limit``/``t_end`` is not positive.
    """
    if not isinstance(model, Model) or model.width != 2:
        raise fail("model", model, "the phase portrait needs a particles.Model with width 2")
    limit = check_positive(limit, "limit")
    t_end = check_positive(t_end, "t_end")
    lo = limit / grid
    axis = np.linspace(lo, limit, grid)
    s1, s2 = np.meshgrid(axis, axis, indexing="xy")
    points = np.stack([s1, s2], axis=-1)
    # the flow is symmetric under swapping sigma_1, sigma_2: evaluate it off the chamber too
    vel = model.velocity(points, "sigma")
    speed = np.hypot(vel[..., 0], vel[..., 1])
    fig = _new_figure(figsize=(6.2, 5.6))
    ax = fig.subplots()
    log_speed = np.log10(speed + 1e-300)
    norm = matplotlib.colors.Normalize(np.percentile(log_speed, 2), log_speed.max())
    stream = ax.streamplot(
        axis,
        axis,
        vel[..., 0],
        vel[..., 1],
        color=log_speed,
        norm=norm,
        cmap="viridis",
        density=1.3,
        linewidth=0.8,
        arrowsize=0.9,
    )
    fig.colorbar(stream.lines, ax=ax, label=r"$\log_{10}$ speed")
    ax.plot([0, limit], [0, limit], color="0.4", lw=1, ls="--", label="diagonal (invariant)")
    times = np.linspace(0.0, t_end, 400)
    for k, start in enumerate(starts):
        # drawing needs no 1e-10 accuracy: 1e-7 is invisible at any resolution
        ds = gradient_flow(
            model, np.asarray(start, dtype=float), times, progress=False, rtol=1e-7, atol=1e-9
        )
        # gradient_flow sorts into the chamber; plot in the original labelling
        sig = ds.sigma.values if start[0] >= start[1] else ds.sigma.values[:, ::-1]
        ax.plot(
            sig[:, 0], sig[:, 1], color="tab:red", lw=1.6, label="trajectories" if k == 0 else None
        )
        ax.plot(*start, "o", color="tab:red", ms=3)
    s = model.equilibrium()
    ax.plot(s, s, "*", color="black", ms=14, label=rf"equilibrium $\sigma_*={s:.3g}$")
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\sigma_1$")
    ax.set_ylabel(r"$\sigma_2$")
    desc = model.describe()
    ax.set_title(
        rf"gradient flow of $F_\beta$, $(N,p,\beta)=({desc['depth']},"
        rf"{desc.get('p', '?')},{desc['beta']:g})$"
    )
    ax.legend(loc="upper left", fontsize=8)
    return fig


def flow_figure(ds: xr.Dataset) -> Figure:
    """Trajectories ``sigma_i(t)`` of a gradient-flow dataset, one style per member.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``gradient_flow`` dataset: ``sigma`` with dims ``(time, particle)`` or
        ``(member, time, particle)``.  The line ``sigma_*`` is drawn when the attributes
        describe a Schatten model with a positive equilibrium.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: every member's singular values against time.

    Raises
    ------
    ValueError
        If ``ds`` has no ``sigma`` with a ``time`` dimension.
    """
    if not isinstance(ds, xr.Dataset) or "sigma" not in ds or "time" not in ds.sigma.dims:
        raise fail("ds", type(ds).__name__, "must be a gradient_flow dataset with sigma(time)")
    sig = ds.sigma.transpose(..., "time", "particle").values
    sig = sig.reshape(-1, *sig.shape[-2:])  # (member, time, particle)
    t = ds.time.values
    fig = _new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab10"]
    for m in range(sig.shape[0]):
        lines = ax.plot(
            t, sig[m], color=colors(m % 10), lw=1.0, markevery=_markevery(t.size), ms=3, **_style(m)
        )
        lines[0].set_label(f"member {m}")
        for line in lines:
            line.set_gid(f"series:{m}")
    model = _model_from_attrs(ds.attrs)
    if model is not None and model.equilibrium() > 0:
        s = model.equilibrium()
        ax.axhline(s, color="black", lw=0.8, ls=(0, (1, 3)), label=rf"$\sigma_* = {s:.4g}$")
    ax.set_yscale("log")
    ax.set_xlabel(_time_label(bool(ds.attrs.get("rescaled_time", 0))))
    ax.set_ylabel(r"$\sigma_i$")
    ax.set_title("gradient flow of $F_\\beta$: every singular value of every member")
    ax.legend(fontsize=7, ncol=2)
    return fig


def relaxation_figure(
    runs: Sequence[RelaxationRun] | xr.Dataset, model: Model | None = None
) -> Figure:
    """Distance to the equilibrium vs time (log scale) with the predicted rates as slopes.

    Parameters
    ----------
    runs : sequence of RelaxationRun, or xarray.Dataset
        The perturbation runs of ``analysis.relaxation_runs``, or their dataset
        ``analysis.relaxation.relaxation_dataset(runs, model)`` (as stored in a flow dataset).
    model : dlnsim.particles.Model, optional
        The model of the runs; needed with a sequence of runs (it sets the time axis label
        and the dataset attributes), ignored with a dataset.

    Returns
    -------
    matplotlib.figure.Figure
        Measured distances (markers) and ``d_0 exp(-lambda t)`` with the predicted rates
        (lines), one style per mode.

    Raises
    ------
    ValueError
        If ``runs`` is a sequence and ``model`` is not a ``Model``.
    """
    rel = runs if isinstance(runs, xr.Dataset) else relaxation_dataset(runs, model)
    fig = _new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    colors = {"uniform": "tab:blue", "relative": "tab:orange"}
    for k, mode in enumerate(rel.mode.values):
        one = rel.sel(mode=mode)
        t = one.relaxation_time.values
        dist = one.relaxation_distance.values
        predicted = float(one.relaxation_rate_predicted)
        fitted = float(one.relaxation_rate_fitted)
        ls, marker = SERIES_STYLES[k]
        c = colors.get(str(mode), "tab:green")
        ax.semilogy(
            t, dist, marker, ls="none", ms=3, color=c, label=f"{mode} mode (fitted {fitted:.6g})"
        )
        ax.semilogy(
            t,
            dist[0] * np.exp(-predicted * t),
            ls=ls,
            color=c,
            lw=1,
            label=rf"$e^{{-\lambda t}}$, predicted $\lambda$ = {predicted:.6g}",
        )
    ax.set_xlabel(_time_label(bool(rel.attrs.get("rescaled_time", 0))))
    ax.set_ylabel("distance to equilibrium")
    ax.set_title("relaxation toward $\\sigma_*$: the two rates of theory.md section 7")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------- depth sweep
def depth_figures(ds: xr.Dataset) -> dict[str, Figure]:
    """Figures of a depth sweep (``analysis.experiments.depth.depth_sweep``).

    Parameters
    ----------
    ds : xarray.Dataset
        A ``depth_sweep`` dataset: ``sigma (depth, time, particle)`` in rescaled time
        ``tau = N t``, the error variables against ``N = inf`` and, when the sweep ran
        ensembles, ``stationary_spread`` and its standard error.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``"trajectories"``: every depth's flow in rescaled time (one style per depth);
        ``"convergence"``: the errors against ``1/N`` on log-log axes with their fitted orders;
        ``"spread"`` (with ensembles): the stationary spread against ``N`` with ``±2 SE``.
    """
    figs: dict[str, Figure] = {}
    depths = ds.depth.values
    finite = np.isfinite(depths)
    cmap = matplotlib.colormaps["viridis"]
    fig = _new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    t = ds.time.values
    for k, n in enumerate(depths):
        color = "black" if not np.isfinite(n) else cmap(k / max(1, len(depths) - 1))
        label = "N = inf" if not np.isfinite(n) else f"N = {int(n)}"
        lines = ax.plot(
            t,
            ds.sigma.values[k],
            color=color,
            lw=2.0 if not np.isfinite(n) else 1.0,
            ms=3,
            markevery=_markevery(t.size),
            **_style(k),
        )
        lines[0].set_label(label)
        for line in lines:
            line.set_gid(f"series:{k}")
    ax.set_xlabel(r"rescaled time $\tau = N t$")
    ax.set_ylabel(r"$\sigma_i(\tau)$")
    ax.set_title("gradient flow at every depth")
    ax.legend(fontsize=7, ncol=2)
    figs["trajectories"] = fig

    fig = _new_figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    inv = 1.0 / depths[finite]
    k = 0
    for name, label in (
        ("trajectory_error", "trajectory (sup norm)"),
        ("sigma_star_error", r"$\sigma_*$"),
        ("rate_uniform_error", r"$\lambda_{uniform}$"),
        ("rate_relative_error", r"$\lambda_{relative}$"),
        ("stationary_mean_error", "stationary mean"),
    ):
        if name not in ds:
            continue
        err = ds[name].values[finite]
        order = ds.attrs.get("order_" + name.removesuffix("_error"), float("nan"))
        line = ax.loglog(inv, err, ms=4, label=f"{label}: fitted order {order:.3f}", **_style(k))
        line[0].set_gid(f"series:{k}")
        k += 1
    ax.loglog(inv, inv, color="k", ls=(0, (5, 5)), lw=0.8, label="slope 1")
    ax.set_xlabel("1 / N")
    ax.set_ylabel("distance to the N = inf limit")
    ax.set_title("convergence to infinite depth")
    ax.legend(fontsize=7)
    figs["convergence"] = fig

    if "stationary_spread" in ds:
        fig = _new_figure(figsize=(6.4, 4.4))
        ax = fig.subplots()
        x_inf = depths[finite].max() * 2 if finite.any() else 1.0
        x = np.where(finite, depths, x_inf)
        ax.errorbar(
            x,
            ds.stationary_spread.values,
            yerr=2 * ds.stationary_spread_se.values,
            fmt="o",
            capsize=3,
            label="stationary spread (±2 SE)",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(int(n)) if np.isfinite(n) else "inf" for n in depths])
        ax.set_xlabel("depth N")
        ax.set_ylabel(r"mean of $\max\sigma - \min\sigma$")
        ax.set_title("stationary spread of the singular values vs depth")
        ax.legend(fontsize=8)
        figs["spread"] = fig
    return figs


# -------------------------------------------------------------------------- ensembles
def ensemble_figure(
    ensemble: xr.Dataset, flow: xr.Dataset | None = None, n_show: int = 12
) -> Figure:
    """Langevin members, their ensemble mean and the deterministic flow from the same start.

    Members are thin solid lines, the ensemble mean is dashed with square markers and the flow is
    thick and dotted with circles: the three kinds stay apart without colour; the colour marks
    the singular value ``i``.

    Parameters
    ----------
    ensemble : xarray.Dataset
        A ``langevin_ensemble`` dataset with member trajectories ``sigma (member, time,
        particle)``.  Its variable ``flow_sigma (time, particle)`` (the deterministic flow) and
        attribute ``sigma_star`` are used when present (the ensemble experiment stores them).
    flow : xarray.Dataset, optional
        A ``gradient_flow`` dataset from the members' start, used when ``ensemble`` has no
        ``flow_sigma``.  Without either, the flow is integrated from member 0's first state
        when the attributes describe a Schatten model, else not drawn.
    n_show : int, default 12
        Number of member trajectories drawn (the mean uses all members).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: ``sigma_i`` against (rescaled) time.

    Raises
    ------
    ValueError
        If ``ensemble`` has no member trajectories ``sigma``.
    """
    if not isinstance(ensemble, xr.Dataset) or "sigma" not in ensemble:
        raise fail(
            "ensemble",
            type(ensemble).__name__,
            "needs the member trajectories sigma (a langevin_ensemble run with save_members=True)",
        )
    t = ensemble.time.values
    sig = ensemble.sigma.values
    d = sig.shape[-1]
    rescaled = bool(ensemble.attrs.get("rescaled_time", ensemble.attrs.get("depth") == "inf"))
    flow_t, flow_sig = None, None
    if "flow_sigma" in ensemble:
        flow_t, flow_sig = t, ensemble.flow_sigma.values
    elif flow is not None:
        flow_t, flow_sig = flow.time.values, flow.sigma.values
    else:
        model = _model_from_attrs(ensemble.attrs)
        start = sig[0, 0]
        if model is not None and np.all(np.isfinite(start) & (start > 0)):
            ds = gradient_flow(model, start, t, rescaled=rescaled, progress=False)
            flow_t, flow_sig = t, ds.sigma.values
    fig = _new_figure(figsize=(6.6, 4.6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    every = _markevery(t.size)
    for i in range(d):
        c = cmap(i % 10)
        ax.plot(t, sig[:n_show, :, i].T, color=c, lw=0.4, alpha=0.35, ls="-")
        ax.plot(
            t,
            np.nanmean(sig[:, :, i], axis=0),
            ls="--",
            marker="s",
            ms=3,
            markevery=every,
            color=c,
            lw=1.5,
            label="ensemble mean" if i == 0 else None,
        )
        if flow_sig is not None:
            ax.plot(
                flow_t,
                flow_sig[:, i],
                ls=":",
                marker="o",
                ms=4,
                markevery=every,
                color=c,
                lw=2.2,
                label="gradient flow" if i == 0 else None,
            )
    s = ensemble.attrs.get("sigma_star")
    if s is None and "flow_sigma" in ensemble:
        s = ensemble.flow_sigma.attrs.get("sigma_star")
    if s is None:
        model = _model_from_attrs(ensemble.attrs)
        s = model.equilibrium() if model is not None else None
    if s is not None:
        ax.axhline(float(s), color="black", lw=0.8, ls=(0, (1, 3)), label=r"$\sigma_*$")
    ax.set_xlabel(_time_label(rescaled))
    ax.set_ylabel(r"$\sigma_i$")
    shown = min(n_show, sig.shape[0])
    ax.set_title(f"Langevin ensemble ({sig.shape[0]} members, {shown} shown) vs the flow")
    ax.legend(fontsize=8)
    return fig


def temperature_figure(scan: xr.Dataset) -> Figure:
    """Stationary mean and spread of the singular values against the noise temperature.

    Parameters
    ----------
    scan : xarray.Dataset
        A ``temperature_scan`` dataset (the ensemble experiment's ``*_temperatures.nc``):
        ``mean_sigma``, ``spread`` and their standard errors ``*_se`` over ``temperature``,
        and the attribute ``sigma_star``.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels with ``±2 SE`` error bars; ``sigma_*`` as a reference line.
    """
    fig = _new_figure(figsize=(9.0, 3.8))
    axes = fig.subplots(1, 2)
    temp = scan.temperature.values
    axes[0].errorbar(
        temp,
        scan.mean_sigma.values,
        yerr=2 * scan.mean_sigma_se.values,
        fmt="o-",
        capsize=3,
        label="ensemble mean of sigma (±2 SE)",
    )
    axes[0].axhline(float(scan.attrs["sigma_star"]), color="black", ls=":", label=r"$\sigma_*$")
    axes[0].set_xlabel("noise temperature T")
    axes[0].set_ylabel(r"$\langle\sigma\rangle$")
    axes[0].legend(fontsize=8)
    axes[1].errorbar(
        temp,
        scan.spread.values,
        yerr=2 * scan.spread_se.values,
        fmt="o-",
        capsize=3,
        label=r"$\langle\max\sigma-\min\sigma\rangle$ (±2 SE)",
    )
    axes[1].set_xlabel("noise temperature T")
    axes[1].set_ylabel("spread")
    axes[1].legend(fontsize=8)
    fig.suptitle("stationary singular values vs temperature (F_beta fixed)")
    return fig


# ------------------------------------------------------------------------- mean field
def particles_vs_pde_figure(ds: xr.Dataset) -> Figure:
    """PDE densities (lines) over the pooled particle histograms, one panel per width.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``particles_vs_pde`` dataset (``analysis.particles_vs_pde``): per ``(width, time)``
        the PDE ``density`` at the cell centres ``sigma`` (a ``(time, cell)`` coordinate), the
        pooled particle ``samples`` and the Wasserstein-1 distance ``w1``.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per width; one colour and one line style per time, ``W1`` in the legend.
    """
    widths = ds.width.values
    fig = _new_figure(figsize=(3.6 * len(widths), 3.6))
    axes = fig.subplots(1, len(widths), squeeze=False)
    cmap = matplotlib.colormaps["plasma"]
    for a, d in enumerate(widths):
        ax = axes[0, a]
        sub = ds.sel(width=d)
        for k, t in enumerate(sub.time.values):
            c = cmap(k / max(1, sub.time.size - 1) * 0.85)
            x = sub.sigma.values[k]
            ax.hist(sub.samples.values[k], bins=40, density=True, color=c, alpha=0.25)
            line = ax.plot(
                x,
                sub.density.values[k],
                color=c,
                lw=1.5,
                ms=3,
                markevery=_markevery(x.size),
                label=f"t = {t:g}, W1 = {float(sub.w1.values[k]):.1e}",
                **_style(k),
            )
            line[0].set_gid(f"series:{k}")
        lo, hi = np.quantile(sub.samples.values, [0.001, 0.999])
        ax.set_xlim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
        ax.set_title(f"d = {d}, beta = b d")
        ax.set_xlabel(r"$\sigma$")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("density")
    fig.suptitle("mean-field PDE (lines) vs pooled Langevin particles (histograms)")
    return fig


def moment_comparison_figure(ds: xr.Dataset) -> Figure:
    """The particles' stationary moments against the mean-field equilibrium, against ``d``.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``meanfield_moments`` dataset (``analysis.particles_vs_pde.moment_comparison``).

    Returns
    -------
    matplotlib.figure.Figure
        ``|relative error|`` of ``E[sigma]`` and ``Var[sigma]`` on log axes, with 1.96-SE
        error bars and the fitted order in ``1/d`` with its interval in the legend.
    """
    fig = _new_figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    d = ds.width.values
    for k, name in enumerate(("mean", "var")):
        err, se = np.abs(ds[f"{name}_error"].values), ds[f"{name}_error_se"].values
        q, lo, hi = (float(ds.attrs[f"{name}_order{k}"]) for k in ("", "_low", "_high"))
        order = f"{q:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite([lo, hi]).all() else "not resolved"
        label = f"{'E' if name == 'mean' else 'Var'}[sigma]: order {order}"
        ax.errorbar(d, err, yerr=1.96 * se, capsize=3, label=label, **_style(k))
    amp = float(ds.attrs.get("var_amplitude_theory", np.nan))
    if np.isfinite(amp):  # theory.md 11: the Gaussian model's exact variance error
        grid = np.geomspace(d.min(), d.max(), 50)
        ax.plot(
            grid, amp * (grid - 1) / grid**2, "k:", lw=1, label="Var theory r^2(d-1)/((1-r)d^2)"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width d (beta = b d)")
    ax.set_ylabel("|particles / PDE - 1|")
    ax.legend(fontsize=8)
    ax.set_title("stationary moments: particles vs mean-field equilibrium")
    return fig


# -------------------------------------------------------------------------- repulsion
def _step_histogram(ax, values, bins: int, span: tuple[float, float], k: int, **kwargs):
    """A density histogram drawn as one step line in series style ``k`` (a Line2D, so that
    it carries a marker as well as a line style)."""
    values = values[np.isfinite(values)]
    edges = np.linspace(*span, bins + 1)
    if values.size:
        counts, _ = np.histogram(values, bins=edges)
        dens = counts / (values.size * np.diff(edges))
    else:
        dens = np.full(bins, np.nan)
    (line,) = ax.plot(
        edges,
        np.append(dens, dens[-1]),
        drawstyle="steps-post",
        ms=4,
        markevery=(k % 5, _markevery(bins) + 1),
        **_style(k),
        **kwargs,
    )
    line.set_gid(f"series:{k}")
    return line


def repulsion_figure(ds: xr.Dataset) -> Figure:
    """Spacing statistics of every system against the Poisson and Wigner-surmise laws.

    Parameters
    ----------
    ds : xarray.Dataset
        A ``repulsion`` dataset (``analysis.experiments.repulsion.repulsion_comparison``): per
        ``system`` the unfolded ``spacings``, the spacing ``ratios`` (NaN padded), ``gamma``
        and ``mean_ratio``.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels: spacing densities with ``e^{-s}`` and the Wigner surmises ``b = 1, 2,
        4``; the ratio densities; ``P(spacing < s)`` on log-log axes with reference slopes
        ``b + 1``.  Each system has its own line style and marker in every panel.
    """
    from .repulsion import poisson_spacing, wigner_surmise

    fig = _new_figure(figsize=(15, 4.4))
    axes = fig.subplots(1, 3)
    s = np.linspace(0, 4, 400)
    cmap = matplotlib.colormaps["tab10"]
    for k, label in enumerate(ds.system.values):
        c = cmap(k % 10)
        sp = ds.spacings.values[k]
        sp = sp[np.isfinite(sp)]
        ax_label = f"{label}: gamma={float(ds.gamma[k]):.2f}"
        _step_histogram(axes[0], sp, 60, (0.0, 4.0), k, color=c, lw=1, label=ax_label)
        _step_histogram(
            axes[1],
            ds.ratios.values[k],
            40,
            (0.0, 1.0),
            k,
            color=c,
            lw=1,
            label=f"<r> = {float(ds.mean_ratio[k]):.3f}",
        )
        x = np.sort(sp)
        cdf = np.arange(1, x.size + 1) / x.size
        small = (x > 0) & (x < 1.0)
        (line,) = axes[2].loglog(
            x[small], cdf[small], color=c, lw=1, ms=4, markevery=0.1, **_style(k)
        )
        line.set_gid(f"series:{k}")
    axes[0].plot(s, poisson_spacing(s), color="k", ls=(0, (6, 2)), lw=1, label="Poisson e^{-s}")
    for b, ls in ((1, (0, (1, 1))), (2, (0, (4, 1, 1, 1))), (4, (0, (1, 3)))):
        axes[0].plot(
            s, wigner_surmise(s, b), color="black", ls=ls, lw=1, label=f"Wigner surmise b={b}"
        )
    axes[0].set_xlabel("unfolded spacing s")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("r = min(s_n, s_n+1) / max(s_n, s_n+1)")
    axes[1].legend(fontsize=6)
    ref = np.geomspace(1e-3, 1, 50)
    for b in (0, 1, 2, 4):
        axes[2].loglog(ref, 0.5 * ref ** (b + 1), color="0.6", lw=0.6, ls="--")
    axes[2].set_xlabel("s")
    axes[2].set_ylabel("P(spacing < s)  (reference slopes b + 1 = 1, 2, 3, 5)")
    axes[2].set_ylim(1e-5, 1)
    fig.suptitle("singular-value repulsion: DLN chamber model vs random-matrix baselines")
    return fig


# ------------------------------------------------------------------- any saved dataset
def _flow_figures(ds: xr.Dataset) -> dict[str, Figure]:
    figs = {"trajectories": flow_figure(ds)}
    if "relaxation_distance" in ds:
        rel = ds[[v for v in ds.data_vars if v.startswith("relaxation_")]]
        rel.attrs = {"rescaled_time": ds.attrs.get("rescaled_time", 0)}  # same time as the flow
        figs["relaxation"] = relaxation_figure(rel)
    model = _model_from_attrs(ds.attrs)
    if model is not None and model.width == 2:
        s_star = model.equilibrium()
        figs["phase_portrait"] = phase_portrait(model, limit=max(1.0, 3 * s_star))
    return figs


def _ensemble_figures(ds: xr.Dataset) -> dict[str, Figure]:
    return {"trajectories": ensemble_figure(ds)}


#: dataset ``kind`` attribute -> function drawing its figures (name -> Figure)
FIGURES_BY_KIND = {
    "gradient_flow": _flow_figures,
    "langevin_ensemble": _ensemble_figures,
    "temperature_scan": lambda ds: {"temperature": temperature_figure(ds)},
    "depth_sweep": depth_figures,
    "particles_vs_pde": lambda ds: {"densities": particles_vs_pde_figure(ds)},
    "meanfield_moments": lambda ds: {"": moment_comparison_figure(ds)},
    "repulsion": lambda ds: {"": repulsion_figure(ds)},
}


def dataset_figures(ds: xr.Dataset) -> dict[str, Figure]:
    """The figures of a saved dlnsim dataset, drawn from the dataset alone.

    The figures are chosen by the dataset's ``kind`` attribute, set where each dataset is
    built: ``gradient_flow`` (trajectories; the relaxation figure when the flow experiment
    stored its ``relaxation_*`` variables; the phase portrait at ``d = 2``),
    ``langevin_ensemble`` (members, mean and flow), ``temperature_scan``, ``depth_sweep``,
    ``particles_vs_pde`` (the mean-field experiment) and ``repulsion``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset returned by dlnsim or read back with ``dlnsim.load``.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        Figure name suffix -> figure; the suffix is ``""`` for a kind with one main figure
        (the experiments write ``<name>_<suffix>.png``, or ``<name>.png`` for ``""``).

    Raises
    ------
    ValueError
        ``bad kind=...`` if the dataset's kind has no figures (or it has no kind).
    """
    if not isinstance(ds, xr.Dataset):
        raise fail("ds", type(ds).__name__, "must be an xarray.Dataset")
    kind = ds.attrs.get("kind")
    if kind not in FIGURES_BY_KIND:
        raise fail(
            "kind", kind, f"no figures for this dataset kind (known: {', '.join(FIGURES_BY_KIND)})"
        )
    return FIGURES_BY_KIND[kind](ds)
