"""Random-matrix baselines: the matrix variant and Dyson Brownian motion on the particle engine.

Statistical tolerances.  Two-sample KS tests (``scipy.stats.ks_2samp``) compare ``M = 2000``
independent simulated states (the final state of each member; members are independent by
construction) with ``100000`` exact samples (``particles.rmt``).  At ``p = 0.01`` the KS test
resolves a CDF difference of ``1.63 sqrt(1/2000 + 1/100000) = 0.037``.  The scheme is first
order weak, so the stationary law it samples is ``O(dt)`` from the exact one.  ``dt`` is chosen
such that this bias, measured offline as the KS distance of 42000 simulated states (2000
members x 21 times) from 400000 exact ones, is at most ~0.006, i.e. at the sampling-noise
floor of that measurement and a sixth of the resolution here: ``dt = 0.01`` for Dyson ``b = 1``
(at ``dt = 0.04`` the smallest spacing was off by D = 0.019), ``0.02`` for ``b = 2, 4`` (D <=
0.009 already at ``dt = 0.04``: stronger repulsion keeps the pairs away from the scale
``sqrt(dt)`` at which the implicit step distorts the pair force), and ``0.005`` for the matrix
variant (D = 0.031 / 0.014 / 0.008 for the smallest spacing at ``dt = 0.04 / 0.01 / 0.0025``).
Runs last ``t = 8``: from the ordered, centred starts the slowest relaxation is ``exp(-t)``
(variance of the centre of mass for Dyson, the OU rate 1 of ``u`` for the matrix variant),
``3e-4``, far below the resolution.  Seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import roots_genlaguerre
from scipy.stats import ks_2samp

from dlnsim.particles import (
    DysonModel,
    MatrixVariant,
    Model,
    Schatten,
    langevin_ensemble,
    proximal,
    simulate_baseline_members,
)
from dlnsim.particles.langevin import simulate_members
from dlnsim.particles.proximal import NEWTON_RTOL, prox, prox_reference
from dlnsim.particles.rmt import gaussian_beta_ensemble, ginibre_singular_values

KS_MEMBERS = 2000
KS_EXACT = 100_000
KS_TIME = 8.0
P_MIN = 0.01


def ordered(x: np.ndarray) -> bool:
    """Every row strictly decreasing along the last axis."""
    return bool(np.all(np.diff(x, axis=-1) < 0))


def statistics(x: np.ndarray) -> dict[str, np.ndarray]:
    """Rows sorted descending: smallest, largest, central and smallest nearest-neighbour gap."""
    gaps = -np.diff(x, axis=-1)
    c = x.shape[-1] // 2
    return {
        "smallest": x[:, -1],
        "largest": x[:, 0],
        "central spacing": gaps[:, c - 1],
        "smallest spacing": gaps.min(axis=-1),
    }


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("depth", [1, 2, 3, 7, math.inf])
def test_matrix_variant_orbit_term_and_stationary_density(depth):
    """``O = sum log|u_i^2 - u_j^2|`` and ``exp(-beta F)`` is the linear-repulsion density."""
    rng = np.random.default_rng(3)
    model = MatrixVariant(4, depth, 1.7, Schatten(2.0))
    sigma = np.sort(rng.uniform(0.2, 2.0, size=(50, 4)), axis=1)[:, ::-1]
    rho = np.log(sigma)
    iu, ju = np.triu_indices(4, 1)
    if depth == math.inf:
        direct = np.sum(np.log(np.abs(rho[:, iu] - rho[:, ju])), axis=1)
        np.testing.assert_allclose(model.orbit_entropy(sigma), direct, rtol=1e-13)
        return
    u = sigma ** (1.0 / depth)
    direct = np.sum(np.log(np.abs(u[:, iu] ** 2 - u[:, ju] ** 2)), axis=1)
    np.testing.assert_allclose(model.orbit_entropy(sigma), direct, rtol=1e-12, atol=1e-13)
    # exp(-beta F) = const * exp(-beta E) prod sqrt(|u_i^2 - u_j^2| |u_i^2N - u_j^2N|)  (du)
    target = -model.beta * model.energy(sigma) + 0.5 * np.sum(
        np.log(np.abs(u[:, iu] ** 2 - u[:, ju] ** 2))
        + np.log(np.abs(u[:, iu] ** (2 * depth) - u[:, ju] ** (2 * depth))),
        axis=1,
    )
    diff = -model.beta * model.free_energy(sigma) - target
    np.testing.assert_allclose(diff, diff[0], atol=1e-11)


@pytest.mark.parametrize("depth", [1, 3, math.inf])
def test_matrix_variant_derivatives(depth):
    """Gradient and Hessian of ``F`` (with the orbit term) against central differences."""
    model = MatrixVariant(3, depth, 2.0, Schatten(1.5))
    sigma = np.array([1.7, 1.1, 0.6])
    coords = "rho" if depth == math.inf else "u"
    x = np.log(sigma) if coords == "rho" else sigma ** (1.0 / depth)

    def f(y):
        s = np.exp(y) if coords == "rho" else y**depth
        return float(model.free_energy(s))

    h = 1e-6
    eye = np.eye(3)
    fd = np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in eye])
    grad = model.free_energy_gradient(x, coords)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)
    fd2 = np.array(
        [
            (
                model.free_energy_gradient(x + h * e, coords)
                - model.free_energy_gradient(x - h * e, coords)
            )
            / (2 * h)
            for e in eye
        ]
    )
    np.testing.assert_allclose(model.free_energy_hessian(x, coords), fd2, rtol=1e-6, atol=1e-6)
    # N = 1: no DLN entropy, only the orbit term
    if depth == 1:
        np.testing.assert_allclose(model.entropy(sigma), model.orbit_entropy(sigma), rtol=1e-14)


def test_matrix_variant_describe_and_refusals():
    base = Model(3, 2, 1.5, Schatten(2.0))
    model = MatrixVariant.from_model(base)
    assert model == MatrixVariant(3, 2, 1.5, Schatten(2.0)) and isinstance(model, Model)
    assert model.describe() == {"system": "matrix_variant", **base.describe()}
    assert model.free_energy(np.array([1.0, 1.0, 0.5])) == np.inf  # collision: O = -inf
    with pytest.raises(ValueError, match="bad model="):
        model.equilibrium()
    with pytest.raises(ValueError, match="bad model="):
        model.relaxation_rates()
    with pytest.raises(ValueError, match="bad model="):
        MatrixVariant.from_model("not a model")


def test_dyson_model_potential():
    model = DysonModel(4, 2.0)
    x = np.array([1.5, 0.2, -0.4, -2.0])
    iu, ju = np.triu_indices(4, 1)
    phi = np.sum(x**2) / 4 - np.sum(np.log(x[iu] - x[ju]))
    assert model.free_energy(x) == pytest.approx(phi, rel=1e-14)
    h = 1e-6
    fd = [
        (model.free_energy(x + h * e) - model.free_energy(x - h * e)) / (2 * h) for e in np.eye(4)
    ]
    np.testing.assert_allclose(model.free_energy_gradient(x), fd, rtol=1e-8)
    assert model.describe()["system"] == "dyson_brownian_motion" and model.beta == 2.0
    assert model.valid_states(
        np.array([[1.0, -1.0, -2.0, -3.0], [np.nan, 0, -1, -2]])
    ).tolist() == [
        True,
        False,
    ]


# ---------------------------------------------------------------------- the proximal step
@pytest.mark.parametrize("mirror", [False, True])
def test_prox_adversarial_inputs(mirror):
    """Reversed, colliding, far and heavily crossed inputs at tiny to huge ``h kappa``: the
    minimiser is strictly in ``D`` and solves ``z - y = h kappa grad B(z)`` to the tolerance,
    or, where rounding limits the gradient, is a Newton fixed point to rounding."""
    rng = np.random.default_rng(11)
    d = 6
    y = np.concatenate(
        [
            rng.standard_normal((200, d)) * 5.0,  # arbitrary order, crossings everywhere
            np.tile(np.arange(d, dtype=float), (20, 1)),  # ascending: fully reversed
            np.zeros((20, d)),  # all collide
            np.full((20, d), -3.0),  # all collide at a negative value
            1e6 + rng.standard_normal((20, d)),  # far away, relatively tiny spread
        ]
    )
    x = np.tile(np.linspace(3.0, 0.5, d), (y.shape[0], 1))  # previous state (in D)
    idx = np.arange(d)
    for hk in (1e-6, 1e-2, 10.0):
        z, iters, converged = prox(y, x, hk, mirror)
        assert ordered(z) and converged.all()
        if mirror:
            assert np.all(z[:, -2] > np.abs(z[:, -1]))
        off = ~np.eye(d, dtype=bool)
        inv = np.where(off, 1.0 / np.where(off, z[:, :, None] - z[:, None, :], 1.0), 0.0)
        force, lap, diag = inv.sum(-1), -(inv**2), (inv**2).sum(-1)
        if mirror:
            inv_s = np.where(off, 1.0 / np.where(off, z[:, :, None] + z[:, None, :], 1.0), 0.0)
            force, lap, diag = force + inv_s.sum(-1), lap + inv_s**2, diag + (inv_s**2).sum(-1)
        lap[:, idx, idx] = diag
        g = z - y - hk * force
        s = np.maximum(np.maximum(np.abs(z).max(1), np.abs(y).max(1)), math.sqrt(hk))
        p = np.linalg.solve(np.eye(d) + hk * lap, g[:, :, None])[:, :, 0]
        small_gradient = np.abs(g).max(1) <= 10 * NEWTON_RTOL * s
        newton_fixed = np.abs(p).max(1) <= 40 * np.finfo(float).eps * s
        assert np.all(small_gradient | newton_fixed)
        if hk >= 1e-2:  # the rounding floor matters only for the tiny barrier
            assert np.all(small_gradient[:200] | (np.abs(p[:200]).max(1) <= 1e-14 * s[:200]))
        assert iters.max() <= 40  # adversarial: up to ~30; 2-4 on average in simulations


def _prox_inputs(rng: np.random.Generator, d: int) -> np.ndarray:
    """The adversarial points of ``test_prox_adversarial_inputs`` at width ``d``."""
    return np.concatenate(
        [
            rng.standard_normal((60, d)) * 5.0,  # arbitrary order, crossings everywhere
            np.tile(np.arange(d, dtype=float), (5, 1)),  # ascending: fully reversed
            np.zeros((5, d)),  # all collide
            np.full((5, d), -3.0),
            1e6 + rng.standard_normal((5, d)),  # far away, relatively tiny spread
        ]
    )


@pytest.mark.parametrize("mirror", [False, True])
def test_compiled_prox_matches_numpy_reference(mirror):
    """The compiled ``prox`` (row by row, Cholesky, fixed-order sums) against the batched numpy
    ``prox_reference`` (LAPACK) on the adversarial inputs, d = 1, 2, 3, 16, tiny to huge
    ``h kappa``: both converge on every row, the minimisers agree to 1e-12 of the row's scale
    (measured: <= 2.1e-16), every row is strictly in ``D``, the iteration counts are equal on
    >= 97% of the rows and never differ by more than 1 (measured: all equal; on other inputs
    ~1 row in 1000 differs by 1, where the last gradient test sits at the tolerance and the
    rounding of LAPACK vs Cholesky decides it).  Each row's bits do not depend on the batch:
    solved alone it gives the same bits.  Catches a wrong start rule, line search or Hessian
    (planted: the mirror curvature dropped from the Hessian; the Armijo constant 1e-4 -> 0.5;
    the start with the higher objective chosen)."""
    rng = np.random.default_rng(12)
    agree = total = 0
    for d in (1, 2, 3, 16):
        y = _prox_inputs(rng, d)
        x = np.tile(np.linspace(3.0, 0.5, d), (y.shape[0], 1))
        for hk in (1e-6, 1e-2, 10.0):
            z, iters, conv = prox(y, x, hk, mirror)
            z0, iters0, conv0 = prox_reference(y, x, hk, mirror)
            assert conv.all() and conv0.all(), (d, hk)
            scale = np.maximum(np.maximum(np.abs(z0).max(1), np.abs(y).max(1)), math.sqrt(hk))
            assert np.all(np.abs(z - z0).max(1) <= 1e-12 * scale), (d, hk)
            assert ordered(z)
            if mirror and d > 1:
                assert np.all(z[:, -2] > np.abs(z[:, -1]))
            assert np.abs(iters - iters0).max() <= 1, (d, hk)
            agree += int((iters == iters0).sum())
            total += iters.size
            for k in (0, 7, 61, 72):  # batch independence
                alone = prox(y[k : k + 1], x[k : k + 1], hk, mirror)
                assert np.array_equal(alone[0][0], z[k]) and alone[1][0] == iters[k]
    assert agree >= 0.97 * total, (agree, total)


@pytest.mark.parametrize("mirror", [False, True])
def test_compiled_metropolis_terms_match_lapack(mirror):
    """``grad B`` and ``log det(I + h kappa L)`` of the Metropolis terms (compiled Cholesky)
    against ``_pair_terms`` and ``numpy.linalg.slogdet``: the force bitwise (same sums in the
    same order), the log-determinant to 1e-11 relative (LAPACK's LU vs Cholesky rounding)."""
    rng = np.random.default_rng(13)
    for d in (2, 5, 16):
        x = np.sort(rng.standard_normal((40, d)) * 3.0, axis=1)[:, ::-1]
        if mirror:
            x = np.sort(np.abs(x), axis=1)[:, ::-1]
        x = np.ascontiguousarray(x)
        for hk in (1e-4, 0.1, 10.0):
            force, lap = proximal._pair_terms(x, mirror)
            _, want = np.linalg.slogdet(np.eye(d) + hk * lap)
            got_force, got = np.empty_like(x), np.empty(x.shape[0])
            proximal._force_logdet_rows(x, hk, mirror, got_force, got)
            assert np.array_equal(got_force, force)
            assert np.allclose(got, want, rtol=1e-11, atol=1e-13), (d, hk)


# ---------------------------------------------------------------------- ordering
ORDER_CASES = [
    ("dyson b=1", DysonModel(6, 1.0), 0.5),
    ("dyson b=2", DysonModel(6, 2.0), 0.5),
    ("dyson b=4", DysonModel(6, 4.0), 0.5),
    ("dyson b=0.5", DysonModel(6, 0.5), 0.5),  # the exact process collides; the scheme never
    # matrix variant with an energy linear in u (Schatten(2/N): e = N u^2 / 2), stable for dt < 2
    ("matrix N=1", MatrixVariant(6, 1, 1.0, Schatten(2.0)), 0.5),
    ("matrix N=3", MatrixVariant(6, 3, 1.0, Schatten(2.0 / 3.0)), 0.5),
    ("matrix N=inf", MatrixVariant(6, math.inf, 2.0, Schatten(0.5)), 0.5),
]


@pytest.mark.parametrize(("name", "system", "dt"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_ordering_preserved_long_runs(name, system, dt):
    """400 members, 400 large steps (noise per step comparable to the spacings): strictly
    ordered at every step, no failure, every Newton solve converged."""
    members = 400
    rng = np.random.default_rng(5)
    if isinstance(system, DysonModel):
        start = np.sort(rng.standard_normal((members, 6)), axis=1)[:, ::-1]
    else:
        start = np.exp(np.sort(rng.standard_normal((members, 6)), axis=1)[:, ::-1])
    times = dt * np.arange(1, 401)
    block = simulate_baseline_members(system, start, np.arange(members), times, dt, 42)
    assert ordered(block.sigma)
    assert np.all(np.isnan(block.failed_time)) and np.all(np.isfinite(block.sigma))
    assert np.all(block.newton_unconverged == 0) and np.all(block.steps == 400)
    assert block.newton_max.max() <= 40
    if isinstance(system, MatrixVariant) and not system.infinite:
        assert np.all(block.sigma > 0) and block.reflections.sum() > 0
    else:
        assert block.reflections.sum() == 0


def test_colliding_start_of_matrix_variant_is_separated():
    """A matrix-variant start with equal singular values (allowed, like Model) is separated by
    the first step; T = 0 too."""
    system = MatrixVariant(4, 2, 1.0, Schatten(2.0))
    start = np.ones((3, 4))
    for temperature in (None, 0.0):
        block = simulate_baseline_members(
            system, start, [0, 1, 2], [0.01, 0.5], 0.01, 1, temperature=temperature
        )
        assert ordered(block.sigma)


# ---------------------------------------------------------------------- deterministic limits
def test_dyson_zero_temperature_converges_to_hermite_zeros():
    """At T = 0 the equilibrium l_i / 2 = sum_j 1/(l_i - l_j) is sqrt(2) x (zeros of H_n), an
    exact fixed point of the split step; the flow contracts at rate >= 1/2."""
    n = 5
    system = DysonModel(n, 2.0)
    start = np.array([[0.2, 0.1, 0.0, -0.1, -0.2]])
    block = simulate_baseline_members(system, start, [0], [80.0], 0.1, 0, temperature=0.0)
    zeros = np.sort(np.polynomial.hermite.hermroots([0] * n + [1]))[::-1] * math.sqrt(2.0)
    np.testing.assert_allclose(block.sigma[0, -1], zeros, atol=1e-11)


def test_matrix_variant_zero_temperature_laguerre():
    """N = 1, E = |X|^2/2 at T = 0: the smallest u decays to 0 and the others solve
    sum_j 1/(w_i - w_j) + 1/w_i = beta/2 (w = u^2), i.e. w = r/beta with r the zeros of the
    generalized Laguerre polynomial L_{d-1}^{(1)}."""
    d, beta = 4, 2.0
    system = MatrixVariant(d, 1, beta, Schatten(2.0))
    block = simulate_baseline_members(
        system, [[1.0, 0.9, 0.8, 0.7]], [0], [60.0], 0.1, 0, temperature=0.0
    )
    r, _ = roots_genlaguerre(d - 1, 1)
    np.testing.assert_allclose(
        block.sigma[0, -1, :-1], np.sqrt(np.sort(r)[::-1] / beta), rtol=1e-10
    )
    assert 0.0 < block.sigma[0, -1, -1] < 1e-15


# ---------------------------------------------------------------------- engine contract
def test_bitwise_independent_of_blocking_and_time_split():
    system = MatrixVariant(4, 3, 1.0, Schatten(2.0 / 3.0))
    rng = np.random.default_rng(2)
    start = np.exp(np.sort(rng.standard_normal((10, 4)), axis=1)[:, ::-1])
    ids = np.arange(100, 110)
    times = np.array([0.0, 0.5, 1.0])  # step 1/16 exactly: both runs have the same grid
    whole = simulate_baseline_members(system, start, ids, times, 0.0625, 9)
    perm = np.array([7, 2, 9, 0, 5, 1, 8, 3, 6, 4])
    shuffled = simulate_baseline_members(system, start[perm], ids[perm], times, 0.0625, 9)
    np.testing.assert_array_equal(shuffled.sigma, whole.sigma[perm])
    np.testing.assert_array_equal(shuffled.newton_iterations, whole.newton_iterations[perm])
    for part in (slice(0, 3), slice(3, 4), slice(4, 10)):
        alone = simulate_baseline_members(system, start[part], ids[part], times, 0.0625, 9)
        np.testing.assert_array_equal(alone.sigma, whole.sigma[part])
        np.testing.assert_array_equal(alone.reflections, whole.reflections[part])
    last = simulate_baseline_members(system, start, ids, [1.0], 0.0625, 9)
    np.testing.assert_array_equal(last.sigma[:, 0], whole.sigma[:, -1])
    np.testing.assert_array_equal(whole.sigma[:, 0], np.sort(start, axis=1)[:, ::-1])
    # rescaled time tau = N t: the same steps in u (h_tau / N = h_t exactly here)
    tau = simulate_baseline_members(system, start, ids, 3 * times, 3 * 0.0625, 9, rescaled=True)
    np.testing.assert_array_equal(tau.sigma, whole.sigma)


def test_failure_is_isolated():
    """A member whose energy force overflows (sigma = 1e200 at N = 3: e'(sigma) sigma = inf) is
    NaN from its first step on, with last_finite its start.  One started at sigma = 27, where the
    explicit u^5 step is unstable (h e''(u) >> 2), is thrown about by it until its Newton system
    becomes numerically singular: it fails too, NaN exactly from its failed_time on.  The well
    behaved member is bitwise what it is alone."""
    system = MatrixVariant(2, 3, 1.0, Schatten(2.0))
    good = np.array([[1.0, 0.5]])
    starts = np.vstack([good, [[1e200, 1e199]], [[27.0, 20.0]]])
    times = np.arange(1, 21) * 0.1
    both = simulate_baseline_members(system, starts, [0, 1, 2], times, 0.1, 4)
    alone = simulate_baseline_members(system, good, [0], times, 0.1, 4)
    np.testing.assert_array_equal(both.sigma[0], alone.sigma[0])
    assert np.isnan(both.failed_time[0]) and both.failed_time[1] == pytest.approx(0.1)
    np.testing.assert_allclose(both.last_finite[1], starts[1], rtol=1e-13)  # via u = sigma^(1/3)
    for k in (1, 2):
        gone = times >= both.failed_time[k] - 1e-12
        assert gone.any() and np.all(np.isnan(both.sigma[k, gone]))
        assert np.all(np.isfinite(both.sigma[k, ~gone])) and ordered(both.sigma[k, ~gone])
        assert np.all(np.isfinite(both.last_finite[k]))
    assert ordered(both.sigma[0])


# ---------------------------------------------------------------------- exact samplers
@pytest.fixture(scope="module")
def ks_pvalues() -> dict[str, float]:
    """Filled by the KS tests: p-values and z-scores (printed with -s for the report)."""
    out: dict[str, float] = {}
    yield out
    for key, value in sorted(out.items()):
        print(f"{key}: {value:.3f}")


def _ks(name: str, sim: np.ndarray, exact: np.ndarray, pvalues: dict[str, float]) -> None:
    for stat, values in statistics(sim).items():
        p = ks_2samp(values, statistics(exact)[stat]).pvalue
        pvalues[f"{name} {stat} KS p-value"] = p
        assert p > P_MIN, (name, stat, p)


@pytest.mark.slow
@pytest.mark.parametrize(("b", "dt"), [(1.0, 0.01), (2.0, 0.02), (4.0, 0.02)])
def test_dyson_stationary_law_matches_gaussian_beta_ensemble(b, dt, ks_pvalues):
    n = 4
    start = np.tile(np.array([3.0, 1.0, -1.0, -3.0]), (KS_MEMBERS, 1))
    block = simulate_baseline_members(
        DysonModel(n, b), start, np.arange(KS_MEMBERS), [KS_TIME], dt, 1000 + int(b)
    )
    sim = block.sigma[:, -1]
    assert ordered(sim) and np.all(block.newton_unconverged == 0)
    exact = gaussian_beta_ensemble(n, b, KS_EXACT, np.random.default_rng(7))[:, ::-1]
    _ks(f"dyson b={b:g}", sim, exact, ks_pvalues)
    # E sum l^2 = 2n/b + n(n-1), Var = 8n/b^2 + 4n(n-1)/b (Dumitriu-Edelman, exact): 4 standard
    # errors; the measured O(dt) bias is < 0.1 standard error here
    q = np.sum(sim**2, axis=1)
    se = math.sqrt((8 * n / b**2 + 4 * n * (n - 1) / b) / KS_MEMBERS)
    ks_pvalues[f"dyson b={b:g} sum l^2 z-score"] = (q.mean() - (2 * n / b + n * (n - 1))) / se
    assert abs(q.mean() - (2 * n / b + n * (n - 1))) < 4 * se


@pytest.mark.slow
def test_matrix_variant_n1_matches_ginibre_singular_values(ks_pvalues):
    d, beta, dt = 4, 1.0, 0.005
    system = MatrixVariant.from_model(Model(d, 1, beta, Schatten(2.0)))
    start = np.tile(np.array([2.0, 1.5, 1.0, 0.5]), (KS_MEMBERS, 1))
    block = simulate_baseline_members(system, start, np.arange(KS_MEMBERS), [KS_TIME], dt, 2024)
    sim = block.sigma[:, -1]
    assert ordered(sim) and np.all(block.newton_unconverged == 0)
    exact = ginibre_singular_values(d, KS_EXACT, np.random.default_rng(8), variance=1.0 / beta)
    _ks("matrix N=1", sim, exact, ks_pvalues)
    # E|X|_F^2 = d^2/beta, Var = 2 d^2/beta^2: 4 standard errors (the O(dt) bias, -0.35% at
    # dt = 0.005 (-0.68% measured at 0.01), is 0.4 standard error)
    q = np.sum(sim**2, axis=1)
    se = math.sqrt(2 * d * d / beta**2 / KS_MEMBERS)
    ks_pvalues["matrix N=1 sum sigma^2 z-score"] = (q.mean() - d * d / beta) / se
    assert abs(q.mean() - d * d / beta) < 4 * se


# ---------------------------------------------------------------------- the ensemble
ENSEMBLE_CASES = [
    ("dyson", DysonModel(3, 2.0), np.array([1.0, 0.0, -1.0])),
    ("matrix", MatrixVariant(3, 2, 1.0, Schatten(1.0)), np.array([1.0, 0.6, 0.3])),
]


@pytest.mark.parametrize(("name", "system", "start"), ENSEMBLE_CASES, ids=["dyson", "matrix"])
def test_langevin_ensemble_serial_and_chunked_bitwise(name, system, start):
    times = np.linspace(0.0, 1.0, 5)
    kw = dict(members=11, dt=0.01, seed=77, scheduler="serial", progress=False)
    one = langevin_ensemble(system, start, times, chunk_size=11, reductions="sigma", **kw)
    chunked = langevin_ensemble(system, start, times, chunk_size=4, reductions="sigma", **kw)
    for var in one.data_vars:
        assert np.array_equal(one[var].values, chunked[var].values, equal_nan=True), var
    block = simulate_baseline_members(
        system, np.tile(start, (11, 1)), np.arange(11), times, 0.01, 77
    )
    np.testing.assert_array_equal(one.sigma.values, block.sigma)
    np.testing.assert_array_equal(one.reflections.values, block.reflections)
    assert ordered(one.sigma.values) and int(one.failed.sum()) == 0
    assert one.attrs["system"] == system.describe()["system"]
    np.testing.assert_array_equal(one.free_energy.values, system.free_energy(one.sigma.values))
    if name == "dyson":
        assert one.sigma.attrs["long_name"] == "eigenvalue"
        assert np.any(one.sigma.values < 0) and np.all(np.isfinite(one.energy.values))
        np.testing.assert_allclose(one.energy.values, np.sum(one.sigma.values**2, -1) / 4)


@pytest.mark.slow
def test_langevin_ensemble_on_a_local_cluster(tmp_path):
    """Through Dask worker processes and a Zarr store: bitwise the serial result; resuming the
    store with the chamber Model instead of its matrix variant is refused (``system``)."""
    system = MatrixVariant(3, 2, 1.0, Schatten(1.0))
    start = np.array([1.0, 0.6, 0.3])
    times = np.linspace(0.0, 1.0, 5)
    kw = dict(members=8, dt=0.01, seed=5, chunk_size=3, progress=False)
    serial = langevin_ensemble(system, start, times, scheduler="serial", **kw)
    store = tmp_path / "mv.zarr"
    local = langevin_ensemble(system, start, times, scheduler="local", store=store, **kw)
    np.testing.assert_array_equal(local.sigma.values, serial.sigma.values)
    plain = Model(3, 2, 1.0, Schatten(1.0))
    with pytest.raises(ValueError, match="bad system="):
        langevin_ensemble(plain, start, times, scheduler="serial", store=store, resume=True, **kw)


# ---------------------------------------------------------------------- Metropolis adjustment
# Exact second moments (independent truth, no simulation): the N = 1 matrix variant with
# E = 1/2 sum sigma^2 at beta = 1 is the singular values of a 4 x 4 standard Gaussian matrix,
# E sum sigma^2 = E |G|_F^2 = d^2 = 16; Dyson at index b has the virial identity
# E[l . grad(b Phi)] = n (integration by parts against exp(-b Phi)), with
# l . grad Phi = sum l^2 / 2 - n (n - 1) / 2, so E sum l^2 = 2 n / b + n (n - 1) = 16 for n = 4,
# b = 2.
METROPOLIS_CASES = [
    (
        "matrix N=1",
        MatrixVariant(4, 1, 1.0, Schatten(2.0)),
        np.array([3.0, 2.0, 1.0, 0.5]),
        0.1,
        400,
    ),
    ("dyson b=2", DysonModel(4, 2.0), np.array([3.0, 1.0, -1.0, -3.0]), 0.5, 1600),
]


@pytest.mark.parametrize(
    ("name", "system", "start", "dt", "m"), METROPOLIS_CASES, ids=["matrix", "dyson"]
)
def test_metropolis_removes_the_time_step_bias(name, system, start, dt, m):
    """At a coarse ``dt`` the plain split step is visibly biased and the Metropolis-adjusted one
    is not.  Each member's time average over 20 states after a burn-in of 5 relaxation times
    is one independent sample; the standard error is over the ``m`` members."""
    exact = 16.0
    times = np.arange(5.0, 45.0, 2.0)
    starts = np.tile(start, (m, 1))
    z = {}
    for adjusted in (False, True):
        blk = simulate_baseline_members(
            system, starts, np.arange(m), times, dt, 3, metropolis=adjusted
        )
        per_member = (blk.sigma**2).sum(axis=-1).mean(axis=1)
        se = per_member.std(ddof=1) / math.sqrt(m)
        z[adjusted] = (per_member.mean() - exact) / se
        assert ordered(blk.sigma) and np.all(np.isnan(blk.failed_time))
        if adjusted:
            rate = blk.accepted / blk.steps
            assert np.all(blk.steps == blk.steps[0]) and 0.5 < rate.mean() < 1.0, rate.mean()
        else:
            np.testing.assert_array_equal(blk.accepted, blk.steps)
    assert abs(z[True]) < 4.0, z  # exact law: within 4 standard errors
    assert z[False] < -5.0, z  # the plain step's O(dt) bias, resolved by this test


def test_metropolis_through_the_ensemble():
    """``langevin_ensemble(metropolis=True)``: bitwise independent of the chunking, equal to the
    engine, ``accepted`` stored, the flag in the attrs and checked; refused for the chamber
    model and at zero temperature."""
    system, start = METROPOLIS_CASES[0][1:3]
    times = np.linspace(0.0, 1.0, 3)
    kw = dict(members=7, dt=0.05, seed=11, scheduler="serial", progress=False, metropolis=True)
    one = langevin_ensemble(system, start, times, chunk_size=7, **kw)
    chunked = langevin_ensemble(system, start, times, chunk_size=3, **kw)
    for var in one.data_vars:
        assert np.array_equal(one[var].values, chunked[var].values, equal_nan=True), var
    blk = simulate_baseline_members(
        system, np.tile(start, (7, 1)), np.arange(7), times, 0.05, 11, metropolis=True
    )
    np.testing.assert_array_equal(one.sigma.values, blk.sigma)
    np.testing.assert_array_equal(one.accepted.values, blk.accepted)
    assert one.attrs["metropolis"] == 1 and blk.accepted.sum() < blk.steps.sum()
    plain = langevin_ensemble(system, start, times, chunk_size=7, **{**kw, "metropolis": False})
    assert "accepted" not in plain and plain.attrs["metropolis"] == 0
    assert not np.array_equal(plain.sigma.values, one.sigma.values)
    with pytest.raises(ValueError, match="bad metropolis="):
        langevin_ensemble(Model(4, 1, 1.0, Schatten(2.0)), start, times, **kw)
    with pytest.raises(ValueError, match="bad metropolis="):
        langevin_ensemble(system, start, times, temperature=0.0, **kw)
    with pytest.raises(ValueError, match="bad metropolis="):
        simulate_baseline_members(system, start[None], [0], times, 0.05, 0, metropolis="yes")


# ---------------------------------------------------------------------- bad arguments
def test_bad_arguments():
    dyson = DysonModel(3, 2.0)
    ok = np.array([[1.0, 0.0, -1.0]])
    for b in (0, -1.0, math.nan, math.inf, "2"):
        with pytest.raises(ValueError, match="bad b="):
            DysonModel(3, b)
    with pytest.raises(ValueError, match="bad width="):
        DysonModel(0, 2.0)
    with pytest.raises(ValueError, match="bad beta="):
        MatrixVariant(3, 2, -1.0, Schatten(2.0))
    run = simulate_baseline_members
    for start in ([[0.0, 1.0, -1.0]], [[1.0, 1.0, -1.0]], [[1.0, 0.0, np.nan]], [[1.0, 0.0]]):
        with pytest.raises(ValueError, match="bad sigma0="):
            run(dyson, start, [0], [1.0], 0.1, 0)
        with pytest.raises(ValueError, match="bad sigma0="):
            langevin_ensemble(dyson, start[0], [1.0], 1, 0.1, 0, scheduler="serial")
    with pytest.raises(ValueError, match="bad sigma0="):
        run(dyson, ok[0], [0], [1.0], 0.1, 0)  # one member needs shape (1, d)
    with pytest.raises(ValueError, match="bad sigma0="):
        run(MatrixVariant(3, 2, 1.0, Schatten(2.0)), [[1.0, 0.5, -0.1]], [0], [1.0], 0.1, 0)
    with pytest.raises(ValueError, match="bad system="):
        run(Model(3, 2, 1.0, Schatten(2.0)), [[1.0, 0.5, 0.1]], [0], [1.0], 0.1, 0)
    with pytest.raises(ValueError, match="bad rescaled="):
        run(dyson, ok, [0], [1.0], 0.1, 0, rescaled=True)
    with pytest.raises(ValueError, match="bad dt="):
        run(dyson, ok, [0], [1.0], 0.0, 0)
    with pytest.raises(ValueError, match="bad temperature="):
        run(dyson, ok, [0], [1.0], 0.1, 0, temperature=-1.0)
    with pytest.raises(ValueError, match="bad members="):
        run(dyson, np.vstack([ok, ok]), [3, 3], [1.0], 0.1, 0)
    with pytest.raises(ValueError, match="bad seed="):
        run(dyson, ok, [0], [1.0], 0.1, -1)
    with pytest.raises(ValueError, match="bad times="):
        run(dyson, ok, [0], [1.0, 0.5], 0.1, 0)
    with pytest.raises(ValueError, match="bad model="):
        langevin_ensemble("dyson", ok[0], [1.0], 1, 0.1, 0, scheduler="serial")
    # the chamber engine's explicit steps would let the matrix variant's particles cross
    with pytest.raises(ValueError, match="bad model=.*MatrixVariant"):
        simulate_members(
            MatrixVariant(3, 2, 1.0, Schatten(2.0)), [[1.0, 0.5, 0.1]], [0], [1.0], 0.1, 0
        )
