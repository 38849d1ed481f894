"""Results as ``xarray.Dataset``: layout, provenance attributes, and NetCDF/Zarr storage.

Every run of dlnsim returns a Dataset with dimensions ``member``, ``time``, ``particle`` (and
``sigma`` for densities), variables carrying ``long_name``/``units``, and in its attributes every
parameter, the seed where there is one, the package and library versions, the command line and
the CF ``Conventions``.  Attribute values are restricted to str/int/float so that NetCDF and
Zarr both round-trip them unchanged (``depth = inf`` is stored as the string ``"inf"``).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import functools
import math
import os
import platform
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .validation import check_bool, fail
from .version import __version__

__all__ = [
    "provenance",
    "extra_provenance",
    "provenance_extras",
    "trajectory_dataset",
    "save",
    "load",
    "describe",
    "clean_attrs",
    "check_path",
    "valid_states",
]

CONVENTIONS = "CF-1.10"
#: NetCDF compression of ``save``: zlib (deflate) at this level, with the byte shuffle filter,
#: on numeric arrays of at least ``NETCDF_COMPRESS_BYTES`` (a chunked, compressed HDF5 dataset
#: carries a few kB of index: smaller arrays would grow).
NETCDF_COMPLEVEL = 4
NETCDF_COMPRESS_BYTES = 16 * 2**10
#: Attributes written by ``provenance`` itself (the rest of a dataset's attrs are parameters,
#: results and state); ``describe`` separates them.
PROVENANCE_KEYS = frozenset(
    {
        "Conventions",
        "title",
        "source",
        "references",
        "history",
        "command_line",
        "created",
        "config",
        "machine",
        "cpu_model",
        "cpu_target",
    }
)
_EXTRA: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "dlnsim_extra_provenance", default=None
)


def clean_attrs(attrs: Mapping[str, object]) -> dict[str, str | int | float]:
    """Attribute values that NetCDF and Zarr both store exactly: str, int or finite float.

    ``bool`` becomes ``int``, non-finite floats and everything else become ``str``.

    Parameters
    ----------
    attrs : Mapping[str, object]
        The attributes.

    Returns
    -------
    dict[str, str | int | float]
        The converted attributes, same keys.
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
    import llvmlite
    import numba
    import scipy

    return {
        "dlnsim_version": __version__,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "xarray_version": xr.__version__,
        "numba_version": numba.__version__,
        "llvmlite_version": llvmlite.__version__,
    }


@functools.cache
def _cpu() -> dict[str, str]:
    """The CPU model (``/proc/cpuinfo``'s ``model name``, else ``platform.processor()``) and the
    CPU name numba compiles the kernels for (``NUMBA_CPU_NAME``, else LLVM's host CPU)."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    model = model or platform.processor() or "unknown"
    import numba
    from llvmlite import binding

    target = numba.config.CPU_NAME
    if not target:
        try:
            target = binding.get_host_cpu_name()
        except Exception:  # noqa: BLE001 - provenance never fails a run
            target = "unknown"
    return {"machine": platform.machine() or "unknown", "cpu_model": model, "cpu_target": target}


@contextlib.contextmanager
def extra_provenance(**attrs: object) -> Iterator[None]:
    """Within the ``with`` block, every ``provenance`` (so every dataset built) also records
    ``attrs`` (``dlnsim run`` records its config text as ``config``).

    Parameters
    ----------
    **attrs
        Attributes to add (str, int or float; others are stored as ``str``).

    Returns
    -------
    contextlib.AbstractContextManager
        A context manager (the generator wrapped by ``contextlib.contextmanager``); entering
        it yields None.
    """
    outer = _EXTRA.get() or {}
    token = _EXTRA.set({**outer, **attrs})
    try:
        yield
    finally:
        _EXTRA.reset(token)


def provenance_extras() -> dict[str, object]:
    """The attributes ``extra_provenance`` adds at this point (a copy; empty outside any
    ``with extra_provenance(...)`` block).

    Returns
    -------
    dict
        Attribute name -> value.
    """
    return dict(_EXTRA.get() or {})


def provenance(**params: object) -> dict[str, str | int | float]:
    """Dataset attributes: ``params`` plus versions, CPU, command line and creation time.

    No host name, user or process id is recorded.  The CPU model and the numba/llvmlite
    versions are kept because the compiled kernels' last bits could depend on them.

    Parameters
    ----------
    **params
        The run's parameters (they override the provenance keys of the same name).

    Returns
    -------
    dict
        Attribute name -> str, int or finite float (see ``clean_attrs``).
    """
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
        **_versions(),
        **_cpu(),
        **(_EXTRA.get() or {}),
    }
    attrs.update(params)
    return clean_attrs(attrs)


def valid_states(model, sigma: np.ndarray) -> np.ndarray:
    """Mask ``(...)`` of the states (last axis) at which ``model`` evaluates its energies.

    ``model.valid_states`` when the model defines it (e.g. Dyson eigenvalues may be negative),
    else finite and ``> 0`` (singular values).

    Parameters
    ----------
    model : Model or a baseline model
        The model (its ``valid_states`` method is used when present).
    sigma : numpy.ndarray
        States, shape ``(..., d)``.

    Returns
    -------
    numpy.ndarray
        Boolean mask, shape ``(...)``.
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

    Parameters
    ----------
    sigma : numpy.ndarray
        Trajectories, shape ``(member, time, particle)``.
    times : numpy.ndarray
        Save times, shape ``(time,)`` (in ``tau = N t`` when ``rescaled``, else ``t``).
    model : Model or a baseline model
        Provides ``energy``, ``free_energy`` and ``describe()``.
    rescaled : bool
        Whether ``times`` are rescaled times ``tau = N t``.
    attrs : Mapping[str, object] or None, default None
        Extra provenance attributes.
    extra : Mapping[str, xarray.DataArray] or None, default None
        Extra variables to add.

    Returns
    -------
    xarray.Dataset
        ``sigma``, ``energy``, ``free_energy`` (and ``extra``), coordinates ``member``,
        ``time``, ``particle``, provenance attributes.
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
                # dimensionless model time: no CF standard_name "time" (it needs units of
                # time, and xarray would decode "<unit> since <date>" into dates)
                {"long_name": time_name, "units": "1"},
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
    """The storage engine for ``path``: ``zarr`` (``.zarr``) or ``netcdf`` (``.nc``).

    Parameters
    ----------
    path : pathlib.Path
        The file path.

    Returns
    -------
    str
        ``"zarr"`` or ``"netcdf"`` (``.nc``, ``.nc4``, ``.netcdf``).

    Raises
    ------
    ValueError
        ``bad path=...`` for another suffix.
    """
    name = path.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".nc", ".nc4", ".netcdf")):
        return "netcdf"
    raise fail("path", str(path), "must end in .nc (NetCDF) or .zarr (Zarr)")


def _netcdf_encoding(ds: xr.Dataset, compress: bool) -> dict[str, dict[str, Any]]:
    """Per-variable NetCDF encoding: the value encodings kept, compression on numeric arrays."""
    keep = ("dtype", "_FillValue", "scale_factor", "add_offset", "units", "calendar")
    out: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        enc = {k: v for k, v in var.encoding.items() if k in keep}
        big = var.ndim >= 1 and var.nbytes >= NETCDF_COMPRESS_BYTES
        if compress and big and var.dtype.kind in "biuf":
            enc.update(zlib=True, complevel=NETCDF_COMPLEVEL, shuffle=True)
        out[str(name)] = enc
    return out


def save(ds: xr.Dataset, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``ds`` to NetCDF4 (``.nc``, via h5netcdf) or Zarr (``.zarr``).

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset (values, dtypes and attributes round-trip exactly through ``load``).
    path : str or os.PathLike
        Ends in ``.nc`` (NetCDF4/HDF5) or ``.zarr``; parent folders are created.
    compress : bool, default True
        NetCDF: numeric arrays of at least ``NETCDF_COMPRESS_BYTES`` are deflated (zlib level
        ``NETCDF_COMPLEVEL``, byte shuffle; lossless).  Zarr: the store's default codec (zstd)
        when True, none when False.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.nc`` or ``.zarr``, or ``compress`` is not a bool.
    """
    path = Path(path)
    engine = check_path(path)
    compress = check_bool(compress, "compress")
    path.parent.mkdir(parents=True, exist_ok=True)
    if engine == "zarr":
        encoding = {} if compress else {str(n): {"compressors": None} for n in ds.variables}
        ds.to_zarr(path, mode="w", consolidated=False, encoding=encoding)
    else:
        ds.to_netcdf(path, engine="h5netcdf", encoding=_netcdf_encoding(ds, compress))
    return path


def _open(path: Path, engine: str, lazy: bool) -> xr.Dataset:
    """Open a dataset file (lazily: dask arrays); ValueError naming ``path`` if it cannot."""
    if not path.exists():
        raise fail("path", str(path), "does not exist")
    try:
        if engine == "zarr":
            return xr.open_zarr(path, consolidated=False)
        return xr.open_dataset(path, engine="h5netcdf", chunks={} if lazy else None)
    except Exception as err:  # noqa: BLE001 - any unreadable file
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise fail("path", str(path), f"is not a readable {engine} dataset ({why})") from None


def load(path: str | os.PathLike, *, lazy: bool = False) -> xr.Dataset:
    """Read a Dataset written by ``save`` (or an ensemble's Zarr store).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nc`` file or a ``.zarr`` store.
    lazy : bool, default False
        False: every variable is read into memory and the file is closed.  True: the file is
        opened with dask (each variable a dask array chunked like the file, read on
        ``.compute()``/``.values``); close it with ``ds.close()`` or ``with load(...) as ds``.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ValueError
        If ``path`` has another suffix, does not exist or cannot be read, or ``lazy`` is not a
        bool.
    """
    path = Path(path)
    engine = check_path(path)
    lazy = check_bool(lazy, "lazy")
    ds = _open(path, engine, lazy)
    if lazy:
        return ds
    with ds:
        return ds.load()


def _dim_order(name: object) -> tuple[int, str]:
    main = ("member", "time", "particle")
    return (main.index(name), "") if name in main else (len(main), str(name))


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a saved dataset or an ensemble store holds, read without loading the data.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nc`` file or a ``.zarr`` store, complete or partial (a killed ensemble run).

    Returns
    -------
    dict
        ``path``, ``format`` (``"netcdf"``/``"zarr"``), ``kind`` (the ``kind`` attribute or
        ``None``), ``dims`` (name -> size), ``variables`` (name -> dims), ``parameters``
        (every attribute that is not provenance), ``seed`` (``None`` without one),
        ``provenance`` (versions, CPU, command line, config...), and the completion state:
        ``complete`` (``True``/``False``, ``None`` for a dataset without one), ``chunks_done``
        and ``chunks_total`` (ensemble chunks of members; ``None`` when unknown),
        ``members`` (``None`` without a ``member`` dimension), ``failed_members`` (indices of
        members flagged failed; ``None`` without a ``failed`` variable), ``failed_times`` (their
        ``failed_time``) and ``members_pending`` (members not computed yet); for an ensemble
        store, ``verification``: its chunks checked against their recorded checksums
        (``dlnsim.particles.store.verify_store``), ``None`` for other datasets.

    Raises
    ------
    ValueError
        If ``path`` has another suffix, does not exist or is not a readable dataset.
    """
    path = Path(path)
    engine = check_path(path)
    with _open(path, engine, lazy=True) as ds:
        attrs = dict(ds.attrs)
        info: dict[str, Any] = {
            "path": str(path),
            "format": engine,
            "kind": attrs.get("kind"),
            "dims": {str(k): int(ds.sizes[k]) for k in sorted(ds.sizes, key=_dim_order)},
            "variables": {str(k): tuple(str(d) for d in v.dims) for k, v in ds.data_vars.items()},
            "seed": attrs.get("seed"),
            "parameters": {
                k: v for k, v in attrs.items() if k not in PROVENANCE_KEYS and "_version" not in k
            },
            "provenance": {
                k: v for k, v in attrs.items() if k in PROVENANCE_KEYS or "_version" in k
            },
        }
        complete = attrs.get("complete")
        info["complete"] = None if complete is None else bool(int(complete))
        total = attrs.get("n_chunks")
        if "chunk_done" in ds:
            done_flags = np.asarray(ds["chunk_done"].values)
            info["chunks_done"] = int(np.sum(done_flags == 1))
            info["chunks_total"] = int(done_flags.size)
        elif total is not None and info["complete"] is not None:
            info["chunks_total"] = int(total)
            info["chunks_done"] = int(total) if info["complete"] else None
        else:
            info["chunks_done"] = info["chunks_total"] = None
        info["members"] = int(ds.sizes["member"]) if "member" in ds.sizes else None
        if "failed" in ds:
            flags = np.asarray(ds["failed"].values)
            bad = np.flatnonzero(flags == 1)
            info["failed_members"] = [int(k) for k in bad]
            when = np.full(bad.size, np.nan)
            if "failed_time" in ds:
                when = ds["failed_time"].values[bad]
            info["failed_times"] = [float(t) for t in when]
            info["members_pending"] = int(np.sum(flags < 0))
        else:
            info["failed_members"] = info["failed_times"] = info["members_pending"] = None
    for key in ("parameters", "provenance"):
        info[key] = {k: info[key][k] for k in sorted(info[key])}
    info["verification"] = None
    if engine == "zarr" and info["chunks_total"] is not None:
        from .store import verify_store

        info["verification"] = verify_store(path)
    return info
