"""Figures (matplotlib, Agg backend): phase portrait and relaxation plot of the gradient flow."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dlnsim.particles import Model, gradient_flow  # noqa: E402
from dlnsim.particles.validation import check_positive, fail  # noqa: E402

from .relaxation import RelaxationRun  # noqa: E402

__all__ = ["phase_portrait", "relaxation_figure"]

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


def phase_portrait(
    model: Model,
    limit: float = 1.0,
    starts: Sequence[Sequence[float]] = DEFAULT_STARTS,
    t_end: float = 20.0,
    grid: int = 60,
) -> Figure:
    """Streamlines of ``dsigma/dt = -grad_{g^N} F_beta`` in ``(sigma_1, sigma_2)`` (``d = 2``).

    Draws the invariant diagonal, the equilibrium ``sigma_* (1, 1)`` and flow trajectories from
    ``starts`` (computed by ``particles.gradient_flow``), as in Figure 1 of the source.
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
    fig, ax = plt.subplots(figsize=(6.2, 5.6), constrained_layout=True)
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


def relaxation_figure(runs: Sequence[RelaxationRun], model: Model) -> Figure:
    """Distance to the equilibrium vs time (log scale) with the predicted rates as slopes."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    colors = {"uniform": "tab:blue", "relative": "tab:orange"}
    for run in runs:
        t = run.dataset.time.values
        c = colors[run.mode]
        ax.semilogy(
            t, run.distance, "o", ms=3, color=c, label=f"{run.mode} mode (fitted {run.fitted:.6g})"
        )
        ax.semilogy(
            t,
            run.distance[0] * np.exp(-run.predicted * t),
            "-",
            color=c,
            lw=1,
            label=rf"$e^{{-\lambda t}}$, predicted $\lambda$ = {run.predicted:.6g}",
        )
    ax.set_xlabel("rescaled time " + r"$\tau$" if model.infinite else "time $t$")
    ax.set_ylabel("distance to equilibrium")
    ax.set_title("relaxation toward $\\sigma_*$: the two rates of MODEL section 7")
    ax.legend(fontsize=8)
    return fig


def depth_figures(ds) -> dict[str, Figure]:
    """Figures of a depth sweep (``analysis.depth.depth_sweep``): trajectories of all depths in
    rescaled time, error vs ``N`` on log-log axes with fitted slopes, and (when the sweep has
    ensembles) the stationary spread vs depth with error bars."""
    figs: dict[str, Figure] = {}
    depths = ds.depth.values
    finite = np.isfinite(depths)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    for k, n in enumerate(depths):
        color = "black" if not np.isfinite(n) else cmap(k / max(1, len(depths) - 1))
        label = "N = inf" if not np.isfinite(n) else f"N = {int(n)}"
        lines = ax.plot(
            ds.time.values, ds.sigma.values[k], color=color, lw=2.0 if not np.isfinite(n) else 1.0
        )
        lines[0].set_label(label)
    ax.set_xlabel(r"rescaled time $\tau = N t$")
    ax.set_ylabel(r"$\sigma_i(\tau)$")
    ax.set_title("gradient flow at every depth")
    ax.legend(fontsize=7, ncol=2)
    figs["trajectories"] = fig

    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    inv = 1.0 / depths[finite]
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
        ax.loglog(inv, err, "o-", ms=4, label=f"{label}: fitted order {order:.3f}")
    ax.loglog(inv, inv, "k--", lw=0.8, label="slope 1")
    ax.set_xlabel("1 / N")
    ax.set_ylabel("distance to the N = inf limit")
    ax.set_title("convergence to infinite depth")
    ax.legend(fontsize=7)
    figs["convergence"] = fig

    if "stationary_spread" in ds:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
        x = np.where(finite, depths, np.nan)
        x_inf = depths[finite].max() * 2 if finite.any() else 1.0
        x = np.where(finite, x, x_inf)
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


def ensemble_figure(ensemble, flow, n_show: int = 12) -> Figure:
    """Langevin members (thin), their ensemble mean (dashed) and the deterministic flow from
    the same start (thick), one colour per singular value."""
    fig, ax = plt.subplots(figsize=(6.6, 4.6), constrained_layout=True)
    t = ensemble.time.values
    sig = ensemble.sigma.values
    d = sig.shape[-1]
    cmap = plt.get_cmap("tab10")
    for i in range(d):
        c = cmap(i % 10)
        ax.plot(t, sig[:n_show, :, i].T, color=c, lw=0.4, alpha=0.35)
        ax.plot(
            t,
            np.nanmean(sig[:, :, i], axis=0),
            "--",
            color=c,
            lw=1.5,
            label="ensemble mean" if i == 0 else None,
        )
        ax.plot(
            flow.time.values,
            flow.sigma.values[:, i],
            "-",
            color=c,
            lw=2.2,
            label="gradient flow" if i == 0 else None,
        )
    s = ensemble.attrs.get("sigma_star")
    if s is not None:
        ax.axhline(float(s), color="black", lw=0.8, ls=":", label=r"$\sigma_*$")
    ax.set_xlabel(
        "rescaled time " + r"$\tau$" if ensemble.attrs.get("depth") == "inf" else "time $t$"
    )
    ax.set_ylabel(r"$\sigma_i$")
    ax.set_title(f"Langevin ensemble ({sig.shape[0]} members, {n_show} shown) vs the flow")
    ax.legend(fontsize=8)
    return fig


def temperature_figure(scan) -> Figure:
    """Stationary mean and spread of the singular values against the noise temperature."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8), constrained_layout=True)
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


def particles_vs_pde_figure(ds) -> Figure:
    """PDE densities (lines) over the pooled particle histograms, one panel per width, one
    colour per time; the W1 distance in each panel's legend."""
    widths = ds.width.values
    fig, axes = plt.subplots(
        1, len(widths), figsize=(3.6 * len(widths), 3.6), constrained_layout=True, squeeze=False
    )
    cmap = plt.get_cmap("plasma")
    for a, d in enumerate(widths):
        ax = axes[0, a]
        sub = ds.sel(width=d)
        for k, t in enumerate(sub.time.values):
            c = cmap(k / max(1, sub.time.size - 1) * 0.85)
            x = sub.sigma.values[k]
            ax.hist(sub.samples.values[k], bins=40, density=True, color=c, alpha=0.25)
            ax.plot(
                x,
                sub.density.values[k],
                color=c,
                lw=1.5,
                label=f"t = {t:g}, W1 = {float(sub.w1.values[k]):.1e}",
            )
        lo, hi = np.quantile(sub.samples.values, [0.001, 0.999])
        ax.set_xlim(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
        ax.set_title(f"d = {d}, beta = b d")
        ax.set_xlabel(r"$\sigma$")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("density")
    fig.suptitle("mean-field PDE (lines) vs pooled Langevin particles (histograms)")
    return fig


def moment_comparison_figure(ds) -> Figure:
    """|relative error| of the particles' stationary E[sigma] and Var[sigma] against the PDE
    equilibrium, against d on log axes, with 1.96-SE error bars and the fitted order."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0), constrained_layout=True)
    d = ds.width.values
    for name, marker in (("mean", "o"), ("var", "s")):
        err, se = np.abs(ds[f"{name}_error"].values), ds[f"{name}_error_se"].values
        q, lo, hi = (ds.attrs[f"{name}_order{k}"] for k in ("", "_low", "_high"))
        label = f"{'E' if name == 'mean' else 'Var'}[sigma]: order {q:.2f} [{lo:.2f}, {hi:.2f}]"
        ax.errorbar(d, err, yerr=1.96 * se, marker=marker, ls="-", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width d (beta = b d)")
    ax.set_ylabel("|particles / PDE - 1|")
    ax.legend(fontsize=8)
    ax.set_title("stationary moments: particles vs mean-field equilibrium")
    return fig


def repulsion_figure(ds) -> Figure:
    """Spacing histograms of every system with the Poisson and Wigner-surmise curves, the
    spacing-ratio distributions, and the small-spacing CDFs on log-log axes."""
    from .repulsion import poisson_spacing, wigner_surmise

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    s = np.linspace(0, 4, 400)
    cmap = plt.get_cmap("tab10")
    for k, label in enumerate(ds.system.values):
        c = cmap(k % 10)
        sp = ds.spacings.values[k]
        sp = sp[np.isfinite(sp)]
        ax_label = f"{label}: gamma={float(ds.gamma[k]):.2f}"
        axes[0].hist(
            sp, bins=60, range=(0, 4), density=True, histtype="step", color=c, label=ax_label
        )
        r = ds.ratios.values[k]
        axes[1].hist(
            r[np.isfinite(r)],
            bins=40,
            range=(0, 1),
            density=True,
            histtype="step",
            color=c,
            label=f"<r> = {float(ds.mean_ratio[k]):.3f}",
        )
        x = np.sort(sp)
        cdf = np.arange(1, x.size + 1) / x.size
        small = (x > 0) & (x < 1.0)
        axes[2].loglog(x[small], cdf[small], color=c, lw=1)
    axes[0].plot(s, poisson_spacing(s), "k--", lw=1, label="Poisson e^{-s}")
    for b, ls in ((1, ":"), (2, "-."), (4, (0, (1, 3)))):
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
