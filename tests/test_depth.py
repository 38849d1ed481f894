"""Infinite-depth limit: convergence orders in 1/N (analysis.depth), derived in its docstring."""

import math

import numpy as np
import pytest
import xarray as xr

from dlnsim.analysis.experiments.depth import convergence_orders, depth_sweep, fit_order
from dlnsim.analysis.plots import depth_figures
from dlnsim.particles import Model, Schatten
from dlnsim.particles.datasets import load, save


@pytest.fixture(scope="module")
def sweep():
    return depth_sweep(4, 2.0, 2.0, [1.5, 1.0, 0.6, 0.3], np.linspace(0, 3, 31))


def test_deterministic_orders_are_one(sweep):
    """Every deterministic quantity converges at order 1 in 1/N (docstring of analysis.depth)."""
    orders = convergence_orders(sweep)
    for name in (
        "order_trajectory",
        "order_sigma_star",
        "order_rate_uniform",
        "order_rate_relative",
    ):
        assert orders[name] == pytest.approx(1.0, abs=0.1), (name, orders[name])


def test_limit_values(sweep):
    inf = sweep.sel(depth=math.inf)
    # sigma_*(inf)^p = (d-1)/(2 beta) and the rates per tau of theory.md section 7 at N = inf
    assert float(inf.sigma_star) == pytest.approx(math.sqrt(3 / 4), rel=1e-14)
    s2 = 3 / 4
    assert float(inf.rate_uniform) == pytest.approx(2 * s2, rel=1e-12)
    assert float(inf.rate_relative) == pytest.approx(s2 * (2 - 4 / 9), rel=1e-12)
    # N = 1: no entropy, sigma_* = 0 and no rates
    one = sweep.sel(depth=1)
    assert float(one.sigma_star) == 0 and np.isnan(float(one.rate_uniform))
    # sigma_*(N) = sigma_*(inf) (1 - 1/N)^(1/p) exactly
    finite = sweep.depth.values[np.isfinite(sweep.depth.values)]
    np.testing.assert_allclose(
        sweep.sigma_star.sel(depth=finite).values,
        math.sqrt(3 / 4) * np.sqrt(1 - 1 / finite),
        rtol=1e-14,
    )


def test_flow_at_large_depth_approaches_the_limit_flow():
    """The N = 4096 flow in tau is within O(1/N) of the N = inf flow."""
    taus = np.linspace(0, 2, 5)
    ds = depth_sweep(3, 1.0, 2.0, [2.0, 1.0, 0.5], taus, depths=[1024, 4096, math.inf])
    err = ds.trajectory_error.values
    assert err[1] < err[0] / 3.5 and err[1] < 3.0 / 4096


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_infinite_depth_round_trips(sweep, tmp_path, suffix):
    back = load(save(sweep, tmp_path / f"depth{suffix}"))
    xr.testing.assert_identical(back, sweep)
    assert np.isinf(back.depth.values[-1])


def test_figures(sweep):
    figs = depth_figures(sweep)
    assert set(figs) == {"trajectories", "convergence"}
    ax = figs["convergence"].axes[0]
    assert len(ax.get_lines()) == 5  # four error curves + the slope-1 reference


def test_bad_arguments():
    with pytest.raises(ValueError, match="bad depths="):
        depth_sweep(2, 1.0, 2.0, [1.0, 0.5], [0, 1], depths=[2, 4])
    with pytest.raises(ValueError, match="bad depths="):
        depth_sweep(2, 1.0, 2.0, [1.0, 0.5], [0, 1], depths=[2, 0, math.inf])
    with pytest.raises(ValueError, match="bad sigma0="):
        depth_sweep(2, 1.0, 2.0, [1.0, 0.5, 0.2], [0, 1])
    with pytest.raises(ValueError, match="bad depths="):
        fit_order(np.array([2.0, math.inf]), np.array([0.1, 0.0]))
    Model(2, math.inf, 1.0, Schatten(2))  # sanity: the limit model exists


def test_stationary_statistics_converge_at_order_one():
    """Langevin ensembles at every depth with common random numbers (same seed): the paired
    differences to N = inf shrink like 1/N.  The Monte Carlo error of the paired differences is
    reported as `stationary_*_error_se`; we require each fitted error to exceed 3 of its SE
    (so the slope is not fitted to noise) and the order within 0.2 of 1."""
    ds = depth_sweep(
        6,
        2.0,
        2.0,
        np.geomspace(2.0, 0.3, 6),
        np.linspace(0, 1, 3),
        depths=[16, 32, 64, 128, math.inf],
        ensemble={
            "members": 96,
            "dt": 0.02,
            "seed": 5,
            "tau_end": 10.0,
            "scheduler": "serial",
            "progress": False,
        },
    )
    orders = convergence_orders(ds)
    finite = np.isfinite(ds.depth.values)
    for name in ("mean", "spread"):
        err = ds[f"stationary_{name}_error"].values[finite]
        se = ds[f"stationary_{name}_error_se"].values[finite]
        assert np.all(err > 3 * se), (name, err, se)
        assert orders[f"order_stationary_{name}"] == pytest.approx(1.0, abs=0.2)
    assert "spread" in depth_figures(ds)
    # every run is in the one dataset, depth as a dimension
    assert ds.ensemble_sigma.dims == ("depth", "member", "ensemble_time", "particle")
    assert ds.ensemble_sigma.shape[:2] == (5, 96) and ds.attrs["ensemble_seed"] == "5"
