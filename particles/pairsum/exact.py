r"""The exact ``O(d^2)`` pair sum of one member, ``F_i = sum_{j != i} psi_N'(x_i - x_j)``.

Each unordered pair is evaluated once (``particles.pairsum.pairs``) and serves both particles.
Two layouts, chosen by width (``dispatch._member`` calls them after ``pairs.prep_rho``; the
call structure there is kept as it was in one module, since splitting it measurably slowed the
d = 32 case), and a scalar fallback:

* ``kernel_branchless`` (``d < SORT_WIDTH``): rows two at a time, one pass over ``j`` that
  evaluates the near and the far branch and selects (vectorizes over ``j``).
* ``kernel_sorted`` (``d >= SORT_WIDTH``): the member is sorted first (``argsort_adaptive``:
  insertion sort, linear for nearly sorted rows such as consecutive Langevin states; heapsort
  otherwise) and each row splits into a near run and a far run, each its own vectorized loop.
* ``generic_member``: the scalar ``dpsi`` per pair (an ``exp`` per pair; NaN propagates), for
  members with a spread above ``SPREAD_MAX`` or non-finite entries.

Row sums have an order fixed by the source: the pair values of a row go to a scratch row,
summed by ``sum_lanes`` (no reduction is reassociated, so the bits do not depend on the CPU).
"""

from __future__ import annotations

import numba

from .pairs import (
    FAM_INF,
    FAM_SMALL,
    LARGE_Y,
    NEAR_CUT,
    dpsi,
    pair_branchless,
)
from .portable import horner, sum_lanes

__all__ = ["SORT_WIDTH", "argsort_adaptive", "generic_member", "kernel_branchless", "kernel_sorted"]

SORT_WIDTH = 64  # d >= SORT_WIDTH: sorted near/far split; below: one branch-free pass


@numba.njit(cache=True, error_model="numpy")
def generic_member(x, inv_n, out):
    """Scalar per-pair evaluation (exp per pair); NaN in -> NaN out."""
    d = x.shape[0]
    for i in range(d):
        out[i] = 0.0
    for i in range(d - 1):
        xi = x[i]
        acc = 0.0
        for j in range(i + 1, d):
            f = dpsi(xi - x[j], inv_n)
            acc += f
            out[j] -= f
        out[i] += acc


@numba.njit(cache=True, error_model="numpy")
def kernel_branchless(x, w, iw, v, iv, cn, cl, famt, fn, out, g0, g1):
    """Unsorted member: rows in pairs, one pass over j computing both branches (vectorizes
    over j).  The pair values go to the scratch rows ``g0``, ``g1``, and the rows' own sums are
    ``sum_lanes`` of them (no reduction is reassociated).  The family is ``len(famt) - 1`` (a
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
        f01 = pair_branchless(famt, x0, w0, iw0, v0, iv0, x1, w1, iw1, v1, iv1, cn, cl, fn)
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
            f0 = pair_branchless(famt, x0, w0, iw0, v0, iv0, xj, wj, iwj, vj, ivj, cn, cl, fn)
            f1 = pair_branchless(famt, x1, w1, iw1, v1, iv1, xj, wj, iwj, vj, ivj, cn, cl, fn)
            g0[j] = f0
            g1[j] = f1
            oo[j] -= f0 + f1
        out[i] += f01 + sum_lanes(g0, m)
        out[i + 1] += sum_lanes(g1, m) - f01
        i += 2
    if i + 1 < d:
        f = pair_branchless(
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
def kernel_sorted(x, w, iw, v, iv, cn, cl, famt, fn, out, gb):
    """Member sorted ascending: per row a near run (series) and a far run (quotients), each a
    vectorized loop that writes its pair values to the scratch row ``gb``; the row's own sum is
    ``sum_lanes`` of them (no reduction is reassociated).

    The family is ``len(famt) - 1`` (as in ``kernel_branchless``)."""
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
            g = a * horner(cn, a * a)
            gb[j] = g
            oo[j] += g
        near = sum_lanes(gb, mn)
        # far run j >= k
        oo = out[k:]
        m = d - k
        if fam == FAM_SMALL:
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
        elif fam == FAM_INF:
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
                ser = a * horner(cl, a * a)
                sfar = (a * (1.0 + s) - fn * (1.0 - s)) / (fn * a * (1.0 - s))
                g = gl - (ser if a <= LARGE_Y * fn else sfar)
                gb[j] = g
                oo[j] += g
        out[i] -= near + sum_lanes(gb, m)


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
def argsort_adaptive(x, idx):
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
