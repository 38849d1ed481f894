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
(``N = inf``), vectorized over members, with ``dF/drho`` from ``Model`` (``gradient_rho_u``,
``gradient_rho``: the energy's ``log_gradient`` and the compiled pair sum:
``pairsum.entropy_gradient_rho_at_u_into`` straight from ``u`` for finite ``N``, no logarithm
per pair; ``pairsum.entropy_gradient_rho`` in ``rho`` for ``N = inf``).  For finite ``N`` the
update, the reflection count and ``rho = N log u`` are one compiled pass (``steppers.advance_u``) on
preallocated buffers: a step allocates no array (a step of a chunk costs
~20-40 us of Python besides the pair sums; see ``benchmarks/bench_langevin.py``).  ``T = 0`` is
the explicit Euler method for the deterministic flow.  Time is ``t`` for finite ``N`` unless
``rescaled`` (then ``tau = N t`` and a step ``h_tau`` moves ``u`` by ``h_t = h_tau / N``); it is
``tau`` for ``N = inf``.

Layers.  This module is the chamber model's entry point: the step loop (step plan, seeding,
noise, failures) is ``particles.driver``, the step ``particles.steppers.
FusedChamberEulerMaruyama`` or ``ChamberEulerMaruyama``, and the chart, drift and failure rule
are ``Model``'s ``particles.system.System`` methods.

Step grid.  With ``t_{-1} = 0`` and save times ``t_0 < t_1 < ...``, the interval
``[t_{k-1}, t_k]`` is split into ``n_k = ceil((t_k - t_{k-1}) / dt)`` equal steps (the ceiling
taken with a relative tolerance of ``1e-12``, so that ``0.3 / 0.1`` counts as 3 steps; ``n_k =
0`` only for ``t_0 = 0``).  Hence the results at a save time depend only on the step grid, and
two runs whose grids coincide (e.g. save times that are multiples of ``dt``) agree bitwise.

Noise (``driver.NOISE_SCHEME``, docs/theory.md 13.3).  Step ``s`` of member ``k`` (``s``
counted from 0 at ``t = 0``) is driven by the ``d`` standard normals
``philox.normals(seed, [k], s, 1, d)``, a pure function of ``(seed, k, s)``: a member's path does
not depend on the other members of the block, on the block size, on how the save times are
split, on threads or on the CPU.  With ``T = 0`` no noise is drawn.  At finite ``N`` with a
Schatten energy the step is ``steppers.FusedChamberEulerMaruyama`` (one compiled call per save
interval, the noise drawn inside it); otherwise ``steppers.ChamberEulerMaruyama`` (the loop
draws the same normals).

Faults.  A member whose state becomes non-finite, or whose ``sigma = e^rho`` would overflow
(``rho > log(max float)``), or which lands exactly on ``u = 0`` (``rho = -inf``), stops: its
later saved states are NaN, ``failed_time`` is the end of the failing step and ``last_finite``
the state before it.  The other members are not affected (bitwise).  Very deep members may have
``sigma = u^N`` underflow to 0 in the output; that is not a failure (the state ``u`` is fine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .driver import NOISE_SCHEME, check_run, noise_batch_steps, run_steps
from .model import Model, sorted_desc
from .steppers import FUSE_MIN_WIDTH, ChamberEulerMaruyama, FusedChamberEulerMaruyama, fusable
from .system import LogGasSystem
from .validation import fail

__all__ = ["NOISE_SCHEME", "LangevinBlock", "simulate_members", "noise_batch_steps"]


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


def simulate_members(
    model: Model,
    sigma0: np.ndarray,
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float | None = None,
    rescaled: bool | None = None,
    fused: bool | None = None,
) -> LangevinBlock:
    """Euler-Maruyama for the Langevin dynamics of ``m`` members; states saved at ``times``.

    ``sigma0``: ``(m, d)`` initial singular values at time 0 (rows are sorted first);
    ``members``: ``(m,)`` global member indices (member ``k``'s noise is keyed by ``(seed, k)``);
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
        The root seed, ``0 <= seed < 2**128``.
    temperature : float, optional
        Noise temperature ``T >= 0``; default ``1 / beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default False for finite ``N`` (always True at ``N = inf``).
    fused : bool, optional
        The fused compiled step (``steppers.FusedChamberEulerMaruyama``; finite ``N`` and a
        Schatten energy) or the per-step one (``ChamberEulerMaruyama``); default: fused where it
        applies and ``d >= steppers.FUSE_MIN_WIDTH`` (16: below it the per-depth compilation
        outweighs the run time of typical small systems).  Both use the same noise and agree to
        rounding.

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
    if isinstance(model, LogGasSystem):
        raise fail(
            "model",
            model,
            "is a MatrixVariant: its singular pair force needs the ordered scheme of "
            "particles.baselines.simulate_baseline_members (or use langevin_ensemble)",
        )
    if fused is not None and not isinstance(fused, bool | np.bool_):
        raise fail("fused", fused, "must be None, True or False")
    if fused and not fusable(model):
        raise fail("fused", fused, "the fused step needs a finite depth and a Schatten energy")
    args = check_run(model, sigma0, members, times, dt, seed, temperature, rescaled)
    start = np.ascontiguousarray(sorted_desc(args.start))
    fuse = fusable(model) and model.width >= FUSE_MIN_WIDTH if fused is None else bool(fused)
    kind = FusedChamberEulerMaruyama if fuse else ChamberEulerMaruyama
    stepper = kind(model, start, args.temperature, args.rescaled)
    run = run_steps(
        stepper, {"sigma": start}, args.members, args.times, args.dt, args.seed,
        args.temperature > 0.0,
    )  # fmt: skip
    return LangevinBlock(
        sigma=run.outputs["sigma"],
        reflections=run.stats["reflections"],
        failed_time=run.failed_time,
        last_finite=run.last_finite["sigma"],
    )
