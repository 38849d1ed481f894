r"""The particle Langevin dynamics at temperature ``T`` for one block of members
(theory.md section 9).

Finite depth ``N``: in the flat coordinates ``u = sigma^{1/N}`` (metric ``N sum du_i^2``) the
Riemannian Langevin equation has no Ito correction,

    du_i = -(1/N) dF_beta/du_i dt + sqrt(2 T / N) dB_i
         = -(1/u_i) dF_beta/drho_i dt + sqrt(2 T / N) dB_i,

using ``dF/du_i = (N/u_i) dF/drho_i`` with ``rho = log sigma = N log u``.  The origin ``u_i = 0``
is a reflecting boundary.  At ``T = 1/beta`` (the default) the stationary density is
``exp(-beta E + S_N)`` w.r.t. ``du`` on ``u > 0``; in general ``exp(-F_beta / T)``.  Since
``k_N(u^N, v^N) = sum_k u^{2k} v^{2(N-1-k)}`` is a polynomial in ``u^2``, the density is even and
positive at ``u_i = 0`` (the entropy force on a lone small particle vanishes like
``(u_i/u_j)^2``): particles do reach the boundary, for every ``N`` and ``d``.  (Near ``u_i = 0``
that small force is a difference of O(1) terms, so it carries an absolute error ~1e-16, i.e. a
drift error ~1e-16 / u_i: harmless unless ``u_i`` gets below ~1e-100.)

``N = inf``: in ``(rho, tau)`` the flow is flat and there is no boundary,

    drho_i = -dF_inf/drho_i dtau + sqrt(2 T) dB_i,

with stationary density ``exp(-beta E + S_inf)`` w.r.t. ``drho`` at ``T = 1/beta`` (normalizable
only for ``d >= 4``: one particle escaping to ``rho -> -inf`` alone has density
``~ |rho|^{-(d-1)/2}``).

Scheme.  Euler-Maruyama in ``u`` (finite ``N``; ``u <- |u + h b(u) + sqrt(2 T h / N) xi|``, the
"symmetrized" reflection, one reflection counted each time the sign flips) or in ``rho``
(``N = inf``), vectorized over members, with ``dF/drho`` from ``Model`` (the energy's
``log_gradient`` and the compiled pair sum: ``pairforce.hot_entropy_gradient_u`` straight from
``u`` for finite ``N``, no logarithm per pair; ``particles.kernels`` in ``rho`` for ``N = inf``).
For finite ``N`` the update, the reflection count and ``rho = N log u`` are one compiled pass
(``_advance_u``) on preallocated buffers: a step allocates no array (a step of a chunk costs
~20-40 us of Python besides the pair sums; see ``benchmarks/bench_langevin.py``).  ``T = 0`` is
the explicit Euler method for the deterministic flow.  Time is ``t`` for finite ``N`` unless
``rescaled`` (then ``tau = N t`` and a step ``h_tau`` moves ``u`` by ``h_t = h_tau / N``); it is
``tau`` for ``N = inf``.

Step grid.  With ``t_{-1} = 0`` and save times ``t_0 < t_1 < ...``, the interval
``[t_{k-1}, t_k]`` is split into ``n_k = ceil((t_k - t_{k-1}) / dt)`` equal steps (the ceiling
taken with a relative tolerance of ``1e-12``, so that ``0.3 / 0.1`` counts as 3 steps; ``n_k =
0`` only for ``t_0 = 0``).  Hence the results at a save time depend only on the step grid, and
two runs whose grids coincide (e.g. save times that are multiples of ``dt``) agree bitwise.

Noise.  Member ``k`` draws its increments only from ``member_rng(seed, k)``: one row of ``d``
standard normals per step, in batches of ``K = max(1, 512 // d)`` steps
(``rng.standard_normal((K, d))``; ``K`` depends on ``d`` only).  Row ``j`` drives step ``j``
whatever the step size, so a member's path does not depend on the other members of the block,
on the block size or on how the save times are split.  With ``T = 0`` no noise is drawn.

Faults.  A member whose state becomes non-finite, or whose ``sigma = e^rho`` would overflow
(``rho > log(max float)``), or which lands exactly on ``u = 0`` (``rho = -inf``), stops: its
later saved states are NaN, ``failed_time`` is the end of the failing step and ``last_finite``
the state before it.  The other members are not affected (bitwise).  Very deep members may have
``sigma = u^N`` underflow to 0 in the output; that is not a failure (the state ``u`` is fine).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numba
import numpy as np

from .model import Model
from .pairforce import default_threads, portable_log
from .validation import check_positive, check_singular_values, check_times, fail

__all__ = ["LangevinBlock", "member_rng", "simulate_members", "noise_batch_steps"]

_LOG_MAX = math.log(np.finfo(np.float64).max)  # sigma = e^rho overflows beyond this
_STEP_RTOL = 1e-12


def _check_index(value: object, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or value < 0:
        raise fail(name, value, "must be a non-negative integer")
    return int(value)


def member_rng(seed: int, member: int) -> np.random.Generator:
    """PCG64 stream of one member: ``SeedSequence(seed, spawn_key=(member,))``.

    This is the ``member``-th child of ``SeedSequence(seed).spawn(...)``: a member's noise
    depends only on ``(seed, member)``, never on the block or worker that runs it.

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
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(member,))))


def noise_batch_steps(width: int) -> int:
    """``K``: the number of steps whose noise a member draws at once, ``max(1, 512 // d)``.

    Parameters
    ----------
    width : int
        Width ``d``.

    Returns
    -------
    int
        ``K``, a function of ``d`` only (so the noise of a step never depends on ``dt``).
    """
    return max(1, 512 // int(width))


@dataclass(frozen=True)
class LangevinBlock:
    """The result of ``simulate_members`` for ``m`` members, ``n_times`` save times, width ``d``.

    ``sigma``: ``(m, n_times, d)`` states at the save times, each row sorted descending, NaN
    after a failure.  ``reflections``: ``(m,)`` int64 reflections at ``u = 0``.
    ``failed_time``: ``(m,)`` time of the first non-finite state or overflow, NaN if none.
    ``last_finite``: ``(m, d)`` the last finite state (sorted ``sigma``) before the failure, or
    the final state.

    Parameters
    ----------
    sigma : numpy.ndarray
        ``(m, n_times, d)`` singular values at the save times, rows sorted descending.
    reflections : numpy.ndarray
        ``(m,)`` int64, reflections at ``u = 0`` (finite ``N``; 0 at ``N = inf``).
    failed_time : numpy.ndarray
        ``(m,)`` end of the failing step, NaN for members that did not fail.
    last_finite : numpy.ndarray
        ``(m, d)`` last finite state.
    """

    sigma: np.ndarray
    reflections: np.ndarray
    failed_time: np.ndarray
    last_finite: np.ndarray


def _step_plan(times: np.ndarray, dt: float) -> list[tuple[float, float, int, float]]:
    """``(t_start, t_end, n_steps, h)`` for each save interval, starting from ``t = 0``."""
    plan = []
    t_prev = 0.0
    for t in times:
        t = float(t)
        length = t - t_prev
        if length == 0.0:  # only the first save time can coincide with the start
            plan.append((t_prev, t, 0, 0.0))
        else:
            n = max(1, math.ceil(length / dt * (1.0 - _STEP_RTOL)))
            plan.append((t_prev, t, n, length / n))
        t_prev = t
    return plan


def _check_members(members: object, m: int) -> np.ndarray:
    arr = np.asarray(members)
    if arr.ndim != 1 or arr.size != m:
        raise fail("members", members, f"must be a 1-D array of {m} member indices (one per row)")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise fail("members", members, "must be integers")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise fail("members", members, "must be non-negative")
    if np.unique(arr).size != arr.size:
        raise fail("members", members, "must be distinct (each member has its own noise)")
    return arr


@numba.njit(cache=True, error_model="numpy")
def _advance_u(u, g, h_u, amp, xi, noisy, depth, hits, u_new, rho_new, bad):
    """One Euler-Maruyama step in ``u`` for every row (compiled, fused; no fast-math, and the
    logarithm is ``pairforce.portable_log``, not libm's, so the bits do not depend on the CPU):
    ``u_new = |u - (h_u g) / u + amp xi|``, ``rho_new = N log u_new``.  A row is bad when some
    ``rho_new`` is NaN, ``-inf`` (``u_new = 0``) or above ``log(max float)``; for the other rows
    each sign flip (reflection) adds 1 to ``hits``.  Returns the number of bad rows."""
    m, d = u.shape
    n_bad = 0
    for b in range(m):
        ok = True
        for i in range(d):
            x = u[b, i] - (h_u * g[b, i]) / u[b, i]
            if noisy:
                x += amp * xi[b, i]
            u_new[b, i] = x
            r = depth * portable_log(abs(x))
            rho_new[b, i] = r
            ok = ok and r <= _LOG_MAX and r > -math.inf
        bad[b] = not ok
        if ok:
            for i in range(d):
                if u_new[b, i] < 0.0:
                    hits[b, i] += 1
                    u_new[b, i] = -u_new[b, i]
        else:
            n_bad += 1
    return n_bad


def _sorted_desc(sigma: np.ndarray) -> np.ndarray:
    return np.sort(sigma, axis=-1)[..., ::-1]


def simulate_members(
    model: Model,
    sigma0: np.ndarray,
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float | None = None,
    rescaled: bool | None = None,
) -> LangevinBlock:
    """Euler-Maruyama for the Langevin dynamics of ``m`` members; states saved at ``times``.

    ``sigma0``: ``(m, d)`` initial singular values at time 0 (rows are sorted first);
    ``members``: ``(m,)`` global member indices (member ``k`` uses ``member_rng(seed, k)``);
    ``times``: increasing save times ``>= 0`` in ``t`` (finite ``N``) or ``tau = N t``
    (``rescaled``, and always for ``N = inf``); ``dt``: the largest step (each save interval is
    split into ``ceil(length / dt)`` equal steps); ``temperature``: the noise temperature ``T``
    (default ``1 / beta``; ``0`` gives explicit Euler for the gradient flow).
    See the module docstring for the equations, the noise streams and the fault handling.

    Parameters
    ----------
    model : Model
        The chamber model (not a ``MatrixVariant``: use ``simulate_baseline_members``).
    sigma0 : array_like
        ``(m, d)`` initial singular values, positive and finite.
    members : array_like
        ``(m,)`` distinct global member indices >= 0 (their noise streams).
    times : array_like
        Save times, increasing, ``>= 0``, in ``t`` or (``rescaled``) ``tau = N t``.
    dt : float
        The largest time step, > 0, in the unit of ``times``.
    seed : int
        The root seed, >= 0.
    temperature : float, optional
        Noise temperature ``T >= 0``; default ``1 / beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default False for finite ``N`` (always True at ``N = inf``).

    Returns
    -------
    LangevinBlock
        States at the save times, reflections and failures of the ``m`` members.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    from .baselines import MatrixVariant  # baselines builds on this module

    if isinstance(model, MatrixVariant):
        raise fail(
            "model",
            model,
            "is a MatrixVariant: its singular pair force needs the ordered scheme of "
            "particles.baselines.simulate_baseline_members (or use langevin_ensemble)",
        )
    rescaled = model._rescaled(rescaled)
    d = model.width
    sigma0 = check_singular_values(sigma0, d, "sigma0")
    if sigma0.ndim != 2:
        raise fail("sigma0", sigma0.shape, f"must have shape (members, {d})")
    m = sigma0.shape[0]
    members = _check_members(members, m)
    times = check_times(times)
    dt = check_positive(dt, "dt")
    seed = _check_index(seed, "seed")
    if temperature is None:
        temp = 1.0 / model.beta
    else:
        temp = check_positive(temperature, "temperature", allow_zero=True)

    infinite = model.infinite
    depth = model.depth
    # a step h in the time of ``times`` moves u by h_u = h (t) or h / N (tau)
    u_scale = 1.0 if (infinite or not rescaled) else 1.0 / depth
    noise_var = 2.0 * temp * (1.0 if infinite else 1.0 / depth)  # per unit of h_u
    plan = _step_plan(times, dt)

    start = np.ascontiguousarray(_sorted_desc(sigma0))
    out = np.full((m, times.size, d), np.nan)
    reflections = np.zeros(m, dtype=np.int64)
    failed_time = np.full(m, np.nan)
    last_finite = np.full((m, d), np.nan)

    active = np.arange(m)
    rho = np.log(start)
    u = None if infinite else np.exp(rho / depth)
    hits = None if infinite else np.zeros((m, d), dtype=np.int64)  # reflections per particle
    rngs = [member_rng(seed, int(k)) for k in members]
    batch = noise_batch_steps(d)
    buf = np.empty((m, batch, d))
    pos = batch  # the buffer is refilled before the first step
    noisy = temp > 0.0
    threads = default_threads()
    grad = work = u_new = rho_new = bad_rows = np.empty((0, 0))  # finite-N step buffers
    with np.errstate(all="ignore"):
        for k, (t_start, t_end, n_steps, h) in enumerate(plan):
            h_u = h * u_scale
            amp = math.sqrt(noise_var * h_u)
            for j in range(n_steps):
                if noisy and pos == batch:
                    for a, idx in enumerate(active):
                        rngs[idx].standard_normal(out=buf[a])
                    pos = 0
                xi = buf[:, min(pos, batch - 1), :]  # unused when not noisy
                pos += 1
                if infinite:
                    rho_new = rho - h_u * model._gradient_rho(rho)
                    if noisy:
                        rho_new += amp * xi
                    # whole-array test first (cheap); rows only when something went wrong
                    fine = rho_new.max(initial=-np.inf) <= _LOG_MAX
                    fine = fine and rho_new.min(initial=0.0) > -np.inf
                    bad = None
                    if not fine:
                        bad = ~(rho_new.max(axis=1) <= _LOG_MAX) | (rho_new.min(axis=1) == -np.inf)
                else:
                    # preallocated buffers: no per-step allocation (a Dask worker's glibc
                    # returns freed blocks to the OS, so fresh arrays would page-fault)
                    if grad.shape != u.shape:
                        grad, work, u_new, rho_new = (np.empty_like(u) for _ in range(4))
                        bad_rows = np.empty(u.shape[0], dtype=np.bool_)
                    g = model._gradient_rho_u(rho, u, threads, grad, work)
                    n_bad = _advance_u(
                        u, g, h_u, amp, xi, noisy, float(depth), hits, u_new, rho_new, bad_rows
                    )
                    bad = bad_rows.copy() if n_bad else None
                if bad is not None:
                    ok = ~bad
                    lost = active[bad]
                    failed_time[lost] = t_end if j == n_steps - 1 else t_start + (j + 1) * h
                    last_finite[lost] = _sorted_desc(np.exp(rho[bad]))
                    if not infinite:
                        reflections[lost] = hits[bad].sum(axis=1)
                        u_new, hits = u_new[ok], hits[ok]  # boolean indexing copies
                    active, rho_new, buf = active[ok], rho_new[ok], buf[ok]
                if not infinite:
                    u, u_new = u_new, u  # swap the double buffers
                    rho, rho_new = rho_new, rho
                else:
                    rho = rho_new
            if n_steps == 0:
                out[active, k] = start[active]
            else:
                out[active, k] = _sorted_desc(np.exp(rho))
    if not infinite:
        reflections[active] = hits.sum(axis=1)
    last_finite[active] = out[active, -1]
    return LangevinBlock(
        sigma=out, reflections=reflections, failed_time=failed_time, last_finite=last_finite
    )
