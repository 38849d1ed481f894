"""The matrix Langevin equation of ``dlnsim.network`` (docs/theory.md section 12.5-12.6).

Exact truth used here.

* ``N = 1``, ``E = |X|_F^2 / 2``: ``X`` is stationary Gaussian with entry variance ``T`` (an
  Ornstein-Uhlenbeck process), sampled exactly by ``particles.rmt.ginibre_singular_values``.
* For spectral ``E`` the stationary singular values follow the matrix variant of section 10
  (``particles.baselines.MatrixVariant``, run by ``particles.langevin_ensemble`` with its own
  Metropolis-adjusted scheme: an independent code path).
* The virial identity.  At ``T = 1/beta`` the stationary density w.r.t. ``dX`` is
  ``exp(-beta E(X)) J(X)`` with ``J = e^{S_N} det(A_X)^{-1/2}`` homogeneous of degree
  ``gamma = -(1 - 1/N) d (d + 1) / 2`` (``K_ij`` has degree ``2 - 2/N``; ``S_N`` sums
  ``d(d-1)/2`` halves of ``log K_ij``, ``log det A_X`` all ``d^2``).  Integrating
  ``div(X pi) = 0`` over ``X`` gives, for ANY energy whose law is normalizable,

      E[ <X, grad E(X)> ] = (d^2 + gamma) / beta = (d^2 - (1 - 1/N) d (d + 1) / 2) / beta,

  i.e. ``E[sum_i sigma_i e'(sigma_i)]`` for a spectral ``E`` (the quantity of section 12.6).

Statistics.  Members are independent by construction; a member's statistic is its average
over the saved times after a burn-in, and standard errors are over members.  Seeds are fixed,
so every outcome is deterministic; the tolerances are 4 standard errors (moments) and
``p > 1e-3`` (KS).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from dlnsim.network import langevin_ensemble, simulate_matrix_members
from dlnsim.network.langevin import MatrixLangevin
from dlnsim.network.system import frame, from_frame
from dlnsim.particles import MatrixVariant, Schatten
from dlnsim.particles import langevin_ensemble as particle_ensemble
from dlnsim.particles.entropy import entropy as chamber_entropy
from dlnsim.particles.rmt import ginibre_singular_values

try:  # the public model and energies of dlnsim.network (issue 15 items 1-2)
    from dlnsim.network import MatrixModel, Regression, Spectral
except ImportError:  # pragma: no cover - until they land: the same fields and methods
    MatrixModel = Regression = Spectral = None


class _Model:
    """Stand-in with the fields the Langevin engine reads (``width, depth, beta, energy``)."""

    def __init__(self, width, depth, beta, energy):
        self.width, self.depth, self.beta, self.energy = width, depth, beta, energy


def model(width, depth, beta, spectral_energy=None, energy=None):
    """A ``MatrixModel`` when available (``Spectral(spectral_energy)``), else the stand-in."""
    if MatrixModel is None:
        return _Model(width, depth, beta, spectral_energy if energy is None else energy)
    return MatrixModel(width, depth, beta, Spectral(spectral_energy) if energy is None else energy)


def regression(target):
    """``network.Regression(target)`` when available, else the same energy written here."""
    return _Regression(target) if Regression is None else Regression(target)


class _Regression:
    """``E = 1/2 |X - target|_F^2`` on stacks (a non-spectral energy, written out here)."""

    def __init__(self, target):
        self.target = np.asarray(target, dtype=np.float64)

    def energy(self, x):
        return 0.5 * ((x - self.target) ** 2).sum(axis=(-2, -1))

    def gradient(self, x):
        return x - self.target

    def describe(self):
        return {"energy": "regression"}


def virial_exact(d, depth, beta):
    """``E[<X, grad E>]`` at stationarity (module docstring)."""
    return (d * d - (1.0 - 1.0 / depth) * d * (d + 1) / 2.0) / beta


def member_means(values, burn):
    """Per-member time averages after ``burn`` saved times; their mean and standard error."""
    per = values[:, burn:].mean(axis=1)
    return per.mean(), per.std(ddof=1) / math.sqrt(per.size)


def gaussian_starts(m, d, variance, seed):
    return np.random.default_rng(seed).standard_normal((m, d, d)) * math.sqrt(variance)


# ------------------------------------------------------------ exact stationary laws
def test_depth_one_is_gaussian():
    """N = 1, E = |X|^2/2, beta = 2: entries N(0, 1/2).  Metropolis at a coarse dt = 0.25.

    Bias it can detect: the unadjusted scheme at this dt inflates the entry variance by
    ``1 / (1 - dt/2) = 1.143`` (exact for the OU recursion); the ``E|X|^2`` check resolves 6%
    (4 SE), and the KS tests (p > 1e-3 on 600 x 1 final states against 100000 exact) a CDF
    error of ~0.08.  Planted: ``metropolis=False`` fails the moment check at 18 SE (E|X|^2 =
    5.15 against 4.5, SE 0.036).
    """
    d, beta, m = 3, 2.0, 600
    mod = model(d, 1, beta, Schatten(2))
    times = np.arange(4.0, 12.01, 1.0)
    ds = langevin_ensemble(mod, np.eye(d), times, m, 0.25, seed=11, metropolis=True)
    x = ds.X.values
    sq = (x**2).sum(axis=(-2, -1))
    mean, se = member_means(sq, 0)
    assert abs(mean - d * d / beta) < 4 * se, (mean, se)
    exact = ginibre_singular_values(d, 100_000, np.random.default_rng(3), variance=1 / beta)
    final = ds.sigma.values[:, -1]
    for i in range(d):
        assert ks_2samp(final[:, i], exact[:, i]).pvalue > 1e-3
    acc = ds.accepted.values.sum() / ds.steps.values.sum()
    assert 0.5 < acc < 1.0


def test_unadjusted_depth_one_matches_the_exact_recursion():
    """N = 1: Euler-Maruyama is the OU recursion ``X <- (1 - h) X + sqrt(2 T h) Z``, whose
    stationary entry variance is ``T / (1 - h/2)`` exactly: the engine must reproduce it
    (detects a wrong noise amplitude or drift, 4 SE = 2.5% here; planted: the noise variance
    2 T h halved fails it at 170 SE)."""
    d, beta, h, m = 3, 1.0, 0.2, 400
    mod = model(d, 1, beta, Schatten(2))
    ds = langevin_ensemble(mod, np.eye(d), np.arange(4.0, 20.01, 1.0), m, h, seed=5)
    mean, se = member_means((ds.X.values**2).sum(axis=(-2, -1)), 0)
    exact = d * d / beta / (1.0 - h / 2.0)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    assert (ds.accepted.values == ds.steps.values).all()


@pytest.mark.slow
def test_spectral_energy_follows_the_matrix_variant():
    """d = 3, N = 3, beta = 2, E = sum sigma^2/2: the singular values' stationary law is the
    matrix variant's (section 10).  Both runs are Metropolis-adjusted (exact at any dt), on
    independent code paths; moments of each sigma_i agree within 4 combined SE, two-sample KS
    per index p > 1e-3, and sum sigma^2 matches the virial value 2.5 within 4 SE.

    Bias it can detect: an error in the target density or in the proposal densities of the
    Metropolis test (a drift error cannot bias a Metropolis-adjusted chain: the test corrects
    it; the drift is checked by the dense-operator tests below).  Planted: -1/2 log det A
    dropped from the density: E[sigma_1] off by 54 SE; dropped from the reverse proposal
    density only: 25 SE.
    """
    d, depth, beta, m = 3, 3, 2.0, 400
    exact_v = virial_exact(d, depth, beta)
    starts = gaussian_starts(m, d, exact_v / d / d, seed=7)
    # burn-in to t = 4.5: at 31% acceptance the matrix chain relaxes slowly (measured, 500
    # members: sum sigma^2 averaged over t in [0.5, 2], [2.5, 4], [4.5, 6], [6.5, 8], [8.5, 10]
    # is 2.72, 2.63, 2.54, 2.48, 2.53, SE 0.05; sigma_3: 0.117, 0.078, 0.072, 0.071, 0.068)
    times = np.arange(4.5, 10.01, 0.5)
    mat = langevin_ensemble(
        model(d, depth, beta, Schatten(2)), starts, times, m, 0.02, seed=1, metropolis=True
    )
    sigma0 = np.linalg.svd(starts, compute_uv=False)
    base = particle_ensemble(
        MatrixVariant(d, depth, beta, Schatten(2)),
        sigma0,
        times,
        m,
        0.05,
        seed=2,
        metropolis=True,
        scheduler="serial",
    )
    s_mat, s_base = mat.sigma.values, base.sigma.values
    for power in (1, 2):
        for i in range(d):
            a, sa = member_means(s_mat[..., i] ** power, 0)
            b, sb = member_means(s_base[..., i] ** power, 0)
            assert abs(a - b) < 4 * math.hypot(sa, sb), (power, i, a, b, sa, sb)
    for i in range(d):
        assert ks_2samp(s_mat[:, -1, i], s_base[:, -1, i]).pvalue > 1e-3
    v, se = member_means((s_mat**2).sum(-1), 0)
    assert abs(v - exact_v) < 4 * se, (v, exact_v, se)


@pytest.mark.slow
def test_non_spectral_energy_virial():
    """Regression energy (the singular vectors move), d = 3, N = 2, beta = 1: the exact
    stationary E[<X, X - target>] = (9 - 3)/1 = 6 (module docstring) with Metropolis at
    dt = 0.05.  Detects an error in the non-spectral energy's value or in the density
    (planted: -1/2 log det A dropped from the density: 43 SE; from the reverse proposal: 35
    SE).  Not a drift error (the Metropolis test corrects it): a transposed gradient frame
    passes here and fails the dense-operator test."""
    d, depth, beta, m = 3, 2, 1.0, 300
    target = np.diag([2.0, 1.0, 0.5])
    mod = model(d, depth, beta, energy=regression(target))
    starts = target + gaussian_starts(m, d, 0.5, seed=3)
    ds = langevin_ensemble(
        mod, starts, np.arange(2.0, 6.01, 0.25), m, 0.05, seed=9, metropolis=True
    )
    x = ds.X.values
    vir = (x * (x - target)).sum(axis=(-2, -1))
    mean, se = member_means(vir, 0)
    assert abs(mean - virial_exact(d, depth, beta)) < 4 * se, (mean, se)


# ------------------------------------------------------------ step-size bias
@pytest.mark.slow
def test_weak_order_one_of_the_unadjusted_scheme():
    """The bias of E[sum sigma e'(sigma)] (exact: 2.5 for d = N = 2, beta = 1, Schatten 2)
    is first order in dt: at dt = 0.1, 0.05, 0.025 it is large (> 5 SE at the two largest),
    the Richardson extrapolations 2 V(h/2) - V(h) match the exact value within 4 SE, and the
    fitted order is 1 within 0.35.

    Bias it can detect: an O(1) error (a missing or wrong Ito drift, a wrong noise
    amplitude) survives the extrapolation.  Planted: Ito coefficient T (1 - 1/N) -> T: the
    extrapolation misses by 11 SE; the Ito drift removed: the bias at dt = 0.1 is 2.6 SE
    (the power check fails) and the extrapolation misses by 13 SE; the noise variance halved:
    the bias is negative (-17 SE).
    """
    d, depth, beta, m = 2, 2, 1.0, 400
    exact = virial_exact(d, depth, beta)
    starts = gaussian_starts(m, d, exact / d / d, seed=4)
    mod = model(d, depth, beta, Schatten(2))
    times = np.arange(1.0, 7.01, 0.2)
    values = {}
    for k, h in enumerate((0.1, 0.05, 0.025)):
        ds = langevin_ensemble(mod, starts, times, m, h, seed=20 + k)
        values[h] = member_means((ds.sigma.values**2).sum(-1), 0)
    bias = {h: (v - exact, se) for h, (v, se) in values.items()}
    for h in (0.1, 0.05):
        assert bias[h][0] > 5 * bias[h][1], bias
    for h in (0.1, 0.05):
        extrap = 2 * values[h / 2][0] - values[h][0]
        se = math.hypot(2 * values[h / 2][1], values[h][1])
        assert abs(extrap - exact) < 4 * se, (h, extrap, se)
    order = math.log2(bias[0.1][0] / bias[0.05][0])
    assert abs(order - 1.0) < 0.35, (order, bias)


@pytest.mark.slow
def test_metropolis_removes_the_step_size_bias():
    """Same problem as the weak-order test at dt = 0.1: unadjusted, E[sum sigma^2] is > 5 SE
    (measured: 32%) above the exact 2.5; Metropolis-adjusted it is within 4 SE of it
    (theory.md 12.6).  Detects any error in the target density or in the reverse proposal
    density (planted: -1/2 log det A dropped from the density: 34 SE; from the reverse
    proposal: 30 SE)."""
    d, depth, beta, m, h = 2, 2, 1.0, 400, 0.1
    exact = virial_exact(d, depth, beta)
    starts = gaussian_starts(m, d, exact / d / d, seed=4)
    mod = model(d, depth, beta, Schatten(2))
    times = np.arange(1.0, 7.01, 0.2)
    out = {}
    for metropolis in (False, True):
        ds = langevin_ensemble(mod, starts, times, m, h, seed=31, metropolis=metropolis)
        # burn-in to t = 3: the chain relaxes ~2.5x slower at 40% acceptance (measured: the
        # mean over t in [1.2, 3] is 2.75 +- 0.08, over [3.2, 7] 2.52 +- 0.06)
        out[metropolis] = member_means((ds.sigma.values**2).sum(-1), 10)
    assert out[False][0] - exact > 5 * out[False][1], out
    assert abs(out[True][0] - exact) < 4 * out[True][1], out


# ------------------------------------------------------------ the drift against dense A
def _power(sym, a):
    lam, q = np.linalg.eigh(sym)
    return (q * np.maximum(lam, 0.0) ** a) @ q.T


def dense_operator(x, depth):
    """The d^2 x d^2 matrix of A(P) = sum_p (X X^T)^{(N-p)/N} P (X^T X)^{(p-1)/N}
    (MODEL section 1, the definition; row-major vec)."""
    d = x.shape[0]
    left = [_power(x @ x.T, (depth - p) / depth) for p in range(1, depth + 1)]
    right = [_power(x.T @ x, (p - 1) / depth) for p in range(1, depth + 1)]
    cols = []
    for k in range(d * d):
        e = np.zeros(d * d)
        e[k] = 1.0
        p_mat = e.reshape(d, d)
        cols.append(sum(lf @ p_mat @ rt for lf, rt in zip(left, right, strict=True)).ravel())
    return np.array(cols).T


def fd_gradient(fun, x, eps=1e-6):
    g = np.zeros(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        g[k] = (fun(x + e.reshape(x.shape)) - fun(x - e.reshape(x.shape))) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", ["spectral", "regression"])
def test_flow_step_is_minus_the_dense_operator_on_the_gradient(kind):
    """At T = 0 one step is X + h (-A_X(grad E) + A_X(grad S_N) / beta), with A_X the dense
    operator of the definition and grad S_N by finite differences of S_N(sigma(X)): the
    frame formulas of theory.md 12.1-12.3 against independent truth (1e-7, the FD error).
    Detects a wrong kernel, a transposed frame (the regression target is not symmetric) or a
    wrong entropy gradient, none of which the Metropolis tests can see (the test corrects
    any drift).  Planted: the gradient frame transposed (regression: entry 0 is -3.97 instead
    of -4.04), the diagonal K_ii / sigma_i taken as K_ii (-3.35 instead of -3.75)."""
    d, depth, beta, h = 3, 3, 2.0, 1e-3
    x0 = np.array([[1.2, 0.3, -0.2], [0.1, 0.8, 0.4], [-0.3, 0.2, 0.6]])
    target = np.arange(9.0).reshape(3, 3) / 9.0
    if kind == "spectral":
        mod, grad_e = model(d, depth, beta, Schatten(2)), x0  # grad |X|^2/2 = X
    else:
        mod, grad_e = model(d, depth, beta, energy=regression(target)), x0 - target

    def s_of(x):
        return chamber_entropy(np.log(np.linalg.svd(x, compute_uv=False)), depth)

    grad_f = grad_e.ravel() - fd_gradient(s_of, x0) / beta
    expected = -dense_operator(x0, depth) @ grad_f
    step = simulate_matrix_members(mod, x0[None], [0], [h], h, 0, temperature=0.0)
    got = ((step.x[0, 0] - x0) / h).ravel()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7 * np.abs(expected).max())


def test_ito_drift_is_the_laplace_beltrami_drift():
    """The T-dependent drift is T (div A - 1/2 A grad log det A) (theory.md 12.5), computed
    here from the dense operator by finite differences, against the closed form
    T (N - 1) U diag(sigma^{1-2/N}) V^T the engine uses (to the FD error, 1e-6).  Planted:
    the coefficient T (1 - 1/N) -> T (entry 0: 2.116 instead of 1.411)."""
    d, depth, temp = 3, 3, 0.7
    x0 = np.array([[1.1, 0.2, -0.3], [0.4, 0.9, 0.1], [-0.2, 0.3, 0.7]])
    a = dense_operator(x0, depth)

    def logdet(x):
        return np.linalg.slogdet(dense_operator(x, depth))[1]

    div = np.zeros(d * d)
    eps = 1e-6
    for j in range(d * d):
        e = np.zeros(d * d)
        e[j] = eps
        ap = dense_operator(x0 + e.reshape(d, d), depth)
        am = dense_operator(x0 - e.reshape(d, d), depth)
        div += (ap[:, j] - am[:, j]) / (2 * eps)
    expected = temp * (div - 0.5 * a @ fd_gradient(logdet, x0))
    parts = [frame(x0[None], d, depth, 1.0, Schatten(2), t, 1.0) for t in (temp, 0.0)]
    got = [from_frame(f.u, f.drift, f.vt)[0] for f in parts]
    np.testing.assert_allclose((got[0] - got[1]).ravel(), expected, atol=1e-6)


# ------------------------------------------------------------ time, depth
def test_rescaled_time_is_the_same_path():
    """In tau = N t with step N h the path is the same as in t with step h (A / N, theory.md
    1.4), to rounding."""
    d, depth = 3, 3
    mod = model(d, depth, 2.0, Schatten(2))
    x0 = gaussian_starts(4, d, 0.3, seed=1)
    a = simulate_matrix_members(mod, x0, np.arange(4), [0.5, 1.0], 0.01, 3)
    b = simulate_matrix_members(mod, x0, np.arange(4), [1.5, 3.0], 0.03, 3, rescaled=True)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-12)


def test_infinite_depth_is_the_limit_of_large_depth():
    """N = inf (rescaled time) is the large-N limit: one step from the same state and noise
    at N = 10^6 and N = inf agree to O(1/N)."""
    d = 3
    x0 = gaussian_starts(3, d, 0.5, seed=2)
    out = [
        simulate_matrix_members(
            model(d, n, 1.0, Schatten(2)), x0, np.arange(3), [0.01], 0.01, 4, rescaled=True
        ).x
        for n in (10**6, math.inf)
    ]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-8)


# ------------------------------------------------------------ seeding, faults
def test_member_paths_do_not_depend_on_the_chunking():
    """Member k's path depends only on (seed, k): bitwise the same alone, in one chunk or in
    chunks of 2, with and without Metropolis (theory.md 13.4)."""
    d = 3
    mod = model(d, 2, 1.0, Schatten(2))
    starts = np.eye(d) + gaussian_starts(5, d, 0.1, seed=0)
    times = [0.1, 0.3]
    for metropolis in (False, True):
        one = langevin_ensemble(mod, starts, times, 5, 0.05, seed=8, metropolis=metropolis)
        two = langevin_ensemble(
            mod, starts, times, 5, 0.05, seed=8, metropolis=metropolis, chunk_size=2
        )
        assert np.array_equal(one.X.values, two.X.values)
        alone = simulate_matrix_members(
            mod, starts[3:4], [3], times, 0.05, 8, metropolis=metropolis
        )
        assert np.array_equal(alone.x[0], one.X.values[3])
        assert one.attrs["seed"] == "8"
    assert not np.array_equal(one.X.values[0], one.X.values[1])
    # the stepper works on its own copy (a Metropolis step once updated the start in place)
    keep = starts.copy()
    stepper = MatrixLangevin(mod, starts, 1.0, False, True, np.arange(5), 8)
    simulate_matrix_members(mod, starts, np.arange(5), times, 0.05, 8, metropolis=True)
    stepper.cur.update(np.ones(5, dtype=bool), stepper._frame(2.0 * starts))
    assert np.array_equal(starts, keep)


def test_a_failing_member_leaves_the_others_alone():
    """A member whose state overflows (E = sigma^4/4 at dt = 0.01 from sigma = 100) stops:
    NaN from the failing step on, failed_time and last_finite recorded; the others are
    bitwise the same as when run without it."""
    d = 2
    mod = model(d, 2, 1.0, Schatten(4))
    starts = np.stack([np.eye(d), 100.0 * np.eye(d), 0.5 * np.eye(d)])
    times = [0.5, 1.0]
    block = simulate_matrix_members(mod, starts, [0, 1, 2], times, 0.01, 1)
    assert np.isnan(block.failed_time[[0, 2]]).all()
    assert 0 < block.failed_time[1] <= 0.5
    assert np.isnan(block.x[1, -1]).all() and np.isfinite(block.last_finite[1]).all()
    rest = simulate_matrix_members(mod, starts[[0, 2]], [0, 2], times, 0.01, 1)
    assert np.array_equal(rest.x, block.x[[0, 2]])


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"model": object()}, "model"),
        ({"X0": np.ones((2, 2))}, "X0"),
        ({"X0": np.full((3, 3), np.nan)}, "X0"),
        ({"X0": np.zeros((3, 3))}, "X0"),
        ({"times": [1.0, 0.5]}, "times"),
        ({"members": 0}, "members"),
        ({"dt": -1.0}, "dt"),
        ({"seed": -3}, "seed"),
        ({"metropolis": "yes"}, "metropolis"),
        ({"metropolis": True, "temperature": 0.0}, "metropolis"),
        ({"temperature": -1.0}, "temperature"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"rescaled": "no"}, "rescaled"),
    ],
)
def test_bad_arguments(kwargs, name):
    args = {
        "model": model(3, 2, 1.0, Schatten(2)),
        "X0": np.eye(3),
        "times": [0.1],
        "members": 2,
        "dt": 0.05,
        "seed": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^bad {name}="):
        langevin_ensemble(**args)


def test_bad_block_arguments():
    mod = model(2, 2, 1.0, Schatten(2))
    x0 = np.stack([np.eye(2)] * 2)
    with pytest.raises(ValueError, match="^bad members="):
        simulate_matrix_members(mod, x0, [0, 0], [0.1], 0.05, 1)
    with pytest.raises(ValueError, match="^bad x0="):
        simulate_matrix_members(mod, np.eye(2), [0], [0.1], 0.05, 1)
    with pytest.raises(ValueError, match="^bad rescaled="):
        simulate_matrix_members(
            model(2, math.inf, 1.0, Schatten(2)), x0, [0, 1], [0.1], 0.05, 1, rescaled=False
        )


def test_unadjusted_step_has_the_exact_drift_and_noise_covariance():
    """One step of the stepper WITHOUT Metropolis at T > 0, with chosen noise blocks: with
    ``Z = 0`` it moves by ``h b(X)``, ``b = -A_X(grad E - grad S_N / beta) + T (N - 1) X
    (X^T X)^{-1/N}`` (the dense operator of the definition, FD entropy gradient and the
    closed-form Ito drift checked in ``test_ito_drift_is_the_laplace_beltrami_drift``); with
    ``Z = E_k`` (the d^2 unit matrices, one member each) the extra moves are the columns of a
    map ``M`` with ``M M^T = 2 T h A_X`` (the noise covariance of the scheme).

    Why: with ``metropolis=True`` the law is exact whatever the drift or the noise map (they
    enter the proposal density consistently), and at ``N = 1`` (the fast exact-law tests)
    ``K = 1`` hides ``sqrt(K)`` vs ``K`` and the Ito term vanishes.  Planted (tests/mutation.py,
    each fails here): the noise map ``K o Z`` instead of ``sqrt(K) o Z``, the Ito coefficient
    ``T (1 - 1/N)`` -> ``T`` or halved, the drift scaled by 0.9 in the step."""
    d, depth, beta, temp, h = 3, 3, 2.0, 0.7, 0.05
    x0 = np.array([[1.2, 0.3, -0.2], [0.1, 0.8, 0.4], [-0.3, 0.2, 0.6]])
    mod = model(d, depth, beta, Schatten(2))
    m = d * d + 1
    stepper = MatrixLangevin(mod, np.repeat(x0[None], m, axis=0), temp, rescaled=False)
    stepper.begin(h, 1)
    xi = np.zeros((m, d, d))
    xi[1:] = np.eye(d * d).reshape(d * d, d, d)
    assert stepper.step(xi, 0, np.arange(m)) is None
    y = stepper.new.x

    def s_of(x):
        return chamber_entropy(np.log(np.linalg.svd(x, compute_uv=False)), depth)

    a = dense_operator(x0, depth)
    ito = temp * (depth - 1) * x0 @ _power(x0.T @ x0, -1.0 / depth)
    drift = -a @ (x0.ravel() - fd_gradient(s_of, x0) / beta) + ito.ravel()
    got = ((y[0] - x0) / h).ravel()
    np.testing.assert_allclose(got, drift, rtol=0, atol=1e-7 * np.abs(drift).max())
    cols = (y[1:] - y[0]).reshape(d * d, d * d).T  # column k: the move of Z = E_k
    cov = 2 * temp * h * a
    np.testing.assert_allclose(cols @ cols.T, cov, rtol=0, atol=1e-12 * np.abs(cov).max())
    stepper.commit(0, np.arange(m))
    assert (stepper.stats["accepted"] == 1).all()
