"""The experiment interface: typed parameters, ``run``, ``summary`` and ``figures``.

An ``Experiment`` bundles what ``dlnsim run`` (``analysis.pipeline``), the TOML config
(``analysis.config``) and the generated subcommands (``analysis.cli``) need to know about one
kind of experiment:

- ``params``: a frozen dataclass whose fields are declared with ``params.param`` (default,
  check, command-line type, help, unit) and whose optional ``check(values)`` is the
  cross-parameter check; the ``Schema`` read from it is the single source of the TOML keys and
  the command-line options;
- ``run(params, out) -> result``: runs the simulations on checked parameters.  ``out`` is the
  output folder, for what is streamed while it runs (Zarr ensemble stores); every other dataset
  is returned in ``result.datasets`` (file name -> ``xarray.Dataset``) and written by the caller;
- ``summary(result) -> list[str]``: the lines printed and appended to ``summary.txt``;
- ``figures(result) -> dict[str, Figure]``: file stems -> ``matplotlib.figure.Figure`` (drawn
  outside pyplot, ``analysis.plots``), saved by the caller in ``params.format`` at ``dpi``.

An experiment from another package registers with ``analysis.experiments.register``
(docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dlnsim.particles.validation import fail

from .params import Schema, check_name, schema_of

__all__ = ["Experiment", "Result"]


class Result(Protocol):
    """What ``Experiment.run`` returns: at least the parameters and the datasets to write.

    Parameters
    ----------
    params : Any
        The experiment's parameters (its ``params`` dataclass).
    datasets : Mapping[str, xarray.Dataset]
        File names (inside the output folder, ``.nc`` or ``.zarr``) -> datasets to write.
    """

    params: Any
    datasets: Mapping[str, Any]


@dataclass(frozen=True)
class Experiment:
    """One kind of experiment (see the module docstring).

    Parameters
    ----------
    kind : str
        Its name: the ``kind`` of a config's ``[[experiment]]`` table and, with ``command``,
        a ``dlnsim`` subcommand.
    params : type
        The frozen parameter dataclass (fields from ``params.param``).
    run : callable
        ``run(params, out) -> result`` with ``result.params`` and ``result.datasets``.
    summary : callable
        ``summary(result) -> list[str]``.
    figures : callable
        ``figures(result) -> dict[str, Figure]`` (file stem -> figure).
    dpi : int, default 120
        Resolution of the raster figures.
    command : bool, default True
        Generate the subcommand ``dlnsim <kind>`` (False where a hand-written command of that
        name exists).
    doc : str, default the first paragraph of ``run``'s docstring
        The one-paragraph description: the subcommand's ``--help`` text.

    Raises
    ------
    ValueError
        ``bad kind=...`` (not a file-name-like word) or ``bad params=...`` (not a dataclass of
        ``param`` fields, or without ``name`` and ``format``).
    """

    kind: str
    params: type
    run: Callable[[Any, Path], Any]
    summary: Callable[[Any], list[str]]
    figures: Callable[[Any], Mapping[str, Any]]
    dpi: int = 120
    command: bool = True
    doc: str = ""
    schema: Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.kind, "kind")
        schema = schema_of(self.params)
        for key in ("name", "format"):
            if key not in schema.params:
                raise fail("params", self.params, f"needs a {key!r} parameter")
        object.__setattr__(self, "schema", schema)
        if not self.doc:
            # the first paragraph only: the numpy sections of run are not --help text
            doc = (self.run.__doc__ or self.kind).split("\n\n")[0].strip()
            object.__setattr__(self, "doc", doc)

    @property
    def defaults(self) -> dict[str, Any]:
        """Every parameter's default, by name."""
        return self.schema.defaults

    def validate(self, table: Mapping[str, Any]) -> Any:
        """The parameters of one ``[[experiment]]`` table: defaults overlaid, every value
        checked and normalized, then the cross-parameter check.

        Parameters
        ----------
        table : Mapping[str, Any]
            The given values (a ``kind`` key is ignored).

        Returns
        -------
        Any
            An instance of ``params``.

        Raises
        ------
        ValueError
            ``bad <key>=...`` (unknown key or invalid value) or from the cross check.
        """
        return self.params(**self.schema.normalize(table, self.kind))
