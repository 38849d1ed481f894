"""The chamber model: width, depth, temperature and energy, and everything derived from them.

``Model`` is the one place where the free energy ``F_beta = E - S_N / beta``, its derivatives in
each chart, the gradient-flow velocity, the equilibrium and the relaxation rates live
(docs/theory.md sections 3-8).  The flow solver, the Langevin engine, the mean-field solver and
the analyses all call it.

Time.  For finite ``N`` the flow ``dX/dt = -grad_{g^N} F_beta`` is in physical time ``t``; with
``rescaled=True`` it is in ``tau = N t``, the only time that has an ``N = inf`` limit.  Every
method taking ``rescaled`` defaults to ``t`` for finite depth and ``tau`` for ``N = inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import coordinates as coords_mod
from .energies import Energy
from .entropy import entropy, entropy_hessian
from .kernels import entropy_gradient
from .pairforce import hot_entropy_gradient_u
from .validation import (
    check_choice,
    check_depth,
    check_positive,
    check_singular_values,
    check_width,
    fail,
)

__all__ = ["Model"]


@dataclass(frozen=True)
class Model:
    """Width ``d``, depth ``N`` (int >= 1 or ``math.inf``), inverse temperature ``beta``, energy.

    The free energy is ``F_beta = E - S_N / beta`` on the chamber ``sigma_1 >= ... >= sigma_d
    > 0``; its unique equilibrium has all singular values equal to ``sigma_*``, the root of
    ``sigma e'(sigma) = c`` with ``c = (d-1)(N-1)/(2 N beta)`` (theory.md section 5).
    Arrays of singular values have shape ``(..., d)``; methods broadcast over leading axes.

    Parameters
    ----------
    width : int
        Width ``d >= 1`` (number of singular values, particles).
    depth : int or float
        Depth ``N``: an integer >= 1, or ``math.inf`` (the string ``"inf"`` is accepted).
    beta : float
        Inverse temperature ``beta > 0`` of the free energy.
    energy : Energy
        The spectral energy, e.g. ``Schatten(2)`` or a ``SeparableEnergy``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid width, depth, beta or energy.
    """

    width: int
    depth: int | float
    beta: float
    energy: Energy

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_width(self.width))
        object.__setattr__(self, "depth", check_depth(self.depth))
        object.__setattr__(self, "beta", check_positive(self.beta, "beta"))
        if not isinstance(self.energy, Energy):
            raise fail("energy", self.energy, "must be a particles.Energy (Schatten, ...)")

    # ------------------------------------------------------------------ basics
    @property
    def infinite(self) -> bool:
        """True for the ``N = inf`` model (entropy ``S_inf``, rescaled time only)."""
        return self.depth == math.inf

    @property
    def entropic_force(self) -> float:
        """``c = (d-1)(N-1)/(2 N beta)`` (``(d-1)/(2 beta)`` at ``N = inf``).

        ``c = beta^{-1} dS_N/drho_i`` on the diagonal; the equilibrium solves ``s e'(s) = c``.
        """
        frac = 1.0 if self.infinite else (self.depth - 1) / self.depth
        return (self.width - 1) * frac / (2.0 * self.beta)

    def describe(self) -> dict[str, str | float | int]:
        """Parameters as dataset attributes (``depth`` as a string so that ``inf`` round-trips).

        Returns
        -------
        dict
            ``width``, ``depth`` (str), ``beta`` and the energy's parameters (``energy``, ...).
        """
        depth = "inf" if self.infinite else str(self.depth)
        return {"width": self.width, "depth": depth, "beta": self.beta, **self.energy.describe()}

    def _rescaled(self, rescaled: bool | None) -> bool:
        if rescaled is None:
            return self.infinite
        if not isinstance(rescaled, bool):
            raise fail("rescaled", rescaled, "must be True, False or None")
        if self.infinite and not rescaled:
            raise fail("rescaled", rescaled, "depth=inf has only the rescaled time tau = N t")
        return rescaled

    def _rho(self, x: np.ndarray, coords: str) -> np.ndarray:
        check_choice(coords, "coords", coords_mod.COORDINATES)
        if coords == "rho":
            rho = np.asarray(x, dtype=np.float64)
            if rho.ndim == 0 or rho.shape[-1] != self.width or not np.all(np.isfinite(rho)):
                raise fail("rho", x, f"must be finite with last axis of length {self.width}")
            return rho
        x = check_singular_values(x, self.width, coords)
        return coords_mod.to_rho(x, coords, self.depth)

    # ------------------------------------------------------------- free energy
    def entropy(self, sigma: np.ndarray) -> np.ndarray:
        """``S_N(sigma) = 1/2 sum_{i<j} log k_N(sigma_i, sigma_j)``, shape ``(...)``.

        Parameters
        ----------
        sigma : array_like
            Singular values, shape ``(..., d)``, positive and finite.

        Returns
        -------
        numpy.ndarray
            ``S_N``, shape ``(...)`` (additive constant dropped, see ``particles.entropy``).

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        return entropy(self._rho(sigma, "sigma"), self.depth)

    def free_energy(self, sigma: np.ndarray) -> np.ndarray:
        """``F_beta(sigma) = E(sigma) - S_N(sigma) / beta``, shape ``(...)``.

        Parameters
        ----------
        sigma : array_like
            Singular values, shape ``(..., d)``, positive and finite.

        Returns
        -------
        numpy.ndarray
            ``F_beta``, shape ``(...)``.

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        rho = self._rho(sigma, "sigma")
        return self.energy(np.exp(rho)) - entropy(rho, self.depth) / self.beta

    def _free_energy_rho(self, rho: np.ndarray) -> np.ndarray:
        return self.energy(np.exp(rho)) - entropy(rho, self.depth) / self.beta

    def _gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dF/drho`` (no argument checks: the hot path of the flow)."""
        g_e, _ = self.energy.log_derivatives(rho)
        return g_e - entropy_gradient(rho, self.depth) / self.beta

    def _gradient_rho_u(
        self, rho: np.ndarray, u: np.ndarray, threads: int, out: np.ndarray, work: np.ndarray
    ) -> np.ndarray:
        """``dF/drho`` at ``rho = N log u`` (finite ``N``) into ``out``, the entropy part from the
        flat coordinates ``u`` (no logarithm per pair): the unchecked, allocation-free hot path of
        the Langevin engine, which carries both (``u``, ``out``, ``work``: C-contiguous
        ``(m, d)``; the same values as ``_gradient_rho``'s formula ``E' - S'/beta``)."""
        ent = hot_entropy_gradient_u(u, self.depth, threads, out)
        np.divide(ent, self.beta, out=ent)
        return np.subtract(self.energy.log_gradient(rho, work), ent, out=ent)

    def _hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        _, h_e = self.energy.log_derivatives(rho)
        hess = -entropy_hessian(rho, self.depth) / self.beta
        idx = np.arange(self.width)
        hess[..., idx, idx] += h_e
        return hess

    def entropy_gradient(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean gradient of ``S_N`` in the chart ``coords`` at the point ``x``.

        Parameters
        ----------
        x : array_like
            The point in the chart ``coords``, shape ``(..., d)`` (``sigma``, ``u`` positive).
        coords : {"sigma", "u", "rho"}, default "sigma"
            The chart (``"u"`` needs finite ``N``).

        Returns
        -------
        numpy.ndarray
            ``dS_N/dx``, shape ``(..., d)``.

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        rho = self._rho(x, coords)
        g = entropy_gradient(rho, self.depth)
        return coords_mod.gradient_from_rho(g, rho, coords, self.depth)

    def entropy_hessian(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean Hessian of ``S_N`` in the chart ``coords``, shape ``(..., d, d)``.

        Parameters
        ----------
        x : array_like
            The point in the chart ``coords``, shape ``(..., d)`` (``sigma``, ``u`` positive).
        coords : {"sigma", "u", "rho"}, default "sigma"
            The chart (``"u"`` needs finite ``N``).

        Returns
        -------
        numpy.ndarray
            ``d2S_N/dx dx``, shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        rho = self._rho(x, coords)
        g = entropy_gradient(rho, self.depth)
        h = entropy_hessian(rho, self.depth)
        return coords_mod.hessian_from_rho(h, g, rho, coords, self.depth)

    def free_energy_gradient(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean gradient of ``F_beta`` in the chart ``coords``.

        Parameters
        ----------
        x : array_like
            The point in the chart ``coords``, shape ``(..., d)`` (``sigma``, ``u`` positive).
        coords : {"sigma", "u", "rho"}, default "sigma"
            The chart (``"u"`` needs finite ``N``).

        Returns
        -------
        numpy.ndarray
            ``dF_beta/dx``, shape ``(..., d)``.

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        rho = self._rho(x, coords)
        return coords_mod.gradient_from_rho(self._gradient_rho(rho), rho, coords, self.depth)

    def free_energy_hessian(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean Hessian of ``F_beta`` in the chart ``coords``, shape ``(..., d, d)``.

        Parameters
        ----------
        x : array_like
            The point in the chart ``coords``, shape ``(..., d)`` (``sigma``, ``u`` positive).
        coords : {"sigma", "u", "rho"}, default "sigma"
            The chart (``"u"`` needs finite ``N``).

        Returns
        -------
        numpy.ndarray
            ``d2F_beta/dx dx``, shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            For an invalid point or chart.
        """
        rho = self._rho(x, coords)
        return coords_mod.hessian_from_rho(
            self._hessian_rho(rho), self._gradient_rho(rho), rho, coords, self.depth
        )

    # -------------------------------------------------------------------- flow
    def _time_factor(self, rho: np.ndarray, rescaled: bool) -> np.ndarray:
        """``w`` in ``drho/dt = -w dF/drho``: ``N e^{-2rho/N}`` (t) or ``e^{-2rho/N}`` (tau)."""
        if self.infinite:
            return np.ones_like(rho)
        w = np.exp(-2.0 * rho / self.depth)
        return w if rescaled else self.depth * w

    def velocity(
        self, x: np.ndarray, coords: str = "sigma", rescaled: bool | None = None
    ) -> np.ndarray:
        """Gradient-flow velocity ``dx/dt = -grad_{g^N} F_beta`` in the chart ``coords``.

        ``sigma``: ``-m(sigma) dF/dsigma``; ``u``: ``-(1/N) dF/du``; ``rho``:
        ``-N e^{-2 rho/N} dF/drho``.  With ``rescaled`` the velocity is per ``tau = N t``.

        Parameters
        ----------
        x : array_like
            The point in the chart ``coords``, shape ``(..., d)`` (``sigma``, ``u`` positive).
        coords : {"sigma", "u", "rho"}, default "sigma"
            The chart (``"u"`` needs finite ``N``).
        rescaled : bool, optional
            Per unit ``tau = N t``; default False for finite ``N`` (True at ``N = inf``).

        Returns
        -------
        numpy.ndarray
            ``dx/dt`` (or ``dx/dtau``), shape ``(..., d)``.

        Raises
        ------
        ValueError
            For an invalid point, chart or ``rescaled``.
        """
        rescaled = self._rescaled(rescaled)
        rho = self._rho(x, coords)
        v_rho = -self._time_factor(rho, rescaled) * self._gradient_rho(rho)
        if coords == "rho":
            return v_rho
        # dx/dt = (dx/drho) drho/dt, and dx/drho = 1 / (drho/dx)
        return v_rho / coords_mod.gradient_from_rho(np.ones_like(rho), rho, coords, self.depth)

    def velocity_rho(self, rho: np.ndarray, rescaled: bool) -> np.ndarray:
        """``drho/dt`` (or ``drho/dtau``) without argument checks, for integrators.

        ``drho_i/dt = -N e^{-2 rho_i/N} dF/drho_i`` (``t``), ``-e^{-2 rho_i/N} dF/drho_i``
        (``tau``), ``-dF_inf/drho_i`` at ``N = inf``.

        Parameters
        ----------
        rho : numpy.ndarray
            Log singular values, shape ``(..., d)`` (not checked).
        rescaled : bool
            Per unit ``tau = N t``.

        Returns
        -------
        numpy.ndarray
            The velocity in ``rho``, shape ``(..., d)``.
        """
        return -self._time_factor(rho, rescaled) * self._gradient_rho(rho)

    def velocity_jacobian_rho(self, rho: np.ndarray, rescaled: bool) -> np.ndarray:
        """Analytic Jacobian of ``velocity_rho``: ``-diag(w) H + diag(2 w g / N)``.

        ``w`` is the time factor of ``velocity_rho``, ``g`` and ``H`` the gradient and Hessian of
        ``F_beta`` in ``rho``.

        Parameters
        ----------
        rho : numpy.ndarray
            Log singular values, shape ``(..., d)`` (not checked).
        rescaled : bool
            Per unit ``tau = N t``.

        Returns
        -------
        numpy.ndarray
            ``d(drho/dt)/drho``, shape ``(..., d, d)``.
        """
        w = self._time_factor(rho, rescaled)
        jac = -w[..., :, None] * self._hessian_rho(rho)
        if not self.infinite:
            idx = np.arange(self.width)
            jac[..., idx, idx] += 2.0 * w * self._gradient_rho(rho) / self.depth
        return jac

    # ------------------------------------------------------------- equilibrium
    def equilibrium(self) -> float:
        """``sigma_*``: all singular values equal, ``sigma_* e'(sigma_*) = c`` (Theorem 1.2).

        Closed form for Schatten-p (``sigma_*^p = c``); bracketed root-finding otherwise.  When
        ``c = 0`` (``d = 1`` or ``N = 1``) a Schatten energy has its infimum at ``sigma = 0``,
        which is returned.

        Returns
        -------
        float
            ``sigma_* >= 0``.

        Raises
        ------
        ValueError
            If the energy's equilibrium equation has no bracketed root.
        """
        return self.energy.equilibrium(self.entropic_force)

    def relaxation_rates(
        self, method: str = "formula", rescaled: bool | None = None
    ) -> tuple[float, float]:
        """``(lambda_uniform, lambda_relative)``: decay rates of the flow linearized at
        ``sigma_* (1, ..., 1)`` (theory.md section 7), per unit ``t`` or, rescaled, per unit
        ``tau``.

        ``method="formula"``: ``m(s)[e'' + e'/s]`` and
        ``m(s)[e'' - (1-1/N)(d(1+1/N)/6 - (d-1)/2)/(beta s^2)]`` at ``s = sigma_*``;
        ``method="jacobian"``: Rayleigh quotients of the central-difference Jacobian of the flow
        in ``sigma`` along ``(1,...,1)`` and ``e_1 - e_2``.  For ``d = 1`` the relative rate is
        ``nan`` (there is no relative mode).

        Parameters
        ----------
        method : {"formula", "jacobian"}, default "formula"
            Closed form, or the numerical Jacobian (an independent check).
        rescaled : bool, optional
            Rates per unit ``tau = N t``; default per ``t`` for finite ``N``.

        Returns
        -------
        (float, float)
            ``(lambda_uniform, lambda_relative)``.

        Raises
        ------
        ValueError
            For an invalid ``method`` or ``rescaled``, or ``sigma_* = 0``.
        """
        check_choice(method, "method", ("formula", "jacobian"))
        rescaled = self._rescaled(rescaled)
        s = self.equilibrium()
        if not s > 0:
            raise fail(
                "model", self.describe(), "the equilibrium sigma_* = 0 is not in the chamber"
            )
        d = self.width
        if method == "jacobian":
            return self._jacobian_rates(s, rescaled)
        e1 = float(self.energy.de(np.float64(s)))
        e2 = float(self.energy.d2e(np.float64(s)))
        if self.infinite:
            m = s * s
            pair = d / 6.0 - (d - 1) / 2.0
        else:
            n = self.depth
            m = float(coords_mod.mobility(s, n)) / (n if rescaled else 1.0)
            pair = (1.0 - 1.0 / n) * (d * (1.0 + 1.0 / n) / 6.0 - (d - 1) / 2.0)
        uniform = m * (e2 + e1 / s)
        relative = m * (e2 - pair / (self.beta * s * s)) if d > 1 else math.nan
        return uniform, relative

    def _jacobian_rates(self, s: float, rescaled: bool) -> tuple[float, float]:
        d = self.width
        h = 1e-5 * s
        jac = np.empty((d, d))
        base = np.full(d, s)
        for j in range(d):
            step = np.zeros(d)
            step[j] = h
            jac[:, j] = (
                self.velocity(base + step, "sigma", rescaled)
                - self.velocity(base - step, "sigma", rescaled)
            ) / (2 * h)
        ones = np.ones(d)
        uniform = -float(ones @ jac @ ones) / d
        if d == 1:
            return uniform, math.nan
        v = np.zeros(d)
        v[0], v[1] = 1.0, -1.0
        return uniform, -float(v @ jac @ v) / 2.0

    # --------------------------------------------------------------- concavity
    def hessian_spectrum(self, sigma: np.ndarray, geometry: str = "euclidean") -> np.ndarray:
        """Eigenvalues (ascending, shape ``(..., d)``) of the Hessian of ``S_N`` at ``sigma``.

        ``"euclidean"``: the Hessian in ``sigma``.  ``"riemannian"``: the Riemannian Hessian of
        ``g^N`` as an operator, i.e. the Hessian in the flat chart ``u`` divided by ``N``
        (theory.md section 8 quotes ``N`` times these, the bilinear form in ``u``); at ``N = inf``
        the Hessian in ``rho``, the flat chart of the rescaled flow.

        Parameters
        ----------
        sigma : array_like
            Singular values, shape ``(..., d)``, positive and finite.
        geometry : {"euclidean", "riemannian"}, default "euclidean"
            Which Hessian.

        Returns
        -------
        numpy.ndarray
            Eigenvalues, ascending, shape ``(..., d)``.

        Raises
        ------
        ValueError
            For invalid ``sigma`` or ``geometry``.
        """
        check_choice(geometry, "geometry", ("euclidean", "riemannian"))
        if geometry == "euclidean":
            return np.linalg.eigvalsh(self.entropy_hessian(sigma, "sigma"))
        if self.infinite:
            return np.linalg.eigvalsh(self.entropy_hessian(self._rho(sigma, "sigma"), "rho"))
        u = np.power(check_singular_values(sigma, self.width, "sigma"), 1.0 / self.depth)
        return np.linalg.eigvalsh(self.entropy_hessian(u, "u")) / self.depth
