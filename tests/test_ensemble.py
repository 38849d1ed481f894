"""Langevin ensembles: bitwise reproducibility (serial, Dask, chunking), faults, Zarr, resume."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

import dlnsim.particles.ensemble as ens
from dlnsim.particles import Model, Schatten
from dlnsim.particles.ensemble import REDUCTIONS, SEEDING_SCHEME, langevin_ensemble
from dlnsim.particles.ensemble import chunk as ens_chunk
from dlnsim.particles.ensemble import executors as ens_executors
from dlnsim.particles.ensemble import options as ens_options
from dlnsim.particles.ensemble import plan as ens_plan
from dlnsim.particles.ensemble import tree as ens_tree
from dlnsim.particles.ensemble import zarr_sink as ens_zarr_sink
from dlnsim.particles.philox import NOISE_SCHEME

distributed = pytest.importorskip("distributed")

MODEL = Model(3, 4, 2.0, Schatten(2.0))
SIGMA0 = np.array([1.0, 0.6, 0.3])
TIMES = np.linspace(0.0, 0.5, 6)
DT = 5e-3
MEMBERS = 24
SEED = 20240607
ALL = ("sigma", "free_energy", "spread")


def run(**kw):
    """A small ensemble (100 steps); keyword arguments override the defaults."""
    args = dict(
        model=MODEL,
        sigma0=SIGMA0,
        times=TIMES,
        members=MEMBERS,
        dt=DT,
        seed=SEED,
        reductions=ALL,
        progress=False,
    )
    args.update(kw)
    if "client" not in args and "scheduler" not in args:
        args["scheduler"] = "serial"
    return langevin_ensemble(**args)


def assert_bitwise(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=True), name
    np.testing.assert_array_equal(a.time.values, b.time.values)


@pytest.fixture(scope="module")
def reference():
    """Serial, one chunk holding every member."""
    return run(chunk_size=MEMBERS)


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster with 2 single-threaded worker processes, and a client not set as default."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc, set_as_default=False) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client


# ------------------------------------------------------------- reduction tree
def _tree_stats(values, use, bounds, order):
    sweep = ens_tree.TreeSweep(len(bounds))
    for c in order:
        lo, hi = bounds[c]
        sweep.add(c, ens_tree.chunk_nodes(values[lo:hi], use[lo:hi], lo))
    return ens_tree.finish(sweep.result())


def test_tree_reduction_is_bitwise_independent_of_chunking_and_order():
    rng = np.random.default_rng(0)
    m = 37
    values = rng.lognormal(size=(m, 4, 2)) * 1e3
    values[5, 2:] = np.nan  # a non-finite value is skipped
    use = np.ones(m, bool)
    use[11] = False  # a failed member is skipped entirely
    results = []
    for trial in range(8):
        cuts = np.sort(rng.choice(np.arange(1, m), size=trial % 6, replace=False))
        edges = [0, *cuts.tolist(), m]
        bounds = list(zip(edges[:-1], edges[1:], strict=True))
        order = rng.permutation(len(bounds))
        results.append(_tree_stats(values, use, bounds, order))
    for mean, var, count in results[1:]:
        assert np.array_equal(mean, results[0][0], equal_nan=True)
        assert np.array_equal(var, results[0][1], equal_nan=True)
        assert np.array_equal(count, results[0][2])
    mean, var, count = results[0]
    kept = np.where(use[:, None, None] & np.isfinite(values), values, np.nan)
    np.testing.assert_allclose(mean, np.nanmean(kept, axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, np.nanvar(kept, axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_array_equal(count, np.sum(np.isfinite(kept), axis=0))


def test_dyadic_blocks_cover_the_range():
    for start, stop in [(0, 1), (0, 37), (5, 6), (3, 29), (8, 16), (13, 100)]:
        blocks = ens_tree.dyadic_blocks(start, stop)
        covered = [i for lv, ix in blocks for i in range(ix << lv, (ix + 1) << lv)]
        assert covered == list(range(start, stop))


# ------------------------------------------------------------- reproducibility
def test_result_layout_and_attrs(reference):
    ds = reference
    assert ds.sigma.dims == ("member", "time", "particle")
    assert ds.sigma.shape == (MEMBERS, TIMES.size, 3)
    for name in ("energy", "free_energy"):
        assert ds[name].dims == ("member", "time")
    assert ds.failed.dtype == np.int8 and set(np.unique(ds.failed.values)) == {0}
    assert ds.reflections.dtype == np.int64 and ds.reflections.dims == ("member",)
    assert ds.last_finite.dims == ("member", "particle")
    assert np.all(np.isnan(ds.failed_time.values))
    np.testing.assert_array_equal(ds.sigma.values[:, 0], np.broadcast_to(SIGMA0, (MEMBERS, 3)))
    assert np.all(np.diff(ds.sigma.values, axis=-1) <= 0)  # rows sorted descending
    np.testing.assert_array_equal(ds.last_finite.values, ds.sigma.values[:, -1])
    np.testing.assert_array_equal(ds.free_energy.values, MODEL.free_energy(ds.sigma.values))
    for name in ALL:
        assert ds[f"{name}_mean"].dims == ds[f"{name}_var"].dims
        assert ds[f"{name}_count"].dtype == np.int64
    assert ds.sigma_mean.dims == ("time", "particle") and ds.spread_var.dims == ("time",)
    attrs = ds.attrs
    assert attrs["kind"] == "langevin_ensemble" and attrs["seed"] == str(SEED)
    assert attrs["seeding_scheme"] == SEEDING_SCHEME and attrs["bit_generator"] == "Philox4x64-10"
    assert attrs["noise_scheme"] == NOISE_SCHEME
    for key in ("numpy_version", "dask_version", "distributed_version", "xarray_version"):
        assert attrs[key]
    assert attrs["zarr_version"] == zarr.__version__
    assert attrs["dt"] == DT and attrs["temperature"] == 0.5 and attrs["chunk_size"] == MEMBERS
    assert attrs["width"] == 3 and attrs["depth"] == "4" and attrs["beta"] == 2.0
    assert attrs["p"] == 2.0 and attrs["n_failed"] == 0 and attrs["executor"] == "in-process"
    for value in attrs.values():
        assert isinstance(value, str | int | float)


def test_bitwise_serial_chunkings_and_clusters(reference, cluster):
    results = {
        "serial chunk 5": run(chunk_size=5),
        "serial chunk 1": run(chunk_size=1),
        "2 workers chunk 3": run(client=cluster, chunk_size=3),
        "2 workers chunk 7": run(client=cluster, chunk_size=7),
    }
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc, set_as_default=False) as one,
    ):
        results["1 worker chunk 4"] = run(client=one, chunk_size=4)
        assert results["1 worker chunk 4"].attrs["executor"].startswith("dask client")
    # scheduler="local" starts its own LocalCluster for the call
    results["own LocalCluster"] = run(scheduler="local", chunk_size=6)
    assert "LocalCluster" in results["own LocalCluster"].attrs["executor"]
    for label, ds in results.items():
        assert_bitwise(ds, reference), label


def test_small_run_stays_in_process_and_active_client_is_used(reference, cluster):
    assert run(scheduler=None).attrs["executor"] == "in-process"
    with distributed.Client(cluster.scheduler.address) as active:  # set as default
        ds = run(scheduler=None, chunk_size=8)
        assert ds.attrs["executor"] == f"dask client {active.scheduler.address}"
    assert_bitwise(ds, reference)


def test_seed_is_picked_logged_and_stored(caplog):
    with caplog.at_level(logging.INFO, logger="dlnsim"):
        ds = run(seed=None, members=4)
    match = re.search(r"seed = (\d+)", caplog.text)
    assert match, caplog.text
    assert ds.attrs["seed"] == match.group(1) and int(match.group(1)) > 2**64
    again = run(seed=int(match.group(1)), members=4)
    assert_bitwise(ds, again)
    other = run(seed=int(match.group(1)) + 1, members=4)
    assert not np.array_equal(ds.sigma.values[:, 1:], other.sigma.values[:, 1:])


def test_members_are_independent_of_their_block():
    """Per-member starts; a sub-ensemble reproduces the matching members bitwise."""
    rng = np.random.default_rng(1)
    starts = rng.uniform(0.2, 2.0, size=(MEMBERS, 3))
    full = run(sigma0=starts, chunk_size=5)
    np.testing.assert_array_equal(full.sigma0.values, np.sort(starts, axis=1)[:, ::-1])
    head = run(sigma0=starts[:7], members=7, chunk_size=2)
    np.testing.assert_array_equal(head.sigma.values, full.sigma.values[:7])


# ------------------------------------------------------------- reductions
def test_reductions_match_the_saved_members(reference):
    ds = reference
    sigma = ds.sigma.values
    np.testing.assert_allclose(ds.sigma_mean.values, sigma.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(
        ds.sigma_var.values, sigma.var(axis=0, ddof=1), rtol=1e-11, atol=1e-28
    )
    free = ds.free_energy.values
    np.testing.assert_allclose(ds.free_energy_mean.values, free.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        ds.free_energy_var.values[1:], free.var(axis=0, ddof=1)[1:], rtol=1e-10
    )
    spread = sigma.max(axis=-1) - sigma.min(axis=-1)
    np.testing.assert_allclose(ds.spread_mean.values, spread.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(ds.spread_var.values[1:], spread.var(axis=0, ddof=1)[1:], rtol=1e-11)
    # the shared start has no spread over members at t = 0
    assert ds.sigma_var.values[0].max() == 0.0
    assert np.all(ds.sigma_count.values == MEMBERS) and np.all(ds.spread_count.values == MEMBERS)


def test_reductions_only_keeps_memory_small(reference, tmp_path):
    ds = run(save_members=False, chunk_size=5)
    for name in ("sigma", "energy", "free_energy"):
        assert name not in ds
    assert ds.nbytes < reference.sigma.nbytes
    for name in ALL:
        for stat in ("mean", "var", "count"):
            key = f"{name}_{stat}"
            assert np.array_equal(ds[key].values, reference[key].values, equal_nan=True), key
    task = ens_plan.Plan(
        MODEL, np.tile(SIGMA0, (5, 1)), TIMES, 5, DT, SEED, 0.5, False, 5, ALL, False
    ).task(0)
    result = ens_chunk.run_chunk(**task)
    assert "sigma" not in result and "free_energy" not in result
    store = tmp_path / "red.zarr"
    stored = run(save_members=False, chunk_size=5, store=store, reductions="sigma,spread")
    assert "sigma" not in zarr.open_group(str(store)).array_keys()
    np.testing.assert_array_equal(stored.spread_var.values, reference.spread_var.values)
    assert "free_energy_mean" not in stored


# ------------------------------------------------------------- faults
def _faulty_starts() -> np.ndarray:
    starts = np.tile(SIGMA0, (MEMBERS, 1))
    starts[5] = [1e150, 1.0, 0.5]  # the first Euler step overflows sigma
    return starts


def test_a_failing_member_is_reported_and_spares_the_others(reference, cluster):
    with pytest.warns(RuntimeWarning, match="member 5 failed at t = 0.005"):
        ds = run(sigma0=_faulty_starts(), chunk_size=4)
    with pytest.warns(RuntimeWarning, match="member 5 failed"):
        on_cluster = run(sigma0=_faulty_starts(), chunk_size=7, client=cluster)
    assert_bitwise(ds, on_cluster)
    others = np.arange(MEMBERS) != 5
    assert ds.failed.values.tolist() == [int(k == 5) for k in range(MEMBERS)]
    assert ds.failed_time.values[5] == DT and np.isnan(ds.failed_time.values[others]).all()
    np.testing.assert_allclose(ds.last_finite.values[5], [1e150, 1.0, 0.5], rtol=1e-13)
    assert np.isnan(ds.sigma.values[5, 1:]).all() and np.isnan(ds.free_energy.values[5, 1:]).all()
    for name in ("sigma", "energy", "free_energy", "reflections", "last_finite"):
        np.testing.assert_array_equal(ds[name].values[others], reference[name].values[others])
    assert ds.attrs["n_failed"] == 1 and "member 5 at t=0.005" in ds.attrs["failures"]
    # the reductions are over the 23 members that did not fail
    assert np.all(ds.sigma_count.values == MEMBERS - 1)
    kept = reference.sigma.values[others]
    np.testing.assert_allclose(ds.sigma_mean.values, kept.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(ds.sigma_var.values[1:], kept.var(axis=0, ddof=1)[1:], rtol=1e-11)


# ------------------------------------------------------------- Zarr store
def test_store_layout_and_lazy_result(reference, tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    ds = run(store=path, chunk_size=5)
    assert ds.sigma.chunks is not None  # opened lazily from the store
    assert_bitwise(ds.load(), reference)
    group = zarr.open_group(str(path), mode="r")
    for name in ("sigma", "energy", "free_energy", "reflections", "failed", "last_finite"):
        assert group[name].chunks[0] == 5, name
    np.testing.assert_array_equal(group["chunk_done"][:], np.ones(5))
    # the tree nodes stay (a later --resume repairs damaged reductions from them) but are
    # not part of the result
    assert {f"{r}_partial" for r in ALL} <= set(group.array_keys())
    assert not any(name.endswith("_partial") for name in ds.data_vars)
    back = xr.open_zarr(path, consolidated=False)
    assert back.attrs["complete"] == 1 and back.attrs["chunk_size"] == 5
    # a second run into the same store needs resume or overwrite
    with pytest.raises(ValueError, match="bad store="):
        run(store=path, chunk_size=5)

    def no_executor(*args):
        raise AssertionError("a complete store needs no executor")

    monkeypatch.setattr(ens_executors, "choose_executor", no_executor)
    again = run(store=path, resume=True, scheduler=None)  # complete already: nothing to run
    monkeypatch.undo()
    assert_bitwise(again.load(), reference)
    fresh = run(store=path, chunk_size=12, overwrite=True, client=None)
    assert fresh.attrs["chunk_size"] == 12
    assert_bitwise(fresh.load(), reference)


def test_resume_checks_the_parameters(tmp_path):
    path = tmp_path / "run.zarr"
    run(store=path, chunk_size=6, members=12)
    bad = [
        ({"seed": SEED + 1}, "seed"),
        ({"dt": 2 * DT}, "dt"),
        ({"members": 13}, "members"),
        ({"chunk_size": 4}, "chunk_size"),
        ({"temperature": 0.25}, "temperature"),
        ({"reductions": ("sigma",)}, "reductions"),
        ({"save_members": False}, "save_members"),
        ({"times": TIMES * 2}, "times"),
        ({"sigma0": SIGMA0 * 2}, "sigma0"),
        ({"model": Model(3, 4, 1.0, Schatten(2.0))}, "beta"),
        ({"model": Model(3, 5, 2.0, Schatten(2.0))}, "depth"),
    ]
    for kw, name in bad:
        args = {"members": 12, "store": path, "resume": True, **kw}
        with pytest.raises(ValueError, match=f"bad {name}="):
            run(**args)


def _dlnsim_tasks(dask_scheduler) -> int:
    return sum(str(key).startswith("dlnsim-langevin-") for key in dask_scheduler.tasks)


def test_store_failure_cancels_the_tasks_already_submitted(tmp_path, cluster, monkeypatch):
    """On a cluster the chunk tasks go out before the store is laid out (the workers compute
    meanwhile); if laying it out fails, the error reaches the caller and the tasks are
    cancelled rather than left running."""
    seen = []

    def broken(self, *args, **kwargs):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen:
            if n := cluster.run_on_scheduler(_dlnsim_tasks):
                seen.append(n)
            time.sleep(0.02)
        raise OSError("disk full")

    monkeypatch.setattr(ens_zarr_sink.ZarrSink, "__init__", broken)
    with pytest.raises(OSError, match="disk full"):
        run(client=cluster, chunk_size=4, store=tmp_path / "broken.zarr")
    assert seen and seen[0] > 0  # submitted before the store
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cluster.run_on_scheduler(_dlnsim_tasks):
        time.sleep(0.05)
    assert cluster.run_on_scheduler(_dlnsim_tasks) == 0


def test_ctrl_c_leaves_a_valid_store_and_resume_finishes_it(reference, tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    real = ens_chunk.run_chunk
    calls = []

    def interrupted(**task):
        calls.append(task["first"])
        if calls == [0, 5, 10]:  # Ctrl-C while the third chunk runs
            raise KeyboardInterrupt
        return real(**task)

    monkeypatch.setattr(ens_chunk, "run_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(store=path, chunk_size=5)
    part = xr.open_zarr(path, consolidated=False)
    assert part.attrs["complete"] == 0
    np.testing.assert_array_equal(part.chunk_done.values, [1, 1, 0, 0, 0])
    assert np.isfinite(part.sigma.values[:10]).all() and np.isnan(part.sigma.values[10:]).all()
    assert np.isnan(part.sigma_mean.values).all()
    calls.clear()
    ds = run(store=path, resume=True, seed=None)  # seed and chunk_size from the store
    assert calls == [10, 15, 20]  # only the chunks not done
    assert_bitwise(ds.load(), reference)


KILL_SCRIPT = """
import sys
import numpy as np
from dlnsim.particles import Model, Schatten
from dlnsim.particles.ensemble import langevin_ensemble

langevin_ensemble(
    Model(4, 4, 2.0, Schatten(2.0)), [1.0, 0.7, 0.4, 0.2], np.linspace(0.0, 20.0, 11), 12, 1e-3,
    seed=7, chunk_size=2, store=sys.argv[1], scheduler="serial", reductions=("sigma", "spread"),
    progress=False,
)
"""


@pytest.mark.slow
def test_sigkill_midway_then_resume_is_bitwise_a_clean_run(tmp_path, cluster, monkeypatch):
    path = tmp_path / "killed.zarr"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if (path / "chunk_done" / "zarr.json").exists():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    done = int(zarr.open_group(str(path), mode="r")["chunk_done"][:].sum())
            if done >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        assert done >= 2, "no chunk finished in time"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()
    part = xr.open_zarr(path, consolidated=False)
    flags = part.chunk_done.values
    assert part.attrs["complete"] == 0 and 2 <= flags.sum() < 6
    sigma = part.sigma.values.reshape(6, 2, 11, 4)
    assert np.isfinite(sigma[flags == 1]).all()
    # a chunk's data are written before its flag: the kill may fall between the two for the one
    # chunk being written (the serial scheduler writes one at a time); resume recomputes it
    written = np.isfinite(sigma[flags == 0]).reshape(int((flags == 0).sum()), -1).any(axis=1)
    assert written.sum() <= 1 and np.isnan(sigma[flags == 0][~written]).all()
    kw = dict(
        model=Model(4, 4, 2.0, Schatten(2.0)),
        sigma0=[1.0, 0.7, 0.4, 0.2],
        times=np.linspace(0.0, 20.0, 11),
        members=12,
        dt=1e-3,
        reductions=("sigma", "spread"),
        progress=False,
    )
    real = ens_chunk.run_chunk
    calls = []

    def counted(**task):
        calls.append(task["first"] // 2)
        return real(**task)

    monkeypatch.setattr(ens_chunk, "run_chunk", counted)
    resumed = langevin_ensemble(**kw, store=path, resume=True, scheduler="serial")
    assert calls == np.flatnonzero(flags == 0).tolist()  # only the missing chunks ran
    clean = langevin_ensemble(**kw, seed=7, chunk_size=3, client=cluster)
    assert_bitwise(resumed.load(), clean)


# ------------------------------------------------------------- external cluster
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_external_scheduler_and_worker_processes(reference, tmp_path, monkeypatch):
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = (tmp_path / "dask.log").open("w")
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
        ds = run(scheduler=address, chunk_size=5)
        assert ds.attrs["executor"] == f"dask scheduler {address}"
        assert_bitwise(ds, reference)
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        from_env = run(scheduler=None, chunk_size=9, reductions=("spread",))
        assert from_env.attrs["executor"] == f"dask scheduler {address}"
        np.testing.assert_array_equal(from_env.sigma.values, reference.sigma.values)
        np.testing.assert_array_equal(from_env.spread_var.values, reference.spread_var.values)
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


# ------------------------------------------------------------- arguments
BAD = [
    ({"model": "m"}, "model"),
    ({"members": 0}, "members"),
    ({"members": 2.5}, "members"),
    ({"members": True}, "members"),
    ({"dt": 0.0}, "dt"),
    ({"dt": float("nan")}, "dt"),
    ({"times": []}, "times"),
    ({"times": [0.0, 0.2, 0.1]}, "times"),
    ({"sigma0": [1.0, 0.5]}, "sigma0"),
    ({"sigma0": [1.0, -0.5, 0.2]}, "sigma0"),
    ({"sigma0": np.ones((5, 3))}, "sigma0"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"temperature": -1.0}, "temperature"),
    ({"rescaled": "yes"}, "rescaled"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"chunk_size": 2.0}, "chunk_size"),
    ({"reductions": ("sigma", "mean")}, "reductions"),
    ({"reductions": 3}, "reductions"),
    ({"save_members": False, "reductions": ()}, "save_members"),
    ({"save_members": "no"}, "save_members"),
    ({"store": "run.nc"}, "store"),
    ({"store": 5}, "store"),
    ({"resume": True}, "resume"),
    ({"resume": 1, "store": "x.zarr"}, "resume"),
    ({"client": "tcp://127.0.0.1:1"}, "client"),
    ({"scheduler": ""}, "scheduler"),
    ({"progress": "yes"}, "progress"),
]


@pytest.mark.parametrize(("kw", "name"), BAD, ids=[f"{n}-{i}" for i, (_, n) in enumerate(BAD)])
def test_bad_arguments(kw, name):
    with pytest.raises(ValueError, match=f"^bad {name}="):
        run(**{"members": 4, **kw})


def test_default_chunk_size():
    assert ens_plan.default_chunk_size(1000, 11, 4, threads=0) == 1000  # in-process: one chunk
    # small d: a chunk's step is cheap, so one chunk per thread (the fixed cost per step and chunk
    # would dominate smaller ones)
    assert ens_plan.default_chunk_size(1000, 11, 4, threads=2) == 500
    # enough work (>= CHUNK_PAIR_WORK / d^2 members per chunk): 4 chunks per thread
    assert ens_plan.default_chunk_size(1000, 11, 256, threads=2) == 125
    assert ens_plan.default_chunk_size(20, 11, 512, threads=2) == 10  # >= 16 members: 1 per thread
    assert ens_plan.default_chunk_size(3, 11, 4, threads=2) == 2
    big = ens_plan.default_chunk_size(10**6, 1001, 10, threads=0)  # bounded by CHUNK_BYTES
    assert big * 1001 * 10 * 8 <= ens.CHUNK_BYTES


def test_reductions_accept_a_comma_separated_string():
    assert ens_options.check_reductions("spread, sigma") == ("sigma", "spread")
    assert ens_options.check_reductions(None) == ()
    assert ens_options.check_reductions(REDUCTIONS) == REDUCTIONS
