"""The counter-based noise stream (dlnsim.particles.philox): Philox4x64-10 against Random123's
known-answer vectors and numpy's Philox bit generator, the compiled normals against the numpy
reference bitwise, their normality, and their independence of what else is generated."""

from __future__ import annotations

import math

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


def test_mulhi64_is_exact():
    """The 64 x 64 -> 128 high word against Python's integers, at the carry extremes."""
    rng = np.random.default_rng(1)
    vals = [0, 1, 2**32 - 1, 2**32, 2**63, MAX, MAX - 1]
    vals += [int(x) for x in rng.integers(0, 2**64, size=40, dtype=np.uint64)]
    for a in vals:
        for b in vals[:12]:
            assert int(philox.mulhi64(U(a), U(b))) == (a * b) >> 64, (a, b)


def test_compiled_normals_equal_reference_bitwise():
    """``normals`` (compiled) and ``normals_reference`` (numpy) give the same bits, for d not a
    multiple of 4, unordered members and a large seed; and the transform is Box-Muller: against
    libm's log/cos/sin on the same uniforms the values agree to a few ulps."""
    members = np.array([5, 0, 2**40, 3])
    got = philox.normals(2**64 - 5, members, 123, 6, 7)
    ref = philox.normals_reference(2**64 - 5, members, 123, 6, 7)
    assert got.shape == (4, 6, 7)
    assert np.array_equal(got.view(np.int64), ref.view(np.int64))
    # independent check of the transform for member 5, step 123, normals 0..3 (block 0)
    w = philox.philox4x64_10_reference((0, 123, 0, 0), (2**64 - 5, 5))
    for j in (0, 2):
        u = ((int(w[j]) >> 11) + 1) * 2.0**-53
        theta = 2.0 * math.pi * (int(w[j + 1]) >> 11) * 2.0**-53
        r = math.sqrt(-2.0 * math.log(u))
        assert got[0, 0, j] == pytest.approx(r * math.cos(theta), rel=1e-13, abs=1e-14)
        assert got[0, 0, j + 1] == pytest.approx(r * math.sin(theta), rel=1e-13, abs=1e-14)


def test_sine_and_cosine_of_the_angle():
    """The angle's cosine and sine (octant reduction + polynomials, no libm) against mpmath at
    every octant boundary (n = k 2^50 - 1, k 2^50, k 2^50 + 1) and 3000 random n: within 2e-16
    absolute (|cos|, |sin| <= 1); the compiled and the numpy reference paths share nothing but
    the coefficients, and test_compiled_normals_equal_reference_bitwise ties them."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    rng = np.random.default_rng(3)
    ns = [k * 2**50 + e for k in range(9) for e in (-1, 0, 1) if 0 <= k * 2**50 + e < 2**53]
    ns += [int(x) for x in rng.integers(0, 2**53, size=3000)]
    for n in ns:
        c, s = philox._sincos_turn(np.int64(n))
        theta = 2 * mp.pi * n / mp.mpf(2) ** 53
        assert abs(c - float(mp.cos(theta))) <= 2e-16, n
        assert abs(s - float(mp.sin(theta))) <= 2e-16, n


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
    philox.fill_normals(U(9), U(2), U(7), row)
    assert np.array_equal(row, full[2, 7])
    rows = np.empty((3, 12))
    philox.fill_member_normals(U(9), U(5), U(6), rows, np.empty(philox.WORK_SIZE))
    assert np.array_equal(rows, full[5, 6:9])
    # different seed / member / step: no shared values (ties have probability ~1e-14)
    other = philox.normals(10, np.arange(6), 0, 10, 12)
    assert not np.isin(other, full).any()
    flat = full.ravel()
    assert np.unique(flat).size == flat.size


def test_normality_of_the_normals():
    """10^6 normals (1000 members x 250 steps x 4): moments within 5 standard errors of the
    normal's, KS distance within the 1e-4 level critical value.  Mean (SE 1/sqrt(n)) catches an
    angle that does not cover the whole turn (theta in [0, pi): sin >= 0); variance (SE
    sqrt(2/n)) a wrong radius factor (sqrt(-log u) instead of sqrt(-2 log u)) or a uniform on
    (0, 1/2]; skewness (SE sqrt(6/n)) and excess kurtosis (SE sqrt(24/n)) a distorted radius;
    KS the shape, e.g. the angle and the radius taken from the same word.  A constant angle
    offset or sign leaves the law normal: test_compiled_normals_equal_reference_bitwise's
    comparison with libm catches those."""
    z = philox.normals(2026, np.arange(1000), 0, 250, 4).ravel()
    n = z.size
    assert n == 10**6
    mean = z.mean()
    c = z - mean
    var = (c * c).mean()
    skew = (c**3).mean() / var**1.5
    kurt = (c**4).mean() / var**2 - 3.0
    assert abs(mean) < 5.0 / math.sqrt(n)
    assert abs(var - 1.0) < 5.0 * math.sqrt(2.0 / n)
    assert abs(skew) < 5.0 * math.sqrt(6.0 / n)
    assert abs(kurt) < 5.0 * math.sqrt(24.0 / n)
    zs = np.sort(z)
    cdf = 0.5 * np.array([math.erfc(-x / math.sqrt(2.0)) for x in zs[::10]])
    k = np.arange(0, n, 10)
    ks = max(np.max((k + 1) / n - cdf), np.max(cdf - k / n))
    # Kolmogorov: P(sqrt(n) D > 2.23) ~ 1e-4 (the 10-subsampled CDF adds at most 10/n)
    assert ks < 2.23 / math.sqrt(n) + 10.0 / n
    # pairs within a block are uncorrelated (Box-Muller's cos/sin pair, words 0-1 vs 2-3)
    blocks = z.reshape(-1, 4)
    for a, b in ((0, 1), (0, 2), (1, 3)):
        assert abs(np.mean(blocks[:, a] * blocks[:, b])) < 5.0 / math.sqrt(blocks.shape[0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 2**64},
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
    assert philox.NOISE_SCHEME.endswith("/v1")
