"""The entry point of the ensemble runner: ``langevin_ensemble`` and ``memory_estimate``.

``langevin_ensemble`` validates its arguments (the grouped options of ``options.py``, or the
flat keywords they replace), takes the store's lock, resolves the seed and the chunk size
(stored ones on resume), builds the ``Plan``, and ``_execute`` streams the chunks from the
executor (``executors.Where``) into the sink (``sinks.MemorySink`` or ``zarr_sink.ZarrSink``)
while the reduction trees (``tree.TreeSweep``) merge their nodes in member order.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import numbers
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from .. import store as _store
from ..baselines import DysonModel, MatrixVariant
from ..driver import check_seed
from ..model import Model
from ..validation import (
    check_bool,
    check_integer,
    check_memory,
    check_positive,
    check_singular_values,
    check_times,
    fail,
)
from .executors import Where, run_dask, run_in_process, scoped_timeout
from .options import UNSET, Execution, Output, Storage, field_names, group
from .plan import CHUNK_BYTES, PARTICLES, Plan, default_chunk_size
from .sinks import MemorySink, Sink
from .tree import TreeSweep
from .zarr_sink import ZarrSink, check_resume, stored_value

__all__ = ["Dynamics", "langevin_ensemble", "memory_estimate", "options", "run_ensemble"]

_log = logging.getLogger("dlnsim.ensemble")
_MAX_WARNINGS = 20
#: Frames from the warning calls below up to the caller of ``langevin_ensemble``.
_STACK = {"_summary": 6, "_warn_failures": 7}


class Dynamics(NamedTuple):
    """The validated arguments that fix the trajectories (besides the seed).

    Parameters
    ----------
    model : object
        The dynamics (``Model``, a baseline, or the layout's model).
    starts : numpy.ndarray
        ``(members, ...)`` one start per member (particles: ``(members, d)`` sorted rows).
    times : numpy.ndarray
        Save times.
    members : int
        Number of members.
    dt, temperature : float
        Step and noise temperature.
    rescaled, metropolis : bool
        Time ``tau = N t``; Metropolis-adjusted steps.
    layout : Layout or None, default None
        What a member's state is (``plan.Layout``); None for the particles.
    """

    model: Any
    starts: np.ndarray
    times: np.ndarray
    members: int
    dt: float
    temperature: float
    rescaled: bool
    metropolis: bool
    layout: Any = None


def langevin_ensemble(
    model: Model,
    sigma0: np.ndarray,
    times: np.ndarray,
    members: int,
    dt: float,
    seed: int | None = None,
    *,
    temperature: float | None = None,
    rescaled: bool | None = None,
    metropolis: bool = False,
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
    """Run ``members`` independent Langevin trajectories of ``model``, saved at ``times``.

    ``model``: a ``Model``, or a random-matrix baseline (``MatrixVariant``, ``DysonModel``),
    which runs on ``particles.baselines.simulate_baseline_members`` with the same seeding.

    ``sigma0``: one start ``(d,)`` for all members or one per member ``(members, d)`` (rows are
    sorted descending).  ``dt``: the engine's time step; ``times`` in ``t`` or, ``rescaled``,
    in ``tau = N t``.  ``seed``: an integer >= 0; without one a seed is drawn
    (``SeedSequence().entropy``), logged (INFO, logger ``dlnsim``) and stored.  ``temperature``:
    the noise temperature (default ``1/beta``).

    Result (dims ``member, time, particle``): ``sigma`` (with ``energy``, ``free_energy``) unless
    ``save_members=False``, ``sigma0``, ``reflections``, ``failed`` (0/1), ``failed_time``,
    ``last_finite``; for each name in ``reductions`` (``"sigma"``, ``"free_energy"``,
    ``"spread"`` = max - min sigma) ``<name>_mean``, ``<name>_var`` (sample variance, ddof=1)
    and ``<name>_count``, over the members that did not fail (see the module docstring: a fixed
    pairwise tree on member indices, bitwise reproducible for any chunking and cluster).
    Failed members (a non-finite state) are warned about, flagged and kept out of the
    reductions; the other members are unaffected.

    Where it runs: ``client`` (a ``distributed.Client``); else ``scheduler``: an address
    (``tcp://host:port``), ``"local"`` (start a ``LocalCluster`` for this call, one
    single-threaded process per core, see ``local_cluster``) or ``"serial"`` (in-process); else
    the active ``Client`` of this process; else ``$DASK_SCHEDULER_ADDRESS``; else in-process.
    In-process, the compiled pair sums run on every core (numba threads, ``numba.set_num_threads``
    lowers it; bitwise the same results for any number of threads), and no process is ever
    started: only ``scheduler="local"`` starts one (scripts using it need the ``if __name__ ==
    "__main__":`` guard).  ``chunk_size`` (members per task) defaults to 1-4 chunks per worker
    thread (1 in-process; fewer when chunks would hold under ``CHUNK_PAIR_WORK / d^2`` members),
    each chunk's ``sigma`` at most ``CHUNK_BYTES``; it does not change any value.

    ``store``: a ``.zarr`` path.  The store is laid out up front (every variable full size,
    NaN, chunked along ``member`` like the work chunks, ``chunk_done`` per chunk and the
    reduction tree nodes ``<name>_partial`` of each chunk); each finished chunk is written and
    then flagged done, so a killed run leaves a readable store.  ``resume=True`` finishes the
    chunks not done (the parameters must match the stored ones, else ValueError naming the
    first that differs; ``seed``/``chunk_size`` default to the stored ones; a missing store is
    started afresh).  An existing store without ``resume`` needs ``overwrite=True``.  The result
    is then opened lazily from the store.  ``progress``: tqdm bar over chunks (None: on a
    terminal only).  ``metropolis`` (baselines only): Metropolis-adjusted proximal steps, exact
    stationary law at any ``dt`` (``simulate_baseline_members``); adds ``accepted`` per member.

    Integrity (``particles/store.py``): each finished chunk's data are checksummed; ``resume``
    and the end of every run verify them and recompute damaged chunks (listed in the result's
    attribute ``repaired_chunks``); damage that cannot be repaired raises ``StoreError`` (a
    ``ValueError``).  A store has one writer at a time: a run holds the lock file
    ``<store>.lock`` and another run on the same store raises ``StoreLocked`` (a ``ValueError``)
    at once.  ``overwrite`` lays the new store out beside the old one and swaps it in.
    ``cluster_timeout`` (seconds): to connect to a scheduler, and how long a cluster may have
    no worker (or a scheduler may not answer) before the run stops with a ``TimeoutError``.

    Parameters
    ----------
    model : Model, MatrixVariant or DysonModel
        The dynamics.
    sigma0 : numpy.ndarray
        Start(s), shape ``(d,)`` or ``(members, d)``.
    times : numpy.ndarray
        Save times, 1-D, finite, >= 0, strictly increasing (in ``t``, or ``tau`` if rescaled).
    members : int
        Number of trajectories, >= 1.
    dt : float
        Engine time step, > 0.
    seed : int or None, default None
        Seed >= 0; None draws and records one.
    temperature : float or None, default None
        Noise temperature >= 0; None for ``1/beta``.
    rescaled : bool or None, default None
        Whether ``times`` are in ``tau = N t`` (None: the model's default).
    chunk_size : int or None, default None
        Members per task, >= 1; None for automatic.
    store : str or os.PathLike or None, default None
        A ``.zarr`` path; None keeps the result in memory.
    resume : bool, default False
        Finish an existing store's undone chunks.
    client : distributed.Client or None, default None
        Where to run.
    scheduler : str or None, default None
        An address, ``"local"`` or ``"serial"``.
    reductions : iterable of str or str, default ()
        Among ``"sigma"``, ``"free_energy"``, ``"spread"``.
    save_members : bool, default True
        Keep the per-member ``sigma`` trajectories.
    progress : bool or None, default None
        Show a progress bar (None: on a terminal only).
    overwrite : bool, default False
        Replace an existing store.
    metropolis : bool, default False
        Metropolis-adjusted steps (baselines only).
    cluster_timeout : float, default CLUSTER_TIMEOUT
        Seconds, > 0.
    execution : Execution or None, default None
        ``client``, ``scheduler``, ``chunk_size``, ``progress`` and ``cluster_timeout`` as one
        object (then none of these keywords may be given).
    storage : Storage or None, default None
        ``store``, ``resume`` and ``overwrite`` as one object (idem).
    output : Output or None, default None
        ``reductions`` and ``save_members`` as one object (idem).

    Returns
    -------
    xarray.Dataset
        The result described above (dims ``member, time, particle``), lazy on the store when
        ``store`` is given.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument (``model``, ``sigma0``, ``times``,
        ``members``, ``dt``, ``temperature``, ``chunk_size``, ``store``, ``resume``,
        ``client``, ``scheduler``, ``reductions``, ``save_members``, ``metropolis``, ...;
        a keyword given together with the options object that holds it),
        a stored parameter differing on ``resume``, a run too large for memory
        (``check_memory``); ``StoreError`` for irreparable damage and ``StoreLocked`` when
        another run holds the store (both ``ValueError``).
    TimeoutError
        When no worker or scheduler is reachable within ``cluster_timeout``.
    """
    execution, storage, output = options(locals())
    dynamics = _check_dynamics(model, sigma0, times, members, dt, temperature, rescaled, metropolis)
    return run_ensemble(dynamics, seed, execution, storage, output)


def options(flat: Mapping[str, Any]) -> tuple[Execution, Storage, Output]:
    """The grouped options from the keywords of a ``langevin_ensemble`` call.

    Parameters
    ----------
    flat : Mapping
        The call's arguments by name: ``execution``, ``storage``, ``output`` and the flat
        keywords they group (``UNSET`` where not given).

    Returns
    -------
    tuple
        ``(Execution, Storage, Output)``, validated.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid option or a keyword given with its group.
    """
    return tuple(  # type: ignore[return-value]
        group(kind, flat[name], name, {key: flat[key] for key in field_names(kind)})
        for kind, name in ((Execution, "execution"), (Storage, "storage"), (Output, "output"))
    )


def run_ensemble(
    dynamics: Dynamics, seed: object, execution: Execution, storage: Storage, output: Output
) -> xr.Dataset:
    """Run validated ``dynamics`` with the options (the body of ``langevin_ensemble``, shared
    with ``network.langevin_ensemble``): memory check, the store's lock, seed, chunk size,
    plan, execution.

    Parameters
    ----------
    dynamics : Dynamics
        The validated dynamics (its ``layout`` says what a state is).
    seed : int or None
        Seed >= 0, or None (stored one on resume, else drawn and logged).
    execution, storage, output : Execution, Storage, Output
        The grouped options (``options``).

    Returns
    -------
    xarray.Dataset
        The result (lazy on the store when there is one).

    Raises
    ------
    ValueError
        As ``langevin_ensemble``.
    """
    width, n_times, members = dynamics.model.width, dynamics.times.size, dynamics.members
    layout = dynamics.layout or PARTICLES
    check_memory(
        memory_estimate(members, n_times, width, execution.chunk_size, storage.path is not None,
                        state_size=layout.state_size(width)),
        *_size_name(members, width, n_times),
    )  # fmt: skip
    path = storage.path
    # the existence checks and everything after happen under the store's lock
    with _store.store_lock(path) if path is not None else contextlib.nullcontext():
        return _run(dynamics, seed, execution, storage.resuming(), path, output)


def _check_dynamics(
    model: object,
    sigma0: object,
    times: object,
    members: object,
    dt: object,
    temperature: object,
    rescaled: object,
    metropolis: object,
) -> Dynamics:
    """The arguments that fix the trajectories, validated (``bad <name>=...`` otherwise)."""
    if not isinstance(model, Model | DysonModel):
        raise fail("model", model, "must be a particles.Model (or MatrixVariant, DysonModel)")
    members = check_integer(members, "members", 1)
    dt = check_positive(dt, "dt")
    times = check_times(times)
    if not float(times[-1]) / dt < 2.0**53:  # the step count must be an exact integer
        steps = float(times[-1]) / dt
        raise fail("dt", dt, f"gives {steps:.3g} steps to t={times[-1]:g}, more than 2^53")
    rescaled = model.resolve_rescaled(rescaled)
    temperature = (
        1.0 / model.beta
        if temperature is None
        else check_positive(temperature, "temperature", allow_zero=True)
    )
    starts = _check_starts(model, sigma0, members)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and not isinstance(model, MatrixVariant | DysonModel):
        raise fail(
            "metropolis", metropolis, "is for the random-matrix baselines (MatrixVariant, Dyson)"
        )
    if metropolis and temperature == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    return Dynamics(model, starts, times, members, dt, temperature, rescaled, metropolis)


def _check_starts(model: Any, sigma0: object, members: int) -> np.ndarray:
    """``(members, d)`` starts, rows sorted descending (one start is broadcast)."""
    check_state = getattr(model, "check_state", None)  # Dyson: ordered, possibly negative
    if check_state is None:
        starts = check_singular_values(sigma0, model.width, "sigma0")
    else:
        starts = check_state(sigma0, "sigma0")
    if starts.ndim == 1:
        starts = np.broadcast_to(starts, (members, model.width))
    elif starts.ndim != 2 or starts.shape[0] != members:
        raise fail(
            "sigma0",
            starts.shape,
            f"must have shape ({model.width},) or ({members}, {model.width})",
        )
    return np.sort(starts, axis=-1)[:, ::-1].copy()


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise fail("seed", seed, "must be an integer >= 0 or None")
    return check_seed(seed)


def _resolve_seed(seed: object, path: Path | None, resuming: bool) -> int:
    """``seed``; on resume without one the stored seed; else a drawn one (logged)."""
    if resuming and seed is None:
        seed = stored_value(path, "seed")  # type: ignore[arg-type]
        seed = int(seed) if isinstance(seed, str) and seed.isdigit() else seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        _log.info("seed = %d (drawn; stored in the dataset's attrs)", seed)
    return _check_seed(seed)


def _stored_chunk_size(path: Path | None, resuming: bool) -> int | None:
    stored = stored_value(path, "chunk_size") if resuming else None  # type: ignore[arg-type]
    return stored if isinstance(stored, int) else None


def _run(
    dynamics: Dynamics,
    seed: object,
    execution: Execution,
    resuming: bool,
    path: Path | None,
    output: Output,
) -> xr.Dataset:
    """Resolve the seed and the chunk size, plan, and execute on the chosen executor."""
    seed = _resolve_seed(seed, path, resuming)
    chunk_size = execution.chunk_size or _stored_chunk_size(path, resuming)
    model, members, times = dynamics.model, dynamics.members, dynamics.times
    layout = dynamics.layout or PARTICLES
    with (
        scoped_timeout(execution.cluster_timeout),
        Where(execution.client, execution.scheduler) as where,
    ):
        if chunk_size is None:
            threads = where.get(members).threads
            width = layout.state_size(model.width)
            chunk_size = default_chunk_size(members, times.size, width, threads)
        plan = Plan(
            model, dynamics.starts, times, members, dynamics.dt, seed, dynamics.temperature,
            dynamics.rescaled, min(chunk_size, members), output.reductions,  # type: ignore[arg-type]
            output.save_members, dynamics.metropolis, layout=layout,
        )  # fmt: skip
        plan.attrs = plan.run_attrs()
        if resuming:
            check_resume(path, plan)  # type: ignore[arg-type]
        return _execute(plan, where, path, resuming, execution.progress)


def _size_name(members: int, width: int, n_times: int) -> tuple[str, str]:
    """The size to name in a memory error (the largest against its usual value) and all three."""
    name = max(
        (("members", members / 100), ("width", width / 4), ("save times", n_times / 51)),
        key=lambda item: item[1],
    )[0]
    return name, f"members={members}, width={width}, save times={n_times}"


def memory_estimate(
    members: int,
    n_times: int,
    width: int,
    chunk_size: object,
    store: bool,
    state_size: int | None = None,
) -> float:
    """Bytes a run holds at most: per-member arrays, the result in memory without a store, and
    a few copies of one chunk's trajectories (``CHUNK_BYTES`` when the chunk size is automatic).

    Parameters
    ----------
    members : int
        Number of members.
    n_times : int
        Number of save times.
    width : int
        Number of particles ``d``.
    chunk_size : object
        The ``chunk_size`` argument (a positive int, or anything else for automatic).
    store : bool
        Whether the result goes to a store (not held in memory).
    state_size : int or None, default None
        Numbers saved per member and time (``Layout.state_size``); None for ``width``.

    Returns
    -------
    float
        The estimate in bytes.
    """
    width = width if state_size is None else state_size
    per_member = 8.0 * (4 * width + 8)  # starts and their sorted copy, flags, failure records
    result = 0.0 if store else 8.0 * members * n_times * (width + 2)
    chunk = chunk_size if isinstance(chunk_size, int) and chunk_size > 0 else members
    block = min(8.0 * min(chunk, members) * n_times * (width + 2), 4.0 * CHUNK_BYTES)
    if isinstance(chunk_size, int) and chunk_size > 0:
        block = 8.0 * min(chunk_size, members) * n_times * (width + 2)
    return members * per_member + result + 3.0 * block


def _execute(
    plan: Plan, where: Where, path: Path | None, resuming: bool, progress: bool | None
) -> xr.Dataset:
    """Lay out the sink, run the chunks not done yet, reduce, finish the dataset."""
    runner: Any = None
    if not resuming:
        executor = where.get(plan.n_chunks)
        plan.attrs["executor"] = executor.description
        if executor.client is not None and plan.n_chunks > 0:
            # a fresh run on a cluster: the tasks go out before the store is laid out
            runner = run_dask(executor.client, plan, list(range(plan.n_chunks)))
    try:
        sink: Sink = MemorySink(plan) if path is None else ZarrSink(path, plan, not resuming)
        done, intact = sink.open()
        if intact:  # complete, and every chunk and reduction verifies
            return sink.dataset()
        sweeps = _sweeps(plan, sink, done)
        if runner is None:
            runner = where.run(plan, [c for c in range(plan.n_chunks) if c not in done])
        warned = _collect(plan, runner, sink, sweeps, len(done), progress)
    finally:
        if runner is not None:
            runner.close()  # cancels the remaining tasks at once on an error or Ctrl-C
    if sink.final_check(functools.partial(run_in_process, plan)):
        sweeps = _sweeps(plan, sink, range(plan.n_chunks))  # reduce again from the repaired store
    reduced = {name: sweep.finish() for name, sweep in sweeps.items()}
    sink.finish(reduced, _summary(plan, sink, warned))
    return sink.dataset()


def _sweeps(plan: Plan, sink: Sink, stored: Iterable[int]) -> dict[str, TreeSweep]:
    """One reduction tree per reduction, with the chunks ``stored`` in the sink."""
    sweeps = {name: TreeSweep(plan.n_chunks, sink.loader(name)) for name in plan.reductions}
    for sweep in sweeps.values():
        sweep.add_stored(stored)
    return sweeps


def _collect(
    plan: Plan,
    runner: Iterator[tuple[int, dict[str, Any]]],
    sink: Sink,
    sweeps: Mapping[str, TreeSweep],
    done: int,
    progress: bool | None,
) -> int:
    """Write each finished chunk to the sink and its nodes to the trees; the failures warned."""
    warned = 0
    hide = None if progress is None else not progress
    with tqdm(
        total=plan.n_chunks,
        initial=done,
        desc="langevin ensemble",
        unit="chunk",
        disable=hide,
        leave=False,
    ) as bar:
        for chunk, result in runner:
            sink.write(chunk, result)
            for name, sweep in sweeps.items():
                sweep.add(chunk, result["nodes"][name])
            warned = _warn_failures(plan, chunk, result, warned)
            bar.update(1)
    return warned


def _warn_failures(plan: Plan, chunk: int, result: Mapping[str, Any], warned: int) -> int:
    lo, _ = plan.bounds(chunk)
    for k in np.flatnonzero(~np.isnan(result["failed_time"])):
        warned += 1
        if warned <= _MAX_WARNINGS:
            warnings.warn(
                f"dlnsim: member {lo + k} failed at t = {result['failed_time'][k]:.6g}; last "
                f"finite state {np.array2string(result['last_finite'][k], precision=6)}",
                RuntimeWarning,
                stacklevel=_STACK["_warn_failures"],
            )
    return warned


def _summary(plan: Plan, sink: Sink, warned: int) -> dict[str, object]:
    """The final attributes: ``complete``, ``n_failed`` and the list of ``failures``."""
    failed, failed_time, last = sink.failures()
    bad = np.flatnonzero(failed == 1)
    if warned > _MAX_WARNINGS:
        warnings.warn(
            f"dlnsim: {bad.size} of {plan.members} members failed (see 'failed')",
            RuntimeWarning,
            stacklevel=_STACK["_summary"],
        )
    summary = "; ".join(
        f"member {k} at t={failed_time[k]:.6g}, last finite {np.array2string(last[k], precision=6)}"
        for k in bad[:50]
    )
    return {
        "complete": 1,
        "n_failed": int(bad.size),
        "failures": (summary + ("; ..." if bad.size > 50 else "")) or "none",
    }
