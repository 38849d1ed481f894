r"""The entropy's value ``S_N`` compiled: the pair sum of ``psi_N`` itself (not its derivative).

``S_N(rho) = a sum_i rho_i + 1/2 sum_{i<j} psi_N(rho_i - rho_j)`` with
``psi_N(x) = log N + L(x) - L(x/N)`` (``L(x) = log(sinh x / x)``), ``psi_inf = L`` and
``psi_1 = 0``: the same quantity, the same branches and the same series as the numpy reference
``particles.entropy.entropy`` (theory.md section 2), one member at a time in compiled code.  A
free energy of a saved state costs ``d^2 / 2`` pairs; in numpy (both branches of ``L`` for every
pair, in temporaries) that was ~200 ns a pair, several times the Langevin steps between two
saves at ``d = 512``.

``L`` is the Bernoulli series (16 terms) for ``|x| <= 0.5`` and
``|x| - log(2|x|) + log(1 - e^{-2|x|})`` beyond, with the portable ``exp``/``log``/``log1p``;
the pairs of row ``i`` are summed in a fixed order (``portable.sum_lanes``), so the bits do not
depend on the CPU.  Agreement with the reference: 1e-13 relative (tests/test_entropy_values.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..validation import check_depth, fail
from .coefficients import linear_coefficient, log_sinhc_coefficients
from .portable import LOG1P_LO, horner, log1p_core, portable_exp, portable_log, sum_lanes

__all__ = ["entropy_values"]

_SERIES_CUTOFF = 0.5  # as particles.entropy
_C0 = tuple(float(c) for c in log_sinhc_coefficients(16)[0][::-1])  # highest power first


@numba.njit(cache=True, error_model="numpy")
def _log_sinhc(x):
    """``L(x) = log(sinh x / x)``: the series near 0, ``|x| - log 2|x| + log(1 - e^{-2|x|})``."""
    ax = abs(x)
    if ax <= _SERIES_CUTOFF:
        z = x * x
        return z * horner(_C0, z)
    e = portable_exp(-2.0 * ax)
    tail = log1p_core(-e) if -e >= LOG1P_LO else portable_log(1.0 - e)
    return ax - portable_log(2.0 * ax) + tail


@numba.njit(cache=True, error_model="numpy")
def _entropy_rows(rho, n_int, log_n, lin, out, scratch):
    """``out[b] = S_N(rho[b])`` for the rows of ``rho`` (``n_int = 0`` for ``N = inf``)."""
    m, d = rho.shape
    for b in range(m):
        row = rho[b]
        total = 0.0
        if n_int != 1:
            inv_n = 0.0 if n_int == 0 else 1.0 / n_int
            for i in range(d - 1):
                k = 0
                for j in range(i + 1, d):
                    x = row[i] - row[j]
                    if n_int == 0:
                        scratch[k] = _log_sinhc(x)
                    else:
                        scratch[k] = (log_n + _log_sinhc(x)) - _log_sinhc(x * inv_n)
                    k += 1
                total += sum_lanes(scratch, k)
        lin_sum = 0.0
        for i in range(d):
            lin_sum += row[i]
        out[b] = lin * lin_sum + 0.5 * total


def entropy_values(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """``S_N(rho)`` for ``rho`` of shape ``(..., d)`` (compiled; the additive constant dropped as
    in ``particles.entropy.entropy``).

    Parameters
    ----------
    rho : array_like
        Log singular values ``rho = log sigma``, finite, shape ``(..., d)``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``S_N``, float64, shape ``(...)``.

    Raises
    ------
    ValueError
        ``bad depth=...`` or ``bad rho=...`` (not an array of real numbers with an axis).
    """
    n = check_depth(depth)
    try:
        arr = np.asarray(rho, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("rho", rho, "must be an array of real numbers") from None
    if arr.ndim == 0:
        raise fail("rho", rho, "must have at least one axis (..., d)")
    lead, d = arr.shape[:-1], arr.shape[-1]
    rows = np.ascontiguousarray(arr.reshape(-1, d))
    out = np.empty(rows.shape[0])
    n_int = 0 if n == math.inf else int(n)
    log_n = 0.0 if n_int in (0, 1) else float(portable_log(float(n_int)))
    _entropy_rows(rows, n_int, log_n, float(linear_coefficient(d, n)), out, np.empty(max(d, 1)))
    return out.reshape(lead)
