"""Spectral energies ``E(sigma) = sum_i e(sigma_i)`` (theory.md section 3).

An energy knows its one-particle function ``e`` and the first two derivatives, in ``sigma``
(``e``, ``de``, ``d2e``) and in ``rho = log sigma`` (``log_derivatives``), and how to solve the
equilibrium equation ``sigma e'(sigma) = c`` (theory.md section 5).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from .validation import check_positive, fail

__all__ = ["Energy", "Schatten", "SeparableEnergy"]

ArrayFn = Callable[[np.ndarray], np.ndarray]


class Energy(ABC):
    """A separable spectral energy ``E(sigma) = sum_i e(sigma_i)``."""

    @abstractmethod
    def e(self, sigma: np.ndarray) -> np.ndarray:
        """One-particle energy ``e(sigma)``, elementwise."""

    @abstractmethod
    def de(self, sigma: np.ndarray) -> np.ndarray:
        """``e'(sigma)``, elementwise."""

    @abstractmethod
    def d2e(self, sigma: np.ndarray) -> np.ndarray:
        """``e''(sigma)``, elementwise."""

    @abstractmethod
    def describe(self) -> dict[str, str | float]:
        """Parameters for dataset attributes (``energy`` names the family)."""

    def __call__(self, sigma: np.ndarray) -> np.ndarray:
        """``E(sigma) = sum_i e(sigma_i)`` over the last axis."""
        return np.sum(self.e(np.asarray(sigma, dtype=np.float64)), axis=-1)

    def log_derivatives(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dE/drho_i, d2E/drho_i^2) = (s e'(s), s e'(s) + s^2 e''(s))`` at ``s = e^rho``."""
        s = np.exp(np.asarray(rho, dtype=np.float64))
        g = s * self.de(s)
        return g, g + s * s * self.d2e(s)

    def log_gradient(self, rho: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``dE/drho_i = s e'(s)`` at ``s = e^rho`` written into ``out`` (same shape as ``rho``)
        and returned; the same values as ``log_derivatives(rho)[0]``."""
        out[...] = self.log_derivatives(rho)[0]
        return out

    def equilibrium(self, c: float) -> float:
        """The root ``sigma > 0`` of ``sigma e'(sigma) = c`` (bracketed Brent search).

        The bracket is grown geometrically from ``sigma = 1``; a ``ValueError`` is raised when no
        sign change of ``sigma e'(sigma) - c`` is found in ``[1e-150, 1e150]``.
        """

        def h(s: float) -> float:
            return float(s * self.de(np.float64(s)) - c)

        lo = hi = 1.0
        h_lo = h_hi = h(1.0)
        if h_lo == 0.0:
            return 1.0
        while h_lo > 0 and lo > 1e-150:
            hi, h_hi = lo, h_lo
            lo /= 4.0
            h_lo = h(lo)
        while h_hi < 0 and hi < 1e150:
            lo, h_lo = hi, h_hi
            hi *= 4.0
            h_hi = h(hi)
        if not (h_lo <= 0 <= h_hi) or not (math.isfinite(h_lo) and math.isfinite(h_hi)):
            raise fail("energy", self.describe(), f"no root of sigma e'(sigma) = {c} was bracketed")
        return float(brentq(h, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))


@dataclass(frozen=True)
class Schatten(Energy):
    """Schatten-p energy ``e(s) = s^p / p`` for any ``p > 0``.

    ``E(sigma) = ||X||_p^p / p`` for the Schatten norm of the end-to-end matrix; the
    equilibrium equation ``s e'(s) = s^p = c`` has the closed form ``sigma_* = c^{1/p}``.

    Parameters
    ----------
    p : float
        The exponent, finite and > 0.

    Raises
    ------
    ValueError
        ``bad p=...`` if ``p`` is not a finite number > 0.
    """

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_positive(self.p, "p"))

    def e(self, sigma: np.ndarray) -> np.ndarray:
        return np.power(sigma, self.p) / self.p

    def de(self, sigma: np.ndarray) -> np.ndarray:
        return np.power(sigma, self.p - 1.0)

    def d2e(self, sigma: np.ndarray) -> np.ndarray:
        return (self.p - 1.0) * np.power(sigma, self.p - 2.0)

    def log_gradient(self, rho: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.multiply(self.p, rho, out=out)
        return np.exp(out, out=out)

    def log_derivatives(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.exp(self.p * np.asarray(rho, dtype=np.float64))
        return g, self.p * g

    def equilibrium(self, c: float) -> float:
        """Closed form ``sigma_* = c^{1/p}``."""
        return float(c ** (1.0 / self.p))

    def describe(self) -> dict[str, str | float]:
        return {"energy": "schatten", "p": self.p}


@dataclass(frozen=True)
class SeparableEnergy(Energy):
    """A user-defined separable energy from vectorized callables ``e``, ``e'`` and ``e''``.

    ``E(sigma) = sum_i e(sigma_i)``; the equilibrium is the bracketed root of
    ``sigma e'(sigma) = c`` (``Energy.equilibrium``).

    Parameters
    ----------
    e_fn : callable
        ``e(sigma)``, elementwise on float64 arrays of singular values ``sigma > 0``.
    de_fn : callable
        ``e'(sigma)``, elementwise.
    d2e_fn : callable
        ``e''(sigma)``, elementwise.
    name : str, default "separable"
        The family name stored as the ``energy`` attribute of datasets.

    Raises
    ------
    ValueError
        ``bad e=...`` (or ``de``, ``d2e``) if a function is not callable.
    """

    e_fn: ArrayFn
    de_fn: ArrayFn
    d2e_fn: ArrayFn
    name: str = field(default="separable")

    def __post_init__(self) -> None:
        for label, fn in (("e", self.e_fn), ("de", self.de_fn), ("d2e", self.d2e_fn)):
            if not callable(fn):
                raise fail(label, fn, "must be a vectorized callable")

    def e(self, sigma: np.ndarray) -> np.ndarray:
        return np.asarray(self.e_fn(sigma), dtype=np.float64)

    def de(self, sigma: np.ndarray) -> np.ndarray:
        return np.asarray(self.de_fn(sigma), dtype=np.float64)

    def d2e(self, sigma: np.ndarray) -> np.ndarray:
        return np.asarray(self.d2e_fn(sigma), dtype=np.float64)

    def describe(self) -> dict[str, str | float]:
        return {"energy": self.name}
