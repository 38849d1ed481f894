"""Langevin ensembles: many independent members, in chunks, on Dask, streamed to Zarr
(theory.md section 9).

``langevin_ensemble`` runs ``members`` independent copies of the Langevin dynamics of a
``Model`` with the engine ``particles.langevin.simulate_members``.  The members are cut into
chunks of ``chunk_size`` consecutive members; a chunk over all save times is the unit of work
(one task on a Dask cluster, or one call in-process) and of storage (one Zarr chunk along
``member``).

Seeds.  Member ``k`` draws from ``PCG64(SeedSequence(seed, spawn_key=(k,)))`` whatever chunk or
worker runs it, so its trajectory depends only on ``(model, sigma0[k], k, times, dt, seed,
temperature)``: the dataset is bitwise the same serially, on any cluster and with any chunking.

Reductions.  Ensemble means and sample variances over members are accumulated as
``(count, mean, M2)`` triples combined by Chan's pairwise update along ONE fixed binary tree on
the member indices ``0 .. members-1`` (the segment tree of ``[0, 2^L)``; empty subtrees are the
identity).  Every node's value depends only on its leaves, never on who computed it: a chunk
computes the nodes of its maximal aligned dyadic blocks, and the caller merges sibling nodes in
member order as chunks arrive.  The same floating-point operations on the same operands happen
whatever the chunking, the number of workers or the completion order, so the reductions are
bitwise reproducible too, and only ``O(log members)`` tree nodes (plus chunks that finished
out of order) are in memory at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import logging
import math
import numbers
import os
import re
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from . import store as _store
from .baselines import DysonModel, MatrixVariant
from .datasets import clean_attrs, trajectory_dataset, valid_states
from .model import Model
from .validation import (
    check_bool,
    check_integer,
    check_memory,
    check_positive,
    check_singular_values,
    check_times,
    fail,
)

__all__ = [
    "BIT_GENERATOR",
    "CHUNK_BYTES",
    "CHUNK_PAIR_WORK",
    "REDUCTIONS",
    "SEEDING_SCHEME",
    "langevin_ensemble",
    "local_cluster",
    "local_cluster_options",
]

REDUCTIONS = ("sigma", "free_energy", "spread")
SEEDING_SCHEME = "numpy SeedSequence(seed, spawn_key=(member,)) per member, PCG64"
BIT_GENERATOR = "PCG64"
#: Target size of one chunk's ``sigma`` block when ``chunk_size`` is chosen automatically.
CHUNK_BYTES = 64 * 2**20
#: Members per automatically sized chunk are at least ``CHUNK_PAIR_WORK / d^2`` (when the
#: workers stay busy): a few ms of pair sums per step and chunk.
CHUNK_PAIR_WORK = 2**22
#: Version of the Zarr store layout (checked on resume); 2 added the checksums (particles/store.py).
STORE_FORMAT = 2
_SERIAL = ("serial", "in-process")
_log = logging.getLogger("dlnsim.ensemble")
_HELD = threading.local()  # the stores whose lock this thread holds (particles/store.py)
#: Seconds to connect to a scheduler, and that a cluster may have no worker before a run gives up.
CLUSTER_TIMEOUT = 60.0
_TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar("timeout", default=CLUSTER_TIMEOUT)
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?(\[[0-9a-fA-F:.]+\]|[\w.-]+):\d{1,5}$")
_MAX_WARNINGS = 20
_STATS = ("count", "mean", "m2")
_log = logging.getLogger(__name__)

Stats = tuple[np.ndarray, np.ndarray, np.ndarray]  # count, mean, M2 (same shapes)
Node = tuple[int, int, Stats]  # level j, index k (covers [k 2^j, (k+1) 2^j)), stats


# --------------------------------------------------------------- reduction tree
def _combine(a: Stats, b: Stats) -> Stats:
    """Chan's update of ``(count, mean, M2)`` for the union of ``a`` (left) and ``b`` (right).

    An empty side (count 0) is the exact identity, so empty subtrees never change a value.
    """
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = mb - ma
        mean = ma + delta * (nb / n)
        m2 = sa + sb + (delta * delta) * (na * nb / n)
    left, right = na > 0, nb > 0
    both = left & right
    mean = np.where(both, mean, np.where(left, ma, mb))
    m2 = np.where(both, m2, np.where(left, sa, sb))
    return n, mean, m2


def _leaves(values: np.ndarray, use: np.ndarray) -> Stats:
    """One leaf per member: ``(1, x, 0)`` where ``x`` is finite and the member used, else empty."""
    valid = np.isfinite(values) & use.reshape(use.shape + (1,) * (values.ndim - 1))
    count = valid.astype(np.float64)
    return count, np.where(valid, values, 0.0), np.zeros_like(count)


def _dyadic_blocks(start: int, stop: int) -> list[tuple[int, int]]:
    """The maximal aligned dyadic blocks ``(level, index)`` covering ``[start, stop)`` in order."""
    out = []
    while start < stop:
        level = (stop - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        out.append((level, start >> level))
        start += 1 << level
    return out


def _chunk_nodes(values: np.ndarray, use: np.ndarray, first: int) -> list[Node]:
    """Tree nodes of the members ``first .. first+len(values)-1`` (pairwise, level by level)."""
    count, mean, m2 = _leaves(values, use)
    nodes = []
    for level, index in _dyadic_blocks(first, first + len(values)):
        block = slice((index << level) - first, ((index + 1) << level) - first)
        stats: Stats = (count[block], mean[block], m2[block])
        while stats[0].shape[0] > 1:
            stats = _combine(
                tuple(s[0::2] for s in stats),  # type: ignore[arg-type]
                tuple(s[1::2] for s in stats),  # type: ignore[arg-type]
            )
        nodes.append((level, index, tuple(np.ascontiguousarray(s[0]) for s in stats)))
    return nodes  # type: ignore[return-value]


class _TreeSweep:
    """Merges the chunks' tree nodes in member order; chunks may arrive in any order."""

    def __init__(self, n_chunks: int, load: Callable[[int], list[Node]] | None = None) -> None:
        self.n_chunks = n_chunks
        self.next = 0
        self.ready: dict[int, list[Node]] = {}
        self.stored: set[int] = set()
        self.load = load
        self.stack: list[Node] = []

    def add(self, chunk: int, nodes: list[Node]) -> None:
        self.ready[chunk] = nodes
        self._advance()

    def add_stored(self, chunks: Iterable[int]) -> None:
        """Chunks whose nodes are on disk: read when the sweep reaches them."""
        self.stored.update(chunks)
        self._advance()

    def _advance(self) -> None:
        while self.next < self.n_chunks:
            if self.next in self.ready:
                nodes = self.ready.pop(self.next)
            elif self.next in self.stored and self.load is not None:
                nodes = self.load(self.next)
            else:
                return
            for node in nodes:
                self._push(node)
            self.next += 1

    def _push(self, node: Node) -> None:
        level, index, stats = node
        while self.stack and index % 2 == 1:
            top_level, top_index, top_stats = self.stack[-1]
            if top_level != level or top_index != index - 1:
                break
            self.stack.pop()
            stats = _combine(top_stats, stats)
            level, index = level + 1, index // 2
        self.stack.append((level, index, stats))

    def result(self) -> Stats:
        """The root of the tree (right-to-left fold of the remaining maximal blocks)."""
        if self.next < self.n_chunks or not self.stack:
            raise RuntimeError("the reduction tree is incomplete")
        acc = self.stack[-1][2]
        for _, _, stats in reversed(self.stack[:-1]):
            acc = _combine(stats, acc)
        return acc


def _finish(stats: Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, sample variance (ddof=1), count)``; NaN where there are too few members."""
    count, mean, m2 = stats
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(count > 1, m2 / (count - 1.0), np.nan)
    return np.where(count > 0, mean, np.nan), var, count.astype(np.int64)


# ------------------------------------------------------------------ one chunk
def _energies(model: Model, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E`` and ``F_beta`` per state, NaN where ``sigma`` is not finite (as trajectory_dataset)."""
    finite = valid_states(model, sigma)
    safe = np.where(finite[..., None], sigma, 1.0)
    with np.errstate(all="ignore"):
        energy = np.where(finite, model.energy(safe), np.nan)
        free = np.where(finite, model.free_energy(safe), np.nan)
    return energy, free


def _run_chunk(
    model: Model,
    starts: np.ndarray,
    first: int,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float,
    rescaled: bool,
    reductions: tuple[str, ...],
    save_members: bool,
    metropolis: bool = False,
) -> dict[str, Any]:
    """Simulate members ``first .. first+len(starts)-1``; their saved fields and tree nodes."""
    from .baselines import simulate_baseline_members
    from .langevin import simulate_members

    members = np.arange(first, first + len(starts), dtype=np.int64)
    if isinstance(model, MatrixVariant | DysonModel):
        engine, extra = simulate_baseline_members, {"metropolis": metropolis}
    else:
        engine, extra = simulate_members, {}
    block = engine(
        model, starts, members, times, dt, seed, temperature=temperature, rescaled=rescaled, **extra
    )
    sigma = np.asarray(block.sigma, dtype=np.float64)
    failed_time = np.asarray(block.failed_time, dtype=np.float64)
    out: dict[str, Any] = {
        "reflections": np.asarray(block.reflections, dtype=np.int64),
        **({"accepted": np.asarray(block.accepted, dtype=np.int64)} if metropolis else {}),
        "failed_time": failed_time,
        "last_finite": np.asarray(block.last_finite, dtype=np.float64),
        "nodes": {},
    }
    energy = free = None
    if save_members or "free_energy" in reductions:
        energy, free = _energies(model, sigma)
    if save_members:
        out.update(sigma=sigma, energy=energy, free_energy=free)
    use = np.isnan(failed_time)
    for name in reductions:
        if name == "sigma":
            values = sigma
        elif name == "free_energy":
            values = free
        else:
            values = np.max(sigma, axis=-1) - np.min(sigma, axis=-1)
        out["nodes"][name] = _chunk_nodes(values, use, first)
    return out


# ------------------------------------------------------------------ the plan
@dataclass
class _Plan:
    """Everything fixed before the first chunk runs."""

    model: Model
    starts: np.ndarray  # (members, d), rows sorted descending
    times: np.ndarray
    members: int
    dt: float
    seed: int
    temperature: float
    rescaled: bool
    chunk_size: int
    reductions: tuple[str, ...]
    save_members: bool
    metropolis: bool = False
    attrs: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return -(-self.members // self.chunk_size)

    def bounds(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.members)

    @property
    def slots(self) -> int:
        """Most tree nodes any chunk produces (the second axis of the stored partials)."""
        return max(len(_dyadic_blocks(*self.bounds(c))) for c in range(self.n_chunks))

    def task(self, chunk: int) -> dict[str, Any]:
        lo, hi = self.bounds(chunk)
        return {
            "model": self.model,
            "starts": np.ascontiguousarray(self.starts[lo:hi]),
            "first": lo,
            "times": self.times,
            "dt": self.dt,
            "seed": self.seed,
            "temperature": self.temperature,
            "rescaled": self.rescaled,
            "reductions": self.reductions,
            "save_members": self.save_members,
            "metropolis": self.metropolis,
        }

    def reduced_dims(self, name: str) -> tuple[str, ...]:
        return ("time", "particle") if name == "sigma" else ("time",)

    @cached_property
    def base(self) -> xr.Dataset:
        """A one-member trajectory_dataset: the layout and provenance every result shares."""
        return trajectory_dataset(
            np.broadcast_to(self.starts[0], (1, self.times.size, self.model.width)),
            self.times,
            self.model,
            rescaled=self.rescaled,
        )

    def schema(self) -> dict[str, tuple[tuple[str, ...], Any, Any, dict[str, str]]]:
        """``name -> (dims, dtype, fill, attrs)`` of every result variable."""
        base = self.base
        f8, i8 = np.float64, np.int64
        out: dict[str, tuple[tuple[str, ...], Any, Any, dict[str, str]]] = {}
        if self.save_members:
            for name in ("sigma", "energy", "free_energy"):
                out[name] = (base[name].dims, f8, np.nan, dict(base[name].attrs))
        out["sigma0"] = (
            ("member", "particle"),
            f8,
            np.nan,
            {"long_name": "initial singular values (sorted descending)", "units": "1"},
        )
        out["reflections"] = (
            ("member",),
            i8,
            -1,
            {"long_name": "reflections at u = 0 (-1 = not computed yet)"},
        )
        if self.metropolis:
            out["accepted"] = (
                ("member",),
                i8,
                -1,
                {"long_name": "accepted Metropolis proposals (-1 = not computed yet)"},
            )
        out["failed"] = (
            ("member",),
            np.int8,
            -1,
            {
                "long_name": "member failed (reached a non-finite state)",
                "flag_values": np.array([-1, 0, 1], dtype=np.int8),
                "flag_meanings": "not_computed_yet ok failed",
            },
        )
        out["failed_time"] = (
            ("member",),
            f8,
            np.nan,
            {"long_name": "time of the first non-finite state (NaN if none)", "units": "1"},
        )
        out["last_finite"] = (
            ("member", "particle"),
            f8,
            np.nan,
            {"long_name": "last finite state (the final state if the member did not fail)"},
        )
        labels = {
            "sigma": "sorted singular value",
            "free_energy": "free energy F_beta",
            "spread": "spread max sigma - min sigma",
        }
        for name in self.reductions:
            dims = self.reduced_dims(name)
            what = labels[name]
            out[f"{name}_mean"] = (dims, f8, np.nan, {"long_name": f"ensemble mean of the {what}"})
            out[f"{name}_var"] = (
                dims,
                f8,
                np.nan,
                {"long_name": f"ensemble sample variance (ddof=1) of the {what}"},
            )
            out[f"{name}_count"] = (
                dims,
                i8,
                -1,
                {"long_name": f"members in the {name} reductions (finite, not failed)"},
            )
        return out

    def coords(self) -> dict[str, Any]:
        base = self.base
        return {
            "member": ("member", np.arange(self.members), dict(base.member.attrs)),
            "time": ("time", self.times, dict(base.time.attrs)),
            "particle": ("particle", base.particle.values, dict(base.particle.attrs)),
        }

    def dataset_attrs(self, extra: Mapping[str, object]) -> dict[str, str | int | float]:
        attrs = dict(self.base.attrs)
        attrs.update(self.attrs)
        attrs.update(extra)
        return clean_attrs(attrs)


# ------------------------------------------------------------------ execution
def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _active_client() -> Any | None:
    """The running default ``distributed.Client`` of this process, if any."""
    if "distributed" not in sys.modules:
        return None  # no client can exist before distributed is imported
    import distributed

    try:
        client = distributed.get_client()
    except ValueError:
        return None
    return client if getattr(client, "status", "") == "running" else None


def _client_threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a scheduler that cannot answer yet
        return 1


@dataclass
class _Executor:
    """Where the chunks run: ``client=None`` is in-process (``threads=0``)."""

    client: Any | None
    description: str
    threads: int
    owned: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for obj in reversed(self.owned):
            with contextlib.suppress(Exception):
                obj.close()
        self.owned.clear()


def _connect(address: str, name: str = "scheduler") -> _Executor:
    from distributed import Client

    if not _ADDRESS.match(address.strip()):  # else distributed hangs, then fails in __del__
        raise fail(name, address, "must be 'local', 'serial' or an address tcp://HOST:PORT")
    try:
        client = Client(address.strip(), set_as_default=False, timeout=_TIMEOUT.get())
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise fail(name, address, f"cannot connect: {err}") from None
    return _Executor(client, f"dask scheduler {address}", _client_threads(client), [client])


_CLUSTER_OPTIONS: contextvars.ContextVar[Mapping[str, int] | None] = contextvars.ContextVar(
    "dlnsim_local_cluster_options", default=None
)


@contextlib.contextmanager
def local_cluster_options(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    logs: int | None = None,
) -> Iterator[None]:
    """Within the ``with`` block, ``local_cluster`` (so ``scheduler="local"`` and the ensemble
    experiments of ``dlnsim run``) starts its clusters with these options (``None``: keep the
    default).  This is how the CLI's ``--n-workers``, ``--threads-per-worker`` and ``-v`` reach
    the clusters it starts, only once there is work for them.

    Parameters
    ----------
    n_workers, threads_per_worker, logs
        As in ``local_cluster``.

    Returns
    -------
    contextlib.AbstractContextManager
        A context manager (the generator wrapped by ``contextlib.contextmanager``); entering
        it yields None.

    Raises
    ------
    ValueError
        For the arguments ``local_cluster`` would reject.
    """
    options = {
        k: v
        for k, v in (
            ("n_workers", n_workers),
            ("threads_per_worker", threads_per_worker),
            ("logs", logs),
        )
        if v is not None
    }
    _check_cluster_options(options)
    token = _CLUSTER_OPTIONS.set({**(_CLUSTER_OPTIONS.get() or {}), **options})
    try:
        yield
    finally:
        _CLUSTER_OPTIONS.reset(token)


def _check_cluster_options(options: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for name in ("n_workers", "threads_per_worker"):
        if name in options:
            out[name] = check_integer(options[name], name, 1)
    if "logs" in options:
        logs = options["logs"]
        if isinstance(logs, bool) or not isinstance(logs, int) or logs < 0:
            raise fail("logs", logs, "must be a logging level (e.g. logging.INFO)")
        out["logs"] = logs
    return out


def local_cluster(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    *,
    logs: int | None = None,
) -> Any:
    """Start a Dask ``LocalCluster`` configured for the engine and return a client to it.

    This is the only place where dlnsim starts processes, and it is only called on request:
    ``langevin_ensemble(..., scheduler="local")``, ``dlnsim ensemble`` and ``dlnsim run`` (the
    CLI's default), or directly by the user.  A script that starts a cluster needs the
    ``if __name__ == "__main__":`` guard (the worker processes import the main module).

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: one per core available to this process).
    threads_per_worker : int, optional
        Threads per worker process, each running one chunk of members at a time (default 1).
    logs : int, optional
        Level of the cluster's own infrastructure logs (``distributed``'s loggers in the
        scheduler and the workers); default ``logging.CRITICAL`` (silent), ``logging.INFO``
        shows them (``dlnsim -v``).

    Options left at ``None`` come from an enclosing ``local_cluster_options`` block, else the
    defaults above.

    Returns
    -------
    distributed.Client
        A client that owns the cluster: ``client.close()`` (or leaving ``with local_cluster()
        as client:``) shuts the cluster down.  It is not set as the default client: pass it on
        as ``langevin_ensemble(..., client=client)``.  ``client.dashboard_link`` is the URL of
        the Dask dashboard (also logged at INFO on the ``dlnsim`` logger).

    Raises
    ------
    ValueError
        If ``n_workers`` or ``threads_per_worker`` is not an integer >= 1, or ``logs`` is not a
        logging level.
    """
    given = {"n_workers": n_workers, "threads_per_worker": threads_per_worker, "logs": logs}
    options = {"n_workers": _cores(), "threads_per_worker": 1, "logs": logging.CRITICAL}
    options.update(_CLUSTER_OPTIONS.get() or {})
    options.update(_check_cluster_options({k: v for k, v in given.items() if v is not None}))
    n_workers, threads_per_worker = options["n_workers"], options["threads_per_worker"]
    import dask
    from distributed import Client

    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 (against memory creep of generic
    # workloads); glibc then also fixes the mmap threshold, and the engine's task thread paid
    # 10-30% for it (benchmarks/bench_langevin.py, case A).  The engine allocates nothing per
    # step, so its workers keep glibc's adaptive defaults.
    trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    # The workers' statistical profiler samples the task thread's stack every 10 ms under the
    # GIL; the engine's step loop runs Python between its compiled calls, so each sample stalls
    # it (paired runs, case A: 91% of the bare engine with it, 94-109% without).
    profile = "distributed.worker.profile.enabled"
    with dask.config.set({trim: None, profile: False}):
        # the client starts the cluster and so owns it (closing the client closes it)
        client = Client(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            # the cluster's own infrastructure logs (e.g. a worker's heartbeat racing the
            # scheduler's shutdown, with a traceback) stay out of the caller's stderr unless
            # asked for; errors of our tasks still reach the caller through their futures
            silence_logs=options["logs"],
            set_as_default=False,
        )
    _log.info(
        "started a dask LocalCluster: %d worker processes x %d threads; dashboard %s",
        n_workers,
        threads_per_worker,
        client.dashboard_link,
    )
    return client


def _local_executor(n_chunks_hint: int) -> _Executor:
    """A LocalCluster for one call: ``local_cluster``'s options, by default a single-threaded
    worker per core but no more workers than chunks."""
    options = _CLUSTER_OPTIONS.get() or {}
    n_workers = options.get("n_workers", max(1, min(_cores(), n_chunks_hint)))
    threads = n_workers * options.get("threads_per_worker", 1)
    client = local_cluster(n_workers)
    description = f"dask LocalCluster, {n_workers} worker processes, {threads} threads"
    return _Executor(client, description, threads, [client])


def _choose_executor(client: Any | None, scheduler: str | None, n_chunks_hint: int) -> _Executor:
    """Given client > ``scheduler`` > active client > DASK_SCHEDULER_ADDRESS > in-process.

    Nothing here starts a process unless asked to by ``scheduler="local"``."""
    if client is not None:
        return _Executor(client, f"dask client {client.scheduler.address}", _client_threads(client))
    if scheduler in _SERIAL:
        return _Executor(None, "in-process", 0)
    if scheduler == "local":
        return _local_executor(n_chunks_hint)
    if scheduler is not None:
        return _connect(scheduler)
    active = _active_client()
    if active is not None:
        return _Executor(active, f"dask client {active.scheduler.address}", _client_threads(active))
    address = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if address:
        return _connect(address, "DASK_SCHEDULER_ADDRESS")
    return _Executor(None, "in-process", 0)


def _run_serial(plan: _Plan, chunks: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    for chunk in chunks:
        yield chunk, _run_chunk(**plan.task(chunk))


def _run_dask(client: Any, plan: _Plan, chunks: list[int]) -> _DaskResults:
    """One task per chunk (``retries=2``), submitted at once (the workers start while the caller
    lays out the store); results in order of completion.  Closing the iterator, even before
    the first result, cancels the tasks not yet collected."""

    token = uuid.uuid4().hex[:12]
    futures = {}
    for chunk in chunks:
        future = client.submit(
            _run_chunk,
            **plan.task(chunk),
            key=f"dlnsim-langevin-{token}-{chunk}",
            retries=2,
            priority=-chunk,
            pure=False,
        )
        futures[future] = chunk
    return _DaskResults(client, futures)


class _DaskResults:
    """Iterator over submitted chunk futures in order of completion; ``close`` cancels the rest.

    While it waits it checks the cluster once a second: a scheduler that stops answering, or
    no worker for the cluster timeout (``cluster_timeout``), ends the wait with a TimeoutError
    that says what to do."""

    def __init__(self, client: Any, futures: dict[Any, int]) -> None:
        from distributed import as_completed

        self.client = client
        self.futures = futures
        self.completed = as_completed(list(futures), loop=client.loop)
        self.timeout = _TIMEOUT.get()
        self.next_check = 0.0
        self.idle_since: float | None = None

    def __iter__(self) -> _DaskResults:
        return self

    def _watch(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + 1.0
        address = getattr(self.client.scheduler, "address", "?")
        try:
            workers = len(self.client.nthreads())
        except Exception as err:  # noqa: BLE001 - any failure to reach the scheduler
            raise TimeoutError(
                f"lost the Dask scheduler {address} ({type(err).__name__}: {err}); finished "
                "chunks are kept in the store: rerun with --resume"
            ) from None
        if workers:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        elif now - self.idle_since >= self.timeout:
            raise TimeoutError(
                f"the Dask cluster {address} has had no worker for {self.timeout:g} s with "
                f"{len(self.futures)} chunks to do: start workers (dask worker {address}) or run "
                "with --scheduler local or serial; finished chunks are kept in the store: rerun "
                "with --resume"
            )

    def __next__(self) -> tuple[int, dict[str, Any]]:
        while not self.completed.has_ready() and not self.completed.is_empty():
            self._watch()
            time.sleep(0.05)
        future = next(self.completed)
        chunk = self.futures.pop(future)
        result = future.result()
        future.release()
        return chunk, result

    def close(self) -> None:
        if self.futures:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self.futures))
            self.futures = {}


# ------------------------------------------------------------------ storage
class _MemorySink:
    """Collects the chunks into numpy arrays (no store)."""

    def __init__(self, plan: _Plan, schema: Mapping[str, Any]) -> None:
        self.plan = plan
        self.arrays: dict[str, np.ndarray] = {}
        sizes = {"member": plan.members, "time": plan.times.size, "particle": plan.model.width}
        for name, (dims, dtype, fill, _) in schema.items():
            self.arrays[name] = np.full(tuple(sizes[d] for d in dims), fill, dtype=dtype)
        self.arrays["sigma0"][...] = plan.starts

    def done(self) -> set[int]:
        return set()

    def write(self, chunk: int, result: Mapping[str, Any]) -> None:
        lo, hi = self.plan.bounds(chunk)
        for name, values in _member_fields(result):
            self.arrays[name][lo:hi] = values

    def finish(self, reduced: Mapping[str, tuple[np.ndarray, ...]], attrs: Mapping) -> None:
        _fill_reductions(self.arrays, reduced)
        self.attrs = attrs

    def dataset(self, schema: Mapping[str, Any]) -> xr.Dataset:
        data = {
            name: (dims, self.arrays[name], attrs) for name, (dims, _, _, attrs) in schema.items()
        }
        return xr.Dataset(data, coords=self.plan.coords(), attrs=dict(self.attrs))


def _member_fields(result: Mapping[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
    names = ("sigma", "energy", "free_energy", "reflections", "accepted")
    for name in (*names, "failed_time", "last_finite"):
        if name in result:
            yield name, result[name]
    yield "failed", (~np.isnan(result["failed_time"])).astype(np.int8)


def _fill_reductions(arrays: dict[str, np.ndarray], reduced: Mapping[str, tuple]) -> None:
    for name, (mean, var, count) in reduced.items():
        arrays[f"{name}_mean"][...] = mean
        arrays[f"{name}_var"][...] = var
        arrays[f"{name}_count"][...] = count


def _chunk_arrays(plan: _Plan) -> list[str]:
    """The arrays a finished chunk writes, in the order of their checksums in ``chunk_sha256``."""
    names = ["sigma", "energy", "free_energy"] if plan.save_members else []
    names += ["reflections", *(["accepted"] if plan.metropolis else [])]
    names += ["failed_time", "last_finite", "failed"]
    return names + [f"{name}_partial" for name in plan.reductions]


class _ZarrSink:
    """Streams the chunks into a Zarr store laid out up front (see ``langevin_ensemble``).

    Each finished chunk's checksums are recorded before its ``chunk_done`` flag; an opened store
    is verified (``particles/store.py``) and its damaged chunks unflagged, to be run again.
    """

    def __init__(self, path: Path, plan: _Plan, schema: Mapping[str, Any], create: bool) -> None:
        self.path = path
        self.plan = plan
        self.repaired: list[int] = []  # chunks found damaged and recomputed by this run
        if create:  # laid out beside, then swapped in: never a half-made store at ``path``
            scratch = _store.scratch_path(path)
            try:
                self._create(schema, scratch)
                _store.swap_in(scratch, path)
            except BaseException:
                _store.remove_scratch(scratch)
                raise
        self.root = _store.open_root(path, mode="r+")
        self.names = _chunk_arrays(plan)

    def verify(self) -> tuple[set[int], bool]:
        """On resume: the verified done chunks, and whether the finished reductions verify.

        Missing arrays or unreadable metadata raise ``StoreError``; damaged coordinates are
        rewritten from the parameters; damaged chunks are unflagged (to be recomputed) and
        logged."""
        root, plan = self.root, self.plan
        _store.check_structure(root, self.path, plan.reductions)
        layout = _store.verify_layout(root)
        if layout:
            _log.warning("dlnsim: %s: rewriting damaged %s", self.path, ", ".join(layout))
            coords = plan.coords()
            coords["chunk"] = ("chunk", np.arange(plan.n_chunks), {})
            for name in layout:
                root[name][...] = plan.starts if name == "sigma0" else coords[name][1]
        done, unreadable = _store.flagged_chunks(root, plan.n_chunks)
        damage = {**unreadable, **_store.verify_chunks(root, sorted(done))}
        complete = int(root.attrs.get("complete", 0)) == 1
        reductions_ok = complete and (not plan.reductions or _store.verify_reductions(root))
        if damage or (complete and not reductions_ok):
            root.attrs["complete"] = 0
        self._unflag(damage)
        return done - set(damage), reductions_ok and not damage

    def _unflag(self, damage: Mapping[int, str]) -> None:
        for chunk, why in sorted(damage.items()):
            lo, hi = self.plan.bounds(chunk)
            _log.warning(
                "dlnsim: %s: chunk %d (members %d-%d) is damaged (%s); recomputing it from its "
                "seeds",
                self.path, chunk, lo, hi - 1, why,
            )  # fmt: skip
            self.root["chunk_done"][chunk] = 0
            self.repaired.append(chunk)

    def final_check(self) -> bool:
        """Verify every chunk once all are written; recompute (in-process) those that do not
        verify.  True if any chunk was rewritten; ``StoreError`` if rewriting does not help."""
        plan, rewrote = self.plan, False
        for _attempt in range(2):
            done, unreadable = _store.flagged_chunks(self.root, plan.n_chunks)
            damage = {c: "not flagged done" for c in range(plan.n_chunks) if c not in done}
            damage.update(unreadable)
            damage.update(_store.verify_chunks(self.root, sorted(done)))
            if not damage:
                return rewrote
            self._unflag(damage)
            for chunk in sorted(damage):
                self.write(chunk, _run_chunk(**plan.task(chunk)))
            rewrote = True
        damage = _store.verify_chunks(self.root, range(plan.n_chunks))
        if damage:
            raise _store.StoreError(
                f"bad store={str(self.path)!r}: chunks {sorted(damage)} still differ from their "
                "checksums after being rewritten; the storage does not keep what is written to it"
            )
        return rewrote

    def _create(self, schema: Mapping[str, Any], target: Path) -> None:
        import dask.array as da

        plan = self.plan
        sizes = {
            "member": plan.members,
            "time": plan.times.size,
            "particle": plan.model.width,
            "chunk": plan.n_chunks,
            "slot": plan.slots,
            "stat": len(_STATS),
        }
        data, encoding = {}, {}
        for name, (dims, dtype, fill, attrs) in schema.items():
            shape = tuple(sizes[d] for d in dims)
            chunks = tuple(plan.chunk_size if d == "member" else sizes[d] for d in dims)
            if name == "sigma0":
                values: Any = plan.starts
            elif isinstance(fill, float) and math.isnan(fill):
                values = da.full(shape, np.nan, dtype=dtype, chunks=chunks)  # never written
            else:
                values = np.full(shape, fill, dtype=dtype)
            data[name] = (dims, values, attrs)
            encoding[name] = {"chunks": chunks}
        data["chunk_done"] = (
            ("chunk",),
            np.zeros(plan.n_chunks, dtype=np.int8),
            {"long_name": "1 = this chunk of members is complete on disk"},
        )
        encoding["chunk_done"] = {"chunks": (1,)}
        data["chunk_sha256"] = (
            ("chunk", "chunk_array", "sha256_byte"),
            np.zeros((plan.n_chunks, len(_chunk_arrays(plan)), 32), dtype=np.uint8),
            {"long_name": "SHA-256 of each finished chunk's data per array (chunk_hash_arrays)"},
        )
        encoding["chunk_sha256"] = {"chunks": (1, len(_chunk_arrays(plan)), 32)}
        for name in plan.reductions:
            dims = ("chunk", "slot", "stat", *plan.reduced_dims(name))
            shape = tuple(sizes[d] for d in dims)
            chunks = (1, *shape[1:])
            data[f"{name}_partial"] = (
                dims,
                da.full(shape, np.nan, chunks=chunks),
                {"long_name": f"per-chunk reduction tree nodes of {name} (count, mean, M2)"},
            )
            encoding[f"{name}_partial"] = {"chunks": chunks}
        coords = plan.coords()
        coords["chunk"] = ("chunk", np.arange(plan.n_chunks), {"long_name": "chunk of members"})
        coords["stat"] = (
            "stat",
            np.arange(len(_STATS), dtype=np.int8),
            {
                "long_name": "reduction statistic",
                "flag_values": np.arange(len(_STATS), dtype=np.int8),
                "flag_meanings": " ".join(_STATS),
            },
        )
        attrs = plan.dataset_attrs({"complete": 0, "n_failed": -1, "failures": "unknown"})
        ds = xr.Dataset(data, coords=coords, attrs=attrs)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.to_zarr(target, mode="w", compute=False, consolidated=False, encoding=encoding)

    def done(self) -> set[int]:
        return {int(c) for c in np.flatnonzero(self.root["chunk_done"][:] == 1)}

    def write(self, chunk: int, result: Mapping[str, Any]) -> None:
        lo, hi = self.plan.bounds(chunk)
        fields = dict(_member_fields(result))
        digests = []
        for name in self.names:
            array = self.root[name]
            if name.endswith("_partial"):  # the whole row: unused slots NaN
                nodes = result["nodes"][name[: -len("_partial")]]
                values = np.full(array.shape[1:], np.nan)
                values[: len(nodes)] = np.stack([np.stack(stats) for _, _, stats in nodes])
            else:
                values = np.asarray(fields[name], dtype=array.dtype)
            array[_store.chunk_region(name, chunk, lo, hi)] = values
            digests.append(np.frombuffer(_store.digest(name, values), dtype=np.uint8))
        self.root["chunk_sha256"][chunk] = np.stack(digests)  # then the flag: the chunk counts
        self.root["chunk_done"][chunk] = 1  # only once its data and checksums are on disk

    def load_nodes(self, name: str) -> Callable[[int], list[Node]]:
        def load(chunk: int) -> list[Node]:
            blocks = _dyadic_blocks(*self.plan.bounds(chunk))
            stored = self.root[f"{name}_partial"][chunk, : len(blocks)]
            return [(lv, ix, tuple(stored[k])) for k, (lv, ix) in enumerate(blocks)]

        return load

    def finish(self, reduced: Mapping[str, tuple[np.ndarray, ...]], attrs: Mapping) -> None:
        """Write the reductions, then their checksum with ``complete = 1`` (the partials stay:
        they let a later ``--resume`` repair the reductions without rerunning the members)."""
        written = []
        for name, values in reduced.items():
            for stat, value in zip(("mean", "var", "count"), values, strict=True):
                array = self.root[f"{name}_{stat}"]
                value = np.asarray(value, dtype=array.dtype)
                array[...] = value
                written.append((f"{name}_{stat}", value))
        self.root.attrs.update({**attrs, "reductions_sha256": _store.reductions_digest(written)})

    def failures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            self.root["failed"][:],
            self.root["failed_time"][:],
            self.root["last_finite"][:],
        )

    def dataset(self, schema: Mapping[str, Any]) -> xr.Dataset:
        """The result, opened lazily from the store (without the bookkeeping variables);
        ``repaired_chunks`` (not stored) lists the damaged chunks this run recomputed."""
        ds = xr.open_zarr(self.path, consolidated=False)
        ds = ds[[name for name in schema if name in ds]]
        ds.attrs["repaired_chunks"] = ", ".join(map(str, sorted(set(self.repaired)))) or "none"
        return ds


# ------------------------------------------------------------------ arguments
def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise fail("seed", seed, "must be an integer >= 0 or None")
    return int(seed)


def _check_reductions(reductions: object) -> tuple[str, ...]:
    if reductions is None:
        return ()
    items = reductions.split(",") if isinstance(reductions, str) else reductions
    try:
        names = [str(x).strip() if isinstance(x, str) else x for x in items]  # type: ignore[union-attr]
    except TypeError:
        raise fail("reductions", reductions, f"must be a subset of {REDUCTIONS}") from None
    names = [n for n in names if n != ""]
    bad = [n for n in names if n not in REDUCTIONS]
    if bad:
        raise fail("reductions", reductions, f"unknown {bad}; choose from {', '.join(REDUCTIONS)}")
    return tuple(n for n in REDUCTIONS if n in names)


def _check_store(store: object) -> Path | None:
    if store is None:
        return None
    if not isinstance(store, str | os.PathLike) or not str(store).strip():
        raise fail("store", store, "must be a path ending in .zarr")
    path = Path(store)
    if not path.name.lower().endswith(".zarr"):
        raise fail("store", str(store), "must be a path ending in .zarr")
    return path


def _default_chunk_size(members: int, n_times: int, width: int, threads: int) -> int:
    """``k`` chunks per worker thread (1 in-process: ``threads=0``), ``k`` from 1 to 4 as large
    as keeps at least ``CHUNK_PAIR_WORK / d^2`` members per chunk (a step of a chunk costs a
    fixed ~30 us of Python besides ~1 ns per pair: fewer, larger chunks keep that below ~5%,
    benchmarks/bench_langevin.py), and each chunk's ``sigma`` at most ``CHUNK_BYTES``."""
    by_memory = math.ceil(members * n_times * width * 8 / CHUNK_BYTES)
    slots = max(threads, 1)
    min_members = max(1, CHUNK_PAIR_WORK // max(width * width, 1))
    per_slot = min(4, max(1, members // (min_members * slots)))
    n_chunks = max(by_memory, per_slot * threads, 1)
    return max(1, math.ceil(members / min(members, n_chunks)))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _check_resume(path: Path, plan: _Plan) -> None:
    """ValueError naming the first parameter of ``plan`` that the store at ``path`` differs in."""
    if not path.is_dir():
        raise fail("store", str(path), "is not a directory (not a dlnsim ensemble store)")
    root = _store.open_root(path)  # attributes only: the arrays are verified later
    attrs = dict(root.attrs)
    if attrs.get("kind") != "langevin_ensemble" or "chunk_done" not in root:
        raise fail("store", str(path), "is not a dlnsim langevin_ensemble store")
    if attrs.get("store_format") != STORE_FORMAT:
        raise fail(
            "store",
            str(path),
            f"has layout {attrs.get('store_format')}, not {STORE_FORMAT} (written by another "
            "dlnsim version, without checksums): rerun with --overwrite",
        )
    keys = ["system", *plan.model.describe(), "rescaled_time", "seed", "dt", "temperature"]
    keys += ["members", "chunk_size", "reductions", "save_members", "metropolis"]
    for key in keys:
        if attrs.get(key) != plan.attrs.get(key):
            raise fail(
                key, plan.attrs.get(key), f"does not match {attrs.get(key)!r} stored in {path}"
            )
    # compared with the recorded digests, not the stored arrays (which may be damaged)
    if attrs.get("time_sha256") != plan.attrs["time_sha256"]:
        raise fail("times", plan.times.size, f"do not match the times stored in {path}")
    if attrs.get("sigma0_sha256") != plan.attrs["sigma0_sha256"]:
        raise fail("sigma0", plan.starts.shape, f"does not match sigma0 stored in {path}")


def _stored_value(path: Path, key: str) -> object:
    with contextlib.suppress(Exception):
        return _store.open_root(path).attrs.get(key)
    return None


# ------------------------------------------------------------------ entry point
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
    chunk_size: int | None = None,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    client: Any | None = None,
    scheduler: str | None = None,
    reductions: Iterable[str] | str = (),
    save_members: bool = True,
    progress: bool | None = None,
    overwrite: bool = False,
    metropolis: bool = False,
    cluster_timeout: float = CLUSTER_TIMEOUT,
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
        ``client``, ``scheduler``, ``reductions``, ``save_members``, ``metropolis``, ...),
        a stored parameter differing on ``resume``, a run too large for memory
        (``check_memory``); ``StoreError`` for irreparable damage and ``StoreLocked`` when
        another run holds the store (both ``ValueError``).
    TimeoutError
        When no worker or scheduler is reachable within ``cluster_timeout``.
    """
    call = dict(locals())
    if not isinstance(model, Model | DysonModel):
        raise fail("model", model, "must be a particles.Model (or MatrixVariant, DysonModel)")
    members = check_integer(members, "members", 1)
    dt = check_positive(dt, "dt")
    times = check_times(times)
    check_memory(
        memory_estimate(members, times.size, model.width, chunk_size, store is not None),
        *_size_name(members, model.width, times.size),
    )
    if not float(times[-1]) / dt < 2.0**53:  # the step count must be an exact integer
        steps = float(times[-1]) / dt
        raise fail("dt", dt, f"gives {steps:.3g} steps to t={times[-1]:g}, more than 2^53")
    rescaled = model._rescaled(rescaled)
    temperature = (
        1.0 / model.beta
        if temperature is None
        else check_positive(temperature, "temperature", allow_zero=True)
    )
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
    starts = np.sort(starts, axis=-1)[:, ::-1].copy()
    reductions = _check_reductions(reductions)
    save_members = check_bool(save_members, "save_members")
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and not isinstance(model, MatrixVariant | DysonModel):
        raise fail(
            "metropolis", metropolis, "is for the random-matrix baselines (MatrixVariant, Dyson)"
        )
    if metropolis and temperature == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    if not save_members and not reductions:
        raise fail("save_members", False, "without reductions nothing would be kept")
    resume = check_bool(resume, "resume")
    overwrite = check_bool(overwrite, "overwrite")
    if progress is not None:
        progress = check_bool(progress, "progress")
    path = _check_store(store)
    held = getattr(_HELD, "paths", set())
    if path is not None and os.path.abspath(path) not in held:
        with _store.store_lock(path):  # the existence checks below happen under the lock
            _HELD.paths = held | {os.path.abspath(path)}
            try:
                return langevin_ensemble(**call)
            finally:
                _HELD.paths = held
    if resume and path is None:
        raise fail("resume", True, "needs a store to resume from")
    resuming = resume and path is not None and path.exists()
    if path is not None and path.exists() and not resume and not overwrite:
        raise fail("store", str(path), "exists: pass resume=True to finish it or overwrite=True")
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, "chunk_size", 1)
    if client is not None:
        import distributed

        if not isinstance(client, distributed.Client):
            raise fail("client", client, "must be a distributed.Client")
        if scheduler is not None:
            raise fail("scheduler", scheduler, "give either client or scheduler, not both")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise fail("scheduler", scheduler, "must be an address, 'local' or 'serial'")
    if scheduler not in (None, "local", *_SERIAL) and not _ADDRESS.match(scheduler.strip()):
        raise fail("scheduler", scheduler, "must be 'local', 'serial' or an address tcp://HOST:PORT")
    if resuming:
        if seed is None:
            seed = _stored_value(path, "seed")  # type: ignore[arg-type]
            seed = int(seed) if isinstance(seed, str) and seed.isdigit() else seed
        if chunk_size is None:
            stored = _stored_value(path, "chunk_size")
            chunk_size = stored if isinstance(stored, int) else None
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
        _log.info("seed = %d (drawn; stored in the dataset's attrs)", seed)
    seed = _check_seed(seed)

    steps = math.ceil(float(times[-1]) / dt)
    work = float(members) * max(steps, 1) * model.width**2
    executor: _Executor | None = None
    timeout = _TIMEOUT.set(check_positive(cluster_timeout, "cluster_timeout"))
    try:
        if chunk_size is None:
            executor = _choose_executor(client, scheduler, members)
            chunk_size = _default_chunk_size(members, times.size, model.width, executor.threads)
        chunk_size = min(chunk_size, members)
        plan = _Plan(
            model,
            starts,
            times,
            members,
            dt,
            seed,
            temperature,
            rescaled,
            chunk_size,
            reductions,
            save_members,
            metropolis,
        )
        plan.attrs = _plan_attrs(plan, work)
        if resuming:
            _check_resume(path, plan)  # type: ignore[arg-type]

        def get_executor() -> _Executor:  # started only when there is something to run
            nonlocal executor
            if executor is None:
                executor = _choose_executor(client, scheduler, plan.n_chunks)
            return executor

        return _execute(plan, get_executor, path, resuming, progress)
    finally:
        _TIMEOUT.reset(timeout)
        if executor is not None:
            executor.close()


def _size_name(members: int, width: int, n_times: int) -> tuple[str, str]:
    """The size to name in a memory error (the largest against its usual value) and all three."""
    name = max(
        (("members", members / 100), ("width", width / 4), ("save times", n_times / 51)),
        key=lambda item: item[1],
    )[0]
    return name, f"members={members}, width={width}, save times={n_times}"


def memory_estimate(
    members: int, n_times: int, width: int, chunk_size: object, store: bool
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

    Returns
    -------
    float
        The estimate in bytes.
    """
    per_member = 8.0 * (4 * width + 8)  # starts and their sorted copy, flags, failure records
    result = 0.0 if store else 8.0 * members * n_times * (width + 2)
    chunk = chunk_size if isinstance(chunk_size, int) and chunk_size > 0 else members
    block = min(8.0 * min(chunk, members) * n_times * (width + 2), 4.0 * CHUNK_BYTES)
    if isinstance(chunk_size, int) and chunk_size > 0:
        block = 8.0 * min(chunk_size, members) * n_times * (width + 2)
    return members * per_member + result + 3.0 * block


def _plan_attrs(plan: _Plan, work: float) -> dict[str, str | int | float]:
    """The run's parameters as dataset attributes (those checked on resume among them)."""
    return clean_attrs(
        {
            **plan.model.describe(),
            "rescaled_time": int(plan.rescaled),
            "kind": "langevin_ensemble",
            "seed": str(plan.seed),
            "seeding_scheme": SEEDING_SCHEME,
            "bit_generator": BIT_GENERATOR,
            "dask_version": _version("dask"),
            "distributed_version": _version("distributed"),
            "zarr_version": _version("zarr"),
            "dt": plan.dt,
            "temperature": plan.temperature,
            "members": plan.members,
            "chunk_size": plan.chunk_size,
            "n_chunks": plan.n_chunks,
            "reductions": ",".join(plan.reductions) or "none",
            "save_members": int(plan.save_members),
            "metropolis": int(plan.metropolis),
            "variance": "sample variance over members (ddof=1)",
            "reduction_scheme": "Chan pairwise (count, mean, M2) on a fixed binary tree of "
            "member indices; failed members excluded",
            "work_estimate": work,
            "store_format": STORE_FORMAT,
            "checksum": "sha256 of each finished chunk's decoded data per array (chunk_sha256)",
            "chunk_hash_arrays": ",".join(_chunk_arrays(plan)),
            "time_sha256": _store.hex_digest("time", plan.times),
            "sigma0_sha256": _store.hex_digest("sigma0", plan.starts),
        }
    )


def _execute(
    plan: _Plan,
    get_executor: Callable[[], _Executor],
    path: Path | None,
    resuming: bool,
    progress: bool | None,
) -> xr.Dataset:
    """Lay out the sink, run the chunks not done yet, reduce, finish the dataset."""
    schema = plan.schema()
    runner: Iterator[tuple[int, dict[str, Any]]] | _DaskResults | None = None
    if not resuming:
        executor = get_executor()
        plan.attrs["executor"] = executor.description
        if executor.client is not None and plan.n_chunks > 0:
            # a fresh run on a cluster: the tasks go out before the store is laid out
            runner = _run_dask(executor.client, plan, list(range(plan.n_chunks)))
    try:
        if path is None:
            sink: _MemorySink | _ZarrSink = _MemorySink(plan, schema)
        else:
            sink = _ZarrSink(path, plan, schema, create=not resuming)
            if resuming:
                verified, intact = sink.verify()
                if intact:  # complete, and every chunk and reduction verifies
                    return sink.dataset(schema)
        done = sink.done() if path is None or not resuming else verified
        sweeps = {
            name: _TreeSweep(
                plan.n_chunks, sink.load_nodes(name) if isinstance(sink, _ZarrSink) else None
            )
            for name in plan.reductions
        }
        for sweep in sweeps.values():
            sweep.add_stored(done)
        if runner is None:
            todo = [c for c in range(plan.n_chunks) if c not in done]
            executor = get_executor() if todo else None
            if executor is None or executor.client is None:
                runner = _run_serial(plan, todo)
            else:
                runner = _run_dask(executor.client, plan, todo)
        hide = None if progress is None else not progress
        warned = 0
        with tqdm(
            total=plan.n_chunks,
            initial=len(done),
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
    finally:
        if runner is not None:
            runner.close()  # cancels the remaining tasks at once on an error or Ctrl-C
    if isinstance(sink, _ZarrSink) and sink.final_check():  # reduce again from the repaired store
        sweeps = {name: _TreeSweep(plan.n_chunks, sink.load_nodes(name)) for name in sweeps}
        for sweep in sweeps.values():
            sweep.add_stored(range(plan.n_chunks))
    reduced = {name: _finish(sweep.result()) for name, sweep in sweeps.items()}
    if isinstance(sink, _ZarrSink):
        failed, failed_time, last = sink.failures()
    else:
        failed, failed_time, last = (
            sink.arrays["failed"],
            sink.arrays["failed_time"],
            sink.arrays["last_finite"],
        )
    bad = np.flatnonzero(failed == 1)
    if warned > _MAX_WARNINGS:
        warnings.warn(
            f"dlnsim: {bad.size} of {plan.members} members failed (see 'failed')",
            RuntimeWarning,
            stacklevel=3,
        )
    summary = "; ".join(
        f"member {k} at t={failed_time[k]:.6g}, last finite {np.array2string(last[k], precision=6)}"
        for k in bad[:50]
    )
    attrs = {
        "complete": 1,
        "n_failed": int(bad.size),
        "failures": (summary + ("; ..." if bad.size > 50 else "")) or "none",
    }
    if isinstance(sink, _ZarrSink):
        sink.finish(reduced, attrs)
        return sink.dataset(schema)
    sink.finish(reduced, plan.dataset_attrs(attrs))
    return sink.dataset(schema)


def _warn_failures(plan: _Plan, chunk: int, result: Mapping[str, Any], warned: int) -> int:
    lo, _ = plan.bounds(chunk)
    for k in np.flatnonzero(~np.isnan(result["failed_time"])):
        warned += 1
        if warned <= _MAX_WARNINGS:
            warnings.warn(
                f"dlnsim: member {lo + k} failed at t = {result['failed_time'][k]:.6g}; last "
                f"finite state {np.array2string(result['last_finite'][k], precision=6)}",
                RuntimeWarning,
                stacklevel=4,
            )
    return warned
