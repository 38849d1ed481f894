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

Scheme (split step, per step ``h`` in the flat coordinate ``x`` = ``u``, ``rho`` or ``l``):

    y     = x + h b_reg(x) + sqrt(noise_var h) xi                     (explicit, as langevin.py)
    x_new = argmin_{z in D} |z - y|^2 / (2h) - kappa sum_{i<j} [log(z_i - z_j) (+ log(z_i + z_j))]

then (matrix variant, finite ``N``) ``x_new_d <- |x_new_d|``, counted as a reflection when it was
negative.  ``b_reg`` is the smooth drift (energy and DLN entropy from ``Model._gradient_rho``
for the matrix variant; ``-l/2`` for Dyson); ``kappa`` the coefficient of the singular force:
``1`` (Dyson), ``1/(N beta)`` with the mirror terms ``log(z_i + z_j)`` (matrix variant in ``u``),
``1/beta`` (``N = inf``, no mirror).  ``D = {z_1 > ... > z_d}`` (Dyson, ``N = inf``) or
``D = {z_1 > ... > z_{d-1} > |z_d|}`` (mirror: the intersection of the half-spaces
``z_i - z_j > 0``, ``z_i + z_j > 0``).

Guarantee.  ``D`` is convex and the objective is strictly convex on it, tends to ``+inf`` at
its boundary (log barrier) and at infinity (quadratic), so the minimiser exists, is unique and
lies strictly inside ``D``, for every noise realisation and every ``h > 0``.  It is computed by
damped Newton iterations that start strictly inside ``D`` and accept only trial points whose
pair gaps (and mirror sums) are ``> 0`` in floating point, hence the particles are strictly
ordered after every step (``x_1 > ... > x_d``, and ``x_{d-1} > x_d >= 0`` after the
reflection): particles never cross or collide, whatever the noise, ``dt`` or ``b``.  The
singular values ``sigma = u^N`` or ``e^rho`` reported are monotone images of that state
(ordered; strictly unless two values round to the same float).  The proximal step is the
implicit Euler step of the singular drift (its optimality condition is
``z = y + h kappa grad log-gas(z)``), so the scheme is a drift-implicit Euler-Maruyama method
with additive noise: first order in the weak sense (formally, for smooth test functions), and
its stationary law is ``O(h)`` from the exact one (measured for the ``N = 1`` matrix variant,
``beta = 1``, ``d = 4``: ``E sum sigma^2`` off by -2.1%, -1.3%, -0.7% at ``h = 0.04, 0.02, 0.01``).
The pair gaps are resolved only above ``~sqrt(2 h kappa)``: the prox maps a pre-gap ``g_y``
to ``(g_y + sqrt(g_y^2 + 8 h kappa)) / 2 >= ~sqrt(2 h kappa)``, so smaller gaps are depleted and
a small-spacing exponent measured from such samples comes out too large (the ``N = 4`` matrix
variant at ``d = 16``, ``beta = 1``, where ``sqrt(2 h kappa)`` is 0.38 / 0.19 / 0.095 of the
median gap in ``u`` at ``dt = 1e-3 / 2.5e-4 / 6.25e-5``: ``gamma`` = 3.0 / 2.1 / 1.4).

Metropolis adjustment (``metropolis=True``).  The step above is a proposal whose density is
known exactly (the prox is a bijection onto ``D`` with inverse ``Y(z) = z - h kappa grad B(z)``
and Jacobian ``det(I + h kappa L(z))``; the reflection folds the two pre-images ``z`` and its
mirror image), so a Metropolis-Hastings test against ``exp(-Phi / T)`` (``Phi`` = ``F`` in the
flat chart, or Dyson's potential) makes the stationary law exact for every ``h``: a
Metropolis-adjusted Langevin algorithm with a proximal proposal.  Tested on exact second
moments at coarse ``dt`` (tests/test_baselines.py); acceptance 0.87-0.97 there.

Newton.  With ``Phi_h(z) = |z - y|^2 / 2 - h kappa B(z)`` (``B`` the log-gas sum), gradient
``g = z - y - h kappa grad B`` and Hessian ``I + h kappa L(z)``, ``L`` the positive semi-definite
Laplacian-like matrix ``sum_q a_q a_q^T / (a_q . z)^2`` (``a_q = e_i - e_j`` and ``e_i + e_j``),
the Newton direction ``p`` comes from ``numpy.linalg.solve`` on ``(m, d, d)`` stacks.
``Phi_h / (h kappa)`` is self-concordant: when its Newton decrement
``lambda = sqrt(-g.p / (h kappa))`` is ``<= 1/4`` the full step is taken (it stays in ``D`` and
decreases ``Phi_h``, so no Armijo test is needed against rounding noise); otherwise the step
starts at ``min(1, 0.99 a_max)`` (``a_max``: the distance to the boundary of ``D`` along ``p``)
and is halved until it is strictly feasible in floating point and satisfies Armijo
(``c = 1e-4``).  The start is the previous state or ``y`` sorted and pushed apart to gaps
``>= sqrt(h kappa)``, whichever has the lower objective.  A member stops when
``max|g| <= 1e-12 s``, ``s = max(|y|_inf, |z|_inf, sqrt(h kappa))``, or when ``max|p| <= 4 eps s``
(``z`` cannot move by more than rounding; reached before the gradient test only when ``y`` is
crossed by far more than ``sqrt(h kappa)``, e.g. a pair ``y``-gap of ``-5`` at
``h kappa = 1e-6``: the gradient is then a difference of terms of size ``|z - y|`` evaluated at
gaps ``~ h kappa / |z - y|``, which rounding resolves only to ``~ eps s |z - y| / gap``).
Iterations are counted per member (``BaselineBlock``).  A member whose solve does not converge
within ``NEWTON_MAX_ITER`` iterations (or whose line search stalls) fails like a non-finite
state (seen only in deliberately unstable runs; simulation steps take 2.5-3 iterations on
average at the ``dt`` of the statistical tests and 4.5-6.5 at ``dt = 0.5``, at most 15).

Conventions shared with ``particles.langevin.simulate_members``: the same step plan
(``_step_plan``); the same noise (member ``k`` draws ``member_rng(seed, k)``, one row of ``d``
standard normals per step in batches of ``K = noise_batch_steps(d)`` steps, none at ``T = 0``);
the same faults (a member fails when its state becomes non-finite, ``sigma`` would overflow or
``u`` lands exactly on 0, and here also when its Newton solve does not converge; it is NaN from
the failing step on, ``failed_time`` is the end of that step and ``last_finite`` the state before
it).  Every operation is row-wise (sums over the last axis in a fixed sequential order,
per-matrix LAPACK solves, per-member Newton stopping), so a member's path is bitwise independent
of the other members in its block.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import coordinates as coords_mod
from .entropy import entropy as dln_entropy
from .entropy import entropy_gradient as dln_entropy_gradient
from .entropy import entropy_hessian as dln_entropy_hessian
from .langevin import (
    _LOG_MAX,
    LangevinBlock,
    _check_index,
    _check_members,
    _step_plan,
    member_rng,
    noise_batch_steps,
)
from .model import Model
from .validation import (
    _short,
    check_bool,
    check_positive,
    check_singular_values,
    check_times,
    check_width,
    fail,
)

__all__ = [
    "BaselineBlock",
    "DysonModel",
    "MatrixVariant",
    "acceptance_rng",
    "resolving_step",
    "simulate_baseline_members",
]

NEWTON_RTOL = 1e-12  #: relative gradient tolerance of the proximal Newton solve
NEWTON_MAX_ITER = 100  #: cap on Newton iterations per step (never reached in the tests)
_ARMIJO = 1e-4
_MAX_HALVINGS = 60
_NEWTON_REGION = 0.25  # Newton decrement below which the full step is safe (self-concordance)
_STEP_FLOOR = 4.0 * np.finfo(np.float64).eps  # relative Newton step that rounding cannot resolve


def _rowsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis in a fixed sequential order (bitwise independent of other axes)."""
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        out += a[..., j]
    return out


def _offdiag(a: np.ndarray) -> np.ndarray:
    """``a`` with its diagonal (last two axes) set to 0, in place."""
    idx = np.arange(a.shape[-1])
    a[..., idx, idx] = 0.0
    return a


# ---------------------------------------------------------------------- matrix variant
@dataclass(frozen=True)
class MatrixVariant(Model):
    r"""The singular values of a full matrix under the Langevin equation of ``(M_d, g^N)``.

    Same fields as ``Model``; the entropy gains the SVD-orbit log-volume

        O(sigma) = sum_{i<j} log|u_i^2 - u_j^2|,  u = sigma^{1/N}   (N = inf: log|rho_i - rho_j|),

    i.e. in ``rho = log sigma``
    ``O = sum_{i<j} [(rho_i + rho_j)/N + log(2 sinh(|rho_i - rho_j|/N))]``, and
    ``F = E - (S_N + O) / beta`` (``+inf`` at collisions).  ``entropy``, ``free_energy``,
    their gradients/Hessians and ``velocity`` include ``O``; ``equilibrium`` and
    ``relaxation_rates`` (equal-singular-value results of the chamber model) raise.  Simulate
    with ``simulate_baseline_members`` or ``langevin_ensemble`` (not ``simulate_members``, whose
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

    @classmethod
    def from_model(cls, model: Model) -> MatrixVariant:
        """The matrix variant of a chamber ``Model`` (same width, depth, beta and energy)."""
        if not isinstance(model, Model):
            raise fail("model", model, "must be a particles.Model")
        return cls(model.width, model.depth, model.beta, model.energy)

    def describe(self) -> dict[str, str | float | int]:
        """``Model.describe()`` plus ``system = "matrix_variant"``."""
        return {"system": "matrix_variant", **super().describe()}

    def check_state(self, sigma: object, name: str = "sigma0") -> np.ndarray:
        """Positive finite singular values (any order; collisions allowed at the start)."""
        return check_singular_values(sigma, self.width, name)

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
        iu, ju = np.triu_indices(d, 1)
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
                return _rowsum(_offdiag(1.0 / diff))
            n = self.depth
            return (self.width - 1) / n + _rowsum(_offdiag(1.0 / np.tanh(diff / n))) / n

    def _orbit_hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        """Off-diagonal ``csch^2((rho_i-rho_j)/N)/N^2`` (``1/diff^2`` at N = inf), rows sum to 0."""
        diff = rho[..., :, None] - rho[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.infinite:
                off = _offdiag(1.0 / (diff * diff))
            else:
                n = self.depth
                s = np.sinh(diff / n)
                off = _offdiag(1.0 / (n * n * s * s))
        idx = np.arange(self.width)
        off[..., idx, idx] = -_rowsum(off)
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
        return self._free_energy_rho(self._rho(sigma, "sigma"))

    def _free_energy_rho(self, rho: np.ndarray) -> np.ndarray:
        return super()._free_energy_rho(rho) - self._orbit_rho(rho) / self.beta

    def _gradient_rho(self, rho: np.ndarray) -> np.ndarray:
        """``dF/drho`` including the orbit force."""
        return super()._gradient_rho(rho) - self._orbit_gradient_rho(rho) / self.beta

    def _hessian_rho(self, rho: np.ndarray) -> np.ndarray:
        return super()._hessian_rho(rho) - self._orbit_hessian_rho(rho) / self.beta

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

    def equilibrium(self) -> float:
        """Not available: the orbit term is ``-inf`` at equal singular values."""
        raise fail("model", self.describe(), "the matrix variant has no equal-sigma equilibrium")

    def relaxation_rates(
        self, method: str = "formula", rescaled: bool | None = None
    ) -> tuple[float, float]:
        """Not available (they linearize at the equal-sigma equilibrium of the chamber model)."""
        raise fail("model", self.describe(), "the matrix variant has no equal-sigma equilibrium")


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

    def _rescaled(self, rescaled: bool | None) -> bool:
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
            raise fail(name, _short(arr), f"last axis must have length width={self.width}")
        if not np.all(np.isfinite(arr)):
            raise fail(name, _short(arr), "eigenvalues must be finite")
        if not np.all(np.diff(arr, axis=-1) < 0):
            raise fail(
                name,
                _short(arr),
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
        iu, ju = np.triu_indices(self.width, 1)
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
            return x / 2.0 - _rowsum(_offdiag(1.0 / diff))


# ---------------------------------------------------------------------- proximal step
def _objective(
    z: np.ndarray, y: np.ndarray, hk: float, mirror: bool, pairs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``Phi_h(z) = |z-y|^2/2 - hk sum_{i<j} [log(z_i-z_j) (+ log(z_i+z_j))]``, ``inf`` off D."""
    iu, ju = pairs
    gaps = z[:, iu] - z[:, ju]
    feasible = gaps.min(axis=1) > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        barrier = _rowsum(np.log(gaps))
        if mirror:
            sums = z[:, iu] + z[:, ju]
            feasible &= sums.min(axis=1) > 0.0
            barrier += _rowsum(np.log(sums))
        r = z - y
        phi = 0.5 * _rowsum(r * r) - hk * barrier
    return np.where(feasible, phi, np.inf)


def _pair_terms(z: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(grad B, L)``: ``grad B_i = sum_{j!=i} 1/(z_i-z_j) (+ 1/(z_i+z_j))``, ``L`` = -Hess B."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = _offdiag(1.0 / (z[:, :, None] - z[:, None, :]))
        force = _rowsum(inv)
        curv = inv * inv
        lap = -curv
        diag = _rowsum(curv)
        if mirror:
            inv_s = _offdiag(1.0 / (z[:, :, None] + z[:, None, :]))
            force += _rowsum(inv_s)
            curv_s = inv_s * inv_s
            lap += curv_s
            diag += _rowsum(curv_s)
    idx = np.arange(z.shape[1])
    lap[:, idx, idx] = diag
    return force, lap


def _start(
    x: np.ndarray, y: np.ndarray, hk: float, mirror: bool, pairs: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A strictly feasible Newton start and its objective: the previous state ``x`` or ``y``
    sorted and pushed apart to gaps ``>= sqrt(hk)``, whichever is lower; an equally spaced point
    if neither is feasible."""
    d = y.shape[1]
    delta = math.sqrt(hk)
    w = np.sort(y, axis=1)[:, ::-1]
    shift = delta * np.arange(d)
    c = w + shift
    if mirror:
        c[:, -1] = np.abs(w[:, -1]) + shift[-1]
    cm = np.maximum.accumulate(c[:, ::-1], axis=1)[:, ::-1]
    pushed = np.where(cm > c, cm - shift, w)
    if mirror:
        pushed[:, -1] = w[:, -1]
    phi_x = _objective(x, y, hk, mirror, pairs)
    phi_p = _objective(pushed, y, hk, mirror, pairs)
    use = phi_p < phi_x
    z = np.where(use[:, None], pushed, x)
    phi = np.where(use, phi_p, phi_x)
    bad = ~np.isfinite(phi)
    if bad.any():  # both infeasible (rounding at absurd scales): spacing s >> rounding
        yb = y[bad]
        s = np.maximum(np.abs(yb).max(axis=1), delta)[:, None]
        k = np.arange(d)
        if mirror:
            z[bad] = s * (d - k - 0.5)
        else:
            z[bad] = _rowsum(yb)[:, None] / d + s * ((d - 1) / 2.0 - k)
        phi[bad] = _objective(z[bad], yb, hk, mirror, pairs)
    return z, phi


def _solve(hess: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``-hess^{-1} g`` per row (batched LAPACK); NaN rows where a system is singular.

    Only Hessians with pair gaps ~1e-150 times ``sqrt(h kappa)`` (condition ~1e300) can be
    singular in floating point; then each row is solved alone (same LAPACK call per matrix, so
    the other rows are bitwise unchanged).
    """
    try:
        return -np.linalg.solve(hess, g[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        out = np.full_like(g, np.nan)
        for k in range(g.shape[0]):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[k] = -np.linalg.solve(hess[k : k + 1], g[k : k + 1, :, None])[0, :, 0]
        return out


def _max_step(
    z: np.ndarray, p: np.ndarray, mirror: bool, pairs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Largest ``a`` with ``z + a p`` in ``D``: ``min (a_q.z) / (-a_q.p)`` over ``a_q.p < 0``."""
    iu, ju = pairs
    with np.errstate(divide="ignore", invalid="ignore"):
        dz, dp = z[:, iu] - z[:, ju], p[:, iu] - p[:, ju]
        out = np.where(dp < 0.0, dz / -dp, np.inf).min(axis=1)
        if mirror:
            sz, sp = z[:, iu] + z[:, ju], p[:, iu] + p[:, ju]
            out = np.minimum(out, np.where(sp < 0.0, sz / -sp, np.inf).min(axis=1))
    return out


def _prox(
    y: np.ndarray, x: np.ndarray, hk: float, mirror: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The proximal step ``argmin_D Phi_h`` for each row of ``y`` by damped Newton.

    Returns ``(z, iterations, converged)``; every iterate of every row stays strictly in ``D``.
    """
    m, d = y.shape
    iters = np.zeros(m, dtype=np.int64)
    converged = np.ones(m, dtype=bool)
    if d == 1:  # no pair: the minimiser is y itself
        return y.copy(), iters, converged
    converged[:] = False
    pairs = np.triu_indices(d, 1)
    z, phi = _start(x, y, hk, mirror, pairs)
    eye = np.eye(d)
    root = math.sqrt(hk)
    act = np.arange(m)
    for it in range(NEWTON_MAX_ITER + 1):
        za, ya = z[act], y[act]
        force, lap = _pair_terms(za, mirror)
        g = (za - ya) - hk * force
        scale = np.maximum(np.maximum(np.abs(za).max(axis=1), np.abs(ya).max(axis=1)), root)
        done = np.abs(g).max(axis=1) <= NEWTON_RTOL * scale
        converged[act[done]] = True
        keep = ~done
        if it == NEWTON_MAX_ITER or not keep.any():
            break
        # rows whose Newton system overflowed (gaps below ~1e-154) cannot be continued
        keep &= np.isfinite(g).all(axis=1) & np.isfinite(lap).all(axis=(1, 2))
        if not keep.any():
            break
        act, za, ya, g, lap, scale = (v[keep] for v in (act, za, ya, g, lap, scale))
        p = _solve(eye + hk * lap, g)
        keep = np.isfinite(p).all(axis=1)  # a numerically singular system ends that row
        if not keep.all():
            act, za, ya, g, scale, p = (v[keep] for v in (act, za, ya, g, scale, p))
            if act.size == 0:
                break
        floor = np.abs(p).max(axis=1) <= _STEP_FLOOR * scale
        if floor.any():  # the Newton step is below rounding: z cannot be improved
            converged[act[floor]] = True
            move = ~floor
            act, za, ya, g, p = act[move], za[move], ya[move], g[move], p[move]
            if act.size == 0:
                break
        slope = _rowsum(g * p)  # -g^T H^{-1} g
        full = np.sqrt(np.maximum(-slope, 0.0) / hk) <= _NEWTON_REGION
        phi_a = phi[act]
        alpha = np.where(full, 1.0, np.minimum(1.0, 0.99 * _max_step(za, p, mirror, pairs)))
        pending = np.ones(act.size, dtype=bool)
        z_new, phi_new = za.copy(), phi_a.copy()
        for _ in range(_MAX_HALVINGS):
            idx = np.flatnonzero(pending)
            trial = za[idx] + alpha[idx, None] * p[idx]
            phi_t = _objective(trial, ya[idx], hk, mirror, pairs)
            ok = np.isfinite(phi_t) & (
                full[idx] | (phi_t <= phi_a[idx] + _ARMIJO * alpha[idx] * slope[idx])
            )
            z_new[idx[ok]] = trial[ok]
            phi_new[idx[ok]] = phi_t[ok]
            pending[idx[ok]] = False
            alpha[idx[~ok]] *= 0.5
            if not pending.any():
                break
        z[act] = z_new
        phi[act] = phi_new
        iters[act] += 1
        act = act[~pending]  # a stalled line search ends that row's iteration (unconverged)
        if act.size == 0:
            break
    return z, iters, converged


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


@dataclass(frozen=True)
class _Chart:
    """The flat coordinate of a system: conversions, smooth drift and the log-gas step data."""

    to_flat: Callable[[np.ndarray], np.ndarray]
    to_state: Callable[[np.ndarray], np.ndarray]
    drift: Callable[[np.ndarray], np.ndarray]
    potential: Callable[[np.ndarray], np.ndarray]  # Phi: stationary density exp(-Phi/T) dx
    is_bad: Callable[[np.ndarray], np.ndarray]
    h_scale: float
    noise_var: float
    kappa: float
    mirror: bool


def _chart(system: MatrixVariant | DysonModel, rescaled: bool, temp: float) -> _Chart:
    if isinstance(system, DysonModel):
        return _Chart(
            to_flat=lambda s: s,
            to_state=lambda x: x,
            drift=lambda x: -0.5 * x,
            potential=system.free_energy,
            is_bad=lambda x: ~np.all(np.isfinite(x), axis=1),
            h_scale=1.0,
            noise_var=2.0 * temp,
            kappa=1.0,
            mirror=False,
        )
    gradient = super(MatrixVariant, system)._gradient_rho  # energy + DLN entropy only
    if system.infinite:
        return _Chart(
            to_flat=np.log,
            to_state=np.exp,
            drift=lambda rho: -gradient(rho),
            potential=system._free_energy_rho,
            is_bad=lambda rho: ~(np.all(np.isfinite(rho), axis=1) & (rho.max(axis=1) <= _LOG_MAX)),
            h_scale=1.0,
            noise_var=2.0 * temp,
            kappa=1.0 / system.beta,
            mirror=False,
        )
    n = system.depth

    def drift_u(u: np.ndarray) -> np.ndarray:  # -(1/N) dF/du = -(1/u) dF/drho
        return -gradient(n * np.log(u)) / u

    return _Chart(
        to_flat=lambda s: np.exp(np.log(s) / n),
        to_state=lambda u: np.exp(n * np.log(u)),
        drift=drift_u,
        potential=lambda u: system._free_energy_rho(n * np.log(u)),
        # rho = N log u must be finite (u > 0: landing exactly on 0 is a failure) and <= log max
        is_bad=lambda u: ~((n * np.log(u)).max(axis=1) <= _LOG_MAX) | ~(u.min(axis=1) > 0.0),
        h_scale=1.0 / n if rescaled else 1.0,
        noise_var=2.0 * temp / n,
        kappa=1.0 / (n * system.beta),
        mirror=True,
    )


@dataclass
class _Terms:
    """Per-state quantities of the Metropolis test (rows = members), for one ``(h, kappa)``.

    ``phi``: ``Phi(x) / T``; ``mean``: the proposal mean ``x + h b_reg(x)``; ``back``: the
    pre-image ``Y(x) = x - h kappa grad B(x)`` of ``x`` under the proximal map; ``logdet``:
    ``log det(I + h kappa L(x))``, the log-Jacobian of ``Y``.
    """

    phi: np.ndarray
    mean: np.ndarray
    back: np.ndarray
    logdet: np.ndarray

    def take(self, keep: np.ndarray) -> _Terms:
        return _Terms(self.phi[keep], self.mean[keep], self.back[keep], self.logdet[keep])

    def update(self, accept: np.ndarray, new: _Terms) -> None:
        self.phi = np.where(accept, new.phi, self.phi)
        self.mean = np.where(accept[:, None], new.mean, self.mean)
        self.back = np.where(accept[:, None], new.back, self.back)
        self.logdet = np.where(accept, new.logdet, self.logdet)


def _terms(chart: _Chart, x: np.ndarray, h_x: float, hk: float, temp: float) -> _Terms:
    force, lap = _pair_terms(x, chart.mirror) if x.shape[1] > 1 else (0.0 * x, None)
    if lap is None:
        logdet = np.zeros(x.shape[0])
    else:
        _, logdet = np.linalg.slogdet(np.eye(x.shape[1]) + hk * lap)
    return _Terms(
        phi=chart.potential(x) / temp,
        mean=x + h_x * chart.drift(x),
        back=x - hk * force,
        logdet=logdet,
    )


def _log_proposal(to: _Terms, frm: _Terms, var: float, mirror: bool) -> np.ndarray:
    """``log q(to | frm)`` up to a constant: the Gaussian density of the pre-image ``Y(to)``
    around ``frm.mean`` times the Jacobian ``det(I + h kappa L(to))``; with the mirror the
    reflected pre-image (last coordinate negated, which the reflection maps to the same state)
    adds its own Gaussian term."""
    r = to.back - frm.mean
    quad = _rowsum(r * r)
    logq = -quad / (2.0 * var)
    if mirror:
        r_last = -to.back[:, -1] - frm.mean[:, -1]
        quad_flip = quad - r[:, -1] ** 2 + r_last**2
        logq = np.logaddexp(logq, -quad_flip / (2.0 * var))
    return logq + to.logdet


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
    chart = _chart(system, system._rescaled(rescaled), 1.0)
    flat = chart.to_flat(np.sort(x.reshape(-1, system.width), axis=-1))
    gap = float(np.median(np.abs(np.diff(flat, axis=-1))))
    if not (math.isfinite(gap) and gap > 0.0):
        raise fail("states", "<array>", "have no positive finite gaps")
    return (fraction * gap) ** 2 / (2.0 * chart.kappa) / chart.h_scale


def acceptance_rng(seed: int, member: int) -> np.random.Generator:
    """The uniforms of the Metropolis test of member ``member``:
    ``PCG64(SeedSequence(seed, spawn_key=(member, 1)))``, a stream apart from the noise
    (``member_rng``, spawn key ``(member,)``), so the noise rows drive the same steps with and
    without the test.

    Parameters
    ----------
    seed : int
        The root seed, >= 0.
    member : int
        The global member index, >= 0.

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator.

    Raises
    ------
    ValueError
        If ``seed`` or ``member`` is not a non-negative integer.
    """
    seed = _check_index(seed, "seed")
    member = _check_index(member, "member")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(member, 1))))


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
    rescaled = system._rescaled(rescaled)
    d = system.width
    state0 = system.check_state(sigma0, "sigma0")
    if state0.ndim != 2:
        raise fail("sigma0", state0.shape, f"must have shape (members, {d})")
    if isinstance(system, MatrixVariant):
        state0 = np.sort(state0, axis=-1)[:, ::-1]
    m = state0.shape[0]
    members = _check_members(members, m)
    times = check_times(times)
    dt = check_positive(dt, "dt")
    seed = _check_index(seed, "seed")
    if temperature is None:
        temp = 1.0 / system.beta
    else:
        temp = check_positive(temperature, "temperature", allow_zero=True)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and temp == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")

    chart = _chart(system, rescaled, temp)
    plan = _step_plan(times, dt)
    start = np.ascontiguousarray(state0)
    out = np.full((m, times.size, d), np.nan)
    reflections = np.zeros(m, dtype=np.int64)
    failed_time = np.full(m, np.nan)
    last_finite = np.full((m, d), np.nan)
    steps = np.zeros(m, dtype=np.int64)
    n_iter = np.zeros(m, dtype=np.int64)
    n_max = np.zeros(m, dtype=np.int64)
    n_short = np.zeros(m, dtype=np.int64)
    accepted = np.zeros(m, dtype=np.int64)

    active = np.arange(m)
    x = chart.to_flat(start)
    rngs = [member_rng(seed, int(k)) for k in members]
    urngs = [acceptance_rng(seed, int(k)) for k in members] if metropolis else []
    batch = noise_batch_steps(d)
    buf = np.empty((m, batch, d))
    ubuf = np.empty((m, batch))
    pos = batch  # the buffer is refilled before the first step
    noisy = temp > 0.0

    with np.errstate(all="ignore"):
        for k, (t_start, t_end, n_steps, h) in enumerate(plan):
            h_x = h * chart.h_scale
            var = chart.noise_var * h_x
            amp = math.sqrt(var)
            hk = chart.kappa * h_x
            terms = _terms(chart, x, h_x, hk, temp) if metropolis and n_steps else None
            for j in range(n_steps):
                if noisy and pos == batch:
                    for a, idx in enumerate(active):
                        rngs[idx].standard_normal(out=buf[a])
                        if metropolis:
                            urngs[idx].random(out=ubuf[a])
                    pos = 0
                y = terms.mean.copy() if terms is not None else x + h_x * chart.drift(x)
                if noisy:
                    y += amp * buf[:, pos, :]
                fin = np.all(np.isfinite(y), axis=1)
                if fin.all():
                    z, it, conv = _prox(y, x, hk, chart.mirror)
                else:
                    z = np.full_like(y, np.nan)
                    it = np.zeros(y.shape[0], dtype=np.int64)
                    conv = np.ones(y.shape[0], dtype=bool)
                    z[fin], it[fin], conv[fin] = _prox(y[fin], x[fin], hk, chart.mirror)
                neg = np.zeros(z.shape[0], dtype=bool)
                if chart.mirror:
                    neg = z[:, -1] < 0.0
                    z[:, -1] = np.abs(z[:, -1])
                steps[active] += 1
                n_iter[active] += it
                n_max[active] = np.maximum(n_max[active], it)
                n_short[active] += ~conv
                bad = chart.is_bad(z) | ~conv
                if terms is not None:
                    new = _terms(chart, z, h_x, hk, temp)
                    bad |= ~(np.isfinite(new.phi) & np.isfinite(new.logdet))
                if bad.any():
                    ok = ~bad
                    lost = active[bad]
                    failed_time[lost] = t_end if j == n_steps - 1 else t_start + (j + 1) * h
                    last_finite[lost] = chart.to_state(x[bad])
                    active, x, z, neg = active[ok], x[ok], z[ok], neg[ok]
                    buf, ubuf = buf[ok], ubuf[ok]
                    if terms is not None:
                        terms, new = terms.take(ok), new.take(ok)
                if terms is not None:
                    log_ratio = (terms.phi - new.phi) + (
                        _log_proposal(terms, new, var, chart.mirror)
                        - _log_proposal(new, terms, var, chart.mirror)
                    )
                    accept = np.log(ubuf[:, pos]) < log_ratio
                    z = np.where(accept[:, None], z, x)
                    neg &= accept
                    terms.update(accept, new)
                else:
                    accept = np.ones(z.shape[0], dtype=bool)
                accepted[active] += accept
                pos += 1
                reflections[active] += neg
                x = z
            out[active, k] = start[active] if n_steps == 0 else chart.to_state(x)
    last_finite[active] = out[active, -1]
    return BaselineBlock(
        sigma=out,
        reflections=reflections,
        failed_time=failed_time,
        last_finite=last_finite,
        steps=steps,
        newton_iterations=n_iter,
        newton_max=n_max,
        newton_unconverged=n_short,
        accepted=accepted,
    )
