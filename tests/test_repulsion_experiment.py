"""The repulsion comparison experiment: chamber model vs random-matrix baselines."""

import numpy as np
import pytest

from dlnsim.analysis.cli import main
from dlnsim.analysis.experiments.repulsion import repulsion_comparison, system_samples
from dlnsim.particles.datasets import load


def test_chamber_model_has_no_repulsion_and_baselines_do(tmp_path):
    """The 95% bootstrap intervals of gamma (analysis.repulsion_exponent) contain 0 and exclude
    1/2 for the DLN chamber model at finite and infinite depth and for independent points; for
    the exact Gaussian b-ensembles (and real Ginibre, b = 1) and Dyson's motion they exclude 1/2
    and the estimate is within 3 standard errors of b, SE = interval width / 3.92 (a 95%
    interval misses about 1 time in 20, so seven systems are not all required to contain
    their b at every seed; 3 SE is a 0.3% false alarm per system).  Power: the SEs here are
    ~0.08 (GOE, Ginibre), ~0.18 (GUE), ~0.35 (Dyson b = 2) and ~0.57 (GSE), so a bias of the
    exponent of 0.25 / 0.55 / 1.05 / 1.7 is detected (the GSE window was [1.1, 6.9], it is now
    about [2.3, 5.7]); <r> of the chamber model is within 3 standard errors (row means) of the
    Poisson value 2 ln 2 - 1 (SE ~0.004: a 3% bias of <r> is seen) and far below GOE's."""
    ds = repulsion_comparison(rows=600, seed=1)
    for k, label in enumerate(ds.system.values):
        low, high, gamma = (float(ds[n].values[k]) for n in ("gamma_low", "gamma_high", "gamma"))
        b = float(ds.gamma_expected.values[k])
        if b == 0:
            assert low <= 0 <= high < 0.5, label
        else:
            se = (high - low) / (2 * 1.96)
            print(f"{label}: gamma {gamma:.3f} ({low:.3f}, {high:.3f}) z = {(gamma - b) / se:+.2f}")
            assert low > 0.5 and abs(gamma - b) < 3 * se, label
    chamber = [k for k, s in enumerate(ds.system.values) if s.startswith("DLN chamber")]
    assert len(chamber) == 2
    for k in chamber:
        assert abs(ds.mean_ratio.values[k] - (2 * np.log(2) - 1)) < 3 * ds.mean_ratio_se.values[k]
        assert ds.mean_ratio.values[k] < 0.5307 - 10 * ds.mean_ratio_se.values[k]
        assert ds.small_fraction.values[k] > 0.05  # Poisson: 1 - e^{-0.1} = 0.095
    assert ds.spacings.dims == ("system", "spacing")
    # the SDE baseline (Dyson b = 2, Metropolis-adjusted proximal steps) records its step and
    # acceptance rate; exact samplers have neither
    (dyson,) = [k for k, s in enumerate(ds.system.values) if s.startswith("Dyson")]
    assert 0.9 < ds.acceptance.values[dyson] <= 1.0 and 0 < ds.step.values[dyson] <= 0.02
    exact = [k for k, s in enumerate(ds.system.values) if "exact" in s]
    assert len(exact) == 4 and np.isnan(ds.step.values[exact]).all()


def test_repulsion_command(tmp_path, capsys):
    assert main(["repulsion", "--rows", "200", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    ds = load(tmp_path / "repulsion.nc")
    # the printed verdict is the stored one, and it is right: the chamber systems' intervals
    # contain 0, the GOE/GUE/GSE/Ginibre intervals exclude it (stored as repelling)
    verdict = ds.attrs["verdict"]
    assert verdict in text and "consistent with 0 (no repulsion)" in verdict
    labels = [str(s) for s in ds.system.values]
    for k, label in enumerate(labels):
        repels = ds.gamma_low.values[k] > 0
        assert ds.repels.values[k] == repels, label
        if label.startswith(("DLN chamber", "independent")):
            assert not repels, label
        elif label.startswith(("GOE", "GUE", "GSE", "real Ginibre")):
            assert repels, label
    assert int(ds.attrs["chamber_no_repulsion"]) == 1
    assert (tmp_path / "summary.txt").read_text().count(verdict) == 1
    assert (tmp_path / "repulsion.png").exists()
    assert load(tmp_path / "repulsion.nc").gamma.dims == ("system",)


def test_bad_system():
    with pytest.raises(ValueError, match="bad kind="):
        system_samples({"kind": "wishart", "width": 4}, 10, 0)
    with pytest.raises(ValueError, match="bad width="):
        system_samples({"kind": "gbe", "width": 2, "b": 1.0}, 10, 0)
