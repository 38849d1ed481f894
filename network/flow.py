r"""The deterministic gradient flow of ``F_beta`` at the matrix level (theory.md section 12.3):

    dX/dt = -A_X(grad E(X)) + (1/beta) A_X(grad S_N(X)),

integrated on the ``d^2`` entries of ``X`` by an adaptive explicit Runge-Kutta method (DOP853,
order 8, or RK45) with the tolerances of ``particles.gradient_flow`` (``rtol = 1e-10``,
``atol = 1e-12``).  At ``beta = inf`` this is the flow that gradient descent on balanced
factors follows to first order in the step (section 12.4).  The implicit methods (Radau, BDF)
factor Newton matrices with LAPACK, whose last bits depend on the threads OpenBLAS started with
(one in a Dask worker): the flow runs inside ``particles.flow.one_blas_thread``, so its bits
do not depend on where it runs (tests/test_network.py).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.integrate import BDF, DOP853, RK45, Radau

from dlnsim.particles.datasets import provenance
from dlnsim.particles.flow import FlowFailed, one_blas_thread
from dlnsim.particles.validation import (
    check_choice,
    check_integer,
    check_positive,
    check_times,
    fail,
)

from .model import MatrixModel, effective_rank

__all__ = ["gradient_flow", "matrix_dataset", "EFFECTIVE_RANK"]

#: The definition stored with every ``effective_rank`` variable.
EFFECTIVE_RANK = (
    "effective rank of Roy and Vetterli (2007): exp(-sum_i p_i log p_i), p_i = sigma_i / sum_j "
    "sigma_j (1 for rank one, r for r equal nonzero singular values)"
)


class _Stop(Exception):
    pass


def matrix_dataset(
    x: np.ndarray,
    times: np.ndarray,
    model: MatrixModel,
    *,
    rescaled: bool,
    attrs: dict | None = None,
    extra: dict | None = None,
) -> xr.Dataset:
    """The matrix-trajectory Dataset: ``X``, ``sigma``, energies, effective rank, errors.

    Parameters
    ----------
    x : numpy.ndarray
        States, shape ``(member, time, d, d)`` (NaN after a failure).
    times : numpy.ndarray
        Save times (``tau = N t`` when ``rescaled``).
    model : MatrixModel
        Gives the energy, free energy and parameters.
    rescaled : bool
        Whether ``times`` are ``tau = N t``.
    attrs : dict, optional
        Extra attributes.
    extra : dict, optional
        Extra variables ``name -> DataArray``.

    Returns
    -------
    xarray.Dataset
        Dims ``member, time, row, col, particle``.
    """
    n_member, n_time, d, _ = x.shape
    ok = np.all(np.isfinite(x), axis=(-2, -1))
    safe = np.where(ok[..., None, None], x, 0.0)
    sigma = np.where(ok[..., None], np.linalg.svd(safe, compute_uv=False), np.nan)
    energy = np.where(ok, model.energy._energy(safe), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        free = np.where(ok, model.free_energy(safe), np.nan)
        erank = np.where(ok, effective_rank(np.where(ok[..., None], sigma, 1.0)), np.nan)
    dims = ("member", "time")
    data = {
        "X": (dims + ("row", "col"), x, {"long_name": "end-to-end matrix X", "units": "1"}),
        "sigma": (
            dims + ("particle",),
            sigma,
            {"long_name": "singular value of the end-to-end matrix (descending)", "units": "1"},
        ),
        "energy": (dims, energy, {"long_name": "energy E(X)", "units": "1"}),
        "free_energy": (
            dims,
            free,
            {"long_name": "free energy F_beta = E - S_N / beta", "units": "1"},
        ),
        "effective_rank": (
            dims,
            erank,
            {"long_name": "effective rank", "definition": EFFECTIVE_RANK, "units": "1"},
        ),
    }
    for name, (values, var_attrs) in model.energy.errors(safe).items():
        data[name] = (dims, np.where(ok, values, np.nan), var_attrs)
    time_name = "rescaled time tau = N t" if rescaled else "time t"
    ds = xr.Dataset(
        data,
        coords={
            "member": ("member", np.arange(n_member), {"long_name": "ensemble member"}),
            "time": ("time", np.asarray(times, float), {"long_name": time_name, "units": "1"}),
            "row": ("row", np.arange(d), {"long_name": "row index of X"}),
            "col": ("col", np.arange(d), {"long_name": "column index of X"}),
            "particle": (
                "particle",
                np.arange(1, d + 1),
                {"long_name": "singular value index (1 = largest)"},
            ),
        },
    )
    for name, var in (extra or {}).items():
        ds[name] = var
    ds.attrs.update(
        provenance(
            **model.describe(),
            rescaled_time=int(rescaled),
            effective_rank_definition=EFFECTIVE_RANK,
            **(attrs or {}),
        )
    )
    return ds


def gradient_flow(
    model: MatrixModel,
    x0: np.ndarray,
    times: np.ndarray,
    *,
    rescaled: bool | None = None,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_evaluations: int = 2_000_000,
    on_failure: str = "status",
) -> xr.Dataset:
    """Integrate ``dX/dt = -A_X(grad F_beta)`` from ``X0``; save at ``times`` (theory.md 12.3).

    Parameters
    ----------
    model : MatrixModel
        The matrix model (energy, depth, beta).
    x0 : array_like
        The start, shape ``(d, d)`` (dims of ``X``: ``time, row, col``) or ``(M, d, d)`` for
        ``M`` starts (``member, time, row, col``), finite.  At finite ``beta`` it must be
        invertible (``S_N`` needs ``sigma > 0``).
    times : array_like
        Save times, increasing, ``>= 0``, ending after 0; ``t``, or ``tau = N t`` when
        ``rescaled``.
    rescaled : bool, optional
        Time ``tau = N t``; default False for finite ``N`` (True, the only choice, at ``N = inf``).
    method : {"DOP853", "RK45", "Radau", "BDF"}, default "DOP853"
        Adaptive method of ``scipy.integrate``: explicit Runge-Kutta, or implicit (stiff; the
        Jacobian by finite differences, ``d^2`` velocity evaluations: for small ``d`` only,
        e.g. long runs where ``K`` grows large).
    rtol, atol : float, default 1e-10, 1e-12
        Integrator tolerances on the entries of ``X`` (as tight as ``particles.gradient_flow``).
    max_evaluations : int, default 2000000
        Velocity evaluations per member before the integration is given up.
    on_failure : {"status", "raise"}, default "status"
        A failed member keeps its states saved before the failure (NaN after) with
        ``status = -1`` and its reason in the attribute ``failures``, or raises ``FlowFailed``.

    Returns
    -------
    xarray.Dataset
        ``X``, ``sigma`` (``..., particle``, descending), ``energy``, ``free_energy``,
        ``effective_rank`` (Roy-Vetterli ``exp(-sum p_i log p_i)``, ``p = sigma / sum sigma``;
        definition in its attrs), ``status``, and for energies with a target ``error``
        (``|X - target|_F / |target|_F``) and, for completion, ``error_unobserved`` (the same
        on the unobserved entries only).

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument or a start where the velocity is not finite.
    FlowFailed
        With ``on_failure="raise"``, when an integration fails.
    """
    if not isinstance(model, MatrixModel):
        raise fail("model", model, "must be a network.MatrixModel")
    rescaled = model.resolve_rescaled(rescaled)
    x0 = model._check(x0, "X0")
    if x0.ndim > 3:
        raise fail("X0", x0.shape, "must have shape (d, d) or (members, d, d)")
    times = check_times(times)
    if times[-1] <= 0.0:
        raise fail("times", times.tolist(), "must end after 0 (the flow needs a final time > 0)")
    method = check_choice(method, "method", ("DOP853", "RK45", "Radau", "BDF"))
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    max_evaluations = check_integer(max_evaluations, "max_evaluations", 1)
    on_failure = check_choice(on_failure, "on_failure", ("status", "raise"))
    single = x0.ndim == 2
    starts = x0.reshape(-1, model.width, model.width)
    with np.errstate(all="ignore"):
        v0 = model._velocity(starts, rescaled)
    bad = ~np.all(np.isfinite(v0), axis=(-2, -1))
    if np.any(bad):
        raise fail(
            "X0",
            f"member {int(np.flatnonzero(bad)[0])}",
            "the velocity is not finite there (a singular start at finite beta?)",
        )
    d = model.width
    evaluations = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        evaluations[0] += 1
        if evaluations[0] > max_evaluations:
            raise _Stop(f"gave up after max_evaluations={max_evaluations} at t={t:.6g}")
        with np.errstate(all="ignore"):
            try:
                v = model._velocity(y.reshape(d, d), rescaled)
            except np.linalg.LinAlgError as err:
                raise _Stop(f"the SVD failed at t={t:.6g} ({err})") from None
        if not np.all(np.isfinite(v)):
            raise _Stop(f"the velocity is not finite at t={t:.6g}")
        return v.ravel()

    solvers = {"DOP853": DOP853, "RK45": RK45, "Radau": Radau, "BDF": BDF}
    out = np.full((starts.shape[0], times.size, d, d), np.nan)
    status = np.zeros(starts.shape[0], dtype=np.int8)
    messages = []
    t_end = float(times[-1])
    with one_blas_thread():  # LAPACK's bits (Radau, BDF) independent of the BLAS threads
        for k in range(starts.shape[0]):
            evaluations[0] = 0
            out[k, times == 0.0] = starts[k]
            try:
                solver = solvers[method](rhs, 0.0, starts[k].ravel(), t_end, rtol=rtol, atol=atol)
                while solver.status == "running":
                    message = solver.step()
                    if solver.status == "failed":
                        raise _Stop(message)
                    sel = (times > solver.t_old) & (times <= solver.t)
                    if np.any(sel):
                        out[k, sel] = solver.dense_output()(times[sel]).T.reshape(-1, d, d)
            except _Stop as stop:
                status[k] = -1
                messages.append(f"member {k}: {stop}")
    if messages and on_failure == "raise":
        raise FlowFailed("matrix gradient flow failed: " + "; ".join(messages))
    status_var = xr.DataArray(
        status,
        dims="member",
        attrs={"long_name": "integrator status (0 = success, -1 = failed; NaN after)"},
    )
    ds = matrix_dataset(
        out,
        times,
        model,
        rescaled=rescaled,
        attrs={
            "kind": "matrix_gradient_flow",
            "integrator": f"scipy {method}",
            "rtol": rtol,
            "atol": atol,
            "failures": "; ".join(messages) or "none",
        },
        extra={"status": status_var},
    )
    return ds.isel(member=0, drop=True) if single else ds
