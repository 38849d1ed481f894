"""Coordinates on the chamber and the DLN metric (theory.md section 1).

Three charts, all elementwise functions of ``rho = log sigma``:

- ``"sigma"``: the singular values; metric ``sum dsigma_i^2 / m(sigma_i)``, ``m(s) = N s^{2-2/N}``;
- ``"u"`` = ``sigma^{1/N}``: flat, ``ds^2 = N sum du_i^2`` (finite ``N`` only);
- ``"rho"`` = ``log sigma``: natural for the entropy and for ``N = inf``.

Derivatives of a function given in ``rho`` are carried to another chart by the chain rule
(``gradient_from_rho``, ``hessian_from_rho``).
"""

from __future__ import annotations

import math

import numpy as np

from .validation import check_choice, fail

__all__ = [
    "COORDINATES",
    "to_rho",
    "from_rho",
    "gradient_from_rho",
    "hessian_from_rho",
    "mobility",
]

COORDINATES = ("sigma", "u", "rho")


def _check(coords: str, depth: int | float) -> str:
    check_choice(coords, "coords", COORDINATES)
    if coords == "u" and depth == math.inf:
        raise fail("coords", coords, "the flat coordinates u = sigma^(1/N) need finite depth")
    return coords


def to_rho(x: np.ndarray, coords: str, depth: int | float) -> np.ndarray:
    """``rho = log sigma`` from coordinates ``x`` (``sigma``, ``u`` or ``rho``).

    ``rho = log sigma = N log u``.

    Parameters
    ----------
    x : array_like
        Points in the chart ``coords`` (any shape, elementwise).
    coords : {"sigma", "u", "rho"}
        The chart: singular values, flat ``u = sigma^(1/N)`` (finite ``N`` only) or
        ``rho = log sigma``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``rho``, float64, the shape of ``x``.

    Raises
    ------
    ValueError
        If ``coords`` is unknown, or ``"u"`` at ``depth = inf``.
    """
    _check(coords, depth)
    x = np.asarray(x, dtype=np.float64)
    if coords == "rho":
        return x
    if coords == "sigma":
        return np.log(x)
    return depth * np.log(x)


def from_rho(rho: np.ndarray, coords: str, depth: int | float) -> np.ndarray:
    """Coordinates ``x`` (``sigma``, ``u`` or ``rho``) from ``rho = log sigma``.

    ``sigma = e^rho``, ``u = e^{rho/N}``.

    Parameters
    ----------
    rho : array_like
        Log singular values (any shape, elementwise).
    coords : {"sigma", "u", "rho"}
        The chart: singular values, flat ``u = sigma^(1/N)`` (finite ``N`` only) or
        ``rho = log sigma``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``x``, float64, the shape of ``rho``.

    Raises
    ------
    ValueError
        If ``coords`` is unknown, or ``"u"`` at ``depth = inf``.
    """
    _check(coords, depth)
    rho = np.asarray(rho, dtype=np.float64)
    if coords == "rho":
        return rho
    if coords == "sigma":
        return np.exp(rho)
    return np.exp(rho / depth)


def _rho_derivatives(rho: np.ndarray, coords: str, depth: int | float):
    """``(drho/dx, d2rho/dx2)`` as functions of ``rho``."""
    if coords == "rho":
        return np.ones_like(rho), np.zeros_like(rho)
    if coords == "sigma":
        inv = np.exp(-rho)
        return inv, -inv * inv
    inv = np.exp(-rho / depth)  # 1/u
    return depth * inv, -depth * inv * inv


def gradient_from_rho(grad_rho: np.ndarray, rho: np.ndarray, coords: str, depth) -> np.ndarray:
    """The gradient in chart ``coords`` by the chain rule: ``dF/dx_i = dF/drho_i drho_i/dx_i``.

    Parameters
    ----------
    grad_rho : array_like
        ``dF/drho``, shape ``(..., d)``.
    rho : array_like
        The point, in ``rho = log sigma``, shape ``(..., d)``.
    coords : {"sigma", "u", "rho"}
        The chart: singular values, flat ``u = sigma^(1/N)`` (finite ``N`` only) or
        ``rho = log sigma``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``dF/dx``, shape ``(..., d)``.

    Raises
    ------
    ValueError
        If ``coords`` is unknown, or ``"u"`` at ``depth = inf``.
    """
    _check(coords, depth)
    r1, _ = _rho_derivatives(np.asarray(rho, dtype=np.float64), coords, depth)
    return grad_rho * r1


def hessian_from_rho(
    hess_rho: np.ndarray, grad_rho: np.ndarray, rho: np.ndarray, coords: str, depth
) -> np.ndarray:
    """The Hessian in chart ``coords`` by the chain rule.

    ``d2F/dx_i dx_j = H_ij rho'(x_i) rho'(x_j) + delta_ij g_i rho''(x_i)`` with ``H`` the
    Hessian and ``g`` the gradient in ``rho``.

    Parameters
    ----------
    hess_rho : array_like
        ``d2F/drho_i drho_j``, shape ``(..., d, d)``.
    grad_rho : array_like
        ``dF/drho``, shape ``(..., d)``.
    rho : array_like
        The point, in ``rho = log sigma``, shape ``(..., d)``.
    coords : {"sigma", "u", "rho"}
        The chart: singular values, flat ``u = sigma^(1/N)`` (finite ``N`` only) or
        ``rho = log sigma``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.

    Returns
    -------
    numpy.ndarray
        ``d2F/dx dx``, shape ``(..., d, d)``.

    Raises
    ------
    ValueError
        If ``coords`` is unknown, or ``"u"`` at ``depth = inf``.
    """
    _check(coords, depth)
    r1, r2 = _rho_derivatives(np.asarray(rho, dtype=np.float64), coords, depth)
    out = hess_rho * r1[..., :, None] * r1[..., None, :]
    idx = np.arange(out.shape[-1])
    out[..., idx, idx] += grad_rho * r2
    return out


def mobility(sigma: np.ndarray, depth: int | float) -> np.ndarray:
    """The mobility ``m(s) = N s^{2 - 2/N}``: ``dsigma/dt = -m(sigma) dF/dsigma`` (finite ``N``).

    The DLN metric in ``sigma`` is ``sum_i dsigma_i^2 / m(sigma_i)``.

    Parameters
    ----------
    sigma : array_like
        Singular values (any shape, elementwise).
    depth : int
        Finite depth ``N``.

    Returns
    -------
    numpy.ndarray
        ``m(sigma)``, float64, the shape of ``sigma``.

    Raises
    ------
    ValueError
        At ``depth = inf`` (the mobility diverges: use rescaled time ``tau = N t``).
    """
    if depth == math.inf:
        raise fail("depth", depth, "the mobility N s^(2-2/N) diverges; use rescaled time")
    sigma = np.asarray(sigma, dtype=np.float64)
    return depth * np.power(sigma, 2.0 - 2.0 / depth)
