"""Model core: equilibrium, relaxation rates, Hessian spectra (theory.md sections 3-8)."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from dlnsim.particles import Model, Schatten, SeparableEnergy

# (d, N, p, beta): includes N = inf, every one with lambda_relative > 0
GRID = [
    (2, 10, 2.0, 5.0),
    (3, math.inf, 2.0, 1.0),
    (5, 3, 1.5, 2.0),
    (10, 1000, 3.0, 0.7),
    (4, 2, 1.0, 0.5),
    (2, math.inf, 4.0, 3.0),
    (7, 25, 0.9, 10.0),
]


def test_source_example_equilibrium():
    """theory.md section 5: (d, N, p, beta) = (2, 10, 2, 5) gives sigma_* = 0.3."""
    assert Model(2, 10, 5.0, Schatten(2)).equilibrium() == pytest.approx(0.3, rel=1e-15)


@pytest.mark.parametrize("d,N,p,beta", GRID)
def test_equilibrium_solves_the_equation(d, N, p, beta):
    model = Model(d, N, beta, Schatten(p))
    s = model.equilibrium()
    c = (d - 1) / (2 * beta) if N == math.inf else (d - 1) * (N - 1) / (2 * N * beta)
    assert s**p == pytest.approx(c, rel=1e-14)
    # the velocity vanishes there, in every chart, relative to its natural scale lambda_u * x
    scale = model.relaxation_rates()[0]
    for coords in ("sigma", "rho") + (() if N == math.inf else ("u",)):
        x = {"sigma": s, "rho": math.log(s), "u": s ** (1 / N) if N != math.inf else 0}[coords]
        v = model.velocity(np.full(d, x), coords)
        assert np.max(np.abs(v)) <= 1e-12 * scale * max(1.0, abs(x))


@pytest.mark.parametrize("d,N,p,beta", GRID)
def test_relaxation_rates_formula_vs_jacobian(d, N, p, beta):
    model = Model(d, N, beta, Schatten(p))
    closed = model.relaxation_rates()
    numeric = model.relaxation_rates(method="jacobian")
    np.testing.assert_allclose(numeric, closed, rtol=1e-6)
    # Schatten closed forms of theory.md section 7
    s = model.equilibrium()
    if N == math.inf:
        expect = (p * s**p, s**p * (p - d / (3 * (d - 1))))  # lambda/N as N -> inf
    else:
        expect = (
            p * N * s ** (p - 2 / N),
            N * s ** (p - 2 / N) * (p - d * (N + 1) / (3 * N * (d - 1))),
        )
    np.testing.assert_allclose(closed, expect, rtol=1e-12)


def test_rescaled_rates_are_rates_per_tau():
    model = Model(3, 8, 2.0, Schatten(2))
    t_rates = np.array(model.relaxation_rates())
    tau_rates = np.array(model.relaxation_rates(rescaled=True))
    np.testing.assert_allclose(tau_rates, t_rates / 8, rtol=1e-14)


def test_separable_energy_root_finder_matches_closed_form():
    quad = SeparableEnergy(lambda s: 0.5 * s**2, lambda s: s, lambda s: np.ones_like(s))
    for d, N, beta in [(3, 4, 2.0), (6, math.inf, 0.3), (2, 1, 1.0)]:
        a = Model(d, N, beta, quad)
        b = Model(d, N, beta, Schatten(2))
        if b.entropic_force > 0:
            assert a.equilibrium() == pytest.approx(b.equilibrium(), rel=1e-13)
            np.testing.assert_allclose(a.relaxation_rates(), b.relaxation_rates(), rtol=1e-12)
    # a non-power energy: e(s) = cosh(s) - 1, s sinh(s) = c solved by the bracketed root-finder
    cosh = SeparableEnergy(lambda s: np.cosh(s) - 1, np.sinh, np.cosh, name="cosh")
    model = Model(4, 6, 0.8, cosh)
    s = model.equilibrium()
    assert s * math.sinh(s) == pytest.approx(model.entropic_force, rel=1e-13)
    np.testing.assert_allclose(
        model.relaxation_rates(), model.relaxation_rates(method="jacobian"), rtol=1e-6
    )


@pytest.mark.parametrize(
    "d,N,p,beta", [(2, 10, 2.0, 5.0), (3, 2, 1.0, 1.0), (5, math.inf, 2.0, 2.0), (4, 6, 3.0, 0.5)]
)
def test_minimizer_has_equal_singular_values(d, N, p, beta):
    """Theorem 1.2: minimizing F_beta from random starts lands on sigma_* (1, ..., 1)."""
    model = Model(d, N, beta, Schatten(p))
    s = model.equilibrium()
    rng = np.random.default_rng(7)
    for _ in range(5):
        rho0 = rng.normal(math.log(s), 1.0, size=d)
        res = minimize(
            lambda r: float(model.free_energy(np.exp(r))),
            rho0,
            jac=lambda r: model.free_energy_gradient(r, "rho"),
            method="BFGS",
            options={"gtol": 1e-12, "maxiter": 10_000},
        )
        np.testing.assert_allclose(np.exp(res.x), s, rtol=1e-6)


def test_chain_rule_between_charts():
    model = Model(4, 5, 1.3, Schatten(1.7))
    sigma = np.array([2.0, 1.1, 0.7, 0.2])
    g_sigma = model.free_energy_gradient(sigma, "sigma")
    g_u = model.free_energy_gradient(sigma ** (1 / 5), "u")
    g_rho = model.free_energy_gradient(np.log(sigma), "rho")
    np.testing.assert_allclose(g_sigma * sigma, g_rho, rtol=1e-13)
    np.testing.assert_allclose(g_u * sigma ** (1 / 5) / 5, g_rho, rtol=1e-13)
    # velocities are the same vector field in every chart
    v_sigma = model.velocity(sigma, "sigma")
    v_u = model.velocity(sigma ** (1 / 5), "u")
    np.testing.assert_allclose(v_u, v_sigma * sigma ** (1 / 5 - 1) / 5, rtol=1e-12)
    # theory.md section 4: dsigma/dt = -m dF/dsigma and du/dt = -(1/N) dF/du
    np.testing.assert_allclose(v_sigma, -5 * sigma ** (2 - 2 / 5) * g_sigma, rtol=1e-13)
    np.testing.assert_allclose(v_u, -g_u / 5, rtol=1e-13)
    # Hessians by finite differences of the gradient, in u
    u = sigma ** (1 / 5)
    hess = model.free_energy_hessian(u, "u")
    h = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        fd = (model.free_energy_gradient(u + e, "u") - model.free_energy_gradient(u - e, "u")) / (
            2 * h
        )
        np.testing.assert_allclose(fd, hess[:, i], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "d,N", [(2, 3), (2, 10), (3, 2), (3, 3), (5, 2), (6, math.inf), (2, math.inf)]
)
def test_euclidean_entropy_is_strictly_concave(d, N):
    """theory.md section 8: Hessian of S_N in sigma negative definite (N >= 3 or d >= 3)."""
    model = Model(d, N, 1.0, Schatten(2))
    rng = np.random.default_rng(11)
    sigma = np.exp(rng.uniform(-3, 3, size=(400, d)))
    sigma[:50, 1] = sigma[:50, 0] * (1 + 1e-9)  # near-coincident singular values
    top = model.hessian_spectrum(sigma, "euclidean")[..., -1]
    assert np.all(top < 0)


def test_d2_n2_entropy_has_a_zero_eigenvalue():
    """S_2 = 1/2 log(sigma_1 + sigma_2): eigenvalues -1/(s1 + s2)^2 and 0."""
    model = Model(2, 2, 1.0, Schatten(2))
    sigma = np.array([[3.0, 0.5], [1.0, 1.0], [0.2, 0.01]])
    spec = model.hessian_spectrum(sigma, "euclidean")
    total = sigma.sum(axis=-1)
    np.testing.assert_allclose(spec[:, 0], -1 / total**2, rtol=1e-12)
    assert np.all(np.abs(spec[:, 1]) <= 1e-14 / total**2)


@pytest.mark.parametrize("d,N", [(2, 2), (2, 10), (3, 4), (5, 7), (8, 100)])
def test_riemannian_hessian_is_indefinite_on_the_diagonal(d, N):
    """theory.md section 8 at u = 1: uniform curvature -(N-1)(d-1)/2, relative
    (N-1)((N+1)d/3 - (d-1))/2 ((d-1)-fold), as bilinear forms in u; the operator is 1/N of it.
    At u = s^{1/N} 1 the Hessian in u scales like 1/u^2."""
    model = Model(d, N, 1.0, Schatten(2))
    uniform = -(N - 1) * (d - 1) / 2
    relative = (N - 1) * ((N + 1) * d / 3 - (d - 1)) / 2
    expect = np.sort([uniform] + [relative] * (d - 1))
    for s in (1.0, 0.3, 7.0):
        spec = model.hessian_spectrum(np.full(d, s), "riemannian")
        u2 = s ** (2 / N)
        np.testing.assert_allclose(spec * N * u2, expect, rtol=1e-12)
        assert spec[0] < 0 < spec[-1]


def test_infinite_depth_riemannian_hessian_is_rho_hessian():
    model = Model(4, math.inf, 1.0, Schatten(2))
    spec = model.hessian_spectrum(np.full(4, 2.0), "riemannian")
    # S_inf in rho at equal values: uniform 0, relative d psi_inf''(0)/2 = d/6
    np.testing.assert_allclose(spec, [0, 4 / 6, 4 / 6, 4 / 6], atol=1e-14)
