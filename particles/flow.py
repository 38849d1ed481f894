"""The deterministic gradient flow ``dX/dt = -grad_{g^N} F_beta`` on the chamber
(theory.md section 4).

For spectral energies the singular vectors stay fixed, so only the singular values move.  The
flow is integrated in ``rho = log sigma`` (positivity is automatic and every scale is resolved
with the same relative accuracy):

    drho_i/dt = -N exp(-2 rho_i / N) dF/drho_i        (t)
    drho_i/dtau = -exp(-2 rho_i / N) dF/drho_i        (tau = N t; at N = inf: -dF_inf/drho_i)

with a stiff implicit Runge-Kutta method (Radau IIA, order 5, or BDF) and the analytic
Jacobian ``Model.velocity_jacobian_rho``.  States are saved only at the requested times.

Threads.  The implicit methods factor their Newton matrices with LAPACK, and OpenBLAS started
with one thread gives other last bits than started with several, even for a 3 x 3 matrix;
those bits grow into the fitted relaxation rates (measured: 1.9230044708 with two threads,
1.9230045058 with one, for ``(d, N, beta) = (3, 3, 2)``).  A Dask worker, or a process started
after ``distributed`` was imported, has ``OMP_NUM_THREADS=1``.  So the flow runs with the BLAS
thread pools limited to one thread (``threadpoolctl``): its bits do not depend on where it
runs or on those variables (tests/test_flow.py).

Failures.  A start where the velocity is not finite is refused (``ValueError``); a member whose
velocity becomes non-finite, whose step size collapses or which needs more than
``max_evaluations`` velocity evaluations is stopped (so the call always ends), marked
``status = -1`` with the reason in ``failures``, or, with ``on_failure="raise"``, raises
``FlowFailed``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.integrate import BDF, LSODA, Radau
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .datasets import trajectory_dataset
from .entropy import entropy_gradient
from .model import Model
from .validation import (
    check_choice,
    check_integer,
    check_positive,
    check_singular_values,
    check_times,
    fail,
)

__all__ = ["FlowFailed", "gradient_flow"]

#: Singular values must lie in ``[SIGMA_MIN, SIGMA_MAX]``: ``sigma^2`` and the pair terms
#: ``sigma_i^2 - sigma_j^2`` are then normal float64 numbers (below, the entropy's formulas
#: lose all accuracy, and the solver used to shrink its step forever).
SIGMA_MIN = float(np.sqrt(np.finfo(np.float64).tiny))
SIGMA_MAX = float(np.sqrt(np.finfo(np.float64).max))


class FlowFailed(RuntimeError):
    """The integration of at least one member failed (raised with ``on_failure="raise"``)."""


class _Stop(Exception):
    """Ends one member's integration from inside the right-hand side."""



def one_blas_thread() -> threadpool_limits:
    """Context manager: the BLAS/LAPACK thread pools limited to one thread for its duration.

    OpenBLAS started with one thread (a Dask worker, or any process started after
    ``distributed`` set ``OMP_NUM_THREADS=1``) factors even a 3x3 matrix to other last bits than
    started with two, so an implicit ODE solver (Radau, BDF: LU of the Newton matrix) is bitwise
    reproducible across processes only inside this context.  Used by ``gradient_flow`` here and
    by ``network.gradient_flow``.

    Returns
    -------
    threadpoolctl.threadpool_limits
        The context manager (``with one_blas_thread(): ...``).
    """
    return threadpool_limits(limits=1, user_api="blas")


def gradient_flow(
    model: Model,
    sigma0: np.ndarray,
    times: np.ndarray,
    *,
    rescaled: bool | None = None,
    method: str = "Radau",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    progress: bool | None = None,
    max_evaluations: int = 200_000,
    on_failure: str = "status",
) -> xr.Dataset:
    """Integrate the gradient flow of ``model.free_energy`` from ``sigma0``; save at ``times``.

    ``sigma0``: shape ``(d,)`` (one trajectory; ``sigma`` has dims ``(time, particle)``) or
    ``(M, d)`` (``M`` members; dims ``(member, time, particle)``).  Each row is sorted into
    the chamber order ``sigma_1 >= ... >= sigma_d``.  ``times``: increasing, ``>= 0``, in ``t``,
    or in ``tau = N t`` when ``rescaled`` (the default, and the only choice, at ``depth = inf``).
    ``rtol``/``atol`` are the integrator tolerances on ``rho = log sigma`` (so ``atol`` is a
    relative tolerance on ``sigma``).  A member whose integration fails (non-finite velocity,
    step size collapse, more than ``max_evaluations`` velocity evaluations: the call ends in
    bounded time) keeps the states saved before the failure, NaN after, ``status = -1`` in the
    dataset and its reason in the attribute ``failures``; with ``on_failure="raise"`` the call
    raises ``FlowFailed`` with the reasons instead.  ``sigma0`` must lie in
    ``[SIGMA_MIN, SIGMA_MAX]`` (about ``[1.5e-154, 1.3e154]``), ``times`` must end after 0,
    and the velocity at the start must be finite (else ``ValueError`` naming the cause).

    Parameters
    ----------
    model : Model
        The chamber model.
    sigma0 : array_like
        Initial singular values, shape ``(d,)`` or ``(M, d)``, positive and finite.
    times : array_like
        Save times, increasing, ``>= 0``, in ``t`` or (``rescaled``) ``tau = N t``.
    rescaled : bool, optional
        Time ``tau = N t``; default False for finite ``N``, True (the only choice) at
        ``N = inf``.
    method : {"Radau", "BDF", "LSODA"}, default "Radau"
        The ``scipy.integrate.solve_ivp`` method.
    rtol, atol : float, default 1e-10, 1e-12
        Integrator tolerances on ``rho = log sigma``.
    progress : bool, optional
        Show a progress bar over members (default: only on a terminal).
    max_evaluations : int, default 200000
        Velocity evaluations per member before its integration is given up (bounded time).
    on_failure : {"status", "raise"}, default "status"
        A failed member: ``status = -1`` and its reason in ``failures``, or raise.

    Returns
    -------
    xarray.Dataset
        ``sigma``, ``energy``, ``free_energy`` (and ``status (member)``) with dims
        ``(time, particle)`` or ``(member, time, particle)``; ``kind = "gradient_flow"``, the
        model parameters and the integrator settings in the attributes.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    FlowFailed
        With ``on_failure="raise"``, when a member's integration fails.
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    rescaled = model.resolve_rescaled(rescaled)
    sigma0 = check_singular_values(sigma0, model.width, "sigma0")
    if sigma0.ndim > 2:
        raise fail("sigma0", sigma0.shape, "must have shape (d,) or (members, d)")
    if np.any(sigma0 < SIGMA_MIN) or np.any(sigma0 > SIGMA_MAX):
        raise fail(
            "sigma0",
            f"[{np.min(sigma0):.3g} .. {np.max(sigma0):.3g}]",
            f"singular values must lie in [{SIGMA_MIN:.3g}, {SIGMA_MAX:.3g}] (sigma^2 must be a "
            "normal float64; beyond, the flow's formulas under- or overflow)",
        )
    times = check_times(times)
    if times[-1] <= 0.0:
        raise fail("times", times.tolist(), "must end after 0 (the flow needs a final time > 0)")
    method = check_choice(method, "method", ("Radau", "BDF", "LSODA"))
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    max_evaluations = check_integer(max_evaluations, "max_evaluations", 1)
    on_failure = check_choice(on_failure, "on_failure", ("status", "raise"))
    single = sigma0.ndim == 1
    starts = np.sort(np.atleast_2d(sigma0), axis=-1)[:, ::-1]
    n_member = starts.shape[0]
    _check_start(model, np.log(starts), rescaled)
    evaluations = [0]

    def rhs(t: float, rho: np.ndarray) -> np.ndarray:
        evaluations[0] += 1
        if evaluations[0] > max_evaluations:
            raise _Stop(
                f"gave up after max_evaluations={max_evaluations} velocity evaluations at "
                f"t={t:.6g} (the flow is too stiff there)"
            )
        with np.errstate(all="ignore"):
            v = model.velocity_rho(rho, rescaled)
        if not np.all(np.isfinite(v)):
            raise _Stop(f"the velocity is not finite at t={t:.6g} (float64 overflow)")
        return v

    def jac(t: float, rho: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            j = model.velocity_jacobian_rho(rho, rescaled)
        if not np.all(np.isfinite(j)):
            raise _Stop(f"the Jacobian of the velocity is not finite at t={t:.6g}")
        return j

    out = np.full((n_member, times.size, model.width), np.nan)
    status = np.zeros(n_member, dtype=np.int8)
    messages = []
    hide = None if progress is None else not progress  # None: tqdm shows it on a terminal only
    bar = tqdm(range(n_member), desc="gradient flow", unit="member", disable=hide, leave=False)
    solvers = {"Radau": Radau, "BDF": BDF, "LSODA": LSODA}
    t_end = float(times[-1])
    with one_blas_thread():  # bits independent of the BLAS threads (module docstring)
        for k in bar:
            evaluations[0] = 0
            rho0 = np.log(starts[k])
            out[k, times == 0.0] = starts[k]
            try:  # solve_ivp's loop, which keeps the states saved before a failure
                with np.errstate(all="ignore"):
                    solver = solvers[method](rhs, 0.0, rho0, t_end, jac=jac, rtol=rtol, atol=atol)
                    while solver.status == "running":
                        try:
                            message = solver.step()
                        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as err:
                            why = f"the solver broke down at t={solver.t:.6g} ({err})"
                            raise _Stop(why) from None
                        if solver.status == "failed":
                            raise _Stop(message)
                        lo, hi = solver.t_old, solver.t
                        sel = (times > lo) & (times <= hi)
                        if np.any(sel):
                            out[k, sel] = np.exp(solver.dense_output()(times[sel]).T)
            except _Stop as stop:
                status[k] = -1
                messages.append(f"member {k}: {stop}")
                continue
            if not np.all(np.isfinite(out[k])):
                status[k] = -1
                messages.append(f"member {k}: a saved state is not finite (overflow of sigma)")
    if messages and on_failure == "raise":
        raise FlowFailed("gradient flow failed: " + "; ".join(messages))
    status_var = xr.DataArray(
        status,
        dims="member",
        attrs={
            "long_name": "integrator status (0 = success, -1 = failed; NaN after the failure)",
        },
    )
    ds = trajectory_dataset(
        out,
        times,
        model,
        rescaled=rescaled,
        attrs={
            "kind": "gradient_flow",
            "integrator": f"scipy solve_ivp {method}",
            "rtol": rtol,
            "atol": atol,
            "failures": "; ".join(messages) or "none",
        },
        extra={"status": status_var},
    )
    return ds.isel(member=0, drop=True) if single else ds


def _check_start(model: Model, rho: np.ndarray, rescaled: bool) -> None:
    """ValueError naming the cause when the velocity or its Jacobian at a start is not finite or
    so large (``> SIGMA_MAX``) that the implicit solver's linear algebra would overflow."""
    with np.errstate(all="ignore"):
        v = np.abs(model.velocity_rho(rho, rescaled))
        j = np.abs(model.velocity_jacobian_rho(rho, rescaled))
        entropy_part = np.abs(entropy_gradient(rho, model.depth) / model.beta)
    ok = np.all(v < SIGMA_MAX, axis=-1) & np.all(j < SIGMA_MAX, axis=(-2, -1))  # NaN: not ok
    if np.all(ok):
        return
    k = int(np.flatnonzero(~ok)[0])
    if not np.all(entropy_part[k] < SIGMA_MAX):
        raise fail(
            "beta",
            model.beta,
            "the entropic force grad S / beta at sigma0 is beyond float64 range "
            f"({np.max(entropy_part[k]):.3g}): beta is too small",
        )
    raise fail(
        "sigma0",
        np.exp(rho[k]).tolist(),
        f"the velocity of the flow there ({np.max(v[k]):.3g}) is beyond float64 range for "
        f"{model.describe()}",
    )
