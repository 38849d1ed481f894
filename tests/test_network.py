"""The matrix level: energies, A_X, F_beta, the matrix flow and a real network's factors
(theory.md section 12)."""

import math
import warnings

import mpmath as mp
import numpy as np
import pytest

from dlnsim import network as nw
from dlnsim.network.factors import _step_gradients
from dlnsim.particles import Model, Schatten, SeparableEnergy, gradient_flow


def _haar(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _fd_gradient(f, x, h=1e-6):
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        p = np.zeros_like(x)
        p[idx] = h
        out[idx] = (f(x + p) - f(x - p)) / (2 * h)
    return out


def _energies(rng, d):
    target = rng.standard_normal((d, d))
    mask = rng.random((d, d)) < 0.6
    ops = rng.standard_normal((3, d, d))
    return {
        "completion": nw.Completion(mask, target),
        "regression": nw.Regression(target),
        "sensing": nw.Sensing(ops, rng.standard_normal(3)),
        "spectral": nw.Spectral(Schatten(3), weight=0.7),
        "sum": nw.Completion(mask, target) + nw.Spectral(Schatten(2), weight=1e-3),
    }


@pytest.mark.parametrize("name", ["completion", "regression", "sensing", "spectral", "sum"])
def test_energy_gradients_match_finite_differences_and_vectorize(name):
    rng = np.random.default_rng(3)
    d = 4
    energy = _energies(rng, d)[name]
    xs = rng.standard_normal((2, d, d))
    grads = energy.gradient(xs)
    values = energy.energy(xs)
    for k in range(2):  # the batched result is the per-member result
        assert values[k] == pytest.approx(float(energy(xs[k])), rel=1e-14)
        fd = _fd_gradient(lambda x: float(energy.energy(x)), xs[k])
        np.testing.assert_allclose(grads[k], fd, atol=2e-7 * max(1.0, np.abs(fd).max()))


def test_energy_closed_forms_and_sum():
    rng = np.random.default_rng(4)
    d = 3
    x = rng.standard_normal((d, d))
    target = rng.standard_normal((d, d))
    mask = np.eye(d, dtype=bool)
    assert nw.Completion(mask, target)(x) == pytest.approx(
        0.5 * np.sum((np.diag(x) - np.diag(target)) ** 2)
    )
    assert nw.Regression(target)(x) == pytest.approx(0.5 * np.sum((x - target) ** 2))
    ops = rng.standard_normal((2, d, d))
    y = np.array([0.3, -1.0])
    inner = np.array([np.trace(a.T @ x) for a in ops])
    assert nw.Sensing(ops, y)(x) == pytest.approx(0.5 * np.sum((inner - y) ** 2))
    s = np.linalg.svd(x, compute_uv=False)
    assert nw.Spectral(Schatten(2), weight=1e-3)(x) == pytest.approx(1e-3 * np.sum(s**2) / 2)
    total = nw.Regression(target) + nw.Completion(mask, target) + nw.Spectral(Schatten(1))
    assert isinstance(total, nw.SumEnergy) and len(total.terms) == 3
    assert total(x) == pytest.approx(
        nw.Regression(target)(x) + nw.Completion(mask, target)(x) + np.sum(s)
    )


def test_kernel_matches_mpmath_and_is_stable_where_singular_values_meet():
    """K_ij = (x^2 - y^2)/(x^(2/N) - y^(2/N)) at 40 digits, including x = y(1 + 1e-12)."""
    m = nw.MatrixModel(3, 3, math.inf, nw.Regression(np.eye(3)))
    for sigma in ([2.0, 1.0, 0.5], [1.0 + 1e-12, 1.0, 1.0 - 1e-9], [1e3, 1.0, 1e-3]):
        k = m.kernel(np.array(sigma))
        with mp.workdps(40):
            for i in range(3):
                for j in range(3):
                    x, y = mp.mpf(sigma[i]), mp.mpf(sigma[j])
                    if x == y:
                        ref = 3 * x ** (mp.mpf(4) / 3)
                    else:
                        ref = (x**2 - y**2) / (x ** (mp.mpf(2) / 3) - y ** (mp.mpf(2) / 3))
                    assert k[i, j] == pytest.approx(float(ref), rel=1e-13)
    # N = inf, rescaled: the logarithmic mean of sigma_i^2 and sigma_j^2
    minf = nw.MatrixModel(2, math.inf, math.inf, nw.Regression(np.eye(2)))
    k = minf.kernel(np.array([2.0, 0.5]))
    assert k[0, 1] == pytest.approx((4.0 - 0.25) / math.log(16.0), rel=1e-14)
    assert k[0, 0] == pytest.approx(4.0, rel=1e-14)


def test_operator_is_the_derivative_of_the_product_map():
    """A_X(P) = sum_j dX/dW_j [grad_{W_j} <P, X>] at balanced factors (theory.md 12.4), by
    central differences of the product W_N...W_1: an independent route to A_X."""
    rng = np.random.default_rng(5)
    d = 4
    x = rng.standard_normal((d, d))
    p = rng.standard_normal((d, d))
    for depth in (1, 2, 3, 5):
        m = nw.MatrixModel(d, depth, math.inf, nw.Regression(np.zeros((d, d))))
        w = nw.balanced_factors(x, depth, seed=7)
        np.testing.assert_allclose(nw.product(w), x, atol=1e-13)
        assert nw.balance_defect(w) < 1e-13
        g = _step_gradients(w, p)
        eps = 1e-6
        fd = (nw.product(w + eps * g) - nw.product(w - eps * g)) / (2 * eps)
        np.testing.assert_allclose(m.operator(x, p), fd, atol=1e-7 * np.abs(fd).max())
    # A_X^{1/2} twice is A_X, and A_X^{-1} inverts it
    m = nw.MatrixModel(d, 3, math.inf, nw.Regression(np.zeros((d, d))))
    half = m.operator(x, m.operator(x, p, power=0.5), power=0.5)
    np.testing.assert_allclose(half, m.operator(x, p), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.operator(x, m.operator(x, p), power=-1), p, atol=1e-12)


def test_log_det_operator_against_dense_matrix():
    """log det A_X = sum_ij log K_ij (theory.md 12.1) from the dense d^2 x d^2 matrix."""
    rng = np.random.default_rng(6)
    d = 3
    x = rng.standard_normal((d, d))
    m = nw.MatrixModel(d, 3, math.inf, nw.Regression(np.zeros((d, d))))
    dense = np.stack([m.operator(x, e.reshape(d, d)).ravel() for e in np.eye(d * d)], axis=1)
    k = m.kernel(np.linalg.svd(x, compute_uv=False))
    assert np.linalg.slogdet(dense)[1] == pytest.approx(np.sum(np.log(k)), rel=1e-12)


@pytest.mark.parametrize("depth,beta", [(1, 2.0), (3, 2.0), (4, math.inf)])
def test_free_energy_gradient_and_velocity(depth, beta):
    rng = np.random.default_rng(8)
    d = 3
    energy = _energies(rng, d)["sum"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the confining term: no warning
        m = nw.MatrixModel(d, depth, beta, energy)
    x = rng.standard_normal((d, d))
    fd = _fd_gradient(lambda z: float(m.free_energy(z)), x)
    np.testing.assert_allclose(m.gradient(x), fd, atol=1e-7)
    v = m.velocity(x)
    np.testing.assert_allclose(v, -m.operator(x, m.gradient(x)), atol=1e-12)
    if depth == 1:  # A_X = identity: the velocity is -grad F
        np.testing.assert_allclose(v, -m.gradient(x), atol=1e-13)
    if depth > 1:  # the entropy is the particles layer's S_N
        s = np.linalg.svd(x, compute_uv=False)
        pm = Model(d, depth, 1.0, Schatten(2))
        assert float(m.entropy(x)) == pytest.approx(float(pm.entropy(s)), rel=1e-14)
    np.testing.assert_allclose(m.velocity(x, rescaled=True), v / depth, rtol=1e-14)


def test_spectral_flow_equals_particles_flow_and_vectors_stay_fixed():
    """theory.md 12.3: for spectral E the singular vectors stay fixed and sigma follows
    particles.gradient_flow (an independent integrator, in rho) to 1e-10, with two singular
    values 1e-9 apart (the stable K)."""
    rng = np.random.default_rng(0)
    d = 4
    u, v = _haar(rng, d), _haar(rng, d)
    s0 = np.array([2.0, 1.0 + 1e-9, 1.0, 0.3])
    x0 = (u * s0) @ v.T
    times = np.linspace(0.0, 2.0, 5)
    for depth, beta in ((3, 2.0), (5, math.inf)):
        m = nw.MatrixModel(d, depth, beta, nw.Spectral(Schatten(2)))
        ds = nw.gradient_flow(m, x0, times)
        ref = gradient_flow(Model(d, depth, beta if beta < math.inf else 1e300, Schatten(2)),
                            s0, times)  # fmt: skip
        assert ds.X.dims == ("time", "row", "col")
        assert np.abs(ds.sigma.values - ref.sigma.values).max() < 1e-10
        frame = np.einsum("ji,tjk,kl->til", u, ds.X.values, v)
        off = frame * (1 - np.eye(d))
        assert np.abs(off).max() < 1e-12
        np.testing.assert_allclose(ds.free_energy.values, ref.free_energy.values, rtol=1e-9)


def test_flow_dataset_layout_members_and_errors():
    rng = np.random.default_rng(9)
    d = 3
    target = rng.standard_normal((d, d))
    mask = rng.random((d, d)) < 0.7
    m = nw.MatrixModel(d, 2, math.inf, nw.Completion(mask, target))
    x0 = 0.1 * rng.standard_normal((2, d, d))
    ds = nw.gradient_flow(m, x0, [0.0, 1.0, 5.0])
    assert ds.X.dims == ("member", "time", "row", "col")
    assert ds.sigma.dims == ("member", "time", "particle")
    assert "Roy and Vetterli" in ds.effective_rank.attrs["definition"]
    assert "Roy and Vetterli" in ds.attrs["effective_rank_definition"]
    x = ds.X.values
    unobs = ~mask
    ref = np.sqrt(np.sum(np.where(unobs, x - target, 0) ** 2, axis=(-2, -1)))
    ref /= np.sqrt(np.sum(np.where(unobs, target, 0) ** 2))
    np.testing.assert_allclose(ds.error_unobserved.values, ref, rtol=1e-12)
    # the energy decreases along the beta = inf flow
    assert np.all(np.diff(ds.energy.values, axis=-1) < 0)
    single = nw.gradient_flow(m, x0[1], [0.0, 1.0, 5.0])
    np.testing.assert_allclose(single.X.values, x[1], rtol=1e-12, atol=1e-14)


def test_effective_rank_closed_forms():
    assert nw.effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert nw.effective_rank(np.array([2.0, 2.0, 2.0, 0.0])) == pytest.approx(3.0)
    p = np.array([0.5, 0.25, 0.25])
    assert nw.effective_rank(4 * p) == pytest.approx(math.exp(-np.sum(p * np.log(p))))


IMPLICIT_FLOW_BITS = """
import hashlib, numpy as np
from dlnsim import network as nw
from dlnsim.particles import Schatten
model = nw.MatrixModel(12, 3, 10.0, nw.Spectral(Schatten(2)))
x0 = np.eye(12) + 0.3 * np.random.default_rng(5).standard_normal((12, 12))
for method in ("Radau", "BDF"):
    ds = nw.gradient_flow(model, x0, np.array([0.0, 0.5, 1.0]), method=method)
    print(method, hashlib.sha256(ds.X.values.tobytes()).hexdigest())
"""


def test_implicit_flow_bits_do_not_depend_on_the_blas_threads(outputs_by_blas_threads):
    """Radau and BDF factor their Newton matrices with LAPACK, whose last bits depend on the
    number of threads OpenBLAS started with (a Dask worker starts with one); the matrix flow
    runs inside ``particles.flow.one_blas_thread`` as the particle flow does, so two fresh
    processes started with 1 and 2 BLAS threads give the same bits.  Planted (the pin removed):
    both methods' digests differ at this d = 12 (not at d = 3); on a one-core machine both runs
    have one thread and the test cannot tell."""
    digests = outputs_by_blas_threads(IMPLICIT_FLOW_BITS)
    assert digests[0] == digests[1]


def test_unconfined_completion_warns_and_drifts_like_a_power_of_t():
    """theory.md 12.7: with one unobserved entry and beta finite, F_beta is unbounded below and
    sigma_1 grows like t^(N/2), sigma_1^(2/N) ~ 4 c t with c = (N-1)(d-1)/(2 N beta).
    Measured (d = 2, N = 3, beta = 1): local exponent 1.510 on [100, 1000] (prediction 1.5),
    sigma_1^(2/N) / (4 c t) = 0.998 at t = 1000."""
    rng = np.random.default_rng(1)
    d, depth, beta = 2, 3, 1.0
    target = rng.standard_normal((d, d))
    mask = np.ones((d, d), dtype=bool)
    mask[0, 1] = False
    with pytest.warns(nw.UnconfinedWarning, match="unbounded below.*drifts off.*confining"):
        m = nw.MatrixModel(d, depth, beta, nw.Completion(mask, target))
    ds = nw.gradient_flow(m, target, [0.0, 100.0, 1000.0], method="Radau", rtol=1e-8, atol=1e-10)
    s1 = ds.sigma.values[:, 0]
    power = math.log(s1[2] / s1[1]) / math.log(10.0)
    c = (depth - 1) * (d - 1) / (2 * depth * beta)
    assert abs(power - depth / 2) < 0.03, power
    assert s1[2] ** (2 / depth) / (4 * c * 1000.0) == pytest.approx(1.0, abs=0.01)
    # the drift is along the unobserved entry
    assert abs(ds.X.values[2, 0, 1]) == pytest.approx(s1[2], rel=1e-3)
    # no warning with a confining term, at beta = inf, or at N = 1 (S_1 = 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nw.MatrixModel(d, depth, beta, nw.Completion(mask, target) + nw.Spectral(Schatten(2), 1e-3))
        nw.MatrixModel(d, depth, math.inf, nw.Completion(mask, target))
        nw.MatrixModel(d, 1, beta, nw.Completion(mask, target))
        nw.MatrixModel(d, depth, beta, nw.Completion(np.ones((d, d), bool), target))
    # a non-confining spectral term does not help; sensing with a null space is unconfined
    flat = SeparableEnergy(np.tanh, lambda s: 1 / np.cosh(s) ** 2, lambda s: 0 * s)
    with pytest.warns(nw.UnconfinedWarning):
        nw.MatrixModel(d, depth, beta, nw.Completion(mask, target) + nw.Spectral(flat))
    ops = rng.standard_normal((3, d, d))
    with pytest.warns(nw.UnconfinedWarning):
        m = nw.MatrixModel(d, depth, beta, nw.Sensing(ops, np.zeros(3)))
    assert np.abs(np.einsum("kij,ij->k", ops, m.unconfined)).max() < 1e-12


def test_gradient_descent_on_factors_converges_to_the_flow_with_order_one():
    """theory.md 12.4: GD with step lr after k steps ~ the beta = inf flow at t = k lr, error
    O(lr).  Completion, d = 4, N = 3, up to t = 2."""
    rng = np.random.default_rng(11)
    d, depth = 4, 3
    target = rng.standard_normal((d, d))
    mask = rng.random((d, d)) < 0.6
    energy = nw.Completion(mask, target)
    x0 = 0.5 * _haar(rng, d)
    times = np.linspace(0.0, 2.0, 5)
    flow = nw.gradient_flow(nw.MatrixModel(d, depth, math.inf, energy), x0, times)
    errors = []
    for lr in (2e-3, 1e-3, 5e-4):
        steps = round(2.0 / lr)
        ds = nw.train_factors(nw.balanced_factors(x0, depth, seed=2), energy, lr, steps,
                              save_every=steps // 4)  # fmt: skip
        np.testing.assert_allclose(ds.time.values, times, rtol=1e-12)
        errors.append(float(np.abs(ds.X.values - flow.X.values).max()))
        assert ds.balance_defect.values.max() < 50 * lr  # balance is kept to O(lr)
        assert np.all(np.diff(ds.loss.values) < 0)
    ratios = errors[0] / errors[1], errors[1] / errors[2]
    assert all(1.8 < r < 2.2 for r in ratios), (errors, ratios)


def test_balanced_factors_with_haar_rotations():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 5))
    w = nw.balanced_factors(x, 4, seed=3)
    assert w.shape == (4, 5, 5)
    np.testing.assert_allclose(nw.product(w), x, atol=1e-13)
    assert nw.balance_defect(w) < 1e-13
    u = np.linalg.svd(x, compute_uv=False) ** 0.25
    for wj in w:
        np.testing.assert_allclose(np.linalg.svd(wj, compute_uv=False), u, rtol=1e-12)
    np.testing.assert_array_equal(w, nw.balanced_factors(x, 4, seed=3))
    assert not np.allclose(w, nw.balanced_factors(x, 4, seed=4))


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: nw.Completion(np.ones((2, 3), bool), np.zeros((2, 3))), "mask"),
        (lambda: nw.Completion(np.ones((2, 2)), np.zeros((2, 2))), "mask"),
        (lambda: nw.Completion(np.ones((2, 2), bool), np.zeros((3, 3))), "target"),
        (lambda: nw.Regression(np.full((2, 2), np.nan)), "target"),
        (lambda: nw.Sensing(np.zeros((2, 2, 2)), np.zeros(3)), "measurements"),
        (lambda: nw.Sensing(np.zeros((2, 2)), np.zeros(2)), "operators"),
        (lambda: nw.Spectral("Schatten"), "energy"),
        (lambda: nw.Spectral(Schatten(2), weight=-1.0), "weight"),
        (lambda: nw.MatrixModel(0, 2, 1.0, nw.Regression(np.eye(2))), "width"),
        (lambda: nw.MatrixModel(2, 0, 1.0, nw.Regression(np.eye(2))), "depth"),
        (lambda: nw.MatrixModel(2, 2, -1.0, nw.Regression(np.eye(2))), "beta"),
        (lambda: nw.MatrixModel(2, 2, 1.0, "E"), "energy"),
        (lambda: nw.MatrixModel(3, 2, 1.0, nw.Regression(np.eye(2))), "energy"),
        (lambda: nw.MatrixModel(2, 2, 1.0, nw.Regression(np.eye(2))).velocity(np.eye(3)), "X"),
        (lambda: nw.gradient_flow("m", np.eye(2), [0, 1]), "model"),
        (lambda: nw.gradient_flow(_regression(), np.eye(2), [1, 0]), "times"),
        (lambda: nw.gradient_flow(_regression(), np.eye(2), [0, 1], method="x"), "method"),
        (lambda: nw.gradient_flow(_regression(), np.eye(2), [0, 1], rtol=0), "rtol"),
        (lambda: nw.balanced_factors(np.eye(2), 0), "depth"),
        (lambda: nw.balanced_factors(np.eye(2), 2, seed=-1), "seed"),
        (lambda: nw.balanced_factors(np.ones((2, 3)), 2), "X0"),
        (lambda: nw.train_factors(np.ones((2, 2)), _regression().energy, 0.1, 1), "factors"),
        (lambda: nw.train_factors(np.ones((2, 2, 2)), "E", 0.1, 1), "energy"),
        (lambda: nw.train_factors(np.ones((2, 2, 2)), _regression().energy, 0, 1), "lr"),
        (lambda: nw.train_factors(np.ones((2, 2, 2)), _regression().energy, 0.1, 0), "steps"),
        (lambda: nw.effective_rank(np.array([-1.0])), "sigma"),
    ],
)
def test_bad_arguments_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^bad {name}="):
        call()


def _regression():
    return nw.MatrixModel(2, 2, 1.0, nw.Regression(np.eye(2)))
