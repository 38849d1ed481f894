"""Measured relaxation toward the equilibrium: fitted decay rates of the two linear modes.

theory.md section 7 predicts, at ``sigma_* (1, ..., 1)``, a uniform mode (direction ``(1,...,1)``)
and a ``(d-1)``-fold relative mode (``sum_i dsigma_i = 0``).  ``measured_relaxation_rates``
starts the deterministic flow a relative distance ``eps`` from the equilibrium along each mode
and fits ``log |distance|`` against time by least squares, after the first fifth of the window
(the transient of the quadratic terms), over 12 e-foldings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from dlnsim.particles import Model, gradient_flow
from dlnsim.particles.validation import check_positive, fail

__all__ = ["RelaxationRun", "measured_relaxation_rates", "relaxation_dataset", "relaxation_runs"]


@dataclass(frozen=True)
class RelaxationRun:
    """One perturbation run: the mode, its predicted rate, times, distances and fitted rate.

    Parameters
    ----------
    mode : str
        ``"uniform"`` (perturbation along ``(1, ..., 1)``) or ``"relative"`` (along
        ``e_1 - e_d``).
    predicted : float
        The linearized decay rate ``lambda`` of the mode (``Model.relaxation_rates``), per unit
        of the run's time (``t``, or ``tau = N t`` when rescaled).
    fitted : float
        The least-squares slope of ``-log distance`` against time after the first fifth.
    dataset : xarray.Dataset
        The ``gradient_flow`` dataset of the run.
    distance : numpy.ndarray
        Distance to the equilibrium at the saved times: ``|mean_i sigma_i - sigma_*|`` for the
        uniform mode, ``sigma_1 - sigma_d`` for the relative mode.
    """

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

    The relative run is skipped for ``d = 1``.  Times span ``e_folds / lambda`` of each mode;
    the rate is fitted after the first fifth of the window (the transient of the quadratic
    terms).  The flow is integrated with ``rtol = 1e-12``, ``atol = 1e-14``.

    Parameters
    ----------
    model : dlnsim.particles.Model
        A model with a positive equilibrium ``sigma_*`` and decaying modes.
    eps : float, default 1e-5
        Relative size of the perturbation, ``0 < eps < 0.1`` (linear regime).
    e_folds : float, default 12.0
        Length of each run in e-foldings of its predicted rate.
    n_times : int, default 49
        Saved times per run.
    rescaled : bool or None, default None
        Time ``tau = N t`` (True) or ``t`` (False); None: the model's default (``tau`` at
        ``depth = inf`` only).

    Returns
    -------
    list of RelaxationRun
        The uniform run, then (for ``d >= 2``) the relative run.

    Raises
    ------
    ValueError
        If ``model`` is not a ``Model``, ``eps`` is out of range, or a mode does not decay.
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
    """Fitted ``(uniform, relative)`` decay rates of the flow near the equilibrium.

    Parameters
    ----------
    model : dlnsim.particles.Model
        As in ``relaxation_runs``.
    eps : float, default 1e-5
        Relative size of the perturbation, ``0 < eps < 0.1``.
    rescaled : bool or None, default None
        Time ``tau = N t`` (True) or ``t`` (False); None: the model's default.

    Returns
    -------
    tuple of float
        The fitted rates, uniform mode first (one entry at ``d = 1``), per unit time.

    Raises
    ------
    ValueError
        As ``relaxation_runs``.
    """
    return tuple(run.fitted for run in relaxation_runs(model, eps, rescaled=rescaled))


def relaxation_dataset(runs: Sequence[RelaxationRun], model: Model) -> xr.Dataset:
    """The relaxation runs as one dataset (what the relaxation figure needs, to be saved).

    Parameters
    ----------
    runs : sequence of RelaxationRun
        Runs of ``relaxation_runs(model)``, all with the same number of saved times.
    model : dlnsim.particles.Model
        Their model (its parameters go into the attributes).

    Returns
    -------
    xarray.Dataset
        Dims ``mode`` and ``relaxation_step``: ``relaxation_time``, ``relaxation_distance``
        ``(mode, relaxation_step)``, ``relaxation_rate_predicted`` and
        ``relaxation_rate_fitted`` ``(mode)``; attributes ``model.describe()`` and
        ``rescaled_time``.

    Raises
    ------
    ValueError
        If ``runs`` is empty or not made of ``RelaxationRun``, or ``model`` is not a ``Model``.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    if not runs or not all(isinstance(r, RelaxationRun) for r in runs):
        raise fail("runs", runs, "must be a non-empty sequence of RelaxationRun")
    if len({r.distance.size for r in runs}) != 1:
        raise fail("runs", [r.distance.size for r in runs], "need the same number of times")
    unit = "1 (rescaled time tau = N t)" if runs[0].dataset.attrs.get("rescaled_time") else "1"
    step = ("mode", "relaxation_step")
    return xr.Dataset(
        {
            "relaxation_time": (
                step,
                np.stack([r.dataset.time.values for r in runs]),
                {"long_name": "time of the relaxation run", "units": unit},
            ),
            "relaxation_distance": (
                step,
                np.stack([r.distance for r in runs]),
                {"long_name": "distance to the equilibrium along the mode", "units": "1"},
            ),
            "relaxation_rate_predicted": (
                "mode",
                np.array([r.predicted for r in runs]),
                {"long_name": "predicted decay rate (theory.md section 7)", "units": "1/time"},
            ),
            "relaxation_rate_fitted": (
                "mode",
                np.array([r.fitted for r in runs]),
                {"long_name": "fitted decay rate", "units": "1/time"},
            ),
        },
        coords={"mode": ("mode", [r.mode for r in runs], {"long_name": "perturbation mode"})},
        attrs={
            **model.describe(),
            "rescaled_time": int(bool(runs[0].dataset.attrs.get("rescaled_time", 0))),
        },
    )
