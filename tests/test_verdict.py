"""The repulsion verdict, printed and stored, is the right one (issue 18, hole 2).

``analysis.repulsion_experiment.repulsion_verdict`` decides it from the 95% bootstrap intervals
of ``gamma``; ``repulsion_comparison`` stores it (``repels``, attrs ``verdict`` and
``chamber_no_repulsion``) and the pipeline (hence ``dlnsim repulsion`` and ``dlnsim run``)
prints the same text.  An inverted verdict (no repulsion <-> repulsion) fails every test here.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dlnsim.analysis.experiments.repulsion import repulsion_comparison, repulsion_verdict
from dlnsim.analysis.pipeline import run_experiments
from dlnsim.particles.datasets import load


def _table(rows):
    """A repulsion_comparison-like Dataset from (label, low, high, consistent) rows."""
    labels, low, high, ok = zip(*rows, strict=True)
    return xr.Dataset(
        {
            "gamma_low": ("system", np.array(low, float)),
            "gamma_high": ("system", np.array(high, float)),
            "consistent": ("system", np.array(ok, float)),
        },
        coords={"system": list(labels)},
    )


def test_verdict_logic():
    ds = _table(
        [
            ("DLN chamber d=16 N=4 beta=1", -0.1, 0.1, 1),
            ("GOE n=16 b=1 (exact)", 0.7, 1.2, 1),
            ("independent points n=16", -0.05, 0.05, 1),
        ]
    )
    v = repulsion_verdict(ds)
    assert v.chamber_no_repulsion is True and v.baselines_consistent is True
    assert v.repelling == ("GOE n=16 b=1 (exact)",)
    assert "consistent with 0 (no repulsion)" in v.text and "NOT" not in v.text
    assert "1 of 3 systems repel" in v.text
    # a chamber interval above 0 is repulsion; a baseline missing its b is reported
    v = repulsion_verdict(
        _table([("DLN chamber d=16 N=inf beta=1", 0.2, 0.9, 1), ("GUE n=16 b=2", 2.2, 3.0, 0)])
    )
    assert v.chamber_no_repulsion is False and v.baselines_consistent is False
    assert "NOT consistent with 0 (repulsion)" in v.text
    assert "not all consistent with their b" in v.text
    assert set(v.repelling) == {"DLN chamber d=16 N=inf beta=1", "GUE n=16 b=2"}
    # the interval's edge: low = 0 exactly contains 0
    assert repulsion_verdict(_table([("DLN chamber x", 0.0, 0.3, 1)])).chamber_no_repulsion
    # without a chamber system the verdict says so instead of a vacuous "no repulsion"
    v = repulsion_verdict(_table([("GOE n=16 b=1 (exact)", 0.7, 1.2, 1)]))
    assert v.chamber_no_repulsion is None and "no DLN chamber system" in v.text


def test_verdict_bad_input():
    with pytest.raises(ValueError, match="^bad ds="):
        repulsion_verdict(xr.Dataset())
    with pytest.raises(ValueError, match="^bad ds="):
        repulsion_verdict({"gamma_low": 1})


SYSTEMS = [
    {"kind": "chamber", "width": 8, "depth": 4, "beta": 1.0},
    {"kind": "gbe", "width": 8, "b": 1.0},
]


@pytest.mark.slow
def test_verdict_of_a_real_comparison_printed_and_stored(tmp_path, capsys):
    """The chamber model (d = 8, N = 4) and GOE (n = 8), through the pipeline as
    ``dlnsim repulsion``/``dlnsim run`` use it: the chamber's interval contains 0 and GOE's
    excludes 0 (at these sizes its half-width is ~0.15, b = 1 is > 6 half-widths from 0), the
    stored variables/attrs carry that verdict and the printed line is the stored text."""
    lines = run_experiments(
        [{"kind": "repulsion", "rows": 400, "seed": 3, "systems": SYSTEMS}], tmp_path, print
    )
    ds = load(tmp_path / "repulsion.nc")
    chamber, goe = (str(s) for s in ds.system.values)
    assert chamber.startswith("DLN chamber") and goe.startswith("GOE")
    assert ds.gamma_low.values[0] <= 0 <= ds.gamma_high.values[0]
    assert ds.gamma_low.values[1] > 0.5
    np.testing.assert_array_equal(ds.repels.values, [0, 1])
    assert int(ds.attrs["chamber_no_repulsion"]) == 1
    verdict = ds.attrs["verdict"]
    assert verdict == repulsion_verdict(ds).text
    assert "consistent with 0 (no repulsion)" in verdict and "NOT" not in verdict
    assert "1 of 2 systems repel" in verdict
    printed = capsys.readouterr().out
    assert f"  {verdict}" in lines and verdict in printed
    assert verdict in (tmp_path / "summary.txt").read_text()


def test_repulsion_comparison_stores_the_verdict_of_a_repelling_baseline():
    """GOE alone (exact sampler, fast): stored as repelling, chamber verdict absent (-1)."""
    ds = repulsion_comparison([{"kind": "gbe", "width": 8, "b": 1.0}], rows=400, seed=2)
    assert ds.gamma_low.values[0] > 0.5 and ds.repels.values[0] == 1
    assert int(ds.attrs["chamber_no_repulsion"]) == -1
    assert ds.attrs["verdict"].startswith("verdict: no DLN chamber system")
