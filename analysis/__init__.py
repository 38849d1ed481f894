"""dlnsim analysis: the experiments and everything that reads results.

- ``experiments/``: one module per experiment kind (typed parameters, ``run``, ``summary``,
  ``figures``) and the ``EXPERIMENTS`` registry;
- statistics: ``relaxation`` (fitted decay rates), ``repulsion`` (spacings, ``<r>``,
  ``gamma``), ``meanfield_compare`` (exact W1, L1 against a PDE density);
- figures: ``plots`` (``matplotlib.figure.Figure``, outside pyplot);
- ``config`` (the TOML file), ``pipeline`` (``dlnsim run``), ``cli`` (the command line).
"""

from .relaxation import measured_relaxation_rates, relaxation_runs
from .repulsion import (
    mean_spacing_ratio,
    published_mean_ratio,
    repulsion_exponent,
    spacing_ratios,
    spacings,
)

__all__ = [
    "mean_spacing_ratio",
    "measured_relaxation_rates",
    "published_mean_ratio",
    "relaxation_runs",
    "repulsion_exponent",
    "spacing_ratios",
    "spacings",
]
