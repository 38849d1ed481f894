"""The repulsion comparison: DLN chamber model against random-matrix baselines (theory.md
sections 9, 10).

Each *system* gives samples of stationary configurations, one row per configuration:

- ``chamber``: Langevin ensembles of the DLN chamber model (``particles.langevin_ensemble``) at
  ``(d, N, beta)``, Schatten-p energy; rows are the states of every member at ``rows_per_member``
  save times after the burn-in, spaced by several relaxation times (``1/lambda_relative``);
- ``matrix_variant`` / ``dyson``: the same on the random-matrix baselines of
  ``particles.baselines`` (the DLN entropy plus the SVD-orbit term; Dyson Brownian motion),
  with Metropolis-adjusted steps (``metropolis=True``: exact stationary law at any ``dt``; the
  plain split step under-samples gaps below ``sqrt(2 h kappa)``, which biases ``gamma`` up);
- ``ginibre``: exact singular values of ``d x d`` real Gaussian matrices (variance ``1/beta``):
  the stationary law of the ``N = 1`` matrix variant with ``E = 1/2 sum sigma^2``;
- ``gbe``: exact Gaussian ``b``-ensembles (Dumitriu-Edelman), the law of Dyson's motion;
- ``poisson``: independent points (the no-interaction null).

For every system: the mean consecutive-spacing ratio ``<r>`` with its standard error, the
repulsion exponent ``gamma`` with a 95% bootstrap interval (``analysis.repulsion``), and the
fraction of unfolded spacings below 0.1 mean spacing.  The verdict for the chamber model is
whether ``gamma``'s interval contains 0 (no repulsion) while the baselines' contain their ``b``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.particles import Model, Schatten, langevin_ensemble
from dlnsim.particles.datasets import provenance
from dlnsim.particles.rmt import gaussian_beta_ensemble, ginibre_singular_values
from dlnsim.particles.validation import check_depth, check_integer, check_positive, fail

from ..repulsion import (
    mean_spacing_ratio,
    repulsion_exponent,
    small_spacing_fraction,
    spacing_ratios,
    spacings,
)
from .base import Experiment
from .params import (
    check_memory,
    check_steps,
    documented,
    format_param,
    integer,
    name_param,
    param,
    positive,
)

__all__ = [
    "DEFAULT_SYSTEMS",
    "EXPERIMENT",
    "RepulsionParams",
    "RepulsionResult",
    "RepulsionVerdict",
    "check_system",
    "decorrelation_time",
    "figures",
    "repulsion_comparison",
    "repulsion_verdict",
    "run",
    "summary",
    "system_samples",
]

DEFAULT_SYSTEMS: list[dict[str, Any]] = [
    {"kind": "chamber", "width": 16, "depth": 4, "beta": 1.0},
    {"kind": "chamber", "width": 16, "depth": "inf", "beta": 1.0},
    {"kind": "dyson", "width": 16, "b": 2.0},
    {"kind": "ginibre", "width": 16, "beta": 1.0},
    {"kind": "gbe", "width": 16, "b": 1.0},
    {"kind": "gbe", "width": 16, "b": 2.0},
    {"kind": "gbe", "width": 16, "b": 4.0},
    {"kind": "poisson", "width": 16},
]


#: Baselines' proximal gap floor sqrt(2 h kappa) as a fraction of the typical gap (see
#: ``system_samples``).  The adjusted chain is exact, but it enters gaps below the floor only
#: slowly: at 0.1 Dyson b = 1 (n = 16, 2400 rows) gave gamma 1.275 (1.09, 1.45).
RESOLUTION = 0.05


#: The keys of each system kind (besides ``kind``).
SYSTEM_KEYS: dict[str, tuple[str, ...]] = {
    "chamber": ("width", "depth", "beta"),
    "matrix_variant": ("width", "depth", "beta"),
    "dyson": ("width", "b"),
    "ginibre": ("width", "beta"),
    "gbe": ("width", "b"),
    "poisson": ("width",),
}


def check_system(system: object, name: str = "system") -> dict[str, Any]:
    """A system table checked and normalized: a known ``kind``, exactly its keys, ``width``
    an integer >= 3 (spacing ratios need three particles), ``depth`` an integer >= 1 or
    ``inf``, ``beta`` and ``b`` positive.  Errors name ``<name>.<key>``.

    Parameters
    ----------
    system : object
        The table: a mapping with ``kind`` (a key of ``SYSTEM_KEYS``) and that kind's keys.
    name : str, default "system"
        Its name, prefixing the keys in error messages.

    Returns
    -------
    dict[str, Any]
        ``kind``, ``width`` (int) and, per kind, ``depth`` (int or ``math.inf``), ``beta``,
        ``b`` (float).

    Raises
    ------
    ValueError
        ``bad <name>=...`` (not a table, a key missing), ``bad <name>.kind=...``,
        ``bad <name>.<key>=...`` (unknown key or invalid value), or the ``Model`` check of a
        chamber / matrix-variant system.
    """
    if not isinstance(system, Mapping):
        raise fail(name, system, "must be a table with a kind")
    kind = system.get("kind")
    if not isinstance(kind, str) or kind not in SYSTEM_KEYS:
        raise fail(f"{name}.kind", kind, f"must be one of {', '.join(SYSTEM_KEYS)}")
    keys = SYSTEM_KEYS[kind]
    for key in system:
        if key != "kind" and key not in keys:
            raise fail(
                f"{name}.{key}",
                system[key],
                f"is not a key of a {kind} system (keys: {', '.join(keys)})",
            )
    for key in keys:
        if key not in system:
            raise fail(name, dict(system), f"a {kind} system needs {key}")
    out: dict[str, Any] = {
        "kind": kind,
        "width": check_integer(system["width"], f"{name}.width", 3),
    }
    if "depth" in keys:
        out["depth"] = check_depth(system["depth"], f"{name}.depth")
    for key in ("beta", "b"):
        if key in keys:
            out[key] = check_positive(system[key], f"{name}.{key}")
    if kind in ("chamber", "matrix_variant"):
        Model(out["width"], out["depth"], out["beta"], Schatten(2.0))
    return out


def decorrelation_time(system: Mapping[str, Any], p: float = 2.0) -> float:
    """The spacing of a system's saved rows (a checked system, Langevin kinds): 3 relaxation
    times ``3 / lambda_relative`` of the chamber model (1 for Dyson's motion).

    Parameters
    ----------
    system : Mapping[str, Any]
        A system checked by ``check_system``.
    p : float, default 2.0
        Exponent of the Schatten energy of the chamber model.

    Returns
    -------
    float
        The spacing, in the time unit of the system's runs (rescaled ``tau = N t`` at
        ``N = inf``).
    """
    if system["kind"] == "dyson":
        return 1.0
    depth = math.inf if str(system["depth"]) == "inf" else system["depth"]
    base = Model(system["width"], depth, float(system["beta"]), Schatten(p))
    rates = base.relaxation_rates(rescaled=base.infinite) if base.equilibrium() > 0 else (1, 1)
    return 3.0 / min(r for r in rates if r > 0)


def _label(system: dict[str, Any]) -> str:
    kind = system["kind"]
    if kind == "chamber":
        return f"DLN chamber d={system['width']} N={system['depth']} beta={system['beta']:g}"
    if kind == "matrix_variant":
        return f"matrix variant d={system['width']} N={system['depth']} beta={system['beta']:g}"
    if kind == "dyson":
        return f"Dyson BM n={system['width']} b={system['b']:g}"
    if kind == "ginibre":
        return f"real Ginibre d={system['width']} (exact)"
    if kind == "gbe":
        names = {1.0: "GOE", 2.0: "GUE", 4.0: "GSE"}
        name = names.get(float(system["b"]), "G b-E")
        return f"{name} n={system['width']} b={system['b']:g} (exact)"
    return f"independent points n={system['width']}"


def expected_exponent(system: dict[str, Any]) -> float:
    """The repulsion exponent each system should show: 0 (chamber, independent points),
    1 (matrix variant, Ginibre: linear repulsion), ``b`` (Dyson, Gaussian b-ensembles).

    Parameters
    ----------
    system : dict
        One system: ``{"kind": "chamber" | "matrix_variant", "width", "depth", "beta"}``,
        ``{"kind": "dyson" | "gbe", "width", "b"}``, ``{"kind": "ginibre", "width", "beta"}``
        or ``{"kind": "poisson", "width"}``.

    Returns
    -------
    float
        The expected exponent ``gamma`` of ``p(s) ~ s^gamma``.
    """
    kind = system["kind"]
    if kind in ("chamber", "poisson"):
        return 0.0
    if kind in ("matrix_variant", "ginibre"):
        return 1.0
    return float(system["b"])


def system_samples(
    system: dict[str, Any],
    rows: int,
    seed: int,
    dt: float = 1e-3,
    rows_per_member: int = 4,
    p: float = 2.0,
    info: dict[str, float] | None = None,
    resolution: float = RESOLUTION,
) -> np.ndarray:
    """``(rows, width)`` stationary configurations of one system (see the module docstring).

    Step sizes: the chamber model uses ``min(dt, decorrelation / 50)`` (smooth forces; first
    order bias).  The SDE baselines use Metropolis-adjusted steps (exact stationary law) of size
    ``min(decorrelation / 50, resolving_step(pilot, resolution))``: a pilot of 8 members run
    over the burn-in gives the typical gap, and the step keeps the proximal gap floor at
    ``resolution`` of it, so that the adjusted chain mixes into the small gaps the exponent
    estimator looks at.  ``info`` (if given) receives the
    ``step`` used and, for the baselines, the mean Metropolis ``acceptance`` rate.

    Parameters
    ----------
    system : dict
        One system: ``{"kind": "chamber" | "matrix_variant", "width", "depth", "beta"}``,
        ``{"kind": "dyson" | "gbe", "width", "b"}``, ``{"kind": "ginibre", "width", "beta"}``
        or ``{"kind": "poisson", "width"}``.
    rows : int
        Number of configurations.
    seed : int
        Root seed (Langevin members, or the exact sampler's generator).
    dt : float, default 1e-3
        Largest time step of the chamber model.
    rows_per_member : int, default 4
        Configurations saved per Langevin member, one decorrelation time apart.
    p : float, default 2.0
        Schatten exponent of the chamber model and matrix variant.
    info : dict, optional
        Receives ``step`` and ``acceptance``.
    resolution : float, default RESOLUTION
        Gap-floor fraction of the baselines' steps (``resolving_step``).

    Returns
    -------
    numpy.ndarray
        ``(rows, width)`` configurations, rows sorted ascending.

    Raises
    ------
    ValueError
        For an unknown kind or invalid parameters.
    """
    kind = system.get("kind")
    d = check_integer(system.get("width"), "width", 3)
    rng = np.random.default_rng(seed)
    info = {} if info is None else info
    info.update(step=math.nan, acceptance=math.nan)
    if kind == "ginibre":
        return ginibre_singular_values(d, rows, rng, variance=1.0 / float(system["beta"]))
    if kind == "gbe":
        return gaussian_beta_ensemble(d, float(system["b"]), rows, rng)
    if kind == "poisson":
        return np.sort(rng.standard_normal((rows, d)), axis=-1)
    if kind not in ("chamber", "matrix_variant", "dyson"):
        raise fail("kind", kind, "must be chamber, matrix_variant, dyson, ginibre, gbe or poisson")
    if kind == "dyson":
        from dlnsim.particles.baselines import DysonModel

        model = DysonModel(d, float(system["b"]))
        start = np.linspace(-2.0, 2.0, d)[::-1] * math.sqrt(d)
        decorrelation = 1.0
    else:
        depth = math.inf if str(system["depth"]) == "inf" else system["depth"]
        if kind == "chamber":
            model = Model(d, depth, float(system["beta"]), Schatten(p))
        else:
            from dlnsim.particles.baselines import MatrixVariant

            model = MatrixVariant(d, depth, float(system["beta"]), Schatten(p))
        base = Model(d, depth, float(system["beta"]), Schatten(p))
        s_star = base.equilibrium() or 1.0
        start = s_star * np.geomspace(2.0, 0.5, d)
        decorrelation = decorrelation_time(system, p)
    members = math.ceil(rows / rows_per_member)
    burn = 3.0 * decorrelation
    times = burn + decorrelation * np.arange(rows_per_member)
    run = dict(seed=seed, scheduler="serial", progress=False)
    step = min(dt, decorrelation / 50)
    baseline = kind != "chamber"
    if baseline:
        from dlnsim.particles.baselines import resolving_step

        pilot = langevin_ensemble(model, start, [burn], 8, step, metropolis=True, **run)
        step = min(decorrelation / 50, resolving_step(model, pilot.sigma.values[:, -1], resolution))
    ds = langevin_ensemble(model, start, times, members, step, metropolis=baseline, **run)
    info["step"] = step
    if baseline:
        from dlnsim.particles.driver import step_plan

        steps = sum(n for _, _, n, _ in step_plan(times, step))
        info["acceptance"] = float(ds.accepted.values.sum() / (members * steps))
    out = ds.sigma.values.reshape(-1, d)[:rows]
    return np.sort(out, axis=-1)


def repulsion_comparison(
    systems: Sequence[dict[str, Any]] = DEFAULT_SYSTEMS,
    rows: int = 1200,
    seed: int = 0,
    dt: float = 1e-3,
    n_boot: int = 400,
    exact_factor: int = 4,
) -> xr.Dataset:
    """Samples, spacing statistics and the repulsion verdict for each system (one Dataset).

    Dims: ``system``; ``spacing`` (unfolded nearest-neighbour spacings, pooled, NaN-padded) and
    ``ratio`` (consecutive-spacing ratios, pooled, NaN-padded).  Variables per system:
    ``mean_ratio``, ``mean_ratio_se``, ``gamma``, ``gamma_low``, ``gamma_high``,
    ``gamma_expected``, ``small_fraction`` (spacings < 0.1), ``consistent`` (1 if the 95%
    interval of ``gamma`` contains the expected exponent), ``repels`` (1 if that interval
    excludes 0 from above); the verdict of ``repulsion_verdict`` in the attributes ``verdict``
    (its text) and ``chamber_no_repulsion`` (1, 0, or -1 without a chamber system).

    Parameters
    ----------
    systems : sequence of dict, default DEFAULT_SYSTEMS
        The systems (see ``system_samples``).
    rows : int, default 1200
        Configurations per simulated system, >= 50.
    seed : int, default 0
        Root seed of every system's samples and bootstrap.
    dt : float, default 1e-3
        Largest time step of the chamber model.
    n_boot : int, default 400
        Bootstrap replicates of ``repulsion_exponent``.
    exact_factor : int, default 4
        The exact samplers (Ginibre, Gaussian b-ensembles, Poisson) draw this many times more
        rows.

    Returns
    -------
    xarray.Dataset
        The statistics above, ``kind = "repulsion"`` and the parameters in the attributes.

    Raises
    ------
    ValueError
        For no system, ``rows < 50`` or an invalid system.
    """
    rows = check_integer(rows, "rows", 50)
    if not systems:
        raise fail("systems", systems, "needs at least one system")
    systems = [check_system(s, f"systems[{k}]") for k, s in enumerate(systems)]
    labels, sp, ra, stats = [], [], [], []
    for k, system in enumerate(systems):
        # exact samplers are cheap: give them `exact_factor` times more rows (the exponent
        # estimator needs thousands of rows to resolve b = 4 at small n)
        n_rows = rows * (exact_factor if system.get("kind") in ("ginibre", "gbe", "poisson") else 1)
        info: dict[str, float] = {}
        x = system_samples(dict(system), n_rows, seed + k, dt, info=info)
        s = spacings(x)
        r = spacing_ratios(x)
        mean, se = mean_spacing_ratio(x)
        gamma, (low, high) = repulsion_exponent(x, n_boot=n_boot, seed=seed)
        expect = expected_exponent(system)
        labels.append(_label(system))
        sp.append(s.ravel())
        ra.append(r.ravel())
        stats.append(
            (
                mean,
                se,
                gamma,
                low,
                high,
                expect,
                small_spacing_fraction(s),
                float(low <= expect <= high),
                info["step"],
                info["acceptance"],
            )
        )
    n_sp = max(v.size for v in sp)
    n_ra = max(v.size for v in ra)

    def pad(arrays, n):
        return np.array([np.pad(v, (0, n - v.size), constant_values=np.nan) for v in arrays])

    st = np.array(stats)
    names = [
        "mean_ratio",
        "mean_ratio_se",
        "gamma",
        "gamma_low",
        "gamma_high",
        "gamma_expected",
        "small_fraction",
        "consistent",
        "step",
        "acceptance",
    ]
    long = [
        "mean consecutive-spacing ratio <r>",
        "standard error of <r> (row means)",
        "repulsion exponent gamma (ML fit, analysis.repulsion_exponent)",
        "95% bootstrap interval, low",
        "95% bootstrap interval, high",
        "expected exponent (0 chamber/Poisson, 1 matrix variant/Ginibre, b Dyson/GbE)",
        "fraction of unfolded spacings below 0.1",
        "1 if gamma's interval contains the expected",
        "time step of the SDE (NaN: exact sampler)",
        "mean Metropolis acceptance rate (baselines; NaN otherwise)",
    ]
    data = {
        n: ("system", st[:, j], {"long_name": lo, "units": "1"})
        for j, (n, lo) in enumerate(zip(names, long, strict=True))
    }
    data["spacings"] = (
        ("system", "spacing"),
        pad(sp, n_sp),
        {"long_name": "unfolded nearest-neighbour spacings (NaN padded)", "units": "mean spacing"},
    )
    data["ratios"] = (
        ("system", "ratio"),
        pad(ra, n_ra),
        {"long_name": "consecutive-spacing ratios (NaN padded)", "units": "1"},
    )
    data["repels"] = (
        "system",
        (st[:, names.index("gamma_low")] > 0).astype(np.float64),
        {"long_name": "1 if gamma's 95% interval excludes 0 (repulsion)", "units": "1"},
    )
    ds = xr.Dataset(data, coords={"system": ("system", labels, {"long_name": "particle system"})})
    verdict = repulsion_verdict(ds)
    ds.attrs["verdict"] = verdict.text
    ds.attrs["chamber_no_repulsion"] = (
        -1 if verdict.chamber_no_repulsion is None else int(verdict.chamber_no_repulsion)
    )
    ds.attrs.update(
        provenance(
            kind="repulsion",
            rows=rows,
            seed=str(seed),
            dt=dt,
            n_boot=n_boot,
            systems=repr(list(systems)),
        )
    )
    return ds


@dataclass(frozen=True)
class RepulsionVerdict:
    """The verdict of a repulsion comparison (see ``repulsion_verdict``).

    Parameters
    ----------
    chamber_no_repulsion : bool or None
        True if every DLN chamber system's 95% interval of ``gamma`` contains 0; None if the
        comparison has no chamber system.
    baselines_consistent : bool
        True if every other system's interval contains its expected exponent.
    repelling : tuple of str
        Labels of the systems whose interval excludes 0 from above (``gamma_low > 0``).
    text : str
        The one-line verdict printed by ``dlnsim repulsion`` and stored in ``repulsion.nc``.
    """

    chamber_no_repulsion: bool | None
    baselines_consistent: bool
    repelling: tuple[str, ...]
    text: str


def repulsion_verdict(ds: xr.Dataset) -> RepulsionVerdict:
    """The repulsion verdict from a ``repulsion_comparison`` Dataset.

    A system *repels* when the 95% bootstrap interval ``(gamma_low, gamma_high)`` of its
    exponent lies above 0, and is *consistent with no repulsion* when it contains 0.  The
    chamber model (systems labelled ``DLN chamber ...``) has no repulsion when every chamber
    interval contains 0; the baselines are consistent when every other interval contains its
    ``gamma_expected``.

    Parameters
    ----------
    ds : xarray.Dataset
        Output of ``repulsion_comparison`` (variables ``gamma_low``, ``gamma_high``,
        ``consistent`` along ``system``).

    Returns
    -------
    RepulsionVerdict
        The booleans and the one-line text.

    Raises
    ------
    ValueError
        If ``ds`` lacks the variables above.
    """
    need = ("gamma_low", "gamma_high", "consistent")
    if not isinstance(ds, xr.Dataset) or "system" not in ds.dims or any(n not in ds for n in need):
        raise fail("ds", type(ds).__name__, "must be a repulsion_comparison Dataset")
    labels = [str(v) for v in ds.system.values]
    low, high = ds.gamma_low.values, ds.gamma_high.values
    chamber = [k for k, lab in enumerate(labels) if lab.startswith("DLN chamber")]
    others = [k for k in range(len(labels)) if k not in chamber]
    no_rep = all(low[k] <= 0 <= high[k] for k in chamber) if chamber else None
    rmt_ok = all(ds.consistent.values[k] == 1 for k in others)
    repelling = tuple(labels[k] for k in range(len(labels)) if low[k] > 0)
    if no_rep is None:
        head = "no DLN chamber system"
    else:
        head = "DLN chamber model repulsion exponent " + (
            "consistent with 0 (no repulsion)" if no_rep else "NOT consistent with 0 (repulsion)"
        )
    text = (
        f"verdict: {head}; baselines "
        + ("consistent with their b" if rmt_ok else "not all consistent with their b")
        + f"; {len(repelling)} of {len(labels)} systems repel (interval above 0)"
    )
    return RepulsionVerdict(no_rep, rmt_ok, repelling, text)


# ---------------------------------------------------------------- the experiment


def _systems(value: object, name: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise fail(name, value, "must be a list of system tables ([] for the defaults)")
    return [check_system(v, f"{name}[{k}]") for k, v in enumerate(value)]


@documented
@dataclass(frozen=True)
class RepulsionParams:
    """The parameters of the ``repulsion`` experiment (``[[experiment]] kind = "repulsion"``)."""

    name: str = name_param("repulsion")
    rows: int = param(400, integer(50), int, "configurations per system")
    seed: int = param(0, integer(0), int, "seed")
    dt: float = param(1e-3, positive, float, "largest Langevin time step", unit="t")
    systems: list[dict[str, Any]] = param([], _systems, None, "system tables ([]: the defaults)")
    format: list[str] = format_param()

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """Cross-parameter check: the step count of each simulated system and the memory of
        the samples.  Raises ``ValueError`` naming the parameter."""
        systems = values["systems"] or DEFAULT_SYSTEMS
        for k, system in enumerate(systems):
            if system["kind"] in ("chamber", "matrix_variant", "dyson"):
                # the run spans 6 decorrelation times in steps of at most dt
                check_steps(
                    6 * decorrelation_time(system), values["dt"], "6 decorrelation times", "dt"
                )
            check_memory(
                {"rows": values["rows"], f"systems[{k}].width": system["width"]},
                "the samples",
                copies=16,  # exact samplers take 4x the rows; spacings and ratios
            )


@dataclass(frozen=True)
class RepulsionResult:
    """What ``run`` computed (``datasets``: ``<name>.nc``).

    Parameters
    ----------
    params : RepulsionParams
        The parameters.
    comparison : xarray.Dataset
        The ``repulsion_comparison`` dataset.
    """

    params: RepulsionParams
    comparison: xr.Dataset

    @property
    def datasets(self) -> dict[str, xr.Dataset]:
        return {f"{self.params.name}.nc": self.comparison}


def run(params: RepulsionParams, out: Path) -> RepulsionResult:
    """Repulsion statistics: DLN chamber model vs random-matrix baselines (<r>, gamma, verdict).

    Parameters
    ----------
    params : RepulsionParams
        The checked parameters.
    out : pathlib.Path
        The output folder (unused: the dataset is returned, written as ``<name>.nc``).

    Returns
    -------
    RepulsionResult
        The comparison.
    """
    kwargs = {"systems": params.systems} if params.systems else {}
    ds = repulsion_comparison(rows=params.rows, seed=params.seed, dt=params.dt, **kwargs)
    return RepulsionResult(params, ds)


def summary(result: RepulsionResult) -> list[str]:
    """``<r>``, ``gamma`` with its 95% interval, small-spacing fraction per system; verdict.

    Parameters
    ----------
    result : RepulsionResult
        What ``run`` returned.

    Returns
    -------
    list of str
        The summary lines.
    """
    ds = result.comparison
    lines = [
        f"[{result.params.name}] repulsion: <r> (Poisson 0.386, GOE 0.531, GUE 0.600, "
        "GSE 0.674), exponent gamma with 95% bootstrap CI",
        f"  {'system':<38}{'<r>':>8}{'SE':>8}{'gamma':>8}{'95% CI':>18}{'P(s<0.1)':>10}"
        f"{'expect':>8}",
    ]
    keys = (
        "mean_ratio",
        "mean_ratio_se",
        "gamma",
        "gamma_low",
        "gamma_high",
        "small_fraction",
        "gamma_expected",
    )
    for k, label in enumerate(ds.system.values):
        v = {n: float(ds[n].values[k]) for n in keys}
        ci = f"({v['gamma_low']:.2f}, {v['gamma_high']:.2f})"
        lines.append(
            f"  {label:<38}{v['mean_ratio']:>8.4f}{v['mean_ratio_se']:>8.4f}"
            f"{v['gamma']:>8.3f}{ci:>18}{v['small_fraction']:>10.4f}"
            f"{v['gamma_expected']:>8g}"
        )
    lines.append("  " + repulsion_verdict(ds).text)
    return lines


def figures(result: RepulsionResult) -> dict[str, Any]:
    """``<name>``: spacing histograms against the Wigner surmises and Poisson.

    Parameters
    ----------
    result : RepulsionResult
        What ``run`` returned.

    Returns
    -------
    dict[str, matplotlib.figure.Figure]
        File stem -> figure.
    """
    from ..plots import repulsion_figure

    return {result.params.name: repulsion_figure(result.comparison)}


EXPERIMENT = Experiment("repulsion", RepulsionParams, run, summary, figures, dpi=110)
