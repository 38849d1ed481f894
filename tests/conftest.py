"""Shared fixtures: an external Dask scheduler with one worker process on 127.0.0.1, and the
output of a script in fresh processes started with 1 and with 2 BLAS threads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def external_scheduler(tmp_path_factory):
    """Address ``tcp://127.0.0.1:PORT`` of a ``dask scheduler`` subprocess with one
    single-threaded ``dask worker`` process (no nanny), torn down after the session."""
    distributed = pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = (tmp_path_factory.mktemp("dask") / "dask.log").open("w")
    cmds = [
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--no-nanny", "--no-dashboard", "--death-timeout", "60"],
    ]  # fmt: skip
    procs = []
    try:
        for cmd in cmds:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
            time.sleep(0.5)
        with distributed.Client(address, timeout=60, set_as_default=False) as probe:
            probe.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


@pytest.fixture
def outputs_by_blas_threads():
    """``run(code)``: the stdout of ``python -c code`` in two fresh processes, started with 1
    and with 2 BLAS/OpenMP threads (a Dask worker starts with one), as a list of two strings.
    LAPACK's last bits can depend on the threads OpenBLAS started with, so a script that prints
    digests of its results shows whether they do."""

    def run(code: str) -> list[str]:
        outputs = []
        for threads in ("1", "2"):
            env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
                   "MKL_NUM_THREADS": threads}  # fmt: skip
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-2000:]
            outputs.append(proc.stdout.strip())
        return outputs

    return run
