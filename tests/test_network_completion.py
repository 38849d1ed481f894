"""The completion experiment (issue 15 item 7; theory.md section 12): a tiny version end to end,
its parameter checks, and (behind DLNSIM_FULL_COMPLETION=1) the full size."""

import math
import os

import numpy as np
import pytest

from dlnsim.network import completion as c


def test_tiny_completion_run_summary_figure():
    p = c.CompletionParams(size=5, rank=1, observations=(8, 20), depths=(1, 3), betas=(10.0,),
                           beta_observation=1, t_end=6.0, lr=0.02)  # fmt: skip
    result = c.run(p)
    ds = result.dataset
    assert ds.error.dims == ("depth", "observations")
    assert np.all(np.isfinite(ds.error)) and np.all(np.isfinite(ds.beta_error))
    # N = 1 never fills in the unobserved entries: they stay at the start (error ~ 1)
    phi, order, q = c.problem(p)
    mask = np.zeros(25, bool)
    mask[order[:20]] = True
    unobs = ~mask.reshape(5, 5)
    x0 = 0.3 * q
    ref = np.linalg.norm(np.where(unobs, x0 - phi, 0)) / np.linalg.norm(np.where(unobs, phi, 0))
    assert float(ds.error.sel(depth=1, observations=20)) == pytest.approx(ref, rel=1e-4)
    # with 20 of 25 entries depth 3 fills in the rank-1 truth, depth 1 cannot (measured on an
    # idle run: 0.113 against 1.026, effective rank 1.1 against 2.3)
    deep = float(ds.error.sel(depth=3, observations=20))
    assert deep < 0.2 * float(ds.error.sel(depth=1, observations=20))
    assert float(ds.effective_rank.sel(depth=3, observations=20)) < float(
        ds.effective_rank.sel(depth=1, observations=20)
    )
    # the trained factors track the flow (same t = step lr)
    assert abs(float(ds.check_trained_error[-1]) - float(ds.check_flow_error[-1])) < 0.05
    lines = c.summary(result)
    assert any("trained factors" in line for line in lines)
    assert set(c.figures(result)) == {"completion"}
    assert "Roy and Vetterli" in ds.attrs["effective_rank_definition"]


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"size": 1}, "size"),
        ({"rank": 9}, "rank"),
        ({"observations": (5, 3)}, "observations"),
        ({"observations": (65,)}, "observations"),
        ({"depths": ()}, "depths"),
        ({"init": 0.0}, "init"),
        ({"betas": (-1.0,)}, "betas"),
        ({"beta_observation": 7}, "beta_observation"),
        ({"lr": 100.0}, "lr"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"^bad {name}="):
        c.CompletionParams(**kwargs)
    with pytest.raises(ValueError, match=r"^bad params="):
        c.run("x")


@pytest.mark.skipif(
    os.environ.get("DLNSIM_FULL_COMPLETION") != "1", reason="the full size: minutes"
)
def test_full_completion_depth_recovers_with_fewer_observations():
    ds = c.run(c.FULL).dataset
    assert math.isfinite(float(ds.error.max()))
    deep = ds.error.sel(depth=4).values
    shallow = ds.error.sel(depth=2).values
    assert np.all(deep[-2:] < shallow[-2:])
