"""Distances between mean-field densities and particle samples, against independent truths."""

import math

import numpy as np
import pytest
import xarray as xr
from scipy.stats import wasserstein_distance

from dlnsim.analysis.meanfield_compare import compare_densities, fit_rate, wasserstein_to_density
from dlnsim.meanfield import solve
from dlnsim.particles import Model, Schatten


def fixed_grid(edges: np.ndarray, masses: np.ndarray, times=(0.0,)) -> xr.Dataset:
    """A PDE-like Dataset on a fixed grid: cell centres ``sigma`` and ``cell_width`` on ``cell``."""
    width = np.diff(edges)
    density = np.tile(masses / width, (len(times), 1))
    return xr.Dataset(
        {"density": (("time", "cell"), density), "cell_width": ("cell", width)},
        coords={"time": list(times), "sigma": ("cell", 0.5 * (edges[1:] + edges[:-1]))},
    )


def uniform(n_cells=100):
    edges = np.linspace(0.0, 1.0, n_cells + 1)
    return edges, np.full(n_cells, 1.0 / n_cells)


@pytest.mark.parametrize("shift", [0.01, 0.2, -0.05])
def test_w1_uniform_against_shifted_uniform_quantiles_is_the_shift(shift):
    """Samples y_k = shift + (k - 1/2)/K: the quantile coupling gives W1 = |shift| exactly when
    |shift| >= 1/(2K)."""
    edges, masses = uniform()
    k = 1000
    y = shift + (np.arange(1, k + 1) - 0.5) / k
    ds = compare_densities(fixed_grid(edges, masses), y, [0.0])
    assert float(ds.w1[0]) == pytest.approx(abs(shift), rel=1e-12)
    assert int(ds.n_samples[0]) == k


def test_w1_uniform_against_one_point():
    """W1(U[0,1], delta_a) = int_0^1 |x - a| dx = a^2/2 + (1-a)^2/2."""
    edges, masses = uniform(7)
    for a in (0.0, 0.3, 0.9, 1.5):
        expected = a * a / 2 + (1 - a) ** 2 / 2 if a <= 1 else a - 0.5
        assert wasserstein_to_density(edges, masses, [a]) == pytest.approx(expected, rel=1e-13)


def test_w1_agrees_with_scipy_on_a_fine_discretization():
    rng = np.random.default_rng(1)
    edges = np.array([0.0, 0.5, 0.7, 2.0, 2.5])
    masses = np.array([0.1, 0.4, 0.3, 0.2])
    y = rng.gamma(2.0, 0.6, 300)
    # the piecewise-constant density as 2e5 equal-mass atoms at its quantiles (error ~ 1e-5)
    q = (np.arange(200000) + 0.5) / 200000
    atoms = np.interp(q, np.concatenate(([0.0], np.cumsum(masses))), edges)
    assert wasserstein_to_density(edges, masses, y) == pytest.approx(
        wasserstein_distance(y, atoms), abs=2e-5
    )


def test_distances_of_exact_samples_decay_like_inverse_sqrt_n():
    """Samples drawn exactly from the piecewise-constant density (inverse CDF): E W1 ~ n^{-1/2}.

    20 repetitions per n; the fitted slope's sampling spread is ~0.05 (measured -0.53)."""
    rng = np.random.default_rng(2)
    edges = np.linspace(0.2, 3.0, 401)
    centres = 0.5 * (edges[1:] + edges[:-1])
    masses = np.exp(-0.5 * ((np.log(centres) - 0.1) / 0.3) ** 2) / centres
    masses /= masses.sum()
    cdf = np.concatenate(([0.0], np.cumsum(masses)))
    sizes = np.array([100, 400, 1600, 6400])
    w1 = []
    for n in sizes:
        y = np.interp(rng.random((20, n)), cdf, edges)  # exact draws
        pde = fixed_grid(edges, masses, times=list(range(20)))
        ds = compare_densities(pde, y, np.arange(20.0))
        w1.append(float(ds.w1.mean()))
    assert abs(fit_rate(sizes, w1) + 0.5) < 0.1


def test_l1_of_a_matching_histogram_is_zero_and_outliers_count():
    edges = np.array([1.0, 2.0, 4.0, 5.0])
    masses = np.array([0.25, 0.5, 0.25])
    y = np.array([1.5, 3.0, 3.5, 4.5])  # one, two, one sample per cell
    pde = fixed_grid(edges, masses)
    assert float(compare_densities(pde, y, [0.0]).l1[0]) == pytest.approx(0.0, abs=1e-15)
    y_out = np.array([1.5, 3.0, 3.5, 9.0])  # the last sample is off the grid
    assert float(compare_densities(pde, y_out, [0.0]).l1[0]) == pytest.approx(0.5)


def test_compare_with_a_moving_grid_solution_and_layouts():
    """A PDE run's initial density (log-normal) against exact log-normal samples: W1 is the
    sampling error (~0.3 sigma / sqrt(n), n = 3 x 2000 pooled); layouts agree."""
    model = Model(10, 3, 10.0, Schatten(2.0))
    pde = solve(model, lambda s: np.exp(-0.5 * (np.log(s) / 0.3) ** 2) / s, [0.0, 0.05])
    rng = np.random.default_rng(4)
    samples = np.exp(rng.normal(0.0, 0.3, (3, 1, 2000)))  # (member, time, particle)
    ds = compare_densities(pde, samples, [0.0])
    assert float(ds.w1[0]) < 3 * 0.3 / math.sqrt(6000) and float(ds.l1[0]) < 0.15
    da = xr.DataArray(samples, dims=("member", "time", "particle"), coords={"time": [0.0]})
    xr.testing.assert_allclose(compare_densities(pde, da).w1, ds.w1)
    flat = compare_densities(pde, samples.transpose(1, 0, 2).reshape(1, -1), [0.0])
    np.testing.assert_allclose(flat.w1, ds.w1, rtol=1e-12)
    assert float(ds.mean_pde[0]) == pytest.approx(float(ds.mean_samples[0]), rel=0.01)


def test_fit_rate_recovers_a_power_law():
    x = np.array([0.1, 0.05, 0.025, 0.0125])
    assert fit_rate(x, 3.0 * x**2) == pytest.approx(2.0, abs=1e-12)
    assert fit_rate([10, 100, 1000], [1.0, 10**-0.5, 0.1]) == pytest.approx(-0.5, abs=1e-12)


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda pde: compare_densities(pde, np.ones((2, 5)), [0.0]), "times"),
        (lambda pde: compare_densities(pde, np.ones(5), [0.5]), "times"),
        (lambda pde: compare_densities(pde, np.ones(5)), "times"),
        (lambda pde: compare_densities(pde, np.ones((1, 1, 1, 1)), [0.0]), "samples"),
        (lambda pde: compare_densities("nope", np.ones(5), [0.0]), "pde"),
        (lambda pde: fit_rate([1.0, 2.0], [1.0, -1.0]), "distances"),
        (lambda pde: fit_rate([1.0], [1.0]), "distances"),
        (lambda pde: fit_rate([1.0, 1.0], [1.0, 2.0]), "ds_values"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_parameter(call, name):
    edges, masses = uniform(4)
    with pytest.raises(ValueError, match=f"bad {name}="):
        call(fixed_grid(edges, masses))


def test_particles_vs_pde_experiment(tmp_path):
    """Langevin particles at beta = b d against the PDE: at every width and time the W1 distance
    is within 3x the sampling-noise floor (the same distance for as many exact samples of the
    PDE density: the fluctuation of W1 at n samples is of the order of its mean), and W1
    decreases with d at the last time (the density narrows like (b d)^(-1/2))."""
    from dlnsim.analysis.particles_vs_pde import particles_vs_pde
    from dlnsim.analysis.plots import particles_vs_pde_figure
    from dlnsim.particles.datasets import load, save

    ds = particles_vs_pde(widths=(8, 32, 128), n_samples=1024, times=(0.0, 0.3, 1.0))
    assert np.all(ds.w1.values < 3 * ds.w1_floor.values + 1e-3)
    assert ds.attrs["w1_rate"] < -0.3
    assert ds.samples.dims == ("width", "time", "sample") and ds.density.dims[-1] == "cell"
    np.testing.assert_allclose((ds.density * ds.cell_width).sum("cell"), 1.0, rtol=1e-12)
    back = load(save(ds, tmp_path / "pvp.nc"))
    np.testing.assert_array_equal(back.samples.values, ds.samples.values)
    assert len(particles_vs_pde_figure(ds).axes) == 3
    with pytest.raises(ValueError, match="bad n_samples="):
        particles_vs_pde(widths=(8, 30), n_samples=1024)


def test_fit_order_recovers_a_power_law_with_its_interval():
    """Errors 0.3 d^-1 plus Gaussian noise of known SE: the fitted order's 95% interval covers 1
    and is narrower than +-0.3 (seeded; the interval's half-width is ~0.1 here)."""
    from dlnsim.analysis.particles_vs_pde import fit_order

    d = np.array([8, 16, 32, 64, 128, 256, 512.0])
    se = 0.02 * 0.3 / d
    err = 0.3 / d + se * np.random.default_rng(5).standard_normal(d.size)
    q, lo, hi = fit_order(d, err, se)
    assert lo < 1.0 < hi and hi - lo < 0.6 and lo < q < hi
    with pytest.raises(ValueError, match="bad widths="):
        fit_order(d[:2], err[:2], se[:2])


@pytest.mark.parametrize("snr", [30.0, 2.0])
def test_fit_order_interval_has_its_coverage(snr):
    """The 95% profile-likelihood interval of ``fit_order`` covers the true order in 95% of
    synthetic data sets ``0.05 d^-1 + noise`` with known SEs (3 widths, as in the default run),
    both when the errors are resolved (``snr`` = signal / SE at d = 8 is 30) and when they are
    barely (2: the interval then often runs to an end of the searched range, reported as
    infinite).  300 data sets: the coverage's SE is 0.0126, the band +-4 SE.  Planted: a chi^2
    threshold of 1 (a 68% interval) covers 0.69 and 0.68: caught.  (The covariance-based Wald
    interval of the previous version covered 0.95 and 0.99, but at snr = 2 with finite, absurd
    ends such as [-90, 100] instead of saying that the order is not bounded.)"""
    from dlnsim.analysis.particles_vs_pde import fit_order

    rng = np.random.default_rng(11)
    d = np.array([8.0, 16.0, 32.0])
    truth = 0.05 / d
    se = truth[0] / snr * np.sqrt(8.0 / d)  # the member scaling: SE ~ d^-1/2
    hits = unbounded = 0
    for _ in range(300):
        q, lo, hi = fit_order(d, truth + se * rng.standard_normal(d.size), se)
        assert lo <= q <= hi
        hits += lo <= 1.0 <= hi
        unbounded += math.isinf(lo) or math.isinf(hi)
    assert abs(hits / 300 - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / 300)
    if snr > 10:  # resolved: a bounded, narrow interval
        assert unbounded == 0
    else:
        assert unbounded > 30


def test_fit_order_reports_an_unbounded_interval_for_noise_and_rejects_bad_input():
    """Pure noise (errors ~ N(0, se)): no order is excluded on at least one side."""
    from dlnsim.analysis.particles_vs_pde import fit_order

    rng = np.random.default_rng(3)
    d = np.array([8.0, 16.0, 32.0, 64.0])
    for _ in range(20):
        q, lo, hi = fit_order(d, 0.01 * rng.standard_normal(4), np.full(4, 0.01))
        assert math.isinf(lo) or math.isinf(hi)
    for kwargs, name in (
        (dict(d=d, err=d * 0, se=-d), "se"),
        (dict(d=d, err=d * np.nan, se=d), "err"),
        (dict(d=np.ones(4), err=d, se=d), "widths"),
        (dict(d=d, err=d, se=d, q_range=(2, 1)), "q_range"),
    ):
        with pytest.raises(ValueError, match=f"bad {name}="):
            fit_order(**kwargs)


def test_member_noise_is_the_w1_floor_of_correlated_members():
    """``member_noise``'s floor is E[W1] under "same law" and its SE bounds the spread of W1,
    for members whose samples are (a) independent and (b) strongly correlated (each member: 16
    stratified draws, one per 1/16 quantile bin, as rigid as repelling particles).  Truth: the
    mean and std of W1 over 400 independent repetitions.  The floor is a central-limit (over
    members) approximation: measured 2-5% low at 20 members (the CDF's noise near 0 and 1 is
    skewed), so the tolerance is 10% relative; the jackknife SE is conservative (measured 1.35x
    to 1.5x the true std), so the band is [0.9, 1.8] std.  The floor of (b) is ~3x below that of
    independent draws: the i.i.d. floor would be wrong by that factor.  Planted: dropping the
    1/M in the pooled variance (floor x 4.5): caught."""
    from dlnsim.analysis.meanfield_compare import member_noise

    rng = np.random.default_rng(8)
    edges = np.linspace(0.5, 1.5, 201)
    centres = 0.5 * (edges[1:] + edges[:-1])
    masses = np.exp(-0.5 * ((centres - 1.0) / 0.1) ** 2)
    masses /= masses.sum()
    cdf = np.concatenate(([0.0], np.cumsum(masses)))
    m, k = 20, 16

    def draw(stratified):
        u = rng.random((m, k))
        if stratified:
            u = (np.arange(k)[None, :] + u) / k
        return np.interp(u, cdf, edges)

    floor_of = {}
    for stratified in (False, True):
        w1 = [wasserstein_to_density(edges, masses, draw(stratified)) for _ in range(400)]
        mean, std = float(np.mean(w1)), float(np.std(w1))
        floors, ses = np.array([member_noise(edges, masses, draw(stratified)) for _ in range(40)]).T
        assert floors.mean() == pytest.approx(mean, rel=0.1)
        assert 0.9 * std <= ses.mean() <= 1.8 * std
        floor_of[stratified] = floors.mean()
    assert floor_of[True] < 0.5 * floor_of[False]
    with pytest.raises(ValueError, match="bad members="):
        member_noise(edges, masses, np.ones(5))


@pytest.mark.parametrize("depth", [4, math.inf])
def test_meanfield_force_is_the_drift_whose_stationary_law_is_the_equilibrium(depth):
    """The control particles' drift (``_meanfield_force``: the pair sum replaced by d - 1 times
    the average over f, through psi_N') against the equilibrium density itself: a stationary
    law of the one-particle step in u has ``d log f / d rho = -beta (force - 1/(N beta))`` (the
    chart term is 0 at N = inf), here by central differences of log f on the equilibrium grid
    (an O(h^2) truth from ``meanfield.equilibrium``'s Picard iteration, which evaluates psi_N,
    not psi_N').  Planted: W x 1.01, the linear (1 - 1/N) term dropped, or the chart term added
    to the force each fail by at least 10x the tolerance."""
    from dlnsim.analysis.particles_vs_pde import _meanfield_force
    from dlnsim.meanfield import equilibrium

    model = Model(16, depth, 16.0, Schatten(2.0))
    eq = equilibrium(model)
    x, force = _meanfield_force(model, eq)
    h = x[1] - x[0]
    jac = 0.0 if depth == math.inf else 1.0 / (depth * model.beta)
    near = np.flatnonzero(np.abs(x - math.log(model.equilibrium())) < 0.5)  # +-5 std
    log_f = np.log((eq.density * eq.cell_width).values[near[0] - 1 : near[-1] + 2])
    slope = (log_f[2:] - log_f[:-2]) / (2 * h)
    scale = np.abs(force[near]).max()
    err = np.abs(-slope / model.beta + jac - force[near]).max() / scale
    assert err < 1e-4, err


@pytest.mark.slow
def test_moment_comparison_resolves_the_variance_order_at_the_default_run(tmp_path):
    """The default run's moment comparison (d = 8, 16, 32, beta = d, N = 4, p = 2, 16 members
    at d = 32: ``MeanfieldParams``' moment defaults) resolves the order of the variance error:
    a finite 95% profile interval that contains 1 (theory.md 11: order 1).  Measured at seed 0:
    q = 1.23, CI [0.82, 1.69]; the raw particle moments alone give SEs 4-13x larger.

    Independent truths checked on the same run (each for the particles and for the control,
    the mean-field particles driven by the same noise):

    - the virial identity E[sigma e'(sigma)] = E[sigma^2] = c + 1/(N beta), exact for the
      particles' Gibbs law and for every stationary mean-field density (meanfield.equilibrium's
      docstring), to the Euler-Maruyama O(dt) bias (<= 0.5% at dt = 2e-3) + 4 SE: a control
      with W x 1.1 moves it by ~2% at d = 32 and fails;
    - the control's E[sigma] against the PDE equilibrium's, to 0.5% + 4 SE;
    - the coupled estimate of E[sigma] against the uncoupled one (4 SE).

    Planted: a control with W x 1.02 fails the coupled-vs-uncoupled mean (4.9 SE at d = 32; the
    order alone still passes: 1.02, CI [0.64, 1.42]); W x 1.1 also fails the order (CI [0.08,
    0.85])."""
    from dlnsim.analysis.experiments.meanfield import MeanfieldParams
    from dlnsim.analysis.particles_vs_pde import moment_comparison
    from dlnsim.analysis.plots import moment_comparison_figure
    from dlnsim.meanfield import equilibrium
    from dlnsim.particles.datasets import load, save

    prm = MeanfieldParams()
    ds = moment_comparison(
        widths=prm.moment_widths, b=prm.b, depth=prm.depth, p=prm.p,
        members=prm.moment_members, dt=prm.moment_dt, seed=prm.seed,
    )  # fmt: skip
    lo, hi = ds.attrs["var_order_low"], ds.attrs["var_order_high"]
    assert math.isfinite(lo) and math.isfinite(hi) and lo < 1.0 < hi, (lo, hi)
    assert np.all(ds.var_error > 0) and np.all(ds.var_error_se > 0)
    np.testing.assert_array_equal(ds.members, [64, 32, 16])
    for d in ds.width.values:
        v = ds.sel(width=d)
        exact = Model(int(d), prm.depth, prm.b * d, Schatten(prm.p)).entropic_force + 1.0 / (
            prm.depth * prm.b * d
        )
        for kind in ("particles_raw", "control"):
            mean, var = float(v[f"mean_{kind}"]), float(v[f"var_{kind}"])
            se = float(v[f"var_{kind}_se"]) + 2 * mean * float(v[f"mean_{kind}_se"])
            assert abs(var + mean * mean - exact) <= 5e-3 * exact + 4 * se, (d, kind)
        assert abs(float(v.mean_control / v.mean_pde) - 1) <= 5e-3 + 4 * float(
            v.mean_control_se / v.mean_pde
        )
        assert abs(float(v.mean_particles - v.mean_particles_raw)) <= 4 * float(
            v.mean_particles_raw_se
        )
    assert ds.mean_error_se.max() < 0.01 and ds.var_error_se.max() < 0.01
    assert len(moment_comparison_figure(ds).axes) == 1
    eq = equilibrium(Model(16, 4, 16.0, Schatten(2.0)))
    assert float(ds.mean_pde.sel(width=16)) == pytest.approx(float(eq.sigma_mean), rel=1e-12)
    xr.testing.assert_allclose(load(save(ds, tmp_path / "m.nc")), ds)


def test_coupled_moments_are_seeded_and_bad_input_is_refused():
    """The coupled run (particles and control on the same normals) is a function of its seed:
    equal twice, different for another seed; both systems start at the same state and take
    the same normals, so over a short run their moments agree closely.  Bad arguments are
    refused naming them (before any computation)."""
    from dlnsim.analysis.particles_vs_pde import _coupled_moments, moment_comparison
    from dlnsim.meanfield import equilibrium

    model = Model(8, 4, 8.0, Schatten(2.0))
    eq = equilibrium(model)
    a = _coupled_moments(model, eq, 4, 2e-3, 0.01, 0.05, seed=3)
    np.testing.assert_array_equal(a, _coupled_moments(model, eq, 4, 2e-3, 0.01, 0.05, seed=3))
    assert not np.array_equal(a, _coupled_moments(model, eq, 4, 2e-3, 0.01, 0.05, seed=4))
    assert a.shape == (4, 4) and np.all(np.isfinite(a))
    # the same start and noise: after 0.05 time units the two systems differ by ~ r/d, not O(1)
    np.testing.assert_allclose(a[0], a[2], rtol=0.02)
    # the two-term fit of the variance error recovers exact synthetic coefficients
    from dlnsim.analysis.particles_vs_pde import _amplitude_attrs

    d = np.array([8.0, 16.0, 32.0, 64.0])
    fit = _amplitude_attrs(d, 0.3 * (d - 1) / d**2 + 1.5 / d**2, 1e-3 / d, 4, 2.0)
    assert fit["var_amplitude"] == pytest.approx(0.3, rel=1e-9)
    assert fit["var_d2"] == pytest.approx(1.5, rel=1e-9) and fit["var_fit_chi2"] < 1e-12
    assert fit["var_amplitude_theory"] == pytest.approx((5 / 24) ** 2 / (19 / 24), rel=1e-14)
    with pytest.raises(ValueError, match="bad widths="):
        moment_comparison(widths=(8, 16, 32), depth=math.inf)
    with pytest.raises(ValueError, match="bad t_end="):
        moment_comparison(widths=(4, 6, 8), t_burn=1.0, t_end=1.0)
    with pytest.raises(ValueError, match="bad depth="):
        moment_comparison(widths=(4, 6, 8), depth=1)
    with pytest.raises(ValueError, match="bad members="):
        moment_comparison(widths=(4, 6, 8), members=3)


@pytest.mark.slow
def test_cli_meanfield_with_infinite_depth(tmp_path):
    """``dlnsim meanfield --depth inf`` runs (d >= 4), and d <= 3 is refused naming the cause."""
    from dlnsim.analysis.cli import main
    from dlnsim.particles.datasets import load

    out = tmp_path / "o"
    args = ["meanfield", "--depth", "inf", "--widths", "4,8", "--n-samples", "64"]
    args += ["--times", "0,0.1", "--moment-widths", "16,32,64", "--moment-members", "4"]
    assert main([*args, "--out", str(out)]) == 0
    ds = load(out / "meanfield.nc")
    assert ds.attrs["depth"] == "inf" and "tau" in ds.time.attrs["long_name"]
    assert load(out / "meanfield_moments.nc").attrs["depth"] == "inf"
    assert (out / "meanfield_moments.png").is_file()
    assert main(["meanfield", "--depth", "inf", "--widths", "3,8", "--out", str(out)]) == 2
