r"""Distances between a mean-field density (``meanfield.solve``) and particle samples of sigma.

At each common time the pooled samples (all members and particles) are compared with the PDE's
piecewise-constant density of ``sigma``:

- ``w1``: the 1-Wasserstein distance ``W1 = int |F_pde - F_emp| dsigma``, computed exactly: the
  PDE's CDF is piecewise linear (linear inside each cell), the empirical CDF a step function, so
  on every piece between consecutive cell edges and samples the integrand is ``|linear|``,
  integrated in closed form (splitting at its zero);
- ``l1``: ``int |f_pde - f_hist| dsigma`` with ``f_hist`` the histogram of the samples on the PDE
  cells (``count / (n cell_width)``), plus the fraction of samples outside the grid.

Both accept the moving-grid layout of ``meanfield.solve`` (dims ``time, cell``; 2-D
``sigma_lower``/``sigma_upper`` per time) and a fixed grid (cell centres ``sigma`` on the dim
``cell`` with ``cell_width``).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from dlnsim.particles.validation import fail

__all__ = ["compare_densities", "fit_rate", "member_noise", "wasserstein_to_density"]


def _edges(pde: xr.Dataset, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous cell edges (n + 1) and cell masses (n) of the PDE density at time index k."""
    density = np.asarray(pde["density"].isel(time=k), dtype=np.float64)
    width = pde["cell_width"]
    width = np.asarray(width.isel(time=k) if "time" in width.dims else width, dtype=np.float64)
    if "sigma_lower" in pde.variables:
        lower = np.asarray(pde["sigma_lower"].isel(time=k), dtype=np.float64)
    else:
        centre = pde["sigma"]
        centre = np.asarray(centre.isel(time=k) if "time" in centre.dims else centre, float)
        lower = centre - 0.5 * width
    edges = np.append(lower, lower[-1] + width[-1])
    return edges, density * width


def wasserstein_to_density(edges: np.ndarray, masses: np.ndarray, samples: np.ndarray) -> float:
    """Exact ``int |F(x) - F_n(x)| dx`` for the piecewise-constant density with cell ``masses``
    on contiguous ``edges`` (renormalized to 1) and the empirical CDF of ``samples``.

    Parameters
    ----------
    edges : numpy.ndarray
        Cell edges (in the samples' coordinate, e.g. ``sigma``), increasing, shape ``(n + 1,)``.
    masses : numpy.ndarray
        Cell masses, >= 0, shape ``(n,)``.
    samples : numpy.ndarray
        Samples, any shape (flattened).

    Returns
    -------
    float
        The 1-Wasserstein distance.
    """
    edges = np.asarray(edges, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    y = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    cdf_edges = np.concatenate(([0.0], np.cumsum(masses)))
    cdf_edges /= cdf_edges[-1]
    points = np.union1d(edges, y)
    f_pde = np.interp(points, edges, cdf_edges, left=0.0, right=1.0)
    f_emp = np.searchsorted(y, points, side="right") / y.size  # constant on [p_q, p_{q+1})
    return float(_abs_linear(f_pde[:-1] - f_emp[:-1], f_pde[1:] - f_emp[:-1]) @ np.diff(points))


def _abs_linear(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Mean of ``|g|`` over a piece where ``g`` is linear from ``d0`` to ``d1`` (exact, split at
    the zero); broadcasts."""
    a0, a1 = np.abs(d0), np.abs(d1)
    same = d0 * d1 >= 0
    denom = np.where(same, 1.0, a0 + a1)
    return np.where(same, 0.5 * (a0 + a1), 0.5 * (d0 * d0 + d1 * d1) / denom)


def member_noise(edges: np.ndarray, masses: np.ndarray, members: np.ndarray) -> tuple[float, float]:
    """Sampling-noise floor and standard error of the W1 distance between the PDE density and
    samples pooled over independent members whose own samples are correlated (the particles of
    one system repel each other, so their empirical CDF is much less noisy than that of as many
    independent draws).

    With ``F_a`` the empirical CDF of member ``a``'s samples (``M`` members) the pooled CDF is
    ``F = mean_a F_a``; at each ``x`` its noise is normal with variance ``v(x)/M``, ``v`` the
    between-member variance of ``F_a(x)`` (central limit over members).  If the members' law
    were the PDE's, ``E W1 = sqrt(2/pi) int sqrt(v/M) dx`` (the mean of a folded normal,
    integrated): that is the floor, with ``v`` estimated by the sample variance over members
    (its square root corrected by ``c4(M)``, exact for normal ``F_a(x)``).  The standard error of
    ``W1`` itself is the jackknife over members.

    Parameters
    ----------
    edges : numpy.ndarray
        PDE cell edges in ``sigma``, increasing, shape ``(n + 1,)``.
    masses : numpy.ndarray
        PDE cell masses, shape ``(n,)``.
    members : numpy.ndarray
        Samples, shape ``(M, k)``: ``k`` (correlated) samples of each of ``M >= 2`` independent
        members.

    Returns
    -------
    tuple of (float, float)
        ``(floor, se)``: the expected W1 under the null "same law" and the jackknife standard
        error of the pooled W1.

    Raises
    ------
    ValueError
        ``bad members=...`` (not 2-D with at least two members, or non-finite).
    """
    from scipy.special import gammaln

    y = np.asarray(members, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 1 or not np.all(np.isfinite(y)):
        raise fail("members", y.shape, "must be (M >= 2 members, k >= 1 samples), finite")
    edges = np.asarray(edges, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    m = y.shape[0]
    points = np.union1d(edges, y.ravel())
    cdf_edges = np.concatenate(([0.0], np.cumsum(masses)))
    f_pde = np.interp(points, edges, cdf_edges / cdf_edges[-1], left=0.0, right=1.0)
    y = np.sort(y, axis=1)
    f_each = np.stack([np.searchsorted(row, points[:-1], side="right") for row in y]) / y.shape[1]
    length = np.diff(points)
    c4 = math.exp(0.5 * math.log(2.0 / (m - 1)) + gammaln(m / 2) - gammaln((m - 1) / 2))
    floor = math.sqrt(2.0 / math.pi) * float(np.sqrt(f_each.var(axis=0, ddof=1) / m) @ length)
    total = f_each.sum(axis=0)
    f_out = (total[None, :] - f_each) / (m - 1)  # leave-one-member-out CDFs
    jack = _abs_linear(f_pde[None, :-1] - f_out, f_pde[None, 1:] - f_out) @ length
    se = math.sqrt((m - 1) / m * float(((jack - jack.mean()) ** 2).sum()))
    return floor / c4, se


def _l1_to_histogram(edges: np.ndarray, masses: np.ndarray, samples: np.ndarray) -> float:
    counts, _ = np.histogram(samples, bins=edges)
    frac = counts / samples.size
    masses = masses / masses.sum()
    return float(np.abs(masses - frac).sum() + (1.0 - frac.sum()))


def _sample_sets(samples, times) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled samples per time and the sample times."""
    if isinstance(samples, xr.DataArray):
        if "time" not in samples.dims:
            raise fail("samples", samples.dims, "a DataArray of samples needs a 'time' dim")
        if times is None:
            if "time" not in samples.coords:
                raise fail("times", times, "give times (the samples have no time coordinate)")
            times = samples["time"].values
        arr = samples.transpose("time", ...).values.reshape(samples.sizes["time"], -1)
    else:
        arr = np.asarray(samples, dtype=np.float64)
        if arr.ndim == 3:  # (member, time, particle)
            arr = np.moveaxis(arr, 1, 0).reshape(arr.shape[1], -1)
        elif arr.ndim == 1:  # one time
            arr = arr[None, :]
        elif arr.ndim != 2:
            raise fail("samples", arr.shape, "must be (time, n) or (member, time, particle)")
        if times is None:
            raise fail("times", times, "give the times of the samples' time axis")
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if times.ndim != 1 or times.size != arr.shape[0]:
        raise fail("times", times, f"must list the {arr.shape[0]} time(s) of the samples")
    sets = []
    for row in arr:
        row = row[np.isfinite(row)]
        if row.size == 0:
            raise fail("samples", "all NaN", "each time needs at least one finite sample")
        sets.append(row)
    return sets, times


def compare_densities(
    pde: xr.Dataset, samples: np.ndarray | xr.DataArray, times: np.ndarray | None = None
) -> xr.Dataset:
    """W1 and L1 distances between the PDE density and pooled samples of sigma, per time.

    ``samples``: a DataArray with a ``time`` dim (other dims pooled; ``times`` defaults to its
    time coordinate), or an array of shape ``(time, n)``, ``(member, time, particle)`` or
    ``(n,)`` (one time) whose time axis lists ``times``.  Each time must be a time of ``pde``
    (matched to relative ``1e-9``).  Returns ``w1``, ``l1``, ``n_samples``, ``mean_pde`` and
    ``mean_samples`` on the dim ``time``.

    Parameters
    ----------
    pde : xarray.Dataset
        A ``meanfield.solve`` result (with ``density`` and ``cell_width``).
    samples : numpy.ndarray or xarray.DataArray
        Samples of ``sigma``, laid out as above.
    times : numpy.ndarray or None, default None
        The samples' times (None: the DataArray's ``time`` coordinate).

    Returns
    -------
    xarray.Dataset
        ``w1``, ``l1``, ``n_samples``, ``mean_pde``, ``mean_samples`` on ``time``;
        ``kind = "meanfield_compare"``.

    Raises
    ------
    ValueError
        ``bad pde=...``, ``bad samples=...`` (layout, no finite sample), ``bad times=...``
        (missing, wrong count, not a time of ``pde``).
    """
    if not isinstance(pde, xr.Dataset) or "density" not in pde or "cell_width" not in pde:
        raise fail("pde", type(pde).__name__, "must be a meanfield.solve Dataset")
    sets, times = _sample_sets(samples, times)
    pde_times = np.asarray(pde["time"].values, dtype=np.float64)
    scale = max(1.0, float(np.abs(pde_times).max()))
    out = {name: np.empty(times.size) for name in ("w1", "l1", "mean_pde", "mean_samples")}
    counts = np.empty(times.size, dtype=np.int64)
    for i, (t, y) in enumerate(zip(times, sets, strict=True)):
        k = int(np.argmin(np.abs(pde_times - t)))
        if abs(pde_times[k] - t) > 1e-9 * scale:
            raise fail("times", float(t), "is not a time of the PDE dataset")
        edges, masses = _edges(pde, k)
        out["w1"][i] = wasserstein_to_density(edges, masses, y)
        out["l1"][i] = _l1_to_histogram(edges, masses, y)
        out["mean_pde"][i] = float(masses @ (0.5 * (edges[1:] + edges[:-1])) / masses.sum())
        out["mean_samples"][i] = float(y.mean())
        counts[i] = y.size
    attrs = {
        "w1": {"long_name": "1-Wasserstein distance, PDE density vs samples", "units": "1"},
        "l1": {"long_name": "L1 distance, PDE density vs histogram on the PDE cells", "units": "1"},
        "mean_pde": {"long_name": "mean of sigma under the PDE density", "units": "1"},
        "mean_samples": {"long_name": "mean of the pooled samples of sigma", "units": "1"},
    }
    ds = xr.Dataset(
        {name: ("time", values, attrs[name]) for name, values in out.items()},
        coords={"time": ("time", times, dict(pde["time"].attrs))},
    )
    ds["n_samples"] = ("time", counts, {"long_name": "pooled samples per time"})
    ds.attrs = {
        key: value for key, value in pde.attrs.items() if isinstance(value, str | int | float)
    }
    ds.attrs["kind"] = "meanfield_compare"
    return ds


def fit_rate(ds_values: np.ndarray, distances: np.ndarray) -> float:
    """Least-squares slope of ``log(distances)`` against ``log(ds_values)``.

    ``ds_values``: the refinement parameter (cell widths, sample sizes, time steps); the
    slope ``q`` of ``distance ~ C ds^q`` is the observed rate (e.g. ``-1/2`` for W1 against the
    number of samples, ``2`` for a second-order scheme against the cell width).

    Parameters
    ----------
    ds_values : numpy.ndarray
        Refinement parameters, finite and > 0, not all equal.
    distances : numpy.ndarray
        Distances, finite and > 0, same size (>= 2).

    Returns
    -------
    float
        The slope ``q``.

    Raises
    ------
    ValueError
        ``bad distances=...`` or ``bad ds_values=...``.
    """
    x = np.asarray(ds_values, dtype=np.float64).ravel()
    y = np.asarray(distances, dtype=np.float64).ravel()
    if x.size != y.size or x.size < 2:
        raise fail("distances", y.shape, f"must match ds_values {x.shape}, with >= 2 points")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise fail("ds_values", x, "must be finite and > 0")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise fail("distances", y, "must be finite and > 0")
    if np.ptp(np.log(x)) == 0:
        raise fail("ds_values", x, "must not all be equal")
    slope, _ = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope)
