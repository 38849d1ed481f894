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
from typing import ClassVar

import numpy as np

from . import coordinates as coords_mod
from .energies import Energy
from .entropy import entropy_hessian
from .pairsum import entropy_gradient_rho, entropy_gradient_rho_at_u_into, entropy_values
from .validation import (
    check_choice,
    check_depth,
    check_positive,
    check_singular_values,
    check_width,
    fail,
)

__all__ = ["Model"]

LOG_MAX = math.log(np.finfo(np.float64).max)  #: ``sigma = e^rho`` overflows beyond this ``rho``


def sorted_desc(sigma: np.ndarray) -> np.ndarray:
    """``sigma`` with its last axis sorted descending (a view of a sorted copy).

    Parameters
    ----------
    sigma : numpy.ndarray
        Values, shape ``(..., d)``.

    Returns
    -------
    numpy.ndarray
        The same values, each row (last axis) in descending order.
    """
    return np.sort(sigma, axis=-1)[..., ::-1]


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

    Notes
    -----
    ``Model`` implements ``particles.system.System`` (chart ``u = sigma^{1/N}``, or ``rho`` at
    ``N = inf``), the interface of the one step loop ``particles.driver``.
    """

    width: int
    depth: int | float
    beta: float
    energy: Energy

    #: False for a system whose free energy is not finite at equal singular values
    #: (``MatrixVariant``): ``equilibrium`` and ``relaxation_rates`` then raise ``ValueError``.
    equal_sigma_equilibrium: ClassVar[bool] = True

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

    def resolve_rescaled(self, rescaled: bool | None) -> bool:
        """The time of a run: ``tau = N t`` (True) or ``t`` (False); theory.md section 1.4.

        Parameters
        ----------
        rescaled : bool or None
            ``None`` gives ``t`` for finite ``N`` and ``tau`` at ``N = inf``.

        Returns
        -------
        bool
            True for ``tau``.

        Raises
        ------
        ValueError
            If ``rescaled`` is not a bool or None, or is False at ``N = inf``.
        """
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
        return entropy_values(self._rho(sigma, "sigma"), self.depth)

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
        return self.energy(np.exp(rho)) - entropy_values(rho, self.depth) / self.beta

    def free_energy_rho(self, rho: np.ndarray) -> np.ndarray:
        """``F_beta`` at log singular values ``rho`` (no argument checks), shape ``(...)``.

        Parameters
        ----------
        rho : numpy.ndarray
            ``rho = log sigma``, shape ``(..., d)`` (not checked).

        Returns
        -------
        numpy.ndarray
            ``E(e^rho) - S_N(rho) / beta``, shape ``(...)``.
        """
        return self.energy(np.exp(rho)) - entropy_values(rho, self.depth) / self.beta

    def gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dF_beta/drho = dE/drho - (1/beta) dS_N/drho`` (no argument checks: the hot path of
        the flow and of the ``N = inf`` Langevin step; theory.md sections 3, 9.1).

        Parameters
        ----------
        rho : numpy.ndarray
            ``rho = log sigma``, shape ``(..., d)`` (not checked).

        Returns
        -------
        numpy.ndarray
            ``dF_beta/drho``, shape ``(..., d)``.
        """
        g_e, _ = self.energy.log_derivatives(rho)
        return g_e - entropy_gradient_rho(rho, self.depth) / self.beta

    def gradient_rho_u(
        self, rho: np.ndarray, u: np.ndarray, threads: int, out: np.ndarray, work: np.ndarray
    ) -> np.ndarray:
        """``dF_beta/drho`` at ``rho = N log u`` (finite ``N``) into ``out``, the entropy part
        from the flat coordinates ``u`` (no logarithm per pair): the unchecked, allocation-free
        hot path of the Langevin engine, which carries both (theory.md 13.2; the same values as
        ``gradient_rho``'s formula ``E' - S'/beta``).

        Parameters
        ----------
        rho : numpy.ndarray
            ``N log u``, C-contiguous float64 ``(m, d)``.
        u : numpy.ndarray
            ``u = sigma^{1/N}``, C-contiguous float64 ``(m, d)``.
        threads : int
            Threads of the pair sum (``pairsum.default_threads()``).
        out, work : numpy.ndarray
            C-contiguous float64 ``(m, d)`` buffers, overwritten.

        Returns
        -------
        numpy.ndarray
            ``out``, holding ``dF_beta/drho``.
        """
        ent = entropy_gradient_rho_at_u_into(u, self.depth, threads, out)
        np.divide(ent, self.beta, out=ent)
        return np.subtract(self.energy.log_gradient(rho, work), ent, out=ent)

    def hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        """``d2F_beta/drho drho`` (no argument checks), shape ``(..., d, d)``.

        Parameters
        ----------
        rho : numpy.ndarray
            ``rho = log sigma``, shape ``(..., d)`` (not checked).

        Returns
        -------
        numpy.ndarray
            The Hessian of ``F_beta`` in ``rho``.
        """
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
        g = entropy_gradient_rho(rho, self.depth)
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
        g = entropy_gradient_rho(rho, self.depth)
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
        return coords_mod.gradient_from_rho(self.gradient_rho(rho), rho, coords, self.depth)

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
            self.hessian_rho(rho), self.gradient_rho(rho), rho, coords, self.depth
        )

    # -------------------------------------------------------------------- flow
    def time_factor(self, rho: np.ndarray, rescaled: bool) -> np.ndarray:
        """``w`` in ``drho/dt = -w dF/drho`` (theory.md 4): ``N e^{-2rho/N}`` (``t``),
        ``e^{-2rho/N}`` (``tau``), 1 at ``N = inf``.

        Parameters
        ----------
        rho : numpy.ndarray
            ``rho = log sigma``, shape ``(..., d)`` (not checked).
        rescaled : bool
            Per unit ``tau = N t``.

        Returns
        -------
        numpy.ndarray
            ``w``, shape of ``rho``.
        """
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
        rescaled = self.resolve_rescaled(rescaled)
        rho = self._rho(x, coords)
        v_rho = -self.time_factor(rho, rescaled) * self.gradient_rho(rho)
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
        return -self.time_factor(rho, rescaled) * self.gradient_rho(rho)

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
        w = self.time_factor(rho, rescaled)
        jac = -w[..., :, None] * self.hessian_rho(rho)
        if not self.infinite:
            idx = np.arange(self.width)
            jac[..., idx, idx] += 2.0 * w * self.gradient_rho(rho) / self.depth
        return jac

    # ------------------------------------------------- System interface (particles.system)
    @property
    def state_shape(self) -> tuple[int, ...]:
        """``(d,)``: one member's state is its ``d`` singular values."""
        return (self.width,)

    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        """``{"sigma": (d,)}``: the saved singular values (rows sorted descending)."""
        return {"sigma": (self.width,)}

    def check_state(self, sigma: object, name: str = "sigma0") -> np.ndarray:
        """Positive finite singular values, shape ``(..., d)`` (any order).

        Parameters
        ----------
        sigma : array_like
            Singular values, shape ``(..., d)``.
        name : str, default "sigma0"
            The argument's name in the error message.

        Returns
        -------
        numpy.ndarray
            float64 copy of ``sigma``.

        Raises
        ------
        ValueError
            ``bad <name>=...`` for a wrong shape or a non-positive or non-finite value.
        """
        return check_singular_values(sigma, self.width, name)

    def time_scale(self, rescaled: bool) -> float:
        """``h_x / h``: ``1/N`` when a finite-``N`` run is in ``tau`` (``u`` moves in ``t``), else
        1 (theory.md 1.4, 13.2).

        Parameters
        ----------
        rescaled : bool
            The run's time is ``tau = N t``.

        Returns
        -------
        float
            The chart time per unit of the run's time.
        """
        return 1.0 if (self.infinite or not rescaled) else 1.0 / self.depth

    def noise_variance(self, temperature: float) -> float:
        """``2 T / N`` in ``u`` (``2 T`` in ``rho`` at ``N = inf``): the chart noise variance per
        unit chart time (theory.md 9.1).

        Parameters
        ----------
        temperature : float
            Noise temperature ``T >= 0``.

        Returns
        -------
        float
            The variance per unit ``h_x``.
        """
        return 2.0 * temperature * (1.0 if self.infinite else 1.0 / self.depth)

    def to_chart(self, sigma: np.ndarray) -> np.ndarray:
        """The flat chart: ``u = exp(log(sigma) / N)``, or ``rho = log sigma`` at ``N = inf``.

        Parameters
        ----------
        sigma : numpy.ndarray
            Validated singular values, shape ``(m, d)``.

        Returns
        -------
        numpy.ndarray
            ``u`` or ``rho``, shape ``(m, d)``.
        """
        rho = np.log(sigma)
        return rho if self.infinite else np.exp(rho / self.depth)

    def chart_to_rho(self, x: np.ndarray) -> np.ndarray:
        """``rho = N log u`` (the identity at ``N = inf``), numpy's logarithm.

        Parameters
        ----------
        x : numpy.ndarray
            Chart states, shape ``(m, d)``.

        Returns
        -------
        numpy.ndarray
            ``rho``, shape ``(m, d)``.
        """
        return x if self.infinite else self.depth * np.log(x)

    def drift(self, x: np.ndarray) -> np.ndarray:
        """The chart drift: ``-(1/N) dF/du = -(1/u) dF/drho`` in ``u``, ``-dF/drho`` at
        ``N = inf`` (theory.md 9.1).

        Parameters
        ----------
        x : numpy.ndarray
            ``u`` (finite ``N``) or ``rho``, shape ``(m, d)``.

        Returns
        -------
        numpy.ndarray
            ``dx/dt`` of the deterministic part, shape ``(m, d)``.
        """
        if self.infinite:
            return -self.gradient_rho(x)
        return -self.gradient_rho(self.chart_to_rho(x)) / x

    def reflect(self, x: np.ndarray) -> np.ndarray | None:
        """Reflection at ``u = 0`` in place (``u -> |u|``), returning the number of sign flips
        per row; None at ``N = inf`` (no boundary in ``rho``; theory.md 9.3).

        Parameters
        ----------
        x : numpy.ndarray
            Chart states after an explicit step, shape ``(m, d)``, overwritten.

        Returns
        -------
        numpy.ndarray or None
            ``(m,)`` int64 reflections, or None.
        """
        if self.infinite:
            return None
        neg = x < 0.0
        np.abs(x, out=x)
        return neg.sum(axis=-1)

    def bad_rows(self, x: np.ndarray) -> np.ndarray:
        """Rows that fail (``particles.system``): ``rho`` not finite or above ``log(max float)``
        (``sigma`` would overflow); in ``u`` also ``u = 0`` exactly (``rho = -inf``).

        Parameters
        ----------
        x : numpy.ndarray
            ``u`` or ``rho``, shape ``(m, d)``.

        Returns
        -------
        numpy.ndarray
            ``(m,)`` bool, True for a failing row.
        """
        if self.infinite:
            return ~(np.all(np.isfinite(x), axis=1) & (x.max(axis=1) <= LOG_MAX))
        return ~((self.depth * np.log(x)).max(axis=1) <= LOG_MAX) | ~(x.min(axis=1) > 0.0)

    def save(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``{"sigma": sigma}``, ``sigma = e^rho`` with rows sorted descending.

        Parameters
        ----------
        x : numpy.ndarray
            ``u`` or ``rho``, shape ``(m, d)``.

        Returns
        -------
        dict
            ``"sigma"``: ``(m, d)`` singular values.
        """
        return {"sigma": sorted_desc(np.exp(self.chart_to_rho(x)))}

    def potential(self, x: np.ndarray) -> np.ndarray:
        """``F_beta`` at chart states: the stationary density w.r.t. ``du`` (``drho`` at
        ``N = inf``) is ``exp(-F_beta / T)`` (theory.md 9.2).

        Parameters
        ----------
        x : numpy.ndarray
            ``u`` or ``rho``, shape ``(m, d)``.

        Returns
        -------
        numpy.ndarray
            ``(m,)`` free energies.
        """
        return self.free_energy_rho(self.chart_to_rho(x))

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
            If the energy's equilibrium equation has no bracketed root, or the system has no
            equal-sigma equilibrium (``equal_sigma_equilibrium`` False: ``MatrixVariant``).
        """
        self._check_equal_sigma()
        return self.energy.equilibrium(self.entropic_force)

    def _check_equal_sigma(self) -> None:
        if not self.equal_sigma_equilibrium:
            raise fail(
                "model", self.describe(), "the free energy is infinite at equal singular values"
            )

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
            For an invalid ``method`` or ``rescaled``, ``sigma_* = 0``, or a system without
            equal-sigma equilibrium (``equal_sigma_equilibrium`` False: ``MatrixVariant``).
        """
        self._check_equal_sigma()
        check_choice(method, "method", ("formula", "jacobian"))
        rescaled = self.resolve_rescaled(rescaled)
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
