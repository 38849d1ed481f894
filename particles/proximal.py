r"""The proximal split-step scheme for log-gas systems, optionally Metropolis-adjusted: a
stepper of the one step loop (``particles.driver``; docs/theory.md sections 10, 13.3).

It steps a ``particles.system.LogGasSystem`` (``MatrixVariant``, ``DysonModel``), whose drift is
a smooth part plus ``kappa`` times the gradient of the log-gas ``B``.

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
the Newton direction ``p`` solves ``(I + h kappa L) p = -g`` by Cholesky (the matrix is
symmetric with eigenvalues ``>= 1``; a pivot that rounding makes ``<= 0``, at condition numbers
``~1/eps``, makes the system numerically singular).
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

Compiled.  ``prox`` runs that solve row by row in numba (no fast-math; Cholesky and every sum in
a fixed sequential order; no BLAS/LAPACK; logarithms by ``pairsum.portable_log``), and the
Metropolis terms ``grad B`` and ``log det(I + h kappa L)`` (the same Cholesky) likewise, so a
member's bits depend neither on the other members nor on the CPU.  The barrier of ``Phi_h`` is
the logarithm of the product of the gaps (exponent kept apart), one logarithm per evaluation.
``prox_reference`` is the batched numpy form of the same algorithm (LAPACK solves), kept as
the reference it is tested against (tests/test_baselines.py: minimisers within 1e-12 of the
row's scale, same iteration counts).  Dyson ``d = 16``, 50 members: ~6x less CPU per step
(benchmarks/bench_proximal.py).

"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from .driver import check_index, noise_batch_steps
from .pairsum import portable_log
from .system import LogGasSystem

__all__ = [
    "NEWTON_MAX_ITER",
    "NEWTON_RTOL",
    "Proximal",
    "acceptance_rng",
    "offdiag",
    "pair_indices",
    "prox",
    "prox_reference",
    "rowsum",
]

NEWTON_RTOL = 1e-12  #: relative gradient tolerance of the proximal Newton solve
NEWTON_MAX_ITER = 100  #: cap on Newton iterations per step (never reached in the tests)
_ARMIJO = 1e-4
_MAX_HALVINGS = 60
_NEWTON_REGION = 0.25  # Newton decrement below which the full step is safe (self-concordance)
_STEP_FLOOR = 4.0 * np.finfo(np.float64).eps  # relative Newton step that rounding cannot resolve
_LN2 = math.log(2.0)


def rowsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis in a fixed sequential order (bitwise independent of other axes).

    Parameters
    ----------
    a : numpy.ndarray
        Array of shape ``(..., n)``, ``n >= 1``.

    Returns
    -------
    numpy.ndarray
        ``a[..., 0] + a[..., 1] + ...``, shape ``(...)``.
    """
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        out += a[..., j]
    return out


def offdiag(a: np.ndarray) -> np.ndarray:
    """``a`` with its diagonal (last two axes) set to 0, in place.

    Parameters
    ----------
    a : numpy.ndarray
        Array of shape ``(..., n, n)``, overwritten.

    Returns
    -------
    numpy.ndarray
        ``a``.
    """
    idx = np.arange(a.shape[-1])
    a[..., idx, idx] = 0.0
    return a


@functools.lru_cache(maxsize=64)
def pair_indices(d: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(d, 1)``, cached and read-only (the pairs ``i < j``, row-major).

    Parameters
    ----------
    d : int
        The number of particles, >= 1.

    Returns
    -------
    tuple of numpy.ndarray
        ``(iu, ju)``, each of shape ``(d (d - 1) / 2,)``.
    """
    iu, ju = np.triu_indices(d, 1)
    iu.flags.writeable = False
    ju.flags.writeable = False
    return iu, ju


# ---------------------------------------------------------------------- proximal step
def _objective(
    z: np.ndarray, y: np.ndarray, hk: float, mirror: bool, pairs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``Phi_h(z) = |z-y|^2/2 - hk sum_{i<j} [log(z_i-z_j) (+ log(z_i+z_j))]``, ``inf`` off D."""
    iu, ju = pairs
    gaps = z[:, iu] - z[:, ju]
    feasible = gaps.min(axis=1) > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        barrier = rowsum(np.log(gaps))
        if mirror:
            sums = z[:, iu] + z[:, ju]
            feasible &= sums.min(axis=1) > 0.0
            barrier += rowsum(np.log(sums))
        r = z - y
        phi = 0.5 * rowsum(r * r) - hk * barrier
    return np.where(feasible, phi, np.inf)


def _pair_terms(z: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(grad B, L)``: ``grad B_i = sum_{j!=i} 1/(z_i-z_j) (+ 1/(z_i+z_j))``, ``L`` = -Hess B."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = offdiag(1.0 / (z[:, :, None] - z[:, None, :]))
        force = rowsum(inv)
        curv = inv * inv
        lap = -curv
        diag = rowsum(curv)
        if mirror:
            inv_s = offdiag(1.0 / (z[:, :, None] + z[:, None, :]))
            force += rowsum(inv_s)
            curv_s = inv_s * inv_s
            lap += curv_s
            diag += rowsum(curv_s)
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
            z[bad] = rowsum(yb)[:, None] / d + s * ((d - 1) / 2.0 - k)
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


def prox_reference(
    y: np.ndarray, x: np.ndarray, hk: float, mirror: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The proximal step ``argmin_D Phi_h`` for each row of ``y`` by damped Newton: the numpy
    reference of ``prox`` (batched over rows, Newton systems by LAPACK), kept to test it.

    Parameters
    ----------
    y, x : numpy.ndarray
        ``(m, d)`` points to project and previous states, as in ``prox``.
    hk : float
        ``h kappa > 0``.
    mirror : bool
        With the mirror terms ``log(z_i + z_j)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(z, iterations, converged)`` as ``prox``; every iterate stays strictly in ``D``.
    """
    m, d = y.shape
    iters = np.zeros(m, dtype=np.int64)
    converged = np.ones(m, dtype=bool)
    if d == 1:  # no pair: the minimiser is y itself
        return y.copy(), iters, converged
    converged[:] = False
    pairs = pair_indices(d)
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
        slope = rowsum(g * p)  # -g^T H^{-1} g
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


# ---------------------------------------------------------------------- compiled proximal step
# One row at a time, in a fixed order (pairs ``i < j`` row-major as ``np.triu_indices``, sums
# sequential as ``rowsum``), no BLAS/LAPACK, no fast-math and no libm logarithm
# (``pairsum.portable_log``): the bits of a row do not depend on the other rows or on the CPU.
@numba.njit(cache=True, error_model="numpy")
def _log_product(mant, ex, v):
    """``(mant, ex)`` times the positive finite ``v``: the running product ``mant 2^ex`` of the
    barrier's factors, ``mant`` kept in ``[1e-50, 1e50]`` (exact exponent bookkeeping)."""
    if v < 1e-250 or v > 1e250:
        f, e = math.frexp(v)
        mant *= f
        ex += e
    else:
        mant *= v
    if mant < 1e-50 or mant > 1e50:
        f, e = math.frexp(mant)
        mant = f
        ex += e
    return mant, ex


@numba.njit(cache=True, error_model="numpy")
def _objective_row(z, y, hk, mirror):
    """``Phi_h(z)`` of one row (``_objective``), ``inf`` unless every pair gap (and mirror sum)
    is ``> 0`` in floating point.  Ordered rows need only the neighbours' tests (rounded
    subtraction and addition are monotone).  The barrier is the logarithm of the product of
    the gaps (and sums), accumulated with its binary exponent apart: one ``portable_log``
    instead of one per pair, same value to rounding."""
    d = z.shape[0]
    for i in range(d - 1):
        if not (z[i] - z[i + 1] > 0.0):
            return np.inf
    if mirror and not (z[d - 2] + z[d - 1] > 0.0):
        return np.inf
    mant = 1.0
    ex = 0
    for i in range(d - 1):
        for j in range(i + 1, d):
            mant, ex = _log_product(mant, ex, z[i] - z[j])
            if mirror:
                mant, ex = _log_product(mant, ex, z[i] + z[j])
    f, e = math.frexp(mant)
    barrier = portable_log(f) + (ex + e) * _LN2
    r = z[0] - y[0]
    q = r * r
    for i in range(1, d):
        r = z[i] - y[i]
        q += r * r
    return 0.5 * q - hk * barrier


@numba.njit(cache=True, error_model="numpy")
def _pair_hessian_row(z, hk, mirror, force, hess):
    """``force = grad B(z)`` and ``hess = I + hk L(z)`` of one row (``_pair_terms``): the sums
    over ``j`` run sequentially over ``j = 0..d-1`` with 0 on the diagonal, as ``rowsum``."""
    d = z.shape[0]
    for i in range(d):
        f = 0.0
        c = 0.0
        for j in range(d):
            if j == i:
                inv = 0.0
            else:
                inv = 1.0 / (z[i] - z[j])
            cv = inv * inv
            if j == 0:
                f = inv
                c = cv
            else:
                f += inv
                c += cv
            if j != i:
                hess[i, j] = -cv
        if mirror:
            fs = 0.0
            cs = 0.0
            for j in range(d):
                if j == i:
                    inv = 0.0
                else:
                    inv = 1.0 / (z[i] + z[j])
                cv = inv * inv
                if j == 0:
                    fs = inv
                    cs = cv
                else:
                    fs += inv
                    cs += cv
                if j != i:
                    hess[i, j] = hess[i, j] + cv
            f += fs
            c += cs
        force[i] = f
        hess[i, i] = c
    for i in range(d):
        for j in range(d):
            hess[i, j] = (1.0 if i == j else 0.0) + hk * hess[i, j]


@numba.njit(cache=True, error_model="numpy")
def _cholesky(a, low, logdet):
    """Lower Cholesky factor ``low`` of the symmetric ``a`` (lower triangle read), in a fixed
    order: each entry's inner sum sequential over ``k = 0, 1, ...``.  Returns ``log det a``
    (the sum of the logarithms of the pivots, in order) if ``logdet``, else 0; NaN when a pivot
    is not a positive finite number: ``a`` is numerically singular (the exact pivots of
    ``I + hk L`` are ``>= 1``; rounding cancels them only at condition numbers ``~1/eps``)."""
    d = a.shape[0]
    out = 0.0
    for j in range(d):
        s = a[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not (s > 0.0 and s < np.inf):  # not positive definite in floating point
            return np.nan
        if logdet:
            out += portable_log(s)
        root = math.sqrt(s)
        low[j, j] = root
        for i in range(j + 1, d):
            t = a[i, j]
            for k in range(j):
                t -= low[i, k] * low[j, k]
            low[i, j] = t / root
    return out


@numba.njit(cache=True, error_model="numpy")
def _newton_direction(low, g, p):
    """``p = -(low low^T)^{-1} g`` by forward and back substitution (sequential sums)."""
    d = g.shape[0]
    for i in range(d):
        t = g[i]
        for k in range(i):
            t -= low[i, k] * p[k]
        p[i] = t / low[i, i]
    for i in range(d - 1, -1, -1):
        t = p[i]
        for k in range(i + 1, d):
            t -= low[k, i] * p[k]
        p[i] = t / low[i, i]
    for i in range(d):
        p[i] = -p[i]


@numba.njit(cache=True, error_model="numpy")
def _start_row(x, y, hk, mirror, z, w, pushed):
    """The Newton start of one row (``_start``) into ``z``; returns its objective."""
    d = y.shape[0]
    delta = math.sqrt(hk)
    srt = np.sort(y)
    for k in range(d):
        w[k] = srt[d - 1 - k]
    cm = -np.inf
    for k in range(d - 1, -1, -1):  # cm_k = max(c_k, ..., c_{d-1}), c = w + delta k
        shift = delta * k
        c = w[k] + shift
        if mirror and k == d - 1:
            c = abs(w[k]) + shift
        cm = c if k == d - 1 else (cm if cm >= c else c)
        pushed[k] = cm - shift if cm > c else w[k]
    if mirror:
        pushed[d - 1] = w[d - 1]
    phi_x = _objective_row(x, y, hk, mirror)
    phi_p = _objective_row(pushed, y, hk, mirror)
    if phi_p < phi_x:
        z[:] = pushed
        phi = phi_p
    else:
        z[:] = x
        phi = phi_x
    if not np.isfinite(phi):  # both infeasible (rounding at absurd scales)
        s = delta
        for k in range(d):
            s = max(s, abs(y[k]))
        if mirror:
            for k in range(d):
                z[k] = s * (d - k - 0.5)
        else:
            mean = y[0]
            for k in range(1, d):
                mean += y[k]
            mean /= d
            for k in range(d):
                z[k] = mean + s * ((d - 1) / 2.0 - k)
        phi = _objective_row(z, y, hk, mirror)
    return phi


@numba.njit(cache=True, error_model="numpy")
def _max_step_row(z, p, mirror):
    """Largest ``a`` with ``z + a p`` in ``D`` (``_max_step``)."""
    d = z.shape[0]
    out = np.inf
    for i in range(d - 1):
        for j in range(i + 1, d):
            dp = p[i] - p[j]
            if dp < 0.0:
                out = min(out, (z[i] - z[j]) / -dp)
            if mirror:
                sp = p[i] + p[j]
                if sp < 0.0:
                    out = min(out, (z[i] + z[j]) / -sp)
    return out


@numba.njit(cache=True, error_model="numpy")
def _prox_rows(y, x, hk, mirror, max_iter, rtol, step_floor, z, iters, converged):
    """The damped Newton solve of ``prox_reference`` for each row, compiled (module docstring):
    ``z``, ``iters`` and ``converged`` are outputs."""
    m, d = y.shape
    root = math.sqrt(hk)
    w = np.empty(d)
    pushed = np.empty(d)
    force = np.empty(d)
    g = np.empty(d)
    p = np.empty(d)
    trial = np.empty(d)
    hess = np.empty((d, d))
    low = np.empty((d, d))
    for b in range(m):
        zb, yb = z[b], y[b]
        phi = _start_row(x[b], yb, hk, mirror, zb, w, pushed)
        iters[b] = 0
        converged[b] = False
        for it in range(max_iter + 1):
            _pair_hessian_row(zb, hk, mirror, force, hess)
            gmax = 0.0
            scale = root
            zmax = 0.0
            ymax = 0.0
            finite = True
            for i in range(d):
                g[i] = (zb[i] - yb[i]) - hk * force[i]
                a = abs(g[i])
                gmax = a if (a > gmax or a != a) else gmax  # NaN propagates (as np.max)
                zmax = max(zmax, abs(zb[i]))
                ymax = max(ymax, abs(yb[i]))
                finite = finite and np.isfinite(g[i])
            scale = max(max(zmax, ymax), root)
            if gmax <= rtol * scale:
                converged[b] = True
                break
            if it == max_iter:
                break
            for i in range(d):
                for j in range(d):
                    finite = finite and np.isfinite(hess[i, j])
            if not finite:  # the Newton system overflowed (gaps below ~1e-154)
                break
            if not np.isfinite(_cholesky(hess, low, False)):  # numerically singular system
                break
            _newton_direction(low, g, p)
            pmax = 0.0
            finite = True
            for i in range(d):
                finite = finite and np.isfinite(p[i])
                pmax = max(pmax, abs(p[i]))
            if not finite:
                break
            if pmax <= step_floor * scale:  # the Newton step is below rounding
                converged[b] = True
                break
            slope = g[0] * p[0]
            for i in range(1, d):
                slope += g[i] * p[i]
            full = math.sqrt(max(-slope, 0.0) / hk) <= _NEWTON_REGION
            if full:
                alpha = 1.0
            else:
                alpha = min(1.0, 0.99 * _max_step_row(zb, p, mirror))
            stalled = True
            for _ in range(_MAX_HALVINGS):
                for i in range(d):
                    trial[i] = zb[i] + alpha * p[i]
                phi_t = _objective_row(trial, yb, hk, mirror)
                if np.isfinite(phi_t) and (full or phi_t <= phi + _ARMIJO * alpha * slope):
                    zb[:] = trial
                    phi = phi_t
                    stalled = False
                    break
                alpha *= 0.5
            iters[b] += 1
            if stalled:  # a stalled line search ends the row's iteration (unconverged)
                break


@numba.njit(cache=True, error_model="numpy")
def _force_logdet_rows(x, hk, mirror, force, logdet):
    """``force = grad B(x)`` and ``logdet = log det(I + hk L(x))`` for each row (Cholesky;
    NaN where it fails)."""
    m, d = x.shape
    hess = np.empty((d, d))
    low = np.empty((d, d))
    for b in range(m):
        _pair_hessian_row(x[b], hk, mirror, force[b], hess)
        logdet[b] = _cholesky(hess, low, True)


def prox(
    y: np.ndarray, x: np.ndarray, hk: float, mirror: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The proximal step ``argmin_D Phi_h`` for each row of ``y`` by damped Newton (module
    docstring), compiled: the algorithm of ``prox_reference`` row by row, Newton systems by
    Cholesky, bitwise independent of the other rows and of the CPU.

    Parameters
    ----------
    y : numpy.ndarray
        ``(m, d)`` finite points to project (any order).
    x : numpy.ndarray
        ``(m, d)`` previous states, a candidate start (used only where strictly in ``D``).
    hk : float
        ``h kappa > 0``.
    mirror : bool
        With the mirror terms ``log(z_i + z_j)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(z, iterations, converged)``: the ``(m, d)`` minimisers (every iterate strictly in
        ``D``), the ``(m,)`` Newton iterations and whether each solve converged.
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    m, d = y.shape
    iters = np.zeros(m, dtype=np.int64)
    if d == 1:  # no pair: the minimiser is y itself
        return y.copy(), iters, np.ones(m, dtype=bool)
    z = np.empty_like(y)
    converged = np.zeros(m, dtype=bool)
    _prox_rows(
        y, x, float(hk), bool(mirror), NEWTON_MAX_ITER, NEWTON_RTOL, float(_STEP_FLOOR),
        z, iters, converged,
    )  # fmt: skip
    return z, iters, converged


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


def _terms(system: LogGasSystem, x: np.ndarray, h_x: float, hk: float, temp: float) -> _Terms:
    x = np.ascontiguousarray(x, dtype=np.float64)
    force = np.empty_like(x)
    logdet = np.empty(x.shape[0])
    _force_logdet_rows(x, float(hk), bool(system.mirror), force, logdet)
    return _Terms(
        phi=system.potential(x) / temp,
        mean=x + h_x * system.smooth_drift(x),
        back=x - hk * force,
        logdet=logdet,
    )


def _log_proposal(to: _Terms, frm: _Terms, var: float, mirror: bool) -> np.ndarray:
    """``log q(to | frm)`` up to a constant: the Gaussian density of the pre-image ``Y(to)``
    around ``frm.mean`` times the Jacobian ``det(I + h kappa L(to))``; with the mirror the
    reflected pre-image (last coordinate negated, which the reflection maps to the same state)
    adds its own Gaussian term."""
    r = to.back - frm.mean
    quad = rowsum(r * r)
    logq = -quad / (2.0 * var)
    if mirror:
        r_last = -to.back[:, -1] - frm.mean[:, -1]
        quad_flip = quad - r[:, -1] ** 2 + r_last**2
        logq = np.logaddexp(logq, -quad_flip / (2.0 * var))
    return logq + to.logdet


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
    seed = check_index(seed, "seed")
    member = check_index(member, "member")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(member, 1))))


class Proximal:
    """The proximal split step of a ``LogGasSystem`` (module docstring), optionally
    Metropolis-adjusted: a ``driver.Stepper``.

    Statistics per member (``finish``): ``reflections`` (sign flips of the last coordinate with
    the mirror), ``steps`` (proximal steps taken, including a failing one),
    ``newton_iterations`` (their total), ``newton_max`` (the most in one step),
    ``newton_unconverged`` (1 if the member failed because a solve stopped short) and
    ``accepted`` (accepted proposals; every step without ``metropolis``).

    Parameters
    ----------
    system : LogGasSystem
        The system (``MatrixVariant``, ``DysonModel``).
    start : numpy.ndarray
        ``(m, d)`` validated initial states, rows in the system's order (decreasing).
    temperature : float
        Noise temperature ``T >= 0`` (``> 0`` with ``metropolis``).
    rescaled : bool
        The run's time is ``tau = N t``.
    metropolis : bool, default False
        Accept or reject each step against ``exp(-Phi / T)``.
    members : numpy.ndarray, optional
        ``(m,)`` global member indices: the Metropolis uniforms come from
        ``acceptance_rng(seed, k)`` (needed with ``metropolis``).
    seed : int, default 0
        The root seed of those streams.
    """

    def __init__(
        self,
        system: LogGasSystem,
        start: np.ndarray,
        temperature: float,
        rescaled: bool,
        metropolis: bool = False,
        members: np.ndarray | None = None,
        seed: int = 0,
    ):
        self.system = system
        self.outputs = system.outputs
        self.noise_shape = tuple(system.state_shape)
        self.temp = temperature
        self.noisy = temperature > 0.0
        self.metropolis = metropolis
        self.mirror = system.mirror
        self.h_scale = system.time_scale(rescaled)
        self.noise_var = system.noise_variance(temperature)
        self.kappa = system.pair_coefficient()
        m, d = start.shape
        self.x = system.to_chart(start)
        self.stats = {
            name: np.zeros(m, dtype=np.int64)
            for name in (
                "reflections", "steps", "newton_iterations", "newton_max",
                "newton_unconverged", "accepted",
            )
        }  # fmt: skip
        self.urngs = [acceptance_rng(seed, int(k)) for k in members] if metropolis else []
        self.ubuf = np.empty((m, noise_batch_steps(d)))  # one uniform per step of a batch
        self.h_x = self.var = self.amp = self.hk = 0.0
        self.terms: _Terms | None = None
        self.new: _Terms | None = None
        self.z = self.neg = self.x

    def begin(self, h: float, n_steps: int) -> None:
        """A save interval with steps ``h``; the Metropolis terms of the current states."""
        self.h_x = h * self.h_scale
        self.var = self.noise_var * self.h_x
        self.amp = math.sqrt(self.var)
        self.hk = self.kappa * self.h_x
        self.terms = (
            _terms(self.system, self.x, self.h_x, self.hk, self.temp)
            if self.metropolis and n_steps
            else None
        )

    def refill(self, active: np.ndarray) -> None:
        """Draw the Metropolis uniforms of the next noise batch."""
        if self.metropolis:
            for a, idx in enumerate(active):
                self.urngs[idx].random(out=self.ubuf[a])

    def step(self, xi: np.ndarray, pos: int, active: np.ndarray) -> np.ndarray | None:
        """Explicit smooth step, noise, proximal step, reflection; the failing rows or None."""
        x, terms, mirror, hk = self.x, self.terms, self.mirror, self.hk
        y = terms.mean.copy() if terms is not None else x + self.h_x * self.system.smooth_drift(x)
        if self.noisy:
            y += self.amp * xi
        fin = np.all(np.isfinite(y), axis=1)
        if fin.all():
            z, it, conv = prox(y, x, hk, mirror)
        else:
            z = np.full_like(y, np.nan)
            it = np.zeros(y.shape[0], dtype=np.int64)
            conv = np.ones(y.shape[0], dtype=bool)
            z[fin], it[fin], conv[fin] = prox(y[fin], x[fin], hk, mirror)
        neg = np.zeros(z.shape[0], dtype=bool)
        if mirror:
            neg = z[:, -1] < 0.0
            z[:, -1] = np.abs(z[:, -1])
        st = self.stats
        st["steps"][active] += 1
        st["newton_iterations"][active] += it
        st["newton_max"][active] = np.maximum(st["newton_max"][active], it)
        st["newton_unconverged"][active] += ~conv
        bad = self.system.bad_rows(z) | ~conv
        if terms is not None:
            self.new = _terms(self.system, z, self.h_x, hk, self.temp)
            bad |= ~(np.isfinite(self.new.phi) & np.isfinite(self.new.logdet))
        self.z, self.neg = z, neg
        return bad if bad.any() else None

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove failing rows; their outputs before the step."""
        last = self.system.save(self.x[bad])
        self.x, self.z, self.neg = self.x[ok], self.z[ok], self.neg[ok]
        self.ubuf = self.ubuf[ok]
        if self.terms is not None:
            self.terms, self.new = self.terms.take(ok), self.new.take(ok)
        return last

    def commit(self, pos: int, active: np.ndarray) -> None:
        """The Metropolis test (if any), then the new states become current."""
        x, z, neg, terms = self.x, self.z, self.neg, self.terms
        if terms is not None:
            new = self.new
            log_ratio = (terms.phi - new.phi) + (
                _log_proposal(terms, new, self.var, self.mirror)
                - _log_proposal(new, terms, self.var, self.mirror)
            )
            accept = np.log(self.ubuf[:, pos]) < log_ratio
            z = np.where(accept[:, None], z, x)
            neg &= accept
            terms.update(accept, new)
        else:
            accept = np.ones(z.shape[0], dtype=bool)
        self.stats["accepted"][active] += accept
        self.stats["reflections"][active] += neg
        self.x = z

    def save(self) -> dict[str, np.ndarray]:
        """The system's outputs of the current states."""
        return self.system.save(self.x)

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """The per-member statistics (class docstring)."""
        return self.stats
