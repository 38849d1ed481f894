r"""Level-repulsion statistics of point configurations (theory.md section 10).

Input everywhere is ``samples`` of shape ``(n_samples, n_points)``: independent configurations
(rows) of ``n_points`` real particles each (e.g. eigenvalues, singular values, or their logs).

* ``spacings``: nearest-neighbour spacings, unfolded by the smoothed pooled mean density.
* ``spacing_ratios`` / ``mean_spacing_ratio``: the unfolding-free ratio ``r = min/max`` of two
  consecutive spacings (Oganesyan-Huse; Atas et al. 2013) and its mean with a row-level error.
* ``repulsion_exponent``: the exponent ``gamma`` in ``p(s) ~ s^gamma`` (``s -> 0``) by maximum
  likelihood on the small spacings, with a row-bootstrap confidence interval.
* ``wigner_surmise``, ``poisson_spacing``: reference spacing densities with mean 1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammaln, roots_laguerre

from dlnsim.particles.validation import check_bool, check_integer, check_positive, fail

__all__ = [
    "mean_spacing_ratio",
    "poisson_spacing",
    "published_mean_ratio",
    "repulsion_exponent",
    "small_spacing_fraction",
    "spacing_ratios",
    "spacings",
    "surmise_mean_ratio",
    "wigner_surmise",
]

# Mean ratio <r> of consecutive spacings, r = min(s_n, s_{n+1}) / max(s_n, s_{n+1}).
# Source: Y. Y. Atas, E. Bogomolny, O. Giraud, G. Roux, "Distribution of the ratio of
# consecutive level spacings in random matrix ensembles", Phys. Rev. Lett. 110, 084101 (2013),
# Table I.  Poisson: exact, <r> = 2 ln 2 - 1.  GOE/GUE/GSE: their large-N numerical values
# 0.5307(1), 0.5996(1), 0.6744(1) (bulk of large matrices).  Checked here against exact
# Gaussian beta-ensemble samples with n_points = 300 (tests/test_repulsion.py).
published_mean_ratio: dict[str, float] = {
    "poisson": 2.0 * math.log(2.0) - 1.0,  # 0.386294...
    "goe": 0.5307,
    "gue": 0.5996,
    "gse": 0.6744,
}

# The Wigner-like surmise of the same paper (exact for 3 x 3 matrices), for comparison only:
# <r>_W = 4 - 2 sqrt(3) (GOE), 2 sqrt(3)/pi - 1/2 (GUE), 32/15 sqrt(3)/pi - 1/2 (GSE).  These are
# ~0.005 above the large-N values and must not be used as the N -> infinity reference.
surmise_mean_ratio: dict[str, float] = {
    "poisson": 2.0 * math.log(2.0) - 1.0,
    "goe": 4.0 - 2.0 * math.sqrt(3.0),  # 0.535898...
    "gue": 2.0 * math.sqrt(3.0) / math.pi - 0.5,  # 0.602658...
    "gse": 32.0 / 15.0 * math.sqrt(3.0) / math.pi - 0.5,  # 0.676168...
}

# Gauss-Laguerre rule used for the normalisation of the truncated small-spacing model.
_LAGUERRE_NODES, _LAGUERRE_WEIGHTS = roots_laguerre(100)
_LOG_LAGUERRE_WEIGHTS = np.log(_LAGUERRE_WEIGHTS)


# ----------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------
def _as_samples(samples: object, min_points: int, min_samples: int = 1) -> np.ndarray:
    """A float64 ``(n_samples, n_points)`` copy with each row sorted ascending (1-D = one row)."""
    try:
        x = np.array(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("samples", samples, "must be an array of real numbers") from None
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2:
        raise fail("samples", f"<array of shape {x.shape}>", "must be 2-D (n_samples, n_points)")
    if x.shape[1] < min_points:
        raise fail("samples", f"<array of shape {x.shape}>", f"needs n_points >= {min_points}")
    if x.shape[0] < min_samples:
        raise fail("samples", f"<array of shape {x.shape}>", f"needs n_samples >= {min_samples}")
    if not np.all(np.isfinite(x)):
        raise fail("samples", "<array>", "must be finite")
    x.sort(axis=1)
    return x


def _check_fraction(value: object, name: str) -> float:
    v = check_positive(value, name)
    if v > 1.0:
        raise fail(name, value, "must lie in (0, 1]")
    return v


def _bulk_slice(length: int, bulk: float) -> slice:
    """The central ``round(bulk * length)`` (at least 1) indices of ``range(length)``."""
    keep = min(length, max(1, round(bulk * length)))
    start = (length - keep) // 2
    return slice(start, start + keep)


# ----------------------------------------------------------------------------------------------
# spacings and unfolding
# ----------------------------------------------------------------------------------------------
def _smoothed_cdf(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and values of the Gaussian-KDE CDF of ``points`` (Silverman bandwidth).

    ``F(x) = mean_i Phi((x - x_i) / h)``, ``h = 0.9 min(sd, IQR/1.34) N^{-1/5}``, computed by
    binning on a grid of width ``h/8`` and FFT convolution with the sampled Gaussian kernel; the
    binning perturbs ``F`` by at most one bin (``h/8``) in ``x``.  ``F`` is linear between nodes.
    """
    n = points.size
    sd = float(np.std(points))
    q75, q25 = np.percentile(points, [75.0, 25.0])
    spread = min(sd, (q75 - q25) / 1.34) if q75 > q25 else sd
    if not spread > 0:
        raise fail("samples", "<array>", "all points coincide; cannot unfold")
    h = 0.9 * spread * n ** (-0.2)
    lo, hi = float(points.min()) - 6.0 * h, float(points.max()) + 6.0 * h
    width = max(h / 8.0, (hi - lo) / 200_000)
    n_bins = int(math.ceil((hi - lo) / width))
    edges = lo + width * np.arange(n_bins + 1)
    counts = np.bincount(
        np.clip(((points - lo) / width).astype(np.int64), 0, n_bins - 1), minlength=n_bins
    ).astype(np.float64)
    half = int(math.ceil(6.0 * h / width))
    offsets = width * np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / h) ** 2)
    kernel /= kernel.sum()
    smooth = np.clip(fftconvolve(counts, kernel, mode="same"), 0.0, None)
    cdf = np.concatenate(([0.0], np.cumsum(smooth)))
    return edges, cdf / cdf[-1]


def _unfolded_positions(x: np.ndarray) -> np.ndarray:
    edges, cdf = _smoothed_cdf(x.ravel())
    return x.shape[1] * np.interp(x, edges, cdf)


def spacings(samples: object, unfold: bool = True) -> np.ndarray:
    r"""Nearest-neighbour spacings of each (sorted) row, shape ``(n_samples, n_points - 1)``.

    ``unfold=True``: every point is mapped to ``xi = n_points F(x)``, where ``F`` is the smoothed
    CDF of *all* points pooled (Gaussian KDE, Silverman bandwidth ``0.9 min(sd, IQR/1.34)
    N^{-1/5}``, binned with bin width ``h/8``), and ``s_i = xi_{i+1} - xi_i``.  Since
    ``F' = rho/n_points`` is the mean one-point density, the local mean spacing is ~1 everywhere.
    ``unfold=False``: raw spacings ``x_{i+1} - x_i`` divided by their global mean.

    Parameters
    ----------
    samples : array_like
        Point configurations, shape ``(n_samples, n_points)`` (a 1-D array is one sample);
        each row is sorted before use.
    unfold : bool, default True
        Unfold with the pooled smoothed CDF (else divide by the global mean spacing).

    Returns
    -------
    numpy.ndarray
        ``(n_samples, n_points - 1)`` spacings, mean ~1.

    Raises
    ------
    ValueError
        For samples that are not finite reals with at least 2 points, or all coincide.
    """
    unfold = check_bool(unfold, "unfold")
    x = _as_samples(samples, min_points=2)
    if unfold:
        return np.diff(_unfolded_positions(x), axis=1)
    raw = np.diff(x, axis=1)
    mean = raw.mean()
    if not mean > 0:
        raise fail("samples", "<array>", "all points coincide; mean spacing is 0")
    return raw / mean


def _ratios(x: np.ndarray) -> np.ndarray:
    s = np.diff(x, axis=1)
    lo = np.minimum(s[:, :-1], s[:, 1:])
    hi = np.maximum(s[:, :-1], s[:, 1:])
    if np.any(hi <= 0):
        raise fail("samples", "<array>", "three coincident points make a spacing ratio 0/0")
    return lo / hi


def spacing_ratios(samples: object) -> np.ndarray:
    r"""``r_n = min(s_n, s_{n+1}) / max(s_n, s_{n+1})`` of consecutive raw spacings of each sorted
    row, shape ``(n_samples, n_points - 2)``, values in ``[0, 1]``.  Needs no unfolding.

    Parameters
    ----------
    samples : array_like
        Point configurations, shape ``(n_samples, n_points)`` (a 1-D array is one sample);
        each row is sorted before use.

    Returns
    -------
    numpy.ndarray
        ``(n_samples, n_points - 2)`` ratios in ``[0, 1]``.

    Raises
    ------
    ValueError
        For samples with fewer than 3 points, or three coincident points (ratio 0/0).
    """
    return _ratios(_as_samples(samples, min_points=3))


def mean_spacing_ratio(samples: object, *, bulk: float = 1.0) -> tuple[float, float]:
    r"""``(<r>, standard error)`` of the spacing ratio over the central ``bulk`` fraction of the
    ratios of every row.

    Ratios within a row are correlated, rows are independent: with ``m_k`` the mean ratio of row
    ``k`` (all rows contribute equally many ratios), ``<r> = mean_k m_k`` and
    ``SE = std(m_k, ddof=1) / sqrt(n_samples)``.  Needs ``n_samples >= 2``.  Reference values:
    Poisson 0.386, GOE 0.531, GUE 0.600, GSE 0.674 (``published_mean_ratio``).

    Parameters
    ----------
    samples : array_like
        Point configurations, shape ``(n_samples, n_points)`` (a 1-D array is one sample);
        each row is sorted before use.
    bulk : float, default 1.0
        Central fraction of each row's ratios used, in ``(0, 1]``.

    Returns
    -------
    (float, float)
        ``<r>`` and its standard error.

    Raises
    ------
    ValueError
        For fewer than 2 samples or 3 points, or ``bulk`` outside ``(0, 1]``.
    """
    bulk = _check_fraction(bulk, "bulk")
    x = _as_samples(samples, min_points=3, min_samples=2)
    r = _ratios(x)[:, _bulk_slice(x.shape[1] - 2, bulk)]
    row = r.mean(axis=1)
    return float(row.mean()), float(row.std(ddof=1) / math.sqrt(row.size))


def small_spacing_fraction(spacings: object, threshold: float = 0.1) -> float:
    """Fraction of the (unfolded, mean ~1) spacings strictly below ``threshold``.

    For ``p(s) ~ A s^gamma`` this is ``~ A threshold^(gamma+1) / (gamma+1)``; Poisson gives
    ``1 - exp(-threshold)``.

    Parameters
    ----------
    spacings : array_like
        Spacings (any shape), finite and ``>= 0``.
    threshold : float, default 0.1
        The cut, > 0.

    Returns
    -------
    float
        The fraction in ``[0, 1]``.

    Raises
    ------
    ValueError
        For empty, non-finite or negative spacings, or ``threshold <= 0``.
    """
    threshold = check_positive(threshold, "threshold")
    try:
        s = np.asarray(spacings, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise fail("spacings", spacings, "must be an array of real numbers") from None
    if s.size == 0:
        raise fail("spacings", spacings, "must be non-empty")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise fail("spacings", "<array>", "must be finite and >= 0")
    return float(np.mean(s < threshold))


# ----------------------------------------------------------------------------------------------
# reference densities
# ----------------------------------------------------------------------------------------------
def _as_real_array(s: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(s, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, s, "must be real numbers") from None
    if np.any(np.isnan(arr)):
        raise fail(name, s, "must not contain NaN")
    return arr


def wigner_surmise(s: object, b: float) -> np.ndarray:
    r"""Wigner surmise ``p_b(s) = a_b s^b exp(-c_b s^2)`` for ``s >= 0`` (0 for ``s < 0``).

    Normalised with mean 1: ``c_b = (Gamma((b+2)/2) / Gamma((b+1)/2))^2`` and
    ``a_b = 2 c_b^{(b+1)/2} / Gamma((b+1)/2)``; this is the exact spacing law of the
    ``n = 2`` Gaussian beta-ensemble rescaled to mean 1, for any ``b >= 0``.
    ``b = 1``: ``(pi/2) s e^{-pi s^2/4}``; ``b = 2``: ``(32/pi^2) s^2 e^{-4 s^2/pi}``;
    ``b = 4``: ``(2^18 / (3^6 pi^3)) s^4 e^{-64 s^2/(9 pi)}``.

    Parameters
    ----------
    s : array_like
        Spacings (any shape; NaN rejected).
    b : float
        Dyson index ``b >= 0``.

    Returns
    -------
    numpy.ndarray
        ``p_b(s)``, the shape of ``s``.

    Raises
    ------
    ValueError
        For ``b < 0`` or ``s`` containing NaN or non-numbers.
    """
    b = check_positive(b, "b", allow_zero=True)
    x = _as_real_array(s, "s")
    log_c = 2.0 * (gammaln((b + 2.0) / 2.0) - gammaln((b + 1.0) / 2.0))
    c = math.exp(log_c)
    log_a = math.log(2.0) + 0.5 * (b + 1.0) * log_c - gammaln((b + 1.0) / 2.0)
    pos = np.where(x > 0, x, 1.0)
    val = np.exp(log_a + b * np.log(pos) - c * pos * pos)
    if b == 0:
        val = np.where(x == 0, math.exp(log_a), val)
    else:
        val = np.where(x == 0, 0.0, val)
    return np.where(x < 0, 0.0, val)


def poisson_spacing(s: object) -> np.ndarray:
    """Spacing density of independent points with unit mean spacing: ``exp(-s)``, ``s >= 0``.

    Parameters
    ----------
    s : array_like
        Spacings (any shape; NaN rejected); the density is 0 for ``s < 0``.

    Returns
    -------
    numpy.ndarray
        ``exp(-s)``, the shape of ``s``.

    Raises
    ------
    ValueError
        For ``s`` containing NaN or non-numbers.
    """
    x = _as_real_array(s, "s")
    return np.where(x >= 0, np.exp(-np.abs(x)), 0.0)


# ----------------------------------------------------------------------------------------------
# repulsion exponent
# ----------------------------------------------------------------------------------------------
def _model_moments(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Moments of ``q(u) ∝ u^g exp(sum_{j=1}^m a_j u^j)`` on ``(0, 1]``.

    ``theta[..., :] = (g, a_1..a_m)``; returns ``log Z``, ``E[T]`` and ``Cov[T]`` with
    ``T = (log u, u, ..., u^m)``.

    ``Z = ∫_0^1 u^g G(u) du = 1/(g+1) ∫_0^∞ e^{-v} G(e^{-v/(g+1)}) dv`` with
    ``u = e^{-v/(g+1)}``; the 100-node Gauss-Laguerre rule is then accurate to ~1e-13 for
    ``g >= 0`` and moderate ``a_j`` (``log u = -v/(g+1)`` is polynomial in ``v``).
    """
    m = theta.shape[-1] - 1
    g1 = theta[..., 0:1] + 1.0
    log_u = -_LAGUERRE_NODES / g1
    u = np.exp(log_u)
    powers = np.stack([u**j for j in range(1, m + 1)], axis=-1)
    logw = _LOG_LAGUERRE_WEIGHTS + np.einsum("...jk,...k->...j", powers, theta[..., 1:])
    top = logw.max(axis=-1, keepdims=True)
    w = np.exp(logw - top)
    z = w.sum(axis=-1, keepdims=True)
    log_z = (np.log(z) + top)[..., 0] - np.log(g1[..., 0])
    p = w / z
    t = np.concatenate((log_u[..., np.newaxis], powers), axis=-1)
    mean = np.einsum("...j,...jk->...k", p, t)
    dt = t - mean[..., np.newaxis, :]
    cov = np.einsum("...j,...jk,...jl->...kl", p, dt, dt)
    return log_z, mean, cov


def _fit_truncated(tbar: np.ndarray, theta0: np.ndarray, max_iter: int = 100) -> np.ndarray:
    r"""Maximum-likelihood ``theta = (g, a_1..a_m)`` for a batch of mean sufficient statistics.

    The model is a regular exponential family, so ``l(theta) = theta . tbar - log Z(theta)`` is
    concave; damped Newton (Hessian ``-Cov T``) with step halving, keeping ``g > -1``.
    """
    theta = np.array(theta0, dtype=np.float64, copy=True)
    k = theta.shape[-1]
    log_z, mean, cov = _model_moments(theta)
    ll = np.einsum("...k,...k->...", theta, tbar) - log_z
    for _ in range(max_iter):
        grad = tbar - mean
        step = np.linalg.solve(cov + 1e-14 * np.eye(k), grad[..., np.newaxis])[..., 0]
        t = np.ones(theta.shape[:-1])
        accepted = np.zeros(theta.shape[:-1], dtype=bool)
        new_theta = theta
        for _half in range(40):
            trial = theta + t[..., np.newaxis] * step
            ok_dom = trial[..., 0] > -1.0 + 1e-9
            trial = np.where(ok_dom[..., np.newaxis], trial, theta)
            lz, _, _ = _model_moments(trial)
            ll_trial = np.einsum("...k,...k->...", trial, tbar) - lz
            good = ok_dom & (ll_trial >= ll - 1e-13 * np.maximum(1.0, np.abs(ll))) & ~accepted
            new_theta = np.where(good[..., np.newaxis], trial, new_theta)
            accepted |= good
            if accepted.all():
                break
            t = np.where(accepted, t, 0.5 * t)
        done = np.max(np.abs(new_theta - theta)) < 1e-9
        theta = new_theta
        log_z, mean, cov = _model_moments(theta)
        ll = np.einsum("...k,...k->...", theta, tbar) - log_z
        if done:
            break
    return theta


def _exponent_and_bootstrap(
    x: np.ndarray, bulk: float, quantile: float, unfold: bool, n_boot: int, seed: int
) -> tuple[float, np.ndarray]:
    """Truncated-MLE exponent of sorted ``x`` and its ``n_boot`` row-bootstrap replicates."""
    s_all = spacings(x, unfold=unfold)
    s = s_all[:, _bulk_slice(s_all.shape[1], bulk)]
    if np.any(s <= 0):
        raise fail("samples", "<array>", "contains coincident points (zero spacing)")
    s0 = float(np.quantile(s, quantile))
    below = s <= s0
    n_below = int(below.sum())
    if n_below < 50:
        raise fail(
            "samples", f"<array of shape {x.shape}>", f"only {n_below} spacings below s0; need 50"
        )
    u = np.where(below, s / s0, 1.0)
    # per-row sufficient statistics: count, sum log u, sum u, sum u^2
    stats = np.stack(
        (
            below.sum(axis=1),
            np.where(below, np.log(u), 0.0).sum(axis=1),
            np.where(below, u, 0.0).sum(axis=1),
            np.where(below, u * u, 0.0).sum(axis=1),
        ),
        axis=1,
    ).astype(np.float64)

    total = stats.sum(axis=0)
    tbar = total[1:] / total[0]
    g_start = max(-1.0 / tbar[0] - 1.0, -0.5)  # pure power-law MLE on (0, 1]
    theta = _fit_truncated(tbar, np.array([g_start, 0.0, 0.0]))
    gamma = float(theta[0])

    rng = np.random.default_rng(seed)
    n_rows = x.shape[0]
    draws = rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_boot)
    boot_tot = draws.astype(np.float64) @ stats
    boot_tbar = boot_tot[:, 1:] / boot_tot[:, :1]
    boot = _fit_truncated(boot_tbar, np.broadcast_to(theta, (n_boot, 3)))[:, 0]
    return gamma, boot


def repulsion_exponent(
    samples: object,
    *,
    bulk: float = 0.8,
    quantile: float = 0.5,
    n_boot: int = 400,
    confidence: float = 0.95,
    seed: int = 0,
    unfold: bool = True,
) -> tuple[float, tuple[float, float]]:
    r"""Repulsion exponent ``gamma`` of ``p(s) ~ s^gamma`` (``s -> 0``) with a bootstrap CI.

    Estimator (truncated maximum likelihood).  Take the (unfolded, see ``spacings``) spacings
    of the central ``bulk`` fraction of every row, the cut ``s0`` = the ``quantile`` of these
    pooled spacings, and ``u = s / s0`` for the spacings ``s <= s0``.  Fit by maximum
    likelihood the truncated density

        q(u) = u^gamma exp(a u + k u^2) / Z(gamma, a, k)   on (0, 1],

    whose ``exp(a u + k u^2)`` absorbs the leading corrections to ``s^gamma`` (``e^{-s}``
    for Poisson, ``1 - c s^2`` for the Wigner-Dyson classes, residual unfolding slopes) so that
    ``gamma`` is not biased by them, unlike a log-log slope.  It is an exponential family with
    sufficient statistics ``(log u, u, u^2)``: the likelihood is concave and ``Z`` is computed by
    Gauss-Laguerre quadrature after ``u = e^{-v/(gamma+1)}``.

    Defaults ``bulk = 0.8`` (drop 10% of the spacings at each edge) and ``quantile = 0.5``
    (``s0`` = median spacing, ~0.9 for GOE/GUE/GSE, ~0.7 for Poisson).

    Confidence interval: percentile bootstrap over rows (independent samples), ``n_boot``
    replicates drawn with ``numpy.random.default_rng(seed)`` (each replicate refits from the
    per-row sufficient statistics); unfolding and ``s0`` are held fixed, so the interval is
    conditional on them.

    Validation on exact samples (Gaussian beta-ensembles b = 1, 2, 4; i.i.d. Gaussian points
    for gamma = 0).  Large-sample bias, measured with 200000 rows of n_points = 20 and 50:
    |bias| <= 0.002 (b=0), 0.006 (b=1), 0.01 (b=2), 0.07 (b=4), i.e. below 0.2 of the standard
    error at n_samples = 4000.  Coverage of the 95% interval over 20-60 independent seeds at
    (n_points, n_samples) = (20, 2000) and (50, 4000): 82-100% per ensemble, 93% overall.
    Typical half-widths at (50, 4000): 0.02, 0.07, 0.15, 0.46 for b = 0, 1, 2, 4.  A naive
    log-log slope of the small-s CDF gives ~2.5 for GSE instead of 4.

    Parameters
    ----------
    samples : array_like
        Point configurations, shape ``(n_samples, n_points)`` (a 1-D array is one sample);
        each row is sorted before use.
    bulk : float, default 0.8
        Central fraction of each row's spacings used, in ``(0, 1]``.
    quantile : float, default 0.5
        Quantile of the pooled spacings that sets the cut ``s0``, in ``(0, 1]``.
    n_boot : int, default 400
        Bootstrap replicates, >= 10.
    confidence : float, default 0.95
        Level of the percentile interval, in ``(0, 1)``.
    seed : int, default 0
        Seed of the bootstrap resampling, >= 0.
    unfold : bool, default True
        Unfold the spacings (``spacings``).

    Returns
    -------
    (float, (float, float))
        ``gamma`` and its bootstrap interval ``(low, high)``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument, fewer than 2 samples or 3 points.
    """
    bulk = _check_fraction(bulk, "bulk")
    quantile = _check_fraction(quantile, "quantile")
    n_boot = check_integer(n_boot, "n_boot", 10)
    confidence = _check_fraction(confidence, "confidence")
    if confidence >= 1.0:
        raise fail("confidence", confidence, "must lie in (0, 1)")
    seed = check_integer(seed, "seed", 0)
    unfold = check_bool(unfold, "unfold")
    x = _as_samples(samples, min_points=3, min_samples=2)
    gamma, boot = _exponent_and_bootstrap(x, bulk, quantile, unfold, n_boot, seed)
    alpha = 0.5 * (1.0 - confidence)
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return gamma, (float(lo), float(hi))
