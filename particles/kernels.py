"""Compiled pair sums of the entropy force (numba), for the flow and particle hot paths.

``entropy_gradient(rho, depth)`` computes the same quantity as the numpy reference
``particles.entropy.entropy_gradient`` (which the tests compare it against):

    dS_N/drho_i = 1/2 (1 - 1/N)(d - 1) + 1/2 sum_{j != i} psi_N'(rho_i - rho_j),
    psi_N'(x) = L'(x) - L'(x/N)/N,   L'(x) = coth x - 1/x,

with ``L'`` from its Taylor series for ``|x| <= 1/2`` and from ``(1 + t)/(1 - t) - 1/|x|``,
``t = e^{-2|x|}``, beyond (no cancellation there since ``1 - t >= 0.63``).  Compiled with
``cache=True`` so that a second process pays no compile time.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .entropy import _C1, _SERIES_CUTOFF, linear_coefficient
from .validation import check_depth

__all__ = ["entropy_gradient", "pair_force_sum"]

_COEF = tuple(float(c) for c in _C1[:12])  # 12 terms: |x| <= 1/2 gives < 1e-18 truncation
_CUT = float(_SERIES_CUTOFF)


@numba.njit(cache=True, inline="always")
def _dlog_sinhc(x: float) -> float:
    """L'(x) = coth x - 1/x (odd)."""
    ax = abs(x)
    if ax <= _CUT:
        z = x * x
        c = _COEF
        p = c[11]
        p = p * z + c[10]
        p = p * z + c[9]
        p = p * z + c[8]
        p = p * z + c[7]
        p = p * z + c[6]
        p = p * z + c[5]
        p = p * z + c[4]
        p = p * z + c[3]
        p = p * z + c[2]
        p = p * z + c[1]
        p = p * z + c[0]
        return x * p
    t = math.exp(-2.0 * ax)
    v = (1.0 + t) / (1.0 - t) - 1.0 / ax
    return v if x > 0 else -v


@numba.njit(cache=True, inline="always")
def _dpsi(x: float, inv_n: float) -> float:
    """psi_N'(x); ``inv_n = 1/N`` (0 for N = inf)."""
    if inv_n == 0.0:
        return _dlog_sinhc(x)
    return _dlog_sinhc(x) - _dlog_sinhc(x * inv_n) * inv_n


@numba.njit(cache=True)
def _pair_sum(rho: np.ndarray, inv_n: float, out: np.ndarray) -> None:
    n_batch, d = rho.shape
    for b in range(n_batch):
        for i in range(d):
            ri = rho[b, i]
            acc = 0.0
            for j in range(d):
                acc += _dpsi(ri - rho[b, j], inv_n)
            out[b, i] = acc


def pair_force_sum(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """``sum_{j != i} psi_N'(rho_i - rho_j)`` for ``rho`` of shape ``(..., d)`` (compiled)."""
    n = check_depth(depth)
    rho = np.asarray(rho, dtype=np.float64)
    flat = np.ascontiguousarray(rho.reshape(-1, rho.shape[-1]))
    out = np.empty_like(flat)
    if n == 1:
        out[:] = 0.0
    else:
        _pair_sum(flat, 0.0 if n == math.inf else 1.0 / n, out)
    return out.reshape(rho.shape)


def entropy_gradient(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """``dS_N/drho`` (compiled); same contract as ``particles.entropy.entropy_gradient``."""
    rho = np.asarray(rho, dtype=np.float64)
    return linear_coefficient(rho.shape[-1], depth) + 0.5 * pair_force_sum(rho, depth)
