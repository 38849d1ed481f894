"""Exactness tests of the random-matrix samplers in ``particles.rmt``.

Statistical tolerances: every check uses a fixed seed.  Moment checks allow 4 standard errors
(SE computed from the *exact* variance of the target law), KS checks require p > 0.01.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dlnsim.particles.rmt import (
    gaussian_beta_ensemble,
    ginibre_singular_values,
    independent_samples,
)


# ----------------------------------------------------------------------------------------------
# Gaussian beta-ensemble
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "b"),
    [(1, 0.7), (2, 1.0), (5, 2.0), (10, 4.0), (30, 2.5), (40, 1.0), (41, 1.0), (80, 0.5)],
)
def test_gbe_second_moment(n: int, b: float) -> None:
    r"""E[sum l^2] = 2n/b + n(n-1), Var = 8n/b^2 + 4n(n-1)/b, derived from the *target law*.

    With ``Z(t) = ∫ |Δ(l)|^b exp(-t sum l^2) dl``, the substitution ``l -> l/sqrt(t)`` gives
    ``Z(t) = t^{-D/2} Z(1)``, ``D = n + b n(n-1)/2`` (degree of homogeneity).  At ``t = b/4``:
    ``E[sum l^2] = -(log Z)'(t) = D/(2t) = 2n/b + n(n-1)`` and
    ``Var = (log Z)''(t) = D/(2t^2) = 8n/b^2 + 4n(n-1)/b``.
    n = 40 / 41 straddle the switch between the dense and the tridiagonal eigen-solver.
    """
    size = 4000
    x = gaussian_beta_ensemble(n, b, size, np.random.default_rng(1234 + n))
    assert x.shape == (size, n) and x.dtype == np.float64
    assert np.all(np.diff(x, axis=1) >= 0)
    q = np.sum(x * x, axis=1)
    mean = 2 * n / b + n * (n - 1)
    var = 8 * n / b**2 + 4 * n * (n - 1) / b
    se = math.sqrt(var / size)
    # 4 SE: a false alarm has probability 6e-5 for a correct sampler.
    assert abs(q.mean() - mean) < 4 * se, (q.mean(), mean, se)
    # Sample variance: its SE for these near-Gaussian sums is ~ var * sqrt(2/size) (<= 2.3% of
    # var); allow 15% to cover the excess kurtosis of the chi-square parts at small n.
    assert abs(q.var() / var - 1) < 0.15


@pytest.mark.parametrize("b", [0.5, 1.0, 2.0, 4.0, 7.3])
def test_gbe_n2_spacing_law(b: float) -> None:
    r"""n = 2: with x = l_2 - l_1 > 0 and y = l_1 + l_2, ``l_1^2 + l_2^2 = (x^2 + y^2)/2``, so the
    density factorises as ``x^b e^{-b x^2/8} * e^{-b y^2/8}``: ``b x^2/8 ~ Gamma((b+1)/2)`` and
    ``y ~ N(0, 4/b)``, independent.  (For b = 2 this is the exact GUE 2x2 spacing law
    ``∝ s^2 e^{-s^2/4}``.)"""
    x = gaussian_beta_ensemble(2, b, 20000, np.random.default_rng(int(10 * b)))
    spacing = x[:, 1] - x[:, 0]
    total = x[:, 0] + x[:, 1]
    assert stats.kstest(b * spacing**2 / 8, stats.gamma((b + 1) / 2).cdf).pvalue > 0.01
    assert stats.kstest(total, stats.norm(scale=math.sqrt(4 / b)).cdf).pvalue > 0.01
    # independence of spacing and centre of mass: |corr| < 4 / sqrt(size) (4 SE under H0)
    assert abs(np.corrcoef(spacing, np.abs(total))[0, 1]) < 4 / math.sqrt(20000)


def test_gbe_b2_spacing_density_histogram() -> None:
    """b = 2, n = 2: histogram of the spacing against p(s) = s^2 e^{-s^2/4} / (2 sqrt(pi))."""
    x = gaussian_beta_ensemble(2, 2.0, 50000, np.random.default_rng(7))
    s = x[:, 1] - x[:, 0]
    edges = np.linspace(0.0, 6.0, 25)
    counts, _ = np.histogram(s, bins=edges)
    grid = np.linspace(0.0, 6.0, 2401)
    dens = grid**2 * np.exp(-(grid**2) / 4) / (2 * math.sqrt(math.pi))
    cdf = np.concatenate(([0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))))
    expected = s.size * np.diff(np.interp(edges, grid, cdf))
    chi2 = np.sum((counts - expected) ** 2 / expected)
    # chi-square with 24 bins (23 dof): p > 0.01 means chi2 < 41.6
    assert chi2 < stats.chi2(23).ppf(0.99), chi2


def test_gbe_centre_of_mass_law() -> None:
    """Any n: ``sum l_i ~ N(0, 2n/b)`` (the mean decouples from |Δ|, which is translation
    invariant); tested with KS on both solver paths."""
    for n, b in [(12, 1.5), (60, 3.0)]:
        x = gaussian_beta_ensemble(n, b, 5000, np.random.default_rng(n))
        z = x.sum(axis=1) / math.sqrt(2 * n / b)
        assert stats.kstest(z, "norm").pvalue > 0.01


def test_gbe_reproducible_and_semicircle_edge() -> None:
    a = gaussian_beta_ensemble(50, 2.0, 10, np.random.default_rng(3))
    b = gaussian_beta_ensemble(50, 2.0, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    # semicircle radius 2 sqrt(n) for this normalisation (any b); the largest eigenvalue of
    # n = 200 lies within 10% of it (Tracy-Widom fluctuations are O(n^{-1/6}) = 0.4)
    x = gaussian_beta_ensemble(200, 1.0, 20, np.random.default_rng(4))
    assert abs(np.median(x[:, -1]) / (2 * math.sqrt(200)) - 1) < 0.1


# ----------------------------------------------------------------------------------------------
# Ginibre
# ----------------------------------------------------------------------------------------------
def test_ginibre_d1_half_normal() -> None:
    variance = 2.5
    x = ginibre_singular_values(1, 20000, np.random.default_rng(11), variance=variance)
    assert x.shape == (20000, 1)
    assert stats.kstest(x[:, 0], stats.halfnorm(scale=math.sqrt(variance)).cdf).pvalue > 0.01


def test_ginibre_frobenius_chi_square() -> None:
    """sum_i sigma_i^2 = ||G||_F^2 = variance * chi^2_{d^2}; rows are sorted descending."""
    d, variance = 4, 0.3
    x = ginibre_singular_values(d, 10000, np.random.default_rng(12), variance=variance)
    assert x.shape == (10000, d)
    assert np.all(np.diff(x, axis=1) <= 0) and np.all(x >= 0)
    assert stats.kstest(np.sum(x * x, axis=1) / variance, stats.chi2(d * d).cdf).pvalue > 0.01


def test_ginibre_default_variance_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default entry variance 1: the same draws as variance=1.0, and sum sigma^2 = ||G||_F^2 has
    mean d^2 (chi^2_{d^2}).  Power: with 20000 matrices (d = 3) the SE of the mean of
    ||G||_F^2 is sqrt(2 * 9 / 20000) = 0.03 (0.33%), so 4 SE detects a 1.3% error in the default
    variance (e.g. a default of 1/2 or of 2 is off by 50-100%)."""
    import dlnsim.particles.rmt as rmt

    d, n = 3, 20000
    default = ginibre_singular_values(d, n, np.random.default_rng(5))
    np.testing.assert_array_equal(
        default, ginibre_singular_values(d, n, np.random.default_rng(5), variance=1.0)
    )
    frob = np.sum(default**2, axis=1)
    assert abs(frob.mean() - d * d) < 4 * math.sqrt(2 * d * d / n)
    assert stats.kstest(frob, stats.chi2(d * d).cdf).pvalue > 0.01
    full = ginibre_singular_values(3, 50, np.random.default_rng(5))
    monkeypatch.setattr(rmt, "_CHUNK_ENTRIES", 20)  # force several chunks
    chunked = ginibre_singular_values(3, 50, np.random.default_rng(5))
    np.testing.assert_allclose(full, chunked, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# independent (no-interaction) samples
# ----------------------------------------------------------------------------------------------
def test_independent_gaussian_ks() -> None:
    x = independent_samples(
        lambda t: np.exp(-0.5 * t * t), (-8.0, 8.0), 10, 5000, np.random.default_rng(21)
    )
    assert x.shape == (5000, 10)
    assert np.all(np.diff(x, axis=1) >= 0)
    assert stats.kstest(x.ravel(), "norm").pvalue > 0.01


def test_independent_piecewise_linear_is_exact_and_zero_regions() -> None:
    """f(x) = max(x, 0) on [-1, 1] is piecewise linear on the grid (0 is a node), so the sampler
    is exact: CDF x^2 on [0, 1], no mass below 0."""
    x = independent_samples(
        lambda t: np.maximum(t, 0.0),
        (-1.0, 1.0),
        5,
        8000,
        np.random.default_rng(22),
        grid_points=201,
    )
    assert np.all(x >= 0) and np.all(x <= 1)
    assert stats.kstest(x.ravel(), lambda t: np.clip(t, 0, 1) ** 2).pvalue > 0.01


def test_independent_coarse_grid_accuracy() -> None:
    """f = e^{-x} on [0, 3] with 31 nodes (h = 0.1): the sampler is exact for the piecewise-linear
    interpolant f_h, and f_h obeys the stated CDF bound (hi-lo) h^2 max|f''| / (4 ∫f)."""
    lo, hi, m = 0.0, 3.0, 31
    x = independent_samples(
        lambda t: np.exp(-t), (lo, hi), 1, 400000, np.random.default_rng(23), grid_points=m
    )
    nodes = np.linspace(lo, hi, m)
    fine = np.linspace(lo, hi, 300001)
    f_h = np.interp(fine, nodes, np.exp(-nodes))  # exact piecewise-linear interpolant
    w = np.full(fine.size, fine[1] - fine[0])
    w[[0, -1]] *= 0.5  # trapezoid weights: exact up to O(1e-10) for this fine grid
    z_h = np.sum(w * f_h)
    mean_h = np.sum(w * fine * f_h) / z_h
    var_h = np.sum(w * fine**2 * f_h) / z_h - mean_h**2
    # 4 SE of the sample mean around the exact mean of the law actually sampled
    assert abs(x.mean() - mean_h) < 4 * math.sqrt(var_h / x.size)
    # Power: SE = sqrt(var_h / 4e5) = 1.3e-3 (0.16% of the mean), so 4 SE sees a 0.6% bias of the
    # sampler, e.g. sampling the nodes' step function instead of the linear interpolant.
    # The sampler against the true law: its documented CDF error bound (hi - lo) h^2 max|f''| /
    # (4 int f) moves the mean by at most (hi - lo) times it, |E_h x - E x| = |int (F_h - F)|.
    true_mean = (1 - 4 * math.exp(-3)) / (1 - math.exp(-3))
    bound = (hi - lo) * 0.1**2 * 1.0 / (4 * (1 - math.exp(-3)))
    assert abs(x.mean() - true_mean) <= (hi - lo) * bound + 4 * math.sqrt(var_h / x.size)


# ----------------------------------------------------------------------------------------------
# argument validation
# ----------------------------------------------------------------------------------------------
def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _gauss(t: np.ndarray) -> np.ndarray:
    return np.exp(-t * t)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: gaussian_beta_ensemble(0, 1.0, 5, _rng()), "n"),
        (lambda: gaussian_beta_ensemble(2.5, 1.0, 5, _rng()), "n"),
        (lambda: gaussian_beta_ensemble(3, 0.0, 5, _rng()), "b"),
        (lambda: gaussian_beta_ensemble(3, -1.0, 5, _rng()), "b"),
        (lambda: gaussian_beta_ensemble(3, math.nan, 5, _rng()), "b"),
        (lambda: gaussian_beta_ensemble(3, True, 5, _rng()), "b"),
        (lambda: gaussian_beta_ensemble(3, 1.0, 0, _rng()), "size"),
        (lambda: gaussian_beta_ensemble(3, 1.0, 5, 42), "rng"),
        (lambda: ginibre_singular_values(0, 5, _rng()), "d"),
        (lambda: ginibre_singular_values(2, -1, _rng()), "size"),
        (lambda: ginibre_singular_values(2, 5, _rng(), variance=0.0), "variance"),
        (lambda: ginibre_singular_values(2, 5, None), "rng"),
        (lambda: independent_samples(3.0, (0, 1), 2, 2, _rng()), "density"),
        (lambda: independent_samples(_gauss, (1, 0), 2, 2, _rng()), "support"),
        (lambda: independent_samples(_gauss, (0, math.inf), 2, 2, _rng()), "support"),
        (lambda: independent_samples(_gauss, "ab", 2, 2, _rng()), "support"),
        (lambda: independent_samples(_gauss, (0, 1, 2), 2, 2, _rng()), "support"),
        (lambda: independent_samples(lambda t: -t, (0, 1), 2, 2, _rng()), "density"),
        (lambda: independent_samples(lambda t: 0 * t, (0, 1), 2, 2, _rng()), "density"),
        (lambda: independent_samples(lambda t: 1.0, (0, 1), 2, 2, _rng()), "density"),
        (lambda: independent_samples(lambda t: 1 / t, (0, 1), 2, 2, _rng()), "density"),
        (lambda: independent_samples(_gauss, (0, 1), 0, 2, _rng()), "n"),
        (lambda: independent_samples(_gauss, (0, 1), 2, 0, _rng()), "size"),
        (lambda: independent_samples(_gauss, (0, 1), 2, 2, _rng(), grid_points=2), "grid_points"),
    ],
)
def test_bad_arguments(call, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad {name}="):
        call()
