r"""The matrix-completion experiment: depth, entropy and a real network (issue 15 item 7;
docs/theory.md section 12).

Ground truth: ``Phi = A B^T / c`` with ``A, B`` of shape ``(n, r)`` standard Gaussian and ``c``
such that ``|Phi|_F = n`` (entries of order 1).  Observed: ``m`` entries drawn
uniformly without replacement (one nested sequence of masks: a larger ``m`` observes a superset),
for each ``m`` of ``observations``.  Start: a small balanced start, the end-to-end matrix
``X0 = init^N Q`` with ``Q`` Haar orthogonal (every layer has singular values ``init``).

1. ``beta = inf``: the flow ``dX/dt = -A_X(grad E)`` (``network.gradient_flow``) of the
   completion loss to ``t_end``, for each depth and ``m``: the relative error on the unobserved
   entries and the effective rank (Roy-Vetterli) at ``t_end``.
2. Entropy: at ``m = observations[beta_observation]`` the flow of
   ``F_beta = E + weight sum sigma^2 / 2 - S_N / beta`` (the weak spectral term confines,
   theory.md section 12.7) for each ``beta`` and depth ``N >= 2``: the deterministic flow, not a
   Langevin ensemble.
3. A real network: ``train_factors`` (gradient descent, step ``lr``, ``t_end / lr`` steps) at
   depth ``check_depth`` and that same ``m``, against the flow.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from dlnsim.analysis import experiments as _registry
from dlnsim.analysis.experiments.base import Experiment
from dlnsim.analysis.experiments.params import (
    cli_list,
    documented,
    format_param,
    integer,
    name_param,
    param,
    positive,
    schema_of,
)
from dlnsim.particles import Schatten
from dlnsim.particles.datasets import provenance
from dlnsim.particles.validation import check_integer, check_positive, fail

from .energies import Completion, Spectral
from .factors import balanced_factors, train_factors
from .flow import EFFECTIVE_RANK, gradient_flow
from .model import MatrixModel

__all__ = [
    "EXPERIMENT",
    "FULL",
    "CompletionParams",
    "CompletionResult",
    "figures",
    "run",
    "summary",
]

log = logging.getLogger("dlnsim.network.completion")


def _int_list(value: object, name: str) -> list[int]:
    """A non-empty list (or tuple) of integers >= 1, as a list; raises ``ValueError``."""
    if not isinstance(value, list | tuple) or not value:
        raise fail(name, value, "must be a non-empty list of integers >= 1")
    return [check_integer(v, name, 1) for v in value]


def _increasing(value: object, name: str) -> list[int]:
    """A non-empty increasing list of integers >= 1, as a list; raises ``ValueError``."""
    values = _int_list(value, name)
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise fail(name, values, "must be increasing integers")
    return values


def _positive_list(value: object, name: str) -> list[float]:
    """A list (or tuple) of finite reals > 0, as a list; raises ``ValueError``."""
    if not isinstance(value, list | tuple):
        raise fail(name, value, "must be a list of reals > 0")
    return [check_positive(v, name) for v in value]


@documented
@dataclass(frozen=True)
class CompletionParams:
    """Parameters of the completion experiment (defaults: the small version of the default run;
    ``FULL``: the full size).  Every value is checked at construction (``ValueError`` naming the
    parameter), the same checks as the ``[[experiment]] kind = "completion"`` table and the
    ``dlnsim completion`` options.  ``rtol``/``atol`` are looser than ``gradient_flow``'s
    defaults: the errors reported are ``>= 1e-4`` and the explicit integrator is
    stability-limited, not accuracy-limited."""

    name: str = name_param("completion")
    size: int = param(8, integer(2), int, "matrix size n (the matrices are n x n)")
    rank: int = param(1, integer(1), int, "rank r of the ground truth (<= size)")
    observations: list[int] = param(
        [12, 26, 40], _increasing, cli_list, "numbers m of observed entries, increasing, <= n^2"
    )
    depths: list[int] = param([1, 2, 3, 4], _int_list, cli_list, "depths N at beta = inf")
    init: float = param(
        0.3, positive, float, "singular value of every layer at the start (X0 = init^N Q)"
    )
    t_end: float = param(
        10.0, positive, float, "flow time (= lr * steps of the trained factors)", unit="t"
    )
    betas: list[float] = param(
        [10.0, 1000.0], _positive_list, cli_list, "inverse temperatures of the entropy sweep"
    )
    weight: float = param(
        1e-2, positive, float, "weight of the confining term weight sum sigma^2 / 2"
    )
    beta_observation: int = param(
        2, integer(0), int, "index into observations of the m of the entropy sweep and factors"
    )
    check_depth: int = param(3, integer(1), int, "depth of the trained factors")
    lr: float = param(0.01, positive, float, "gradient-descent step of the factors", unit="t")
    rtol: float = param(1e-6, positive, float, "relative tolerance of the flows")
    atol: float = param(1e-9, positive, float, "absolute tolerance of the flows")
    seed: int = param(0, integer(0), int, "seed of the ground truth, masks and start")
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: ``rank <= size``, ``observations <= size^2``,
        ``beta_observation`` indexes ``observations``, ``lr <= t_end``.  Raises ``ValueError``
        naming the parameter."""
        n = values["size"]
        if values["rank"] > n:
            raise fail("rank", values["rank"], f"must be <= size={n}")
        obs = values["observations"]
        if obs[-1] > n * n:
            raise fail("observations", obs, f"must be increasing integers in [1, {n * n}]")
        k = values["beta_observation"]
        if k >= len(obs):
            raise fail("beta_observation", k, f"must index observations (< {len(obs)})")
        if values["lr"] > values["t_end"]:
            raise fail("lr", values["lr"], "must be <= t_end")

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in schema_of(type(self)).normalize(values, "completion").items():
            object.__setattr__(self, key, value)


#: Arora et al.'s size, ``n = 100, r = 5``: 561 s (9:21) wall on 2 cores, one thread, fits the
#: issue's 10 minutes; its table is in the README ("The matrix level"): depth 3-4 reach error
#: 0.058 / 0.0073 at m = 2000 (20% of the entries) where depth 2 is at 0.57 and depth 1 at 1.00.
FULL = CompletionParams(
    size=100,
    rank=5,
    observations=(2000, 2500, 3000, 4000, 5000),
    betas=(10.0, 100.0, 1000.0, 10000.0),
    beta_observation=2,
)


@dataclass(frozen=True)
class CompletionResult:
    """What ``run`` computed.

    Parameters
    ----------
    params : CompletionParams
        The parameters.
    datasets : dict
        ``"<name>.nc"`` -> the results Dataset.
    """

    params: CompletionParams
    datasets: dict[str, xr.Dataset]

    @property
    def dataset(self) -> xr.Dataset:
        """The results Dataset."""
        return self.datasets[f"{self.params.name}.nc"]


def problem(params: CompletionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth, the order in which entries are observed, and the Haar start rotation.

    Parameters
    ----------
    params : CompletionParams
        Size, rank and seed.

    Returns
    -------
    tuple
        ``Phi (n, n)`` with ``|Phi|_F = n``; ``order (n^2,)`` (the first ``m`` flat indices
        are the observed ones); ``Q (n, n)`` orthogonal.
    """
    rng = np.random.default_rng(params.seed)
    n, r = params.size, params.rank
    phi = rng.standard_normal((n, r)) @ rng.standard_normal((r, n))
    phi *= n / np.linalg.norm(phi)
    order = rng.permutation(n * n)
    q, rr = np.linalg.qr(rng.standard_normal((n, n)))
    return phi, order, q * np.sign(np.diag(rr))


def _mask(order: np.ndarray, m: int, n: int) -> np.ndarray:
    mask = np.zeros(n * n, dtype=bool)
    mask[order[:m]] = True
    return mask.reshape(n, n)


def _final(ds: xr.Dataset) -> tuple[float, float, float]:
    last = ds.isel(time=-1)
    return (
        float(last.error_unobserved),
        float(last.effective_rank),
        float(last.energy),
    )


def run(params: CompletionParams | None = None, out: Path | None = None) -> CompletionResult:
    """Matrix completion with depth and entropy: the matrix flow at ``beta = inf`` per depth and
    number of observations, a ``beta`` sweep with a weak confining term, trained factors.

    Parameters
    ----------
    params : CompletionParams, optional
        Default: ``CompletionParams()`` (the small version).
    out : pathlib.Path, optional
        Unused (nothing is streamed); the caller writes ``result.datasets``.

    Returns
    -------
    CompletionResult
        ``datasets["<name>.nc"]``: ``error``/``effective_rank`` ``(depth, observations)`` at
        ``beta = inf``, ``beta_error``/``beta_rank`` ``(beta_depth, beta)``, the trained
        factors' and the flow's ``check_*`` trajectories, the ground truth and masks' order.

    Raises
    ------
    ValueError
        ``bad params=...`` if it is not a ``CompletionParams``.
    """
    params = CompletionParams() if params is None else params
    if not isinstance(params, CompletionParams):
        raise fail("params", params, "must be a CompletionParams")
    phi, order, q = problem(params)
    n = params.size
    times = np.linspace(0.0, params.t_end, 11)
    obs, depths = params.observations, params.depths
    err = np.full((len(depths), len(obs)), np.nan)
    rank = np.full_like(err, np.nan)
    seconds = np.full_like(err, np.nan)
    for a, depth in enumerate(depths):
        x0 = params.init**depth * q
        for b, m in enumerate(obs):
            model = MatrixModel(n, depth, math.inf, Completion(_mask(order, m, n), phi))
            start = time.perf_counter()
            ds = gradient_flow(model, x0, times, method="RK45", rtol=params.rtol, atol=params.atol)
            seconds[a, b] = time.perf_counter() - start
            err[a, b], rank[a, b], _ = _final(ds)
            log.info("N=%d m=%d: error %.4g, rank %.3g (%.1f s)", depth, m, err[a, b],
                     rank[a, b], seconds[a, b])  # fmt: skip
    m_beta = obs[params.beta_observation]
    mask = _mask(order, m_beta, n)
    beta_depths = tuple(dep for dep in depths if dep >= 2)
    betas = params.betas
    b_err = np.full((len(beta_depths), len(betas)), np.nan)
    b_rank = np.full_like(b_err, np.nan)
    b_energy = np.full_like(b_err, np.nan)
    energy = Completion(mask, phi) + Spectral(Schatten(2), weight=params.weight)
    for a, depth in enumerate(beta_depths):
        x0 = params.init**depth * q
        for b, beta in enumerate(betas):
            model = MatrixModel(n, depth, beta, energy)
            ds = gradient_flow(model, x0, times, method="RK45", rtol=params.rtol, atol=params.atol)
            b_err[a, b], b_rank[a, b], b_energy[a, b] = _final(ds)
            log.info("N=%d beta=%g: error %.4g, rank %.3g", depth, beta, b_err[a, b], b_rank[a, b])
    # a real network against the flow, same m, depth check_depth
    cd = params.check_depth
    x0 = params.init**cd * q
    completion = Completion(mask, phi)
    flow = gradient_flow(
        MatrixModel(n, cd, math.inf, completion), x0, times, method="RK45",
        rtol=params.rtol, atol=params.atol,
    )  # fmt: skip
    steps = round(params.t_end / params.lr)
    trained = train_factors(
        balanced_factors(x0, cd, seed=params.seed), completion, params.t_end / steps, steps,
        save_every=max(1, steps // 10),
    )  # fmt: skip
    trained = trained.interp(time=times) if trained.time.size != times.size else trained
    gap = np.abs(trained.X.values - flow.X.values).max(axis=(-2, -1))
    ds = xr.Dataset(
        {
            "error": (
                ("depth", "observations"),
                err,
                {
                    "long_name": "relative error on the unobserved entries at t_end, beta = inf",
                    "units": "1",
                },
            ),
            "effective_rank": (
                ("depth", "observations"),
                rank,
                {
                    "long_name": "effective rank of X at t_end, beta = inf",
                    "definition": EFFECTIVE_RANK,
                    "units": "1",
                },
            ),
            "seconds": (
                ("depth", "observations"),
                seconds,
                {"long_name": "wall-clock seconds of the flow", "units": "s"},
            ),
            "beta_error": (
                ("beta_depth", "beta"),
                b_err,
                {
                    "long_name": "relative error on the unobserved entries at t_end, finite beta",
                    "units": "1",
                },
            ),
            "beta_rank": (
                ("beta_depth", "beta"),
                b_rank,
                {"long_name": "effective rank at t_end, finite beta", "units": "1"},
            ),
            "beta_energy": (
                ("beta_depth", "beta"),
                b_energy,
                {"long_name": "E(X) at t_end (completion + confining term)", "units": "1"},
            ),
            "check_flow_error": (
                ("check_time",),
                flow.error_unobserved.values,
                {"long_name": "flow: error on the unobserved entries", "units": "1"},
            ),
            "check_trained_error": (
                ("check_time",),
                trained.error_unobserved.values,
                {"long_name": "trained factors: error on the unobserved entries", "units": "1"},
            ),
            "check_flow_rank": (
                ("check_time",),
                flow.effective_rank.values,
                {"long_name": "flow: effective rank", "units": "1"},
            ),
            "check_trained_rank": (
                ("check_time",),
                trained.effective_rank.values,
                {"long_name": "trained factors: effective rank", "units": "1"},
            ),
            "check_gap": (
                ("check_time",),
                gap,
                {"long_name": "max |X_trained - X_flow| (entries)", "units": "1"},
            ),
            "check_balance_defect": (
                ("check_time",),
                trained.balance_defect.values,
                {"long_name": "balance defect of the trained factors", "units": "1"},
            ),
            "target": (("row", "col"), phi, {"long_name": "ground truth Phi", "units": "1"}),
            "order": (
                ("entry",),
                order,
                {"long_name": "flat indices in observation order (first m observed)"},
            ),
        },
        coords={
            "depth": ("depth", np.asarray(depths)),
            "observations": (
                "observations",
                np.asarray(obs),
                {"long_name": "number of observed entries m"},
            ),
            "beta_depth": ("beta_depth", np.asarray(beta_depths, dtype=int)),
            "beta": ("beta", np.asarray(betas), {"long_name": "inverse temperature"}),
            "check_time": ("check_time", times, {"long_name": "time t = step lr"}),
        },
        attrs=provenance(
            kind="completion",
            size=n,
            rank_truth=params.rank,
            init=params.init,
            t_end=params.t_end,
            weight=params.weight,
            beta_observations=m_beta,
            check_depth=cd,
            lr=params.t_end / steps,
            rtol=params.rtol,
            atol=params.atol,
            seed=params.seed,
            integrator="scipy RK45 (network.gradient_flow)",
            entropy_sweep="deterministic flow of F_beta (no Langevin ensemble)",
            effective_rank_definition=EFFECTIVE_RANK,
        ),
    )
    return CompletionResult(params, {f"{params.name}.nc": ds})


def summary(result: CompletionResult) -> list[str]:
    """The summary table: error and rank against observations and depth, and against beta.

    Parameters
    ----------
    result : CompletionResult
        From ``run``.

    Returns
    -------
    list of str
        Lines of text.
    """
    ds, p = result.dataset, result.params
    lines = [
        f"completion: n={p.size}, rank {p.rank}, start X0 = {p.init:g}^N Q, t_end={p.t_end:g}",
        "beta = inf: error on unobserved entries / effective rank at t_end",
        "  m      " + "".join(f"   N={d:<11d}" for d in ds.depth.values),
    ]
    for b, m in enumerate(ds.observations.values):
        cells = "".join(
            f"  {ds.error.values[a, b]:7.4f}/{ds.effective_rank.values[a, b]:5.2f}"
            for a in range(ds.depth.size)
        )
        lines.append(f"  {m:<6d}{cells}")
    lines.append(
        f"entropy (m={ds.attrs['beta_observations']}, + {p.weight:g} sum sigma^2/2): error / rank"
    )
    lines.append("  beta     " + "".join(f"   N={d:<11d}" for d in ds.beta_depth.values))
    for b, beta in enumerate(ds.beta.values):
        cells = "".join(
            f"  {ds.beta_error.values[a, b]:7.4f}/{ds.beta_rank.values[a, b]:5.2f}"
            for a in range(ds.beta_depth.size)
        )
        lines.append(f"  {beta:<8g}{cells}")
    lines.append(
        f"trained factors (N={p.check_depth}, lr={ds.attrs['lr']:g}) vs flow at t_end: error "
        f"{float(ds.check_trained_error[-1]):.4f} vs {float(ds.check_flow_error[-1]):.4f}, "
        f"rank {float(ds.check_trained_rank[-1]):.3f} vs {float(ds.check_flow_rank[-1]):.3f}, "
        f"max |X gap| {float(ds.check_gap.max()):.2e}, balance defect "
        f"{float(ds.check_balance_defect.max()):.2e}"
    )
    return lines


def figures(result: CompletionResult) -> dict[str, Figure]:
    """One figure: error and effective rank against observations (per depth, trained factors
    marked) and against ``beta`` (per depth).

    Parameters
    ----------
    result : CompletionResult
        From ``run``.

    Returns
    -------
    dict
        ``{"<name>": Figure}`` (drawn without pyplot).
    """
    ds, p = result.dataset, result.params
    fig = Figure(figsize=(10, 7.5))
    axes = fig.subplots(2, 2)
    m = ds.observations.values
    color = {int(dep): f"C{k}" for k, dep in enumerate(ds.depth.values)}
    for a, depth in enumerate(ds.depth.values):
        axes[0, 0].plot(m, ds.error.values[a], "o-", color=color[int(depth)], label=f"N={depth}")
        axes[0, 1].plot(m, ds.effective_rank.values[a], "o-", color=color[int(depth)])
    mb = ds.attrs["beta_observations"]
    axes[0, 0].plot([mb], [float(ds.check_trained_error[-1])], "k*", ms=12,
                    label=f"trained factors N={p.check_depth}")  # fmt: skip
    axes[0, 1].plot([mb], [float(ds.check_trained_rank[-1])], "k*", ms=12)
    axes[0, 0].set(xlabel="observed entries m", ylabel="error on unobserved entries",
                   yscale="log", title=f"beta = inf, n = {p.size}, rank {p.rank}")  # fmt: skip
    axes[0, 1].set(xlabel="observed entries m", ylabel="effective rank at t_end")
    for a, depth in enumerate(ds.beta_depth.values):
        style = {"color": color.get(int(depth)), "label": f"N={depth}"}
        axes[1, 0].semilogx(ds.beta.values, ds.beta_error.values[a], "o-", **style)
        axes[1, 1].semilogx(ds.beta.values, ds.beta_rank.values[a], "o-", **style)
    for ax in axes[1]:
        ax.set_xlabel(f"beta (m = {mb}, confining {p.weight:g} sum sigma^2 / 2)")
    axes[1, 0].set(ylabel="error on unobserved entries", yscale="log")
    axes[1, 1].set(ylabel="effective rank at t_end")
    for ax in (axes[0, 0], axes[1, 0]):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {p.name: fig}


#: The ``completion`` experiment kind: ``dlnsim completion``, ``[[experiment]] kind =
#: "completion"`` and, on its defaults, part of the default ``dlnsim run``.  Registered by
#: ``analysis.experiments`` after the built-ins; when this module is imported first, the registry
#: is imported (by the imports above) while this module is still incomplete, so it registers
#: itself here.
EXPERIMENT = Experiment("completion", CompletionParams, run, summary, figures)

if "completion" not in _registry.EXPERIMENTS:
    _registry.register(EXPERIMENT)
