"""Datasets: layout, provenance attributes, NetCDF and Zarr round trips."""

import math

import numpy as np
import pytest
import xarray as xr

from dlnsim.particles import Model, Schatten, gradient_flow
from dlnsim.particles.datasets import clean_attrs, load, save


@pytest.fixture(scope="module")
def flow_ds():
    model = Model(3, math.inf, 2.0, Schatten(1.5))
    sigma0 = np.array([[1.0, 0.5, 0.2], [3.0, 2.0, 1.0]])
    return gradient_flow(model, sigma0, np.linspace(0, 2, 9))


def test_layout_and_attrs(flow_ds):
    ds = flow_ds
    assert ds.sigma.dims == ("member", "time", "particle")
    assert ds.free_energy.dims == ("member", "time") and ds.energy.dims == ("member", "time")
    for name in ("sigma", "energy", "free_energy", "time"):
        assert ds[name].attrs["long_name"]
    for name in ("sigma", "energy", "free_energy"):
        assert "units" in ds[name].attrs
    attrs = ds.attrs
    assert attrs["Conventions"].startswith("CF-")
    assert attrs["depth"] == "inf" and attrs["width"] == 3 and attrs["beta"] == 2.0
    assert attrs["p"] == 1.5 and attrs["energy"] == "schatten"
    for key in ("dlnsim_version", "numpy_version", "command_line", "history", "rtol"):
        assert key in attrs
    assert ds.time.attrs["long_name"].startswith("rescaled time")
    # the stored energies are the model's
    model = Model(3, math.inf, 2.0, Schatten(1.5))
    np.testing.assert_array_equal(ds.free_energy.values, model.free_energy(ds.sigma.values))


@pytest.mark.smoke
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip_keeps_values_dtypes_attrs(flow_ds, tmp_path, suffix):
    path = save(flow_ds, tmp_path / f"run{suffix}")
    back = load(path)
    xr.testing.assert_identical(back, flow_ds)
    for name, var in flow_ds.variables.items():
        assert back[name].dtype == var.dtype, name
        assert back[name].attrs == var.attrs, name
    assert back.attrs == flow_ds.attrs


def test_clean_attrs_types():
    out = clean_attrs({"a": True, "b": np.int64(3), "c": math.inf, "d": None, "e": 0.5})
    assert out == {"a": 1, "b": 3, "c": "inf", "d": "None", "e": 0.5}


def test_bad_paths(tmp_path, flow_ds):
    with pytest.raises(ValueError, match="bad path="):
        save(flow_ds, tmp_path / "run.txt")
    with pytest.raises(ValueError, match="bad path="):
        load(tmp_path / "missing.nc")
