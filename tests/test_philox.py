"""The counter-based noise stream (dlnsim.particles.philox): Philox4x64-10 against Random123's
known-answer vectors and numpy's Philox bit generator, the compiled normals against the numpy
reference bitwise, their normality, and their independence of what else is generated."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from dlnsim.particles import philox

U = np.uint64
MAX = 2**64 - 1

# Random123 tests/kat_vectors, philox4x64 10: counter (4 words), key (2 words) -> block.
KAT = [
    ((0, 0, 0, 0), (0, 0),
     (0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B)),
    ((MAX, MAX, MAX, MAX), (MAX, MAX),
     (0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0)),
    ((0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
     (0x452821E638D01377, 0xBE5466CF34E90C6C),
     (0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6)),
]  # fmt: skip


def _compiled_block(ctr, key):
    return tuple(int(w) for w in philox.philox4x64_10(*map(U, ctr), *map(U, key)))


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answer_vectors(ctr, key, expected):
    """The published Random123 blocks (zeros, all ones, digits of pi), compiled and numpy."""
    assert _compiled_block(ctr, key) == expected
    assert tuple(int(w) for w in philox.philox4x64_10_reference(ctr, key)) == expected


def _numpy_block(ctr, key):
    """numpy's Philox adds 1 to the 256-bit counter (word 0 lowest, carry upwards) before it
    computes a block, so the block of counter ``c`` is the first output of counter ``c - 1``."""
    c = sum(w << (64 * j) for j, w in enumerate(ctr))
    c = (c - 1) % 2**256
    before = [(c >> (64 * j)) & MAX for j in range(4)]
    return tuple(
        int(w)
        for w in np.random.Philox(
            key=np.array(key, dtype=np.uint64), counter=np.array(before, dtype=np.uint64)
        ).random_raw(4)
    )


def test_blocks_equal_numpy_philox():
    """For random keys and counters (and carries across all four counter words), the block
    equals numpy's Philox bit generator; numpy's next block is that of counter + 1."""
    rng = np.random.default_rng(16)
    cases = [((0, 0, 0, 0), (0, 0)), ((0, 1, 0, 0), (1, 2)), ((5, 7, 0, 0), (MAX, 3))]
    for _ in range(20):
        w = rng.integers(0, 2**64, size=6, dtype=np.uint64)
        cases.append((tuple(int(x) for x in w[:4]), tuple(int(x) for x in w[4:])))
    for ctr, key in cases:
        assert _compiled_block(ctr, key) == _numpy_block(ctr, key), (ctr, key)
    # the mapping itself, once: counter=c yields block(c + 1), then block(c + 2)
    raw = np.random.Philox(
        key=[3, 4], counter=np.array([MAX, 0, 0, 0], dtype=np.uint64)
    ).random_raw(8)
    assert tuple(int(w) for w in raw[:4]) == _compiled_block((0, 1, 0, 0), (3, 4))
    assert tuple(int(w) for w in raw[4:]) == _compiled_block((1, 1, 0, 0), (3, 4))


@numba.njit
def _products(a, b):
    return philox._mulhilo64(a, b), philox._mul128(a, b)


def test_mulhi64_is_exact():
    """The 64 x 64 -> 128 products, both words, against Python's integers at the carry
    extremes: the vectorizable 32-bit form (``_mulhilo64``, ``mulhi64``) and the 128-bit
    intrinsic of the scalar rounds (``_mul128``)."""
    rng = np.random.default_rng(1)
    vals = [0, 1, 2**32 - 1, 2**32, 2**63, MAX, MAX - 1]
    vals += [int(x) for x in rng.integers(0, 2**64, size=40, dtype=np.uint64)]
    for a in vals:
        for b in vals[:12]:
            want = ((a * b) >> 64, (a * b) & MAX)
            assert int(philox.mulhi64(U(a), U(b))) == want[0], (a, b)
            split, wide = _products(U(a), U(b))
            assert (int(split[0]), int(split[1])) == want, (a, b)
            assert (int(wide[0]), int(wide[1])) == want, (a, b)


def test_fast_uniform_is_the_exact_53_bit_uniform():
    """``_fast_uniform(w)`` (two int32 conversions) equals ``(w >> 11) 2^-53`` exactly, at the
    extremes of both halves and on random words."""
    rng = np.random.default_rng(2)
    words = [0, 2**11 - 1, 2**11, 2**42 - 1, 2**42, 2**63, MAX, MAX - 2**11, 0x7FFFFFFF << 11]
    words += [int(x) for x in rng.integers(0, 2**64, size=200, dtype=np.uint64)]
    for w in words:
        assert philox._fast_uniform(U(w)) == (w >> 11) * 2.0**-53, w


def _fast_path(word, x_tab, ratio):
    """The ziggurat's fast path for one word, in Python (None if the word needs the slow path)."""
    u = (word >> 11) * 2.0**-53
    if not u < ratio[word & 255]:
        return None
    x = u * x_tab[word & 255]
    return -x if (word >> 8) & 1 else x


def test_compiled_normals_equal_reference_bitwise():
    """``normals`` (compiled) and ``normals_reference`` (numpy) give the same bits, for d not a
    multiple of 4, unordered members and seeds of 64 and 128 bits; and the words behind them are
    the documented ones: normal i of member k at step s starts from word i mod 4 of the Philox
    block of counter (i // 4, s, seed_hi, 0) and key (seed_lo, k) (checked in Python through the
    fast path, x = u X_j)."""
    members = np.array([5, 0, 2**40, 3])
    got = philox.normals(2**64 - 5, members, 123, 6, 7)
    ref = philox.normals_reference(2**64 - 5, members, 123, 6, 7)
    assert got.shape == (4, 6, 7)
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))
    big = 2**127 + 3 * 2**64 + 11  # a 128-bit seed: low word 11 in the key, high in the counter
    got_big = philox.normals(big, members, 9, 2, 5)
    assert np.array_equal(got_big, philox.normals_reference(big, members, 9, 2, 5))
    x_tab, _, ratio, _ = philox.ziggurat_tables()
    checked = 0
    for k, member in enumerate(members):
        for step in (123, 124):
            for i in range(7):
                block = philox.philox4x64_10_reference((i // 4, step, 0, 0), (2**64 - 5, member))
                want = _fast_path(int(block[i % 4]), x_tab, ratio)
                if want is not None:
                    assert got[k, step - 123, i] == want
                    checked += 1
        block = philox.philox4x64_10_reference((1, 10, 2**63 + 3, 0), (11, member))
        want = _fast_path(int(block[0]), x_tab, ratio)
        if want is not None:
            assert got_big[k, 1, 4] == want
            checked += 1
    assert checked >= 55  # of 60 (1.5% of words take the slow path)


@pytest.mark.parametrize(("d", "n_steps"), [(1, 300), (3, 70), (5, 41), (7, 50), (32, 9), (33, 17)])
def test_fill_member_normals_equals_the_reference_across_batches(d, n_steps):
    """``fill_member_normals`` (Philox in batches of 64 blocks, the vectorized fast path, the
    flagged slow words) equals ``normals_reference`` bitwise for widths that 4 does not divide
    (the last block's extra words are dropped, their slow flags ignored) and step counts whose
    blocks cross the batch boundaries, over members whose words take the slow path (checked:
    ~1.5% of the words).  A slow word written at its block's index past d, a batch offset
    off by one or a flag of a dropped word acted on fails here."""
    members = np.arange(0, 40, 3)
    ref = philox.normals_reference(77, members, 5, n_steps, d)
    work = philox.noise_work()
    out = np.empty((n_steps, d))
    for k, member in enumerate(members):
        out[:] = np.nan
        philox.fill_member_normals(U(77), U(0), U(member), U(5), out, work)
        assert np.array_equal(out.view(np.int64), ref[k].view(np.int64)), member
    x_tab, _, ratio, _ = philox.ziggurat_tables()
    nblk = (d + 3) // 4
    m, t, b = np.meshgrid(members, np.arange(5, 5 + n_steps), np.arange(nblk), indexing="ij")
    ctr = np.stack([b, t, np.zeros_like(m), np.zeros_like(m)], axis=-1).astype(np.uint64)
    key = np.stack([np.full_like(m, 77), m], axis=-1).astype(np.uint64)
    words = philox.philox4x64_10_reference(ctr, key).reshape(members.size, n_steps, 4 * nblk)
    u = (words >> U(11)).astype(float) * 2.0**-53
    slow = ~(u < ratio[(words & U(255)).astype(np.int64)])
    assert slow[..., :d].sum() >= 10
    if d % 4:
        assert slow[..., d:].sum() >= 3  # dropped words that would have taken the slow path


@numba.njit
def _retry_words(seed_lo, seed_hi, member, step, i, n):
    out = np.empty(n, dtype=np.uint64)
    zero = np.uint64(0)
    blk = (zero, zero, zero, zero)
    have = 0
    for p in range(n):
        out[p], blk, have = philox._retry_word(blk, have, seed_lo, seed_hi, member, step, i, p)
    return out


def test_retry_words_are_the_documented_blocks():
    """Word ``p`` of normal ``i``'s retry stream, read in order through the slow path's cached
    block, is word ``p mod 4`` of the block of counter ``(i, step, seed_hi, 1 + p // 4)`` and
    key ``(seed_lo, member)`` (numpy reference), for the first five blocks: a cached block
    kept past its four words fails here."""
    for seed_lo, seed_hi, member, step, i in ((21, 4, 3, 9, 5), (MAX, MAX, 2**40, 2**62, 0)):
        got = _retry_words(U(seed_lo), U(seed_hi), U(member), U(step), i, 20)
        for p in range(20):
            block = philox.philox4x64_10_reference((i, step, seed_hi, 1 + p // 4),
                                                   (seed_lo, member))  # fmt: skip
            assert int(got[p]) == int(block[p % 4]), (p, seed_lo)


def test_slow_path_equals_the_reference_on_forced_words():
    """Words forced into the slow path (2000 wedge words, u at or above X_{j+1}/X_j in layers
    1..255, and 200 tail words in layer 0), compiled ``_ziggurat_slow`` against the numpy
    reference's slow path bitwise.  About half of the wedges reject and restart (reading two
    retry words, a few of them more), a few tails loop twice (four words): a wrong retry word
    order, wedge bound or tail test fails here."""
    rng = np.random.default_rng(3)
    _, _, ratio, _ = philox.ziggurat_tables()
    n_wedge, n_tail = 2000, 200
    layer = np.concatenate([rng.integers(1, 256, n_wedge), np.zeros(n_tail, dtype=np.int64)])
    lo = np.ceil(ratio[layer] * 2.0**53).astype(np.int64)
    top = rng.integers(lo, 2**53)
    words = (top.astype(np.uint64) << U(11)) | (rng.integers(0, 8, layer.size).astype(np.uint64)
                                               << U(8)) | layer.astype(np.uint64)  # fmt: skip
    members = np.arange(layer.size)
    steps = np.full(layer.size, 9)
    index = np.arange(layer.size) % 37
    ref = philox._ziggurat_reference(words, U(21), U(4), members, steps, index)
    got = np.array([philox._ziggurat_slow(words[q], U(21), U(4), U(members[q]), U(9),
                                          int(index[q])) for q in range(layer.size)])  # fmt: skip
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))


def test_ziggurat_tables_against_mpmath_and_the_published_constants():
    """r closes the 256-layer stack (recomputed here by bisection with mpmath at 50 digits, to
    1e-30), equals Marsaglia and Tsang's published r = 3.6541528853610088 and v =
    0.00492867323399; every layer of the float64 tables has area v to 1e-14 relative (an error
    in an edge, e.g. a shifted index, breaks equal areas and so the law)."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(50):

        def closure(r):
            v = r * mp.exp(-r * r / 2) + mp.sqrt(mp.pi / 2) * mp.erfc(r / mp.sqrt(2))
            x = r
            for _ in range(1, 255):
                y = mp.exp(-x * x / 2) + v / x
                if y >= 1:
                    return mp.mpf(1)  # the stack overshoots the top: r too small
                x = mp.sqrt(-2 * mp.log(y))
            return mp.exp(-x * x / 2) + v / x - 1

        lo, hi = mp.mpf("3.6"), mp.mpf("3.7")
        for _ in range(120):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if closure(mid) > 0 else (lo, mid)
        assert abs(lo - mp.mpf(philox.ZIGGURAT_R)) < mp.mpf("1e-30")
    x, fx, ratio, v = philox.ziggurat_tables()
    assert x[1] == pytest.approx(3.6541528853610088, rel=1e-15)
    assert v == pytest.approx(0.00492867323399, rel=1e-11)
    assert x[256] == 0.0 and fx[256] == 1.0 and np.all(np.diff(x) < 0)
    areas = x[1:256] * (fx[2:257] - fx[1:256])  # layer j >= 1: width X_j, f(X_{j+1}) - f(X_j)
    np.testing.assert_allclose(areas, v, rtol=1e-13)
    tail = math.sqrt(math.pi / 2) * math.erfc(x[1] / math.sqrt(2))
    assert x[0] * fx[1] == pytest.approx(x[1] * fx[1] + tail, rel=1e-14)  # the base strip
    np.testing.assert_allclose(ratio, x[1:] / x[:-1], rtol=3e-16)  # ratios of the exact edges


def test_normals_depend_only_on_seed_member_step():
    """Member k's normals at step s do not depend on which members are generated with it, in
    which order, on step0/n_steps windows or on d (a prefix): bitwise; and seeds, members and
    steps give different streams."""
    full = philox.normals(9, np.arange(6), 0, 10, 12)
    alone = philox.normals(9, [4], 0, 10, 12)
    assert np.array_equal(full[4], alone[0])
    shuffled = philox.normals(9, [3, 1, 4], 0, 10, 12)
    assert np.array_equal(shuffled, full[[3, 1, 4]])
    window = philox.normals(9, [2, 5], 3, 4, 12)
    assert np.array_equal(window, full[[2, 5], 3:7])
    short = philox.normals(9, np.arange(6), 0, 10, 5)
    assert np.array_equal(short, full[:, :, :5])
    row = np.empty(12)
    philox.fill_normals(U(9), U(0), U(2), U(7), row)
    assert np.array_equal(row, full[2, 7])
    rows = np.empty((3, 12))
    philox.fill_member_normals(U(9), U(0), U(5), U(6), rows, philox.noise_work())
    assert np.array_equal(rows, full[5, 6:9])
    # different seed / member / step: no shared values (ties have probability ~1e-14); a seed
    # differing only in its high 64-bit word (the counter's third word) is another stream too
    other = philox.normals(10, np.arange(6), 0, 10, 12)
    assert not np.isin(other, full).any()
    high = philox.normals(9 + 2**64, np.arange(6), 0, 10, 12)
    assert not np.isin(high, full).any()
    flat = full.ravel()
    assert np.unique(flat).size == flat.size


def test_normality_of_the_normals():
    """4 10^6 normals (4000 members x 250 steps x 4): moments within 5 standard errors of the
    normal's, KS distance within the 1e-4 level critical value, and the tails beyond the base
    edge r (probability 2.6e-4: 1032 expected, SE 32) and beyond 4 (6.3e-5) within 5 SE.  The
    mean (SE 1/sqrt(n)) catches a lost sign bit; the variance (SE sqrt(2/n)) a wrong edge table
    or u scale (1% of variance is 7 SE); the tail counts a tail sampler or base strip off by
    15%; KS a wedge test that accepts everything (the density then steps at the layer edges).
    Words of one block are uncorrelated."""
    z = philox.normals(2026, np.arange(4000), 0, 250, 4).ravel()
    n = z.size
    assert n == 4 * 10**6
    mean = z.mean()
    c = z - mean
    var = (c * c).mean()
    skew = (c**3).mean() / var**1.5
    kurt = (c**4).mean() / var**2 - 3.0
    assert abs(mean) < 5.0 / math.sqrt(n)
    assert abs(var - 1.0) < 5.0 * math.sqrt(2.0 / n)
    assert abs(skew) < 5.0 * math.sqrt(6.0 / n)
    assert abs(kurt) < 5.0 * math.sqrt(24.0 / n)
    for edge in (float(philox.ziggurat_tables()[0][1]), 4.0):
        p = math.erfc(edge / math.sqrt(2.0))  # P(|Z| > edge)
        count = int(np.sum(np.abs(z) > edge))
        assert abs(count - n * p) < 5.0 * math.sqrt(n * p), (edge, count, n * p)
    zs = np.sort(z[::4])
    m = zs.size
    cdf = 0.5 * np.array([math.erfc(-x / math.sqrt(2.0)) for x in zs[::10]])
    k = np.arange(0, m, 10)
    ks = max(np.max((k + 1) / m - cdf), np.max(cdf - k / m))
    # Kolmogorov: P(sqrt(m) D > 2.23) ~ 1e-4 (the 10-subsampled CDF adds at most 10/m)
    assert ks < 2.23 / math.sqrt(m) + 10.0 / m
    blocks = z.reshape(-1, 4)
    for a, b in ((0, 1), (0, 2), (1, 3)):
        assert abs(np.mean(blocks[:, a] * blocks[:, b])) < 5.0 / math.sqrt(blocks.shape[0])


def test_the_tail_sampler_draws_the_normal_tail():
    """Words forced into the base strip's tail (layer 0, u = 1 - 2^-53 >= X_1 / X_0): 100 000
    draws through the retry streams of as many members against the normal law beyond r
    (truncated): KS within the 1e-4 level critical value (D < 0.0071) and P(x > 4 | x > r) =
    0.2455 within 5 SE (0.0068).  The tail is 1e-4 of all normals, too rare for
    test_normality_of_the_normals to see its shape: this catches Marsaglia's acceptance 2b > a^2
    written b > a^2 (P(x > 4 | x > r) drops to ~0.15, D ~ 0.1)."""
    word = np.uint64((2**53 - 1) << 11)  # layer 0, sign +, the largest u
    n = 100_000
    x = np.array([philox._ziggurat_slow(word, U(3), U(0), U(k), U(5), 0) for k in range(n)])
    r = float(philox.ziggurat_tables()[0][1])
    assert np.all(x >= r)
    sf_r = math.erfc(r / math.sqrt(2.0))
    xs = np.sort(x)
    cdf = 1.0 - np.array([math.erfc(v / math.sqrt(2.0)) for v in xs]) / sf_r
    k = np.arange(n)
    ks = max(np.max((k + 1) / n - cdf), np.max(cdf - k / n))
    assert ks < 2.23 / math.sqrt(n)
    p4 = math.erfc(4.0 / math.sqrt(2.0)) / sf_r
    assert abs(np.mean(x > 4.0) - p4) < 5.0 * math.sqrt(p4 * (1 - p4) / n)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 2**128},
        {"seed": 1.5},
        {"members": [-1]},
        {"members": [[0]]},
        {"members": [0.5]},
        {"step0": -1},
        {"n_steps": -1},
        {"d": 0},
        {"out": np.empty((1, 2, 4))},
        {"out": np.empty((2, 2, 3), dtype=np.float32)},
    ],
)
def test_bad_arguments(kwargs):
    args = {"seed": 1, "members": [0, 1], "step0": 0, "n_steps": 2, "d": 3, **kwargs}
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"bad {name}="):
        philox.normals(**args)


def test_noise_scheme_is_named():
    assert philox.NOISE_SCHEME.startswith("philox4x64-10/")
    assert philox.NOISE_SCHEME.endswith("/ziggurat256-portable/v1")
