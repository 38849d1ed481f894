r"""The matrix Langevin system: one batched SVD per state gives everything a step needs
(theory.md section 12).

For a stack ``X`` of ``m`` matrices ``d x d`` with SVDs ``X = U diag(sigma) V^T``
(``numpy.linalg.svd`` on the ``(m, d, d)`` stack: one batched LAPACK call), the DLN operator
is diagonal in the SVD frame (section 12.1),

    A_X(P) = U (K o (U^T P V)) V^T,      K_ij = k_N(sigma_i, sigma_j),

with ``log K_ij = (1 - 1/N)(rho_i + rho_j) + psi_N(rho_i - rho_j)`` (``rho = log sigma``; the
stable form of section 2.5, ``particles.entropy.log_kernel``).  In the time of ``times``
(``t``, or ``tau = N t`` when ``rescaled``, always at ``N = inf``) the operator is
``A_eff = A_X / s`` with ``s = N`` for ``tau`` and ``1`` for ``t``; at ``N = inf`` ``K`` is the
logarithmic mean of ``sigma_i^2, sigma_j^2``.  The Langevin equation at noise temperature ``T``
(section 12.5; ``T = 1/beta`` by default) is

    dX = b(X) dt + sqrt(2 T) A_eff^{1/2}(dW),
    U^T b V = -K_eff o (U^T grad E V)
              + diag( K_eff,ii / sigma_i [dS_N/drho_i / beta + T (1 - 1/N)] ),

the last term being ``A_eff(grad S_N) / beta`` (section 12.2) plus the Ito (Laplace-Beltrami)
drift ``T (N-1) U diag(sigma^{1-2/N}) V^T`` in ``t`` (``K_ii / sigma_i = N sigma_i^{1-2/N}``),
which is ``T sigma`` at ``N = inf``.  Its stationary density w.r.t. ``dX`` is

    log pi(X) = -F_beta(X) / T - 1/2 sum_ij log K_eff,ij        (+ const),

i.e. ``-beta E + S_N - 1/2 log det A_X`` at ``T = 1/beta``.

``frame`` computes, from one batched SVD, the quantities a step needs at a state: the frame
``U, sigma, V^T``, ``K_eff``, the drift in the frame, ``log pi`` and ``log det A_eff``.
The spectral parts of the energy (a ``particles`` energy, i.e. ``E = sum_i e(sigma_i)``) use
the same SVD, so a state costs exactly one SVD whatever the energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlnsim.particles.energies import Energy
from dlnsim.particles.entropy import log_kernel
from dlnsim.particles.pairsum import entropy_gradient_rho as dln_entropy_gradient
from dlnsim.particles.pairsum.coefficients import one_minus

__all__ = ["Frame", "frame", "svd_stack", "to_frame", "from_frame"]


def svd_stack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batched LAPACK SVD of a ``(m, d, d)`` stack (theory.md 12.1), matrix by matrix.

    Parameters
    ----------
    x : numpy.ndarray
        ``(m, d, d)`` finite matrices.

    Returns
    -------
    tuple of numpy.ndarray
        ``U`` ``(m, d, d)``, ``sigma`` ``(m, d)`` (descending), ``V^T`` ``(m, d, d)``.
    """
    return np.linalg.svd(x)


def to_frame(u: np.ndarray, p: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """``U^T P V``: a matrix in the SVD frame of ``X = U diag(sigma) V^T`` (theory.md 12.1).

    Parameters
    ----------
    u, vt : numpy.ndarray
        ``(m, d, d)`` ``U`` and ``V^T``.
    p : numpy.ndarray
        ``(m, d, d)`` the matrices ``P``.

    Returns
    -------
    numpy.ndarray
        ``(m, d, d)``.
    """
    return np.matmul(np.matmul(np.swapaxes(u, -1, -2), p), np.swapaxes(vt, -1, -2))


def from_frame(u: np.ndarray, q: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """``U Q V^T``: back from the SVD frame (the inverse of ``to_frame``).

    Parameters
    ----------
    u, vt : numpy.ndarray
        ``(m, d, d)`` ``U`` and ``V^T``.
    q : numpy.ndarray
        ``(m, d, d)`` matrices in the frame.

    Returns
    -------
    numpy.ndarray
        ``(m, d, d)``.
    """
    return np.matmul(np.matmul(u, q), vt)


def _terms(energy: object) -> list[tuple[float, object]]:
    """The energy as a flat list of ``(weight, term)``: a ``particles`` energy (spectral,
    ``sum_i e(sigma_i)``) is its own term; ``network.Spectral`` (``weight``, ``spectral``) is a
    weighted spectral term; ``network`` sums (``terms``) are flattened; anything else is a
    matrix energy with ``energy(X)`` and ``gradient(X)`` on stacks."""
    if isinstance(energy, Energy):
        return [(1.0, energy)]
    inner = getattr(energy, "spectral", None)
    if isinstance(inner, Energy):
        return [(float(energy.weight), inner)]
    parts = getattr(energy, "terms", None)
    if parts is not None:
        return [item for term in parts for item in _terms(term)]
    return [(1.0, energy)]


def _energy_parts(energy: object, x: np.ndarray, sigma: np.ndarray):
    """``(E, grad E of the matrix terms or None, dE/dsigma of the spectral terms or None)``.

    The spectral terms (``E = w sum_i e(sigma_i)``) use the singular values of the one SVD;
    their gradient ``w U diag(e'(sigma)) V^T`` is diagonal in the frame (section 12.2), so it is
    returned as ``dE/dsigma``.  The other terms give ``energy(X)`` and ``gradient(X)``; their
    gradient is rotated into the frame by the caller (two products per member).
    """
    value = np.zeros(x.shape[0])
    grad = de = None
    for weight, term in _terms(energy):
        if isinstance(term, Energy):
            value = value + weight * term.e(sigma).sum(axis=-1)
            part = weight * term.de(sigma)
            de = part if de is None else de + part
        else:
            value = value + np.asarray(term.energy(x), dtype=np.float64)
            part = np.asarray(term.gradient(x), dtype=np.float64)
            grad = part if grad is None else grad + part
    return value, grad, de


def _log_kernel_matrix(rho: np.ndarray, depth: int | float) -> tuple[np.ndarray, np.ndarray]:
    """``log K`` (``(m, d, d)``, symmetric) and ``S_N = 1/2 sum_{i<j} log K_ij`` (``(m,)``).

    The pairs ``i < j`` use the stable form ``particles.entropy.log_kernel`` (section 2.5);
    the diagonal is ``log m(sigma_i) = log N + 2 (1 - 1/N) rho_i`` (``2 rho_i`` at ``N = inf``,
    where ``log N`` is dropped as in ``S_inf``).  ``1/2 sum_{i<j} log K_ij`` is exactly
    ``particles.entropy.entropy`` (its ``a sum rho`` collects the ``(1 - 1/N)(rho_i + rho_j)``
    parts), so the entropy costs no second evaluation of ``psi_N``.
    """
    m, d = rho.shape
    infinite = depth == math.inf
    weight = one_minus(depth)
    logk = np.empty((m, d, d))
    idx = np.arange(d)
    logk[:, idx, idx] = 2.0 * weight * rho + (0.0 if infinite else math.log(depth))
    if d == 1:
        return logk, np.zeros(m)
    iu, ju = np.triu_indices(d, 1)
    pairs = log_kernel(rho[:, iu], rho[:, ju], depth)
    logk[:, iu, ju] = pairs
    logk[:, ju, iu] = pairs
    return logk, 0.5 * pairs.sum(axis=1)


@dataclass
class Frame:
    """Everything one step needs at a stack of states (rows = members).

    Parameters
    ----------
    x : numpy.ndarray
        ``(m, d, d)`` the states.
    u, sigma, vt : numpy.ndarray
        The SVD ``x = u diag(sigma) vt`` (``sigma`` descending).
    k : numpy.ndarray
        ``(m, d, d)`` ``K_eff`` (the operator's entries in the frame, in the time of the run).
    drift : numpy.ndarray
        ``(m, d, d)`` ``U^T b V``: the drift in the frame.
    energy, free_energy, log_density, logdet : numpy.ndarray
        ``(m,)``: ``E``, ``F_beta``, ``log pi`` (w.r.t. ``dX``, up to a constant; NaN at
        ``T = 0``) and ``sum log K_eff``.
    """

    x: np.ndarray
    u: np.ndarray
    sigma: np.ndarray
    vt: np.ndarray
    k: np.ndarray
    drift: np.ndarray
    energy: np.ndarray
    free_energy: np.ndarray
    log_density: np.ndarray
    logdet: np.ndarray

    def ok(self) -> np.ndarray:
        """``(m,)`` rows whose every quantity is finite (a state a step can start from)."""
        fin = np.isfinite(self.drift).all(axis=(1, 2)) & np.isfinite(self.free_energy)
        return fin & np.isfinite(self.logdet) & np.isfinite(self.k).all(axis=(1, 2))

    def take(self, rows: np.ndarray) -> Frame:
        """The frame of a subset of rows (boolean mask or indices)."""
        return Frame(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})

    def update(self, rows: np.ndarray, new: Frame) -> None:
        """Replace the rows ``rows`` (boolean mask) by those of ``new``, in place."""
        for name in self.__dataclass_fields__:
            getattr(self, name)[rows] = getattr(new, name)[rows]


def frame(
    x: np.ndarray,
    width: int,
    depth: int | float,
    beta: float,
    energy: object,
    temperature: float,
    time_scale: float,
) -> Frame:
    """The SVD frame, ``K_eff``, the drift and the log-density at a stack of states.

    One batched SVD (``svd_stack``); for a non-spectral energy two more matrix products per
    member to rotate ``grad E`` into the frame.  See the module docstring for the formulas
    (theory.md sections 12.1, 12.2 and 12.5).

    Parameters
    ----------
    x : numpy.ndarray
        ``(m, d, d)`` finite states.
    width : int
        ``d``.
    depth : int or float
        ``N`` (an integer >= 1 or ``math.inf``).
    beta : float
        Inverse temperature of ``F_beta = E - S_N / beta``.
    energy : object
        A ``particles`` energy (spectral) or a matrix energy with ``value`` and ``gradient``.
    temperature : float
        Noise temperature ``T > 0`` (``T = 0`` drops the Ito drift; ``log_density`` is then
        ``-inf`` times ``F``, not used).
    time_scale : float
        ``s``: ``A_eff = A_X / s`` (``N`` for ``tau = N t``, else 1).

    Returns
    -------
    Frame
        The frame of every row (rows whose state is singular have non-finite entries:
        ``Frame.ok`` tells them).
    """
    u, sigma, vt = svd_stack(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rho = np.log(sigma)
        singular = ~np.isfinite(rho).all(axis=1)  # sigma_d = 0: the frame is not defined
        if singular.any():
            rho[singular] = np.nan
        logk, s_val = _log_kernel_matrix(rho, depth)
        if time_scale != 1.0:
            logk = logk - math.log(time_scale)
        k = np.exp(logk)
        e_val, grad_e, de = _energy_parts(energy, x, sigma)
        weight = one_minus(depth)
        if depth == 1:
            spectral = np.zeros_like(sigma)
        else:
            safe = np.where(singular[:, None], 0.0, rho)  # the compiled pair sums need finite rho
            grad_s = np.where(singular[:, None], np.nan, dln_entropy_gradient(safe, depth))
            spectral = grad_s / beta + temperature * weight
        kii = np.diagonal(k, axis1=1, axis2=2)
        # A_eff(grad S_N) / beta + Ito drift, diagonal in the frame: K_ii / sigma_i [ ... ]
        diag = np.exp(np.diagonal(logk, axis1=1, axis2=2) - rho) * spectral
        drift = np.zeros_like(x) if grad_e is None else -k * to_frame(u, grad_e, vt)
        if de is not None:
            diag = diag - kii * de
        idx = np.arange(width)
        drift[:, idx, idx] += diag
        free = e_val - s_val / beta
        logdet = logk.sum(axis=(1, 2))
        log_density = (
            -free / temperature - 0.5 * logdet if temperature > 0 else np.full_like(free, np.nan)
        )
    return Frame(x, u, sigma, vt, k, drift, e_val, free, log_density, logdet)
