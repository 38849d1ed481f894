"""The particle Langevin engine (theory.md section 9) against exact laws, flows and its contract.

Statistical checks use fixed seeds; every tolerance is a number of standard errors (SE) computed
from independent members, as explained next to each assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammainc, gammaln

from dlnsim.particles import Model, Schatten, SeparableEnergy, gradient_flow, philox
from dlnsim.particles.entropy import entropy
from dlnsim.particles.langevin import LangevinBlock, noise_batch_steps, simulate_members

# ----------------------------------------------------------------------------- exact Gibbs law
#
# Exact stationary averages of exp(-beta E + S_N) du (finite N) or exp(-beta E + S_inf) drho
# (N = inf), for Schatten-p, written independently of the package's psi_N code.  On the chamber
# rho_1 >= ... >= rho_d put r = rho_1, y_i = rho_i - r = -(g_1 + ... + g_{i-1}) (gaps g >= 0).
# With du = prod(u_i / N) drho and k_N homogeneous of degree 2 - 2/N,
#     log density = -beta e^{p r} A(y) + D r + Phi(y),   A = sum_i e^{p y_i} / p,
#     D = (1 - 1/N) d(d-1)/2 + d/N  (N = inf: d(d-1)/2),
# and for an observable e^{k r} f(y) the r integral is exact:
#     int e^{-beta A e^{p r} + (D + k) r} dr = Gamma((D + k)/p) (beta A)^{-(D + k)/p} / p.
# The remaining (d-1)-dimensional gap integral is a tensor Gauss-Legendre rule after
# g = s t / (1 - t), s = max(1, N/3) (this also handles the algebraic tail g^{-(d-1)/2} of
# the N = inf law).


def _pair_log_ratio(g: np.ndarray, depth: float) -> np.ndarray:
    """log(k_N(s, s e^{-g}) / s^{2-2/N}) for g >= 0: log((1 - e^{-2g})/(1 - e^{-2g/N})),
    N = inf: log((1 - e^{-2g})/(2g)); the value at g = 0 is log N, resp. 0."""
    pos = g > 0
    gs = np.where(pos, g, 1.0)
    if depth == math.inf:
        return np.where(pos, np.log(-np.expm1(-2 * gs) / (2 * gs)), 0.0)
    return np.where(pos, np.log(np.expm1(-2 * gs) / np.expm1(-2 * gs / depth)), math.log(depth))


def _gap_grid(d: int, depth: float, p: float, n: int):
    """Nodes y (K, d), weights w*exp(Phi) (K,), A(y) (K,) and D of the gap integral."""
    x, w = np.polynomial.legendre.leggauss(n)
    t = (x + 1) / 2
    # the lowest gap decays like e^{-g/N} (the density in u is positive at u = 0): scale ~ N
    scale = 1.0 if depth == math.inf else max(1.0, depth / 3)
    g1, w1 = scale * t / (1 - t), scale * w / 2 / (1 - t) ** 2
    gaps = np.stack(np.meshgrid(*([g1] * (d - 1)), indexing="ij"), -1).reshape(-1, d - 1)
    wts = np.prod(np.stack(np.meshgrid(*([w1] * (d - 1)), indexing="ij"), -1), -1).ravel()
    y = np.concatenate([np.zeros((len(gaps), 1)), -np.cumsum(gaps, -1)], -1)
    inf = depth == math.inf
    one_minus = 1.0 if inf else 1 - 1 / depth
    phi = np.zeros(len(y)) if inf else y.sum(-1) / depth  # du = prod(u_i/N) drho
    for i in range(d):
        for j in range(i + 1, d):
            phi += 0.5 * (2 * one_minus * y[:, i] + _pair_log_ratio(y[:, i] - y[:, j], depth))
    pairs = d * (d - 1) / 2
    big_d = pairs if inf else one_minus * pairs + d / depth
    return y, wts * np.exp(phi), np.exp(p * y).sum(-1) / p, big_d


def _observables(sig: np.ndarray) -> dict[str, np.ndarray]:
    """sigma_i, sigma_i^2 (sorted descending) and |sigma_1 - sigma_2|, over the last axis."""
    out = {f"s{i + 1}": sig[..., i] for i in range(sig.shape[-1])}
    out |= {f"s{i + 1}^2": sig[..., i] ** 2 for i in range(sig.shape[-1])}
    out["|s1-s2|"] = np.abs(sig[..., 0] - sig[..., 1])
    return out


def gibbs_averages(d: int, depth: float, p: float, beta: float, n: int = 40) -> dict[str, float]:
    """Exact averages of ``_observables`` under the Gibbs law (see the comment above)."""
    y, base, a_fn, big_d = _gap_grid(d, depth, p, n)

    def radial(k: float) -> np.ndarray:
        a = (big_d + k) / p
        return np.exp(gammaln(a) - a * np.log(beta * a_fn) - math.log(p))

    z = np.sum(base * radial(0))
    out = {}
    for i in range(d):
        out[f"s{i + 1}"] = np.sum(base * radial(1) * np.exp(y[:, i])) / z
        out[f"s{i + 1}^2"] = np.sum(base * radial(2) * np.exp(2 * y[:, i])) / z
    out["|s1-s2|"] = np.sum(base * radial(1) * -np.expm1(y[:, 1])) / z
    return {k: float(v) for k, v in out.items()}


def test_gibbs_quadrature_against_dblquad_in_u():
    """The gap/Gamma quadrature equals a plain dblquad of exp(-beta E + S_N) du over u1 > u2 > 0
    (d = 2, S_N from k_N(u, v) = sum_k u^{2k} v^{2(N-1-k)}: no shared code, no cancellation)."""
    n_depth, p, beta = 3, 2.0, 2.0
    exact = gibbs_averages(2, n_depth, p, beta)

    def dens(u2, u1):
        k = sum(u1 ** (2 * i) * u2 ** (2 * (n_depth - 1 - i)) for i in range(n_depth))
        return math.exp(-beta * (u1 ** (n_depth * p) + u2 ** (n_depth * p)) / p) * math.sqrt(k)

    def avg(f):
        return integrate.dblquad(lambda u2, u1: f(u1, u2) * dens(u2, u1), 0, 4, 0, lambda u1: u1)[0]

    z = avg(lambda u1, u2: 1.0)
    n = n_depth
    assert avg(lambda u1, u2: u1**n) / z == pytest.approx(exact["s1"], rel=1e-7)
    assert avg(lambda u1, u2: u2 ** (2 * n)) / z == pytest.approx(exact["s2^2"], rel=1e-7)
    assert avg(lambda u1, u2: u1**n - u2**n) / z == pytest.approx(exact["|s1-s2|"], rel=1e-7)


def test_infinite_depth_gibbs_law_needs_d_at_least_4():
    """One particle at rho -> -inf alone: S_inf ~ -(d-1)/2 log|rho| and E -> const, so the
    N = inf density decays like |rho|^{-(d-1)/2}: not normalizable for d <= 3."""
    for d in range(2, 7):
        rest = np.linspace(0.4, -0.3, d - 1)
        big = np.array([1e3, 1e4, 1e5])
        s = np.array([entropy(np.r_[rest, -r], math.inf) for r in big])
        slopes = np.diff(s) / np.diff(np.log(big))
        np.testing.assert_allclose(slopes, -(d - 1) / 2, atol=2e-3)


# --------------------------------------------------------------------- stationary law checks
#
# Each member runs from a fixed start, is discarded during the burn-in, and contributes ONE
# number per observable: its time average over [burn, burn + span] (saved every 0.1).  Members
# have independent noise streams, so these are i.i.d.; the SE is their sample std / sqrt(M).
# Time-step bias: Euler's invariant law is off by O(dt) (Talay-Tubaro; with reflection by
# |u| this still holds since the drift is odd in u_i), so we compare the Richardson
# extrapolation R = 2 A(dt/2) - A(dt), whose bias is O(dt^2), using two independent runs:
# SE_R = sqrt(4 SE(dt/2)^2 + SE(dt)^2).  Pass: |R - exact| < 4 SE_R.
#
# Power (4 SE_R as a fraction of E[sigma_1], from the printed SEs): (2,3,2,2) 2.0%,
# (2,10,1,5) 3.2%, (3,4,2,3) 1.1%, (3,2,1,1) 2.5%, (5,inf,1,1) 1.5%.  A 1% bias in a first
# moment is seen at noise temperature T by test_ensemble_temperature.py (4 SE = 0.8-0.9%);
# reaching 1% in every case here would need 4-10x the members (~+4 min of CI).
# The z values: 32 of 35 were negative in one run.  They are not independent: within a case
# the member time averages of s1, s1^2, |s1-s2| (and of s2, s2^2) have correlations 0.5-0.98,
# so the 35 values are ~10 independent ones.  The most negative case, (3,4,2,3) (z = -2.15 for
# s1), was rerun with 4x the members and fresh seeds at dt = 0.02, 0.01, 0.005: Richardson
# z = +0.16 (s1), +0.59 (s2), -0.08 (s1^2), SE 0.14% of E[s1]: no bias above ~0.5%, and the
# two Richardson pairs agree, so the Euler bias is linear in dt as assumed (chance, not a bias).

STATIONARY = [
    # (d, N, p, beta, dt, M): relaxation rates are O(1) in t for all of these
    (2, 3, 2.0, 2.0, 0.02, 800),
    (2, 10, 1.0, 5.0, 0.02, 800),
    (3, 2, 1.0, 1.0, 0.02, 800),
]
# (3, 4, 2, 3) and N = inf with d = 5 moved to tests/test_stationary_power.py, which checks the
# same laws with the power to see a 1% bias in E[s1] (these cases here had 1.1% and 1.5%).


def _time_averages(model, sigma0, dt, seed, burn, span, first_member=0):
    times = burn + 0.1 * np.arange(int(round(span / 0.1)) + 1)
    m = sigma0.shape[0]
    blk = simulate_members(model, sigma0, first_member + np.arange(m), times, dt, seed)
    assert np.all(np.isnan(blk.failed_time))
    return {k: v.mean(axis=1) for k, v in _observables(blk.sigma).items()}


def _richardson_check(label, exact, coarse, fine):
    m1, m2 = len(next(iter(coarse.values()))), len(next(iter(fine.values())))
    worst = 0.0
    for key, value in exact.items():
        a1, a2 = coarse[key].mean(), fine[key].mean()
        se1, se2 = coarse[key].std(ddof=1) / math.sqrt(m1), fine[key].std(ddof=1) / math.sqrt(m2)
        rich, se = 2 * a2 - a1, math.sqrt(4 * se2**2 + se1**2)
        z = (rich - value) / se
        worst = max(worst, abs(z))
        print(
            f"{label} {key:8s} exact {value:.6f}  dt {a1:.6f}  dt/2 {a2:.6f}  "
            f"Richardson {rich:.6f} +- {se:.6f}  z = {z:+.2f}"
        )
        assert abs(z) < 4, (label, key, rich, se, value)
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("d,n_depth,p,beta,dt,m", STATIONARY)
def test_stationary_law_finite_depth(d, n_depth, p, beta, dt, m):
    model = Model(d, n_depth, beta, Schatten(p))
    exact = gibbs_averages(d, n_depth, p, beta, n=40)
    # quadrature converged far below the statistical resolution (SE ~ 1e-3 relative)
    coarse_q = gibbs_averages(d, n_depth, p, beta, n=28)
    for key, value in exact.items():
        assert coarse_q[key] == pytest.approx(value, rel=1e-5)
    start = np.tile(model.equilibrium() * np.linspace(1.2, 0.8, d), (m, 1))
    coarse = _time_averages(model, start, dt, 11, burn=10.0, span=60.0)
    fine = _time_averages(model, start, dt / 2, 12, burn=10.0, span=60.0)
    _richardson_check(f"(d,N,p,beta)=({d},{n_depth},{p},{beta})", exact, coarse, fine)


# ------------------------------------------------------------- non-interacting exact laws (KS)


def _mean_check(label, x, exact, scale_bias=0.02):
    """|mean - exact| < 4 SE, and the stated power: 4 SE < ``scale_bias`` of the mean, so a
    scale error of that size (which moves the mean by as much) is detected."""
    mean, se = x.mean(), x.std(ddof=1) / math.sqrt(x.size)
    print(f"{label}: mean {mean:.6f} exact {exact:.6f} SE {se:.2e} z = {(mean - exact) / se:+.2f}")
    assert abs(mean - exact) < 4 * se
    assert 4 * se < scale_bias * exact


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_depth_one_particles_are_independent_with_known_law(p):
    """N = 1: S_1 = 0, each sigma_i has density prop. to exp(-beta sigma^p / p) on (0, inf),
    CDF gammainc(1/p, beta s^p / p).  All d values of all members at one late time are i.i.d.
    Power: n = 42000 values; the KS resolution 1.36 / sqrt(n) = 0.0066 is below the CDF shift
    of a 2% scale bias (0.02 max|s f(s)| ~ 0.0074 (p = 1), 0.0097 (p = 2)), and beside it the
    mean (exact (p/beta)^(1/p) Gamma(2/p) / Gamma(1/p)) has a relative SE of 0.5% (p = 1) and
    0.37% (p = 2): 4 SE < 2%, asserted.  The Euler bias at dt = 0.005 (O(dt) in the law; for
    p = 2, an OU process, the variance is off by dt/2, the scale by 0.13%; for p = 1, where the
    drift's odd extension jumps at the reflecting boundary, measured with 126000 values:
    +2.39% at dt = 0.02, +0.54% at 0.01, +0.43% +- 0.28% at 0.005) is below one SE."""
    d, beta, m = 3, 2.0, 14000
    model = Model(d, 1, beta, Schatten(p))
    blk = simulate_members(model, np.tile([1.5, 1.0, 0.5], (m, 1)), np.arange(m), [8.0], 0.005, 3)
    x = blk.sigma[:, 0, :].ravel()
    res = stats.kstest(x, lambda s: gammainc(1 / p, beta * s**p / p))
    print(f"N=1 p={p}: KS D={res.statistic:.4f} p-value={res.pvalue:.3f}")
    assert res.pvalue > 0.01
    exact = (p / beta) ** (1 / p) * math.exp(gammaln(2 / p) - gammaln(1 / p))
    _mean_check(f"N=1 p={p}", x, exact)
    # the density at sigma = 0 is positive: the particles hit the boundary and are reflected
    assert np.all(blk.reflections > 0)


def test_width_one_has_known_law_in_u():
    """d = 1: no pair term, density in u = sigma^{1/N} prop. to exp(-beta u^{Np} / p) (N = 3).
    Power: 40000 members; KS resolution 0.0068, and the mean of u (exact (p/beta)^(1/q)
    Gamma(2/q) / Gamma(1/q), q = N p) with a relative SE of ~0.25%: 4 SE < 2%, asserted, so
    a 2% scale bias in u is detected."""
    n_depth, p, beta, m = 3, 1.0, 1.5, 40000
    model = Model(1, n_depth, beta, Schatten(p))
    blk = simulate_members(model, np.full((m, 1), 0.7), np.arange(m), [6.0], 0.005, 4)
    u = blk.sigma[:, 0, 0] ** (1 / n_depth)
    q = n_depth * p
    res = stats.kstest(u, lambda v: gammainc(1 / q, beta * v**q / p))
    print(f"d=1 N=3: KS D={res.statistic:.4f} p-value={res.pvalue:.3f}")
    assert res.pvalue > 0.01
    exact = (p / beta) ** (1 / q) * math.exp(gammaln(2 / q) - gammaln(1 / q))
    _mean_check("d=1 N=3 u", u, exact)


# ---------------------------------------------------- weak order and the zero-noise limit


def _control_variate_mean(y, seed, members, n_steps, d, degree=3):
    """Mean of y with control variates Z = Legendre projections of each member's own noise
    (steps 0..n_steps-1 of philox.normals(seed, [k], ...), one row per step as documented).
    E[Z] = 0 exactly, so the regression intercept is unbiased up to O(1/M); SE from the
    residuals.  (If the engine's noise were not the documented stream, Z would not correlate
    with y and the SE would not shrink: test_weak_order_one's resolution check would fail.)"""
    tj = (np.arange(n_steps) + 0.5) / n_steps * 2 - 1
    basis = np.polynomial.legendre.legvander(tj, degree)
    xi = philox.normals(seed, np.asarray(members), 0, n_steps, d)
    z = np.einsum("tj,mti->mji", basis, xi).reshape(len(members), -1) / math.sqrt(n_steps)
    x = np.column_stack([np.ones(len(y)), z])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return float(coef[0]), float(resid.std(ddof=x.shape[1]) / math.sqrt(len(y)))


WEAK_MODEL = Model(2, 3, 50.0, Schatten(2.0))
WEAK_START = np.array([1.2, 0.4])
WEAK_T = 0.5


def _weak_run(dt, m, block, seed, temperature=None, observable=None):
    members = block * m + np.arange(m)
    blk = simulate_members(
        WEAK_MODEL, np.tile(WEAK_START, (m, 1)), members, [WEAK_T], dt, seed, temperature
    )
    y = observable(blk.sigma[:, 0])
    n_steps = math.ceil(WEAK_T / dt * (1 - 1e-12))
    return _control_variate_mean(y, seed, members, n_steps, 2)


@pytest.mark.slow
def test_weak_order_one():
    """E[sigma_1^2 + sigma_2^2] (= E |X|_F^2, smooth and symmetric) at t = 0.5 from (1.2, 0.4),
    d = 2, N = 3, p = 2, beta = 50, for dt = 0.1 ... 0.0125.  Reference: Richardson
    2 A(dt/2) - A(dt) at dt = 0.00625 (bias O(dt^2) ~ 1e-5).  Independent members per dt; the
    control variates cut the SE about 4x, to 4e-4 on the smallest error (~4e-3), so the fitted
    slope has an SE ~ 0.05 and the window [0.7, 1.3] is > 5 SE wide."""
    m = 20000

    def obs(s):
        return (s**2).sum(-1)

    dts = [0.1, 0.05, 0.025, 0.0125]
    runs = [_weak_run(h, m, i, 31, observable=obs) for i, h in enumerate(dts)]
    a1, se1 = _weak_run(0.00625, m, 10, 31, observable=obs)
    a2, se2 = _weak_run(0.003125, m, 11, 31, observable=obs)
    ref, se_ref = 2 * a2 - a1, math.sqrt(4 * se2**2 + se1**2)
    err = np.array([a - ref for a, _ in runs])
    se = np.array([math.hypot(s, se_ref) for _, s in runs])
    assert np.all(np.abs(err) > 5 * se)  # every error is resolved
    slope = np.polyfit(np.log(dts), np.log(np.abs(err)), 1, w=np.abs(err) / se)[0]
    print(f"weak order: reference {ref:.6f} +- {se_ref:.6f}; errors {err}; SE {se}")
    print(f"weak order: fitted slope {slope:.3f}")
    assert 0.7 <= slope <= 1.3


def test_zero_temperature_is_explicit_euler_for_the_flow():
    """T = 0: no noise, the scheme is explicit Euler in u; the error against the Radau
    solution of particles.gradient_flow is O(dt): it halves with dt and is small."""
    model = Model(3, 4, 3.0, Schatten(2.0))
    start = np.array([[1.5, 0.8, 0.3], [0.6, 0.5, 0.05]])
    times = np.array([0.0, 0.2, 0.5, 1.0])
    flow = gradient_flow(model, start, times).sigma.values
    errs = []
    for dt in [0.01, 0.005, 0.0025, 0.00125]:
        blk = simulate_members(model, start, [0, 1], times, dt, 0, temperature=0.0)
        assert np.all(blk.reflections == 0)
        np.testing.assert_array_equal(blk.sigma[:, 0], np.sort(start)[:, ::-1])
        errs.append(np.max(np.abs(blk.sigma - flow) / flow))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    print(f"T=0 vs gradient_flow: max relative errors {errs}, ratios {ratios}")
    assert np.all((ratios > 1.8) & (ratios < 2.2))
    assert errs[-1] < 2e-3
    # rescaled time: tau = N t with dt_tau = N dt_t gives the same steps (N = 4: exact in binary)
    tau = simulate_members(model, start, [0, 1], 4 * times, 0.04, 0, 0.0, rescaled=True)
    t = simulate_members(model, start, [0, 1], times, 0.01, 0, 0.0)
    np.testing.assert_array_equal(tau.sigma, t.sigma)


@pytest.mark.slow
def test_noise_bias_of_the_mean_is_order_one_in_temperature():
    """With F_beta fixed (beta = 50) and noise temperature T -> 0, the ensemble mean of the
    smooth symmetric observable sigma_1 + sigma_2 at t = 0.5 approaches the deterministic
    (T = 0, same dt) Euler trajectory; the gap is O(T) (Ito: the mean bias is second order in
    the noise amplitude sqrt(T)).  Fit log gap vs log T over four temperatures; SEs of the gap
    (control variates) are ~1% of the smallest gap, so the slope SE is ~0.02: we require
    |order - 1| < 0.1 (the O(T^2) term measured here moves the local slope by about 0.03)."""
    m, dt = 20000, 0.01

    def obs(s):
        return s.sum(-1)

    det = simulate_members(WEAK_MODEL, WEAK_START[None], [0], [WEAK_T], dt, 0, 0.0).sigma[0, 0]
    flow = gradient_flow(WEAK_MODEL, WEAK_START, [WEAK_T]).sigma.values[0]
    temps = np.array([0.0025, 0.005, 0.01, 0.02])
    gaps, ses = [], []
    for i, temp in enumerate(temps):
        est, se = _weak_run(dt, m, 20 + i, 41, temperature=temp, observable=obs)
        gaps.append(est - det.sum())
        ses.append(se)
    gaps, ses = np.array(gaps), np.array(ses)
    order = np.polyfit(np.log(temps), np.log(gaps), 1)[0]
    print(f"T->0: Euler(T=0) - Radau flow = {det.sum() - flow.sum():.2e} (O(dt))")
    print(f"T->0: gaps {gaps} SE {ses} gap/T {gaps / temps}; fitted order {order:.3f}")
    assert np.all(gaps > 10 * ses)
    assert abs(order - 1) < 0.1


# ----------------------------------------------------------------------------- the contract


def _small_model():
    return Model(3, 5, 2.0, Schatten(2.0))


def test_shapes_order_and_initial_state():
    model = _small_model()
    rng = np.random.default_rng(0)
    s0 = rng.uniform(0.1, 2.0, (6, 3))
    times = np.array([0.0, 0.1, 0.25, 1.0])
    blk = simulate_members(model, s0, np.arange(6), times, 0.01, 9)
    assert isinstance(blk, LangevinBlock)
    assert blk.sigma.shape == (6, 4, 3) and blk.sigma.dtype == np.float64
    assert blk.reflections.shape == (6,) and blk.reflections.dtype == np.int64
    assert blk.failed_time.shape == (6,) and np.all(np.isnan(blk.failed_time))
    assert blk.last_finite.shape == (6, 3)
    np.testing.assert_array_equal(blk.sigma[:, 0], np.sort(s0, axis=1)[:, ::-1])
    assert np.all(np.diff(blk.sigma, axis=-1) <= 0)
    np.testing.assert_array_equal(blk.last_finite, blk.sigma[:, -1])
    # N = inf: no boundary, so no reflections; the time is tau
    inf_blk = simulate_members(Model(4, math.inf, 1.0, Schatten(1.0)), s0[:, :2].repeat(2, 1),
                               np.arange(6), [0.5, 1.0], 0.01, 9)  # fmt: skip
    assert np.all(inf_blk.reflections == 0) and np.all(np.isfinite(inf_blk.sigma))


def test_the_engine_noise_is_the_documented_stream():
    """At T > 0 and N = inf (rho <- rho - h F' + amp xi, exact in numpy), one step of member k
    equals the deterministic step plus amp * philox.normals(seed, [k], 0, 1, d): the noise is
    the documented stream (keyed by the seed and the member, counted by the step), and a second
    interval continues it at step 1 rather than restarting at 0."""
    model = Model(3, math.inf, 2.0, Schatten(2.0))
    s0 = np.array([[8.0, 1.0, 0.1], [5.0, 0.6, 0.05]])  # log gaps ~2 >> the noise (~0.1)
    members, h, seed = np.array([7, 2]), 0.01, 2**70 + 5
    blk = simulate_members(model, s0, members, [h, 2 * h], h, seed)
    flow = simulate_members(model, s0, members, [h], h, seed, temperature=0.0)
    xi = philox.normals(seed, members, 0, 2, 3)
    amp = math.sqrt(2.0 * h / model.beta)
    first = np.sort(np.log(flow.sigma[:, 0]) + amp * xi[:, 0], axis=1)[:, ::-1]
    np.testing.assert_allclose(np.log(blk.sigma[:, 0]), first, rtol=0, atol=1e-13)
    again = simulate_members(model, blk.sigma[:, 0], members, [h], h, seed, temperature=0.0)
    second = np.sort(np.log(again.sigma[:, 0]) + amp * xi[:, 1], axis=1)[:, ::-1]
    np.testing.assert_allclose(np.log(blk.sigma[:, 1]), second, rtol=0, atol=1e-12)
    assert noise_batch_steps(2) == 256 and noise_batch_steps(10_000) == 1


def _assert_blocks_equal(a: LangevinBlock, b: LangevinBlock) -> None:
    for name in ("sigma", "reflections", "failed_time", "last_finite"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _concat(blocks):
    return LangevinBlock(*(np.concatenate([getattr(b, f) for b in blocks]) for f in
                           ("sigma", "reflections", "failed_time", "last_finite")))  # fmt: skip


@pytest.mark.parametrize("depth", [1, 5, math.inf])
def test_blocking_and_split_times_are_bitwise_identical(depth):
    """Members [0..7] in one block == blocks [0..2] + [3..7] == one member at a time (in any
    order); save times [0.5, 1, 1.5, 2] and [1, 2] agree at 1 and 2 (dt = 1/16: same grid).
    600 steps span several noise batches (K = 170 for d = 3)."""
    model = Model(3, depth, 2.0, Schatten(2.0))
    rng = np.random.default_rng(1)
    s0 = rng.uniform(0.2, 1.5, (8, 3))
    members = np.arange(8) + 100
    times = np.array([0.5, 1.0, 1.5, 2.0]) * 20
    whole = simulate_members(model, s0, members, times, 1 / 16, 77)
    parts = [simulate_members(model, s0[sl], members[sl], times, 1 / 16, 77)
             for sl in (slice(0, 3), slice(3, 8))]  # fmt: skip
    _assert_blocks_equal(whole, _concat(parts))
    perm = np.array([5, 2, 7, 0, 1, 6, 3, 4])
    shuffled = simulate_members(model, s0[perm], members[perm], times, 1 / 16, 77)
    _assert_blocks_equal(
        LangevinBlock(
            *(
                getattr(shuffled, f)[np.argsort(perm)]
                for f in ("sigma", "reflections", "failed_time", "last_finite")
            )
        ),  # fmt: skip
        whole,
    )
    coarse = simulate_members(model, s0, members, times[1::2], 1 / 16, 77)
    np.testing.assert_array_equal(coarse.sigma, whole.sigma[:, 1::2])
    np.testing.assert_array_equal(coarse.reflections, whole.reflections)
    # a different seed or member index gives a different path
    other = simulate_members(model, s0, members + 1, times, 1 / 16, 77)
    assert not np.array_equal(other.sigma, whole.sigma)


def _steep_energy():
    """e(s) = s^6/6: explicit steps from s = 5 overshoot and blow up; from s < 1.5 they don't."""
    return SeparableEnergy(lambda s: s**6 / 6, lambda s: s**5, lambda s: 5 * s**4, name="s6")


@pytest.mark.parametrize("depth", [1, 3])
def test_failures_are_isolated(depth):
    model = Model(2, depth, 1.0, _steep_energy())
    good = np.tile([0.9, 0.4], (5, 1))
    bad = np.tile([5.0, 0.4], (3, 1))
    s0 = np.concatenate([good[:2], bad[:1], good[2:], bad[1:]])  # bad rows 2, 6, 7
    members = np.arange(8)
    is_bad = np.zeros(8, bool)
    is_bad[[2, 6, 7]] = True
    times = np.array([0.05, 0.5, 1.0])
    with np.errstate(all="raise"):  # no floating-point warning may escape
        mixed = simulate_members(model, s0, members, times, 0.01, 5)
    clean = simulate_members(model, s0[~is_bad], members[~is_bad], times, 0.01, 5)
    for name in ("sigma", "reflections", "failed_time", "last_finite"):
        np.testing.assert_array_equal(getattr(mixed, name)[~is_bad], getattr(clean, name))
    assert np.all(np.isnan(clean.failed_time))
    ft = mixed.failed_time[is_bad]
    assert np.all((ft > 0) & (ft <= 0.05))
    assert np.all(np.isnan(mixed.sigma[is_bad]))  # every save time is after the failure
    assert np.all(np.isfinite(mixed.last_finite)) and np.all(mixed.last_finite > 0)


def test_failure_keeps_states_saved_before_it_and_nan_energy_is_caught():
    """e(s) = -(s - 1)^2 / 2 (unstable at s = 1) with e' = NaN above s = 3: the member started
    above 1 is pushed up and stops when it passes 3 (after the first two saves); the member
    started below 1 never gets there.  T = 0, so the timing is deterministic; N = inf too."""

    def de(s):
        return np.where(s > 3.0, np.nan, 1.0 - s)

    energy = SeparableEnergy(lambda s: -((s - 1) ** 2) / 2, de, lambda s: -np.ones_like(s))
    for depth in (2, math.inf):
        model = Model(2, depth, 4.0, energy)
        s0 = np.array([[1.6, 1.5], [0.5, 0.4]])
        times = [0.1, 0.2, 20.0]
        blk = simulate_members(model, s0, [0, 1], times, 0.01, 8, temperature=0.0)
        assert math.isnan(blk.failed_time[1]) and np.all(np.isfinite(blk.sigma[1]))
        assert 0.2 < blk.failed_time[0] <= 20.0
        assert np.all(np.isfinite(blk.sigma[0, :2])) and np.all(np.isnan(blk.sigma[0, 2]))
        assert blk.last_finite[0, 0] > 1.6 and np.all(np.isfinite(blk.last_finite[0]))


def test_absurd_step_fails_every_member_without_warnings():
    model = Model(2, 3, 1.0, _steep_energy())
    with np.errstate(all="raise"):
        blk = simulate_members(model, np.tile([1.5, 1.0], (4, 1)), np.arange(4), [100.0], 5.0, 1)
    assert np.all(blk.failed_time > 0) and np.all(np.isnan(blk.sigma))
    assert np.all(np.isfinite(blk.last_finite))


def test_reflections_counted_where_the_boundary_is_reached():
    """N = 1 has a positive density at sigma = 0 (every member reflects many times); a member at
    low temperature far from 0 never reflects."""
    model = Model(2, 1, 1.0, Schatten(2.0))
    blk = simulate_members(model, np.tile([1.0, 0.5], (20, 1)), np.arange(20), [20.0], 0.01, 2)
    assert np.all(blk.reflections > 10)
    cold = simulate_members(model, np.tile([3.0, 2.5], (5, 1)), np.arange(5), [0.5], 0.01, 2,
                            temperature=1e-6)  # fmt: skip
    assert np.all(cold.reflections == 0)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"model": "model"}, "model"),
        ({"sigma0": np.ones((2, 2))}, "sigma0"),
        ({"sigma0": np.array([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])}, "sigma0"),
        ({"sigma0": np.ones(3)}, "sigma0"),
        ({"members": [0]}, "members"),
        ({"members": [0, -1]}, "members"),
        ({"members": [0.0, 1.0]}, "members"),
        ({"members": [True, False]}, "members"),
        ({"members": [3, 3]}, "members"),
        ({"times": [1.0, 0.5]}, "times"),
        ({"times": [-1.0]}, "times"),
        ({"times": []}, "times"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -0.1}, "dt"),
        ({"dt": math.inf}, "dt"),
        ({"dt": math.nan}, "dt"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"rescaled": "yes"}, "rescaled"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    args = {
        "model": _small_model(),
        "sigma0": np.ones((2, 3)),
        "members": [0, 1],
        "times": [0.1],
        "dt": 0.01,
        "seed": 0,
    } | kwargs
    with pytest.raises(ValueError, match=f"bad {name}="):
        simulate_members(**args)


def test_infinite_depth_has_only_rescaled_time_and_seed_checks():
    model = Model(2, math.inf, 1.0, Schatten(1.0))
    with pytest.raises(ValueError, match="bad rescaled="):
        simulate_members(model, np.ones((1, 2)), [0], [0.1], 0.01, 0, rescaled=False)
    with pytest.raises(ValueError, match="bad seed="):
        simulate_members(model, np.ones((1, 2)), [0], [0.1], 0.01, -1)
    with pytest.raises(ValueError, match="bad seed="):
        simulate_members(model, np.ones((1, 2)), [0], [0.1], 0.01, 2**128)
    with pytest.raises(ValueError, match="bad fused="):
        simulate_members(model, np.ones((1, 2)), [0], [0.1], 0.01, 0, fused=True)
