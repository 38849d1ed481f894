r"""The Boltzmann entropy ``S_N`` of the DLN and its pair potential ``psi_N`` (theory.md section 2).

Everything here works in the log coordinates ``rho = log sigma``, where the entropy is

    S_N(rho) = 1/2 (1 - 1/N)(d - 1) sum_i rho_i + 1/2 sum_{i<j} psi_N(rho_i - rho_j),
    psi_N(x) = log(sinh x / sinh(x/N)),          psi_inf(x) = log(sinh x / x).

Numerics. With ``L(x) = log(sinh x / x)`` (even, ``L(0) = 0``) one has exactly

    psi_N(x) = log N + L(x) - L(x/N),   psi_N' = L'(x) - L'(x/N)/N,

and ``psi_N'' = csch^2(x/N)/N^2 - csch^2(x)``, which for ``|x| <= 1`` is evaluated as
``L''(x) - L''(x/N)/N^2`` to avoid the cancellation of the two ``1/x^2`` poles.  ``L`` and its
derivatives use their Taylor series (Bernoulli coefficients, from
``particles.pairsum.coefficients``, shared with the compiled kernels) for ``|x| <= 1/2`` and
overflow-free closed forms (``log1p``, ``expm1``) beyond, so that values and the first two
derivatives are accurate to a few ulp for all real ``x`` (tested against mpmath).  No
``(x^2 - y^2)/(x^{2/N} - y^{2/N})`` quotient is ever formed.
"""

from __future__ import annotations

import math

import numpy as np

from .pairsum.coefficients import linear_coefficient, log_sinhc_coefficients, one_minus
from .validation import check_depth

__all__ = [
    "log_sinhc",
    "psi",
    "log_kernel",
    "entropy",
    "entropy_gradient",
    "entropy_hessian",
    "linear_coefficient",
]

_SERIES_CUTOFF = 0.5
_N_TERMS = 16


# L(x), L'(x)/x and L''(x) in powers of x^2 (lowest first), from the one source of coefficients
_C0, _C1, _C2 = log_sinhc_coefficients(_N_TERMS)


def _horner(coeffs: np.ndarray, z: np.ndarray) -> np.ndarray:
    out = np.full_like(z, coeffs[-1])
    for c in coeffs[-2::-1]:
        out = out * z + c
    return out


def _csch2(ax: np.ndarray) -> np.ndarray:
    """csch(x)^2 for x > 0 without overflow: 4 e^{-2x} / (1 - e^{-2x})^2."""
    em = np.expm1(-2.0 * ax)
    return 4.0 * np.exp(-2.0 * ax) / (em * em)


def log_sinhc(x: np.ndarray | float, derivative: int = 0) -> np.ndarray:
    """``L(x) = log(sinh(x)/x)`` (``derivative=0``), ``L'`` (1) or ``L''`` (2), elementwise.

    A Bernoulli series ``L(x) = sum_{n>=1} 2^{2n} B_{2n} x^{2n} / (2n (2n)!)`` for
    ``|x| <= 0.5``, and ``|x| - log(2|x|) + log1p(-e^{-2|x|})`` (and its derivatives) beyond:
    accurate to a few ulp at ``0``, ``1e-8`` and ``700`` alike.

    Parameters
    ----------
    x : float or array_like
        Real arguments (any shape).
    derivative : int, default 0
        0, 1 or 2: ``L``, ``L'`` or ``L''``.

    Returns
    -------
    numpy.ndarray
        Float64, the shape of ``x``.

    Raises
    ------
    ValueError
        If ``derivative`` is not 0, 1 or 2.
    """
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    small = ax <= _SERIES_CUTOFF
    xs = np.where(small, x, 0.0)
    xl = np.where(small, 1.0, ax)  # safe placeholder where the series is used
    z = xs * xs
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if derivative == 0:
            series = z * _horner(_C0, z)
            large = xl - np.log(2.0 * xl) + np.log1p(-np.exp(-2.0 * xl))
        elif derivative == 1:
            series = xs * _horner(_C1, z)
            large = np.sign(x) * (1.0 / np.tanh(xl) - 1.0 / xl)
        elif derivative == 2:
            series = _horner(_C2, z)
            large = 1.0 / (xl * xl) - _csch2(xl)
        else:
            raise ValueError(f"bad derivative={derivative!r}: must be 0, 1 or 2")
    return np.where(small, series, large)


def psi(x: np.ndarray | float, depth: int | float, derivative: int = 0) -> np.ndarray:
    """The pair potential ``psi_N(x) = log(sinh x / sinh(x/N))`` or its 1st/2nd derivative.

    ``x`` is a difference of log singular values.  ``depth = inf`` gives
    ``psi_inf(x) = log(sinh x / x)`` (the ``log N`` constant removed).  ``N = 1`` gives 0.
    ``psi_N`` is even and smooth, ``psi_N(0) = log N``: no singularity where two singular
    values meet (no repulsion).

    Parameters
    ----------
    x : float or array_like
        Differences ``rho_i - rho_j`` of log singular values (any shape).
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.
    derivative : int, default 0
        0, 1 or 2: ``psi_N``, ``psi_N'`` or ``psi_N''``.

    Returns
    -------
    numpy.ndarray
        Float64, the shape of ``x``.

    Raises
    ------
    ValueError
        If ``depth`` or ``derivative`` is invalid.
    """
    n = check_depth(depth)
    x = np.asarray(x, dtype=np.float64)
    if derivative not in (0, 1, 2):
        raise ValueError(f"bad derivative={derivative!r}: must be 0, 1 or 2")
    if n == math.inf:
        return log_sinhc(x, derivative)
    if n == 1:
        return np.zeros_like(x)
    y = x / n
    if derivative == 0:
        return math.log(n) + log_sinhc(x) - log_sinhc(y)
    if derivative == 1:
        return log_sinhc(x, 1) - log_sinhc(y, 1) / n
    ax = np.abs(x)
    near = ax <= 1.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        far_x = np.where(near, 1.0, ax)
        far = _csch2(far_x / n) / (n * n) - _csch2(far_x)
    xn = np.where(near, x, 0.0)
    close = log_sinhc(xn, 2) - log_sinhc(xn / n, 2) / (n * n)
    return np.where(near, close, far)


def log_kernel(rho_x: np.ndarray, rho_y: np.ndarray, depth: int | float) -> np.ndarray:
    """``log k_N(e^rho_x, e^rho_y) = (1 - 1/N)(rho_x + rho_y) + psi_N(rho_x - rho_y)``.

    ``k_N(x, y) = (x^2 - y^2)/(x^{2/N} - y^{2/N})``; for ``N = inf`` the ``log N`` constant is
    dropped (``k`` becomes the logarithmic mean of ``x^2`` and ``y^2``).  Broadcasts.

    Parameters
    ----------
    rho_x, rho_y : array_like
        Log singular values ``rho = log sigma`` (broadcast together).
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``log k_N``, float64, the broadcast shape.

    Raises
    ------
    ValueError
        If ``depth`` is invalid.
    """
    n = check_depth(depth)
    rho_x = np.asarray(rho_x, dtype=np.float64)
    rho_y = np.asarray(rho_y, dtype=np.float64)
    return one_minus(n) * (rho_x + rho_y) + psi(rho_x - rho_y, n)


def _differences(rho: np.ndarray) -> np.ndarray:
    return rho[..., :, None] - rho[..., None, :]


def entropy(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """The entropy ``S_N = a sum_i rho_i + 1/2 sum_{i<j} psi_N(rho_i - rho_j)``
    (theory.md section 2).

    ``a = linear_coefficient(d, N)``; the additive constant is dropped (at ``N = inf`` also
    ``d(d-1)/4 log N``).

    Parameters
    ----------
    rho : array_like
        Log singular values, shape ``(..., d)`` (batched over leading axes).
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``S_N``, shape ``(...)``.

    Raises
    ------
    ValueError
        If ``depth`` is invalid.
    """
    rho = np.asarray(rho, dtype=np.float64)
    d = rho.shape[-1]
    n = check_depth(depth)
    out = linear_coefficient(d, n) * rho.sum(axis=-1)
    if d > 1 and n != 1:
        iu, ju = np.triu_indices(d, 1)
        out = out + 0.5 * psi(rho[..., iu] - rho[..., ju], n).sum(axis=-1)
    return out


def entropy_gradient(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """The gradient ``dS_N/drho_i = a + 1/2 sum_{j != i} psi_N'(rho_i - rho_j)`` in ``rho``.

    Parameters
    ----------
    rho : array_like
        Log singular values, shape ``(..., d)``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., d)``.

    Raises
    ------
    ValueError
        If ``depth`` is invalid.
    """
    rho = np.asarray(rho, dtype=np.float64)
    d = rho.shape[-1]
    n = check_depth(depth)
    out = np.full(rho.shape, linear_coefficient(d, n))
    if d > 1 and n != 1:
        out = out + 0.5 * psi(_differences(rho), n, 1).sum(axis=-1)  # psi'(0) = 0
    return out


def entropy_hessian(rho: np.ndarray, depth: int | float) -> np.ndarray:
    """Hessian of ``S_N`` in ``rho``, shape ``(..., d, d)``.

    Off-diagonal ``-1/2 psi''(rho_i - rho_j)``, diagonal ``1/2 sum_{j != i} psi''(rho_i - rho_j)``.

    Parameters
    ----------
    rho : array_like
        Log singular values, shape ``(..., d)``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        Symmetric, shape ``(..., d, d)``.

    Raises
    ------
    ValueError
        If ``depth`` is invalid.
    """
    rho = np.asarray(rho, dtype=np.float64)
    d = rho.shape[-1]
    n = check_depth(depth)
    out = np.zeros(rho.shape + (d,))
    if d > 1 and n != 1:
        p2 = psi(_differences(rho), n, 2)
        idx = np.arange(d)
        p2[..., idx, idx] = 0.0
        out = -0.5 * p2
        out[..., idx, idx] = 0.5 * p2.sum(axis=-1)
    return out
