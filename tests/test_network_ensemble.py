"""The matrix Langevin ensemble on the particles' ensemble runner (issue 15 item 5).

``network.langevin_ensemble`` runs through ``particles.ensemble``'s runner with the layout
``network.ensemble.MATRIX``: these tests check the runner's guarantees for a matrix state.

Truth used here.  Member ``k`` of a run draws only from ``(seed, k)``, so its path must be
bitwise the path ``simulate_matrix_members`` gives it alone (the block engine, tested against
exact laws in test_network_langevin.py), whatever the chunking, the executor (in-process, Dask
threads, a worker process) or an interruption and resume.  The reductions are checked against
numpy's mean and sample variance over the members (to rounding: the tree sums in another
order).  Everything is deterministic (fixed seeds); runs are tiny (d = 3, 6 members, 4 steps).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from dlnsim.network import langevin_ensemble, simulate_matrix_members
from dlnsim.network.ensemble import MATRIX
from dlnsim.particles import Model, Schatten
from dlnsim.particles import langevin_ensemble as particle_ensemble
from dlnsim.particles.ensemble import chunk as ens_chunk
from dlnsim.particles.store import verify_store

distributed = pytest.importorskip("distributed")

try:  # the public model of dlnsim.network (issue 15 items 1-2)
    from dlnsim.network import MatrixModel, Spectral
except ImportError:  # pragma: no cover - until it lands: particles.Model has the four fields
    MatrixModel = Spectral = None


def matrix_model(width, depth, beta, energy):
    """A ``MatrixModel`` with a spectral energy, or ``particles.Model`` (the same fields the
    engine reads: width, depth, beta, energy; importable by Dask worker processes)."""
    if MatrixModel is None:
        return Model(width, depth, beta, energy)
    return MatrixModel(width, depth, beta, Spectral(energy))


D, MEMBERS, DT, SEED = 3, 6, 0.05, 8
TIMES = np.array([0.1, 0.2])
MODEL = matrix_model(D, 2, 1.0, Schatten(2))
STARTS = np.eye(D) + 0.1 * np.random.default_rng(0).standard_normal((MEMBERS, D, D))
ALL = ("sigma", "free_energy", "spread")
TRAJECTORIES = ("X", "sigma", "energy", "free_energy")


def run(**kwargs):
    args = {"reductions": ALL, "progress": False, "metropolis": True}
    if not kwargs.get("resume"):  # on resume the stored chunk size
        args["chunk_size"] = MEMBERS
    args.update(kwargs)
    starts = args.pop("starts", STARTS)
    seed = args.pop("seed", SEED)
    return langevin_ensemble(MODEL, starts, TIMES, MEMBERS, DT, seed, **args)


def assert_bitwise(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=True), name


@pytest.fixture(scope="module")
def reference():
    """Serial, one chunk holding every member, Metropolis-adjusted."""
    return run()


# ------------------------------------------------------------- bitwise identity
def test_bitwise_for_any_chunking_and_executor(reference):
    """Chunks of 1, 2, 4 (uneven), and a Dask LocalCluster (threads) give the same bits;
    each member's path is the one the block engine gives it alone.  Planted: keying the noise
    by the position in the chunk (``members - members[0]`` in ``MatrixLayout.block``) fails
    at chunk_size=1 (X differs)."""
    for chunk_size in (1, 2, 4):
        assert_bitwise(run(chunk_size=chunk_size), reference)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc, set_as_default=False) as client,
    ):
        on_dask = run(client=client, chunk_size=2)
    assert on_dask.attrs["executor"].startswith("dask client")
    assert_bitwise(on_dask, reference)
    alone = simulate_matrix_members(MODEL, STARTS[4:5], [4], TIMES, DT, SEED, metropolis=True)
    assert np.array_equal(alone.x[0], reference.X.values[4])
    assert np.array_equal(alone.accepted[0], reference.accepted.values[4])
    assert not np.array_equal(reference.X.values[0], reference.X.values[1])
    # the reductions are the ensemble mean and sample variance of sigma and F over members
    sigma = reference.sigma.values
    np.testing.assert_allclose(reference.sigma_mean.values, sigma.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(reference.sigma_var.values, sigma.var(axis=0, ddof=1), rtol=1e-11)
    free = reference.free_energy.values
    np.testing.assert_allclose(reference.free_energy_mean.values, free.mean(axis=0), rtol=1e-13)
    spread = sigma.max(axis=-1) - sigma.min(axis=-1)
    np.testing.assert_allclose(reference.spread_var.values, spread.var(axis=0, ddof=1), rtol=1e-11)
    assert np.all(reference.sigma_count.values == MEMBERS)


@pytest.mark.slow
def test_bitwise_on_a_worker_process(reference, external_scheduler):
    """A separate ``dask worker`` process (the model and the layout are pickled to it)."""
    ds = run(scheduler=external_scheduler, chunk_size=4)
    assert external_scheduler in ds.attrs["executor"]
    assert_bitwise(ds, reference)


# ------------------------------------------------------------- store, resume
def test_store_interrupted_then_resumed(reference, tmp_path, monkeypatch):
    """Ctrl-C in the third chunk leaves a readable, verifiable partial store; ``resume``
    (seed and chunk size from the store) runs only the missing chunks and gives the same bits;
    a damaged chunk is recomputed.  Planted: ``ZarrSink.write`` returning before it sets
    ``chunk_done`` fails (chunk_done stays [0, 0, 0]); dropping the member-keyed streams fails
    the bitwise comparison after the resume."""
    path = tmp_path / "m.zarr"
    real = ens_chunk.run_chunk
    calls = []

    def interrupted(**task):
        calls.append(task["first"])
        if calls == [0, 2, 4]:
            raise KeyboardInterrupt
        return real(**task)

    monkeypatch.setattr(ens_chunk, "run_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(store=path, chunk_size=2)
    part = xr.open_zarr(path, consolidated=False)
    assert part.attrs["complete"] == 0 and part.attrs["kind"] == "network_langevin_ensemble"
    np.testing.assert_array_equal(part.chunk_done.values, [1, 1, 0])
    assert np.isfinite(part.X.values[:4]).all() and np.isnan(part.X.values[4:]).all()
    np.testing.assert_array_equal(part.X0.values, STARTS)
    state = verify_store(path)
    assert state["state"] == "partial" and state["chunks_done"] == 2, state
    calls.clear()
    ds = run(store=path, resume=True, seed=None)
    assert calls == [4]  # only the chunk not done
    assert_bitwise(ds.load(), reference)
    assert verify_store(path)["state"] == "complete"
    # damage: a chunk of X overwritten behind the runner's back is found and recomputed
    zarr.open_group(str(path), mode="r+")["X"][2:4] = 0.0
    assert verify_store(path)["chunks_damaged"] == [1]
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = run(store=path, resume=True)
    assert calls == [2] and ds.attrs["repaired_chunks"] == "1"
    assert_bitwise(ds.load(), reference)


def test_store_refuses_another_kind_or_other_parameters(tmp_path):
    """A matrix store resumes only with the same kind and parameters; the particles' runner
    refuses it and the matrix runner refuses a particle store.  Planted: dropping the kind
    comparison in ``check_resume`` lets the particle run reach its parameters (it fails on
    ``sigma0`` instead of naming the kind)."""
    path = tmp_path / "m.zarr"
    run(store=path, chunk_size=3, metropolis=False, reductions=())
    with pytest.raises(ValueError, match="^bad store=.*exists"):
        run(store=path, metropolis=False, reductions=())
    with pytest.raises(ValueError, match="^bad dt="):
        langevin_ensemble(MODEL, STARTS, TIMES, MEMBERS, 0.025, SEED, store=path, resume=True)
    with pytest.raises(ValueError, match="^bad metropolis="):
        run(store=path, resume=True, reductions=())
    with pytest.raises(ValueError, match="^bad X0="):
        run(store=path, resume=True, starts=2 * STARTS, metropolis=False, reductions=())
    particles = Model(D, 2, 1.0, Schatten(2))
    with pytest.raises(ValueError, match="^bad store=.*not a dlnsim langevin_ensemble store.*"
                       "holds a network_langevin_ensemble"):  # fmt: skip
        particle_ensemble(particles, [1.0, 0.7, 0.4], TIMES, MEMBERS, DT, SEED, store=path,
                          resume=True, chunk_size=3)  # fmt: skip
    other = tmp_path / "p.zarr"
    particle_ensemble(particles, [1.0, 0.7, 0.4], TIMES, MEMBERS, DT, SEED, store=other,
                      chunk_size=3, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="^bad store=.*not a dlnsim network_langevin_ensemble"):
        run(store=other, resume=True, chunk_size=3, metropolis=False, reductions=())
    assert verify_store(path)["state"] == "complete"  # nothing above touched it


# ------------------------------------------------------------- failures
def test_a_failing_member_leaves_the_others_bitwise_unchanged():
    """Member 1 starts at 100 I with E = sum sigma^4 / 4: it overflows within t = 0.5.  It is
    flagged, its failure time and last finite state recorded, it is left out of the
    reductions, and members 0, 2.. are bitwise those of a run where member 1 is healthy,
    in one chunk and in chunks of 1.  Planted: not dropping failed members from the
    reductions (``use`` all True in ``run_chunk``) counts it at t = 0 (sigma_count 4)."""
    mod = matrix_model(2, 2, 1.0, Schatten(4))
    starts = np.stack([np.eye(2), 100.0 * np.eye(2), 0.5 * np.eye(2), 0.8 * np.eye(2)])
    healthy = starts.copy()
    healthy[1] = 0.7 * np.eye(2)
    args = {"reductions": ALL, "progress": False}
    times = [0.0, 0.5, 1.0]  # at t = 0 member 1 is still finite: excluded all the same
    good = langevin_ensemble(mod, healthy, times, 4, 0.01, 1, **args)
    for chunk_size in (4, 1):
        with pytest.warns(RuntimeWarning, match="member 1 failed") as record:
            ds = langevin_ensemble(mod, starts, times, 4, 0.01, 1, chunk_size=chunk_size,
                                   **args)  # fmt: skip
        assert record[0].filename == __file__  # the warning points at the caller's line
        np.testing.assert_array_equal(ds.failed.values, [0, 1, 0, 0])
        assert 0 < ds.failed_time.values[1] <= 0.5
        assert np.isnan(ds.failed_time.values[[0, 2, 3]]).all()
        assert np.array_equal(ds.X.values[1, 0], starts[1])
        assert np.isnan(ds.X.values[1, 1:]).all() and np.isfinite(ds.last_finite.values[1]).all()
        assert np.abs(ds.last_finite.values[1]).max() > 100.0  # on its way out, not the start
        assert ds.attrs["n_failed"] == 1 and "member 1" in ds.attrs["failures"]
        keep = [0, 2, 3]
        for name in ("X", "sigma", "free_energy", "accepted", "steps", "last_finite"):
            assert np.array_equal(ds[name].values[keep], good[name].values[keep]), name
        np.testing.assert_array_equal(ds.sigma_count.values, 3)
        np.testing.assert_allclose(
            ds.sigma_mean.values, ds.sigma.values[keep].mean(axis=0), rtol=1e-13
        )


def test_particle_failure_warnings_still_point_at_the_caller():
    """``particles.langevin_ensemble`` now calls the shared ``run_ensemble``: its warnings
    must still name the caller's line (planted: the old stack levels point into runner.py)."""
    with pytest.warns(RuntimeWarning, match="member 0 failed") as record:
        particle_ensemble(Model(3, 2, 1.0, Schatten(2)), [1e150, 1.0, 0.5], TIMES, 1, DT, 1,
                          progress=False)  # fmt: skip
    assert record[0].filename == __file__


# ------------------------------------------------------------- the dataset
def test_dataset_dims_attrs_and_units(reference):
    """Dims, long names, units, the run's parameters in attrs; ``save_members=False`` keeps
    the per-member records and the reductions (bitwise), drops the trajectories."""
    dims = {
        "X": ("member", "time", "row", "col"),
        "sigma": ("member", "time", "particle"),
        "energy": ("member", "time"),
        "free_energy": ("member", "time"),
        "X0": ("member", "row", "col"),
        "last_finite": ("member", "row", "col"),
        "failed": ("member",),
        "failed_time": ("member",),
        "accepted": ("member",),
        "steps": ("member",),
        "sigma_mean": ("time", "particle"),
        "free_energy_var": ("time",),
    }
    for name, want in dims.items():
        assert reference[name].dims == want, name
    for name in reference.data_vars:
        assert reference[name].attrs.get("long_name"), name
    for name in ("X", "sigma", "energy", "free_energy", "X0", "failed_time", "last_finite"):
        assert reference[name].attrs["units"] == "1", name
    assert reference.X.dtype == np.float64 and reference.failed.dtype == np.int8
    assert "reflections" not in reference and "sigma0" not in reference
    np.testing.assert_array_equal(reference.particle.values, np.arange(1, D + 1))
    np.testing.assert_array_equal(reference.row.values, np.arange(D))
    np.testing.assert_array_equal(reference.time.values, TIMES)
    attrs = reference.attrs
    assert attrs["kind"] == "network_langevin_ensemble" and attrs["start_variable"] == "X0"
    assert attrs["seed"] == str(SEED) and attrs["metropolis"] == 1 and attrs["dt"] == DT
    assert attrs["width"] == D and attrs["beta"] == 1.0 and attrs["temperature"] == 1.0
    assert "Metropolis uniforms" in attrs["seeding_scheme"] and attrs["complete"] == 1
    assert np.all(reference.steps.values == 4)
    assert np.all((reference.accepted.values >= 0) & (reference.accepted.values <= 4))
    # the singular values saved are those of the saved X
    svd = np.linalg.svd(reference.X.values, compute_uv=False)
    np.testing.assert_allclose(reference.sigma.values, svd, rtol=1e-12)
    small = run(save_members=False, chunk_size=2)
    for name in TRAJECTORIES:
        assert name not in small
    for name in small.data_vars:
        assert np.array_equal(small[name].values, reference[name].values, equal_nan=True), name


def test_options_and_seed():
    """The runner's option checks apply; without a seed one is drawn and stored."""
    from dlnsim.particles.ensemble import Execution

    with pytest.raises(ValueError, match="^bad chunk_size="):
        run(execution=Execution(chunk_size=2), chunk_size=3)
    with pytest.raises(ValueError, match="^bad reductions="):
        run(reductions="nope")
    with pytest.raises(ValueError, match="^bad scheduler="):
        run(scheduler="nowhere")
    drawn = run(seed=None, metropolis=False, reductions=())
    again = run(seed=int(drawn.attrs["seed"]), metropolis=False, reductions=())
    assert_bitwise(drawn, again)
    assert MATRIX.kind == drawn.attrs["kind"]
