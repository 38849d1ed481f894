r"""Random-matrix baselines as particle models on the chamber-model engine (theory.md section 10).

Two systems whose pair force is singular (a Coulomb log-gas), in contrast to the chamber model
whose entropy has no repulsion:

* ``MatrixVariant``: the singular values of a full matrix ``X`` under the Langevin equation of
  ``(M_d, g^N)``.  The SVD orbit adds its log-volume to the DLN entropy,

      F = E - (1/beta) [S_N + O],    O = sum_{i<j} log|u_i^2 - u_j^2|,   u = sigma^{1/N},

  and in the flat chart (finite ``N``, time ``t``; ``tau = N t`` scales ``h`` as in
  ``particles.langevin``)

      du_i = -(1/N) dF/du_i dt + sqrt(2 T / N) dB_i,   reflecting at ``u = 0``.

  At ``T = 1/beta`` the stationary density w.r.t. ``du`` is
  ``exp(-beta E) prod_{i<j} sqrt(|u_i^2 - u_j^2| |u_i^{2N} - u_j^{2N}|)`` (linear repulsion);
  for ``N = 1`` and ``E = 1/2 sum sigma^2`` it is the law of the singular values of a ``d x d``
  real Gaussian matrix with entry variance ``1/beta``.  ``N = inf`` (in ``rho``, ``tau``):
  ``O = sum_{i<j} log|rho_i - rho_j|`` and ``drho = -dF/drho dtau + sqrt(2 T) dB``.
  The orbit term is part of ``F_beta`` (coefficient ``1/beta`` like ``S_N``), so the noise
  temperature ``T`` stays a separate parameter exactly as for ``Model``.
* ``DysonModel``: Dyson Brownian motion of ``n`` eigenvalues at Dyson index ``b > 0``,

      dl_i = [-l_i / 2 + sum_{j != i} 1 / (l_i - l_j)] dt + sqrt(2 T) dB_i,   T = 1/b default,

  i.e. ``dl = -grad Phi dt + sqrt(2T) dB`` with ``Phi = sum l_i^2 / 4 - sum_{i<j} log|l_i - l_j|``;
  stationary law ``exp(-Phi / T)`` = ``prod|l_i - l_j|^b exp(-b sum l_i^2 / 4)`` at ``T = 1/b``.
  Eigenvalues may be negative: they are not singular values.

Both are ``particles.system.LogGasSystem``s, stepped by the proximal split step of
``particles.proximal`` (optionally Metropolis-adjusted) in the one step loop of
``particles.driver``; the scheme, its guarantees (particles never cross) and its Newton solver
are described there.

Conventions shared with ``particles.langevin.simulate_members``: the same step plan
(``driver.step_plan``); the same noise (member ``k`` draws ``member_rng(seed, k)``, one row of ``d``
standard normals per step in batches of ``K = noise_batch_steps(d)`` steps, none at ``T = 0``);
the same faults (a member fails when its state becomes non-finite, ``sigma`` would overflow or
``u`` lands exactly on 0, and here also when its Newton solve does not converge; it is NaN from
the failing step on, ``failed_time`` is the end of that step and ``last_finite`` the state before
it).  Every operation is row-wise (sums over the last axis in a fixed sequential order,
per-matrix LAPACK solves, per-member Newton stopping), so a member's path is bitwise independent
of the other members in its block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import coordinates as coords_mod
from .driver import check_run, run_steps
from .entropy import entropy as dln_entropy
from .entropy import entropy_gradient as dln_entropy_gradient
from .entropy import entropy_hessian as dln_entropy_hessian
from .langevin import LangevinBlock
from .model import Model
from .proximal import (
    NEWTON_MAX_ITER,
    NEWTON_RTOL,
    Proximal,
    acceptance_rng,
    offdiag,
    pair_indices,
    rowsum,
)
from .validation import (
    check_bool,
    check_positive,
    check_width,
    fail,
    short_repr,
)

__all__ = [
    "NEWTON_MAX_ITER",
    "NEWTON_RTOL",
    "BaselineBlock",
    "DysonModel",
    "MatrixVariant",
    "acceptance_rng",
    "resolving_step",
    "simulate_baseline_members",
]


# ---------------------------------------------------------------------- matrix variant
# ---------------------------------------------------------------------- matrix variant
@dataclass(frozen=True)
class MatrixVariant(Model):
    r"""The singular values of a full matrix under the Langevin equation of ``(M_d, g^N)``.

    Same fields as ``Model``; the entropy gains the SVD-orbit log-volume

        O(sigma) = sum_{i<j} log|u_i^2 - u_j^2|,  u = sigma^{1/N}   (N = inf: log|rho_i - rho_j|),

    i.e. in ``rho = log sigma``
    ``O = sum_{i<j} [(rho_i + rho_j)/N + log(2 sinh(|rho_i - rho_j|/N))]``, and
    ``F = E - (S_N + O) / beta`` (``+inf`` at collisions).  ``entropy``, ``free_energy``,
    their gradients/Hessians and ``velocity`` include ``O``.  ``F`` is ``+inf`` at equal singular
    values, so ``equal_sigma_equilibrium`` is False and ``equilibrium`` and ``relaxation_rates``
    raise ``ValueError`` as ``Model`` documents.  A ``particles.system.LogGasSystem`` (chart
    ``u``, or ``rho`` at ``N = inf``, as ``Model``; the log-gas ``B = O``): simulate with
    ``simulate_baseline_members`` or ``langevin_ensemble`` (not ``simulate_members``, whose
    explicit steps do not keep the particles ordered).

    Parameters
    ----------
    width : int
        Width ``d >= 1``.
    depth : int or float
        Depth ``N``: an integer >= 1 or ``math.inf``.
    beta : float
        Inverse temperature ``beta > 0``.
    energy : Energy
        The spectral energy.

    Raises
    ------
    ValueError
        As ``Model``.
    """

    state_long_name: ClassVar[str] = "singular value of the end-to-end matrix"
    free_energy_long_name: ClassVar[str] = "free energy F_beta = E - (S_N + O) / beta"
    equal_sigma_equilibrium: ClassVar[bool] = False  # O = -inf there

    @classmethod
    def from_model(cls, model: Model) -> MatrixVariant:
        """The matrix variant of a chamber ``Model`` (same width, depth, beta and energy)."""
        if not isinstance(model, Model):
            raise fail("model", model, "must be a particles.Model")
        return cls(model.width, model.depth, model.beta, model.energy)

    def describe(self) -> dict[str, str | float | int]:
        """``Model.describe()`` plus ``system = "matrix_variant"``."""
        return {"system": "matrix_variant", **super().describe()}

    def valid_states(self, sigma: np.ndarray) -> np.ndarray:
        """Rows (last axis) at which the energies are defined: finite and ``> 0``."""
        sigma = np.asarray(sigma, dtype=np.float64)
        return np.all(np.isfinite(sigma) & (sigma > 0), axis=-1)

    # ------------------------------------------------------------ orbit term
    def _orbit_rho(self, rho: np.ndarray) -> np.ndarray:
        """``O`` at ``rho``, shape ``(...)`` (``-inf`` at a collision)."""
        d = self.width
        if d == 1:
            return np.zeros(rho.shape[:-1])
        iu, ju = pair_indices(d)
        diff = np.abs(rho[..., iu] - rho[..., ju])
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.infinite:
                return np.sum(np.log(diff), axis=-1)
            a = diff / self.depth  # log(2 sinh a) = a + log(1 - e^{-2a})
            pair = (rho[..., iu] + rho[..., ju]) / self.depth + a + np.log(-np.expm1(-2.0 * a))
        return np.sum(pair, axis=-1)

    def _orbit_gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dO/drho_i``: ``(d-1)/N + (1/N) sum_{j!=i} coth((rho_i-rho_j)/N)`` or ``sum 1/diff``."""
        diff = rho[..., :, None] - rho[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.infinite:
                return rowsum(offdiag(1.0 / diff))
            n = self.depth
            return (self.width - 1) / n + rowsum(offdiag(1.0 / np.tanh(diff / n))) / n

    def _orbit_hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        """Off-diagonal ``csch^2((rho_i-rho_j)/N)/N^2`` (``1/diff^2`` at N = inf), rows sum to 0."""
        diff = rho[..., :, None] - rho[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.infinite:
                off = offdiag(1.0 / (diff * diff))
            else:
                n = self.depth
                s = np.sinh(diff / n)
                off = offdiag(1.0 / (n * n * s * s))
        idx = np.arange(self.width)
        off[..., idx, idx] = -rowsum(off)
        return off

    def orbit_entropy(self, sigma: np.ndarray) -> np.ndarray:
        """``O(sigma) = sum_{i<j} log|u_i^2 - u_j^2|`` (``log|rho_i - rho_j|`` at N = inf)."""
        return self._orbit_rho(self._rho(sigma, "sigma"))

    # ------------------------------------------------------- free energy
    def entropy(self, sigma: np.ndarray) -> np.ndarray:
        """``S_N(sigma) + O(sigma)``, shape ``(...)``."""
        rho = self._rho(sigma, "sigma")
        return dln_entropy(rho, self.depth) + self._orbit_rho(rho)

    def free_energy(self, sigma: np.ndarray) -> np.ndarray:
        """``F = E - (S_N + O) / beta``, shape ``(...)``."""
        return self.free_energy_rho(self._rho(sigma, "sigma"))

    def free_energy_rho(self, rho: np.ndarray) -> np.ndarray:
        """``F = E - (S_N + O) / beta`` at ``rho`` (no argument checks)."""
        return super().free_energy_rho(rho) - self._orbit_rho(rho) / self.beta

    def gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dF/drho`` including the orbit force (no argument checks)."""
        return super().gradient_rho(rho) - self._orbit_gradient_rho(rho) / self.beta

    def smooth_gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dF/drho`` without the orbit force: energy and DLN entropy only (``Model``'s)."""
        return super().gradient_rho(rho)

    def hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        """``d2F/drho drho`` including the orbit term (no argument checks)."""
        return super().hessian_rho(rho) - self._orbit_hessian_rho(rho) / self.beta

    def entropy_gradient(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean gradient of ``S_N + O`` in the chart ``coords``."""
        rho = self._rho(x, coords)
        g = dln_entropy_gradient(rho, self.depth) + self._orbit_gradient_rho(rho)
        return coords_mod.gradient_from_rho(g, rho, coords, self.depth)

    def entropy_hessian(self, x: np.ndarray, coords: str = "sigma") -> np.ndarray:
        """Euclidean Hessian of ``S_N + O`` in the chart ``coords``."""
        rho = self._rho(x, coords)
        g = dln_entropy_gradient(rho, self.depth) + self._orbit_gradient_rho(rho)
        h = dln_entropy_hessian(rho, self.depth) + self._orbit_hessian_rho(rho)
        return coords_mod.hessian_from_rho(h, g, rho, coords, self.depth)

    # ------------------------------------------ LogGasSystem interface (particles.system)
    @property
    def mirror(self) -> bool:
        """True for finite ``N``: ``B`` in ``u`` has the mirror terms ``log(u_i + u_j)``."""
        return not self.infinite

    def pair_coefficient(self) -> float:
        """``kappa``: ``1/(N beta)`` in ``u`` (``O = sum log(u_i - u_j) + log(u_i + u_j)``,
        drift ``-(1/N) dF/du``), ``1/beta`` in ``rho`` at ``N = inf``."""
        return 1.0 / self.beta if self.infinite else 1.0 / (self.depth * self.beta)

    def noise_variance(self, temperature: float) -> float:
        """``2 T / N`` in ``u`` (``2 T`` in ``rho`` at ``N = inf``), as ``Model``."""
        return 2.0 * temperature if self.infinite else 2.0 * temperature / self.depth

    def smooth_drift(self, x: np.ndarray) -> np.ndarray:
        """The drift without the orbit force: ``-(1/u) dF_smooth/drho`` in ``u``
        (``-dF_smooth/drho`` in ``rho``), ``F_smooth = E - S_N / beta``."""
        if self.infinite:
            return -self.smooth_gradient_rho(x)
        return -self.smooth_gradient_rho(self.depth * np.log(x)) / x


# ---------------------------------------------------------------------- Dyson
@dataclass(frozen=True)
class DysonModel:
    r"""Dyson Brownian motion of ``width = n`` eigenvalues at Dyson index ``b > 0``.

    ``dl_i = [-l_i/2 + sum_{j!=i} 1/(l_i - l_j)] dt + sqrt(2T) dB_i`` (``T = 1/b`` by default),
    the gradient flow of ``Phi(l) = E(l) - sum_{i<j} log|l_i - l_j|``, ``E = sum l_i^2 / 4``;
    stationary law ``prod|l_i - l_j|^b exp(-b sum l_i^2/4)`` (the Gaussian beta-ensemble,
    ``particles.rmt.gaussian_beta_ensemble``).  States are eigenvalues sorted strictly
    descending (possibly negative).  ``beta`` (= ``b``) is the inverse temperature of
    ``Phi``; the time is ``t`` only (``rescaled`` must be ``None`` or ``False``).

    Parameters
    ----------
    width : int
        Number of eigenvalues ``n >= 1``.
    b : float
        Dyson index ``b > 0`` (1, 2, 4: GOE, GUE, GSE).

    Raises
    ------
    ValueError
        ``bad width=...`` or ``bad b=...``.
    """

    width: int
    b: float

    state_long_name: ClassVar[str] = "eigenvalue"
    free_energy_long_name: ClassVar[str] = (
        "log-gas potential Phi = sum_i l_i^2/4 - sum_{i<j} log|l_i - l_j|"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_width(self.width))
        object.__setattr__(self, "b", check_positive(self.b, "b"))

    @property
    def beta(self) -> float:
        """Inverse temperature of ``Phi``: the Dyson index ``b``."""
        return self.b

    def describe(self) -> dict[str, str | float | int]:
        """Parameters as dataset attributes."""
        return {
            "system": "dyson_brownian_motion",
            "width": self.width,
            "dyson_index": self.b,
            "beta": self.b,
        }

    def resolve_rescaled(self, rescaled: bool | None) -> bool:
        """Always False (time ``t``): ``rescaled`` must be None or False.

        Parameters
        ----------
        rescaled : bool or None
            The requested time.

        Returns
        -------
        bool
            False.

        Raises
        ------
        ValueError
            ``bad rescaled=...`` for anything but None or False.
        """
        if rescaled is None or (isinstance(rescaled, bool) and not rescaled):
            return False
        raise fail("rescaled", rescaled, "Dyson Brownian motion has only the time t (None/False)")


    def check_state(self, x: object, name: str = "sigma0") -> np.ndarray:
        """Finite eigenvalues, last axis of length ``n``, each row strictly decreasing."""
        try:
            arr = np.array(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail(name, x, "must be an array of real numbers") from None
        if arr.ndim == 0 or arr.shape[-1] != self.width:
            raise fail(name, short_repr(arr), f"last axis must have length width={self.width}")
        if not np.all(np.isfinite(arr)):
            raise fail(name, short_repr(arr), "eigenvalues must be finite")
        if not np.all(np.diff(arr, axis=-1) < 0):
            raise fail(
                name,
                short_repr(arr),
                "eigenvalues must be strictly decreasing along the last axis "
                "(ordered, no collisions: the pair force is singular there)",
            )
        return arr

    def valid_states(self, x: np.ndarray) -> np.ndarray:
        """Rows at which the energies are defined: all finite (any sign)."""
        return np.all(np.isfinite(np.asarray(x, dtype=np.float64)), axis=-1)

    def energy(self, x: np.ndarray) -> np.ndarray:
        """``E(l) = sum_i l_i^2 / 4``, shape ``(...)``."""
        x = np.asarray(x, dtype=np.float64)
        return np.sum(x * x, axis=-1) / 4.0

    def log_gas(self, x: np.ndarray) -> np.ndarray:
        """``sum_{i<j} log|l_i - l_j|`` (``-inf`` at a collision), shape ``(...)``."""
        x = np.asarray(x, dtype=np.float64)
        if self.width == 1:
            return np.zeros(x.shape[:-1])
        iu, ju = pair_indices(self.width)
        with np.errstate(divide="ignore"):
            return np.sum(np.log(np.abs(x[..., iu] - x[..., ju])), axis=-1)

    def free_energy(self, x: np.ndarray) -> np.ndarray:
        """``Phi(l) = E(l) - sum_{i<j} log|l_i - l_j|`` (stationary density ``exp(-b Phi)``)."""
        return self.energy(x) - self.log_gas(x)

    def free_energy_gradient(self, x: np.ndarray) -> np.ndarray:
        """``dPhi/dl_i = l_i/2 - sum_{j!=i} 1/(l_i - l_j)`` (minus the drift)."""
        x = np.asarray(x, dtype=np.float64)
        diff = x[..., :, None] - x[..., None, :]
        with np.errstate(divide="ignore"):
            return x / 2.0 - rowsum(offdiag(1.0 / diff))

    # ------------------------------------------ LogGasSystem interface (particles.system)
    @property
    def state_shape(self) -> tuple[int, ...]:
        """``(n,)``: one member's state is its ``n`` eigenvalues."""
        return (self.width,)

    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        """``{"sigma": (n,)}``: the saved eigenvalues (strictly decreasing)."""
        return {"sigma": (self.width,)}

    @property
    def mirror(self) -> bool:
        """False: the log-gas has no mirror terms."""
        return False

    def time_scale(self, rescaled: bool) -> float:
        """1: the chart ``l`` runs in ``t``."""
        return 1.0

    def noise_variance(self, temperature: float) -> float:
        """``2 T`` per unit time (``dl = ... dt + sqrt(2T) dB``)."""
        return 2.0 * temperature

    def pair_coefficient(self) -> float:
        """``kappa = 1``: the drift's log-gas part is ``grad sum_{i<j} log(l_i - l_j)``."""
        return 1.0

    def to_chart(self, x: np.ndarray) -> np.ndarray:
        """The identity: the eigenvalues are the flat chart."""
        return x

    def drift(self, x: np.ndarray) -> np.ndarray:
        """``-dPhi/dl_i = -l_i/2 + sum_{j!=i} 1/(l_i - l_j)``."""
        return -self.free_energy_gradient(x)

    def smooth_drift(self, x: np.ndarray) -> np.ndarray:
        """``-l / 2``: the confinement."""
        return -0.5 * x

    def reflect(self, x: np.ndarray) -> None:
        """None: no boundary."""
        return None

    def bad_rows(self, x: np.ndarray) -> np.ndarray:
        """Rows with a non-finite eigenvalue."""
        return ~np.all(np.isfinite(x), axis=1)

    def save(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``{"sigma": l}``: the eigenvalues themselves."""
        return {"sigma": x}

    def potential(self, x: np.ndarray) -> np.ndarray:
        """``Phi(l)``: the stationary density is ``exp(-Phi / T)``."""
        return self.free_energy(x)



# ---------------------------------------------------------------------- the engine
# ---------------------------------------------------------------------- the engine
@dataclass(frozen=True)
class BaselineBlock(LangevinBlock):
    """``LangevinBlock`` plus per-member Newton statistics of the proximal steps.

    ``steps``: proximal steps taken (including a failing one); ``newton_iterations``: their
    total Newton iterations; ``newton_max``: the most in one step; ``newton_unconverged``: 1 if
    the member failed because a solve stopped short of the tolerance (iteration cap or stalled
    line search), else 0; ``accepted``: proposals accepted (``metropolis=True``; otherwise every
    step counts).

    Parameters
    ----------
    sigma, reflections, failed_time, last_finite : numpy.ndarray
        As ``LangevinBlock`` (states strictly ordered at every save time).
    steps : numpy.ndarray
        ``(m,)`` proximal steps taken.
    newton_iterations : numpy.ndarray
        ``(m,)`` total Newton iterations.
    newton_max : numpy.ndarray
        ``(m,)`` most Newton iterations in one step.
    newton_unconverged : numpy.ndarray
        ``(m,)`` 1 if a Newton solve stopped short, else 0.
    accepted : numpy.ndarray
        ``(m,)`` accepted proposals.
    """

    steps: np.ndarray
    newton_iterations: np.ndarray
    newton_max: np.ndarray
    newton_unconverged: np.ndarray
    accepted: np.ndarray




def resolving_step(
    system: MatrixVariant | DysonModel,
    states: np.ndarray,
    fraction: float = 0.1,
    rescaled: bool | None = None,
) -> float:
    """The step ``h`` at which the proximal gap floor ``sqrt(2 h_x kappa)`` is ``fraction`` of
    the median nearest-neighbour gap of ``states`` (``(..., d)``, e.g. a pilot run) in the flat
    chart (``u``, ``rho`` or ``l``); ``h`` in the engine's time (``t``, or ``tau`` when
    ``rescaled`` / ``N = inf``).  Pair gaps well above ``fraction`` of the typical gap are then
    sampled without the depletion described in the module docstring.

    Parameters
    ----------
    system : MatrixVariant or DysonModel
        The baseline system (width >= 2).
    states : array_like
        Sample states, shape ``(..., d)`` (any order within a row).
    fraction : float, default 0.1
        Target ratio of the gap floor to the median gap, > 0.
    rescaled : bool, optional
        Time ``tau = N t``; default the system's (``t`` for finite ``N``).

    Returns
    -------
    float
        The step ``h = (fraction * gap)^2 / (2 kappa)`` in the engine's time.

    Raises
    ------
    ValueError
        For an invalid system, fraction or states (wrong shape, no positive finite gap).
    """
    if not isinstance(system, MatrixVariant | DysonModel):
        raise fail("system", system, "must be a particles.MatrixVariant or particles.DysonModel")
    fraction = check_positive(fraction, "fraction")
    x = np.asarray(states, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != system.width or system.width < 2:
        raise fail("states", x.shape, f"must have shape (..., {system.width}) with width >= 2")
    scale = system.time_scale(system.resolve_rescaled(rescaled))
    flat = system.to_chart(np.sort(x.reshape(-1, system.width), axis=-1))
    gap = float(np.median(np.abs(np.diff(flat, axis=-1))))
    if not (math.isfinite(gap) and gap > 0.0):
        raise fail("states", "<array>", "have no positive finite gaps")
    return (fraction * gap) ** 2 / (2.0 * system.pair_coefficient()) / scale




def simulate_baseline_members(
    system: MatrixVariant | DysonModel,
    sigma0: np.ndarray,
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float | None = None,
    rescaled: bool | None = None,
    metropolis: bool = False,
) -> BaselineBlock:
    """The split-step proximal scheme for ``m`` members of a baseline system; states at ``times``.

    Same contract as ``particles.langevin.simulate_members``: ``sigma0`` ``(m, d)`` initial
    states (matrix variant: positive singular values, rows sorted first; Dyson: eigenvalues,
    rows strictly decreasing), ``members`` global indices (member ``k`` uses
    ``member_rng(seed, k)``), ``times`` increasing save times (``t``, or ``tau = N t`` when
    ``rescaled`` / ``N = inf``), ``dt`` the largest step, ``temperature`` the noise ``T``
    (default ``1/beta``; ``0``: the implicit-explicit scheme for the gradient flow).  Returns a
    ``BaselineBlock`` whose states are strictly ordered at every save time (module docstring).

    ``metropolis=True`` (``T > 0``) makes each step a Metropolis-Hastings proposal (a
    Metropolis-adjusted Langevin algorithm with the proximal step): the proposal ``z`` is
    accepted with probability
    ``min(1, exp(-Phi(z)/T) q(x | z) / (exp(-Phi(x)/T) q(z | x)))``, where ``exp(-Phi/T)`` is
    the stationary density in the flat coordinate and ``q`` the exact density of the step (the
    proximal map is a bijection onto ``D`` with inverse ``Y(z) = z - h kappa grad B(z)`` and
    Jacobian ``det(I + h kappa L(z))``; the reflection at ``u = 0`` folds two pre-images).
    The chain then leaves the exact stationary law invariant for every ``dt``: the time-step
    bias of the plain scheme, which depletes pair gaps below ``~sqrt(2 h kappa)`` and so
    inflates the measured repulsion exponent, is removed, at the price of the dynamics
    (a rejected step stays put).  The uniforms come from ``acceptance_rng(seed, k)``.

    Parameters
    ----------
    system : MatrixVariant or DysonModel
        The baseline system.
    sigma0 : array_like
        ``(m, d)`` initial states.
    members : array_like
        ``(m,)`` distinct global member indices >= 0.
    times : array_like
        Save times, increasing, ``>= 0``.
    dt : float
        The largest step, > 0.
    seed : int
        The root seed, >= 0.
    temperature : float, optional
        Noise temperature ``T >= 0``; default ``1 / beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default the system's.
    metropolis : bool, default False
        Accept or reject each step (MALA); needs ``T > 0``.

    Returns
    -------
    BaselineBlock
        States at the save times, failures and Newton/acceptance statistics per member.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    """
    if not isinstance(system, MatrixVariant | DysonModel):
        raise fail("system", system, "must be a particles.MatrixVariant or particles.DysonModel")
    args = check_run(system, sigma0, members, times, dt, seed, temperature, rescaled)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and args.temperature == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    start = args.start
    if isinstance(system, MatrixVariant):
        start = np.sort(start, axis=-1)[:, ::-1]
    start = np.ascontiguousarray(start)
    stepper = Proximal(
        system, start, args.temperature, args.rescaled, metropolis, args.members, args.seed
    )
    run = run_steps(
        stepper, {"sigma": start}, args.members, args.times, args.dt, args.seed,
        args.temperature > 0.0,
    )  # fmt: skip
    return BaselineBlock(
        sigma=run.outputs["sigma"],
        failed_time=run.failed_time,
        last_finite=run.last_finite["sigma"],
        **run.stats,
    )
