"""The ensemble runner's grouped options (``Execution``, ``Storage``, ``Output``) and its declared
result layout (issue 13 item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from dlnsim.particles import DysonModel, MatrixVariant, Model, Schatten
from dlnsim.particles.datasets import trajectory_dataset
from dlnsim.particles.ensemble import Execution, Output, Storage, langevin_ensemble
from dlnsim.particles.ensemble import plan as ens_plan

MODEL = Model(3, 4, 2.0, Schatten(2.0))
SIGMA0 = [1.0, 0.6, 0.3]
TIMES = np.linspace(0.0, 0.1, 3)
CORE = (MODEL, SIGMA0, TIMES, 7, 1e-2, 11)


def assert_same(a, b):
    assert list(a.data_vars) == list(b.data_vars)
    for name in a.data_vars:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


def test_grouped_options_give_bitwise_the_flat_keywords_result(tmp_path):
    flat = langevin_ensemble(
        *CORE, chunk_size=3, scheduler="serial", reductions="sigma,spread", progress=False
    )
    grouped = langevin_ensemble(
        *CORE,
        execution=Execution(chunk_size=3, scheduler="serial", progress=False),
        output=Output(reductions=("spread", "sigma")),
    )
    assert_same(flat, grouped)
    assert grouped.attrs["chunk_size"] == 3 and grouped.attrs["reductions"] == "sigma,spread"
    stored = langevin_ensemble(
        *CORE,
        execution=Execution(chunk_size=2, scheduler="serial"),
        storage=Storage(store=tmp_path / "g.zarr"),
        output=Output(reductions="sigma,spread", save_members=True),
    ).load()
    assert_same(flat, stored)  # another chunking and a store: the same numbers
    resumed = langevin_ensemble(
        *CORE, storage=Storage(tmp_path / "g.zarr", resume=True), reductions="sigma,spread"
    ).load()
    assert_same(flat, resumed)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"execution": Execution(chunk_size=3), "chunk_size": 3}, "chunk_size"),
        ({"execution": Execution(), "scheduler": "serial"}, "scheduler"),
        ({"storage": Storage(), "store": None}, "store"),
        ({"output": Output(), "reductions": "sigma"}, "reductions"),
        ({"output": Output(), "save_members": True}, "save_members"),
        ({"execution": {"chunk_size": 3}}, "execution"),
        ({"storage": "run.zarr"}, "storage"),
        ({"output": Execution()}, "output"),
    ],
)
def test_a_keyword_and_its_options_object_are_not_both_given(kw, name):
    with pytest.raises(ValueError, match=f"^bad {name}="):
        langevin_ensemble(*CORE, **kw)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Execution(chunk_size=0), "chunk_size"),
        (lambda: Execution(scheduler="somewhere"), "scheduler"),
        (lambda: Execution(progress="yes"), "progress"),
        (lambda: Execution(cluster_timeout=0.0), "cluster_timeout"),
        (lambda: Storage(store="run.nc"), "store"),
        (lambda: Storage(resume=True), "resume"),
        (lambda: Storage(store="x.zarr", overwrite="no"), "overwrite"),
        (lambda: Output(reductions=("mean",)), "reductions"),
        (lambda: Output(save_members=False), "save_members"),
    ],
)
def test_options_objects_validate_when_built(make, name):
    with pytest.raises(ValueError, match=f"^bad {name}="):
        make()


def test_options_are_frozen_and_normalized():
    out = Output(reductions="spread, sigma")
    assert out.reductions == ("sigma", "spread")
    assert Storage(store="a.zarr").path.name == "a.zarr" and Storage().path is None
    with pytest.raises(AttributeError):
        out.save_members = False  # type: ignore[misc]


@pytest.mark.parametrize("rescaled", [False, True])
@pytest.mark.parametrize(
    "model",
    [MODEL, MatrixVariant(3, 4, 2.0, Schatten(2.0)), DysonModel(3, 2.0)],
    ids=["chamber", "matrix", "dyson"],
)
def test_declared_layout_is_the_trajectory_dataset_layout(model, rescaled):
    """The declared variables (dims, dtype, attrs) and coordinates of a result are exactly
    those ``datasets.trajectory_dataset`` builds for the same model (catches a declared
    long_name, unit or dim drifting from the single-run datasets)."""
    starts = np.tile(np.sort(np.asarray(SIGMA0))[::-1], (2, 1))
    plan = ens_plan.Plan(model, starts, TIMES, 2, 1e-2, 0, 0.5, rescaled, 1, ("sigma",), True)
    ref = trajectory_dataset(np.broadcast_to(starts[0], (2, 3, 3)), TIMES, model, rescaled=rescaled)
    schema = plan.schema()
    for name in ("sigma", "energy", "free_energy"):
        assert schema[name].dims == ref[name].dims, name
        assert schema[name].dtype == ref[name].dtype, name
        assert schema[name].attrs == ref[name].attrs, name
    for name, (dim, values, attrs) in plan.coords().items():
        assert (dim,) == ref[name].dims and attrs == ref[name].attrs, name
        np.testing.assert_array_equal(values, ref[name].values)
        assert np.asarray(values).dtype == ref[name].dtype, name
    provenance = {k: v for k, v in ref.attrs.items() if k not in ("history", "created")}
    assert {k: plan.provenance[k] for k in provenance} == provenance
