"""dlnsim analysis: everything that reads results (statistics, comparisons, plots, pipeline)."""

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
