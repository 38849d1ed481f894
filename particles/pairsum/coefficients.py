r"""Every series coefficient of the entropy code, in one place (exact rationals, then float64).

The compiled pair sums (``particles.pairsum``) and the numpy reference (``particles.entropy``)
both take their Taylor coefficients from here, so the two cannot drift apart.

* ``L(x) = log(sinh x / x)`` and its derivatives (theory.md section 2):
  ``L'(x) = coth x - 1/x = sum_{n>=1} c_n x^{2n-1}`` with ``c_n = 2^{2n} B_{2n} / (2n)!``
  (``lsinhc_series``; ``B_k`` the Bernoulli numbers, ``bernoulli_numbers``), so
  ``L(x) = sum_n c_n x^{2n} / (2n)`` and ``L''(x) = sum_n c_n (2n - 1) x^{2n-2}``
  (``log_sinhc_coefficients``).
* the pair force near coincidence, ``psi_N'(a) = a sum_n c_n (1 - N^{-2n}) a^{2n-2}``
  (``near_coefficients``), and the far correction ``L'(a/N)/N = a sum_n c_n N^{-2n} a^{2n-2}``
  (``large_coefficients``), as used by the compiled kernels.
* the Taylor polynomials of the portable transcendentals (``particles.pairsum.portable``):
  ``EXP_POLY`` (``e^r``), ``LOG_POLY`` (``log(1 + f)`` through ``2 atanh s``), ``SIN_POLY`` and
  ``COS_POLY``.
* the linear coefficient ``a = 1/2 (1 - 1/N)(d - 1)`` of ``S_N`` (``linear_coefficient``; also
  exported by ``particles.entropy``) and ``1 - 1/N`` (``one_minus``).

Pure Python (``fractions.Fraction``): nothing here is compiled.  Every float is the correctly
rounded value of its exact rational (one rounding, in ``float(Fraction)``), except the
polynomials of the transcendentals, which keep the expressions they have always had (their
bits are part of the kernels' results).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

__all__ = [
    "COS_POLY",
    "EXP_POLY",
    "LOG_POLY",
    "LSINHC1_COEFFICIENTS",
    "N_LARGE",
    "N_NEAR",
    "SIN_POLY",
    "bernoulli_numbers",
    "large_coefficients",
    "linear_coefficient",
    "log_sinhc_coefficients",
    "lsinhc_series",
    "near_coefficients",
    "one_minus",
]

N_NEAR = 9  # terms of the near series (|a| <= 0.35: truncation < 6e-18 relative)
N_LARGE = 18  # terms of L'(y)/N for y = a/N <= 1 (next term < 1e-17 relative)


def bernoulli_numbers(n_max: int) -> list[Fraction]:
    """The Bernoulli numbers ``B_0 .. B_{n_max}`` (``B_1 = -1/2``), exactly.

    From the recurrence ``sum_{k<=m} C(m+1, k) B_k = 0`` for ``m >= 1``.

    Parameters
    ----------
    n_max : int
        The largest index, >= 0.

    Returns
    -------
    list of fractions.Fraction
        ``[B_0, ..., B_{n_max}]``.
    """
    b = [Fraction(0)] * (n_max + 1)
    b[0] = Fraction(1)
    for m in range(1, n_max + 1):
        b[m] = -sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1)
    return b


def lsinhc_series(n_terms: int) -> list[Fraction]:
    """``c_1 .. c_{n_terms}`` of ``L'(x) = coth x - 1/x = sum_{n>=1} c_n x^{2n-1}``, exactly.

    ``c_n = 2^{2n} B_{2n} / (2n)!`` (``c_1 = 1/3``, ``c_2 = -1/45``, ``c_3 = 2/945``, ...).

    Parameters
    ----------
    n_terms : int
        Number of coefficients, >= 1.

    Returns
    -------
    list of fractions.Fraction
        ``[c_1, ..., c_{n_terms}]``.
    """
    b = bernoulli_numbers(2 * n_terms)
    return [
        Fraction(2 ** (2 * n)) * b[2 * n] / math.factorial(2 * n) for n in range(1, n_terms + 1)
    ]


_C_SERIES = lsinhc_series(N_LARGE)
#: ``c_1 .. c_12`` as floats (lowest first): ``L'(x)/x`` in powers of ``x^2`` for ``|x| <= 1/2``
LSINHC1_COEFFICIENTS = tuple(float(c) for c in _C_SERIES[:12])


def log_sinhc_coefficients(n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients in powers of ``x^2`` (lowest first) of ``L(x)``, ``L'(x)/x`` and ``L''(x)``.

    ``L(x) = sum_n c_n/(2n) x^{2n}`` (from ``x^2`` on), ``L'(x)/x = sum_n c_n x^{2n-2}``,
    ``L''(x) = sum_n c_n (2n - 1) x^{2n-2}``, with ``c_n`` from ``lsinhc_series``.

    Parameters
    ----------
    n_terms : int
        Number of terms of each series, >= 1.

    Returns
    -------
    tuple of three numpy.ndarray
        The float64 coefficients of ``L`` (of ``x^2, x^4, ...``), ``L'/x`` and ``L''`` (of
        ``1, x^2, ...``), each of length ``n_terms``.
    """
    a = lsinhc_series(n_terms)
    c0 = [float(a_n / (2 * n)) for n, a_n in enumerate(a, start=1)]  # x^{2n}
    c1 = [float(a_n) for a_n in a]  # L'(x)/x: x^{2n-2}
    c2 = [float(a_n * (2 * n - 1)) for n, a_n in enumerate(a, start=1)]  # x^{2n-2}
    return np.array(c0), np.array(c1), np.array(c2)


@functools.lru_cache(maxsize=64)
def near_coefficients(depth: int | float) -> tuple[float, ...]:
    """Horner coefficients (highest first) of ``psi_N'(a)/a`` in powers of ``a^2``.

    ``psi_N'(a)/a = sum_{n<=N_NEAR} c_n (1 - N^{-2n}) a^{2n-2}`` (``c_n`` at ``N = inf``).

    Parameters
    ----------
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.

    Returns
    -------
    tuple of float
        ``N_NEAR`` coefficients, the one of ``a^{2 N_NEAR - 2}`` first.
    """
    if depth == math.inf:
        cs = [float(c) for c in _C_SERIES[:N_NEAR]]
    else:
        n = Fraction(int(depth))
        cs = [float(c * (1 - n ** (-2 * k))) for k, c in enumerate(_C_SERIES[:N_NEAR], start=1)]
    return tuple(cs[::-1])


@functools.lru_cache(maxsize=64)
def large_coefficients(depth: int | float) -> tuple[float, ...]:
    """Horner coefficients (highest first) of ``L'(a/N)/(N a)`` in powers of ``a^2``.

    ``L'(a/N)/(N a) = sum_{n<=N_LARGE} c_n N^{-2n} a^{2n-2}``; zeros at ``N = inf``.

    Parameters
    ----------
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.

    Returns
    -------
    tuple of float
        ``N_LARGE`` coefficients, the one of ``a^{2 N_LARGE - 2}`` first.
    """
    if depth == math.inf:
        return (0.0,) * N_LARGE
    n = Fraction(int(depth))
    cs = [float(c / n ** (2 * k)) for k, c in enumerate(_C_SERIES, start=1)]
    return tuple(cs[::-1])


#: ``e^r = sum_{k<=13} r^k / k!`` (Horner, highest first), for ``|r| <= 0.35``
EXP_POLY = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))
#: ``R(z) = sum_{k=1}^{11} 2 z^{k-1} / (2k + 1)`` (Horner, highest first; times ``z``): with
#: ``s = f / (2 + f)``, ``z = s^2``, ``log(1 + f) = 2 atanh s = f - s (f - z R(z))`` (from
#: ``2 s = f - s f``); ``|f| <= sqrt(2) - 1`` gives ``z <= 0.0295``, truncation below 1e-19
LOG_POLY = tuple(2.0 / (2 * k + 1) for k in range(11, 0, -1))
#: ``(sin x - x) / x^3`` in powers of ``z = x^2`` (Horner, highest first), 10 terms
SIN_POLY = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(10, 0, -1))
#: ``(cos x - 1) / x^2`` in powers of ``z = x^2`` (Horner, highest first), 10 terms
COS_POLY = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(10, 0, -1))


def one_minus(depth: int | float) -> float:
    """``1 - 1/N`` (``1`` at ``N = inf``).

    Parameters
    ----------
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf`` (not validated).

    Returns
    -------
    float
        ``1 - 1/N``.
    """
    return 1.0 if depth == math.inf else 1.0 - 1.0 / depth


def linear_coefficient(width: int, depth: int | float) -> float:
    """``a = 1/2 (1 - 1/N)(d - 1)``: the coefficient of ``sum_i rho_i`` in ``S_N``.

    Parameters
    ----------
    width : int
        Width ``d``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    float
        ``a`` (``1/2 (d - 1)`` at ``N = inf``).
    """
    return 0.5 * one_minus(depth) * (width - 1)
