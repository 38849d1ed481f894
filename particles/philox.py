r"""Counter-based Gaussian noise for compiled code: Philox4x64-10 and a portable Box-Muller.

Member ``k``'s noise at step ``s`` is a pure function of ``(seed, k, s)``: no generator state
is carried from step to step or from member to member, so the bits do not depend on which
members are computed together, in which order, in how many chunks, workers or threads, nor on
the CPU (no libm call, no fast-math; see below).  The scheme is named by :data:`NOISE_SCHEME`,
the string a dataset records; changing any of the choices below changes that string.

The generator (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3")
------------------------------------------------------------------------------------------------
``philox4x64_10(c0, c1, c2, c3, k0, k1)`` maps a 256-bit counter and a 128-bit key to four
64-bit words by 10 rounds of

    (hi0, lo0) = M0 * c0,   (hi1, lo1) = M1 * c2    (64 x 64 -> 128-bit products)
    (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

with the key bumped by the Weyl constants ``(k0, k1) += (W0, W1)`` (mod 2^64) between rounds.
Numba has no 128-bit integer: the high word of a product is assembled exactly from the four
32 x 32 -> 64-bit partial products (:func:`mulhi64`).  The block equals the published Random123
known-answer vectors and ``numpy.random.Philox``: ``Philox(key=[k0, k1], counter=c)`` adds 1 to
the 256-bit counter (little-endian words, carry from ``c0`` up) *before* its first block, so
``Philox(key=k, counter=c - 1).random_raw(4) == philox4x64_10(*c, *k)`` (tests/test_philox.py).

Key and counter of the noise
----------------------------
key ``= (seed, member)``; counter ``= (block, step, 0, 0)``, where ``block = i // 4`` for the
``i``-th normal of the step (``i = 0 .. d-1``).  One block gives four normals: Box-Muller of
words (0, 1) gives normals ``4 block`` and ``4 block + 1``, words (2, 3) give ``4 block + 2``
and ``4 block + 3``.  Counter words 2 and 3 are zero: they are left free for other streams.

Entry points
------------
:func:`normals` (from Python: members x steps x d), and for compiled callers
:func:`fill_normals` (one member, one step, block by block) and :func:`fill_member_normals`
(one member, consecutive steps, the Philox rounds and the log vectorized over batches of 64
blocks: 2-3x faster, the same bits).  :func:`normals_reference` is the numpy version.

Normals from the words (Box-Muller, portable)
---------------------------------------------
For a pair of words ``(a, b)``: ``u = (a >> 11) + 1`` times ``2^-53``, a uniform in ``(0, 1]``
on the 53-bit grid (never 0: the log is finite), and ``n = b >> 11`` in ``[0, 2^53)``, the angle
``theta = 2 pi n / 2^53``.  Then

    r = sqrt(-2 log u),   z0 = r cos(theta),   z1 = r sin(theta),

with ``log`` = :func:`~dlnsim.particles.pairsum.portable.portable_log` and the cosine and sine
from one exact integer reduction of ``n`` to an octant and an offset ``x`` in ``[0, pi/4]``,
then the Taylor polynomials of ``sin x`` and ``cos x`` that
:func:`~dlnsim.particles.pairsum.portable.cospi` uses (``SIN_POLY``, ``COS_POLY``; ~1 ulp) and
the octant's symmetries (no integer division, one reduction for both).  ``sqrt`` is correctly
rounded IEEE arithmetic.  All of it is plain IEEE arithmetic in an order fixed by the source:
the same bits on every CPU.  Since ``u >= 2^-53``, ``|z| <= sqrt(2 * 53 log 2) = 8.57``: the
normal tail beyond 8.57 (probability 1e-17) is cut, far below anything a simulation can see.
"""

from __future__ import annotations

import numba
import numpy as np

from .pairsum.coefficients import COS_POLY, SIN_POLY
from .pairsum.portable import horner, portable_log, portable_vlog
from .validation import check_integer, fail

__all__ = [
    "NOISE_SCHEME",
    "WORK_SIZE",
    "fill_member_normals",
    "fill_normals",
    "mulhi64",
    "normals",
    "normals_reference",
    "philox4x64_10",
    "philox4x64_10_reference",
]

#: the name and version of the noise stream (generator / transform / version); datasets
#: record it, and a store written with another scheme cannot be resumed bitwise.
NOISE_SCHEME = "philox4x64-10/key=seed,member/ctr=block,step/box-muller-portable/v1"

_M0 = np.uint64(0xD2E7470EE14C6C93)  # Philox4x64 multipliers (Salmon et al. 2011, Table 2)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)  # Weyl key increments: golden ratio, sqrt(3) - 1
_W1 = np.uint64(0xBB67AE8584CAA73B)
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_ROUNDS = 10
_TWO_M53 = 2.0**-53
_S50 = np.int64(50)
_OCTANT = np.int64(1) << 50  # theta = 2 pi n / 2^53: an octant is 2^50 steps of n
_OCT_MASK = _OCTANT - 1
_PI_2M52 = np.pi * 2.0**-52  # x = r pi / 2^52 (r < 2^51: exact in float64)


@numba.njit(cache=True, error_model="numpy")
def _mulhilo64(a, b):
    """(high, low) 64-bit words of the exact 128-bit product a * b of two uint64, from the four
    32 x 32 -> 64-bit partial products (no carry is lost: ``mid < 3 * 2^32``)."""
    a0 = a & _LOW32
    a1 = a >> _S32
    b0 = b & _LOW32
    b1 = b >> _S32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    mid = (p00 >> _S32) + (p01 & _LOW32) + (p10 & _LOW32)
    hi = a1 * b1 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    return hi, (mid << _S32) | (p00 & _LOW32)


@numba.njit(cache=True, error_model="numpy")
def mulhi64(a, b):
    """High 64 bits of the exact 128-bit product of two uint64 ``a``, ``b`` (``_mulhilo64``)."""
    return _mulhilo64(a, b)[0]


@numba.njit(cache=True, error_model="numpy")
def philox4x64_10(c0, c1, c2, c3, k0, k1):
    """The Philox4x64-10 block of counter ``(c0, c1, c2, c3)`` and key ``(k0, k1)``, all
    uint64: a tuple of four uint64 words (the Random123 block function, see the module
    docstring)."""
    for r in range(_ROUNDS):
        if r > 0:
            k0 = k0 + _W0
            k1 = k1 + _W1
        hi0, lo0 = _mulhilo64(_M0, c0)
        hi1, lo1 = _mulhilo64(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@numba.njit(cache=True, error_model="numpy")
def _sincos_turn(n):
    """(cos, sin) of ``theta = 2 pi n / 2^53`` for an integer ``0 <= n < 2^53``, no libm call:
    octant ``o = n >> 50``, offset ``r = n mod 2^50`` (reflected, ``2^50 - r``, in odd
    octants), ``x = r pi / 2^52`` in ``[0, pi/4]`` (``r`` exact in float64), the Taylor
    polynomials of ``sin x`` and ``cos x`` of ``cospi``, then the octant's symmetry."""
    o = n >> _S50
    r = n & _OCT_MASK
    if o & 1:
        r = _OCTANT - r
    x = float(r) * _PI_2M52
    z = x * x
    sx = x + x * (z * horner(SIN_POLY, z))
    cx = 1.0 + z * horner(COS_POLY, z)
    c, s = (sx, cx) if ((o + 1) >> 1) & 1 else (cx, sx)
    if ((o + 2) >> 2) & 1:
        c = -c
    if o >> 2:
        s = -s
    return c, s


@numba.njit(cache=True, error_model="numpy")
def _uniform53(a):
    """u = ((a >> 11) + 1) 2^-53 in (0, 1] from a uint64 word (exact)."""
    return float((a >> _S11) + np.uint64(1)) * _TWO_M53


@numba.njit(cache=True, error_model="numpy")
def _polar(logu, b):
    """The Box-Muller pair (r cos theta, r sin theta), r = sqrt(-2 log u) from ``logu``, theta
    = 2 pi n / 2^53 from the angle word ``b`` (n = b >> 11)."""
    r = np.sqrt(-2.0 * logu)
    c, s = _sincos_turn(np.int64(b >> _S11))
    return r * c, r * s


@numba.njit(cache=True, error_model="numpy")
def _box_muller(a, b):
    """Two standard normals from two uint64 words (the module docstring's transform)."""
    return _polar(portable_log(_uniform53(a)), b)


@numba.njit(cache=True, error_model="numpy")
def fill_normals(seed, member, step, out):
    """out[i] = normal ``i`` of ``member`` at ``step`` (i = 0 .. len(out) - 1), for compiled
    callers: ``seed``, ``member``, ``step`` are uint64; ``out`` a float64 1-d array.  The
    values depend only on ``(seed, member, step, i)``, not on ``len(out)``."""
    d = out.shape[0]
    zero = np.uint64(0)
    for blk in range((d + 3) // 4):
        w0, w1, w2, w3 = philox4x64_10(np.uint64(blk), step, zero, zero, seed, member)
        z0, z1 = _box_muller(w0, w1)
        z2, z3 = _box_muller(w2, w3)
        i = 4 * blk
        out[i] = z0
        if i + 1 < d:
            out[i + 1] = z1
        if i + 2 < d:
            out[i + 2] = z2
        if i + 3 < d:
            out[i + 3] = z3


_CHUNK = 64  # blocks per vectorized batch of fill_member_normals


@numba.njit(cache=True, error_model="numpy")
def _philox_batch(c, nb, k0, k1):
    """Philox4x64-10 in place on the counters ``c[:, :nb]`` (shape (4, >= nb), uint64), one key:
    the rounds outside, the blocks inside (a loop the compiler vectorizes; integer arithmetic,
    so the bits are those of ``philox4x64_10``)."""
    for r in range(_ROUNDS):
        if r > 0:
            k0 = k0 + _W0
            k1 = k1 + _W1
        for i in range(nb):
            hi0, lo0 = _mulhilo64(_M0, c[0, i])
            hi1, lo1 = _mulhilo64(_M1, c[2, i])
            x0 = hi1 ^ c[1, i] ^ k0
            x2 = hi0 ^ c[3, i] ^ k1
            c[0, i] = x0
            c[1, i] = lo1
            c[2, i] = x2
            c[3, i] = lo0


#: length of the float64 ``work`` array of :func:`fill_member_normals`
WORK_SIZE = 14 * _CHUNK


@numba.njit(cache=True, error_model="numpy")
def fill_member_normals(seed, member, step0, out, work):
    """out[t, :] = the normals of ``member`` at step ``step0 + t`` (``out`` float64, shape
    (n_steps, d), C-contiguous), for compiled callers; ``seed``, ``member``, ``step0`` uint64,
    ``work`` a float64 C-contiguous scratch array of ``WORK_SIZE`` elements.  The same bits as
    :func:`fill_normals` row by row, computed in batches of ``_CHUNK`` blocks of the (step,
    block) sequence: the Philox rounds and the log vectorized (``portable_vlog``, the bits of
    ``portable_log`` for u >= 2^-53), the same arithmetic per element."""
    n_steps = out.shape[0]
    d = out.shape[1]
    nblk = (d + 3) // 4
    total = n_steps * nblk
    ch = _CHUNK
    c = work[: 4 * ch].view(np.uint64).reshape((4, ch))
    u = work[4 * ch : 6 * ch]
    logu = work[6 * ch : 8 * ch]
    bits = work[8 * ch : 10 * ch].view(np.int64)
    z = work[10 * ch : 14 * ch]
    zero = np.uint64(0)
    for start in range(0, total, ch):
        nb = min(ch, total - start)
        for j in range(nb):
            g = start + j
            c[0, j] = np.uint64(g % nblk)
            c[1, j] = step0 + np.uint64(g // nblk)
            c[2, j] = zero
            c[3, j] = zero
        _philox_batch(c, nb, seed, member)
        for j in range(nb):
            u[2 * j] = _uniform53(c[0, j])
            u[2 * j + 1] = _uniform53(c[2, j])
        portable_vlog(u[: 2 * nb], logu[: 2 * nb], bits[: 2 * nb])
        for j in range(nb):
            for h in range(2):
                z[4 * j + 2 * h], z[4 * j + 2 * h + 1] = _polar(logu[2 * j + h], c[2 * h + 1, j])
        for j in range(nb):
            g = start + j
            t = g // nblk
            i0 = 4 * (g % nblk)
            for q in range(min(4, d - i0)):
                out[t, i0 + q] = z[4 * j + q]


@numba.njit(cache=True, error_model="numpy")
def _normals_kernel(seed, members, step0, out):
    work = np.empty(WORK_SIZE)
    for m in range(members.shape[0]):
        fill_member_normals(seed, np.uint64(members[m]), np.uint64(step0), out[m], work)


def _check_args(seed, members, step0, n_steps, d):
    seed = check_integer(seed, "seed", minimum=0)
    if seed >= 2**64:
        raise fail("seed", seed, "must be below 2**64")
    arr = np.asarray(members)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise fail("members", members, "must be a 1-d array of integers")
    if arr.size and int(arr.min()) < 0:
        raise fail("members", members, "member indices must be >= 0")
    step0 = check_integer(step0, "step0", minimum=0)
    n_steps = check_integer(n_steps, "n_steps", minimum=0)
    if step0 + n_steps > 2**63:
        raise fail("step0", step0, "step0 + n_steps must be at most 2**63")
    d = check_integer(d, "d", minimum=1)
    return seed, arr.astype(np.int64), step0, n_steps, d


def normals(seed, members, step0, n_steps, d, out=None):
    """Standard normals of the noise stream (compiled): ``out[m, t, i]`` is normal ``i`` of
    member ``members[m]`` at step ``step0 + t``.

    Parameters
    ----------
    seed : int
        The ensemble seed, ``0 <= seed < 2**64`` (the first key word).
    members : array_like of int
        Member indices ``>= 0`` (the second key word), in any order, repeats allowed.
    step0 : int
        First step (the counter's second word), ``>= 0``.
    n_steps : int
        Number of consecutive steps, ``>= 0``.
    d : int
        Normals per member and step, ``>= 1``.
    out : numpy.ndarray, optional
        float64 C-contiguous array of shape ``(len(members), n_steps, d)`` to fill.

    Returns
    -------
    numpy.ndarray
        ``out`` (allocated if not given), float64, shape ``(len(members), n_steps, d)``;
        bitwise equal to :func:`normals_reference`.

    Raises
    ------
    ValueError
        If an argument is out of range or ``out`` has the wrong shape or dtype.
    """
    seed, members, step0, n_steps, d = _check_args(seed, members, step0, n_steps, d)
    shape = (members.size, n_steps, d)
    if out is None:
        out = np.empty(shape)
    elif (
        not isinstance(out, np.ndarray)
        or out.shape != shape
        or out.dtype != np.float64
        or not out.flags.c_contiguous
    ):
        raise fail("out", getattr(out, "shape", out), f"must be a C-contiguous float64 {shape}")
    _normals_kernel(np.uint64(seed), members, np.int64(step0), out)
    return out


# ----------------------------------------------------------------------------- numpy reference
def _mulhilo_np(m, c):
    """(hi, lo) of the 128-bit products m * c for a uint64 array c, numpy arithmetic."""
    mask = np.uint64(0xFFFFFFFF)
    m0, m1 = m & mask, m >> np.uint64(32)
    c0, c1 = c & mask, c >> np.uint64(32)
    p00, p01, p10, p11 = m0 * c0, m0 * c1, m1 * c0, m1 * c1
    mid = (p00 >> np.uint64(32)) + (p01 & mask) + (p10 & mask)
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    lo = (mid << np.uint64(32)) | (p00 & mask)
    return hi, lo


def philox4x64_10_reference(ctr, key):
    """Philox4x64-10 in numpy, vectorized over blocks.

    Parameters
    ----------
    ctr : array_like of uint64
        Counters, shape ``(..., 4)``.
    key : array_like of uint64
        Keys, shape ``(..., 2)`` (broadcast against ``ctr[..., 0]``).

    Returns
    -------
    numpy.ndarray
        uint64, shape ``(..., 4)``: the blocks.
    """
    ctr = np.asarray(ctr, dtype=np.uint64)
    key = np.asarray(key, dtype=np.uint64)
    c0, c1, c2, c3 = (ctr[..., j].copy() for j in range(4))
    k0, k1 = np.broadcast_to(key[..., 0], c0.shape), np.broadcast_to(key[..., 1], c0.shape)
    k0, k1 = k0.copy(), k1.copy()
    with np.errstate(over="ignore"):
        for r in range(_ROUNDS):
            if r > 0:
                k0 += _W0
                k1 += _W1
            hi0, lo0 = _mulhilo_np(_M0, c0)
            hi1, lo1 = _mulhilo_np(_M1, c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3], axis=-1)


def _horner_np(c, z):
    p = np.full_like(z, c[0])
    for ck in c[1:]:
        p = p * z + ck
    return p


def normals_reference(seed, members, step0, n_steps, d):
    """The noise stream of :func:`normals` in numpy (for tests; slow): the Philox blocks by
    :func:`philox4x64_10_reference`, the uniforms, the angles' octant reduction and the sine and
    cosine polynomials in numpy arithmetic (the same operations in the same order), the log by
    ``portable_vlog`` (the same bits as ``portable_log``).

    Parameters
    ----------
    seed, members, step0, n_steps, d
        As in :func:`normals`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(len(members), n_steps, d)``.
    """
    seed, members, step0, n_steps, d = _check_args(seed, members, step0, n_steps, d)
    nblk = (d + 3) // 4
    m, t, b = np.meshgrid(
        members.astype(np.uint64),
        np.arange(step0, step0 + n_steps, dtype=np.uint64),
        np.arange(nblk, dtype=np.uint64),
        indexing="ij",
    )
    zero = np.zeros_like(m)
    ctr = np.stack([b, t, zero, zero], axis=-1)
    key = np.stack([np.full_like(m, seed), m], axis=-1)
    words = philox4x64_10_reference(ctr, key).reshape(-1, 2)  # (a, b) pairs in stream order
    u = ((words[:, 0] >> np.uint64(11)) + np.uint64(1)).astype(np.float64) * _TWO_M53
    logu = np.empty_like(u)
    portable_vlog(u, logu, np.empty(u.size, dtype=np.int64))
    r = np.sqrt(-2.0 * logu)
    n = (words[:, 1] >> np.uint64(11)).astype(np.int64)
    o = n >> 50
    off = n & ((1 << 50) - 1)
    off = np.where(o & 1, (1 << 50) - off, off)
    x = off.astype(np.float64) * _PI_2M52
    z2 = x * x
    sx = x + x * (z2 * _horner_np(SIN_POLY, z2))
    cx = 1.0 + z2 * _horner_np(COS_POLY, z2)
    swap = ((o + 1) >> 1) & 1 == 1
    cos = np.where(swap, sx, cx)
    sin = np.where(swap, cx, sx)
    cos = np.where(((o + 2) >> 2) & 1 == 1, -cos, cos)
    sin = np.where(o >> 2 == 1, -sin, sin)
    z = np.stack([r * cos, r * sin], axis=-1).reshape(members.size, n_steps, 4 * nblk)
    return np.ascontiguousarray(z[:, :, :d])
