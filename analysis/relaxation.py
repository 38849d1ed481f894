"""Measured relaxation toward the equilibrium: fitted decay rates of the two linear modes.

MODEL section 7 predicts, at ``sigma_* (1, ..., 1)``, a uniform mode (direction ``(1,...,1)``)
and a ``(d-1)``-fold relative mode (``sum_i dsigma_i = 0``).  ``measured_relaxation_rates``
starts the deterministic flow a relative distance ``eps`` from the equilibrium along each mode
and fits ``log |distance|`` against time by least squares, after the first fifth of the window
(the transient of the quadratic terms), over 12 e-foldings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from dlnsim.particles import Model, gradient_flow
from dlnsim.particles.validation import check_positive, fail

__all__ = ["RelaxationRun", "measured_relaxation_rates", "relaxation_runs"]


@dataclass(frozen=True)
class RelaxationRun:
    """One perturbation run: the mode, its predicted rate, times, distances and fitted rate."""

    mode: str
    predicted: float
    fitted: float
    dataset: xr.Dataset
    distance: np.ndarray


def _distance(sigma: np.ndarray, s_star: float, mode: str) -> np.ndarray:
    if mode == "uniform":
        return np.abs(sigma.mean(axis=-1) - s_star)
    return sigma[..., 0] - sigma[..., -1]


def relaxation_runs(
    model: Model, eps: float = 1e-5, e_folds: float = 12.0, n_times: int = 49, rescaled=None
) -> list[RelaxationRun]:
    """Flow runs from ``sigma_* (1 + eps v)`` with ``v = (1,...,1)`` and ``v = e_1 - e_d``.

    The relative run is skipped for ``d = 1``.  Times span ``e_folds / lambda`` of each mode.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    eps = check_positive(eps, "eps")
    if eps >= 0.1:
        raise fail("eps", eps, "must be < 0.1 (a perturbation in the linear regime)")
    s_star = model.equilibrium()
    rates = model.relaxation_rates(rescaled=rescaled)
    runs = []
    for mode, rate in zip(("uniform", "relative"), rates, strict=True):
        if mode == "relative" and model.width == 1:
            continue
        if not rate > 0:
            raise fail("model", model.describe(), f"{mode} mode does not decay (rate {rate})")
        v = np.ones(model.width)
        if mode == "relative":
            v = np.zeros(model.width)
            v[0], v[-1] = 1.0, -1.0
        times = np.linspace(0.0, e_folds / rate, n_times)
        ds = gradient_flow(
            model, s_star * (1 + eps * v), times, rescaled=rescaled, rtol=1e-12, atol=1e-14
        )
        dist = _distance(ds.sigma.values, s_star, mode)
        start = n_times // 5
        fitted = -np.polyfit(times[start:], np.log(dist[start:]), 1)[0]
        runs.append(RelaxationRun(mode, rate, float(fitted), ds, dist))
    return runs


def measured_relaxation_rates(model: Model, eps: float = 1e-5, rescaled=None) -> tuple[float, ...]:
    """Fitted ``(uniform, relative)`` decay rates of the flow near the equilibrium."""
    return tuple(run.fitted for run in relaxation_runs(model, eps, rescaled=rescaled))
