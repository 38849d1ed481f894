"""Saved results: CF attributes, compressed NetCDF, provenance, lazy loading, ``describe`` and
``dlnsim info`` on complete and partial files."""

from __future__ import annotations

import math
import platform
import tomllib
from pathlib import Path

import dask.array as da
import h5py
import llvmlite
import numba
import numpy as np
import pytest
import xarray as xr

from dlnsim.analysis.cli import main
from dlnsim.analysis.pipeline import DEFAULT_EXPERIMENTS, config_text, load_config
from dlnsim.particles import Model, Schatten, gradient_flow, langevin_ensemble
from dlnsim.particles.datasets import describe, extra_provenance, load, provenance, save
from dlnsim.particles.ensemble import chunk as ens_chunk

MODEL = Model(3, 4, 2.0, Schatten(2.0))
SIGMA0 = np.array([1.0, 0.6, 0.3])


@pytest.fixture(scope="module")
def flow_ds():
    starts = np.random.default_rng(0).uniform(0.1, 3.0, size=(8, 3))
    return gradient_flow(Model(3, math.inf, 2.0, Schatten(1.5)), starts, np.linspace(0, 2, 1000))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """A finished ensemble store where member 5 fails at its first step (sigma overflows)."""
    starts = np.tile(SIGMA0, (12, 1))
    starts[5] = [1e150, 1.0, 0.5]
    path = tmp_path_factory.mktemp("faulty") / "run.zarr"
    with pytest.warns(RuntimeWarning, match="member 5 failed"):
        ds = langevin_ensemble(
            MODEL, starts, [0.0, 0.05, 0.1], 12, 0.01, seed=9, chunk_size=4, store=path,
            reductions="sigma", scheduler="serial",
        )  # fmt: skip
    return path, ds


# ------------------------------------------------------------------ CF attributes
def test_time_has_no_time_standard_name_with_dimensionless_units(flow_ds, faulty):
    """CF's standard_name "time" needs units of time; the model's time is dimensionless."""
    for ds in (flow_ds, faulty[1]):
        assert ds.time.attrs["units"] == "1" and "standard_name" not in ds.time.attrs
        assert ds.time.attrs["long_name"]


def test_failed_uses_cf_flags(faulty):
    path, ds = faulty
    for what in (ds, xr.open_zarr(path, consolidated=False)):
        attrs = what.failed.attrs
        values = np.asarray(attrs["flag_values"])
        meanings = attrs["flag_meanings"].split()
        assert values.tolist() == [-1, 0, 1] and meanings == ["not_computed_yet", "ok", "failed"]
        assert values.dtype.kind == "i" and set(np.unique(what.failed.values)) <= set(values)
    assert ds.failed.values.tolist() == [int(k == 5) for k in range(12)]


# ------------------------------------------------------------------ compression
def test_netcdf_is_compressed_by_default_and_round_trips_bitwise(flow_ds, faulty, tmp_path):
    small = save(flow_ds, tmp_path / "flow.nc")
    plain = save(flow_ds, tmp_path / "flow_plain.nc", compress=False)
    # smooth trajectories in full double precision: deflate + shuffle saves ~16% here
    assert small.stat().st_size < 0.9 * plain.stat().st_size
    with h5py.File(small, "r") as fh:
        assert fh["sigma"].compression == "gzip" and fh["sigma"].shuffle
        assert fh["member"].compression is None  # tiny arrays: the chunk index would cost more
    with h5py.File(plain, "r") as fh:
        assert fh["sigma"].compression is None
    ensemble = faulty[1].load()  # NaN after a failure, int8 flags, int64 counts
    pairs = [(flow_ds, small), (flow_ds, plain), (ensemble, save(ensemble, tmp_path / "e.nc"))]
    for ds, path in pairs:
        back = load(path)
        xr.testing.assert_identical(back, ds)
        for name, var in ds.variables.items():
            assert back[name].dtype == var.dtype, name
            assert np.array_equal(back[name].values, var.values, equal_nan=True), name
    with pytest.raises(ValueError, match="bad compress="):
        save(flow_ds, tmp_path / "x.nc", compress="yes")


def test_saving_a_loaded_file_again_keeps_it_exact(flow_ds, tmp_path):
    first = save(flow_ds, tmp_path / "a.zarr")
    again = save(load(first), tmp_path / "b.nc")  # zarr encodings do not leak into NetCDF
    xr.testing.assert_identical(load(again), flow_ds)
    plain = save(load(again), tmp_path / "c.zarr", compress=False)
    xr.testing.assert_identical(load(plain), flow_ds)


# ------------------------------------------------------------------ provenance
def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == "model name":
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def test_provenance_has_versions_and_cpu_but_no_host_or_pid(flow_ds, faulty):
    for attrs in (provenance(), flow_ds.attrs, faulty[1].attrs):
        assert "host" not in attrs and "pid" not in attrs
        assert platform.node() not in attrs.values()
        assert attrs["numba_version"] == numba.__version__
        assert attrs["llvmlite_version"] == llvmlite.__version__
        assert attrs["cpu_model"] == (_cpu_model() or platform.processor() or "unknown")
        assert attrs["cpu_target"] == (
            numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
        )
        for key in ("dlnsim_version", "numpy_version", "xarray_version", "command_line"):
            assert attrs[key]


def test_extra_provenance_nests_and_ends(flow_ds):
    with extra_provenance(config="a = 1"):
        with extra_provenance(note="x"):
            inner = provenance(width=2)
        outer = provenance()
    assert inner["config"] == "a = 1" and inner["note"] == "x" and inner["width"] == 2
    assert outer["config"] == "a = 1" and "note" not in outer
    assert "config" not in provenance()


CONFIG = """# a comment that only the file has
out = "ignored"

[[experiment]]
kind = "ensemble"
name = "ens"
width = 2
members = 4
dt = 0.01
t_end = 0.1
n_times = 3
scheduler = "serial"
temperatures = [0.2]
"""


@pytest.mark.slow
def test_dlnsim_run_records_its_config_text_in_every_dataset(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "-q"]) == 0
    files = sorted(out.glob("*.nc")) + sorted(out.glob("*.zarr"))
    assert {f.name for f in files} >= {"ens.zarr", "ens_temperatures.nc"}
    for path in files:
        assert load(path).attrs["config"] == CONFIG, path.name


def test_config_text_of_the_built_in_experiments_reads_back():
    for experiments in (
        DEFAULT_EXPERIMENTS,
        [{"kind": "flow", "depth": "inf", "initial": [[0.9, 0.1], [1.5, 2.5e-3]], "beta": 1e20}],
        [{"kind": "depth", "phase_portrait": False, "name": 'q"uote', "initial": None}],
    ):
        text = config_text(experiments)
        expected = [{k: v for k, v in e.items() if v is not None} for e in experiments]
        assert tomllib.loads(text)["experiment"] == expected


def test_config_text_is_a_valid_config(tmp_path):
    path = tmp_path / "default.toml"
    path.write_text(config_text(DEFAULT_EXPERIMENTS))
    experiments, out = load_config(path)
    assert experiments == DEFAULT_EXPERIMENTS and out is None


# ------------------------------------------------------------------ lazy loading
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_load_lazy_gives_dask_arrays_with_the_same_values(flow_ds, tmp_path, suffix):
    path = save(flow_ds, tmp_path / f"run{suffix}")
    eager = load(path)
    assert all(isinstance(v.data, np.ndarray) for v in eager.data_vars.values())
    with load(path, lazy=True) as lazy:
        assert all(isinstance(v.data, da.Array) for v in lazy.data_vars.values())
        xr.testing.assert_identical(lazy.compute(), eager)
        assert float(lazy.sigma.sum()) == float(eager.sigma.sum())
    with pytest.raises(ValueError, match="bad lazy="):
        load(path, lazy=1)


# ------------------------------------------------------------------ describe / dlnsim info
def _killed_store(path: Path, monkeypatch) -> None:
    """A store left by a run interrupted while its third chunk (of five) ran."""
    real = ens_chunk.run_chunk
    calls = []

    def interrupted(**task):
        calls.append(task["first"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(**task)

    monkeypatch.setattr(ens_chunk, "run_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        langevin_ensemble(
            MODEL, SIGMA0, [0.0, 0.05], 10, 0.01, seed=4, chunk_size=2, store=path,
            reductions="sigma", scheduler="serial",
        )  # fmt: skip
    monkeypatch.undo()


def test_describe_complete_partial_and_netcdf(faulty, flow_ds, tmp_path, monkeypatch):
    path, ds = faulty
    info = describe(path)
    assert info["format"] == "zarr" and info["kind"] == "langevin_ensemble"
    assert info["dims"]["member"] == 12 and info["dims"]["particle"] == 3
    assert info["variables"]["sigma"] == ("member", "time", "particle")
    assert info["seed"] == "9" and info["parameters"]["width"] == 3
    assert info["parameters"]["dt"] == 0.01 and "numpy_version" in info["provenance"]
    assert "numpy_version" not in info["parameters"] and "created" not in info["parameters"]
    assert info["complete"] is True and (info["chunks_done"], info["chunks_total"]) == (3, 3)
    assert info["failed_members"] == [5] and info["failed_times"] == [0.01]
    assert info["members_pending"] == 0 and info["members"] == 12
    # the same ensemble saved as NetCDF: complete (from its attrs), same failures
    nc = describe(save(ds, tmp_path / "run.nc"))
    assert nc["format"] == "netcdf" and nc["complete"] is True
    assert (nc["chunks_done"], nc["chunks_total"]) == (3, 3) and nc["failed_members"] == [5]
    # a killed run: two chunks of five on disk, the other members pending
    part = tmp_path / "part.zarr"
    _killed_store(part, monkeypatch)
    info = describe(part)
    assert info["complete"] is False and (info["chunks_done"], info["chunks_total"]) == (2, 5)
    assert info["failed_members"] == [] and info["members_pending"] == 6
    # a dataset without completion state or failures (a gradient flow)
    flow = describe(save(flow_ds, tmp_path / "flow.nc"))
    assert flow["complete"] is None and flow["chunks_total"] is None
    assert flow["failed_members"] is None and flow["seed"] is None and flow["members"] == 8


def test_dlnsim_info_prints_the_description(faulty, tmp_path, capsys, monkeypatch):
    path, _ = faulty
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind:        langevin_ensemble" in out
    assert "dimensions:  member=12, time=3, particle=3" in out
    assert "seed:        9" in out and "width=3" in out
    assert "state:       complete; 3 of 3 chunks of members done" in out
    assert "failed:      1 of 12 members: 5 (t=0.01)" in out
    part = tmp_path / "part.zarr"
    _killed_store(part, monkeypatch)
    assert main(["info", str(part)]) == 0
    out = capsys.readouterr().out
    assert "INCOMPLETE (resume to finish it); 2 of 5 chunks of members done" in out
    assert "failed:      0 of 10 members; 6 members not computed yet" in out


def test_dlnsim_info_bad_paths_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file")
    (tmp_path / "empty.zarr").mkdir()
    for path in ("missing.nc", "data.txt", "junk.nc", "empty.zarr"):
        assert main(["info", str(tmp_path / path)]) == 2, path
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dlnsim: error: bad path="), err
    with pytest.raises(ValueError, match="bad path=.*does not exist"):
        describe(tmp_path / "missing.zarr")
