"""Faults: damaged stores, two writers, full disks, impossible sizes, bad options (issue 17)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import xarray as xr
import zarr

import dlnsim.particles.ensemble as ens
import dlnsim.particles.flow as ens_flow
from dlnsim.analysis.cli import main
from dlnsim.particles import Model, Schatten, gradient_flow
from dlnsim.particles.ensemble import chunk as ens_chunk
from dlnsim.particles.ensemble import zarr_sink as ens_zarr_sink
from dlnsim.particles.store import StoreError, StoreLocked, lock_path, verify_store

MODEL = Model(3, 4, 2.0, Schatten(2.0))
SIGMA0 = np.array([1.0, 0.6, 0.3])
TIMES = np.linspace(0.0, 0.3, 4)
MEMBERS, CHUNK, SEED = 16, 4, 11
ALL = ("sigma", "free_energy", "spread")


def run(**kw):
    args = dict(
        model=MODEL,
        sigma0=SIGMA0,
        times=TIMES,
        members=MEMBERS,
        dt=5e-3,
        seed=SEED,
        reductions=ALL,
        progress=False,
        scheduler="serial",
        chunk_size=CHUNK,
    )
    args.update(kw)
    return ens.langevin_ensemble(**args)


def assert_bitwise(a: xr.Dataset, b: xr.Dataset) -> None:
    a, b = a.load(), b.load()
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


@pytest.fixture(scope="module")
def clean():
    """The uninterrupted run, in memory."""
    return run().load()


@pytest.fixture(scope="module")
def partial_template(tmp_path_factory):
    """A store interrupted (Ctrl-C) after 3 of its 4 chunks."""
    path = tmp_path_factory.mktemp("partial") / "p.zarr"
    real = ens_chunk.run_chunk
    calls = []

    def interrupted(**task):
        calls.append(task["first"])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(**task)

    ens_chunk.run_chunk = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            run(store=path)
    finally:
        ens_chunk.run_chunk = real
    assert verify_store(path)["chunks_done"] == 3
    return path


@pytest.fixture
def partial(partial_template, tmp_path):
    path = tmp_path / "p.zarr"
    shutil.copytree(partial_template, path)
    return path


def chunk_file(path, array, *index):
    return path / array / "c" / "/".join(map(str, index))


def garble(file):
    data = bytearray(file.read_bytes())
    for k in range(len(data) // 2, len(data)):
        data[k] ^= 0x5A
    file.write_bytes(bytes(data))


def set_done(path, chunk):
    zarr.open_group(str(path), mode="r+")["chunk_done"][chunk] = 1


DAMAGE = {
    "delete sigma chunk": lambda p: chunk_file(p, "sigma", 0, 0, 0).unlink(),
    "truncate sigma chunk": lambda p: os.truncate(chunk_file(p, "sigma", 1, 0, 0), 100),
    "garble sigma chunk": lambda p: garble(chunk_file(p, "sigma", 2, 0, 0)),
    "delete partial chunk": lambda p: shutil.rmtree(chunk_file(p, "sigma_partial", 0)),
    "garble last_finite chunk": lambda p: garble(chunk_file(p, "last_finite", 1, 0)),
    "flag without data": lambda p: set_done(p, 3),
    "delete checksum record": lambda p: shutil.rmtree(chunk_file(p, "chunk_sha256", 2)),
    "garble time coordinate": lambda p: garble(chunk_file(p, "time", 0)),
}
DAMAGED_CHUNK = {
    "delete sigma chunk": [0],
    "truncate sigma chunk": [1],
    "garble sigma chunk": [2],
    "delete partial chunk": [0],
    "garble last_finite chunk": [1],
    "flag without data": [3],
    "delete checksum record": [2],
    "garble time coordinate": [],
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_damaged_chunk_is_found_recomputed_and_resume_is_bitwise(partial, clean, how, caplog):
    """Before: resume trusted ``chunk_done`` (NaN members, INT64_MIN counts, an unreadable
    store, "-8 failed").  Planted bug: a verify_chunks that returns {} fails every case."""
    DAMAGE[how](partial)
    state = verify_store(partial)
    assert state["state"] == "damaged", state
    assert state["chunks_damaged"] == DAMAGED_CHUNK[how]
    if how == "garble time coordinate":
        assert state["layout_damaged"] == ["time"]
    calls = []
    real = ens_chunk.run_chunk

    def counted(**task):
        calls.append(task["first"] // CHUNK)
        return real(**task)

    ens_chunk.run_chunk = counted
    try:
        with caplog.at_level(logging.WARNING, logger="dlnsim"):
            ds = run(store=partial, resume=True)
    finally:
        ens_chunk.run_chunk = real
    assert sorted(calls) == sorted({*DAMAGED_CHUNK[how], 3})  # the damaged chunks and the rest
    assert ds.attrs["repaired_chunks"] == (", ".join(map(str, DAMAGED_CHUNK[how])) or "none")
    for chunk in DAMAGED_CHUNK[how]:
        assert f"chunk {chunk} (members" in caplog.text
    assert_bitwise(ds, clean)
    after = verify_store(partial)
    assert after["state"] == "complete" and after["chunks_done"] == 4, after


def test_resume_repairs_a_complete_store_and_its_reductions(tmp_path, clean):
    path = tmp_path / "c.zarr"
    run(store=path)
    assert verify_store(path)["state"] == "complete"
    garble(chunk_file(path, "sigma", 3, 0, 0))
    garble(chunk_file(path, "spread_mean", 0))
    state = verify_store(path)
    assert state["chunks_damaged"] == [3] and state["reductions_ok"] is False
    ds = run(store=path, resume=True)
    assert ds.attrs["repaired_chunks"] == "3"
    assert_bitwise(ds, clean)
    assert verify_store(path)["state"] == "complete"


def test_damage_during_the_run_is_repaired_at_the_end(tmp_path, clean, caplog):
    """The finishing step re-reads every chunk: damage done while the run goes on is caught."""
    path = tmp_path / "r.zarr"
    real = ens_zarr_sink.ZarrSink.write
    seen = []

    def write(self, chunk, result):
        real(self, chunk, result)
        if chunk == 2 and not seen:
            seen.append(chunk)
            garble(chunk_file(path, "energy", 1, 0))  # chunk 1, already finished
            garble(chunk_file(path, "sigma", 2, 0, 0))

    ens_zarr_sink.ZarrSink.write = write
    try:
        with caplog.at_level(logging.WARNING, logger="dlnsim"):
            ds = run(store=path)
    finally:
        ens_zarr_sink.ZarrSink.write = real
    assert ds.attrs["repaired_chunks"] == "1, 2"
    assert_bitwise(ds, clean)


CLI_RUN = ["ensemble", "--members", "8", "--chunk-size", "4", "--t-end", "0.2", "--dt", "1e-2"]
CLI_RUN += ["--seed", "3", "--scheduler", "serial"]


def test_unrepairable_damage_is_one_error_exit_2(partial, tmp_path, capsys):
    """Before: deleting ``sigma`` gave a KeyError traceback."""
    shutil.rmtree(partial / "sigma")
    with pytest.raises(StoreError, match="'sigma' is missing"):
        run(store=partial, resume=True)
    state = verify_store(partial)
    assert state["state"] == "unrepairable" and "sigma" in state["problems"][0]
    path = tmp_path / "cli.zarr"
    assert main([*CLI_RUN, "--out", str(path)]) == 0
    shutil.rmtree(path / "free_energy")
    capsys.readouterr()
    code = main([*CLI_RUN, "--resume", "--out", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'free_energy' is missing" in err, err
    (path / "zarr.json").write_text("{not json")
    code = main([*CLI_RUN, "--resume", "--out", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot be read" in err, err


def test_cli_reports_the_repair(tmp_path, capsys):
    path = tmp_path / "cli.zarr"
    assert main([*CLI_RUN, "--out", str(path)]) == 0
    first = capsys.readouterr().out
    chunk_file(path, "sigma", 1, 0, 0).unlink()
    assert main([*CLI_RUN, "--resume", "--out", str(path)]) == 0
    out = capsys.readouterr().out
    assert "repaired damaged chunk(s) 1" in out, out
    assert out.splitlines()[-1] == first.splitlines()[-1]  # the same means


# ------------------------------------------------------------------ one writer
def test_second_writer_refuses_at_once_naming_the_holder(tmp_path, clean):
    path = tmp_path / "s.zarr"
    started, release = threading.Event(), threading.Event()
    real = ens_chunk.run_chunk

    def slow(**task):
        started.set()
        assert release.wait(60)
        return real(**task)

    ens_chunk.run_chunk = slow
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ds", run(store=path)))
    thread.start()
    try:
        assert started.wait(60)
        for kw in ({"overwrite": True, "seed": 12}, {"resume": True}):
            t0 = time.monotonic()
            with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
                run(store=path, **kw)
            assert time.monotonic() - t0 < 5
        assert verify_store(path)["locked_by"].startswith(f"pid {os.getpid()}")
    finally:
        release.set()
        thread.join(120)
        ens_chunk.run_chunk = real
    assert_bitwise(result["ds"], clean)  # the first run is untouched
    assert not lock_path(path).exists()
    assert verify_store(path)["locked_by"] is None


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1] + ".lock", os.O_RDWR | os.O_CREAT, 0o644)  # as store_lock does
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"pid {os.getpid()} on test, started now".encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_lock_of_a_killed_process_is_stale_and_taken_over(tmp_path, clean, caplog, capsys):
    path = tmp_path / "k.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(LOCK_HOLDER), str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked, match=f"pid {proc.pid} "):
            run(store=path)
        argv = ["ensemble", "--members", "4", "--t-end", "0.1", "--scheduler", "serial"]
        assert main([*argv, "--out", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {proc.pid}" in err, err
    finally:
        proc.kill()
        proc.wait(30)
    assert lock_path(path).exists()  # SIGKILL left the file, but the kernel dropped the lock
    with caplog.at_level(logging.WARNING, logger="dlnsim"):
        ds = run(store=path)
    assert f"stale lock (pid {proc.pid}" in caplog.text
    assert_bitwise(ds, clean)


def test_overwrite_swaps_the_new_store_in(tmp_path, clean):
    path = tmp_path / "o.zarr"
    run(store=path, seed=5)
    old = xr.open_zarr(path, consolidated=False)
    assert old.attrs["seed"] == "5"
    seen = []
    real = ens_chunk.run_chunk

    def look(**task):  # while the new run computes, the old store is whole at its name
        seen.append(xr.open_zarr(path, consolidated=False).attrs["seed"])
        return real(**task)

    ens_chunk.run_chunk = look
    try:
        ds = run(store=path, overwrite=True)
    finally:
        ens_chunk.run_chunk = real
    assert seen and set(seen) == {str(SEED)}  # the new store was swapped in before the chunks
    assert_bitwise(ds, clean)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"]  # no scratch or lock left


def test_overwrite_that_fails_to_lay_out_keeps_the_old_store(tmp_path, monkeypatch):
    path = tmp_path / "f.zarr"
    run(store=path, seed=5)
    real = ens_zarr_sink.ZarrSink._create

    def full_disk(self, schema, target):
        real(self, schema, target)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(ens_zarr_sink.ZarrSink, "_create", full_disk)
    with pytest.raises(OSError, match="No space"):
        run(store=path, overwrite=True)
    assert verify_store(path)["state"] == "complete"
    assert xr.open_zarr(path, consolidated=False).attrs["seed"] == "5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.zarr"]


# ------------------------------------------------------------------ I/O faults
@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (root, where ``mount`` works), else None."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def test_full_disk_mid_run_then_resume_on_more_space(small_disk, clean, capsys, monkeypatch):
    """ENOSPC while chunks are written: one line with the path and the OS reason, exit 3; the
    chunks already finished verify, and ``--resume`` with more space is bitwise the clean run.
    On a real tmpfs when it can be mounted, else ENOSPC simulated at the third chunk."""
    if small_disk is None:
        real = ens_zarr_sink.ZarrSink.write

        def write(self, chunk, result):
            if chunk == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / "sigma"))
            real(self, chunk, result)

        monkeypatch.setattr(ens_zarr_sink.ZarrSink, "write", write)
        path = ens.Path(os.environ.get("TMPDIR", "/tmp")) / f"full-{os.getpid()}.zarr"
    else:
        path = small_disk / "full.zarr"
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (512 * 1024))  # fill it, then free room for the layout only
        with pytest.raises(OSError):
            ballast.write_bytes(b"\0" * (512 * 1024 + 4096))
    argv = ["ensemble", "--members", "16", "--chunk-size", "4", "--dt", "5e-3", "--seed", "11"]
    argv += ["--width", "3", "--depth", "4", "--beta", "2", "--sigma0", "1,0.6,0.3"]
    argv += ["--save-times", ",".join(map(repr, TIMES.tolist())), "--scheduler", "serial"]
    try:
        if small_disk is not None:
            for size in range(96, 512, 12):  # free space: from less than the layout upward
                shutil.rmtree(path, ignore_errors=True)
                ballast.write_bytes(b"\0" * ((512 - size) * 1024))
                code = main([*argv, "--out", str(path)])
                err = capsys.readouterr().err
                assert code == 3, (size, err)  # never completes: 512 KiB is too small
                assert "No space left on device" in err and err.count("\n") == 1, err
                if not path.exists():  # the layout did not fit: nothing at all is left
                    assert [p.name for p in small_disk.iterdir()] == ["ballast"]
                    continue
                state = verify_store(path)
                assert state["state"] == "partial" and state["chunks_damaged"] == [], state
                if state["chunks_done"] >= 1:
                    break
        else:
            code = main([*argv, "--out", str(path)])
            err = capsys.readouterr().err
            assert code == 3
            assert err == f"dlnsim: error: {path / 'sigma'}: No space left on device\n"
        state = verify_store(path)
        assert state["state"] == "partial" and state["chunks_damaged"] == [], state
        assert state["chunks_done"] >= (1 if small_disk is not None else 2)
        if small_disk is not None:
            ballast.unlink()
            remount(small_disk, "size=8m")
        else:
            monkeypatch.undo()
        assert main([*argv, "--resume", "--out", str(path)]) == 0
        assert_bitwise(xr.open_zarr(path, consolidated=False)[list(clean.data_vars)], clean)
    finally:
        if small_disk is None:
            shutil.rmtree(path, ignore_errors=True)


def test_flow_output_faults_leave_nothing_damaged(tmp_path, small_disk, capsys):
    """Before: tracebacks of up to 76 lines.  Now one line ``<path>: <reason>``, exit 3."""
    base = ["flow", "--sigma0", "0.8,0.1", "--t-end", "1", "--n-times", "3"]
    (tmp_path / "file.nc").write_bytes(b"precious")
    cases = [
        (tmp_path / "file.nc" / "x.nc", "Not a directory"),
        ("/proc/x.nc", "/proc/x.nc:"),
    ]
    for out, reason in cases:
        assert main([*base, "--out", str(out)]) == 3
        err = capsys.readouterr().err
        assert err.startswith("dlnsim: error: ") and reason in err and err.count("\n") == 1, err
    (tmp_path / "dir.nc").mkdir()
    assert main([*base, "--out", str(tmp_path / "dir.nc")]) == 3
    assert "exists and is not a netcdf file" in capsys.readouterr().err
    if small_disk is not None:
        old = small_disk / "old.nc"
        old.write_bytes(b"precious")
        (small_disk / "ballast").write_bytes(b"\0" * (500 * 1024))
        assert main([*base, "--out", str(old)]) == 3
        assert f"{old}: No space left on device" in capsys.readouterr().err
        assert old.read_bytes() == b"precious"
        assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "old.nc"]
        (small_disk / "ballast").unlink()
        remount(small_disk, "ro")
        assert main([*base, "--out", str(old)]) == 3
        assert "Read-only file system" in capsys.readouterr().err
        code = main(["ensemble", "--members", "2", "--out", str(small_disk / "e.zarr")])
        assert code == 3 and "Read-only file system" in capsys.readouterr().err
        assert old.read_bytes() == b"precious"
    assert (tmp_path / "file.nc").read_bytes() == b"precious"


# ------------------------------------------------------------------ sizes and overflow
@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["ensemble", "--members", "1000000000000"], "members"),
        (["ensemble", "--width", "1000000000000"], "width"),
        (["ensemble", "--save-times", "0,1", "--members", "100000000000"], "members"),
        (["flow", "--sigma0", "0.8,0.1", "--n-times", "1000000000000"], "n-times"),
        (["ensemble", "--t-end", "1e308", "--members", "2"], "dt"),
        (["ensemble", "--dt", "5e-324", "--members", "2"], "dt"),
        (["flow", "--sigma0=1e-320,0.1", "--t-end", "1", "--n-times", "3"], "sigma0"),
        (["flow", "--sigma0", "0.8,0.1", "--beta", "1e-300"], "beta"),
    ],
)
def test_impossible_sizes_and_overflows_are_refused_up_front(tmp_path, capsys, argv, name):
    """Before: MemoryError / OverflowError tracebacks, or a hang (``--sigma0=1e-320,...``)."""
    t0 = time.monotonic()
    code = main([*argv, "--scheduler", "serial"] if argv[0] == "ensemble" else argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"dlnsim: error: bad {name}=") and err.count("\n") == 1
    assert time.monotonic() - t0 < 30
    assert not any(tmp_path.iterdir())


def test_flow_failure_exits_4_with_the_reason_and_no_file(tmp_path, capsys):
    """Before: exit 0 and ``sigma(1) = [nan, nan]``."""
    out = tmp_path / "f.nc"
    code = main(["flow", "--sigma0", "0.8,0.1", "--p", "0.001", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 4 and "gradient flow failed: member 0:" in err and err.count("\n") == 1
    assert not out.exists() and not any(tmp_path.iterdir())


def test_flow_api_failures_are_documented_and_bounded():
    model = Model(2, 10, 5.0, Schatten(0.001))
    ds = gradient_flow(model, [0.8, 0.1], [0.0, 0.5, 10.0])
    assert ds.status.item() == -1 and ds.attrs["failures"].startswith("member 0:")
    np.testing.assert_array_equal(ds.sigma.values[0], [0.8, 0.1])  # kept up to the failure
    assert np.isnan(ds.sigma.values[1:]).all()
    t0 = time.monotonic()  # a budget of evaluations ends any integration
    ds = gradient_flow(MODEL, [[0.8, 0.1, 0.05]] * 2, [0, 1], max_evaluations=5)
    assert np.all(ds.status.values == -1) and "max_evaluations=5" in ds.attrs["failures"]
    assert time.monotonic() - t0 < 10
    with pytest.raises(ens_flow.FlowFailed, match="member 0: gave up after max_evaluations=5"):
        gradient_flow(MODEL, [0.8, 0.1, 0.05], [0.0, 1.0], max_evaluations=5, on_failure="raise")
    with pytest.raises(ValueError, match=r"^bad times=\[0.0\]: must end after 0"):
        gradient_flow(MODEL, [0.8, 0.1, 0.05], [0.0])  # before: AttributeError
    with pytest.raises(ValueError, match="^bad sigma0="):
        gradient_flow(Model(2, 10, 5.0, Schatten(2.0)), [1e-320, 0.1], [0.0, 1.0])
    # the smallest start allowed integrates normally (the old hang was below it)
    ds = gradient_flow(Model(2, 10, 5.0, Schatten(2.0)), [0.1, 1e-150], [0.0, 1.0])
    assert ds.status.item() == 0 and np.all(np.isfinite(ds.sigma.values))


# ------------------------------------------------------------------ clusters
def test_bad_scheduler_is_one_line_at_once(tmp_path, capsys):
    """Before: the error line, a 60 s hang, then a ``Client.__del__`` traceback."""
    t0 = time.monotonic()
    code = main(["ensemble", "--members", "2", "--scheduler", "foo", "--seed", "1",
                 "--out", str(tmp_path / "x.zarr")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "dlnsim: error: bad scheduler='foo': must be 'local', 'serial' or an address "
        "tcp://HOST:PORT\n"
    )
    assert time.monotonic() - t0 < 10 and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cluster_without_workers_times_out_saying_what_to_do(tmp_path, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "scheduler.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        out = tmp_path / "w.zarr"
        t0 = time.monotonic()
        code = main(["ensemble", "--members", "4", "--chunk-size", "2", "--t-end", "0.1",
                     "--seed", "1", "--scheduler", address, "--cluster-timeout", "3",
                     "--out", str(out)])  # fmt: skip
        took = time.monotonic() - t0
        err = capsys.readouterr().err
        assert code == 3, err
        assert f"the Dask cluster {address} has had no worker for 3 s" in err
        assert "start workers" in err and "--resume" in err and err.count("\n") == 1
        assert took < 40
        assert verify_store(out)["state"] == "partial"  # a valid store to resume later
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# ------------------------------------------------------------------ fuzzing the options
class _Expensive(BaseException):
    """Raised instead of a long computation the options asked for: valid input, not run."""


def _option_values():
    from hypothesis import strategies as st

    special = ["0", "-1", "1", "2", "3", "0.5", "1e308", "-1e308", "5e-324", "1e-320", "nan",
               "inf", "-inf", "1000000000000", "1e12", "", " ", "abc", "1,2", "1,,2", "0x10",
               "True", "inf,1", "é", "1;2", "--x"]  # fmt: skip
    text = st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=6,
    )
    number = st.floats(allow_nan=True, allow_infinity=True).map(repr)
    return st.one_of(
        st.sampled_from(special),
        st.sampled_from(["1e308", "5e-324", "1e-320", "1000000000000", "nan"]),  # more often
        st.integers(-(10**13), 10**13).map(str),
        number,
        st.lists(number, min_size=1, max_size=4).map(",".join),
        text,
    )


FUZZ = {
    "flow": (
        ["flow", "--sigma0", "0.8,0.1", "--t-end", "1", "--n-times", "3"],
        ["--width", "--depth", "--beta", "--p", "--sigma0", "--t-end", "--n-times"],
    ),
    "ensemble": (
        ["ensemble", "--members", "2", "--t-end", "0.05", "--dt", "0.01", "--seed", "1",
         "--scheduler", "serial"],
        ["--width", "--depth", "--beta", "--p", "--sigma0", "--members", "--seed", "--t-end",
         "--dt", "--save-times", "--temperature", "--reductions", "--chunk-size",
         "--cluster-timeout"],
    ),  # fmt: skip
    "depth": (
        ["depth"],
        ["--width", "--beta", "--p", "--initial", "--depths", "--tau-end", "--n-times",
         "--members", "--dt", "--seed", "--ensemble-tau-end", "--name"],
    ),  # fmt: skip
    "repulsion": (["repulsion"], ["--rows", "--seed", "--dt", "--systems", "--name"]),
}


@pytest.mark.parametrize("command", list(FUZZ))
def test_fuzzed_options_never_end_in_a_traceback_or_leave_files(command, monkeypatch, capsys):
    """Random values (huge, tiny, NaN, inf, strings, lists) for one or two options of each
    command: the result is exit 0, or one ``dlnsim: error:`` line with exit 2/3/4 and no file
    left behind.  Long computations are cut off (valid input, counted as accepted); the memory
    limit is lowered to 256 MiB so that a size near it is refused rather than allocated."""
    from functools import partial

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import dlnsim.analysis.pipeline as pipeline
    import dlnsim.particles as particles
    import dlnsim.particles.validation as validation

    monkeypatch.setattr(validation, "physical_memory", lambda: 256 * 2**20)
    real_chunk = ens_chunk.run_chunk

    def bounded_chunk(**task):
        steps = np.ceil(task["times"][-1] / task["dt"])
        if len(task["starts"]) * steps * task["model"].width ** 2 > 2e6:
            raise _Expensive
        return real_chunk(**task)

    monkeypatch.setattr(ens_chunk, "run_chunk", bounded_chunk)
    monkeypatch.setattr(particles, "gradient_flow", partial(gradient_flow, max_evaluations=20000))

    def not_run(*args, **kwargs):
        raise _Expensive

    monkeypatch.setattr(pipeline, "run_experiments", not_run)
    base, options = FUZZ[command]
    values = _option_values()
    home = os.getcwd()

    @settings(
        max_examples={"flow": 20, "ensemble": 30}.get(command, 20),
        derandomize=True,  # the same examples in every CI run
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(st.tuples(st.sampled_from(options), values), min_size=1, max_size=1))
    def check(changes):
        import tempfile

        argv = [*base, *(f"{opt}={value}" for opt, value in changes)]
        with tempfile.TemporaryDirectory() as where:
            os.chdir(where)
            try:
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse
                    code = exc.code
                except _Expensive:
                    return
                err = capsys.readouterr().err
                assert "Traceback" not in err, (argv, err)
                if code != 0:
                    assert code in (2, 3, 4), (argv, code, err)
                    errors = [line for line in err.splitlines() if "error:" in line]
                    assert len(errors) == 1, (argv, err)
                    assert errors[0].startswith(("dlnsim: error: ", f"dlnsim {command}: error: "))
                    assert os.listdir(where) == [], (argv, err, os.listdir(where))
            finally:
                os.chdir(home)

    check()


def test_depth_with_a_huge_beta_names_beta_before_computing():
    """Before: 24 s of flows, then "need two finite depths >= 16" (the cause: (d-1)/(2 beta)
    underflows to 0, so every depth has the same sigma_* = 0)."""
    from dlnsim.analysis.experiments.depth import depth_sweep

    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"^bad beta=1e\+308: the entropic force"):
        depth_sweep(6, 1e308, 2.0, [2.0, 1.37, 0.94, 0.64, 0.44, 0.3], [0.0, 1.0])
    assert time.monotonic() - t0 < 5


def test_an_internal_error_is_one_line_exit_1_and_its_traceback_on_request(monkeypatch, capsys):
    import dlnsim.analysis.cli as cli

    def broken(args):
        raise AttributeError("'list' object has no attribute 'get'")

    monkeypatch.setitem(cli.COMMANDS, "flow", broken)
    assert main(["flow", "--sigma0", "1,2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dlnsim: error: internal error (AttributeError: ")
    assert err.count("\n") == 1
    monkeypatch.setenv("DLNSIM_TRACEBACK", "1")
    with pytest.raises(AttributeError):
        main(["flow", "--sigma0", "1,2"])


def test_dlnsim_info_shows_the_verification_state(partial, capsys):
    """``dlnsim info`` reports what ``verify_store`` finds: a partial store verifies, a
    damaged chunk is named with the advice to resume (issue 17, item 1)."""
    assert main(["info", str(partial)]) == 0
    out = capsys.readouterr().out
    assert "verified:    partial; 3 chunks verified against checksums" in out
    DAMAGE["garble sigma chunk"](partial)
    assert main(["info", str(partial)]) == 0
    out = capsys.readouterr().out
    assert "verified:    damaged; 2 chunks verified against checksums" in out
    assert "damaged chunks [2] (--resume recomputes them)" in out
