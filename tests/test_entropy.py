"""psi_N and the entropy S_N against mpmath and closed forms (theory.md section 2)."""

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnsim.particles import Model, Schatten, log_kernel, psi
from dlnsim.particles.entropy import entropy, entropy_gradient, entropy_hessian

XS = [0.0, 1e-12, 1e-8, 1e-5, 1e-4, 1e-3, 0.1, 1.0, 10.0, 50.0, 300.0, 700.0]
# extra points at the branch switches of the implementation
XS_EXTRA = [0.4999999, 0.5, 0.5000001, 0.9999999, 1.0000001, 2.0, 25.0]
DEPTHS = [2, 3, 10, 1000, math.inf]


def _exact(x: float, depth: float, k: int) -> mp.mpf:
    """psi_N^{(k)}(x) at 50 digits from the defining formulas (limits at x = 0)."""
    with mp.workdps(50):
        x = mp.mpf(x)
        if depth == math.inf:
            if x == 0:
                return [mp.mpf(0), mp.mpf(0), mp.mpf(1) / 3][k]
            return [mp.log(mp.sinh(x) / x), mp.coth(x) - 1 / x, 1 / x**2 - mp.csch(x) ** 2][k]
        n = mp.mpf(depth)
        if x == 0:
            return [mp.log(n), mp.mpf(0), (1 - 1 / n**2) / 3][k]
        return [
            mp.log(mp.sinh(x) / mp.sinh(x / n)),
            mp.coth(x) - mp.coth(x / n) / n,
            mp.csch(x / n) ** 2 / n**2 - mp.csch(x) ** 2,
        ][k]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_psi_matches_mpmath(depth, k):
    xs = np.array(XS + XS_EXTRA)
    for sign in (1.0, -1.0):
        got = psi(sign * xs, depth, k)
        assert np.all(np.isfinite(got))
        for x, value in zip(sign * xs, got, strict=True):
            exact = _exact(float(x), depth, k)
            if exact == 0:
                assert value == 0.0, (x, value)
            else:
                assert abs(value - exact) / abs(exact) <= 1e-13, (depth, k, x, value, exact)


def test_psi_parity_and_constants():
    x = np.linspace(-30, 30, 601)
    for depth in DEPTHS:
        assert np.array_equal(psi(x, depth), psi(-x, depth))
        assert np.array_equal(psi(x, depth, 1), -psi(-x, depth, 1))
    assert psi(0.0, 7) == pytest.approx(math.log(7), rel=1e-15)
    assert np.all(psi(x, 1) == 0) and np.all(psi(x, 1, 2) == 0)


def test_no_overflow_far_out():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for depth in DEPTHS:
            for k in range(3):
                assert np.all(np.isfinite(psi(np.array([-1e4, -800.0, 800.0, 1e4]), depth, k)))


@settings(max_examples=60, deadline=None)
@given(st.floats(-40, 40), st.sampled_from([2, 3, 5, 50, math.inf]))
def test_psi_derivatives_are_consistent(x, depth):
    """Central differences of psi and psi' agree with psi' and psi'' (O(h^2) error)."""
    h = 1e-4
    d1 = (psi(x + h, depth) - psi(x - h, depth)) / (2 * h)
    d2 = (psi(x + h, depth, 1) - psi(x - h, depth, 1)) / (2 * h)
    assert d1 == pytest.approx(psi(x, depth, 1), abs=1e-7)
    assert d2 == pytest.approx(psi(x, depth, 2), abs=1e-7)


@pytest.mark.parametrize("depth", [2, 3, 7])
def test_entropy_is_half_sum_of_log_kernel(depth):
    """S_N = 1/2 sum_{i<j} log k_N with k_N the quotient of theory.md section 1 (well-separated)."""
    rng = np.random.default_rng(1)
    sigma = np.sort(rng.uniform(0.2, 3.0, size=(5, 4)), axis=-1)[:, ::-1]
    naive = np.zeros(5)
    for i in range(4):
        for j in range(i + 1, 4):
            x, y = sigma[:, i], sigma[:, j]
            naive += 0.5 * np.log((x**2 - y**2) / (x ** (2 / depth) - y ** (2 / depth)))
    model = Model(4, depth, 1.0, Schatten(2))
    np.testing.assert_allclose(model.entropy(sigma), naive, rtol=1e-12)


def test_entropy_closed_forms():
    sigma = np.array([[2.0, 0.5, 0.25], [1.0, 1.0, 1.0]])
    # N = 1: no microstates
    assert np.all(Model(3, 1, 1.0, Schatten(2)).entropy(sigma) == 0)
    # N = 2: S_2 = 1/2 sum_{i<j} log(sigma_i + sigma_j)
    s2 = 0.5 * sum(np.log(sigma[:, i] + sigma[:, j]) for i in range(3) for j in range(i + 1, 3))
    np.testing.assert_allclose(Model(3, 2, 1.0, Schatten(2)).entropy(sigma), s2, rtol=1e-14)
    # N = inf: k is the logarithmic mean of sigma_i^2 and sigma_j^2
    x, y = 2.0, 0.5
    logmean = (x**2 - y**2) / (2 * math.log(x) - 2 * math.log(y))
    assert Model(2, math.inf, 1.0, Schatten(2)).entropy([x, y]) == pytest.approx(
        0.5 * math.log(logmean), rel=1e-14
    )
    assert float(log_kernel(math.log(x), math.log(y), math.inf)) == pytest.approx(
        math.log(logmean), rel=1e-14
    )


def test_entropy_derivatives_against_finite_differences():
    rng = np.random.default_rng(2)
    rho = rng.normal(size=6)
    for depth in (2, 5, math.inf):
        g = entropy_gradient(rho, depth)
        hess = entropy_hessian(rho, depth)
        h = 1e-5
        for i in range(6):
            e = np.zeros(6)
            e[i] = h
            fd = (entropy(rho + e, depth) - entropy(rho - e, depth)) / (2 * h)
            assert fd == pytest.approx(g[i], abs=1e-8)
            fd2 = (entropy_gradient(rho + e, depth) - entropy_gradient(rho - e, depth)) / (2 * h)
            np.testing.assert_allclose(fd2, hess[:, i], atol=1e-8)
        np.testing.assert_allclose(hess, hess.T, atol=0)


def test_batched_shapes():
    model = Model(3, 4, 2.0, Schatten(1.5))
    sigma = np.random.default_rng(3).uniform(0.1, 2, size=(2, 5, 3))
    assert model.entropy(sigma).shape == (2, 5)
    assert model.free_energy(sigma).shape == (2, 5)
    assert model.entropy_hessian(sigma, "u").shape == (2, 5, 3, 3)
    np.testing.assert_allclose(model.entropy(sigma)[1, 2], model.entropy(sigma[1, 2]))
