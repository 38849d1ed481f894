"""Where the chunks run: in-process, or on a Dask cluster (a client, an address, or a
``LocalCluster`` started for the call).

``local_cluster()`` is the only place in the particle code where dlnsim starts processes (the
other is ``analysis.jobs``, when ``run_experiments`` is asked for concurrent experiments);
``local_cluster_options``
sets its options for the clusters started inside a ``with`` block (the CLI's ``--n-workers``).
``Where`` picks the executor once, and only when there is work (``choose_executor``: client >
``scheduler`` > the active client > ``$DASK_SCHEDULER_ADDRESS`` > in-process); ``run`` yields
finished chunks, in order in-process, in order of completion on Dask (``DaskResults``).
The task is ``chunk.run_chunk``, looked up at call time, a top-level function that Dask pickles
by reference.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..validation import check_integer, fail
from . import chunk as chunk_mod
from .plan import Plan

__all__ = [
    "ADDRESS",
    "CLUSTER_TIMEOUT",
    "SERIAL",
    "DaskResults",
    "Executor",
    "Where",
    "choose_executor",
    "scoped_timeout",
    "local_cluster",
    "local_cluster_options",
    "cluster_options",
    "available_cores",
    "run_dask",
    "run_in_process",
    "run_serial",
]

#: Seconds to connect to a scheduler, and that a cluster may have no worker before a run gives up.
CLUSTER_TIMEOUT = 60.0
#: The ``scheduler`` values that mean in-process.
SERIAL = ("serial", "in-process")
#: A scheduler address ``[protocol://]host:port``.
ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?(\[[0-9a-fA-F:.]+\]|[\w.-]+):\d{1,5}$")
_TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar("timeout", default=CLUSTER_TIMEOUT)
_log = logging.getLogger("dlnsim.ensemble")


@contextlib.contextmanager
def scoped_timeout(seconds: float) -> Iterator[None]:
    """Within the block, connecting to a scheduler and waiting for a worker give up after
    ``seconds`` (validated by the caller).

    Parameters
    ----------
    seconds : float
        The timeout, > 0.

    Returns
    -------
    contextlib.AbstractContextManager
        Entering it yields None.
    """
    token = _TIMEOUT.set(seconds)
    try:
        yield
    finally:
        _TIMEOUT.reset(token)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it).

    Returns
    -------
    int
        At least 1.
    """
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
class Executor:
    """Where the chunks run: ``client=None`` is in-process (``threads=0``).

    Parameters
    ----------
    client : distributed.Client or None
        The client, None in-process.
    description : str
        For the ``executor`` attribute of the result.
    threads : int
        Worker threads (0 in-process).
    owned : list
        What ``close`` closes (a client or cluster started for the call).
    """

    client: Any | None
    description: str
    threads: int
    owned: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Close what this executor started (never a client given by the caller)."""
        for obj in reversed(self.owned):
            with contextlib.suppress(Exception):
                obj.close()
        self.owned.clear()


def _connect(address: str, name: str = "scheduler") -> Executor:
    from distributed import Client

    if not ADDRESS.match(address.strip()):  # else distributed hangs, then fails in __del__
        raise fail(name, address, "must be 'local', 'serial' or an address tcp://HOST:PORT")
    try:
        client = Client(address.strip(), set_as_default=False, timeout=_TIMEOUT.get())
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise fail(name, address, f"cannot connect: {err}") from None
    return Executor(client, f"dask scheduler {address}", _client_threads(client), [client])


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


def cluster_options() -> dict[str, int]:
    """The ``local_cluster_options`` in force at this point (a copy; empty outside any
    ``with local_cluster_options(...)`` block), as keyword arguments of that function.

    Returns
    -------
    dict
        Any of ``n_workers``, ``threads_per_worker``, ``logs``.
    """
    return dict(_CLUSTER_OPTIONS.get() or {})


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
    options = {"n_workers": available_cores(), "threads_per_worker": 1, "logs": logging.CRITICAL}
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


def _local_executor(n_chunks_hint: int) -> Executor:
    """A LocalCluster for one call: ``local_cluster``'s options, by default a single-threaded
    worker per core but no more workers than chunks."""
    options = _CLUSTER_OPTIONS.get() or {}
    n_workers = options.get("n_workers", max(1, min(available_cores(), n_chunks_hint)))
    threads = n_workers * options.get("threads_per_worker", 1)
    client = local_cluster(n_workers)
    description = f"dask LocalCluster, {n_workers} worker processes, {threads} threads"
    return Executor(client, description, threads, [client])


def choose_executor(client: Any | None, scheduler: str | None, n_chunks_hint: int) -> Executor:
    """Given client > ``scheduler`` > active client > DASK_SCHEDULER_ADDRESS > in-process.

    Nothing here starts a process unless asked to by ``scheduler="local"``.

    Parameters
    ----------
    client : distributed.Client or None
        A client given by the caller.
    scheduler : str or None
        An address, ``"local"`` or ``"serial"``.
    n_chunks_hint : int
        A LocalCluster started here has no more workers than this.

    Returns
    -------
    Executor
        The executor (close it when done).
    """
    if client is not None:
        return Executor(client, f"dask client {client.scheduler.address}", _client_threads(client))
    if scheduler in SERIAL:
        return Executor(None, "in-process", 0)
    if scheduler == "local":
        return _local_executor(n_chunks_hint)
    if scheduler is not None:
        return _connect(scheduler)
    active = _active_client()
    if active is not None:
        return Executor(active, f"dask client {active.scheduler.address}", _client_threads(active))
    address = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if address:
        return _connect(address, "DASK_SCHEDULER_ADDRESS")
    return Executor(None, "in-process", 0)


def run_in_process(plan: Plan, chunk: int) -> dict[str, Any]:
    """Run one chunk in this process.

    Parameters
    ----------
    plan : Plan
        The run.
    chunk : int
        Chunk index.

    Returns
    -------
    dict
        The ``chunk.run_chunk`` result.
    """
    return chunk_mod.run_chunk(**plan.task(chunk))


def run_serial(plan: Plan, chunks: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``chunks`` one after the other in this process.

    Parameters
    ----------
    plan : Plan
        The run.
    chunks : list of int
        Chunk indices.

    Returns
    -------
    Iterator
        ``(chunk, result)`` in the order of ``chunks``.
    """
    for chunk in chunks:
        yield chunk, run_in_process(plan, chunk)


def run_dask(client: Any, plan: Plan, chunks: list[int]) -> DaskResults:
    """One task per chunk (``retries=2``), submitted at once (the workers start while the caller
    lays out the store); results in order of completion.  Closing the iterator, even before
    the first result, cancels the tasks not yet collected.

    Parameters
    ----------
    client : distributed.Client
        Where to submit.
    plan : Plan
        The run.
    chunks : list of int
        Chunk indices.

    Returns
    -------
    DaskResults
        ``(chunk, result)`` in order of completion.
    """

    token = uuid.uuid4().hex[:12]
    futures = {}
    for chunk in chunks:
        future = client.submit(
            chunk_mod.run_chunk,
            **plan.task(chunk),
            key=f"dlnsim-langevin-{token}-{chunk}",
            retries=2,
            priority=-chunk,
            pure=False,
        )
        futures[future] = chunk
    return DaskResults(client, futures)


class DaskResults:
    """Iterator over submitted chunk futures in order of completion; ``close`` cancels the rest.

    While it waits it checks the cluster once a second: a scheduler that stops answering, or
    no worker for the cluster timeout (``cluster_timeout``), ends the wait with a TimeoutError
    that says what to do.

    Parameters
    ----------
    client : distributed.Client
        The client the futures belong to.
    futures : dict
        Future -> chunk index.
    """

    def __init__(self, client: Any, futures: dict[Any, int]) -> None:
        from distributed import as_completed

        self.client = client
        self.futures = futures
        self.completed = as_completed(list(futures), loop=client.loop)
        self.timeout = _TIMEOUT.get()
        self.next_check = 0.0
        self.idle_since: float | None = None

    def __iter__(self) -> DaskResults:
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
        """Cancel the tasks not collected yet."""
        if self.futures:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self.futures))
            self.futures = {}


class Where:
    """The executor of one run, started on first use (``get``) and closed on exit.

    Parameters
    ----------
    client : distributed.Client or None
        A client given by the caller.
    scheduler : str or None
        An address, ``"local"`` or ``"serial"``.
    """

    def __init__(self, client: Any | None, scheduler: str | None) -> None:
        self.client = client
        self.scheduler = scheduler
        self.executor: Executor | None = None

    def __enter__(self) -> Where:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.close()

    def get(self, n_chunks_hint: int) -> Executor:
        """The executor, chosen (``choose_executor``) on the first call.

        Parameters
        ----------
        n_chunks_hint : int
            Chunks to run (caps the workers of a LocalCluster started here).

        Returns
        -------
        Executor
            The executor.
        """
        if self.executor is None:
            self.executor = choose_executor(self.client, self.scheduler, n_chunks_hint)
        return self.executor

    def run(self, plan: Plan, chunks: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run ``chunks`` (the executor starts only if there are any).

        Parameters
        ----------
        plan : Plan
            The run.
        chunks : list of int
            Chunk indices.

        Returns
        -------
        Iterator
            ``(chunk, result)``; its ``close()`` cancels the tasks not collected.
        """
        executor = self.get(plan.n_chunks) if chunks else None
        if executor is None or executor.client is None:
            return run_serial(plan, chunks)
        return run_dask(executor.client, plan, chunks)
