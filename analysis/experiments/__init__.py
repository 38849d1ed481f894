"""The experiments of ``dlnsim run``, one module per kind, and their registry.

``EXPERIMENTS`` maps each kind to its ``Experiment`` (``base.py``: typed parameters, ``run``,
``summary``, ``figures``), like scipy's ``METHODS`` table.  The built-in kinds are the
``EXPERIMENT`` objects of the modules named in ``BUILTIN``; ``register`` adds one from another
package (docs/architecture.md, "New experiment").  The TOML config (``analysis.config``), the
pipeline (``analysis.pipeline``) and the generated subcommands (``analysis.cli``) read this
table, so a registered kind is at once a ``[[experiment]] kind``, a subcommand and a set of
checked options.
"""

from __future__ import annotations

import importlib
from typing import Any

from dlnsim.particles.validation import fail

from .base import Experiment, Result

__all__ = ["BUILTIN", "DEFAULT_EXPERIMENTS", "EXPERIMENTS", "Experiment", "Result", "register"]

#: The modules (in this package) of the built-in kinds, each with an ``EXPERIMENT``.
BUILTIN: tuple[str, ...] = ("flow", "ensemble", "meanfield", "repulsion", "depth")

#: Every experiment kind by name, in the order of ``dlnsim --help``.
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Add an experiment kind to ``EXPERIMENTS`` (and so to configs and the command line).

    Parameters
    ----------
    experiment : Experiment
        The experiment.
    replace : bool, default False
        Allow replacing a kind of the same name.

    Returns
    -------
    Experiment
        ``experiment``.

    Raises
    ------
    ValueError
        ``bad experiment=...`` (not an ``Experiment``) or ``bad kind=...`` (already taken).
    """
    if not isinstance(experiment, Experiment):
        raise fail("experiment", experiment, "must be an analysis.experiments.Experiment")
    if experiment.kind in EXPERIMENTS and not replace:
        raise fail("kind", experiment.kind, "is already a registered experiment kind")
    EXPERIMENTS[experiment.kind] = experiment
    return experiment


for _module in BUILTIN:
    register(importlib.import_module(f"{__name__}.{_module}").EXPERIMENT)

#: The experiments of ``dlnsim run`` without a config: every built-in kind on its defaults.
DEFAULT_EXPERIMENTS: list[dict[str, Any]] = [{"kind": kind} for kind in BUILTIN]
