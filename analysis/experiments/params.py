"""Typed experiment parameters: one declaration per parameter gives its default, unit, help
text, check and command-line parsing.

An experiment's parameters are a frozen dataclass whose fields are declared with ``param``::

    @dataclass(frozen=True)
    class FlowParams(ModelParams):
        t_end: float = param(20.0, positive, float, "final time", unit="1")

``schema_of(FlowParams)`` reads the fields back as a ``Schema`` (name -> ``Param``): the TOML
keys of ``dlnsim run`` (``analysis.config``) and the options of the generated subcommands
(``analysis.cli``) both come from it, so each default is written once, here on the field.
``Schema.validate(table)`` checks every value (each ``Param.check`` normalizes it or raises
``ValueError("bad <name>=<value>: <why>")``), then the class's cross-parameter check
``check(values)`` (shapes, ``t_end / dt`` step counts, memory, what the analysis needs),
before anything runs or any output is created.

TOML values are taken as typed: an integer parameter takes a TOML integer (``2.0`` is not a
width), a boolean only ``true``/``false`` (``"no"`` is an error), a name is a safe file-name
prefix (no path separators, no ``..``, no leading dot).  On the command line, numbers and
comma-separated lists are parsed by ``cli_number`` and ``cli_list``, the one place where
``inf`` is read.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlnsim.particles.validation import (
    check_depth,
    check_integer,
    check_positive,
    check_times,
    fail,
    physical_memory,
)

__all__ = [
    "DEFAULT_SCHEDULER",
    "MAX_STEPS",
    "ModelParams",
    "Param",
    "Schema",
    "check_equilibrium",
    "check_memory",
    "check_name",
    "check_out",
    "check_scheduler",
    "check_steps",
    "cli_depth",
    "cli_list",
    "cli_number",
    "depth_list",
    "documented",
    "format_param",
    "format_list",
    "fraction",
    "integer",
    "model_from",
    "name_param",
    "param",
    "positive",
    "real_array",
    "schema_of",
    "temperature_list",
    "time_list",
    "width_list",
]

#: The most time steps a run may take: beyond 2**53 the step count and the step times are no
#: longer exact in float64 (and ``ceil(t_end / dt)`` may overflow).
MAX_STEPS = 2**53

#: Where ensembles run unless told otherwise: one LocalCluster (``particles.local_cluster``).
DEFAULT_SCHEDULER = "local"

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
    unit : str, default ""
        The unit or coordinate of the value ("" for counts, names and switches).
    """

    default: Any
    check: Callable[[Any, str], Any]
    cli: Callable[[str], Any] | None
    help: str = ""
    unit: str = ""


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

    def normalize(self, table: Mapping[str, Any], kind: str) -> dict[str, Any]:
        """Every parameter of ``table`` (defaults overlaid) checked and normalized, then the
        cross-parameter check.

        Parameters
        ----------
        table : Mapping[str, Any]
            The given values by parameter name (a ``kind`` key is ignored).
        kind : str
            The experiment kind, for the message on an unknown key.

        Returns
        -------
        dict[str, Any]
            Every parameter's normalized value, in schema order.

        Raises
        ------
        ValueError
            ``bad <key>=...`` for an unknown key or an invalid value, or from the cross check.
        """
        for key, value in table.items():
            if key != "kind" and key not in self.params:
                raise fail(
                    key,
                    value,
                    f"unknown key for an experiment of kind {kind!r} "
                    f"(known: {', '.join(self.params)})",
                )
        values = {key: p.check(table.get(key, p.default), key) for key, p in self.params.items()}
        self.cross(values)
        return values


def param(
    default: Any,
    check: Callable[[Any, str], Any],
    cli: Callable[[str], Any] | None = None,
    help: str = "",
    *,
    unit: str = "",
) -> Any:
    """A dataclass field declaring one experiment parameter (``Param`` in its metadata).

    Parameters
    ----------
    default : Any
        The default value (a list default is copied for every instance).
    check : callable
        ``check(value, name)`` -> the normalized value, raising ``ValueError``.
    cli : callable or None, default None
        The ``argparse`` type of its command-line option; None for config files only.
    help : str, default ""
        The help text.
    unit : str, default ""
        The unit or coordinate of the value.

    Returns
    -------
    dataclasses.Field
        The field, to assign in a frozen dataclass body.
    """
    spec = Param(default, check, cli, help, unit)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"param": spec})
    return field(default=default, metadata={"param": spec})


def schema_of(cls: type) -> Schema:
    """The ``Schema`` of a parameter dataclass: its ``param`` fields in declaration order and
    its cross-parameter check (the class's ``check(values)``, if it has one).

    Parameters
    ----------
    cls : type
        A dataclass whose fields are declared with ``param``.

    Returns
    -------
    Schema
        The parameters by name and the cross check.

    Raises
    ------
    ValueError
        ``bad cls=...`` if ``cls`` is not a dataclass or a field is not declared with ``param``.
    """
    if not dataclasses.is_dataclass(cls):
        raise fail("cls", cls, "must be a dataclass of param(...) fields")
    params: dict[str, Param] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("param")
        if not isinstance(spec, Param):
            raise fail("cls", cls, f"field {f.name!r} is not declared with param(...)")
        params[f.name] = spec
    cross = getattr(cls, "check", None)
    return Schema(params, cross) if cross is not None else Schema(params)


def documented(cls: type) -> type:
    """Class decorator (after ``@dataclass``): append to the docstring a numpy ``Parameters``
    section written from the fields (type, default, help, unit), so that the documentation
    is generated from the same single declaration as the checks and the options.

    Parameters
    ----------
    cls : type
        A dataclass of ``param`` fields.

    Returns
    -------
    type
        ``cls``, its ``__doc__`` extended.
    """
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    lines = ["", "Parameters", "----------"]
    for key, spec in schema_of(cls).params.items():
        kind = types[key] if isinstance(types[key], str) else getattr(types[key], "__name__", "")
        unit = f" [{spec.unit}]" if spec.unit else ""
        lines.append(f"{key} : {kind}, default {spec.default!r}")
        lines.append(f"    {spec.help or key}{unit}.")
    cls.__doc__ = inspect.cleandoc(cls.__doc__ or cls.__name__) + "\n" + "\n".join(lines)
    return cls


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


def _check_doc(returns: str) -> Callable[[Callable], Callable]:
    """Decorator: the numpy sections shared by the single-value checks ``check(value, name)``
    appended to the check's one-line docstring (``returns``: what it gives back)."""

    def decorate(check: Callable) -> Callable:
        check.__doc__ = (check.__doc__ or "").strip() + (
            "\n\n    Parameters\n    ----------\n    value : object\n        The candidate value."
            "\n    name : str\n        The parameter's name, for the error message.\n\n"
            f"    Returns\n    -------\n    {returns}\n        The normalized value.\n\n"
            "    Raises\n    ------\n    ValueError\n        ``bad <name>=<value>: <why>``.\n"
        )
        return check

    return decorate


def integer(minimum: int) -> Callable[[Any, str], int]:
    """The check of an integer parameter >= ``minimum`` (``check_integer``).

    Parameters
    ----------
    minimum : int
        The smallest value allowed.

    Returns
    -------
    callable
        ``check(value, name) -> int``.
    """
    return lambda value, name: check_integer(value, name, minimum)


@_check_doc("float")
def positive(value: object, name: str) -> float:
    """A finite real > 0 (``check_positive``); raises ``ValueError`` (``bad <name>=...``)."""
    return check_positive(value, name)


@_check_doc("float")
def fraction(value: object, name: str) -> float:
    """A fraction in ``[0, 1)`` of the run; raises ``ValueError`` (``bad <name>=...``)."""
    v = check_positive(value, name, allow_zero=True)
    if v >= 1:
        raise fail(name, value, "must be a fraction in [0, 1) of the run")
    return v


def _list(value: object, name: str, item: Callable[[Any, str], Any], what: str) -> list:
    if not isinstance(value, list):
        raise fail(name, value, f"must be a list of {what}")
    return [item(v, name) for v in value]


@_check_doc("numpy.ndarray or None")
def real_array(value: object, name: str) -> np.ndarray | None:
    """An array of positive finite reals (shape checked by the kind), or None (omitted);
    raises ``ValueError`` (``bad <name>=...``)."""
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


@_check_doc("list of float")
def temperature_list(value: object, name: str) -> list[float]:
    """A list of temperatures >= 0; raises ``ValueError`` (``bad <name>=...``)."""
    return _list(
        value, name, lambda v, n: check_positive(v, n, allow_zero=True), "temperatures >= 0"
    )


@_check_doc("list of int or float")
def depth_list(value: object, name: str) -> list[int | float]:
    """A list of depths (integers >= 1 or ``inf``); raises ``ValueError``."""
    return _list(value, name, check_depth, "depths (integers >= 1 or 'inf')")


@_check_doc("list of int")
def width_list(value: object, name: str) -> list[int]:
    """A list of widths (integers >= 2); raises ``ValueError`` (``bad <name>=...``)."""
    return _list(value, name, integer(2), "widths (integers >= 2)")


@_check_doc("list of float")
def time_list(value: object, name: str) -> list[float]:
    """A list of increasing save times >= 0 (``check_times``); raises ``ValueError``."""
    if not isinstance(value, list) or any(isinstance(v, bool) for v in value):
        raise fail(name, value, "must be a list of save times")
    return check_times(value, name).tolist()


def check_scheduler(value: object, name: str = "scheduler") -> str:
    """Where an ensemble runs: ``"local"`` (one LocalCluster), ``"serial"`` or a scheduler
    address (``tcp://HOST:PORT`` or ``HOST:PORT``).

    Parameters
    ----------
    value : object
        The candidate.
    name : str, default "scheduler"
        The parameter's name, for the error message.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` otherwise.
    """
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


@_check_doc("list of str")
def format_list(value: object, name: str) -> list[str]:
    """Figure formats (``plots.check_formats``); raises ``ValueError`` (``bad <name>=...``)."""
    from ..plots import check_formats  # matplotlib only when a figure format is checked

    return list(check_formats(value))


# ---------------------------------------------------------------- command-line parsing


def cli_number(text: str) -> int | float | str:
    """A number as a config file would give it: ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"inf"`` ->
    ``math.inf``; other text is returned as it is (the parameter's check names it).

    Parameters
    ----------
    text : str
        One command-line value.

    Returns
    -------
    int or float or str
        The number, or ``text``.
    """
    text = text.strip()
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def cli_list(text: str) -> list:
    """``1,2,inf`` -> ``[1, 2, 'inf']``: numbers as TOML would give them (the checks decide;
    an infinity is kept as the string ``'inf'``, as a config file writes it).

    Parameters
    ----------
    text : str
        Comma-separated numbers.

    Returns
    -------
    list
        The numbers.

    Raises
    ------
    argparse.ArgumentTypeError
        When an item is not a number.
    """
    import argparse

    out: list = []
    for v in (v for v in text.replace(" ", "").split(",") if v):
        if v.lower() in ("inf", "infinity"):
            out.append("inf")
            continue
        number = cli_number(v)
        if isinstance(number, str):
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers")
        out.append(number)
    return out


def cli_depth(text: str) -> int | float:
    """A checked depth from the command line: an integer >= 1 or ``inf`` (``check_depth``).

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    int or float
        The depth (``math.inf`` for ``inf``).

    Raises
    ------
    argparse.ArgumentTypeError
        ``bad depth=...`` otherwise.
    """
    import argparse

    try:
        return check_depth(cli_number(text), "depth")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def model_from(params: Mapping[str, Any] | Any, depth: int | float | None = None):
    """``Model(width, depth, beta, Schatten(p))`` from experiment parameters (``depth``
    overrides the parameter).

    Parameters
    ----------
    params : Mapping[str, Any] or parameter dataclass
        Validated parameters with ``width``, ``depth``, ``beta``, ``p`` (keys or attributes).
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

    if not isinstance(params, Mapping):
        params = {key: getattr(params, key) for key in ("width", "depth", "beta", "p")}
    return Model(
        params["width"],
        params["depth"] if depth is None else depth,
        params["beta"],
        Schatten(params["p"]),
    )


def check_equilibrium(model, params: Mapping[str, Any]) -> None:
    """For ``N >= 2`` the equilibrium ``sigma_*`` and the relaxation rates are positive: refuse
    ``beta``, ``p`` where they underflow or overflow float64 (the flow, the rates and the depth
    fits need them).  Blames the more extreme of the two (in log scale).

    Parameters
    ----------
    model : Model
        The model at the parameters.
    params : Mapping[str, Any]
        The parameters with ``beta`` and ``p``.

    Raises
    ------
    ValueError
        ``bad beta=...`` or ``bad p=...`` when ``sigma_*`` or a rate is not a positive float64.
    """
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


# ---------------------------------------------------------------- shared parameter groups


@documented
@dataclass(frozen=True)
class ModelParams:
    """The model ``Model(width, depth, beta, Schatten(p))`` (theory.md sections 2, 3): the
    parameters shared by the experiments on one model and the ``dlnsim flow|ensemble|
    phase-portrait`` options."""

    width: int = param(2, integer(1), int, "width d")
    depth: int | float = param(10, check_depth, cli_number, "depth N: an integer >= 1 or 'inf'")
    beta: float = param(5.0, positive, float, "inverse temperature beta")
    p: float = param(2.0, positive, float, "Schatten exponent p of e(s) = s^p / p")

    def model(self, depth: int | float | None = None):
        """The ``Model`` at these parameters (``depth`` overrides ``self.depth``).

        Parameters
        ----------
        depth : int or float or None, default None
            ``N`` to use instead of ``self.depth``.

        Returns
        -------
        Model
            The particle model.
        """
        return model_from(self, depth)


def format_param() -> Any:
    """The ``format`` field every experiment has: its figure formats (``["png", "pdf"]`` adds
    vector output).

    Returns
    -------
    dataclasses.Field
        The field.
    """
    return param(["png"], format_list, None, "figure formats, e.g. png,pdf")


def name_param(default: str) -> Any:
    """The ``name`` field every experiment has: the prefix of its output files.

    Parameters
    ----------
    default : str
        The default prefix (the experiment's kind).

    Returns
    -------
    dataclasses.Field
        The field.
    """
    return param(default, check_name, str, "prefix of the output files")
