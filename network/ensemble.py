"""Ensembles of the matrix Langevin equation on the particles' ensemble runner (theory.md 12.5).

``langevin_ensemble`` validates a matrix run and hands it to ``particles.ensemble``'s runner
(``run_ensemble``) with the layout ``MATRIX``: the runner, its executors (in-process, a Dask
client, an address, ``scheduler="local"``), its chunking, progress bar, Zarr streaming with
checksums, resume, overwrite, lock, failure handling and reduction trees are the particles'
ones.  Only what a member's state is differs, and ``MatrixLayout`` declares it: the variables
``X`` (dims ``member, time, row, col``), ``sigma`` (``member, time, particle``), ``energy``,
``free_energy``, the start ``X0`` and ``last_finite`` (``member, row, col``), ``failed``,
``failed_time``, ``accepted`` and ``steps``; its block of members is
``network.simulate_matrix_members``.  Member ``k`` draws only from ``(seed, k)``, so the result
is bitwise the same for any chunking, any cluster and serially.  A matrix store has the kind
``network_langevin_ensemble`` and its start variable ``X0`` (attribute ``start_variable``); a
resume refuses a store of the particles, and conversely.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.particles.ensemble import SEEDING_SCHEME, Execution, Output, Storage
from dlnsim.particles.ensemble.options import UNSET
from dlnsim.particles.ensemble.plan import Variable
from dlnsim.particles.ensemble.runner import Dynamics, options, run_ensemble
from dlnsim.particles.validation import check_bool, check_integer, check_positive, check_times, fail

from .langevin import (
    MatrixLangevin,
    _check_model,
    _check_start,
    _rescaled,
    _temperature,
    simulate_matrix_members,
)

__all__ = ["MATRIX", "SCHEME", "MatrixLayout", "langevin_ensemble"]

SCHEME = "Euler-Maruyama in X, noise sqrt(2 T h) U (sqrt(K) o Z) V^T (theory.md 12.5)"


def _describe(model: Any) -> dict[str, object]:
    """``model.describe()``, or the four fields the engine reads (a duck-typed model)."""
    describe = getattr(model, "describe", None)
    if callable(describe):
        return dict(describe())
    depth = "inf" if model.depth == math.inf else str(model.depth)
    energy = model.energy.describe() if hasattr(model.energy, "describe") else {}
    return {"width": model.width, "depth": depth, "beta": model.beta, **energy}


class MatrixLayout:
    """The matrix ensemble's state for the runner (``particles.ensemble.plan.Layout``):
    a member is the ``d x d`` matrix ``X``, run by ``simulate_matrix_members``."""

    kind = "network_langevin_ensemble"
    start = "X0"
    trajectories = ("X", "sigma", "energy", "free_energy")

    def __reduce__(self) -> str:
        return "MATRIX"  # the one instance, pickled by reference

    def describe(self, model: Any) -> dict[str, Any]:
        """The model's parameters (``model.describe()`` or width, depth, beta, energy)."""
        return _describe(model)

    def sizes(self, model: Any) -> dict[str, int]:
        """``row``, ``col``, ``particle``: ``d`` each."""
        d = int(model.width)
        return {"row": d, "col": d, "particle": d}

    def coords(self, model: Any) -> dict[str, Any]:
        """``row``, ``col`` (0-based) and ``particle`` (``1 .. d``, 1 = largest)."""
        d = int(model.width)
        return {
            "row": ("row", np.arange(d), {"long_name": "row index of X"}),
            "col": ("col", np.arange(d), {"long_name": "column index of X"}),
            "particle": (
                "particle",
                np.arange(1, d + 1),
                {"long_name": "singular value index (1 = largest)"},
            ),
        }

    def variables(self, model: Any, save_members: bool, metropolis: bool) -> dict[str, Variable]:
        """``X``, ``sigma``, ``energy``, ``free_energy`` (with ``save_members``), ``X0``,
        ``failed``, ``failed_time``, ``last_finite``, ``accepted``, ``steps``."""
        f8, i8 = np.float64, np.int64
        mat, per_time = ("member", "time", "row", "col"), ("member", "time")
        out = {
            "X": Variable(mat, f8, np.nan, {"long_name": "end-to-end matrix X", "units": "1"}),
            "sigma": Variable((*per_time, "particle"), f8, np.nan, {
                "long_name": "singular value of the end-to-end matrix", "units": "1"}),
            "energy": Variable(per_time, f8, np.nan, {"long_name": "energy E(X)", "units": "1"}),
            "free_energy": Variable(per_time, f8, np.nan, {
                "long_name": "free energy F_beta = E - S_N / beta", "units": "1"}),
        }  # fmt: skip
        if not save_members:
            out = {}
        out.update({
            "X0": Variable(("member", "row", "col"), f8, np.nan, {
                "long_name": "initial matrix", "units": "1"}),
            "failed": Variable(("member",), np.int8, -1, {
                "long_name": "member failed (non-finite or singular state)",
                "flag_values": np.array([-1, 0, 1], dtype=np.int8),
                "flag_meanings": "not_computed_yet ok failed"}),
            "failed_time": Variable(("member",), f8, np.nan, {
                "long_name": "end of the failing step (NaN if none)", "units": "1"}),
            "last_finite": Variable(("member", "row", "col"), f8, np.nan, {
                "long_name": "last finite state (the final state if the member did not fail)",
                "units": "1"}),
            "accepted": Variable(("member",), i8, -1, {
                "long_name": "accepted Metropolis proposals (all steps without the test; "
                "-1 = not computed yet)"}),
            "steps": Variable(("member",), i8, -1, {
                "long_name": "steps taken (-1 = not computed yet)"}),
        })  # fmt: skip
        return out

    def chunk_arrays(self, save_members: bool, metropolis: bool) -> list[str]:
        """The trajectories (``save_members``), ``accepted``, ``steps``, ``failed_time``,
        ``last_finite``, ``failed``."""
        names = list(self.trajectories) if save_members else []
        return names + ["accepted", "steps", "failed_time", "last_finite", "failed"]

    def state_size(self, width: int) -> int:
        """``d^2 + d`` (``X`` and ``sigma``)."""
        return width * width + width

    def attrs(self) -> dict[str, Any]:
        """``start_variable``, ``scheme`` and the seeding of the Metropolis uniforms."""
        return {
            "start_variable": self.start,
            "scheme": SCHEME,
            "seeding_scheme": SEEDING_SCHEME + "; Metropolis uniforms spawn_key=(member, 1)",
        }

    def block(
        self,
        model: Any,
        starts: np.ndarray,
        members: np.ndarray,
        times: np.ndarray,
        dt: float,
        seed: int,
        temperature: float,
        rescaled: bool,
        metropolis: bool,
        energies: bool,
    ) -> dict[str, np.ndarray]:
        """``simulate_matrix_members`` of the block (it always computes the energies)."""
        b = simulate_matrix_members(
            model, starts, members, times, dt, seed, temperature, rescaled, metropolis
        )
        return {
            "X": b.x,
            "sigma": b.sigma,
            "energy": b.energy,
            "free_energy": b.free_energy,
            "accepted": np.asarray(b.accepted, dtype=np.int64),
            "steps": np.asarray(b.steps, dtype=np.int64),
            "failed_time": np.asarray(b.failed_time, dtype=np.float64),
            "last_finite": np.asarray(b.last_finite, dtype=np.float64),
        }


#: The matrix layout (``langevin_ensemble`` passes it to the runner).
MATRIX = MatrixLayout()


def _check_starts(model: Any, x0: object, members: int, temperature: float) -> np.ndarray:
    """``(members, d, d)`` starts (one start is broadcast), invertible with a finite energy."""
    d = int(model.width)
    starts = _check_start(x0, d)
    if starts.ndim not in (2, 3) or (starts.ndim == 3 and starts.shape[0] != members):
        raise fail("X0", starts.shape, f"must have shape ({d}, {d}) or ({members}, {d}, {d})")
    stack = starts.reshape(-1, d, d)
    bad = MatrixLangevin(model, stack, temperature, False).bad_start()
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise fail("X0", f"members {rows}", "must be invertible with a finite energy")
    if starts.ndim == 2:
        starts = np.broadcast_to(starts, (members, d, d))
    return np.ascontiguousarray(starts)


def langevin_ensemble(
    model: Any,
    X0: np.ndarray,  # noqa: N803 - the matrix, as in the theory
    times: np.ndarray,
    members: int,
    dt: float,
    seed: int | None = None,
    metropolis: bool = False,
    *,
    temperature: float | None = None,
    rescaled: bool | None = None,
    execution: Execution | None = None,
    storage: Storage | None = None,
    output: Output | None = None,
    chunk_size: int | None = UNSET,
    store: str | os.PathLike | None = UNSET,
    resume: bool = UNSET,
    client: Any | None = UNSET,
    scheduler: str | None = UNSET,
    reductions: Iterable[str] | str = UNSET,
    save_members: bool = UNSET,
    progress: bool | None = UNSET,
    overwrite: bool = UNSET,
    cluster_timeout: float = UNSET,
) -> xr.Dataset:
    """Run ``members`` independent trajectories of the matrix Langevin equation of ``model``,
    saved at ``times`` (theory.md section 12.5; scheme and seeding in ``network.langevin``).

    The run goes through the particles' ensemble runner (module docstring): ``client``,
    ``scheduler``, ``chunk_size``, ``store``, ``resume``, ``overwrite``, ``progress``,
    ``reductions``, ``save_members``, ``cluster_timeout`` and the grouped options
    ``execution``, ``storage``, ``output`` mean what they mean for
    ``particles.langevin_ensemble``.  Member ``k`` draws its noise only from ``(seed, k)``, so
    the dataset is bitwise the same for any chunking, on any cluster and serially.  The
    reductions (``"sigma"``, ``"free_energy"``, ``"spread"``) are over the singular values
    ``sigma`` and ``F_beta`` of the members that did not fail.

    Parameters
    ----------
    model : MatrixModel
        The model (``width``, ``depth``, ``beta``, ``energy``; ``describe()`` if it has one).
    X0 : array_like
        The start: one ``(d, d)`` matrix for all members or ``(members, d, d)``, finite and
        invertible with a finite energy.
    times : array_like
        Save times, 1-D, finite, >= 0, strictly increasing (in ``t``, or ``tau = N t`` if
        rescaled).
    members : int
        Number of trajectories, >= 1.
    dt : float
        The largest step, > 0.
    seed : int or None, default None
        Seed >= 0; None draws one (logged at INFO on ``dlnsim`` and stored; on resume the
        stored one).
    metropolis : bool, default False
        Metropolis-adjust every step against the exact stationary density
        ``exp(-F_beta / T) det(A_X)^{-1/2}`` (needs ``T > 0``).
    temperature : float or None, default None
        Noise temperature ``T >= 0``; None for ``1 / beta``.
    rescaled : bool or None, default None
        Whether ``times`` are in ``tau = N t`` (None: ``t``, or ``tau`` at ``N = inf``).
    execution, storage, output : Execution, Storage, Output or None
        Grouped options, as in ``particles.langevin_ensemble``.
    chunk_size, store, resume, client, scheduler, reductions, save_members
        As in ``particles.langevin_ensemble``.
    progress, overwrite, cluster_timeout
        As in ``particles.langevin_ensemble``.

    Returns
    -------
    xarray.Dataset
        ``X`` (``member, time, row, col``), ``sigma`` (``member, time, particle``,
        descending), ``energy`` and ``free_energy`` (``member, time``) unless
        ``save_members=False``; ``X0``, ``last_finite`` (``member, row, col``), ``failed``,
        ``failed_time``, ``accepted`` (accepted proposals, or steps without ``metropolis``),
        ``steps``; ``<name>_mean``, ``<name>_var``, ``<name>_count`` per reduction; the
        parameters, seed, scheme and provenance in ``attrs`` (``kind`` =
        ``network_langevin_ensemble``).  Lazy on the store when ``store`` is given.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument (``model``, ``X0``, ``times``,
        ``members``, ``dt``, ``seed``, ``metropolis``, ``temperature``, ``rescaled``,
        ``chunk_size``, ``store``, ...), a store of another kind or other parameters on
        ``resume``, or a run too large for memory; ``StoreError``/``StoreLocked`` as for the
        particles.
    TimeoutError
        When no worker or scheduler is reachable within ``cluster_timeout``.
    """
    execution, storage, output = options(locals())
    model = _check_model(model)
    members = check_integer(members, "members", 1)
    dt = check_positive(dt, "dt")
    times = check_times(times)
    if not float(times[-1]) / dt < 2.0**53:
        raise fail("dt", dt, f"gives more than 2^53 steps to t={times[-1]:g}")
    rescaled = _rescaled(model, rescaled)
    temp = _temperature(model, temperature)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and temp == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    starts = _check_starts(model, X0, members, temp)
    dynamics = Dynamics(model, starts, times, members, dt, temp, rescaled, metropolis, MATRIX)
    return run_ensemble(dynamics, seed, execution, storage, output)
