"""Results as ``xarray.Dataset``: layout, provenance attributes, and NetCDF/Zarr storage.

Every run of dlnsim returns a Dataset with dimensions ``member``, ``time``, ``particle`` (and
``sigma`` for densities), variables carrying ``long_name``/``units``, and in its attributes every
parameter, the seed where there is one, the package and library versions, the command line and
the CF ``Conventions``.  Attribute values are restricted to str/int/float so that NetCDF and
Zarr both round-trip them unchanged (``depth = inf`` is stored as the string ``"inf"``).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from .validation import fail
from .version import __version__

__all__ = [
    "provenance",
    "trajectory_dataset",
    "save",
    "load",
    "clean_attrs",
    "check_path",
    "valid_states",
]

CONVENTIONS = "CF-1.10"


def clean_attrs(attrs: Mapping[str, object]) -> dict[str, str | int | float]:
    """Attribute values that NetCDF and Zarr both store exactly: str, int or finite float.

    ``bool`` becomes ``int``, non-finite floats and everything else become ``str``.
    """
    out: dict[str, str | int | float] = {}
    for key, value in attrs.items():
        if isinstance(value, bool | np.bool_):
            out[key] = int(value)
        elif isinstance(value, int | np.integer):
            out[key] = int(value)
        elif isinstance(value, float | np.floating) and math.isfinite(float(value)):
            out[key] = float(value)
        elif isinstance(value, float | np.floating):
            out[key] = "inf" if value > 0 else ("-inf" if value < 0 else "nan")
        else:
            out[key] = str(value)
    return out


def _versions() -> dict[str, str]:
    import scipy

    return {
        "dlnsim_version": __version__,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
    }


def provenance(**params: object) -> dict[str, str | int | float]:
    """Dataset attributes: ``params`` plus versions, command line, host and creation time."""
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    command = shlex.join(sys.argv) if sys.argv and sys.argv[0] else "python"
    attrs: dict[str, object] = {
        "Conventions": CONVENTIONS,
        "title": "dlnsim: deep linear network thermodynamics",
        "source": f"dlnsim {__version__}",
        "references": "Chen, Kotwal, Menon, Entropic Regularization in the Deep Linear Network, "
        "arXiv:2512.06137; Menon, Yu, arXiv:2509.09088",
        "history": f"{now} created by: {command}",
        "command_line": command,
        "created": now,
        "host": platform.node(),
        "pid": os.getpid(),
        **_versions(),
    }
    attrs.update(params)
    return clean_attrs(attrs)


def valid_states(model, sigma: np.ndarray) -> np.ndarray:
    """Mask ``(...)`` of the states (last axis) at which ``model`` evaluates its energies.

    ``model.valid_states`` when the model defines it (e.g. Dyson eigenvalues may be negative),
    else finite and ``> 0`` (singular values).
    """
    method = getattr(model, "valid_states", None)
    if method is not None:
        return np.asarray(method(sigma), dtype=bool)
    return np.all(np.isfinite(sigma) & (sigma > 0), axis=-1)


def trajectory_dataset(
    sigma: np.ndarray,
    times: np.ndarray,
    model,
    *,
    rescaled: bool,
    attrs: Mapping[str, object] | None = None,
    extra: Mapping[str, xr.DataArray] | None = None,
) -> xr.Dataset:
    """The standard particle-trajectory Dataset.

    ``sigma`` has shape ``(member, time, particle)``.  Adds ``energy`` and ``free_energy``
    ``(member, time)`` computed by ``model`` (NaN where the state is not valid for the model,
    see ``valid_states``), coordinates ``member``, ``time``, ``particle`` and the provenance
    attributes; ``sigma``'s long_name is ``model.state_long_name`` when the model has one.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    n_member, n_time, d = sigma.shape
    finite = valid_states(model, sigma)
    safe = np.where(finite[..., None], sigma, 1.0)
    energy = np.where(finite, model.energy(safe), np.nan)
    free = np.where(finite, model.free_energy(safe), np.nan)
    time_name = "rescaled time tau = N t" if rescaled else "time t"
    state_name = getattr(model, "state_long_name", "singular value of the end-to-end matrix")
    free_name = getattr(model, "free_energy_long_name", "free energy F_beta = E - S_N / beta")
    ds = xr.Dataset(
        {
            "sigma": (
                ("member", "time", "particle"),
                sigma,
                {"long_name": state_name, "units": "1"},
            ),
            "energy": (
                ("member", "time"),
                energy,
                {"long_name": "energy E(sigma) = sum_i e(sigma_i)", "units": "1"},
            ),
            "free_energy": (
                ("member", "time"),
                free,
                {"long_name": free_name, "units": "1"},
            ),
        },
        coords={
            "member": ("member", np.arange(n_member), {"long_name": "ensemble member"}),
            "time": (
                "time",
                np.asarray(times, dtype=np.float64),
                {
                    "long_name": time_name,
                    "units": "1",
                    "standard_name": "time",
                },
            ),
            "particle": (
                "particle",
                np.arange(1, d + 1),
                {
                    "long_name": "singular value index (1 = largest at t = 0)",
                },
            ),
        },
    )
    for name, var in (extra or {}).items():
        ds[name] = var
    ds.attrs.update(provenance(**model.describe(), rescaled_time=int(rescaled), **(attrs or {})))
    return ds


def check_path(path: Path) -> str:
    """The storage engine for ``path``: ``zarr`` (``.zarr``) or ``netcdf`` (``.nc``)."""
    name = path.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".nc", ".nc4", ".netcdf")):
        return "netcdf"
    raise fail("path", str(path), "must end in .nc (NetCDF) or .zarr (Zarr)")


def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to NetCDF4 (``.nc``, via h5netcdf) or Zarr (``.zarr``); returns the path."""
    path = Path(path)
    engine = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if engine == "zarr":
        ds.to_zarr(path, mode="w", consolidated=False)
    else:
        ds.to_netcdf(path, engine="h5netcdf")
    return path


def load(path: str | os.PathLike) -> xr.Dataset:
    """Read a Dataset written by ``save`` (fully into memory, file closed)."""
    path = Path(path)
    engine = check_path(path)
    if not path.exists():
        raise fail("path", str(path), "does not exist")
    if engine == "zarr":
        with xr.open_zarr(path, consolidated=False) as ds:
            return ds.load()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
