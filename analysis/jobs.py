"""Experiments run at the same time, each in its own process (``run_experiments(jobs=J)``).

A config's experiments are independent: each writes its own files and its results depend only on
its parameters and seed, not on the process that computes them.  With ``jobs = J > 1`` up to
``J`` of them run at once, each in a fresh process of the ``spawn`` start method (so it works
the same on every platform, from a script, stdin or a notebook).  Most of a first run on a new
machine is numba compiling the kernels each experiment needs (single-threaded), so two jobs on
two cores nearly halve it.

What a job carries over from the process that starts it: ``sys.argv`` (the datasets' command
line), the ``extra_provenance`` attributes (the config text), the ``local_cluster_options``
(``--n-workers`` and friends), and the ``dlnsim`` logger's level.  Its log records come back
through a pipe and are handled by the starting process's loggers, so they appear where that
process's own messages do.  A job is not on a terminal: it draws no progress bars (the starting
process logs each experiment's start and end instead).

Failure and interruption keep what has been written:

* an experiment that raises stops new experiments from starting; the ones running finish (their
  files are complete), then the first error is raised again in the starting process, as the
  same exception type with the same message;
* Ctrl-C: a job runs in its own process group (POSIX), so the terminal's interrupt reaches
  only the starting process, which passes it on to each job as SIGINT; a job then stops as a
  run in the starting process would (its Dask workers, if it started a LocalCluster, are shut
  down by it rather than interrupted mid-task), keeps what it has written, and
  ``KeyboardInterrupt`` is raised once every job has stopped.

The numba cache is shared: jobs that compile the same kernel at the same time each compile it,
and numba's cache writes are atomic, so the cache stays valid.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from dlnsim.particles.datasets import extra_provenance, provenance_extras
from dlnsim.particles.ensemble import cluster_options, local_cluster_options

__all__ = ["run_jobs"]

_log = logging.getLogger(__name__)


class _NotATerminal:
    """``sys.stderr`` of a job: writes through, but is not a terminal (no progress bars)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _PipeHandler(logging.Handler):
    """Sends a job's log records to the starting process (messages formatted, no traceback
    objects, so every record pickles)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            self.conn.send(("log", record))
        except Exception:  # pragma: no cover - a broken pipe: the parent is gone
            self.handleError(record)


def _portable_error(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a ``RuntimeError`` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _job(
    conn: Connection,
    run: Callable[[Mapping[str, Any], Path], list[str]],
    index: int,
    table: Mapping[str, Any],
    out: str,
    state: Mapping[str, Any],
) -> None:
    """One experiment in a job process, ``run(table, out)``; sends ``("done", index, lines)``,
    ``("error", index, exc)`` or ``("interrupted", index)``."""
    if hasattr(os, "setpgrp"):  # Ctrl-C comes through the parent (module docstring)
        os.setpgrp()
    sys.argv = list(state["argv"])
    sys.stderr = _NotATerminal(sys.stderr)
    logger = logging.getLogger("dlnsim")
    logger.setLevel(state["level"])
    logger.addHandler(_PipeHandler(conn))
    logger.propagate = False
    try:
        with extra_provenance(**state["extras"]), local_cluster_options(**state["cluster"]):
            lines = run(table, Path(out))
        conn.send(("done", index, lines))
    except KeyboardInterrupt:
        conn.send(("interrupted", index))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        conn.send(("error", index, _portable_error(exc)))
    finally:
        conn.close()


def run_jobs(
    tables: Sequence[Mapping[str, Any]],
    out: Path,
    jobs: int,
    emit: Callable[[int, list[str]], None],
    run: Callable[[Mapping[str, Any], Path], list[str]],
) -> None:
    """Run the experiments ``tables`` (checked already) ``jobs`` at a time in job processes,
    each as ``run(table, out)``, started in order.  ``emit(i, lines)`` is called in the
    starting process for each experiment that completed, in the order of ``tables`` (an
    experiment's lines wait for those of the experiments before it).

    Parameters
    ----------
    tables : sequence of mapping
        The ``[[experiment]]`` tables, each already accepted by ``pipeline.resolve``.
    out : pathlib.Path
        The output folder (existing).
    jobs : int
        Experiments running at once, >= 1.
    emit : callable
        ``emit(index, summary_lines)``.
    run : callable
        ``run(table, out) -> summary_lines``, a module-level function (the job process imports
        it by name).

    Raises
    ------
    Exception
        The first error an experiment raised (after the running ones have finished).
    KeyboardInterrupt
        On Ctrl-C, after every job has stopped.
    """
    runner = _Jobs(tables, out, jobs, emit, run)
    while True:
        try:
            runner.loop()
            break
        except KeyboardInterrupt:
            runner.interrupt()
    runner.flush()
    if runner.interrupted:
        raise KeyboardInterrupt
    if runner.error is not None:
        raise runner.error


class _Jobs:
    """The state of ``run_jobs``: pending, running and completed experiments."""

    def __init__(self, tables, out, jobs, emit, run) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.tables, self.out, self.jobs, self.emit, self.run = tables, out, jobs, emit, run
        self.state = {
            "argv": list(sys.argv),
            "extras": provenance_extras(),
            "cluster": cluster_options(),
            "level": logging.getLogger("dlnsim").getEffectiveLevel(),
        }
        self.pending = list(range(len(tables)))
        self.running: dict[int, tuple[Any, Connection, float]] = {}
        self.done: dict[int, list[str]] = {}
        self.ended: set[int] = set()
        self.next_emit = 0
        self.error: BaseException | None = None
        self.interrupted = False

    def start(self, i: int) -> None:
        receive, send = self.ctx.Pipe(duplex=False)
        args = (send, self.run, i, dict(self.tables[i]), os.fspath(self.out), self.state)
        proc = self.ctx.Process(target=_job, args=args, name=f"dlnsim-experiment-{i}")
        proc.start()
        send.close()
        self.running[i] = (proc, receive, time.monotonic())
        _log.info("started %s (%d of %d)", _label(self.tables[i]), i + 1, len(self.tables))

    def interrupt(self) -> None:
        """Ctrl-C: start nothing more, and pass the interrupt on to every running job."""
        self.interrupted = True
        for proc, _, _ in self.running.values():
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)

    def loop(self) -> None:
        while self.pending or self.running:
            while (
                self.pending
                and len(self.running) < self.jobs
                and self.error is None
                and not self.interrupted
            ):
                self.start(self.pending.pop(0))
            if not self.running:
                return
            conns = {conn: i for i, (_, conn, _) in self.running.items()}
            for conn in wait(list(conns), timeout=0.5):
                self.receive(conns[conn])
            self.release()

    def receive(self, i: int) -> None:
        proc, conn, started = self.running[i]
        try:
            msg = conn.recv()
        except EOFError:  # the job died without a word (killed, or out of memory)
            self.finish(i)
            if self.error is None and not self.interrupted:
                self.error = RuntimeError(
                    f"the process of {_label(self.tables[i])} ended with exit code "
                    f"{proc.exitcode} before it finished"
                )
            return
        if msg[0] == "log":
            record = msg[1]
            logging.getLogger(record.name).handle(record)
            return
        self.finish(i)
        if msg[0] == "done":
            self.done[i] = msg[2]
            elapsed = time.monotonic() - started
            _log.info("finished %s in %.1f s", _label(self.tables[i]), elapsed)
        elif msg[0] == "interrupted":
            self.interrupted = True
        elif self.error is None and not self.interrupted:
            self.error = msg[2]

    def finish(self, i: int) -> None:
        proc, conn, _ = self.running.pop(i)
        conn.close()
        proc.join()
        self.ended.add(i)

    def release(self) -> None:
        """Emit the completed experiments whose predecessors have all ended."""
        while self.next_emit < len(self.tables) and self.next_emit in self.ended:
            if self.next_emit in self.done:
                self.emit(self.next_emit, self.done.pop(self.next_emit))
            self.next_emit += 1

    def flush(self) -> None:
        """After a failure or Ctrl-C: the completed experiments not emitted yet, in order."""
        for i in sorted(self.done):
            self.emit(i, self.done.pop(i))


def _label(table: Mapping[str, Any]) -> str:
    """``kind 'name'`` of an experiment table (``'name'`` when the name is the kind)."""
    kind, name = table.get("kind"), table.get("name", table.get("kind"))
    return f"{name!r}" if kind is None or name == kind else f"{kind} {name!r}"
