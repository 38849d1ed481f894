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

__all__ = [
    "BUILTIN",
    "DEFAULT_EXPERIMENTS",
    "EXPERIMENTS",
    "EXTERNAL",
    "Experiment",
    "Result",
    "register",
]

#: The modules (in this package) of the built-in kinds, each with an ``EXPERIMENT``.
BUILTIN: tuple[str, ...] = ("flow", "ensemble", "meanfield", "repulsion", "depth")

#: Modules of other packages whose ``EXPERIMENT`` is registered after the built-ins (and runs in
#: the default ``dlnsim run``).  Such a module imports this registry; if it is imported first it
#: is still incomplete here and registers itself at its end.
EXTERNAL: tuple[str, ...] = ("dlnsim.network.completion",)

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

for _path in EXTERNAL:
    _experiment = getattr(importlib.import_module(_path), "EXPERIMENT", None)
    if _experiment is not None and _experiment.kind not in EXPERIMENTS:
        register(_experiment)

#: The experiments of ``dlnsim run`` without a config: every built-in and external kind on its
#: defaults (the kinds of ``EXTERNAL`` are named by their module's last part).
DEFAULT_EXPERIMENTS: list[dict[str, Any]] = [
    {"kind": kind} for kind in (*BUILTIN, *(path.rsplit(".", 1)[1] for path in EXTERNAL))
]
