"""dlnsim analysis: everything that reads results (statistics, comparisons, plots, pipeline)."""

from .relaxation import measured_relaxation_rates, relaxation_runs

__all__ = ["measured_relaxation_rates", "relaxation_runs"]
