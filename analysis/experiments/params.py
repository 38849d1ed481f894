"""The schema of the experiment kinds: every parameter's default and check, in one place.

``dlnsim run CONFIG.toml`` (through ``analysis.pipeline.load_config``) and the CLI subcommands
``dlnsim meanfield|repulsion|depth`` both validate through ``validate``: each parameter has a
``Param`` (its default, the check that normalizes it or raises ``ValueError("bad <name>=<value>:
<why>")``, and how the command line parses it), and each kind a cross-parameter check (shapes,
``t_end / dt`` step counts, memory, what the analysis needs).  Everything is checked before
anything runs or any output is created.

TOML values are taken as typed: an integer parameter takes a TOML integer (``2.0`` is not a
width), a boolean only ``true``/``false`` (``"no"`` is an error), a name is a safe file-name
prefix (no path separators, no ``..``, no leading dot).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlnsim.particles.validation import (
    check_bool,
    check_depth,
    check_integer,
    check_positive,
    check_singular_values,
    check_times,
    fail,
    physical_memory,
)

__all__ = [
    "MAX_STEPS",
    "Param",
    "Schema",
    "SCHEMAS",
    "check_memory",
    "check_name",
    "check_names",
    "check_out",
    "check_steps",
    "model_from",
    "read_config",
    "validate",
]

#: The most time steps a run may take: beyond 2**53 the step count and the step times are no
#: longer exact in float64 (and ``ceil(t_end / dt)`` may overflow).
MAX_STEPS = 2**53

_NAME = re.compile(r"^\w[\w.+=-]*$")


@dataclass(frozen=True)
class Param:
    """One parameter: its default, its check (value, name) -> normalized value, and the
    ``argparse`` type of its command-line option (None: config files only).

    Parameters
    ----------
    default : Any
        The default value.
    check : callable
        ``check(value, name)`` -> the normalized value, raising ``ValueError`` (``bad
        <name>=...``).
    cli : callable or None
        The ``argparse`` type of the option; None for config files only.
    help : str, default ""
        The option's help text.
    """

    default: Any
    check: Callable[[Any, str], Any]
    cli: Callable[[str], Any] | None
    help: str = ""


@dataclass(frozen=True)
class Schema:
    """The parameters of an experiment kind and its cross-parameter check (normalized
    parameters -> None, raising ``ValueError`` naming the parameter at fault).

    Parameters
    ----------
    params : Mapping[str, Param]
        The parameters by name.
    cross : callable, default no check
        ``cross(params)`` on the normalized parameters; raises ``ValueError``.
    """

    params: Mapping[str, Param]
    cross: Callable[[dict[str, Any]], None] = field(default=lambda params: None)

    @property
    def defaults(self) -> dict[str, Any]:
        return {key: p.default for key, p in self.params.items()}


# ---------------------------------------------------------------- single-value checks


def check_name(value: object, name: str = "name") -> str:
    """A file-name prefix: letters, digits, ``_ . + = -``; not empty, no path separator, no
    ``..``, no leading dot, at most 100 characters.

    Parameters
    ----------
    value : object
        The candidate prefix.
    name : str, default "name"
        The parameter's name, for the error message.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` (not a string, empty, leaving the folder, too long, bad characters).
    """
    if not isinstance(value, str):
        raise fail(name, value, "must be a string (a file-name prefix)")
    if not value:
        raise fail(name, value, "must not be empty (it prefixes the output files)")
    if "/" in value or "\\" in value or ".." in value or value.startswith("."):
        raise fail(
            name, value, "must stay inside the output folder: no '/', '\\', '..' or leading '.'"
        )
    if len(value) > 100 or not _NAME.match(value):
        raise fail(
            name,
            value,
            "must be at most 100 letters, digits or '_.+=-', starting with a letter, digit or '_'",
        )
    return value


def check_out(value: object, name: str = "out") -> Path:
    """An output folder: a non-empty path that is not an existing non-folder.

    Parameters
    ----------
    value : object
        The candidate path (str or os.PathLike).
    name : str, default "out"
        The parameter's name, for the error message.

    Returns
    -------
    pathlib.Path
        The folder path (not created).

    Raises
    ------
    ValueError
        ``bad <name>=...`` (not a path, exists and is not a folder, a parent is a file, or
        unusable).
    """
    if not isinstance(value, str | os.PathLike) or not str(value).strip() or "\0" in str(value):
        raise fail(name, value, "must be a folder path")
    path = Path(value)
    try:
        if path.exists() and not path.is_dir():
            raise fail(name, str(value), "exists and is not a folder")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise fail(name, str(value), f"{parent} is not a folder")
                break
    except OSError as exc:
        raise fail(name, str(value), f"cannot be used as a folder ({exc.strerror})") from None
    return path


def _integer(minimum: int) -> Callable[[Any, str], int]:
    return lambda value, name: check_integer(value, name, minimum)


def _positive(value: object, name: str) -> float:
    return check_positive(value, name)


def _fraction(value: object, name: str) -> float:
    v = check_positive(value, name, allow_zero=True)
    if v >= 1:
        raise fail(name, value, "must be a fraction in [0, 1) of the run")
    return v


def _list(value: object, name: str, item: Callable[[Any, str], Any], what: str) -> list:
    if not isinstance(value, list):
        raise fail(name, value, f"must be a list of {what}")
    return [item(v, name) for v in value]


def _real_array(value: object, name: str) -> np.ndarray | None:
    """An array of positive finite reals (shape checked by the kind), or None (omitted)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise fail(name, value, "must be a list of singular values (or a list of such lists)")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise fail(name, value, "must be a list (of lists) of real numbers") from None
    if any(isinstance(v, bool) for v in np.asarray(value, dtype=object).ravel()):
        raise fail(name, value, "must hold numbers, not booleans")
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise fail(name, value, "must be a list of singular values or a list of such lists")
    return arr


def _temperatures(value: object, name: str) -> list[float]:
    return _list(
        value, name, lambda v, n: check_positive(v, n, allow_zero=True), "temperatures >= 0"
    )


def _depths(value: object, name: str) -> list[int | float]:
    return _list(value, name, check_depth, "depths (integers >= 1 or 'inf')")


def _widths(value: object, name: str) -> list[int]:
    return _list(value, name, _integer(2), "widths (integers >= 2)")


def _times(value: object, name: str) -> list[float]:
    if not isinstance(value, list) or any(isinstance(v, bool) for v in value):
        raise fail(name, value, "must be a list of save times")
    return check_times(value, name).tolist()


def _scheduler(value: object, name: str) -> str:
    ok = isinstance(value, str) and (
        value in ("local", "serial")
        or re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", value)
        or re.fullmatch(r"[^\s:/]+:\d{1,5}", value)
    )
    if not ok:
        raise fail(
            name, value, "must be 'local', 'serial' or a scheduler address (tcp://HOST:PORT)"
        )
    return value  # type: ignore[return-value]


def _systems(value: object, name: str) -> list[dict[str, Any]]:
    from .repulsion_experiment import check_system

    if not isinstance(value, list):
        raise fail(name, value, "must be a list of system tables ([] for the defaults)")
    return [check_system(v, f"{name}[{k}]") for k, v in enumerate(value)]


# ---------------------------------------------------------------- command-line parsing


def _cli_list(text: str) -> list:
    """``1,2,inf`` -> ``[1, 2, 'inf']``: numbers as TOML would give them (the checks decide)."""
    import argparse

    out: list = []
    for v in (v for v in text.replace(" ", "").split(",") if v):
        if v.lower() in ("inf", "infinity"):
            out.append("inf")
            continue
        try:
            out.append(int(v) if re.fullmatch(r"[-+]?\d+", v) else float(v))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    return out


def _cli_depth(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# ---------------------------------------------------------------- cross-parameter checks


def check_memory(factors: Mapping[str, float], what: str, copies: float = 1.0) -> None:
    """Refuse a run whose main float64 array (the product of ``factors``) cannot fit in this
    machine's memory; blames the largest factor.

    Parameters
    ----------
    factors : Mapping[str, float]
        Parameter names and the sizes they contribute (their product counts the floats).
    what : str
        What the array is, for the message.
    copies : float, default 1.0
        How many such arrays are held.

    Raises
    ------
    ValueError
        ``bad <largest factor>=...`` when ``8 * copies * prod(factors)`` bytes exceed the
        physical memory.
    """
    count = copies * math.prod(float(v) for v in factors.values())
    need = 8.0 * count
    have = physical_memory()
    if have and need > have:
        key = max(factors, key=lambda k: float(factors[k]))
        raise fail(
            key,
            factors[key],
            f"{what} ({' x '.join(factors)}) needs ~{need:.2g} bytes of float64, more than "
            f"this machine's memory ({have:.2g} bytes)",
        )


def check_steps(t_end: float, dt: float, t_name: str, dt_name: str) -> None:
    """Refuse more than ``MAX_STEPS = 2**53`` steps ``t_end / dt`` (not exact in float64).

    Parameters
    ----------
    t_end : float
        Final time.
    dt : float
        Time step, in the same time unit.
    t_name, dt_name : str
        Their parameter names, for the message.

    Raises
    ------
    ValueError
        ``bad <dt_name>=...`` when the step count is non-finite or exceeds ``2**53``.
    """
    steps = t_end / dt
    if not math.isfinite(steps) or steps > MAX_STEPS:
        raise fail(
            dt_name,
            dt,
            f"{t_name} / {dt_name} = {steps:.3g} steps is more than 2**53 (step counts and "
            "times would not be exact in float64)",
        )


def model_from(params: Mapping[str, Any], depth: int | float | None = None):
    """``Model(width, depth, beta, Schatten(p))`` from experiment parameters (``depth``
    overrides the parameter).

    Parameters
    ----------
    params : Mapping[str, Any]
        Validated parameters with ``width``, ``depth``, ``beta``, ``p``.
    depth : int or float or None, default None
        ``N`` to use instead of ``params["depth"]``.

    Returns
    -------
    Model
        The particle model.

    Raises
    ------
    ValueError
        From ``Model`` (``bad width=...``, ``bad depth=...``, ...).
    """
    from dlnsim.particles import Model, Schatten

    return Model(
        params["width"],
        params["depth"] if depth is None else depth,
        params["beta"],
        Schatten(params["p"]),
    )


def _check_equilibrium(model, params: Mapping[str, Any]) -> None:
    """For ``N >= 2`` the equilibrium ``sigma_*`` and the relaxation rates are positive: refuse
    ``beta``, ``p`` where they underflow or overflow float64 (the flow, the rates and the depth
    fits need them).  Blames the more extreme of the two (in log scale)."""
    if model.depth == 1:
        return  # no entropy: sigma_* = 0 is the exact answer
    beta, p = params["beta"], params["p"]
    name = "beta" if abs(math.log(beta)) >= abs(math.log(p)) else "p"
    value = params[name]
    try:
        s_star = model.equilibrium()
        rates = model.relaxation_rates(rescaled=model.infinite) if s_star > 0 else ()
    except (ValueError, ArithmeticError) as exc:
        raise fail(
            name, value, f"no equilibrium in float64 at beta={beta}, p={p} ({exc})"
        ) from None
    if not 0 < s_star < math.inf or not all(0 < r < math.inf for r in rates):
        raise fail(
            name,
            value,
            f"at beta={beta}, p={p} the equilibrium sigma_* = {s_star:g} (N = {model.depth}) "
            f"or its relaxation rates {tuple(rates)} are not positive float64 numbers",
        )


def _cross_flow(params: dict[str, Any]) -> None:
    model = model_from(params)
    _check_equilibrium(model, params)
    if params["initial"] is not None:
        initial = check_singular_values(params["initial"], model.width, "initial")
        params["initial"] = initial
        rows = 1 if initial.ndim == 1 else initial.shape[0]
    else:
        rows = params["members"]
    check_memory(
        {"members": rows, "n_times": params["n_times"], "width": params["width"]},
        "the trajectories",
        copies=3,
    )


def _cross_ensemble(params: dict[str, Any]) -> None:
    model = model_from(params)
    _check_equilibrium(model, params)
    initial = params["initial"]
    if initial is not None:
        arr = check_singular_values(initial, model.width, "initial")
        if arr.ndim == 2 and arr.shape[0] != params["members"]:
            raise fail(
                "initial",
                initial.tolist(),
                f"must be one start of length {model.width} or members={params['members']} rows",
            )
        params["initial"] = arr
    check_steps(params["t_end"], params["dt"], "t_end", "dt")
    check_memory(
        {"members": params["members"], "n_times": params["n_times"], "width": params["width"]},
        "each ensemble's trajectories",
        copies=2,
    )


#: Largest finite depth of the mean-field experiment (``depth = inf`` covers the rest).
MAX_MEANFIELD_DEPTH = 10_000


def _cross_meanfield(params: dict[str, Any]) -> None:
    from dlnsim.particles import Model, Schatten

    widths = params["widths"]
    if len(widths) < 2 or any(a >= b for a, b in zip(widths, widths[1:], strict=False)):
        raise fail("widths", widths, "need at least two increasing widths >= 2")
    if params["depth"] == 1:
        raise fail("depth", 1, "N = 1 has no entropy and no mean-field interaction")
    if params["depth"] != math.inf and params["depth"] > MAX_MEANFIELD_DEPTH:
        raise fail(
            "depth",
            params["depth"],
            f"finite N above {MAX_MEANFIELD_DEPTH} makes the PDE in physical time t too stiff "
            "to integrate (its rates grow like N); use depth = inf, whose time is tau = N t",
        )
    for w in widths:
        if params["n_samples"] % w:
            raise fail("n_samples", params["n_samples"], f"must be a multiple of every width ({w})")
    for w in widths:
        if not math.isfinite(params["b"] * w):
            raise fail("b", params["b"], f"beta = b d overflows at d = {w}")
        Model(w, params["depth"], params["b"] * w, Schatten(params["p"]))
    depth = params["depth"]
    frac = 1.0 if depth == math.inf else (depth - 1) / depth
    try:
        s_star = (frac / (2 * params["b"])) ** (1 / params["p"])
    except OverflowError:
        s_star = math.inf
    if not 0 < 1.5 * s_star < math.inf:
        raise fail(
            "p",
            params["p"],
            f"the limit equilibrium sigma_* = ({frac:g} / (2 b))^(1/p) = {s_star:g} is not a "
            "positive float64 (the initial law is centred on it)",
        )
    moment_widths = params["moment_widths"]
    if len(moment_widths) < 3:
        raise fail("moment_widths", moment_widths, "need at least three widths (a fitted order)")
    if depth == math.inf and min(widths) <= 3:
        raise fail("widths", widths, "N = inf needs widths >= 4 (no equilibrium)")
    if depth == math.inf and min(moment_widths) < 16:
        raise fail("moment_widths", moment_widths, "N = inf needs widths >= 16 (heavy tail)")
    check_steps(params["times"][-1], params["dt"], "times[-1]", "dt")
    check_memory(
        {"n_samples": params["n_samples"], "times": len(params["times"]), "widths": len(widths)},
        "the pooled samples",
        copies=3,
    )
    check_memory(
        {"cells": params["cells"], "times": len(params["times"]), "widths": len(widths)},
        "the PDE densities",
        copies=6,
    )


def _cross_repulsion(params: dict[str, Any]) -> None:
    from .repulsion_experiment import DEFAULT_SYSTEMS, decorrelation_time

    systems = params["systems"] or DEFAULT_SYSTEMS
    for k, system in enumerate(systems):
        if system["kind"] in ("chamber", "matrix_variant", "dyson"):
            # the run spans 6 decorrelation times in steps of at most dt
            check_steps(6 * decorrelation_time(system), params["dt"], "6 decorrelation times", "dt")
        check_memory(
            {"rows": params["rows"], f"systems[{k}].width": system["width"]},
            "the samples",
            copies=16,  # exact samplers take 4x the rows; spacings and ratios
        )


def _cross_depth(params: dict[str, Any]) -> None:
    from .depth import MIN_FIT_DEPTH

    depths = params["depths"]
    if math.inf not in depths:
        raise fail("depths", depths, "must include inf (the limit compared against)")
    if len(set(depths)) != len(depths):
        raise fail("depths", depths, "must not repeat")
    if sum(1 for n in depths if math.isfinite(n) and n >= MIN_FIT_DEPTH) < 2:
        raise fail(
            "depths",
            depths,
            f"need two finite depths >= {MIN_FIT_DEPTH} to fit the orders of convergence",
        )
    initial = params["initial"]
    if initial is None or initial.ndim != 1:
        raise fail("initial", params["initial"], f"must be one start of width={params['width']}")
    params["initial"] = check_singular_values(initial, params["width"], "initial")
    for n in depths:
        _check_equilibrium(model_from(params, depth=n), params)
    if params["members"]:
        if params["width"] < 4:
            raise fail(
                "width",
                params["width"],
                "the N = inf stationary law of the ensembles is normalizable only for d >= 4 "
                "(set members = 0 for the flow alone)",
            )
        check_steps(params["ensemble_tau_end"], params["dt"], "ensemble_tau_end", "dt")
        check_memory(
            {"depths": len(depths), "members": params["members"], "width": params["width"]},
            "the ensembles (41 save times)",
            copies=41 * 2,
        )
    check_memory(
        {"depths": len(depths), "n_times": params["n_times"], "width": params["width"]},
        "the flows",
    )


# ---------------------------------------------------------------- the kinds

_INT = int
_REAL = float

MODEL_PARAMS: dict[str, Param] = {
    "width": Param(2, _integer(1), _INT, "width d"),
    "depth": Param(10, check_depth, _cli_depth, "depth N: an integer >= 1 or 'inf'"),
    "beta": Param(5.0, _positive, _REAL, "inverse temperature beta"),
    "p": Param(2.0, _positive, _REAL, "Schatten exponent p of e(s) = s^p / p"),
}

def _formats(value: object, name: str) -> list[str]:
    from .plots import check_formats  # matplotlib only when a figure format is checked

    return list(check_formats(value))


#: Every experiment draws figures: their formats (``["png", "pdf"]`` adds vector output).
FIGURE_PARAMS: dict[str, Param] = {
    "format": Param(["png"], _formats, None, "figure formats, e.g. png,pdf"),
}

SCHEMAS: dict[str, Schema] = {
    "flow": Schema(
        {
            **MODEL_PARAMS,
            "name": Param("flow", check_name, str, "prefix of the output files"),
            "initial": Param(None, _real_array, _cli_list, "starts, one row per member"),
            "members": Param(8, _integer(1), _INT, "random starts when initial is omitted"),
            "seed": Param(0, _integer(0), _INT, "seed of the random starts"),
            "t_end": Param(20.0, _positive, _REAL, "final time"),
            "n_times": Param(201, _integer(2), _INT, "save times"),
            "phase_portrait": Param(True, check_bool, None, "draw Figure 1 (d = 2)"),
            **FIGURE_PARAMS,
        },
        _cross_flow,
    ),
    "ensemble": Schema(
        {
            **MODEL_PARAMS,
            "width": Param(4, _integer(1), _INT, "width d"),
            "name": Param("ensemble", check_name, str, "prefix of the output files"),
            "initial": Param(None, _real_array, _cli_list, "start (default: around sigma_*)"),
            "members": Param(128, _integer(1), _INT, "ensemble size"),
            "dt": Param(2e-3, _positive, _REAL, "time step"),
            "t_end": Param(3.0, _positive, _REAL, "final time"),
            "n_times": Param(51, _integer(2), _INT, "save times"),
            "seed": Param(0, _integer(0), _INT, "root seed (seed + k at the k-th temperature)"),
            "temperatures": Param([], _temperatures, _cli_list, "noise temperatures ([]: scan)"),
            "burn_in": Param(0.5, _fraction, _REAL, "fraction of the run before averaging"),
            "scheduler": Param("local", _scheduler, str, "'local', 'serial' or an address"),
            "chunk_size": Param(0, _integer(0), _INT, "members per task (0: auto)"),
            **FIGURE_PARAMS,
        },
        _cross_ensemble,
    ),
    "meanfield": Schema(
        {
            "name": Param("meanfield", check_name, str, "prefix of the output files"),
            "widths": Param([8, 32, 128], _widths, _cli_list, "increasing widths d"),
            "b": Param(1.0, _positive, _REAL, "beta = b d"),
            "depth": Param(4, check_depth, _cli_depth, "depth N >= 2 or 'inf'"),
            "p": Param(2.0, _positive, _REAL, "Schatten exponent p"),
            "times": Param([0.0, 0.2, 0.5, 1.0], _times, _cli_list, "comparison times"),
            "n_samples": Param(1024, _integer(2), _INT, "pooled samples per width"),
            "dt": Param(1e-3, _positive, _REAL, "Langevin time step"),
            "seed": Param(0, _integer(0), _INT, "seed"),
            "cells": Param(128, _integer(8), _INT, "PDE cells"),
            "moment_widths": Param([8, 16, 32], _widths, _cli_list, "widths of the moments"),
            "moment_members": Param(32, _integer(2), _INT, "members per moment width"),
            "moment_dt": Param(2e-3, _positive, _REAL, "Langevin step of the moments"),
            **FIGURE_PARAMS,
        },
        _cross_meanfield,
    ),
    "repulsion": Schema(
        {
            "name": Param("repulsion", check_name, str, "prefix of the output files"),
            "rows": Param(400, _integer(50), _INT, "configurations per system"),
            "seed": Param(0, _integer(0), _INT, "seed"),
            "dt": Param(1e-3, _positive, _REAL, "largest Langevin time step"),
            "systems": Param([], _systems, None, "system tables ([]: the defaults)"),
            **FIGURE_PARAMS,
        },
        _cross_repulsion,
    ),
    "depth": Schema(
        {
            "name": Param("depth", check_name, str, "prefix of the output files"),
            # d = 6: the N = inf stationary law needs d >= 4 to be normalizable (analysis.depth)
            "width": Param(6, _integer(1), _INT, "width d"),
            "beta": Param(2.0, _positive, _REAL, "inverse temperature beta"),
            "p": Param(2.0, _positive, _REAL, "Schatten exponent p"),
            "initial": Param(
                [2.0, 1.37, 0.94, 0.64, 0.44, 0.3], _real_array, _cli_list, "start (length d)"
            ),
            "depths": Param(
                [1, 2, 4, 8, 16, 32, 64, 128, 256, "inf"], _depths, _cli_list, "depths with inf"
            ),
            "tau_end": Param(3.0, _positive, _REAL, "final rescaled time of the flows"),
            "n_times": Param(31, _integer(2), _INT, "save times of the flows"),
            "members": Param(64, _integer(0), _INT, "ensemble size (0: no ensembles)"),
            "dt": Param(0.01, _positive, _REAL, "Langevin time step (rescaled)"),
            "seed": Param(0, _integer(0), _INT, "seed"),
            "ensemble_tau_end": Param(20.0, _positive, _REAL, "final rescaled time of ensembles"),
            **FIGURE_PARAMS,
        },
        _cross_depth,
    ),
}


# ---------------------------------------------------------------- validation and reading


def validate(experiment: object, where: str = "experiment") -> tuple[str, dict[str, Any]]:
    """``(kind, params)``: the kind and every parameter, defaults overlaid, checked and
    normalized.  ``experiment`` is one ``[[experiment]]`` table (a mapping with ``kind``).

    Parameters
    ----------
    experiment : object
        The table (a mapping with ``kind``).
    where : str, default "experiment"
        Its name, for the message when it is not a mapping.

    Returns
    -------
    tuple of (str, dict[str, Any])
        The kind and the normalized parameters.

    Raises
    ------
    ValueError
        ``bad <where>=...`` (not a table), ``bad kind=...``, ``bad <key>=...`` (unknown key or
        invalid value), or the kind's cross-parameter check.
    """
    if not isinstance(experiment, Mapping):
        raise fail(where, experiment, "must be a table with a kind ([[experiment]])")
    kind = experiment.get("kind")
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise fail("kind", kind, f"must be one of {', '.join(SCHEMAS)}")
    schema = SCHEMAS[kind]
    params: dict[str, Any] = {}
    for key, value in experiment.items():
        if key != "kind" and key not in schema.params:
            raise fail(
                key,
                value,
                f"unknown key for an experiment of kind {kind!r} "
                f"(known: {', '.join(schema.params)})",
            )
    for key, spec in schema.params.items():
        params[key] = spec.check(experiment.get(key, spec.default), key)
    schema.cross(params)
    return kind, params


def check_names(resolved: list[tuple[Any, dict[str, Any]]]) -> None:
    """Two experiments of one run may not share a name (their files would overwrite).

    Parameters
    ----------
    resolved : list of (Any, dict[str, Any])
        Experiments and their validated parameters (with ``name``).

    Raises
    ------
    ValueError
        ``bad name=...`` for a name used twice.
    """
    seen: set[str] = set()
    for _, params in resolved:
        if params["name"] in seen:
            raise fail(
                "name",
                params["name"],
                "is used by two experiments (their output files would overwrite each other)",
            )
        seen.add(params["name"])


def read_config(path: str | os.PathLike) -> tuple[list[Any], str | None]:
    """The ``[[experiment]]`` tables and ``out`` of a UTF-8 TOML file (not yet validated).

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file.

    Returns
    -------
    tuple of (list, str or None)
        The experiment tables and the ``out`` value (None if absent).

    Raises
    ------
    ValueError
        ``bad config=...`` (no such file, not UTF-8, not TOML), ``bad <key>=...`` (unknown
        top-level key), ``bad experiment=...`` (none, or not tables), ``bad out=...``.
    """
    path = Path(path)
    if not path.is_file():
        raise fail("config", str(path), "no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(
            "config",
            str(path),
            f"is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}); TOML files are "
            "UTF-8: re-save it as UTF-8",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail("config", str(path), f"not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"out", "experiment"})
    if unknown:
        key = unknown[0]
        raise fail(key, data[key], "unknown top-level config key (known: out, experiment)")
    experiments = data.get("experiment", [])
    if not isinstance(experiments, list) or not experiments:
        raise fail("experiment", experiments, "the config needs at least one [[experiment]] table")
    for exp in experiments:
        if not isinstance(exp, Mapping):
            raise fail("experiment", experiments, "must be [[experiment]] tables, each with a kind")
    out = data.get("out")
    if out is not None:
        check_out(out, "out")
    return experiments, out
