r"""Exact samplers of random-matrix ensembles and of the no-interaction null (theory.md section 10).

* ``gaussian_beta_ensemble``: the stationary law of Dyson Brownian motion at Dyson index ``b``,

      P(l) ∝ prod_{i<j} |l_i - l_j|^b  exp(-b sum_i l_i^2 / 4),

  sampled exactly with the Dumitriu-Edelman tridiagonal model.
* ``ginibre_singular_values``: singular values of a ``d x d`` real Gaussian (Ginibre) matrix.
* ``independent_samples``: i.i.d. points from a one-particle density (repulsion exponent 0).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import eigvalsh_tridiagonal

from .validation import check_integer, check_positive, fail

__all__ = ["gaussian_beta_ensemble", "ginibre_singular_values", "independent_samples"]

# Below this matrix size the per-call overhead of LAPACK's tridiagonal solver dominates, and a
# batched dense ``numpy.linalg.eigvalsh`` on the (exactly equivalent) symmetric matrix is faster.
_DENSE_MAX_N = 40
# Largest number of float64 entries allocated at once by the batched dense routines.
_CHUNK_ENTRIES = 4_000_000


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise fail("rng", rng, "must be a numpy.random.Generator (use numpy.random.default_rng)")
    return rng


def gaussian_beta_ensemble(n: int, b: float, size: int, rng: np.random.Generator) -> np.ndarray:
    r"""Exact samples of the Gaussian beta-ensemble, shape ``(size, n)``, rows sorted ascending.

    Law: ``P(l) ∝ prod_{i<j}|l_i - l_j|^b exp(-b sum l_i^2 / 4)`` for any ``b > 0``.

    Construction (Dumitriu-Edelman 2002).  The symmetric tridiagonal matrix ``H`` with
    independent entries ``H_ii ~ N(0, 1)`` and ``H_{i,i+1} ~ chi_{b(n-i)} / sqrt(2)``
    (``i = 1..n-1``) has eigenvalue density ``∝ |Δ(mu)|^b exp(-sum mu_i^2 / 2)``.  Scaling
    ``l = c mu`` gives ``∝ |Δ(l)|^b exp(-sum l_i^2 / (2 c^2))``; matching ``1/(2c^2) = b/4``
    fixes ``c = sqrt(2/b)``.  Hence we diagonalise the tridiagonal matrix with

        diagonal      a_i ~ N(0, 2/b)                       (i = 1..n),
        off-diagonal  e_k ~ chi_{b k} / sqrt(b)             (k = n-1, ..., 1).

    Second moment: ``sum l_i^2 = tr H^2 = sum a_i^2 + 2 sum e_k^2``, so exactly

        E[sum l_i^2] = 2n/b + n(n-1),
        Var[sum l_i^2] = 8n/b^2 + 4n(n-1)/b

    (``a_i^2 b/2 ~ chi^2_1``, ``b e_k^2 ~ chi^2_{bk}``).  For ``b = 2`` this is ``n^2``, the
    GUE value for density ``exp(-tr H^2 / 2)``.  Cost: ``O(n^2)`` per sample.

    Parameters
    ----------
    n : int
        Number of eigenvalues, >= 1.
    b : float
        Dyson index ``b > 0``.
    size : int
        Number of samples, >= 1.
    rng : numpy.random.Generator
        The random stream (e.g. ``numpy.random.default_rng(seed)``).

    Returns
    -------
    numpy.ndarray
        ``(size, n)`` eigenvalues, rows ascending.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument.
    """
    n = check_integer(n, "n", 1)
    b = check_positive(b, "b")
    size = check_integer(size, "size", 1)
    rng = _check_rng(rng)

    diag = rng.standard_normal((size, n)) * np.sqrt(2.0 / b)
    if n == 1:
        return diag
    dof = b * np.arange(n - 1, 0, -1, dtype=np.float64)  # b(n-1), ..., b
    off = np.sqrt(rng.chisquare(np.broadcast_to(dof, (size, n - 1))) / b)

    out = np.empty((size, n), dtype=np.float64)
    if n <= _DENSE_MAX_N:
        chunk = max(1, _CHUNK_ENTRIES // (n * n))
        idx = np.arange(n - 1)
        for start in range(0, size, chunk):
            stop = min(size, start + chunk)
            mat = np.zeros((stop - start, n, n), dtype=np.float64)
            mat[:, np.arange(n), np.arange(n)] = diag[start:stop]
            mat[:, idx, idx + 1] = off[start:stop]
            mat[:, idx + 1, idx] = off[start:stop]
            out[start:stop] = np.linalg.eigvalsh(mat)
    else:
        for k in range(size):
            out[k] = eigvalsh_tridiagonal(
                diag[k], off[k], lapack_driver="sterf", check_finite=False
            )
    out.sort(axis=1)
    return out


def ginibre_singular_values(
    d: int, size: int, rng: np.random.Generator, variance: float = 1.0
) -> np.ndarray:
    """Singular values of ``size`` independent ``d x d`` real matrices with i.i.d. entries
    ``N(0, variance)``; shape ``(size, d)``, rows sorted descending.

    For ``d = 1`` the single value is ``|N(0, variance)|`` (half-normal).  Computed with the
    batched ``numpy.linalg.svd`` (``compute_uv=False``) in memory-bounded chunks.

    Parameters
    ----------
    d : int
        Matrix size, >= 1.
    size : int
        Number of matrices, >= 1.
    rng : numpy.random.Generator
        The random stream (e.g. ``numpy.random.default_rng(seed)``).
    variance : float, default 1.0
        Variance of each entry, > 0.

    Returns
    -------
    numpy.ndarray
        ``(size, d)`` singular values, rows descending.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument.
    """
    d = check_integer(d, "d", 1)
    size = check_integer(size, "size", 1)
    rng = _check_rng(rng)
    variance = check_positive(variance, "variance")

    scale = np.sqrt(variance)
    out = np.empty((size, d), dtype=np.float64)
    chunk = max(1, _CHUNK_ENTRIES // (d * d))
    for start in range(0, size, chunk):
        stop = min(size, start + chunk)
        mat = rng.standard_normal((stop - start, d, d)) * scale
        out[start:stop] = np.linalg.svd(mat, compute_uv=False)
    # LAPACK returns them descending already; enforce it so the contract never depends on it.
    out.sort(axis=1)
    return out[:, ::-1].copy()


def independent_samples(
    density: Callable[[np.ndarray], np.ndarray],
    support: tuple[float, float],
    n: int,
    size: int,
    rng: np.random.Generator,
    *,
    grid_points: int = 8193,
) -> np.ndarray:
    r"""``size`` rows of ``n`` i.i.d. points with one-particle density ``f`` on ``support``,
    each row sorted ascending; shape ``(size, n)``.  The no-interaction (Poisson) null.

    ``density`` is a vectorised callable, unnormalised allowed, ``>= 0`` and finite on the
    closed interval ``support = (lo, hi)``.  Method: ``f`` is evaluated on a uniform grid of
    ``m = grid_points`` nodes (spacing ``h = (hi - lo)/(m - 1)``) and replaced by its
    piecewise-linear interpolant ``f_h``; we then sample *exactly* from ``f_h / ∫ f_h``: the
    cell is found from the cumulative trapezoid masses, and inside a cell the CDF is the
    quadratic ``F_k + f_k t + (f_{k+1} - f_k) t^2 / (2h)``, inverted in closed form with the
    cancellation-free root ``t = 2r / (f_k + sqrt(f_k^2 + 2 (f_{k+1} - f_k) r / h))``.

    Accuracy: for ``f`` in ``C^2`` we have ``|f - f_h| <= h^2 max|f''| / 8``, so the sampled
    CDF differs from the true CDF by at most ``(hi - lo) h^2 max|f''| / (4 ∫f)`` in sup norm
    (``3e-6`` for ``exp(-x^2/2)`` on ``[-6, 6]`` with the default grid; the actual error is
    smaller, the interpolation errors of neighbouring cells partly cancel).

    Parameters
    ----------
    density : callable
        Vectorised ``f(x) >= 0``, finite on ``support`` (need not be normalised).
    support : (float, float)
        The interval ``(lo, hi)``, ``lo < hi``, finite.
    n : int
        Points per row, >= 1.
    size : int
        Number of rows, >= 1.
    rng : numpy.random.Generator
        The random stream (e.g. ``numpy.random.default_rng(seed)``).
    grid_points : int, default 8193
        Interpolation nodes ``m`` of ``f``.

    Returns
    -------
    numpy.ndarray
        ``(size, n)`` points, rows ascending.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument or a density that is negative, not finite
        or zero on the grid.
    """
    if not callable(density):
        raise fail("density", density, "must be a vectorised callable x -> f(x)")
    try:
        lo, hi = (float(v) for v in support)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise fail("support", support, "must be a pair (lo, hi) of real numbers") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise fail("support", support, "must be a finite interval with lo < hi")
    n = check_integer(n, "n", 1)
    size = check_integer(size, "size", 1)
    rng = _check_rng(rng)
    m = check_integer(grid_points, "grid_points", 3)

    x = np.linspace(lo, hi, m)
    try:
        with np.errstate(all="ignore"):
            f = np.asarray(density(x), dtype=np.float64)
    except Exception as exc:  # any failure of the user's callable is a bad argument
        raise fail("density", density, f"evaluating it on the grid raised {exc!r}") from None
    if f.shape != x.shape:
        raise fail("density", density, f"returned shape {f.shape} for input shape {x.shape}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise fail("density", density, "must be finite and >= 0 on the support")
    h = x[1] - x[0]
    cell_mass = 0.5 * h * (f[:-1] + f[1:])
    cum = np.concatenate(([0.0], np.cumsum(cell_mass)))
    total = cum[-1]
    if not total > 0:
        raise fail("density", density, "has zero integral over the support")

    target = rng.random((size, n)) * total
    k = np.clip(np.searchsorted(cum, target, side="right") - 1, 0, m - 2)
    r = np.clip(target - cum[k], 0.0, cell_mass[k])
    f0 = f[k]
    slope = (f[k + 1] - f0) / h
    disc = np.sqrt(np.maximum(f0 * f0 + 2.0 * slope * r, 0.0))
    denom = f0 + disc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(denom > 0, 2.0 * r / np.where(denom > 0, denom, 1.0), 0.0)
    out = x[k] + np.clip(t, 0.0, h)
    out.sort(axis=1)
    return out
