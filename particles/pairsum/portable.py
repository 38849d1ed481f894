r"""Arithmetic that gives the same bits on every CPU: ``exp``, ``log``, ``cos(pi n/den)`` without
libm, and sums in an order fixed by the source.

libm and the vector math libraries differ between machines in the last bit, and a compiler
allowed to reassociate or contract (fast-math) picks a summation order and the fusion of
multiply-adds per CPU target.  The compiled pair sums therefore call only what is here, compiled
without fast-math flags (tests/test_cpu_independence.py compares the host target with
``NUMBA_CPU_NAME=generic``; tests/test_kernels.py checks the accuracy against mpmath):

* ``portable_exp`` (one value) and ``portable_vexp`` (an array, vectorizable; the same bits):
  Cody-Waite reduction ``y = k log 2 + r``, degree-13 Taylor polynomial of ``e^r``, ``2^k`` in
  the exponent bits; ~1 ulp.
* ``portable_log`` and ``portable_vlog``: exponent/mantissa split, ``log1p_core`` of the reduced
  mantissa (``log(1 + f) = 2 atanh(f / (2 + f))``); ~1 ulp.
* ``cospi(n, den) = cos(pi n / den)``: exact integer reduction to ``[0, pi/4]``, Taylor
  polynomials; ~1 ulp.
* ``horner`` (a polynomial in a fixed order) and ``sum_lanes`` (8 fixed partial sums).

The polynomial coefficients come from ``particles.pairsum.coefficients``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .coefficients import COS_POLY, EXP_POLY, LOG_POLY, SIN_POLY

__all__ = [
    "LOG1P_HI",
    "LOG1P_LO",
    "TINY",
    "cospi",
    "horner",
    "log1p_core",
    "portable_exp",
    "portable_log",
    "portable_vexp",
    "portable_vlog",
    "sum_lanes",
]

_LN2_HI = 6.93147180369123816490e-01  # high part of log 2 (trailing zeros: k * _LN2_HI exact)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT_HALF = 0.70710678118654752440
LOG1P_LO = _SQRT_HALF - 1.0  # log1p_core takes f in [LOG1P_LO, LOG1P_HI]
LOG1P_HI = 2.0 * _SQRT_HALF - 1.0
TINY = 2.2250738585072014e-308  # smallest normal float64
_MANT = 0x000FFFFFFFFFFFFF
_SQRT2_MANT = int(np.float64(2.0 * _SQRT_HALF).view(np.int64)) & _MANT  # of 1.4142135623730951


@numba.njit(cache=True, error_model="numpy")
def horner(c, z):
    p = c[0]
    for k in range(1, len(c)):
        p = p * z + c[k]
    return p


@numba.njit(cache=True, error_model="numpy")
def _exp_reduced(y, dy):
    """(e^r, k) with y + dy = k log 2 + r, |r| <= 0.35 (the core of ``portable_vexp`` and
    ``portable_exp``)."""
    k = math.floor(y * _INV_LN2 + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO + dy
    return horner(EXP_POLY, r), k


@numba.njit(cache=True, error_model="numpy")
def portable_vexp(y, dy, out, kbuf):
    """out = exp(y + dy) (dy a tiny correction), |y| <= 705; vectorizable, ~1 ulp.

    Cody-Waite reduction y = k log 2 + r (k log2_hi exact), degree-13 Taylor polynomial for
    e^r (|r| <= 0.35, truncation < 5e-18), 2^k assembled in the exponent bits.  Plain IEEE
    arithmetic in a fixed order (no contraction, no libm call): the same bits on every CPU."""
    n = y.shape[0]
    for i in range(n):
        p, k = _exp_reduced(y[i], dy[i])
        out[i] = p
        kbuf[i] = (np.int64(k) + 1023) << 52
    scale = kbuf.view(np.float64)
    for i in range(n):
        out[i] *= scale[i]


@numba.njit(cache=True, error_model="numpy")
def portable_exp(y):
    """exp(y) for one value, the arithmetic of ``portable_vexp`` (identical bits for
    |y| <= 705); NaN propagates, y > 709.78 gives inf and y < -708 gives 0 or a subnormal
    (ldexp, exact)."""
    if not (y == y):
        return y
    if y > 709.8:
        return np.inf
    if y < -746.0:
        return 0.0
    p, k = _exp_reduced(y, 0.0)
    if k > 1023.0 or k < -1022.0:  # 2^k is not a normal float: scale in two exact steps
        half = np.int64(k) // 2
        return math.ldexp(math.ldexp(p, half), np.int64(k) - half)
    return math.ldexp(p, np.int64(k))


@numba.njit(cache=True, error_model="numpy")
def log1p_core(f):
    """log(1 + f) for ``LOG1P_LO <= f <= LOG1P_HI`` (f exact): ``f - s (f - R)``, ~1 ulp."""
    s = f / (2.0 + f)
    z = s * s
    return f - s * (f - z * horner(LOG_POLY, z))


@numba.njit(cache=True, error_model="numpy")
def _log_assemble(m, e):
    """log(2^e m) for m in [sqrt(1/2), sqrt(2)): e log 2 + log1p(m - 1) (m - 1 exact)."""
    return e * _LN2_HI + (log1p_core(m - 1.0) + e * _LN2_LO)


@numba.njit(cache=True, error_model="numpy")
def portable_log(x):
    """log(x), ~1 ulp, plain IEEE arithmetic (no libm): the same bits on every CPU and the same
    as ``portable_vlog`` for positive normal x.  log(0) = -inf, log(x < 0) = NaN, log(inf) = inf."""
    if not (x > 0.0):
        return -np.inf if x == 0.0 else np.nan
    if x == np.inf:
        return x
    m, e = math.frexp(x)  # x = m 2^e, m in [1/2, 1) (exact, subnormals too)
    if m < _SQRT_HALF:
        m = 2.0 * m
        e -= 1
    return _log_assemble(m, float(e))


@numba.njit(cache=True, error_model="numpy")
def portable_vlog(x, out, bits):
    """out = log(x) for positive normal finite x (``x >= TINY``), vectorizable: exponent and
    mantissa split on the bits (``bits`` an int64 scratch array), then ``_log_assemble``; the
    same bits as ``portable_log``.  ``x`` and ``out`` may be the same array."""
    n = x.shape[0]
    xb = x.view(np.int64)
    for i in range(n):
        b = xb[i]
        mant = b & _MANT
        up = mant >= _SQRT2_MANT  # m = 1.mant >= 2 _SQRT_HALF: use m/2 and e + 1 (as portable_log)
        bits[i] = mant | ((np.int64(1022) if up else np.int64(1023)) << 52)
    m = bits.view(np.float64)
    for i in range(n):
        b = xb[i]
        mant = b & _MANT
        e = (b >> 52) - 1023 + (1 if mant >= _SQRT2_MANT else 0)
        out[i] = _log_assemble(m[i], float(e))


@numba.njit(cache=True, error_model="numpy")
def cospi(n, den):
    """cos(pi n / den) for integers n >= 0, den >= 1, ~1 ulp, no libm call: the angle is
    reduced exactly in integers to [0, pi/4], then Taylor polynomials of sin or cos (degree 21
    and 20 at |x| <= pi/4: truncation < 1e-21)."""
    n = n % (2 * den)
    if n > den:  # cos(pi t) = cos(pi (2 - t))
        n = 2 * den - n
    sign = 1.0
    if 2 * n > den:  # cos(pi t) = -cos(pi (1 - t))
        n = den - n
        sign = -1.0
    if 4 * n > den:  # t in (1/4, 1/2]: cos(pi t) = sin(pi (1/2 - t)) = sin(pi (den - 2n) / 2den)
        x = math.pi * float(den - 2 * n) / (2.0 * float(den))
        z = x * x
        return sign * (x + x * (z * horner(SIN_POLY, z)))
    x = math.pi * float(n) / float(den)
    z = x * x
    return sign * (1.0 + z * horner(COS_POLY, z))


# No reduction may be reassociated (that is what made results depend on the CPU: the compiler
# splits a sum into as many partial sums as the target's vector registers hold).  The row sums
# are instead written as sums whose order the source fixes: the pair values go to a scratch row
# (the pair loop stays a plain elementwise loop, which vectorizes), then ``sum_lanes``.


@numba.njit(cache=True, error_model="numpy")
def sum_lanes(a, n):
    """sum(a[:n]) with 8 partial sums over j = l (mod 8), combined pairwise, then the
    remainder in order (a fixed order; a[:n] is left alone)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
        s4 += a[j + 4]
        s5 += a[j + 5]
        s6 += a[j + 6]
        s7 += a[j + 7]
    t = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for j in range(n8, n):
        t += a[j]
    return t
