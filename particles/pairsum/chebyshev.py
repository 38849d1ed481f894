r"""Chebyshev fast summation of one member's pair force (``method="fast"``, or ``"auto"`` from
``dispatch.CROSSOVER_WIDTH`` particles on).

The kernel ``K(x, y) = psi_N'(x - y)`` on the member's interval ``[lo, hi]`` is replaced by its
tensor Chebyshev interpolant of rank ``r`` (``r`` first-kind nodes per variable):
``F_i ~ sum_{k<r} G_k T_k(x_i)``, ``G = C K C^T W``, ``W_l = sum_j T_l(x_j)``, ``O(d r + r^2)``
work (``r^2/2`` kernel values, ``pairs.dpsi``).  ``psi_N'`` is analytic in the strip
``|Im x| < pi``, so the rank grows with the spread: ``r ~ log(1/tol) / log(q)``,
``q = pi/h + sqrt(1 + (pi/h)^2)``, ``h = (hi - lo)/2`` (about 45 at tol 1e-12 for ``h = 3``).
A rank is accepted when ``4 d`` times the size of the last two coefficient rows of ``C K C^T``
is at most ``tol * max_i |F_i|`` (the largest force sits at an end particle, since ``F``
increases with the position); otherwise it grows by 1.5x.  ``chebyshev_member`` gives up
(returns -1) above the rank cap ``fast_rank_cap``: ``d/4``, and with the cost model the rank
where the fast summation stops being cheaper than the exact kernel.

The node cosines come from ``portable.cospi`` (exact integer angles), the moments are summed by
``portable.sum_lanes`` (a fixed order): the same bits on every CPU.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .pairs import dpsi
from .portable import cospi, portable_log, sum_lanes

__all__ = ["chebyshev_member", "fast_rank_cap"]

# cost model for method="auto", in units of one exact pair evaluation (per member):
# exact d (d - 1) / 2; fast ~ 50 r^2 / 2 (kernel matrix, exp per entry) + 7 r^2 + 1.5 d r
# (fitted to benchmark timings: 0.7 ns per exact pair, 0.9 ns per d r, 23 ns per r^2)
_COST_KMAT = 50.0
_COST_R2 = 7.0
_COST_DR = 1.5
_CHEB_BLOCK = 256


@numba.njit(cache=True, error_model="numpy")
def _cheb_moments(xh, r, out_w, b0, b1):
    """out_w[l] = sum_j T_l(xh_j), l < r, blocked over j; each block's T_l row is summed by
    ``sum_lanes`` (a fixed order)."""
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
            out_w[1] += sum_lanes(b1, nb)
        tm = b0
        tc = b1
        for l in range(2, r):
            for j in range(nb):
                tm[j] = 2.0 * xb[j] * tc[j] - tm[j]
            out_w[l] += sum_lanes(tm, nb)
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
def _cheb_matrices(mid, h, r, inv_n):
    """``C[k, p] = (2 - delta_k0)/r cos(k theta_p)`` and the antisymmetric kernel matrix
    ``K[p, q] = psi_N'(y_p - y_q)`` at the nodes ``y_p = mid + h cos(theta_p)``,
    ``theta_p = pi (2p + 1) / (2r)`` (cosines by ``cospi`` from the exact integer angles)."""
    nodes = np.empty(r)
    for p in range(r):
        nodes[p] = mid + h * cospi(2 * p + 1, 2 * r)
    cmat = np.empty((r, r))  # C[k, p] = (2 - delta_k0) / r cos(k theta_p)
    for k in range(r):
        fk = (1.0 if k == 0 else 2.0) / r
        for p in range(r):
            cmat[k, p] = fk * cospi(k * (2 * p + 1), 2 * r)
    kmat = np.empty((r, r))
    for p in range(r):
        kmat[p, p] = 0.0
        for qq in range(p + 1, r):
            val = dpsi(nodes[p] - nodes[qq], inv_n)
            kmat[p, qq] = val
            kmat[qq, p] = -val
    return cmat, kmat


@numba.njit(cache=True, error_model="numpy")
def _cheb_coefficients(cmat, kmat, wm):
    """``G = C K C^T W`` (``W`` the moments ``wm``), as three matrix-vector products in a fixed
    order."""
    r = wm.shape[0]
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
    return g


@numba.njit(cache=True, error_model="numpy")
def _cheb_tail(cmat, kmat):
    """The truncation estimate: the largest absolute row sum of the last two rows of
    ``A = C K C^T`` (``A`` is antisymmetric)."""
    r = cmat.shape[0]
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
    return tail


@numba.njit(cache=True, error_model="numpy")
def chebyshev_member(x, inv_n, tol, rmax, out, xh, b1, b2):
    """Chebyshev fast summation of one member ``x`` into ``out`` (``inv_n = 1/N``, 0 for
    ``N = inf``); returns the rank used, or -1 (not accurate within rank ``rmax``: nothing
    written).  ``xh``, ``b1``, ``b2``: scratch arrays of length ``d``."""
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
    r = max(4, int(math.ceil(portable_log(160.0 / tol) / portable_log(q))) + 2)
    while r <= rmax:
        cmat, kmat = _cheb_matrices(mid, h, r, inv_n)
        wm = np.empty(r)
        _cheb_moments(xh, r, wm, b1, b2)
        g = _cheb_coefficients(cmat, kmat, wm)
        # force scale: the end particles (xh = -1, +1) carry the largest |F|
        f_lo = 0.0
        f_hi = 0.0
        for k in range(r):
            f_hi += g[k]
            f_lo += g[k] if k % 2 == 0 else -g[k]
        fscale = max(abs(f_lo), abs(f_hi))
        if 4.0 * d * _cheb_tail(cmat, kmat) <= tol * fscale:
            _cheb_eval(xh, g, r, out, b1, b2)
            return r
        r = int(math.ceil(1.5 * r))
    return -1


@numba.njit(cache=True, error_model="numpy")
def fast_rank_cap(d, cost_model):
    """Largest rank worth trying: d/4, and with ``cost_model`` (``method="auto"``) the rank
    where the cost model of the fast summation reaches that of the exact kernel."""
    cap = d // 4
    if cost_model:
        exact = 0.5 * d * (d - 1.0)
        a = 0.5 * _COST_KMAT + _COST_R2
        b = _COST_DR * d
        r_cost = int((-b + math.sqrt(b * b + 4.0 * a * exact)) / (2.0 * a))
        cap = min(cap, r_cost)
    return cap
