r"""Counter-based Gaussian noise for compiled code: Philox4x64-10 and a portable ziggurat.

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
The products are exact either way they are formed: in the batched (vectorized) rounds from the
four 32 x 32 -> 64-bit partial products (:func:`mulhi64`: SIMD units have no 64-bit high
product), in the scalar rounds as one 128-bit integer product in LLVM IR.  The block equals
the published Random123 known-answer vectors and ``numpy.random.Philox``:
``Philox(key=[k0, k1], counter=c)`` adds 1 to the 256-bit counter (little-endian words, carry
from ``c0`` up) *before* its first block, so
``Philox(key=k, counter=c - 1).random_raw(4) == philox4x64_10(*c, *k)`` (tests/test_philox.py).

Key and counter of the noise
----------------------------
The seed is an integer ``0 <= seed < 2^128`` (``SeedSequence().entropy`` is 128 bits), split
into ``seed_lo = seed mod 2^64`` and ``seed_hi = seed div 2^64``.  key ``= (seed_lo, member)``;
counter ``= (block, step, seed_hi, 0)``, where ``block = i // 4`` for the ``i``-th normal of the
step (``i = 0 .. d-1``): normal ``i`` starts from word ``i mod 4`` of that block.  The rare
normals that need more random words (the ziggurat's rejections, ~1.5%) take them from their own
retry stream, the blocks of counter ``(i, step, seed_hi, a)`` for ``a = 1, 2, ...`` (word ``p``
of the stream is word ``p mod 4`` of block ``a = 1 + p // 4``).  So ``(seed, member, step, i)``
determines the normal, and distinct tuples never share a (key, counter) pair.

Entry points
------------
:func:`normals` (from Python: members x steps x d), and for compiled callers
:func:`fill_normals` (one member, one step) and :func:`fill_member_normals` (one member,
consecutive steps, the Philox rounds vectorized over batches of 64 blocks: the same bits).
:func:`normals_reference` is the numpy version.

Normals from the words (a 256-layer ziggurat, portable)
-------------------------------------------------------
Marsaglia and Tsang's ziggurat (2000) for ``f(x) = exp(-x^2/2)`` with ``n = 256`` layers of
equal area ``v``: edges ``X_1 = r``, ``X_{j+1} = f^{-1}(f(X_j) + v / X_j)``, ``X_n = 0``, and the
base strip's ``X_0 = v / f(r)`` (rectangle ``[0, r] x [0, f(r)]`` plus the tail).  ``r`` (
:data:`ZIGGURAT_R`, 40 digits) is the root that closes the stack, found with mpmath; it agrees
with the published ``r = 3.6541528853610088``, ``v = 0.00492867323399``
(tests/test_philox.py recomputes it).  The tables ``X_j``, ``f(X_j)`` and ``X_{j+1}/X_j`` are
evaluated with mpmath at 40 digits and rounded to float64 at import: the same bits everywhere.

From a word ``w``: layer ``j = w mod 256``, sign bit ``(w >> 8) & 1``, ``u = (w >> 11) 2^-53`` in
``[0, 1)``, ``x = u X_j``.

* ``u < X_{j+1} / X_j`` (98.5% of words): accept ``x``;
* ``j = 0`` (the tail beyond ``r``): Marsaglia's tail method, ``a = -log(u_1) / r``,
  ``b = -log(u_2)`` until ``2 b > a^2``, then ``x = r + a`` (``u_1``, ``u_2`` in ``(0, 1]``);
* otherwise (a wedge): accept if ``f(X_j) + u_2 (f(X_{j+1}) - f(X_j)) < f(x)``, else start over
  with the next word of the retry stream.

The result is ``x`` with the sign of the accepted word.  ``log`` and ``exp`` are
:func:`~dlnsim.particles.pairsum.portable.portable_log` and ``portable_exp``; everything else is
plain IEEE arithmetic in an order fixed by the source: the same bits on every CPU.  The law is
exactly the standard normal up to the 2^-53 grid of ``u`` (tests/test_philox.py: moments, KS,
the tail beyond ``r`` and the wedges' rejection rate).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .pairsum.portable import portable_exp, portable_log
from .validation import check_integer, fail

__all__ = [
    "NOISE_SCHEME",
    "noise_work",
    "ZIGGURAT_R",
    "ziggurat_tables",
    "fill_member_normals",
    "fill_normals",
    "mulhi64",
    "normals",
    "normals_reference",
    "philox4x64_10",
    "philox4x64_10_reference",
    "seed_words",
]

#: the name and version of the noise stream (generator / transform / version); datasets
#: record it, and a store written with another scheme cannot be resumed bitwise.
NOISE_SCHEME = (
    "philox4x64-10/key=seed_lo,member/ctr=block,step,seed_hi,0;retry=i,step,seed_hi,a/"
    "ziggurat256-portable/v1"
)

_M0 = np.uint64(0xD2E7470EE14C6C93)  # Philox4x64 multipliers (Salmon et al. 2011, Table 2)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)  # Weyl key increments: golden ratio, sqrt(3) - 1
_W1 = np.uint64(0xBB67AE8584CAA73B)
_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_ROUNDS = 10
_TWO_M53 = 2.0**-53
_S8 = np.uint64(8)
_LAYER = np.uint64(0xFF)
_LAYER_SIGN = np.uint64(0x1FF)
_S42 = np.uint64(42)
_LOW31 = np.uint64(0x7FFFFFFF)
_TWO_M22 = 2.0**-22
_ONE = np.uint64(1)

#: r of the 256-layer ziggurat: the root of the stack's closure (module docstring), 40 digits
ZIGGURAT_R = "3.654152885361008771645429720399515762975"
_LAYERS = 256


def ziggurat_tables(r: str = ZIGGURAT_R, n: int = _LAYERS) -> tuple[np.ndarray, ...]:
    """The ziggurat's tables from ``r``, evaluated with mpmath at 40 digits, rounded to float64.

    Parameters
    ----------
    r : str
        The base edge ``r`` as a decimal string.
    n : int
        The number of layers.

    Returns
    -------
    tuple of numpy.ndarray
        ``(x, fx, ratio, v)``: edges ``X_0 .. X_n`` (``X_n = 0``), ``f(X_j)`` (``f(X_n) = 1``),
        ``X_{j+1} / X_j`` for ``j < n``, and the layer area ``v`` (a float).
    """
    import mpmath

    with mpmath.workdps(40):
        rr = mpmath.mpf(r)
        v = rr * mpmath.exp(-rr * rr / 2) + mpmath.sqrt(mpmath.pi / 2) * mpmath.erfc(
            rr / mpmath.sqrt(2)
        )
        xs = [v / mpmath.exp(-rr * rr / 2), rr]
        for _ in range(2, n):
            x = xs[-1]
            xs.append(mpmath.sqrt(-2 * mpmath.log(mpmath.exp(-x * x / 2) + v / x)))
        xs.append(mpmath.mpf(0))
        fx = [mpmath.exp(-x * x / 2) for x in xs]
        ratio = [xs[j + 1] / xs[j] for j in range(n)]
        return (
            np.array([float(x) for x in xs]),
            np.array([float(f) for f in fx]),
            np.array([float(q) for q in ratio]),
            float(v),
        )


_ZX, _ZF, _ZK, _ZV = ziggurat_tables()
_ZR = float(_ZX[1])
_ZXS = np.concatenate([_ZX[:_LAYERS], -_ZX[:_LAYERS]])  # X_j with the sign bit: u * _ZXS[w & 511]


@numba.njit(cache=True, error_model="numpy")
def _mulhilo64(a, b):
    """(high, low) 64-bit words of the exact 128-bit product a * b of two uint64, from the four
    32 x 32 -> 64-bit partial products, carried in two steps that cannot overflow:
    ``t = a1 b0 + (a0 b0 >> 32) <= 2^64 - 2^32`` and ``w = a0 b1 + (t mod 2^32) <= 2^64 - 2^32``
    (fewer vector operations than summing the middle terms at once; the same exact words)."""
    a0 = a & _LOW32
    a1 = a >> _S32
    b0 = b & _LOW32
    b1 = b >> _S32
    p00 = a0 * b0
    t = a1 * b0 + (p00 >> _S32)
    w = a0 * b1 + (t & _LOW32)
    hi = a1 * b1 + (t >> _S32) + (w >> _S32)
    return hi, (w << _S32) | (p00 & _LOW32)


@intrinsic
def _mul128(typingctx, a, b):
    """(high, low) 64-bit words of a * b for two uint64, as one 128-bit integer product in LLVM
    IR (a single ``mul``/``mulx``, or ``mul`` + ``umulh``): exact, the bits of ``_mulhilo64``.
    Scalar code only: the compilers do not vectorize it, so the batched rounds keep
    ``_mulhilo64``."""
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        prod = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        hi = builder.trunc(builder.lshr(prod, ir.Constant(wide, 64)), ir.IntType(64))
        lo = builder.trunc(prod, ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, [hi, lo])

    return sig, codegen


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
        hi0, lo0 = _mul128(_M0, c0)
        hi1, lo1 = _mul128(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@numba.njit(cache=True, error_model="numpy")
def _retry_word(blk, have, seed_lo, seed_hi, member, step, i, p):
    """Word ``p`` of normal ``i``'s retry stream, word ``p mod 4`` of the block of counter
    ``(i, step, seed_hi, a)``, ``a = 1 + p // 4``: ``(word, block, a)``.  ``blk`` is the block of
    ``a = have`` (computed only when ``a`` changes: four words per block)."""
    a = 1 + p // 4
    if a != have:
        blk = philox4x64_10(np.uint64(i), step, seed_hi, np.uint64(a), seed_lo, member)
        have = a
    return blk[p % 4], blk, have


@numba.njit(cache=True, error_model="numpy")
def _uniform_open(w):
    """u = ((w >> 11) + 1) 2^-53 in (0, 1] (exact; its log is finite)."""
    return float(np.int64(w >> _S11) + 1) * _TWO_M53


@numba.njit(cache=True, error_model="numpy")
def _ziggurat_slow(w, seed_lo, seed_hi, member, step, i):
    """Normal ``i`` when its first word ``w`` is not accepted at once (the module docstring's
    tail, wedge and restart), drawing further words from its retry stream."""
    p = 0
    zero = np.uint64(0)
    blk = (zero, zero, zero, zero)
    have = 0
    while True:
        j = np.int64(w & _LAYER)
        u = float(np.int64(w >> _S11)) * _TWO_M53
        x = u * _ZX[j]
        if u < _ZK[j]:
            break
        if j == 0:
            while True:
                w1, blk, have = _retry_word(blk, have, seed_lo, seed_hi, member, step, i, p)
                w2, blk, have = _retry_word(blk, have, seed_lo, seed_hi, member, step, i, p + 1)
                a = -portable_log(_uniform_open(w1))
                a = a / _ZR
                b = -portable_log(_uniform_open(w2))
                p += 2
                if b + b > a * a:
                    break
            x = _ZR + a
            break
        w2, blk, have = _retry_word(blk, have, seed_lo, seed_hi, member, step, i, p)
        u2 = float(np.int64(w2 >> _S11)) * _TWO_M53
        p += 1
        if _ZF[j] + u2 * (_ZF[j + 1] - _ZF[j]) < portable_exp(-0.5 * x * x):
            break
        w, blk, have = _retry_word(blk, have, seed_lo, seed_hi, member, step, i, p)
        p += 1
    return -x if (w >> _S8) & _ONE else x


@numba.njit(cache=True, error_model="numpy")
def _ziggurat(w, seed_lo, seed_hi, member, step, i):
    """Normal ``i`` of ``member`` at ``step`` from its first word ``w`` (fast path inline)."""
    j = np.int64(w & _LAYER)
    u = float(np.int64(w >> _S11)) * _TWO_M53
    if u < _ZK[j]:
        x = u * _ZX[j]
        return -x if (w >> _S8) & _ONE else x
    return _ziggurat_slow(w, seed_lo, seed_hi, member, step, i)


@numba.njit(cache=True, error_model="numpy")
def fill_normals(seed_lo, seed_hi, member, step, out):
    """out[i] = normal ``i`` of ``member`` at ``step`` (i = 0 .. len(out) - 1), for compiled
    callers: ``seed_lo``, ``seed_hi`` (the seed's low and high 64-bit words), ``member``,
    ``step`` are uint64; ``out`` a float64 1-d array.  The values depend only on
    ``(seed, member, step, i)``, not on ``len(out)``."""
    d = out.shape[0]
    zero = np.uint64(0)
    for blk in range((d + 3) // 4):
        words = philox4x64_10(np.uint64(blk), step, seed_hi, zero, seed_lo, member)
        for q in range(min(4, d - 4 * blk)):
            i = 4 * blk + q
            out[i] = _ziggurat(words[q], seed_lo, seed_hi, member, step, i)


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


@numba.njit(cache=True, error_model="numpy")
def noise_work():
    """The scratch arrays of :func:`fill_member_normals` (callable from Python and compiled
    code): Philox counters/blocks ``(4, 64)`` uint64; their words in stream order ``(256,)``
    uint64 (word ``q`` of block ``j`` at ``4 j + q``); the fast path's values ``(256,)``
    float64; the slow-path flags ``(256,)`` uint8."""
    return (
        np.empty((4, _CHUNK), dtype=np.uint64),
        np.empty(4 * _CHUNK, dtype=np.uint64),
        np.empty(4 * _CHUNK),
        np.zeros(4 * _CHUNK, dtype=np.uint8),
    )


@numba.njit(cache=True, error_model="numpy")
def _fast_uniform(w):
    """``u = (w >> 11) 2^-53`` from two int32 conversions (vectorizable where the 64-bit
    conversion is not, e.g. AVX2): ``(w >> 42) 2^-22 + ((w >> 11) mod 2^31) 2^-53``; both
    products and the sum are exact, so the bits are those of ``float(w >> 11) * 2^-53``."""
    hi = float(np.int32(w >> _S42)) * _TWO_M22
    return hi + float(np.int32((w >> _S11) & _LOW31)) * _TWO_M53


@numba.njit(cache=True, error_model="numpy")
def fill_member_normals(seed_lo, seed_hi, member, step0, out, work):
    """out[t, :] = the normals of ``member`` at step ``step0 + t`` (``out`` float64, shape
    (n_steps, d)), for compiled callers; ``seed_lo``, ``seed_hi``, ``member``, ``step0``
    uint64, ``work`` the scratch arrays of :func:`noise_work`.  The same bits as
    :func:`fill_normals` row by row, in passes over batches of ``_CHUNK`` blocks of the
    (step, block) sequence: the Philox rounds (vectorized over blocks); the words in stream
    order; the ziggurat's fast path over all of them (vectorized and branch-free: the sign is
    folded into a signed table of the edges, ``u (-X_j) = -(u X_j)`` exactly, and the words that
    need the slow path are flagged); the rows' words copied into ``out``; then the flagged
    words (~1.5%) one by one."""
    n_steps = out.shape[0]
    d = out.shape[1]
    nblk = (d + 3) // 4
    row_words = 4 * nblk  # words per step: d used, the rest of the last block dropped
    total = n_steps * nblk
    c, wds, z, flag = work
    flag8 = flag.view(np.uint64)  # the flags eight at a time, to skip clean runs
    ch = c.shape[1]
    zero = np.uint64(0)
    blk = 0  # block and step of the next block, advanced without a division
    t = 0
    for start in range(0, total, ch):
        nb = min(ch, total - start)
        for j in range(nb):
            c[0, j] = np.uint64(blk)
            c[1, j] = step0 + np.uint64(t)
            c[2, j] = seed_hi
            c[3, j] = zero
            blk += 1
            if blk == nblk:
                blk = 0
                t += 1
        _philox_batch(c, nb, seed_lo, member)
        for j in range(nb):
            wds[4 * j] = c[0, j]
            wds[4 * j + 1] = c[1, j]
            wds[4 * j + 2] = c[2, j]
            wds[4 * j + 3] = c[3, j]
        nw = 4 * nb
        n_slow = 0
        for k in range(nw):
            w = wds[k]
            u = _fast_uniform(w)
            z[k] = u * _ZXS[np.int64(w & _LAYER_SIGN)]
            slow = u >= _ZK[np.int64(w & _LAYER)]
            flag[k] = slow
            n_slow += slow
        g0 = 4 * start  # the batch holds the words g0 <= g < g0 + nw of the stream
        r = g0 // row_words
        while r * row_words < g0 + nw:
            base = r * row_words
            lo = max(g0, base) - base
            hi = min(g0 + nw, base + d) - base
            row = out[r]
            off = np.uint64(base - g0)  # >= 0 where used: unsigned indices, no wraparound
            for i in range(np.uint64(lo), np.uint64(hi)):
                row[i] = z[i + off]
            r += 1
        if n_slow == 0:
            continue
        for e in range((nw + 7) // 8):
            if flag8[e] == 0:
                continue
            for k in range(8 * e, min(8 * e + 8, nw)):
                if flag[k]:
                    tt, i = divmod(g0 + k, row_words)
                    if i < d:
                        step = step0 + np.uint64(tt)
                        out[tt, i] = _ziggurat_slow(wds[k], seed_lo, seed_hi, member, step, i)


@numba.njit(cache=True, error_model="numpy")
def _normals_kernel(seed_lo, seed_hi, members, step0, out):
    work = noise_work()
    for m in range(members.shape[0]):
        member = np.uint64(members[m])
        fill_member_normals(seed_lo, seed_hi, member, np.uint64(step0), out[m], work)


def seed_words(seed: int) -> tuple[np.uint64, np.uint64]:
    """``(seed mod 2^64, seed div 2^64)`` as uint64: the key's and the counter's seed words.

    Parameters
    ----------
    seed : int
        ``0 <= seed < 2**128`` (not checked).

    Returns
    -------
    tuple of numpy.uint64
        ``(seed_lo, seed_hi)``.
    """
    seed = int(seed)
    return np.uint64(seed & 0xFFFFFFFFFFFFFFFF), np.uint64(seed >> 64)


def _check_args(seed, members, step0, n_steps, d):
    seed = check_integer(seed, "seed", minimum=0)
    if seed >= 2**128:
        raise fail("seed", seed, "must be below 2**128")
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
        The ensemble seed, ``0 <= seed < 2**128`` (low word: the first key word; high word:
        the third counter word).
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
    _normals_kernel(*seed_words(seed), members, np.int64(step0), out)
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


def _ziggurat_reference(words, seed_lo, seed_hi, members, steps, index):
    """The ziggurat of the module docstring in numpy for first words ``words`` (uint64 array):
    the fast path vectorized; the rest (~1.5%) word by word in Python, drawing retry words from
    :func:`philox4x64_10_reference` and ``log``/``exp`` from the portable scalar functions."""
    j = (words & np.uint64(0xFF)).astype(np.int64)
    u = (words >> np.uint64(11)).astype(np.float64) * _TWO_M53
    x = u * _ZX[j]
    neg = ((words >> np.uint64(8)) & np.uint64(1)).astype(bool)
    for q in np.flatnonzero(~(u < _ZK[j])):
        member, step, i = int(members.flat[q]), int(steps.flat[q]), int(index.flat[q])
        p = 0

        def word(p, member=member, step=step, i=i):
            block = philox4x64_10_reference((i, step, int(seed_hi), 1 + p // 4),
                                            (int(seed_lo), member))  # fmt: skip
            return int(block[p % 4])

        w = int(words.flat[q])
        while True:
            jj = w & 0xFF
            uu = float(w >> 11) * _TWO_M53
            xx = uu * _ZX[jj]
            if uu < _ZK[jj]:
                break
            if jj == 0:
                while True:
                    a = -portable_log(float((word(p) >> 11) + 1) * _TWO_M53) / _ZR
                    b = -portable_log(float((word(p + 1) >> 11) + 1) * _TWO_M53)
                    p += 2
                    if b + b > a * a:
                        break
                xx = _ZR + a
                break
            u2 = float(word(p) >> 11) * _TWO_M53
            p += 1
            if _ZF[jj] + u2 * (_ZF[jj + 1] - _ZF[jj]) < portable_exp(-0.5 * xx * xx):
                break
            w = word(p)
            p += 1
        x.flat[q] = xx
        neg.flat[q] = bool((w >> 8) & 1)
    return np.where(neg, -x, x)


def normals_reference(seed, members, step0, n_steps, d):
    """The noise stream of :func:`normals` in numpy (for tests; slow): the Philox blocks by
    :func:`philox4x64_10_reference`, the ziggurat in numpy arithmetic (the same operations in the
    same order), the rare slow path word by word.

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
    seed_lo, seed_hi = seed_words(seed)
    ctr = np.stack([b, t, np.full_like(m, seed_hi), zero], axis=-1)
    key = np.stack([np.full_like(m, seed_lo), m], axis=-1)
    words = philox4x64_10_reference(ctr, key).reshape(members.size, n_steps, 4 * nblk)[..., :d]
    shape = words.shape
    mem = np.broadcast_to(members.reshape(-1, 1, 1), shape)
    steps = np.broadcast_to(np.arange(step0, step0 + n_steps).reshape(1, -1, 1), shape)
    index = np.broadcast_to(np.arange(d).reshape(1, 1, -1), shape)
    z = _ziggurat_reference(np.ascontiguousarray(words), seed_lo, seed_hi, mem, steps, index)
    return np.ascontiguousarray(z)
