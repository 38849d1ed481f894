"""The deterministic gradient flow ``dX/dt = -grad_{g^N} F_beta`` on the chamber (MODEL section 4).

For spectral energies the singular vectors stay fixed, so only the singular values move.  The
flow is integrated in ``rho = log sigma`` (positivity is automatic and every scale is resolved
with the same relative accuracy):

    drho_i/dt = -N exp(-2 rho_i / N) dF/drho_i        (t)
    drho_i/dtau = -exp(-2 rho_i / N) dF/drho_i        (tau = N t; at N = inf: -dF_inf/drho_i)

with a stiff implicit Runge-Kutta method (Radau IIA, order 5, or BDF) and the analytic
Jacobian ``Model.velocity_jacobian_rho``.  States are saved only at the requested times.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from .datasets import trajectory_dataset
from .model import Model
from .validation import check_choice, check_positive, check_singular_values, check_times, fail

__all__ = ["gradient_flow"]


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
) -> xr.Dataset:
    """Integrate the gradient flow of ``model.free_energy`` from ``sigma0``; save at ``times``.

    ``sigma0``: shape ``(d,)`` (one trajectory; ``sigma`` has dims ``(time, particle)``) or
    ``(M, d)`` (``M`` members; dims ``(member, time, particle)``).  Each row is sorted into
    the chamber order ``sigma_1 >= ... >= sigma_d``.  ``times``: increasing, ``>= 0``, in ``t``,
    or in ``tau = N t`` when ``rescaled`` (the default, and the only choice, at ``depth = inf``).
    ``rtol``/``atol`` are the integrator tolerances on ``rho = log sigma`` (so ``atol`` is a
    relative tolerance on ``sigma``).  A member whose integration fails keeps the states saved
    before the failure, NaN after, and ``status = -1`` in the dataset.

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
    """
    if not isinstance(model, Model):
        raise fail("model", model, "must be a particles.Model")
    rescaled = model._rescaled(rescaled)
    sigma0 = check_singular_values(sigma0, model.width, "sigma0")
    if sigma0.ndim > 2:
        raise fail("sigma0", sigma0.shape, "must have shape (d,) or (members, d)")
    times = check_times(times)
    method = check_choice(method, "method", ("Radau", "BDF", "LSODA"))
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol")
    single = sigma0.ndim == 1
    starts = np.sort(np.atleast_2d(sigma0), axis=-1)[:, ::-1]
    n_member = starts.shape[0]

    def rhs(_t: float, rho: np.ndarray) -> np.ndarray:
        return model.velocity_rho(rho, rescaled)

    def jac(_t: float, rho: np.ndarray) -> np.ndarray:
        return model.velocity_jacobian_rho(rho, rescaled)

    out = np.full((n_member, times.size, model.width), np.nan)
    status = np.zeros(n_member, dtype=np.int8)
    messages = []
    hide = None if progress is None else not progress  # None: tqdm shows it on a terminal only
    bar = tqdm(range(n_member), desc="gradient flow", unit="member", disable=hide, leave=False)
    for k in bar:
        sol = solve_ivp(
            rhs,
            (0.0, float(times[-1])),
            np.log(starts[k]),
            method=method,
            t_eval=times,
            jac=jac,
            rtol=rtol,
            atol=atol,
        )
        n_saved = sol.y.shape[1]
        out[k, :n_saved] = np.exp(sol.y.T)
        if sol.status != 0:
            status[k] = -1
            messages.append(f"member {k}: {sol.message}")
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
