r"""The small-width pair sums, vectorized across members (``d < SORT_WIDTH``, ``2 <= N <= 16``).

Members go ``LANES`` at a time into a transposed block (particle index first, member last), and
the pair sum (``_lanes_pair_sum``) runs with the loop over members innermost: contiguous,
vectorized across members with no per-row remainder, rows four at a time, both branches
evaluated and selected.  A member's result does not depend on its lane or on the block, and the
lanes are independent, so no sum is reordered across members.

Two pair forms, chosen at compile time by the length of the tuple ``form``:

* ``FORM_CHAIN`` (input ``rho``): ``pairs.pair_chain`` on ``(x, w, 1/w)``, ``w = e^{2(x-c)/N}``
  (``pairs.prep_w``), with ``t = s^N`` by repeated squaring;
* ``FORM_RATIONAL`` (input ``u = sigma^{1/N}``): ``pairs.pair_rational`` on ``(u, 1/u^2)``,
  ``u`` scaled by a power of two (exact) to centre it on 1; no logarithm and no exponential.

A member the form cannot take (non-finite entries; rational: ``u <= 0`` or
``u_max/u_min >= 1e150``; chain: a spread above ``SPREAD_MAX``) gets the code ``-1`` and nothing
written; ``dispatch`` sends it to the member kernels.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .pairs import pair_chain, pair_rational, prep_w

__all__ = ["FORM_CHAIN", "FORM_RATIONAL", "LANES", "lanes_batch_parallel", "lanes_batch_serial"]

LANES = 128  # members per transposed block of the small-width kernels (_lanes_pair_sum)
FORM_CHAIN = (0,)  # pair_chain, par = (nt, cn, fn), per-particle (x, w, 1/w)
FORM_RATIONAL = (0, 0)  # pair_rational, par = (nt, cn unused, fn), per-particle (u, 1/u^2, -)


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


@numba.njit(cache=True, error_model="numpy")
def _pair_form(form, par, pi, qi, ri, pj, qj, rj):
    """The pair force of ``_lanes_pair_sum``: ``FORM_CHAIN`` or ``FORM_RATIONAL``, chosen by
    the tuple length (a compile-time constant; ``par = (nt, cn, fn)`` for both)."""
    if len(form) == len(FORM_CHAIN):
        return pair_chain(par[0], pi, qi, ri, pj, qj, rj, par[1], par[2])
    return pair_rational(par[0], par[2], pi, qi, pj, qj)


@numba.njit(cache=True, error_model="numpy")
def _load_lane(form, row, nt, pt, qt, rt, lane, w, iw, y, dy, kbuf):
    """Lane ``lane`` of a transposed block from one member, for ``_lanes_pair_sum``:
    ``FORM_RATIONAL``: ``(u, 1/u^2)``, ``u`` scaled by a power of two (exact) to centre it on 1;
    ``FORM_CHAIN``: ``(x, w, 1/w)`` with ``w = e^{2(x-c)/N}`` (``prep_w``).  Returns False for a
    member the form cannot take (d < 2; rational: non-positive or non-finite u, or
    ``u_max/u_min >= 1e150``; chain: non-finite x or a spread above SPREAD_MAX); its lane then
    holds coincident particles (zero forces, no NaN in the vector lanes)."""
    d = row.shape[0]
    ok = d >= 2
    if len(form) == len(FORM_RATIONAL):
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
    elif ok and prep_w(row, len(nt), w, iw, y, dy, kbuf):
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
def _small_range(form, rows, out, codes, code, nt, cn, lo, hi):
    """Members ``lo <= b < hi`` by ``_lanes_pair_sum`` (2 <= N = len(nt) <= SMALL_DEPTH,
    d < SORT_WIDTH), LANES members per block; ``codes[b] = code``, or ``-1`` (nothing written)
    for a member the form cannot take."""
    d = rows.shape[1]
    fn = float(len(nt))
    pt = np.empty((d, LANES))
    qt = np.empty((d, LANES))
    rt = np.empty((d, LANES))
    ot = np.empty((d, LANES))
    w = np.empty(d)  # separate arrays, not rows of one: portable_vexp vectorizes only unaliased
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
def lanes_batch_serial(form, rows, out, codes, code, nt, cn):
    """Forces of every member (row) of ``rows`` into ``out`` by the form ``form``
    (``N = len(nt)``, ``cn`` the near coefficients); ``codes[b] = code`` for the members
    computed, ``-1`` (nothing written) for the others."""
    _small_range(form, rows, out, codes, code, nt, cn, 0, rows.shape[0])


@numba.njit(cache=True, parallel=True, error_model="numpy")
def lanes_batch_parallel(form, rows, out, codes, code, nt, cn, nchunk):
    """``lanes_batch_serial`` over ``nchunk`` chunks of members in parallel (``prange``)."""
    m = rows.shape[0]
    for c in prange(nchunk):
        _small_range(
            form, rows, out, codes, code, nt, cn, (c * m) // nchunk, ((c + 1) * m) // nchunk
        )
