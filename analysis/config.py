"""The TOML config of ``dlnsim run``: reading a file and checking its experiments.

A config is a UTF-8 TOML file with an optional top-level ``out`` (the output folder) and a list
of ``[[experiment]]`` tables, each with a ``kind`` (a key of ``analysis.experiments.EXPERIMENTS``)
and that kind's parameters.  The keys, defaults and checks are the fields of the kind's
parameter dataclass (``analysis.experiments.params``): ``SCHEMAS`` is their view by kind.
``validate`` checks one table; unknown keys are an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dlnsim.particles.validation import fail

from .experiments import EXPERIMENTS
from .experiments.params import MAX_STEPS, Schema, check_name, check_out

__all__ = [
    "MAX_STEPS",
    "SCHEMAS",
    "check_name",
    "check_names",
    "check_out",
    "read_config",
    "validate",
]


class _Schemas(Mapping):
    """``{kind: Schema}`` of every registered experiment (a live view of ``EXPERIMENTS``)."""

    def __getitem__(self, kind: str) -> Schema:
        return EXPERIMENTS[kind].schema

    def __iter__(self) -> Iterator[str]:
        return iter(EXPERIMENTS)

    def __len__(self) -> int:
        return len(EXPERIMENTS)


#: The parameters of every experiment kind: ``SCHEMAS[kind].params[key]`` is a ``Param``.
SCHEMAS: Mapping[str, Schema] = _Schemas()


def validate(experiment: object, where: str = "experiment") -> tuple[str, Any]:
    """``(kind, params)``: the kind and its parameters (the kind's dataclass), defaults
    overlaid, every value checked and normalized.  ``experiment`` is one ``[[experiment]]``
    table (a mapping with ``kind``).

    Parameters
    ----------
    experiment : object
        The table (a mapping with ``kind``).
    where : str, default "experiment"
        Its name, for the message when it is not a mapping.

    Returns
    -------
    tuple of (str, parameter dataclass)
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
    if not isinstance(kind, str) or kind not in EXPERIMENTS:
        raise fail("kind", kind, f"must be one of {', '.join(EXPERIMENTS)}")
    return kind, EXPERIMENTS[kind].validate(experiment)


def check_names(resolved: list[tuple[Any, Any]]) -> None:
    """Two experiments of one run may not share a name (their files would overwrite).

    Parameters
    ----------
    resolved : list of (Any, parameters)
        Experiments and their validated parameters (with a ``name`` attribute).

    Raises
    ------
    ValueError
        ``bad name=...`` for a name used twice.
    """
    seen: set[str] = set()
    for _, params in resolved:
        if params.name in seen:
            raise fail(
                "name",
                params.name,
                "is used by two experiments (their output files would overwrite each other)",
            )
        seen.add(params.name)


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
