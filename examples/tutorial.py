# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # dlnsim tutorial: the singular values of a deep linear network as particles
#
# A deep linear network multiplies `N` matrices, `X = W_N ... W_1`.  Many factorizations give
# the same end-to-end matrix; counting them gives a Boltzmann entropy `S_N` that depends only on
# the singular values `sigma_1 >= ... >= sigma_d > 0` of `X`.  dlnsim treats these singular
# values as particles driven by the free energy
#
#     F_beta(sigma) = E(sigma) - S_N(sigma) / beta
#
# through the DLN metric (`docs/theory.md`, docs/theory.md).  This tutorial walks through
#
# 1. the **model**: entropy, equilibrium `sigma_*`, linear relaxation rates;
# 2. the deterministic **gradient flow** and its measured relaxation rates;
# 3. a **Langevin ensemble** at temperature `1/beta`, against the flow;
# 4. the **repulsion verdict**: singular values of the DLN do not repel, unlike random-matrix
#    eigenvalues;
# 5. the **infinite-depth** limit `N -> inf` in rescaled time `tau = N t`.
#
# It runs as a plain script (`python examples/tutorial.py`) or, through jupytext, as a
# notebook.  Figures are written into `tutorial-figures/` in the working directory and, in a
# notebook, shown below each cell.  `DLNSIM_TUTORIAL_SIZE=small` runs every step at a small
# size (what the test suite does); the default `full` size gives publication-quality statistics
# in a few minutes.

# %%
import math
import os
from pathlib import Path

import numpy as np

from dlnsim.analysis.experiments.depth import convergence_orders, depth_sweep
from dlnsim.analysis.experiments.repulsion import repulsion_comparison
from dlnsim.analysis.plots import (
    depth_figures,
    ensemble_figure,
    flow_figure,
    relaxation_figure,
    repulsion_figure,
    save_figure,
)
from dlnsim.analysis.relaxation import relaxation_runs
from dlnsim.particles import Model, Schatten, gradient_flow, langevin_ensemble

SIZE = os.environ.get("DLNSIM_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"bad DLNSIM_TUTORIAL_SIZE={SIZE!r}: must be 'small' or 'full'")
SMALL = SIZE == "small"
FIGURES = Path("tutorial-figures")
FIGURES.mkdir(exist_ok=True)
print(f"tutorial size: {SIZE}; figures in {FIGURES}/")

# %% [markdown]
# ## 1. The model
#
# `Model(width, depth, beta, energy)` holds the mathematics: here `d = 4` singular values, depth
# `N = 10`, inverse temperature `beta = 5` and the Schatten-2 energy `e(s) = s^2 / 2`.  The
# entropy has a pair term `psi_N(rho_i - rho_j)` in `rho = log sigma` that is **smooth and
# finite where two singular values meet**: there is no `log |sigma_i - sigma_j|` singularity as
# in a Coulomb gas.  The unique equilibrium has all singular values equal to `sigma_*`, the root
# of `sigma e'(sigma) = (d - 1)(N - 1) / (2 N beta)`; near it the flow relaxes along a uniform
# mode `(1, ..., 1)` and a `(d - 1)`-fold relative mode, at the rates of theory.md section 7.

# %%
model = Model(4, 10, 5.0, Schatten(2))
s_star = model.equilibrium()
c = (model.width - 1) * (model.depth - 1) / (2 * model.depth * model.beta)
rate_uniform, rate_relative = model.relaxation_rates()
print(f"sigma_* = {s_star:.12g}  (closed form sqrt(c) = {math.sqrt(c):.12g})")
print(f"predicted relaxation rates: uniform {rate_uniform:.8g}, relative {rate_relative:.8g}")
# the entropy is finite on the diagonal sigma_1 = sigma_2: no repulsion
print("S_N at sigma_1 = sigma_2:", model.entropy([1.0, 1.0, 0.5, 0.2]))

# %% [markdown]
# ## 2. The deterministic gradient flow
#
# `gradient_flow` integrates `dsigma_i/dt = -N sigma_i^(2 - 2/N) dF/dsigma_i` (in `rho = log
# sigma`, with a stiff implicit method) and returns an `xarray.Dataset` with dims
# `(time, particle)`.  From a spread start every singular value converges to `sigma_*`.
# `relaxation_runs` starts the flow `1e-5` away from `sigma_*` along each mode and fits the decay
# rate, to compare with the predicted rates above.

# %%
sigma0 = s_star * np.geomspace(3.0, 1 / 3, model.width)
times = np.linspace(0.0, 4.0 if SMALL else 10.0, 41 if SMALL else 201)
flow = gradient_flow(model, sigma0, times, progress=False)
final = flow.sigma.isel(time=-1).values
print(f"sigma(t = {times[-1]:g}) = {np.array2string(final, precision=8)}")
print(f"max |sigma_i - sigma_*| at the end: {np.max(np.abs(final - s_star)):.2e}")
runs = relaxation_runs(model)
for run in runs:
    print(f"{run.mode:>8} mode: predicted {run.predicted:.8g}, fitted {run.fitted:.8g}")
fig = flow_figure(flow)
save_figure(fig, FIGURES / "flow")
fig  # noqa: B018  (a notebook shows the figure here)

# %%
fig = relaxation_figure(runs, model)
save_figure(fig, FIGURES / "relaxation")
fig  # noqa: B018  (a notebook shows the figure here)

# %% [markdown]
# ## 3. A Langevin ensemble
#
# At temperature `T = 1/beta` the particles follow the Langevin dynamics of theory.md section 9,
# whose stationary law is `exp(-beta F_beta)` with respect to the Riemannian volume.
# `langevin_ensemble` runs independent members from one seed (results are bitwise reproducible
# whatever the workers or chunking); `scheduler="serial"` runs in this process.  Passing
# `store="ensemble.zarr"` would stream the members into a Zarr store that `--resume` can finish.
# The ensemble mean is not `sigma_*`: at `T = 1/beta` the stationary law spreads the particles
# and shifts their mean (the temperature scan of `dlnsim run` shows the shift vanishing as
# `T -> 0`).  The flow, members and mean are drawn together.

# %%
members = 16 if SMALL else 256
t_ens = np.linspace(0.0, 2.0 if SMALL else 5.0, 21 if SMALL else 51)
ens = langevin_ensemble(
    model, sigma0, t_ens, members, dt=2e-3, seed=1, scheduler="serial", progress=False
)
late = ens.sigma.values[:, t_ens >= t_ens[-1] / 2]  # (member, time, particle)
per_member = late.mean(axis=(1, 2))
se = per_member.std(ddof=1) / math.sqrt(members)
print(f"{members} members, {int(ens.failed.values.sum())} failed")
print(f"stationary mean of sigma = {per_member.mean():.5f} +- {se:.5f} (sigma_* = {s_star:.5f})")
fig = ensemble_figure(ens, gradient_flow(model, sigma0, t_ens, progress=False))
save_figure(fig, FIGURES / "ensemble")
fig  # noqa: B018  (a notebook shows the figure here)

# %% [markdown]
# ## 4. The repulsion verdict
#
# Random-matrix eigenvalues repel: the density of small nearest-neighbour spacings vanishes like
# `s^b` (`b = 1, 2, 4` for the Gaussian ensembles).  The DLN entropy has no such singularity.
# `repulsion_comparison` samples the DLN chamber model and random-matrix baselines, unfolds the
# spectra and fits the exponent `gamma` of `P(spacing < s) ~ s^(gamma + 1)` with a bootstrap
# interval; it also reports the spacing-ratio mean `<r>` (Poisson 0.386, GOE 0.531).  The
# verdict: the chamber model's `gamma` is consistent with 0, each baseline's with its `b`.

# %%
systems = [
    {"kind": "chamber", "width": 8 if SMALL else 16, "depth": 4, "beta": 1.0},
    {"kind": "gbe", "width": 8 if SMALL else 16, "b": 1.0},
    {"kind": "poisson", "width": 8 if SMALL else 16},
]
rep = repulsion_comparison(systems, rows=60 if SMALL else 600, seed=0, n_boot=100)
for k, label in enumerate(rep.system.values):
    print(
        f"{label:<36} <r> = {float(rep.mean_ratio[k]):.3f}  gamma = {float(rep.gamma[k]):6.3f} "
        f"95% CI ({float(rep.gamma_low[k]):.2f}, {float(rep.gamma_high[k]):.2f}), "
        f"expected {float(rep.gamma_expected[k]):g}"
    )
chamber = 0
no_repulsion = float(rep.gamma_low[chamber]) <= 0 <= float(rep.gamma_high[chamber])
print("verdict: DLN chamber model", "shows no repulsion" if no_repulsion else "REPELS")
fig = repulsion_figure(rep)
save_figure(fig, FIGURES / "repulsion")
fig  # noqa: B018  (a notebook shows the figure here)

# %% [markdown]
# ## 5. Infinite depth
#
# In rescaled time `tau = N t` the flow converges as `N -> inf` to the flow of
# `F_inf = E - S_inf / beta`, which dlnsim integrates directly (`depth = math.inf`).
# `depth_sweep` runs the flow at several depths and measures the distance to the `N = inf`
# trajectory, equilibrium and rates; the fitted orders in `1/N` should all be close to 1.

# %%
depths = [16, 32, 64, math.inf] if SMALL else [4, 8, 16, 32, 64, 128, 256, math.inf]
sweep = depth_sweep(
    6,
    2.0,
    2.0,
    [2.0, 1.37, 0.94, 0.64, 0.44, 0.3],
    np.linspace(0.0, 3.0, 16 if SMALL else 31),
    depths,
)
for key, value in convergence_orders(sweep).items():
    print(f"fitted {key.removeprefix('order_'):<16} order {value:.3f} in 1/N (expected 1)")
figs = depth_figures(sweep)
for name, fig in figs.items():
    save_figure(fig, FIGURES / f"depth_{name}")
figs["convergence"]  # noqa: B018

# %% [markdown]
# ## Where next
#
# - `dlnsim run` runs the five experiments of this tutorial at full size and writes datasets,
#   figures and a summary; `dlnsim plot PATH` redraws the figures of any saved dataset.
# - `save(ds, "x.nc")` / `load("x.nc")` keep every dataset with its parameters, seed and
#   versions in the attributes.
# - The mean-field density limit `d -> inf` is in `dlnsim.meanfield` (`dlnsim meanfield`).

# %%
print("tutorial done:", ", ".join(sorted(p.name for p in FIGURES.glob("*.png"))))
