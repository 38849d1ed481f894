r"""The DLN at the matrix level: the operator ``A_X``, ``F_beta(X)`` and its gradient flow
velocity for any energy ``E(X)`` (docs/theory.md section 12).

With one SVD ``X = U diag(sigma) V^T`` the metric operator acts entrywise in the SVD frame,

    A_X(P) = U (K o (U^T P V)) V^T,     K_ij = k_N(sigma_i, sigma_j),   K_ii = N sigma_i^{2-2/N},

and ``K`` comes from the particles layer's stable form
``log K_ij = (1 - 1/N)(rho_i + rho_j) + psi_N(rho_i - rho_j)`` (``particles.log_kernel``,
theory.md section 2.5): no ``(x^2 - y^2)/(x^{2/N} - y^{2/N})`` quotient is formed, so ``K`` is
accurate where singular values meet.  The entropy is the particles layer's ``S_N(sigma)``.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from dlnsim.particles.entropy import entropy as entropy_rho
from dlnsim.particles.entropy import entropy_gradient as entropy_gradient_rho
from dlnsim.particles.entropy import log_kernel
from dlnsim.particles.validation import check_depth, check_width, fail

from .energies import MatrixEnergy, check_matrix

__all__ = ["MatrixModel", "UnconfinedWarning", "effective_rank"]

log = logging.getLogger("dlnsim.network")

#: Singular values are clamped below at this value in ``log sigma`` (a singular matrix has
#: ``sigma = 0``; ``K`` is continuous there for ``N >= 2`` and the clamp changes it by far less
#: than one ulp of its other entries).
SIGMA_FLOOR = float(np.sqrt(np.finfo(np.float64).tiny))


class UnconfinedWarning(RuntimeWarning):
    """``F_beta`` is unbounded below: the energy leaves a direction of ``X`` unconfined."""


def effective_rank(sigma: np.ndarray) -> np.ndarray:
    """The effective rank of Roy and Vetterli (2007): ``exp(-sum_i p_i log p_i)``,
    ``p_i = sigma_i / sum_j sigma_j``.

    It is 1 for a rank-one matrix, ``r`` for ``r`` equal nonzero singular values, and varies
    continuously in between (the measure used by Arora, Cohen, Hu, Luo 2019).

    Parameters
    ----------
    sigma : array_like
        Singular values, shape ``(..., d)``, ``>= 0``.

    Returns
    -------
    numpy.ndarray
        Shape ``(...)``; NaN where all singular values vanish.

    Raises
    ------
    ValueError
        ``bad sigma=...`` for negative or non-finite values.
    """
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim < 1 or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise fail("sigma", getattr(sigma, "shape", sigma), "must be finite, >= 0, shape (..., d)")
    total = s.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = s / total
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return np.where(total[..., 0] > 0, np.exp(h), np.nan)


class MatrixModel:
    """Width ``d``, depth ``N``, inverse temperature ``beta`` (``math.inf``: no entropy) and an
    energy ``E(X)``: the free energy ``F_beta(X) = E(X) - S_N(sigma(X)) / beta`` and its
    gradient flow ``dX/dt = -A_X(grad F_beta)`` (theory.md section 12.3).

    Time: ``t`` for finite ``N`` (``K_ii = N sigma^{2-2/N}``); with ``rescaled=True``,
    ``tau = N t`` (``K / N``), the only time at ``N = inf`` (``K`` = logarithmic mean of
    ``sigma_i^2, sigma_j^2``).

    When ``beta`` is finite, ``N > 1``, ``d > 1`` and the energy leaves a direction ``Z`` free
    (``E(X + tZ)`` constant, e.g. completion: any matrix supported off the mask), the model
    warns with ``UnconfinedWarning``: ``S_N`` grows like ``(1 - 1/N)(d - 1) log sigma_1``
    along ``Z``, so ``F_beta`` is unbounded below and the flow drifts off to infinity along
    that direction (``sigma_1 ~ t^{N/2}``, theory.md section 12.7); a confining term such as
    ``Spectral(Schatten(2), weight=1e-3)`` restores a minimizer.

    Parameters
    ----------
    width : int
        Width ``d >= 1``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.
    beta : float
        Inverse temperature ``beta > 0``, or ``math.inf`` (``F = E``).
    energy : MatrixEnergy
        The energy, e.g. ``Completion(mask, target) + Spectral(Schatten(2), 1e-3)``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid width, depth, beta or energy.
    """

    def __init__(self, width: int, depth: int | float, beta: float, energy: MatrixEnergy) -> None:
        self.width = check_width(width)
        self.depth = check_depth(depth)
        if (
            isinstance(beta, bool)
            or not isinstance(beta, (int, float, np.floating, np.integer))
            or math.isnan(beta)
            or beta <= 0
        ):
            raise fail("beta", beta, "must be a real number > 0 or math.inf")
        self.beta = float(beta)
        if not isinstance(energy, MatrixEnergy):
            raise fail("energy", energy, "must be a network energy (Completion, Spectral, ...)")
        if energy.width is not None and energy.width != self.width:
            raise fail("energy", energy.width, f"is defined for width {energy.width}, not {width}")
        self.energy = energy
        self.unconfined = None
        if math.isfinite(self.beta) and self.depth != 1 and self.width > 1:
            self.unconfined = energy.unconfined_direction(self.width)
            if self.unconfined is not None:
                i, j = np.unravel_index(
                    int(np.argmax(np.abs(self.unconfined))), self.unconfined.shape
                )
                warnings.warn(
                    f"F_beta = E - S_N/beta is unbounded below for {energy.describe()['energy']} "
                    f"at beta={self.beta:g}: E is constant along a direction Z (largest at entry "
                    f"({i}, {j})) while S_N grows like (1 - 1/N)(d - 1) log sigma_1, so the flow "
                    "drifts off to infinity along it (sigma_1 ~ t^(N/2)); add a confining term, "
                    "e.g. + Spectral(Schatten(2), weight=1e-3)",
                    UnconfinedWarning,
                    stacklevel=2,
                )

    # ----------------------------------------------------------------- basics
    @property
    def infinite(self) -> bool:
        """True at ``N = inf`` (rescaled time only)."""
        return self.depth == math.inf

    def describe(self) -> dict[str, str | float | int]:
        """Parameters as dataset attributes (``depth`` and ``beta`` as strings when infinite).

        Returns
        -------
        dict
            ``width``, ``depth``, ``beta`` and the energy's parameters.
        """
        return {
            "width": self.width,
            "depth": "inf" if self.infinite else str(self.depth),
            "beta": "inf" if math.isinf(self.beta) else self.beta,
            **self.energy.describe(),
        }

    def resolve_rescaled(self, rescaled: bool | None) -> bool:
        """The time of the save times, as ``particles.Model.resolve_rescaled`` (theory.md 1.4).

        Parameters
        ----------
        rescaled : bool or None
            ``True`` for ``tau = N t``, ``False`` for ``t``; ``None`` for the default (``t``,
            or ``tau`` at ``N = inf``).

        Returns
        -------
        bool
            Whether the time is ``tau``.

        Raises
        ------
        ValueError
            ``bad rescaled=...`` for a non-bool or ``False`` at ``N = inf``.
        """
        if rescaled is None:
            return self.infinite
        if not isinstance(rescaled, bool):
            raise fail("rescaled", rescaled, "must be True, False or None")
        if self.infinite and not rescaled:
            raise fail("rescaled", rescaled, "depth=inf has only the rescaled time tau = N t")
        return rescaled

    def _check(self, x: object, name: str = "X") -> np.ndarray:
        arr = check_matrix(x, name)
        if arr.shape[-1] != self.width:
            raise fail(name, arr.shape, f"must have shape (..., {self.width}, {self.width})")
        return arr

    def kernel(self, sigma: np.ndarray, rescaled: bool | None = None) -> np.ndarray:
        """``K_ij = k_N(sigma_i, sigma_j)`` (``/ N`` when rescaled), stable where they meet.

        Parameters
        ----------
        sigma : array_like
            Singular values, shape ``(..., d)``, ``>= 0`` (clamped at ``SIGMA_FLOOR``).
        rescaled : bool, optional
            Per unit ``tau = N t``; default False for finite ``N`` (True at ``N = inf``).

        Returns
        -------
        numpy.ndarray
            ``K``, shape ``(..., d, d)``, symmetric, positive.

        Raises
        ------
        ValueError
            ``bad sigma=...`` or ``bad rescaled=...``.
        """
        rescaled = self.resolve_rescaled(rescaled)
        s = np.asarray(sigma, dtype=np.float64)
        if s.ndim < 1 or s.shape[-1] != self.width or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise fail(
                "sigma",
                getattr(sigma, "shape", sigma),
                f"must be finite, >= 0, (..., {self.width})",
            )
        return self._kernel(s, rescaled)

    def _kernel(self, s: np.ndarray, rescaled: bool) -> np.ndarray:
        rho = np.log(np.maximum(s, SIGMA_FLOOR))
        k = np.exp(log_kernel(rho[..., :, None], rho[..., None, :], self.depth))
        return k / self.depth if (rescaled and not self.infinite) else k

    def operator(
        self, x: np.ndarray, p: np.ndarray, power: float = 1.0, rescaled: bool | None = None
    ) -> np.ndarray:
        """``A_X^power(P) = U (K^power o (U^T P V)) V^T`` from one SVD (theory.md 12.1).

        Parameters
        ----------
        x : array_like
            The point ``X``, shape ``(..., d, d)``.
        p : array_like
            The matrix ``P`` (broadcast with ``x``), shape ``(..., d, d)``.
        power : float, default 1.0
            The power of ``A_X`` (``0.5``: ``A_X^{1/2}``, ``-1``: ``A_X^{-1}``), entrywise on ``K``.
        rescaled : bool, optional
            The operator per unit ``tau = N t`` (``A_X / N``).

        Returns
        -------
        numpy.ndarray
            Shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            ``bad X=...``, ``bad P=...``, ``bad power=...`` or ``bad rescaled=...``.
        """
        x = self._check(x)
        p = self._check(p, "P")
        if (
            isinstance(power, bool)
            or not isinstance(power, (int, float))
            or not math.isfinite(power)
        ):
            raise fail("power", power, "must be a finite real number")
        rescaled = self.resolve_rescaled(rescaled)
        u, s, vt = np.linalg.svd(x)
        k = self._kernel(s, rescaled)
        frame = np.swapaxes(u, -1, -2) @ p @ np.swapaxes(vt, -1, -2)
        return u @ (k**power * frame) @ vt

    # ------------------------------------------------------------ free energy
    def entropy(self, x: np.ndarray) -> np.ndarray:
        """``S_N(sigma(X)) = 1/2 sum_{i<j} log k_N(sigma_i, sigma_j)`` (theory.md section 2).

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``, invertible (``sigma > 0``).

        Returns
        -------
        numpy.ndarray
            Shape ``(...)`` (``-inf`` for a singular matrix when ``N > 1`` and ``d > 1``).

        Raises
        ------
        ValueError
            ``bad X=...``.
        """
        s = np.linalg.svd(self._check(x), compute_uv=False)
        with np.errstate(divide="ignore"):
            return entropy_rho(np.log(s), self.depth)

    def free_energy(self, x: np.ndarray) -> np.ndarray:
        """``F_beta(X) = E(X) - S_N(sigma(X)) / beta`` (``E`` at ``beta = inf``).

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(...)``.

        Raises
        ------
        ValueError
            ``bad X=...``.
        """
        x = self._check(x)
        e = self.energy._energy(x)
        if math.isinf(self.beta):
            return e
        return e - self.entropy(x) / self.beta

    def _frame_gradient(self, x: np.ndarray):
        """SVD of ``X`` and ``U^T grad F V`` (the gradient in the SVD frame)."""
        u, s, vt = np.linalg.svd(x)
        frame = np.swapaxes(u, -1, -2) @ self.energy._gradient(x) @ np.swapaxes(vt, -1, -2)
        if not math.isinf(self.beta) and self.depth != 1 and self.width > 1:
            rho = np.log(np.maximum(s, SIGMA_FLOOR))
            ds = entropy_gradient_rho(rho, self.depth) / np.maximum(s, SIGMA_FLOOR)
            idx = np.arange(self.width)
            frame[..., idx, idx] -= ds / self.beta
        return u, s, vt, frame

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The Euclidean gradient ``grad F_beta = grad E - U diag(dS_N/dsigma) V^T / beta``.

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``, invertible at finite ``beta``.

        Returns
        -------
        numpy.ndarray
            Shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            ``bad X=...``.
        """
        u, _, vt, frame = self._frame_gradient(self._check(x))
        return u @ frame @ vt

    def velocity(self, x: np.ndarray, rescaled: bool | None = None) -> np.ndarray:
        """The gradient-flow velocity ``dX/dt = -A_X(grad F_beta)`` (theory.md 12.3).

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``.
        rescaled : bool, optional
            Per unit ``tau = N t``; default False for finite ``N`` (True at ``N = inf``).

        Returns
        -------
        numpy.ndarray
            Shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            ``bad X=...`` or ``bad rescaled=...``.
        """
        rescaled = self.resolve_rescaled(rescaled)
        return self._velocity(self._check(x), rescaled)

    def _velocity(self, x: np.ndarray, rescaled: bool) -> np.ndarray:
        u, s, vt, frame = self._frame_gradient(x)
        return -(u @ (self._kernel(s, rescaled) * frame) @ vt)
