r"""The pair force ``g = psi_N'(a)`` of one pair, and the per-particle exponentials it takes.

``psi_N'(x) = coth x - coth(x/N)/N`` (``coth x - 1/x`` at ``N = inf``), theory.md section 2.
With ``a = |rho_i - rho_j|`` the pair adds ``sign(rho_i - rho_j) g`` to ``F_i`` and the opposite
to ``F_j`` (the sums over pairs are in ``exact`` and ``lanes``).

* near, ``a <= NEAR_CUT = 0.35``: the odd Taylor series ``g = a sum_n c_n (1 - N^{-2n}) a^{2n-2}``
  (``c_n = 2^{2n} B_{2n} / (2n)!``, 9 terms, truncation < 6e-18 relative;
  ``coefficients.near_coefficients``) in the exact difference ``a``.  This is where ``coth x``
  and ``coth(x/N)/N`` cancel; the series has no cancellation.
* far, ``a > NEAR_CUT``, no transcendental call per pair.  Per member, ``w_i = e^{2(rho_i-c)/N}``
  and ``v_i = e^{2(rho_i-c)}`` (``c`` the member's centre; the rounding of ``rho_i - c`` and of the
  division by ``N`` is carried into the exponential, so both are within ~1 ulp whatever
  ``|rho|``) and their inverses are computed once (``prep_rho``, ``prep_w``); then
  ``s = e^{-2a/N} = min(w_i/w_j, w_j/w_i)`` and ``t = e^{-2a} = min(v_i/v_j, v_j/v_i)`` are
  products, and

      N <= SMALL_DEPTH = 16:  g = (1 - 1/N) + 2 [t N (1 - s) - s (1 - t)] / [N (1 - s)(1 - t)]
      N = inf:                g = [(1 + t) a - (1 - t)] / [a (1 - t)]           (= coth a - 1/a)
      N > 16:                 g = (coth a - 1/a) - L'(a/N)/N, with L'(y) = coth y - 1/y from its
                              series (18 terms) for y = a/N <= 1, else from
                              [a (1 + s) - N (1 - s)] / [N a (1 - s)].

  One division per pair.  (The first line is ``coth a - coth(a/N)/N`` with the constant
  ``1 - 1/N`` split off, so far pairs are within ~1 ulp.)  ``pair_chain`` forms ``t = s^N`` by
  repeated squaring (``N`` a compile-time constant, one specialization per ``N``), so only
  ``w`` needs an exponential.  For ``a > 0.35`` the cancellation inside these quotients is at
  most a factor ~30 and the ~1 ulp errors of ``s`` and ``t`` move ``g`` by at most ~N/a^3 ulp,
  which is why the first form stops at ``N = 16``.  Measured against mpmath: ~1 ulp on average,
  worst pair 6e-14 relative (just above the cut, N = 16).
* in ``u = sigma^{1/N}``, ``2 <= N <= 16`` (``pair_rational``): the rational form in
  ``s = (u_lo/u_hi)^2``, free of cancellation:

      g = m Q(s) / (N S(s)),   m = 1 - s = (u_hi - u_lo)(u_hi + u_lo) / u_hi^2,
      S(s) = sum_{k<N} s^k,   Q(s) = sum_{k=0}^{N-2} (k + 1)(N - 1 - k) s^k,

  all coefficients positive (``N`` a compile-time constant).
* ``dpsi``: the scalar ``L'(x) - L'(x/N)/N`` with an ``exp`` per call, for members the
  precomputation cannot take (spread above ``SPREAD_MAX``, non-finite entries) and for the
  Chebyshev kernel matrix.

The formula family is ``FAM_SMALL`` (``N <= SMALL_DEPTH``), ``FAM_LARGE`` or ``FAM_INF``
(``family``); compiled code selects it from the length of a tuple (a compile-time constant).
"""

from __future__ import annotations

import math

import numba

from .coefficients import LSINHC1_COEFFICIENTS
from .portable import horner, portable_exp, portable_vexp

__all__ = [
    "FAM_INF",
    "FAM_LARGE",
    "FAM_SMALL",
    "LARGE_Y",
    "NEAR_CUT",
    "SMALL_DEPTH",
    "SPREAD_MAX",
    "dpsi",
    "family",
    "pair_branchless",
    "pair_chain",
    "pair_rational",
    "prep_rho",
    "prep_w",
]

NEAR_CUT = 0.35  # |rho_i - rho_j| <= NEAR_CUT: Taylor series of psi_N'
SMALL_DEPTH = 16  # N <= SMALL_DEPTH: the one-division far formula (and the rational u form)
SPREAD_MAX = 700.0  # max - min of rho above which e^{2 rho} would overflow: per-pair exp
LARGE_Y = 1.0  # N > SMALL_DEPTH: L'(a/N) from its series for a/N <= LARGE_Y
FAM_SMALL, FAM_LARGE, FAM_INF = 0, 1, 2


def family(depth: int | float) -> int:
    """The far-formula family of a depth: ``FAM_SMALL``, ``FAM_LARGE`` or ``FAM_INF``.

    Parameters
    ----------
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf`` (not validated).

    Returns
    -------
    int
        ``FAM_INF`` for ``N = inf``, ``FAM_SMALL`` for ``N <= SMALL_DEPTH``, else ``FAM_LARGE``.
    """
    if depth == math.inf:
        return FAM_INF
    return FAM_SMALL if depth <= SMALL_DEPTH else FAM_LARGE


# ------------------------------------------------------------------------ scalar, exp per call
@numba.njit(cache=True, error_model="numpy")
def _lsinhc1(x):
    """L'(x) = coth x - 1/x (odd), scalar, ~1 ulp: series for |x| <= 1/2, else exp form."""
    ax = abs(x)
    if ax <= 0.5:
        z = x * x
        c = LSINHC1_COEFFICIENTS
        p = c[11]
        for k in range(10, -1, -1):
            p = p * z + c[k]
        return x * p
    if not (ax < 350.0):  # e^{-2 ax} < 1e-304 does not change the quotient; NaN stays NaN
        return x if ax != ax else math.copysign(1.0 - 1.0 / ax, x)
    t = portable_exp(-2.0 * ax)
    val = (1.0 + t) / (1.0 - t) - 1.0 / ax
    return val if x > 0 else -val


@numba.njit(cache=True, error_model="numpy")
def dpsi(x, inv_n):
    """psi_N'(x) = L'(x) - L'(x/N)/N; ``inv_n = 1/N`` (0 for N = inf)."""
    if inv_n == 0.0:
        return _lsinhc1(x)
    return _lsinhc1(x) - _lsinhc1(x * inv_n) * inv_n


# ------------------------------------------------------------------ per-particle exponentials
@numba.njit(cache=True, error_model="numpy")
def prep_rho(x, n_int, fam, w, iw, v, iv, y, dy, kbuf):
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
    portable_vexp(y, dy, v, kbuf)
    for i in range(d):
        iv[i] = 1.0 / v[i]
    if fam == FAM_INF:
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
    portable_vexp(y, dy, w, kbuf)
    for i in range(d):
        iw[i] = 1.0 / w[i]
    return True


@numba.njit(cache=True, error_model="numpy")
def prep_w(x, n_int, w, iw, y, dy, kbuf):
    """``prep_rho`` for the chain kernel: w = e^{2(x-c)/N} and 1/w only."""
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
    portable_vexp(y, dy, w, kbuf)
    for i in range(d):
        iw[i] = 1.0 / w[i]
    return True


# ---------------------------------------------------------------------------- one pair
@numba.njit(cache=True, error_model="numpy")
def pair_branchless(famt, xi, wi, iwi, vi, ivi, xj, wj, iwj, vj, ivj, cn, cl, fn):
    """psi_N'(x_i - x_j) for an unsorted pair: both branches, then a select (vectorizes)."""
    fam = len(famt) - 1
    dx = xi - xj
    a = abs(dx)
    z = a * a
    gn = a * horner(cn, z)
    t = min(vi * ivj, vj * ivi)
    if fam == FAM_SMALL:
        s = min(wi * iwj, wj * iwi)
        nm = fn * (1.0 - s)
        gf = (1.0 - 1.0 / fn) + 2.0 * (t * nm - s * (1.0 - t)) / (nm * (1.0 - t))
    elif fam == FAM_INF:
        gf = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
    else:
        s = min(wi * iwj, wj * iwi)
        gl = ((1.0 + t) * a - (1.0 - t)) / (a * (1.0 - t))
        ser = a * horner(cl, z)
        sfar = (a * (1.0 + s) - fn * (1.0 - s)) / (fn * a * (1.0 - s))
        gf = gl - (ser if a <= LARGE_Y * fn else sfar)
    g = gn if a <= NEAR_CUT else gf
    return math.copysign(g, dx)


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
def pair_chain(nt, xi, wi, iwi, xj, wj, iwj, cn, fn):
    """psi_N'(x_i - x_j), 2 <= N <= SMALL_DEPTH, unsorted pair; t = s^N from s itself."""
    dx = xi - xj
    a = abs(dx)
    gn = a * horner(cn, a * a)
    s = min(wi * iwj, wj * iwi)
    t = _pow_n(nt, s)
    nm = fn * (1.0 - s)
    gf = (1.0 - 1.0 / fn) + 2.0 * (t * nm - s * (1.0 - t)) / (nm * (1.0 - t))
    g = gn if a <= NEAR_CUT else gf
    return math.copysign(g, dx)


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
def pair_rational(nt, fn, ui, iwi, uj, iwj):
    """psi_N'(rho_i - rho_j) at rho = N log u, N = len(nt) <= SMALL_DEPTH: ``m Q(s) / (N S(s))``
    with ``s = (u_lo/u_hi)^2`` (``iw = 1/u^2``), branch-free."""
    hi = max(ui, uj)
    lo = min(ui, uj)
    iwh = min(iwi, iwj)
    s = lo * lo * iwh
    m = (hi - lo) * (hi + lo) * iwh
    g = (m * _q_poly(nt, s)) / (fn * _s_poly(nt, s))
    return math.copysign(g, ui - uj)
