"""Validation of ``analysis.repulsion`` on exact samples (fixed seeds).

Ensembles: i.i.d. Gaussian points (Poisson null, gamma = 0) and the Gaussian beta-ensembles
b = 1, 2, 4 (GOE, GUE, GSE), sampled exactly by ``particles.rmt``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from dlnsim.analysis.repulsion import (
    mean_spacing_ratio,
    poisson_spacing,
    published_mean_ratio,
    repulsion_exponent,
    small_spacing_fraction,
    spacing_ratios,
    spacings,
    surmise_mean_ratio,
    wigner_surmise,
)
from dlnsim.particles.rmt import gaussian_beta_ensemble, independent_samples

ENSEMBLES = {"poisson": 0, "goe": 1, "gue": 2, "gse": 4}


def _sample(name: str, n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "poisson":
        return independent_samples(lambda t: np.exp(-0.5 * t * t), (-8.0, 8.0), n, size, rng)
    return gaussian_beta_ensemble(n, float(ENSEMBLES[name]), size, rng)


# ----------------------------------------------------------------------------------------------
# repulsion exponent
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moderate_samples() -> dict[str, np.ndarray]:
    """n_points = 50, n_samples = 4000 for each ensemble."""
    return {name: _sample(name, 50, 4000, seed=2024 + b) for name, b in ENSEMBLES.items()}


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_repulsion_exponent_recovers_dyson_index(
    moderate_samples: dict[str, np.ndarray], name: str
) -> None:
    """The 95% bootstrap CI contains the exact exponent b and excludes the neighbouring classes.

    Measured over 20-60 independent seeds (n_points = 20 and 50): bias < 0.2 SE, empirical
    coverage of the 95% interval 82-100% per ensemble (93% overall), so a single fixed-seed
    check is a fair test (measured here: 0.008 (-0.012, 0.029), 0.968 (0.895, 1.035),
    1.899 (1.753, 2.045), 4.052 (3.600, 4.529)).  The half-widths at this size are
    ~0.02 / 0.07 / 0.15 / 0.46 for b = 0/1/2/4, hence 'excludes the neighbour' (distance
    >= 1) is a check of resolving power, not luck.
    """
    b = ENSEMBLES[name]
    gamma, (lo, hi) = repulsion_exponent(moderate_samples[name])
    assert lo <= b <= hi, (name, gamma, lo, hi)
    assert lo < gamma < hi
    neighbours = {"poisson": [1], "goe": [0, 2], "gue": [1, 4], "gse": [2]}[name]
    for other in neighbours:
        assert not lo <= other <= hi, (name, other, lo, hi)


def test_repulsion_exponent_small_systems_and_reproducible() -> None:
    """n_points = 20, n_samples = 2000 (GUE): still covers 2, and a fixed seed is reproducible."""
    x = _sample("gue", 20, 2000, seed=77)
    first = repulsion_exponent(x, n_boot=200)
    assert first == repulsion_exponent(x, n_boot=200)
    gamma, (lo, hi) = first
    assert lo <= 2.0 <= hi, first
    assert hi - lo < 1.5


def test_estimator_corrects_the_log_log_slope_bias(moderate_samples: dict[str, np.ndarray]) -> None:
    """Why a likelihood with corrections: on the same GSE spacings (bulk), the naive log-log
    slope of the small-s CDF between its 5% and 50% quantiles is far off, because
    F(s) ~ s^{b+1} (1 - c s^2 + ...) bends down, while ``repulsion_exponent`` on these samples
    covers b = 4 and excludes the naive value (the estimator absorbs the correction)."""
    x = moderate_samples["gse"][:, 5:-5]
    s = spacings(moderate_samples["gse"])[:, 5:-5].ravel()
    t = np.quantile(s, [0.05, 0.5])
    naive = math.log(0.5 / 0.05) / math.log(t[1] / t[0]) - 1.0
    assert naive < 3.0  # measured 2.45: underestimates gamma = 4 by more than 1
    gamma, (lo, hi) = repulsion_exponent(x, n_boot=200)
    assert lo <= 4.0 <= hi and not lo <= naive <= hi, (naive, gamma, lo, hi)


# ----------------------------------------------------------------------------------------------
# spacing ratios
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_mean_ratio_matches_published(name: str) -> None:
    """<r> over the central half of n_points = 200 (1000 samples) within 3 SE of Atas et al.

    SE (from row means, ~0.001) is the only tolerance.  Finite-n bias at n_points = 200 (bulk
    half), measured with 12000 samples: -0.0002 (GOE), +0.0006 (GUE), +0.0003 (GSE), i.e.
    below 0.6 SE; the published values themselves carry +-0.0001.  Poisson is exact for any n.
    Power: 3 SE ~ 0.0025, i.e. a 0.4% bias of <r> is detected.  GSE sits at z = +2.69 here
    (seed 35): chance, not a bias.  This exact check (n_points = 200, 1000 samples, bulk half)
    rerun with seeds 0-232 (233000 samples) gives z values of mean +0.085 +- 0.067 and sd 1.02
    (KS against N(0, 1): p = 0.19); |z| >= 2.69 once (1.7 expected); pooled <r> = 0.67447 +-
    0.00005 against 0.6744 +- 0.0001 (published), so no bias above ~0.00015 = 0.2 SE of one
    run.  The largest, seed 37 (z = +3.95), has normal-looking row means (no outlier row, both
    halves high); P(max of 233 normals >= 3.95) = 0.9%.
    """
    x = _sample(name, 200, 1000, seed=31 + ENSEMBLES[name])
    mean, se = mean_spacing_ratio(x, bulk=0.5)
    assert 0.0005 < se < 0.002
    assert abs(mean - published_mean_ratio[name]) < 3 * se, (name, mean, se)
    if name == "goe":
        # the 3x3 surmise value (0.5359) is ~0.005 = 5 SE too high: it is not the large-N value
        assert abs(mean - surmise_mean_ratio["goe"]) > 3 * se


def test_surmise_ratio_values_by_quadrature() -> None:
    """Atas et al. surmise P(r) ∝ (r + r^2)^b / (1 + r + r^2)^{1 + 3b/2} on (0, inf); it is
    invariant under r -> 1/r (with Jacobian), so <min(r, 1/r)> = ∫_0^1 r P / ∫_0^1 P.
    Poisson: P(r) = 1/(1 + r)^2, <r~> = 2 ln 2 - 1."""
    for name, b in [("goe", 1), ("gue", 2), ("gse", 4)]:

        def p(r: float, b: int = b) -> float:
            return (r + r * r) ** b / (1 + r + r * r) ** (1 + 1.5 * b)

        num = quad(lambda r, p=p: r * p(r), 0, 1, epsabs=0, epsrel=1e-13)[0]
        den = quad(p, 0, 1, epsabs=0, epsrel=1e-13)[0]
        assert num / den == pytest.approx(surmise_mean_ratio[name], abs=1e-12)
        # the large-N values lie 0.002-0.006 below the surmise (Atas et al., Table I)
        assert 0.001 < surmise_mean_ratio[name] - published_mean_ratio[name] < 0.006
    num = quad(lambda r: r / (1 + r) ** 2, 0, 1, epsabs=0, epsrel=1e-13)[0]
    den = quad(lambda r: 1 / (1 + r) ** 2, 0, 1, epsabs=0, epsrel=1e-13)[0]
    assert num / den == pytest.approx(published_mean_ratio["poisson"], abs=1e-12)
    assert published_mean_ratio["poisson"] == pytest.approx(0.3862943611198906, abs=1e-15)
    assert surmise_mean_ratio["goe"] == pytest.approx(0.53590, abs=1e-5)
    assert surmise_mean_ratio["gue"] == pytest.approx(0.60266, abs=1e-5)
    assert surmise_mean_ratio["gse"] == pytest.approx(0.67617, abs=1e-5)


def test_spacing_ratios_by_hand() -> None:
    x = np.array([[4.0, 0.0, 1.0, 3.0], [0.0, 1.0, 2.0, 3.0]])  # first row unsorted on purpose
    np.testing.assert_allclose(spacing_ratios(x), [[0.5, 0.5], [1.0, 1.0]])
    mean, se = mean_spacing_ratio(x)
    assert mean == pytest.approx(0.75)
    # row means 0.5 and 1.0: std (ddof=1) = 0.35355, / sqrt(2)
    assert se == pytest.approx(0.25)
    r = spacing_ratios(_sample("gue", 30, 10, seed=1))
    assert r.shape == (10, 28) and np.all((r >= 0) & (r <= 1))


# ----------------------------------------------------------------------------------------------
# spacings and unfolding
# ----------------------------------------------------------------------------------------------
def test_unfolded_spacings_have_unit_local_mean(moderate_samples: dict[str, np.ndarray]) -> None:
    """After unfolding the mean spacing is ~1 both in the bulk and near the edges, although the
    raw density varies by a factor > 3 (semicircle).  Tolerance 0.05: SE of these means is
    < 0.01 (>= 40000 spacings, sd < 1), the rest is KDE smoothing bias at the soft edges."""
    x = moderate_samples["gue"]
    s = spacings(x)
    assert s.shape == (4000, 49)
    assert abs(s.mean() - 1) < 0.05
    assert abs(s[:, 20:29].mean() - 1) < 0.05
    assert abs(s[:, 3:8].mean() - 1) < 0.05
    raw = spacings(x, unfold=False)
    assert raw.mean() == pytest.approx(1.0, abs=1e-12)
    assert raw[:, 3:8].mean() / raw[:, 20:29].mean() > 1.3
    # unsorted rows are sorted first
    rng = np.random.default_rng(0)
    shuffled = rng.permuted(x[:50], axis=1)
    np.testing.assert_allclose(spacings(shuffled, unfold=False), spacings(x[:50], unfold=False))


def test_unfolded_gue_spacings_follow_surmise(moderate_samples: dict[str, np.ndarray]) -> None:
    """The bulk spacing histogram of GUE is within 0.05 (L1) of the b = 2 surmise (the exact
    large-N law differs from the surmise by ~0.01 in L1; histogram noise ~0.02)."""
    s = spacings(moderate_samples["gue"])[:, 10:-10].ravel()
    edges = np.linspace(0, 3, 31)
    hist, _ = np.histogram(s, bins=edges, density=False)
    hist = hist / s.size / np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    l1 = np.sum(np.abs(hist - wigner_surmise(mid, 2)) * np.diff(edges))
    assert l1 < 0.05, l1


def test_small_spacing_fraction() -> None:
    assert small_spacing_fraction([0.05, 0.2, 0.09, 1.0]) == 0.5
    assert small_spacing_fraction([0.05, 0.2], threshold=0.3) == 1.0
    x = _sample("poisson", 50, 2000, seed=5)
    frac = small_spacing_fraction(spacings(x)[:, 10:-10])
    # 1 - e^{-0.1} = 0.0952; binomial SE sqrt(p(1-p)/58000) = 0.0012; allow 4 SE + 0.005 for
    # the KDE unfolding of a finite sample
    assert abs(frac - (1 - math.exp(-0.1))) < 4 * 0.0012 + 0.005


# ----------------------------------------------------------------------------------------------
# reference densities
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0])
def test_wigner_surmise_normalised_with_unit_mean(b: float) -> None:
    mass = quad(lambda s: float(wigner_surmise(s, b)), 0, np.inf, epsabs=1e-13)[0]
    mean = quad(lambda s: s * float(wigner_surmise(s, b)), 0, np.inf, epsabs=1e-13)[0]
    assert mass == pytest.approx(1.0, abs=1e-10)
    assert mean == pytest.approx(1.0, abs=1e-10)


def test_wigner_surmise_closed_forms() -> None:
    s = np.linspace(0, 4, 41)
    pi = math.pi
    np.testing.assert_allclose(wigner_surmise(s, 1), pi / 2 * s * np.exp(-pi * s**2 / 4))
    np.testing.assert_allclose(wigner_surmise(s, 2), 32 / pi**2 * s**2 * np.exp(-4 * s**2 / pi))
    np.testing.assert_allclose(
        wigner_surmise(s, 4), 2**18 / (3**6 * pi**3) * s**4 * np.exp(-64 * s**2 / (9 * pi))
    )
    assert wigner_surmise(-1.0, 2) == 0.0
    np.testing.assert_allclose(poisson_spacing(s), np.exp(-s))
    assert poisson_spacing(-0.5) == 0.0
    assert quad(lambda t: float(poisson_spacing(t)), 0, np.inf)[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------
# argument validation
# ----------------------------------------------------------------------------------------------
_GOOD = np.sort(np.random.default_rng(0).standard_normal((20, 10)), axis=1)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: spacings(np.ones((3, 1))), "samples"),
        (lambda: spacings(np.ones((2, 3, 4))), "samples"),
        (lambda: spacings([[0.0, np.nan, 1.0]]), "samples"),
        (lambda: spacings("abc"), "samples"),
        (lambda: spacings(np.ones((3, 5))), "samples"),
        (lambda: spacings(_GOOD, unfold="yes"), "unfold"),
        (lambda: spacing_ratios(np.ones((3, 2))), "samples"),
        (lambda: spacing_ratios([[0.0, 0.0, 0.0]]), "samples"),
        (lambda: mean_spacing_ratio(_GOOD[:1]), "samples"),
        (lambda: mean_spacing_ratio(_GOOD, bulk=0.0), "bulk"),
        (lambda: mean_spacing_ratio(_GOOD, bulk=1.5), "bulk"),
        (lambda: repulsion_exponent(_GOOD, bulk=-0.1), "bulk"),
        (lambda: repulsion_exponent(_GOOD, quantile=2.0), "quantile"),
        (lambda: repulsion_exponent(_GOOD, n_boot=5), "n_boot"),
        (lambda: repulsion_exponent(_GOOD, confidence=1.0), "confidence"),
        (lambda: repulsion_exponent(_GOOD, seed=-1), "seed"),
        (lambda: repulsion_exponent(_GOOD, seed=1.5), "seed"),
        (lambda: repulsion_exponent(_GOOD, unfold=None), "unfold"),
        (lambda: repulsion_exponent(_GOOD[:3, :4]), "samples"),  # too few small spacings
        (lambda: small_spacing_fraction([0.1, -0.2]), "spacings"),
        (lambda: small_spacing_fraction([]), "spacings"),
        (lambda: small_spacing_fraction([0.1], threshold=0.0), "threshold"),
        (lambda: wigner_surmise(1.0, -1.0), "b"),
        (lambda: wigner_surmise(np.nan, 1.0), "s"),
        (lambda: wigner_surmise("x", 1.0), "s"),
        (lambda: poisson_spacing([np.nan]), "s"),
    ],
)
def test_bad_arguments(call, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad {name}="):
        call()


def test_interval_level_is_the_requested_confidence() -> None:
    """The interval is the central ``confidence`` quantile range of the bootstrap: for a near
    normal bootstrap the 95% width over the 68.27% width is 1.96 (a one-sided 95% interval,
    alpha = 1 - confidence, would give 1.645 / 0.47 = 3.5).  Same seed, so same replicates."""
    x = _sample("gue", 20, 2000, seed=78)
    _, (lo95, hi95) = repulsion_exponent(x, n_boot=1000, seed=5, confidence=0.95)
    _, (lo68, hi68) = repulsion_exponent(x, n_boot=1000, seed=5, confidence=0.6827)
    ratio = (hi95 - lo95) / (hi68 - lo68)
    assert 1.7 < ratio < 2.3, ratio
