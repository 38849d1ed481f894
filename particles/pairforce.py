r"""Compiled pair force of the chamber entropy, exact to rounding, and its fast summation.

Every entry point returns, for each member (row) of a batch of positions of shape ``(..., d)``,

    F_i = sum_{j != i} psi_N'(rho_i - rho_j),     psi_N'(x) = coth x - coth(x/N)/N,

(``psi_inf'(x) = coth x - 1/x``; ``N = 1`` gives 0), so that ``dS_N/drho_i = a + F_i / 2``
(theory.md section 2).  ``pair_force`` takes ``rho = log sigma``; ``pair_force_u`` takes the flat
coordinates ``u = sigma^{1/N}`` of the Langevin engine (finite ``N``), i.e. ``rho = N log u``.

Per pair.  With ``a = |rho_i - rho_j|``, ``g = psi_N'(a) >= 0``; the pair adds
``sign(rho_i - rho_j) g`` to ``F_i`` and the opposite to ``F_j`` (each pair is evaluated once).

* near, ``a <= NEAR_CUT = 0.35``: the odd Taylor series ``g = a sum_n c_n (1 - N^{-2n}) a^{2n-2}``
  (``c_n = 2^{2n} B_{2n} / (2n)!``, 9 terms, truncation < 6e-18 relative) in the exact difference
  ``a``.  This is where ``coth x`` and ``coth(x/N)/N`` cancel; the series has no cancellation.
* far, ``a > NEAR_CUT``, no transcendental call per pair.  Per member, ``w_i = e^{2(rho_i-c)/N}``
  and ``v_i = e^{2(rho_i-c)}`` (``c`` the member's centre; the rounding of ``rho_i - c`` and of the
  division by ``N`` is carried into the exponential, so both are within ~1 ulp whatever
  ``|rho|``) and their inverses are computed once (a vectorized ``exp``); then
  ``s = e^{-2a/N} = min(w_i/w_j, w_j/w_i)`` and ``t = e^{-2a} = min(v_i/v_j, v_j/v_i)`` are
  products, and

      N <= SMALL_DEPTH = 16:  g = (1 - 1/N) + 2 [t N (1 - s) - s (1 - t)] / [N (1 - s)(1 - t)]
      N = inf:                g = [(1 + t) a - (1 - t)] / [a (1 - t)]           (= coth a - 1/a)
      N > 16:                 g = (coth a - 1/a) - L'(a/N)/N, with L'(y) = coth y - 1/y from its
                              series (18 terms) for y = a/N <= 1, else from
                              [a (1 + s) - N (1 - s)] / [N a (1 - s)].

  One division per pair.  (The first line is ``coth a - coth(a/N)/N`` with the constant
  ``1 - 1/N`` split off, so far pairs are within ~1 ulp.)  For ``pair_force`` with
  ``2 <= N <= 16`` and ``d < SORT_WIDTH``, ``t = s^N`` is formed per pair by repeated squaring
  (``N`` a compile-time constant, one specialization per ``N``), so only ``w`` needs an
  exponential.  For ``a > 0.35`` the cancellation inside these quotients is at most a factor ~30
  and the ~1 ulp errors of ``s`` and ``t`` move ``g`` by at most ~N/a^3 ulp, which is why the
  first form stops at ``N = 16``.  Measured against mpmath: ~1 ulp on average, worst pair 6e-14
  relative (just above the cut, N = 16).
* ``pair_force_u`` with ``2 <= N <= 16`` and ``d < SORT_WIDTH``: the rational form in
  ``s = (u_lo/u_hi)^2`` (``u`` scaled by a power of two, which is exact), free of cancellation:

      g = m Q(s) / (N S(s)),   m = 1 - s = (u_hi - u_lo)(u_hi + u_lo) / u_hi^2,
      S(s) = sum_{k<N} s^k,   Q(s) = sum_{k=0}^{N-2} (k + 1)(N - 1 - k) s^k,

  all coefficients positive (``N`` is a compile-time constant, one specialization per ``N``).
  Elsewhere ``pair_force_u`` forms ``rho' = N log(u/c)`` per particle (``N log1p((u - c)/c)``
  near the centre ``c``, so that close particles keep their exact difference) and proceeds as
  ``pair_force``.

Layouts.  ``d < SORT_WIDTH`` and ``2 <= N <= 16`` (the chain form in ``rho``, the rational form
in ``u``): members go ``LANES`` at a time into a transposed block (particle index first, member
last), and the pair sum runs with the loop over members innermost: contiguous, vectorized
across members with no per-row remainder, rows four at a time (``_lanes_pair_sum``; both
branches evaluated and selected).  Other depths at ``d < SORT_WIDTH``: rows two at a time, one
pass over ``j`` that evaluates both branches and selects (vectorizes over ``j``).
``d >= SORT_WIDTH``: the member is sorted (insertion sort, linear for nearly sorted rows such
as consecutive Langevin states; quicksort otherwise) and each row splits into a near run and
a far run, each its own vectorized loop.
Members with a spread above ``SPREAD_MAX`` in ``rho`` (``e^{2 rho}`` would overflow) or with
non-finite entries use a scalar per-pair evaluation (``exp`` per pair; NaN propagates).
Accuracy (tests/test_kernels.py, against the numpy reference ``particles.entropy``): relative
force error ``max_i |F_i - F_i^ref| / max_j |F_j^ref|`` below 2e-14 on random, near-coincident
(pairs at 0, 1e-14, 1e-10, 1e-6, 1e-3), fully clustered and widely spread (+-300) members.

Fast summation (``method="fast"``; ``"auto"`` from ``d >= CROSSOVER_WIDTH``).  The kernel
``K(x, y) = psi_N'(x - y)`` on the member's interval ``[lo, hi]`` is replaced by its tensor
Chebyshev interpolant of rank ``r`` (``r`` first-kind nodes per variable):
``F_i ~ sum_{k<r} G_k T_k(x_i)``, ``G = C K C^T W``, ``W_l = sum_j T_l(x_j)``, ``O(d r + r^2)``
work (``r^2/2`` kernel values).  ``psi_N'`` is analytic in the strip ``|Im x| < pi``, so the rank
grows with the spread: ``r ~ log(1/tol) / log(q)``, ``q = pi/h + sqrt(1 + (pi/h)^2)``,
``h = (hi - lo)/2`` (about 45 at tol 1e-12 for ``h = 3``).  A rank is accepted when
``4 d`` times the size of the last two coefficient rows of ``C K C^T`` is at most
``tol * max_i |F_i|`` (the largest force sits at an end particle, since ``F`` increases with the
position); otherwise it grows by 1.5x.  A member falls back to the exact kernel when the rank
would exceed ``d/4`` or, for ``"auto"``, when a cost model says the exact kernel is cheaper.

Same bits on every CPU.  No kernel is compiled with fast-math flags: without reassociation and
contraction LLVM may neither reorder a sum nor fuse a multiply-add, and those are what it does
differently per target (vector width, FMA).  Sums over pairs therefore have an order fixed by the
source (the pair values of a row go to a scratch row, summed by ``_sum_lanes`` with 8 partial
sums; the small-width kernels vectorize across members, whose lanes are independent), and no
libm or vector-library transcendental is called (they differ between machines in the last bit):
``_exp``/``_vexp``, ``_log``/``_vlog``, ``_log1p_core`` and ``_cospi`` are plain IEEE arithmetic
(tests/test_cpu_independence.py compares the host target with ``NUMBA_CPU_NAME=generic``).  The
price is the FMA: ~10-25% of the speed on a CPU that has it (benchmarks/compare_kernels.py).

Threads.  ``threads`` (default ``default_threads()``: 1 inside a worker process or a non-main
thread, else ``numba.get_num_threads()``) above 1 selects a ``parallel=True`` driver with
``prange`` over chunks of members.  A member is always computed by the same code, and every choice
(layout, fallback, rank) depends only on that member's data, so results are bitwise independent
of the batch composition, of the chunking and of ``threads``.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import numbers
import threading
from fractions import Fraction

import numba
import numpy as np
from numba import prange

from .entropy import linear_coefficient
from .validation import check_depth, check_positive, fail

__all__ = [
    "CROSSOVER_WIDTH",
    "DEFAULT_TOL",
    "KERNEL_NAMES",
    "NEAR_CUT",
    "SMALL_DEPTH",
    "SORT_WIDTH",
    "SPREAD_MAX",
    "default_threads",
    "entropy_gradient",
    "entropy_gradient_u",
    "pair_force",
    "pair_force_u",
]

DEFAULT_TOL = 1e-12
# Fast summation is tried from this width on (method="auto").  Measured with
# benchmarks/bench_kernels.py (one thread, N = 10, 8 rows rho ~ normal(0, 1), default tol, rank
# 37-40), exact vs fast per member: d = 256: 0.053 vs 0.062 ms; d = 320: 0.074 vs 0.066 ms;
# d = 384: 0.101 vs 0.073 ms; d = 512: 0.154 vs 0.067 ms (benchmarks/results/kernels.md).  Wider
# spreads need larger ranks; the per-member cost model below then keeps the exact kernel.
CROSSOVER_WIDTH = 320
SORT_WIDTH = 64  # d >= SORT_WIDTH: sorted near/far split; below: one branch-free pass
NEAR_CUT = 0.35  # |rho_i - rho_j| <= NEAR_CUT: Taylor series of psi_N'
SMALL_DEPTH = 16  # N <= SMALL_DEPTH: the one-division far formula (and the rational u form)
SPREAD_MAX = 700.0  # max - min of rho above which e^{2 rho} would overflow: per-pair exp

# kernel codes reported by ``return_plan=True``
KERNEL_NAMES = {
    0: "zero",  # d < 2 or N = 1
    1: "branchless",  # branch-free pass over j > i (members vectorized in blocks: N <= 16)
    2: "sorted",  # sorted rows, near and far runs
    3: "rational-u",  # pair_force_u, N <= SMALL_DEPTH, branch-free rational form in u
    4: "per-pair-exp",  # spread > SPREAD_MAX or non-finite input: exp per pair
    5: "chebyshev",  # fast summation
}
_K_ZERO, _K_BRANCHLESS, _K_SORTED, _K_RATIONAL, _K_GENERIC, _K_FAST = range(6)
_FAM_SMALL, _FAM_LARGE, _FAM_INF = 0, 1, 2
_ENTRY_RHO, _ENTRY_U = 0, 1
_METHOD_EXACT, _METHOD_FAST, _METHOD_AUTO = 0, 1, 2
_METHODS = {"exact": _METHOD_EXACT, "fast": _METHOD_FAST, "auto": _METHOD_AUTO}

_N_NEAR = 9  # terms of the near series (|a| <= 0.35: truncation < 6e-18 relative)
_N_LARGE = 18  # terms of L'(y)/N for y = a/N <= 1 (next term < 1e-17 relative)
_LARGE_Y = 1.0
# cost model for method="auto", in units of one exact pair evaluation (per member):
# exact d (d - 1) / 2; fast ~ 50 r^2 / 2 (kernel matrix, exp per entry) + 7 r^2 + 1.5 d r
# (fitted to benchmark timings: 0.7 ns per exact pair, 0.9 ns per d r, 23 ns per r^2)
_COST_KMAT = 50.0
_COST_R2 = 7.0
_COST_DR = 1.5
_SMALL_WORK = 40_000  # members * d^2 below which threads are not worth starting
_CHEB_BLOCK = 256
LANES = 128  # members per transposed block of the small-width kernels (_lanes_pair_sum)


# ---------------------------------------------------------------------------- coefficients
def _bernoulli_even(n_max: int) -> list[Fraction]:
    """B_0..B_{n_max} by the recurrence sum_{k<=m} C(m+1, k) B_k = 0 (B_1 = -1/2)."""
    b = [Fraction(0)] * (n_max + 1)
    b[0] = Fraction(1)
    for m in range(1, n_max + 1):
        b[m] = -sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1)
    return b


def _lsinhc_series(n_terms: int) -> list[Fraction]:
    """c_n, n = 1..n_terms, with L'(x) = coth x - 1/x = sum_n c_n x^{2n-1}."""
    b = _bernoulli_even(2 * n_terms)
    return [
        Fraction(2 ** (2 * n)) * b[2 * n] / math.factorial(2 * n) for n in range(1, n_terms + 1)
    ]


_C_SERIES = _lsinhc_series(_N_LARGE)
_C1_FLOAT = tuple(float(c) for c in _C_SERIES[:12])  # _lsinhc1: |x| <= 1/2


@functools.lru_cache(maxsize=64)
def _near_coefficients(depth: int | float) -> tuple[float, ...]:
    """Horner coefficients (highest first) of psi_N'(a)/a in powers of a^2."""
    if depth == math.inf:
        cs = [float(c) for c in _C_SERIES[:_N_NEAR]]
    else:
        n = Fraction(int(depth))
        cs = [float(c * (1 - n ** (-2 * k))) for k, c in enumerate(_C_SERIES[:_N_NEAR], start=1)]
    return tuple(cs[::-1])


@functools.lru_cache(maxsize=64)
def _large_coefficients(depth: int | float) -> tuple[float, ...]:
    """Horner coefficients of L'(a/N)/(N a) in powers of a^2 (zeros for N = inf)."""
    if depth == math.inf:
        return (0.0,) * _N_LARGE
    n = Fraction(int(depth))
    cs = [float(c / n ** (2 * k)) for k, c in enumerate(_C_SERIES, start=1)]
    return tuple(cs[::-1])


def _family(depth: int | float) -> int:
    if depth == math.inf:
        return _FAM_INF
    return _FAM_SMALL if depth <= SMALL_DEPTH else _FAM_LARGE


# ---------------------------------------------------------------------------- scalar exact
@numba.njit(cache=True, error_model="numpy")
def _horner(c, z):
    p = c[0]
    for k in range(1, len(c)):
        p = p * z + c[k]
    return p


@numba.njit(cache=True, error_model="numpy")
def _lsinhc1(x):
    """L'(x) = coth x - 1/x (odd), scalar, ~1 ulp: series for |x| <= 1/2, else exp form."""
    ax = abs(x)
    if ax <= 0.5:
        z = x * x
        c = _C1_FLOAT
        p = c[11]
        for k in range(10, -1, -1):
            p = p * z + c[k]
        return x * p
    if not (ax < 350.0):  # e^{-2 ax} < 1e-304 does not change the quotient; NaN stays NaN
        return x if ax != ax else math.copysign(1.0 - 1.0 / ax, x)
    t = _exp(-2.0 * ax)
    val = (1.0 + t) / (1.0 - t) - 1.0 / ax
    return val if x > 0 else -val


@numba.njit(cache=True, error_model="numpy")
def _dpsi(x, inv_n):
    """psi_N'(x) = L'(x) - L'(x/N)/N; ``inv_n = 1/N`` (0 for N = inf)."""
    if inv_n == 0.0:
        return _lsinhc1(x)
    return _lsinhc1(x) - _lsinhc1(x * inv_n) * inv_n


@numba.njit(cache=True, error_model="numpy")
def _generic_member(x, inv_n, out):
    """Scalar per-pair evaluation (exp per pair); NaN in -> NaN out."""
    d = x.shape[0]
    for i in range(d):
        out[i] = 0.0
    for i in range(d - 1):
        xi = x[i]
        acc = 0.0
        for j in range(i + 1, d):
            f = _dpsi(xi - x[j], inv_n)
            acc += f
            out[j] -= f
        out[i] += acc


# ---------------------------------------------------------------------------- precomputation
_LN2_HI = 6.93147180369123816490e-01  # high part of log 2 (trailing zeros: k * _LN2_HI exact)
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_POLY = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # e^r, |r| <= 0.35
# log(1 + f) = f - s (f - R(s^2)), s = f / (2 + f), R(z) = sum_{k>=1} 2 z^k / (2k + 1) (from
# 2 atanh s = log(1 + f) and 2 s = f - s f); |f| <= sqrt(2) - 1 gives z <= 0.0295, and 11 terms
# leave a truncation below 1e-19 relative
_LOG_POLY = tuple(2.0 / (2 * k + 1) for k in range(11, 0, -1))  # Horner, highest first; times z
_SQRT_HALF = 0.70710678118654752440
_LOG1P_LO = _SQRT_HALF - 1.0  # _log1p_core takes f in [_LOG1P_LO, _LOG1P_HI]
_LOG1P_HI = 2.0 * _SQRT_HALF - 1.0
_TINY = 2.2250738585072014e-308  # smallest normal float64
_MANT = 0x000FFFFFFFFFFFFF
_SQRT2_MANT = int(np.float64(2.0 * _SQRT_HALF).view(np.int64)) & _MANT  # of 1.4142135623730951


@numba.njit(cache=True, error_model="numpy")
def _exp_reduced(y, dy):
    """(e^r, k) with y + dy = k log 2 + r, |r| <= 0.35 (the core of ``_vexp``, ``_exp``)."""
    k = math.floor(y * _INV_LN2 + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO + dy
    return _horner(_EXP_POLY, r), k


@numba.njit(cache=True, error_model="numpy")
def _vexp(y, dy, out, kbuf):
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
def _exp(y):
    """exp(y) for one value, the arithmetic of ``_vexp`` (identical bits for |y| <= 705); NaN
    propagates, y > 709.78 gives inf and y < -708 gives 0 or a subnormal (ldexp, exact)."""
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
def _log1p_core(f):
    """log(1 + f) for ``_LOG1P_LO <= f <= _LOG1P_HI`` (f exact): ``f - s (f - R)``, ~1 ulp."""
    s = f / (2.0 + f)
    z = s * s
    return f - s * (f - z * _horner(_LOG_POLY, z))


@numba.njit(cache=True, error_model="numpy")
def _log_assemble(m, e):
    """log(2^e m) for m in [sqrt(1/2), sqrt(2)): e log 2 + log1p(m - 1) (m - 1 exact)."""
    return e * _LN2_HI + (_log1p_core(m - 1.0) + e * _LN2_LO)


@numba.njit(cache=True, error_model="numpy")
def _log(x):
    """log(x), ~1 ulp, plain IEEE arithmetic (no libm): the same bits on every CPU and the same
    as ``_vlog`` for positive normal x.  log(0) = -inf, log(x < 0) = NaN, log(inf) = inf."""
    if not (x > 0.0):
        return -np.inf if x == 0.0 else np.nan
    if x == np.inf:
        return x
    m, e = math.frexp(x)  # x = m 2^e, m in [1/2, 1) (exact, subnormals too)
    if m < _SQRT_HALF:
        m = 2.0 * m
        e -= 1
    return _log_assemble(m, float(e))


#: ``log`` with the same bits on every CPU target (no libm), for the other compiled modules.
portable_log = _log


@numba.njit(cache=True, error_model="numpy")
def _vlog(x, out, bits):
    """out = log(x) for positive normal finite x (``x >= _TINY``), vectorizable: exponent and
    mantissa split on the bits (``bits`` an int64 scratch array), then ``_log_assemble``; the
    same bits as ``_log``.  ``x`` and ``out`` may be the same array."""
    n = x.shape[0]
    xb = x.view(np.int64)
    for i in range(n):
        b = xb[i]
        mant = b & _MANT
        up = mant >= _SQRT2_MANT  # m = 1.mant >= 2 _SQRT_HALF: use m/2 and e + 1 (as _log)
        bits[i] = mant | ((np.int64(1022) if up else np.int64(1023)) << 52)
    m = bits.view(np.float64)
    for i in range(n):
        b = xb[i]
        mant = b & _MANT
        e = (b >> 52) - 1023 + (1 if mant >= _SQRT2_MANT else 0)
        out[i] = _log_assemble(m[i], float(e))


@numba.njit(cache=True, error_model="numpy")
def _prep_rho(x, n_int, fam, w, iw, v, iv, y, dy, kbuf):
    """Per-particle w = e^{2(x-c)/N}, v = e^{2(x-c)} and inverses; False if not applicable."""
    d = x.shape[0]
    lo = x[0]
    hi = x[0]
    for i in range(d):
        xi = x[i]
        if not (xi - xi == 0.0):  # NaN or inf
            return False
        lo = min(lo, xi)
        hi = max(hi, xi)
    if hi - lo > SPREAD_MAX:
        return False
    c = 0.5 * (lo + hi)
    # v = exp(2 (x - c)) with the rounding error of x - c carried along (TwoSum)
    for i in range(d):
        r = x[i] - c
        bp = r - x[i]
        e = (x[i] - (r - bp)) + (-c - bp)
        y[i] = 2.0 * r
        dy[i] = 2.0 * e
    _vexp(y, dy, v, kbuf)
    for i in range(d):
        iv[i] = 1.0 / v[i]
    if fam == _FAM_INF:
        for i in range(d):
            w[i] = 1.0
            iw[i] = 1.0
        return True
    # w = exp(2 (x - c) / N): residual of the division by N from a Veltkamp split (N < 2^26)
    fn = float(n_int)
    exact_split = n_int < 67108864
    for i in range(d):
        r2 = y[i]
        q = r2 / fn
        res = 0.0
        if exact_split:
            cq = 134217729.0 * q
            qh = cq - (cq - q)
            ql = q - qh
            res = ((r2 - qh * fn) - ql * fn) / fn
        y[i] = q
        dy[i] = res + dy[i] / fn
    _vexp(y, dy, w, kbuf)
    for i in range(d):
        iw[i] = 1.0 / w[i]
    return True


_SIN_POLY = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(10, 0, -1))
_COS_POLY = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(10, 0, -1))


@numba.njit(cache=True, error_model="numpy")
def _cospi(n, den):
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
        return sign * (x + x * (z * _horner(_SIN_POLY, z)))
    x = math.pi * float(n) / float(den)
    z = x * x
    return sign * (1.0 + z * _horner(_COS_POLY, z))


# ---------------------------------------------------------------------------- fixed-order sums
# No reduction may be reassociated (that is what made results depend on the CPU: the compiler
# splits a sum into as many partial sums as the target's vector registers hold).  The row sums
# are instead written as sums whose order the source fixes: the pair values go to a scratch row
# (the pair loop stays a plain elementwise loop, which vectorizes), then ``_sum_lanes``.


@numba.njit(cache=True, error_model="numpy")
def _sum_lanes(a, n):
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


# ---------------------------------------------------------------------------- pair kernels
@numba.njit(cache=True, error_model="numpy")
def _pair_branchless(famt, xi, wi, iwi, vi, ivi, xj, wj, iwj, vj, ivj, cn, cl, fn):
    """psi_N'(x_i - x_j) for an unsorted pair: both branches, then a select (vectorizes)."""
    fam = len(famt) - 1
    dx = xi - xj
    a = abs(dx)
    z = a * a
    gn = a * _horner(cn, z)
    t = min(vi * ivj, vj * ivi)
    if fam == _FAM_SMALL:
        s = min(wi * iwj, wj * iwi)
        nm = fn * (1.0 - s)
        gf = (1.0 - 1.0 / fn) + 2.0 * (t * nm - s * (1.0 - t)) / (nm * (1.0 - t))
    elif fam == _FAM_INF:
        gf = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
    else:
        s = min(wi * iwj, wj * iwi)
        gl = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
        ser = a * _horner(cl, z)
        sfar = (a * (1.0 + s) - fn * (1.0 - s)) / (fn * a * (1.0 - s))
        gf = gl - (ser if a <= _LARGE_Y * fn else sfar)
    g = gn if a <= NEAR_CUT else gf
    return math.copysign(g, dx)


@numba.njit(cache=True, error_model="numpy")
def _kernel_branchless(x, w, iw, v, iv, cn, cl, famt, fn, out, g0, g1):
    """Unsorted member: rows in pairs, one pass over j computing both branches (vectorizes
    over j).  The pair values go to the scratch rows ``g0``, ``g1``, and the rows' own sums are
    ``_sum_lanes`` of them (no reduction is reassociated).  The family is ``len(famt) - 1`` (a
    compile-time constant)."""
    d = x.shape[0]
    for i in range(d):
        out[i] = 0.0
    i = 0
    while i + 2 < d:
        x0 = x[i]
        w0 = w[i]
        iw0 = iw[i]
        v0 = v[i]
        iv0 = iv[i]
        x1 = x[i + 1]
        w1 = w[i + 1]
        iw1 = iw[i + 1]
        v1 = v[i + 1]
        iv1 = iv[i + 1]
        f01 = _pair_branchless(famt, x0, w0, iw0, v0, iv0, x1, w1, iw1, v1, iv1, cn, cl, fn)
        xx = x[i + 2 :]
        ww = w[i + 2 :]
        iww = iw[i + 2 :]
        vv = v[i + 2 :]
        ivv = iv[i + 2 :]
        oo = out[i + 2 :]
        m = d - i - 2
        for j in range(m):
            xj = xx[j]
            wj = ww[j]
            iwj = iww[j]
            vj = vv[j]
            ivj = ivv[j]
            f0 = _pair_branchless(famt, x0, w0, iw0, v0, iv0, xj, wj, iwj, vj, ivj, cn, cl, fn)
            f1 = _pair_branchless(famt, x1, w1, iw1, v1, iv1, xj, wj, iwj, vj, ivj, cn, cl, fn)
            g0[j] = f0
            g1[j] = f1
            oo[j] -= f0 + f1
        out[i] += f01 + _sum_lanes(g0, m)
        out[i + 1] += _sum_lanes(g1, m) - f01
        i += 2
    if i + 1 < d:
        f = _pair_branchless(
            famt,
            x[i],
            w[i],
            iw[i],
            v[i],
            iv[i],
            x[i + 1],
            w[i + 1],
            iw[i + 1],
            v[i + 1],
            iv[i + 1],
            cn,
            cl,
            fn,
        )
        out[i] += f
        out[i + 1] -= f


@numba.njit(cache=True, error_model="numpy")
def _kernel_sorted(x, w, iw, v, iv, cn, cl, famt, fn, out, gb):
    """Member sorted ascending: per row a near run (series) and a far run (quotients), each a
    vectorized loop that writes its pair values to the scratch row ``gb``; the row's own sum is
    ``_sum_lanes`` of them (no reduction is reassociated).

    The family is ``len(famt) - 1`` (as in ``_kernel_branchless``)."""
    fam = len(famt) - 1
    d = x.shape[0]
    for i in range(d):
        out[i] = 0.0
    k = 0
    for i in range(d - 1):
        xi = x[i]
        wi = w[i]
        vi = v[i]
        lim = xi + NEAR_CUT
        if k < i + 1:
            k = i + 1
        while k < d and x[k] <= lim:
            k += 1
        # near run j in (i, k): a = x_j - x_i in [0, NEAR_CUT]
        xx = x[i + 1 : k]
        oo = out[i + 1 : k]
        mn = k - i - 1
        for j in range(mn):
            a = xx[j] - xi
            g = a * _horner(cn, a * a)
            gb[j] = g
            oo[j] += g
        near = _sum_lanes(gb, mn)
        # far run j >= k
        oo = out[k:]
        m = d - k
        if fam == _FAM_SMALL:
            iww = iw[k:]
            ivv = iv[k:]
            c0 = 1.0 - 1.0 / fn
            for j in range(m):
                s = wi * iww[j]
                t = vi * ivv[j]
                nm = fn * (1.0 - s)
                g = c0 + 2.0 * (t * nm - s * (1.0 - t)) / (nm * (1.0 - t))
                gb[j] = g
                oo[j] += g
        elif fam == _FAM_INF:
            xx = x[k:]
            ivv = iv[k:]
            for j in range(m):
                a = xx[j] - xi
                t = vi * ivv[j]
                g = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
                gb[j] = g
                oo[j] += g
        else:
            xx = x[k:]
            iww = iw[k:]
            ivv = iv[k:]
            for j in range(m):
                a = xx[j] - xi
                s = wi * iww[j]
                t = vi * ivv[j]
                gl = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
                ser = a * _horner(cl, a * a)
                sfar = (a * (1.0 + s) - fn * (1.0 - s)) / (fn * a * (1.0 - s))
                g = gl - (ser if a <= _LARGE_Y * fn else sfar)
                gb[j] = g
                oo[j] += g
        out[i] -= near + _sum_lanes(gb, m)


@numba.njit(cache=True, error_model="numpy")
def _prep_w(x, n_int, w, iw, y, dy, kbuf):
    """``_prep_rho`` for the chain kernel: w = e^{2(x-c)/N} and 1/w only."""
    d = x.shape[0]
    lo = x[0]
    hi = x[0]
    chk = 0.0
    for i in range(d):
        xi = x[i]
        chk += xi * 0.0  # NaN if any entry is NaN or infinite
        lo = min(lo, xi)
        hi = max(hi, xi)
    if not (chk == 0.0 and hi - lo <= SPREAD_MAX):
        return False
    c = 0.5 * (lo + hi)
    fn = float(n_int)
    for i in range(d):
        xi = x[i]
        r = xi - c
        bp = r - xi
        e = (xi - (r - bp)) + (-c - bp)
        r2 = 2.0 * r
        q = r2 / fn
        cq = 134217729.0 * q
        qh = cq - (cq - q)
        ql = q - qh
        y[i] = q
        dy[i] = ((r2 - qh * fn) - ql * fn) / fn + 2.0 * e / fn
    _vexp(y, dy, w, kbuf)
    for i in range(d):
        iw[i] = 1.0 / w[i]
    return True


@numba.njit(cache=True, error_model="numpy")
def _pow_n(nt, s):
    """s^N, N = len(nt) (compile-time constant), by repeated squaring."""
    n = len(nt)
    nb = 0
    while (n >> nb) > 1:
        nb += 1
    p = s
    for b in range(nb - 1, -1, -1):
        p = p * p
        if (n >> b) & 1:
            p = p * s
    return p


@numba.njit(cache=True, error_model="numpy")
def _pair_chain(nt, xi, wi, iwi, xj, wj, iwj, cn, fn):
    """psi_N'(x_i - x_j), 2 <= N <= SMALL_DEPTH, unsorted pair; t = s^N from s itself."""
    dx = xi - xj
    a = abs(dx)
    gn = a * _horner(cn, a * a)
    s = min(wi * iwj, wj * iwi)
    t = _pow_n(nt, s)
    nm = fn * (1.0 - s)
    gf = (1.0 - 1.0 / fn) + 2.0 * (t * nm - s * (1.0 - t)) / (nm * (1.0 - t))
    g = gn if a <= NEAR_CUT else gf
    return math.copysign(g, dx)


@numba.njit(cache=True, error_model="numpy")
def _lanes_pair_sum(form, par, p, q, r, o, nb):
    """``o[i, b] = sum_{j != i} pair(par, p[i, b], q[i, b], r[i, b], p[j, b], q[j, b], r[j, b])``
    for the members ``b < nb`` of a block stored transposed (particle ``i`` in the first axis,
    member ``b`` in the last), for an antisymmetric pair (each unordered pair evaluated once).

    The innermost loop runs over the members: contiguous, as long as the block, the same
    arithmetic in every lane, so it vectorizes without a per-row remainder and a member's result
    does not depend on its lane or on ``nb``.  Rows go four at a time (each ``j`` loaded and
    ``o[j]`` updated once per four pairs, four independent pair evaluations in flight), then the
    remaining rows one at a time.  The pair form is ``_pair_form(form, ...)`` (``form`` a tuple
    whose length selects it at compile time; a function argument would stop numba from
    caching)."""
    d = p.shape[0]
    for i in range(d):
        for b in range(nb):
            o[i, b] = 0.0
    i = 0
    while i + 3 < d:
        p0, q0, r0, o0 = p[i], q[i], r[i], o[i]
        p1, q1, r1, o1 = p[i + 1], q[i + 1], r[i + 1], o[i + 1]
        p2, q2, r2, o2 = p[i + 2], q[i + 2], r[i + 2], o[i + 2]
        p3, q3, r3, o3 = p[i + 3], q[i + 3], r[i + 3], o[i + 3]
        for b in range(nb):
            f01 = _pair_form(form, par, p0[b], q0[b], r0[b], p1[b], q1[b], r1[b])
            f02 = _pair_form(form, par, p0[b], q0[b], r0[b], p2[b], q2[b], r2[b])
            f03 = _pair_form(form, par, p0[b], q0[b], r0[b], p3[b], q3[b], r3[b])
            f12 = _pair_form(form, par, p1[b], q1[b], r1[b], p2[b], q2[b], r2[b])
            f13 = _pair_form(form, par, p1[b], q1[b], r1[b], p3[b], q3[b], r3[b])
            f23 = _pair_form(form, par, p2[b], q2[b], r2[b], p3[b], q3[b], r3[b])
            o0[b] += f01 + f02 + f03
            o1[b] += f12 + f13 - f01
            o2[b] += f23 - f02 - f12
            o3[b] -= f03 + f13 + f23
        for j in range(i + 4, d):
            pj, qj, rj, oj = p[j], q[j], r[j], o[j]
            for b in range(nb):
                g0 = _pair_form(form, par, p0[b], q0[b], r0[b], pj[b], qj[b], rj[b])
                g1 = _pair_form(form, par, p1[b], q1[b], r1[b], pj[b], qj[b], rj[b])
                g2 = _pair_form(form, par, p2[b], q2[b], r2[b], pj[b], qj[b], rj[b])
                g3 = _pair_form(form, par, p3[b], q3[b], r3[b], pj[b], qj[b], rj[b])
                o0[b] += g0
                o1[b] += g1
                o2[b] += g2
                o3[b] += g3
                oj[b] -= (g0 + g1) + (g2 + g3)
        i += 4
    while i + 1 < d:
        p0, q0, r0, o0 = p[i], q[i], r[i], o[i]
        for j in range(i + 1, d):
            pj, qj, rj, oj = p[j], q[j], r[j], o[j]
            for b in range(nb):
                g = _pair_form(form, par, p0[b], q0[b], r0[b], pj[b], qj[b], rj[b])
                o0[b] += g
                oj[b] -= g
        i += 1


_FORM_CHAIN = (0,)  # _pair_chain, par = (nt, cn, fn), per-particle (x, w, 1/w)
_FORM_RATIONAL = (0, 0)  # _pair_rational, par = (nt, cn unused, fn), per-particle (u, 1/u^2, -)


@numba.njit(cache=True, error_model="numpy")
def _q_poly(nt, s):
    """Q(s) = sum_{k=0}^{N-2} (k+1)(N-1-k) s^k, N = len(nt) (a compile-time constant)."""
    n = len(nt)
    p = float(n - 1)
    for kk in range(n - 2):
        k = n - 3 - kk
        p = p * s + float((k + 1) * (n - 1 - k))
    return p


@numba.njit(cache=True, error_model="numpy")
def _s_poly(nt, s):
    """S(s) = sum_{k<N} s^k by binary doubling: S_2k = S_k (1 + s^k), S_k+1 = 1 + s S_k."""
    n = len(nt)
    nb = 0
    while (n >> nb) > 1:
        nb += 1
    acc = 1.0
    p = s
    for b in range(nb - 1, -1, -1):
        acc = acc * (1.0 + p)
        p = p * p
        if (n >> b) & 1:
            acc = acc * s + 1.0
            p = p * s
    return acc


@numba.njit(cache=True, error_model="numpy")
def _pair_rational(nt, fn, ui, iwi, uj, iwj):
    """psi_N'(rho_i - rho_j) at rho = N log u, N = len(nt) <= SMALL_DEPTH: ``m Q(s) / (N S(s))``
    with ``s = (u_lo/u_hi)^2`` (``iw = 1/u^2``), branch-free."""
    hi = max(ui, uj)
    lo = min(ui, uj)
    iwh = min(iwi, iwj)
    s = lo * lo * iwh
    m = (hi - lo) * (hi + lo) * iwh
    g = (m * _q_poly(nt, s)) / (fn * _s_poly(nt, s))
    return math.copysign(g, ui - uj)


@numba.njit(cache=True, error_model="numpy")
def _pair_form(form, par, pi, qi, ri, pj, qj, rj):
    """The pair force of ``_lanes_pair_sum``: ``_FORM_CHAIN`` or ``_FORM_RATIONAL``, chosen by
    the tuple length (a compile-time constant; ``par = (nt, cn, fn)`` for both)."""
    if len(form) == len(_FORM_CHAIN):
        return _pair_chain(par[0], pi, qi, ri, pj, qj, rj, par[1], par[2])
    return _pair_rational(par[0], par[2], pi, qi, pj, qj)


@numba.njit(cache=True, error_model="numpy")
def _heapsort_indices(x, idx):
    """idx[:] = an ascending order of x (heapsort on indices, O(d log d))."""
    n = x.shape[0]
    for i in range(n):
        idx[i] = i
    start = n // 2 - 1
    end = n - 1
    while end > 0:
        if start >= 0:
            root = start
            start -= 1
        else:
            tmp = idx[0]
            idx[0] = idx[end]
            idx[end] = tmp
            end -= 1
            root = 0
        while True:
            child = 2 * root + 1
            if child > end:
                break
            if child < end and x[idx[child]] < x[idx[child + 1]]:
                child += 1
            if x[idx[root]] < x[idx[child]]:
                tmp = idx[root]
                idx[root] = idx[child]
                idx[child] = tmp
                root = child
            else:
                break


@numba.njit(cache=True, error_model="numpy")
def _argsort_adaptive(x, idx):
    """Ascending order of x into idx: insertion sort from the better of the identity and the
    reversal (linear for nearly sorted rows), heapsort when that would take too long."""
    d = x.shape[0]
    if x[0] > x[d - 1]:
        for i in range(d):
            idx[i] = d - 1 - i
    else:
        for i in range(d):
            idx[i] = i
    budget = 4 * d + 64
    moves = 0
    for i in range(1, d):
        cur = idx[i]
        xc = x[cur]
        j = i
        while j > 0 and x[idx[j - 1]] > xc:
            idx[j] = idx[j - 1]
            j -= 1
        idx[j] = cur
        moves += i - j
        if moves > budget:
            _heapsort_indices(x, idx)
            return


# ---------------------------------------------------------------------------- fast summation
@numba.njit(cache=True, error_model="numpy")
def _cheb_moments(xh, r, out_w, b0, b1):
    """out_w[l] = sum_j T_l(xh_j), l < r, blocked over j; each block's T_l row is summed by
    ``_sum_lanes`` (a fixed order)."""
    d = xh.shape[0]
    for l in range(r):
        out_w[l] = 0.0
    for j0 in range(0, d, _CHEB_BLOCK):
        nb = min(_CHEB_BLOCK, d - j0)
        xb = xh[j0 : j0 + nb]
        for j in range(nb):
            b0[j] = 1.0
            b1[j] = xb[j]
        out_w[0] += nb
        if r > 1:
            out_w[1] += _sum_lanes(b1, nb)
        tm = b0
        tc = b1
        for l in range(2, r):
            for j in range(nb):
                tm[j] = 2.0 * xb[j] * tc[j] - tm[j]
            out_w[l] += _sum_lanes(tm, nb)
            tm, tc = tc, tm


@numba.njit(cache=True, error_model="numpy")
def _cheb_eval(xh, g, r, out, b1, b2):
    """out_j = sum_{k<r} g_k T_k(xh_j) by Clenshaw, blocked over j."""
    d = xh.shape[0]
    for j0 in range(0, d, _CHEB_BLOCK):
        nb = min(_CHEB_BLOCK, d - j0)
        xb = xh[j0 : j0 + nb]
        ob = out[j0 : j0 + nb]
        for j in range(nb):
            b1[j] = 0.0
            b2[j] = 0.0
        for kk in range(r - 1):
            gk = g[r - 1 - kk]
            for j in range(nb):
                bn = gk + 2.0 * xb[j] * b1[j] - b2[j]
                b2[j] = b1[j]
                b1[j] = bn
        g0 = g[0]
        for j in range(nb):
            ob[j] = g0 + xb[j] * b1[j] - b2[j]


@numba.njit(cache=True, error_model="numpy")
def _cheb_member(x, inv_n, tol, rmax, out, xh, b1, b2):
    """Chebyshev fast summation of one member; returns the rank used, or -1 (not accurate
    within rank rmax: nothing written)."""
    d = x.shape[0]
    lo = x[0]
    hi = x[0]
    for i in range(d):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    h = 0.5 * (hi - lo)
    if h == 0.0:
        for i in range(d):
            out[i] = 0.0
        return 1
    mid = lo + h
    for i in range(d):
        z = (x[i] - mid) / h
        xh[i] = min(1.0, max(-1.0, z))
    beta = math.pi / h
    q = beta + math.sqrt(1.0 + beta * beta)
    r = max(4, int(math.ceil(_log(160.0 / tol) / _log(q))) + 2)
    while r <= rmax:
        # theta_p = pi (2p + 1) / (2r); cosines by _cospi from the exact integer angles
        nodes = np.empty(r)
        for p in range(r):
            nodes[p] = mid + h * _cospi(2 * p + 1, 2 * r)
        cmat = np.empty((r, r))  # C[k, p] = (2 - delta_k0) / r cos(k theta_p)
        for k in range(r):
            fk = (1.0 if k == 0 else 2.0) / r
            for p in range(r):
                cmat[k, p] = fk * _cospi(k * (2 * p + 1), 2 * r)
        kmat = np.empty((r, r))
        for p in range(r):
            kmat[p, p] = 0.0
            for qq in range(p + 1, r):
                val = _dpsi(nodes[p] - nodes[qq], inv_n)
                kmat[p, qq] = val
                kmat[qq, p] = -val
        wm = np.empty(r)
        _cheb_moments(xh, r, wm, b1, b2)
        zc = np.zeros(r)
        for l in range(r):
            wl = wm[l]
            for p in range(r):
                zc[p] += cmat[l, p] * wl
        yv = np.zeros(r)
        for p in range(r):
            acc = 0.0
            for qq in range(r):
                acc += kmat[p, qq] * zc[qq]
            yv[p] = acc
        g = np.zeros(r)
        for k in range(r):
            acc = 0.0
            for p in range(r):
                acc += cmat[k, p] * yv[p]
            g[k] = acc
        # force scale: the end particles (xh = -1, +1) carry the largest |F|
        f_lo = 0.0
        f_hi = 0.0
        for k in range(r):
            f_hi += g[k]
            f_lo += g[k] if k % 2 == 0 else -g[k]
        fscale = max(abs(f_lo), abs(f_hi))
        # truncation estimate: last two rows of A = C K C^T (A is antisymmetric)
        tail = 0.0
        rowv = np.empty(r)
        for k in range(max(0, r - 2), r):
            for qq in range(r):
                acc = 0.0
                for p in range(r):
                    acc += cmat[k, p] * kmat[p, qq]
                rowv[qq] = acc
            rs = 0.0
            for l in range(r):
                acc = 0.0
                for qq in range(r):
                    acc += rowv[qq] * cmat[l, qq]
                rs += abs(acc)
            tail = max(tail, rs)
        if 4.0 * d * tail <= tol * fscale:
            _cheb_eval(xh, g, r, out, b1, b2)
            return r
        r = int(math.ceil(1.5 * r))
    return -1


@numba.njit(cache=True, error_model="numpy")
def _fast_rank_cap(d, method):
    """Largest rank worth trying: d/4, and for "auto" the rank where the cost model of the fast
    summation reaches that of the exact kernel."""
    cap = d // 4
    if method == _METHOD_AUTO:
        exact = 0.5 * d * (d - 1.0)
        a = 0.5 * _COST_KMAT + _COST_R2
        b = _COST_DR * d
        r_cost = int((-b + math.sqrt(b * b + 4.0 * a * exact)) / (2.0 * a))
        cap = min(cap, r_cost)
    return cap


# ---------------------------------------------------------------------------- one member
@numba.njit(cache=True, error_model="numpy")
def _member(row, out, entry, n_int, fam, cn, cl, method, tol, fs, ks):
    """Forces of one member into ``out``; returns (kernel code, rank)."""
    d = row.shape[0]
    if d < 2 or n_int == 1:
        for i in range(d):
            out[i] = 0.0
        return _K_ZERO, 0
    fn = np.inf if n_int == 0 else float(n_int)
    inv_n = 0.0 if n_int == 0 else 1.0 / n_int
    xs = fs[0]
    w = fs[1]
    iw = fs[2]
    v = fs[3]
    iv = fs[4]
    os = fs[5]
    y = fs[6]
    dy = fs[7]
    x = fs[8]
    g0 = fs[9]
    g1 = fs[10]
    idx = ks[0]
    kbuf = ks[1]
    if entry == _ENTRY_U:
        # positive finite u only (NaN forces otherwise, like a NaN rho)
        ulo = row[0]
        uhi = row[0]
        for i in range(d):
            ui = row[i]
            if not (ui > 0.0 and ui < np.inf):
                for k in range(d):
                    out[k] = np.nan
                return _K_GENERIC, 0
            ulo = min(ulo, ui)
            uhi = max(uhi, ui)
        # rho' = N log(u / c) about the centre c, as N log1p((u - c)/c) near c (exact u - c)
        # (hand-written logarithms: the same bits on every CPU)
        c = math.sqrt(ulo) * math.sqrt(uhi)
        for i in range(d):
            y[i] = row[i] / c
            dy[i] = (row[i] - c) / c
        if ulo / c >= _TINY:
            _vlog(y, x, kbuf)
        else:  # a subnormal ratio (u spread over ~600 decades): the scalar log takes it
            for i in range(d):
                x[i] = _log(y[i])
        for i in range(d):
            qi = dy[i]
            near = qi >= _LOG1P_LO and qi <= _LOG1P_HI
            x[i] = fn * (_log1p_core(qi) if near else x[i])
    else:
        for i in range(d):
            x[i] = row[i]
    for i in range(d):
        if not (x[i] - x[i] == 0.0):
            _generic_member(x, inv_n, out)
            return _K_GENERIC, 0
    if method == _METHOD_FAST or (method == _METHOD_AUTO and d >= CROSSOVER_WIDTH):
        rank = _cheb_member(x, inv_n, tol, _fast_rank_cap(d, method), out, y, w, iw)
        if rank > 0:
            return _K_FAST, rank
    if d < SORT_WIDTH:
        if not _prep_rho(x, n_int, fam, w, iw, v, iv, y, dy, kbuf):
            _generic_member(x, inv_n, out)
            return _K_GENERIC, 0
        if fam == _FAM_SMALL:
            _kernel_branchless(x, w, iw, v, iv, cn, cl, (0,), fn, out, g0, g1)
        elif fam == _FAM_LARGE:
            _kernel_branchless(x, w, iw, v, iv, cn, cl, (0, 0), fn, out, g0, g1)
        else:
            _kernel_branchless(x, w, iw, v, iv, cn, cl, (0, 0, 0), fn, out, g0, g1)
        return _K_BRANCHLESS, 0
    _argsort_adaptive(x, idx)
    for i in range(d):
        xs[i] = x[idx[i]]
    if not _prep_rho(xs, n_int, fam, w, iw, v, iv, y, dy, kbuf):
        _generic_member(x, inv_n, out)
        return _K_GENERIC, 0
    if fam == _FAM_SMALL:
        _kernel_sorted(xs, w, iw, v, iv, cn, cl, (0,), fn, os, g0)
    elif fam == _FAM_LARGE:
        _kernel_sorted(xs, w, iw, v, iv, cn, cl, (0, 0), fn, os, g0)
    else:
        _kernel_sorted(xs, w, iw, v, iv, cn, cl, (0, 0, 0), fn, os, g0)
    for i in range(d):
        out[idx[i]] = os[i]
    return _K_SORTED, 0


@numba.njit(cache=True, error_model="numpy")
def _load_lane(form, row, nt, pt, qt, rt, lane, w, iw, y, dy, kbuf):
    """Lane ``lane`` of a transposed block from one member, for ``_lanes_pair_sum``:
    ``_FORM_RATIONAL``: ``(u, 1/u^2)``, ``u`` scaled by a power of two (exact) to centre it on 1;
    ``_FORM_CHAIN``: ``(x, w, 1/w)`` with ``w = e^{2(x-c)/N}`` (``_prep_w``).  Returns False for a
    member the form cannot take (d < 2; rational: non-positive or non-finite u, or
    ``u_max/u_min >= 1e150``; chain: non-finite x or a spread above SPREAD_MAX); its lane then
    holds coincident particles (zero forces, no NaN in the vector lanes)."""
    d = row.shape[0]
    ok = d >= 2
    if len(form) == len(_FORM_RATIONAL):
        ulo = row[0]
        uhi = row[0]
        for i in range(d):
            ui = row[i]
            if not (ui > 0.0 and ui < np.inf):
                ok = False
            ulo = min(ulo, ui)
            uhi = max(uhi, ui)
        if ok and uhi / ulo < 1e150:
            _, e = math.frexp(math.sqrt(ulo) * math.sqrt(uhi))
            scale = math.ldexp(1.0, -e)
            for i in range(d):
                ui = row[i] * scale
                pt[i, lane] = ui
                qt[i, lane] = 1.0 / (ui * ui)
            return True
    elif ok and _prep_w(row, len(nt), w, iw, y, dy, kbuf):
        for i in range(d):
            pt[i, lane] = row[i]
            qt[i, lane] = w[i]
            rt[i, lane] = iw[i]
        return True
    for i in range(d):
        pt[i, lane] = 1.0
        qt[i, lane] = 1.0
        rt[i, lane] = 1.0
    return False


@numba.njit(cache=True, error_model="numpy")
def _small_range(form, rows, out, codes, nt, cn, lo, hi):
    """Members ``lo <= b < hi`` by ``_lanes_pair_sum`` (2 <= N = len(nt) <= SMALL_DEPTH,
    d < SORT_WIDTH), LANES members per block; ``codes[b] = -1`` (nothing written) for a member
    the form cannot take."""
    d = rows.shape[1]
    fn = float(len(nt))
    code = _K_RATIONAL if len(form) == len(_FORM_RATIONAL) else _K_BRANCHLESS
    pt = np.empty((d, LANES))
    qt = np.empty((d, LANES))
    rt = np.empty((d, LANES))
    ot = np.empty((d, LANES))
    w = np.empty(d)  # separate arrays, not rows of one: _vexp vectorizes only on unaliased ones
    iw = np.empty(d)
    y = np.empty(d)
    dy = np.empty(d)
    kbuf = np.empty(d, dtype=np.int64)
    for b0 in range(lo, hi, LANES):
        nb = min(LANES, hi - b0)
        for lane in range(nb):
            ok = _load_lane(form, rows[b0 + lane], nt, pt, qt, rt, lane, w, iw, y, dy, kbuf)
            codes[b0 + lane] = code if ok else -1
        _lanes_pair_sum(form, (nt, cn, fn), pt, qt, rt, ot, nb)  # the rational form ignores rt
        for lane in range(nb):
            if codes[b0 + lane] >= 0:
                o = out[b0 + lane]
                for i in range(d):
                    o[i] = ot[i, lane]


@numba.njit(cache=True, error_model="numpy")
def _batch_small_serial(form, rows, out, codes, nt, cn):
    _small_range(form, rows, out, codes, nt, cn, 0, rows.shape[0])


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _batch_small_parallel(form, rows, out, codes, nt, cn, nchunk):
    m = rows.shape[0]
    for c in prange(nchunk):
        _small_range(form, rows, out, codes, nt, cn, (c * m) // nchunk, ((c + 1) * m) // nchunk)


@numba.njit(cache=True, error_model="numpy")
def _batch_serial(rows, out, codes, ranks, entry, n_int, fam, cn, cl, method, tol):
    d = rows.shape[1]
    fs = np.empty((11, d))
    ks = np.empty((2, d), dtype=np.int64)
    for b in range(rows.shape[0]):
        code, rank = _member(rows[b], out[b], entry, n_int, fam, cn, cl, method, tol, fs, ks)
        codes[b] = code
        ranks[b] = rank


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _batch_parallel(rows, out, codes, ranks, entry, n_int, fam, cn, cl, method, tol, nchunk):
    m, d = rows.shape
    for c in prange(nchunk):
        fs = np.empty((11, d))
        ks = np.empty((2, d), dtype=np.int64)
        for b in range((c * m) // nchunk, ((c + 1) * m) // nchunk):
            code, rank = _member(rows[b], out[b], entry, n_int, fam, cn, cl, method, tol, fs, ks)
            codes[b] = code
            ranks[b] = rank


# ---------------------------------------------------------------------------- Python API
def default_threads() -> int:
    """Threads used when ``threads=None``: 1 inside a worker process (``multiprocessing`` child,
    e.g. a dask/distributed or ``ProcessPoolExecutor`` worker) or in a non-main thread (thread
    pools; the OpenMP/workqueue layers are not meant for concurrent launches), otherwise
    ``numba.get_num_threads()`` (all cores unless lowered by ``numba.set_num_threads`` or
    ``NUMBA_NUM_THREADS``).

    Returns
    -------
    int
        The thread count, >= 1.
    """
    if multiprocessing.parent_process() is not None:
        return 1
    if threading.current_thread() is not threading.main_thread():
        return 1
    return int(numba.get_num_threads())


def _check_threads(threads: object) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise fail("threads", threads, "must be None or an integer >= 1")
    return min(int(threads), int(numba.config.NUMBA_NUM_THREADS))


def _check_method(method: object) -> int:
    if not isinstance(method, str) or method not in _METHODS:
        raise fail("method", method, "must be one of auto, exact, fast")
    return _METHODS[method]


def _check_tol(tol: object) -> float:
    value = check_positive(tol, "tol")
    if value >= 1.0:
        raise fail("tol", tol, "must be < 1 (a relative force error)")
    return value


def _as_rows(arr: object, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, arr, "must be an array of real numbers") from None
    if a.ndim == 0:
        raise fail(name, arr, "must have at least one axis (..., d)")
    shape = a.shape
    rows = np.ascontiguousarray(a.reshape(-1, shape[-1]) if a.size else a.reshape(0, shape[-1]))
    if not rows.flags.writeable:  # a read-only array would be a new numba type (a recompile)
        rows = rows.copy()
    return rows, shape


def _run(rows, entry, depth, method, tol, threads, out=None):
    m, d = rows.shape
    out = np.empty_like(rows) if out is None else out
    codes = np.zeros(m, dtype=np.int64)
    ranks = np.zeros(m, dtype=np.int64)
    if m == 0 or d == 0:
        return out, codes, ranks
    n_int = 0 if depth == math.inf else int(depth)
    fam = _family(depth)
    cn = _near_coefficients(depth) if n_int != 1 else (0.0,) * _N_NEAR
    cl = _large_coefficients(depth) if n_int != 1 else (0.0,) * _N_LARGE
    parallel = threads > 1 and m > 1 and m * d * d >= _SMALL_WORK
    todo = rows
    if (
        fam == _FAM_SMALL
        and n_int >= 2
        and 2 <= d < SORT_WIDTH
        and method != _METHOD_FAST
        and not (method == _METHOD_AUTO and d >= CROSSOVER_WIDTH)
    ):
        # N as a type (tuple length): polynomials and powers of s unroll at compile time
        nt = (0,) * n_int
        form = _FORM_RATIONAL if entry == _ENTRY_U else _FORM_CHAIN
        args = (form, rows, out, codes, nt, cn)
        _launch(_batch_small_serial, _batch_small_parallel, args, m, threads if parallel else 1)
        rest = np.flatnonzero(codes < 0)  # members these kernels cannot take
        if rest.size == 0:
            return out, codes, ranks
        todo = np.ascontiguousarray(rows[rest])
    sub_out = np.empty_like(todo) if todo is not rows else out
    sub_codes = np.zeros(todo.shape[0], dtype=np.int64) if todo is not rows else codes
    sub_ranks = np.zeros(todo.shape[0], dtype=np.int64) if todo is not rows else ranks
    args = (todo, sub_out, sub_codes, sub_ranks, entry, n_int, fam, cn, cl, method, tol)
    _launch(_batch_serial, _batch_parallel, args, todo.shape[0], threads if parallel else 1)
    if todo is not rows:
        out[rest] = sub_out
        codes[rest] = sub_codes
        ranks[rest] = sub_ranks
    return out, codes, ranks


def _launch(serial, parallel, args, m, threads):
    """Run ``serial(*args)``, or ``parallel(*args, nchunk)`` on ``threads`` threads."""
    if threads <= 1 or m < 2:
        serial(*args)
        return
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        parallel(*args, min(m, 4 * threads))
    finally:
        numba.set_num_threads(old)


def _plan(codes: np.ndarray, ranks: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    lead = shape[:-1]
    return {"kernel": codes.reshape(lead), "rank": ranks.reshape(lead)}


def pair_force(
    rho: np.ndarray,
    depth: int | float,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
    return_plan: bool = False,
):
    """``F_i = sum_{j != i} psi_N'(rho_i - rho_j)`` for ``rho`` of shape ``(..., d)`` (compiled).

    ``method``: ``"exact"`` (rounding-level accuracy, every width), ``"fast"`` (Chebyshev
    summation with relative force error ``<= tol``, ``max_i |F_i - F_i^exact| <= tol max_i |F_i|``;
    members whose rank would exceed ``d/4`` use the exact kernel), ``"auto"`` (``"exact"`` below
    ``CROSSOVER_WIDTH``, above it ``"fast"`` when the cost model says it is cheaper).
    ``threads``: see ``default_threads``.  ``return_plan=True`` also returns
    ``{"kernel": codes, "rank": ranks}`` per member (codes in ``KERNEL_NAMES``).

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values ``rho``, float, shape ``(..., d)`` (each leading index a member).
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"auto", "exact", "fast"}, default "auto"
        The kernel choice above.
    tol : float, default DEFAULT_TOL
        Relative force error of the fast summation, in ``(0, 1)``.
    threads : int or None, default None
        Thread count >= 1 (capped at ``NUMBA_NUM_THREADS``); None for ``default_threads()``.
    return_plan : bool, default False
        Also return the per-member kernel plan.

    Returns
    -------
    numpy.ndarray or tuple of (numpy.ndarray, dict)
        The forces ``F``, float64, shape ``(..., d)``; with ``return_plan=True`` the pair
        ``(F, {"kernel": codes, "rank": ranks})``, both int arrays of shape ``(...)``.

    Raises
    ------
    ValueError
        ``bad depth=...``, ``bad method=...``, ``bad tol=...``, ``bad threads=...``, or
        ``bad rho=...`` (not an array of real numbers, or no axis).
    """
    n = check_depth(depth)
    meth = _check_method(method)
    tol = _check_tol(tol)
    nthreads = _check_threads(threads)
    rows, shape = _as_rows(rho, "rho")
    out, codes, ranks = _run(rows, _ENTRY_RHO, n, meth, tol, nthreads)
    out = out.reshape(shape)
    return (out, _plan(codes, ranks, shape)) if return_plan else out


def pair_force_u(
    u: np.ndarray,
    depth: int,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
    return_plan: bool = False,
):
    """``F_i = sum_{j != i} psi_N'(rho_i - rho_j)`` at ``rho = N log u`` (``u = sigma^{1/N}``).

    Finite ``N`` only (for ``N = inf`` use ``pair_force`` in ``rho``).  ``u`` of shape ``(..., d)``
    must be positive and finite; a member with another value gets NaN forces.  No logarithm is
    taken for ``2 <= N <= SMALL_DEPTH`` and ``d < SORT_WIDTH`` (rational form); otherwise
    ``rho' = N log(u/c)`` about the member's centre ``c`` (as ``N log1p((u - c)/c)`` near ``c``,
    so that differences of close particles are accurate to rounding) feeds the ``rho`` kernels.
    The other arguments are those of ``pair_force``.

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, positive finite floats, shape ``(..., d)``.
    depth : int
        ``N``, a finite integer >= 1.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.
    return_plan : bool, default False
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray or tuple of (numpy.ndarray, dict)
        The forces ``F`` (in ``rho``), float64, shape ``(..., d)``; with ``return_plan=True``
        also the plan, as in ``pair_force``.

    Raises
    ------
    ValueError
        ``bad depth=...`` (also for ``N = inf``), ``bad method=...``, ``bad tol=...``,
        ``bad threads=...``, or ``bad u=...`` (not an array of real numbers, or no axis).
    """
    n = check_depth(depth)
    if n == math.inf:
        raise fail("depth", depth, "u = sigma^(1/N) needs a finite depth; use pair_force(rho)")
    meth = _check_method(method)
    tol = _check_tol(tol)
    nthreads = _check_threads(threads)
    rows, shape = _as_rows(u, "u")
    out, codes, ranks = _run(rows, _ENTRY_U, n, meth, tol, nthreads)
    out = out.reshape(shape)
    return (out, _plan(codes, ranks, shape)) if return_plan else out


def entropy_gradient(
    rho: np.ndarray,
    depth: int | float,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
) -> np.ndarray:
    """``dS_N/drho_i = 1/2 (1 - 1/N)(d - 1) + 1/2 F_i`` (same contract as the numpy reference
    ``particles.entropy.entropy_gradient``).

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values, float, shape ``(..., d)``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray
        ``dS_N/drho``, float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        As in ``pair_force`` (``bad depth=...``, ``bad method=...``, ``bad tol=...``,
        ``bad threads=...``, ``bad rho=...``).
    """
    f = pair_force(rho, depth, method=method, tol=tol, threads=threads)
    return linear_coefficient(f.shape[-1], check_depth(depth)) + 0.5 * f


def hot_entropy_gradient_u(u: np.ndarray, depth: int, threads: int, out: np.ndarray) -> np.ndarray:
    """``entropy_gradient_u`` without argument checks or allocations, for engines that validated
    once: ``u`` and ``out`` C-contiguous writeable float64 ``(m, d)`` arrays, ``depth`` a finite
    integer, ``threads`` an int (``default_threads()``); ``method="auto"`` at the default
    tolerance.  Writes ``dS_N/drho`` into ``out`` and returns it (the same values as
    ``entropy_gradient_u``).

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, C-contiguous float64, shape ``(m, d)``.
    depth : int
        ``N``, a finite integer >= 1.
    threads : int
        Thread count >= 1.
    out : numpy.ndarray
        C-contiguous writeable float64 array of shape ``(m, d)``, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``, holding ``dS_N/drho``, shape ``(m, d)``.
    """
    _run(u, _ENTRY_U, depth, _METHOD_AUTO, DEFAULT_TOL, threads, out)
    np.multiply(out, 0.5, out=out)
    return np.add(out, linear_coefficient(u.shape[-1], depth), out=out)


def entropy_gradient_u(
    u: np.ndarray,
    depth: int,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
) -> np.ndarray:
    """``dS_N/drho_i`` at ``rho = N log u`` (finite ``N``); ``dS/du_i = (N / u_i) dS/drho_i``.

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, positive finite floats, shape ``(..., d)``.
    depth : int
        ``N``, a finite integer >= 1.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray
        ``dS_N/drho`` (not ``dS/du``), float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        As in ``pair_force_u``.
    """
    f = pair_force_u(u, depth, method=method, tol=tol, threads=threads)
    return linear_coefficient(f.shape[-1], check_depth(depth)) + 0.5 * f
