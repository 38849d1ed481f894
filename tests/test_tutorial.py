"""examples/tutorial.py runs as a plain script at the small size and says what it should."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "examples" / "tutorial.py"
FIGURES = [
    "depth_convergence",
    "depth_trajectories",
    "ensemble",
    "flow",
    "relaxation",
    "repulsion",
]


def test_tutorial_is_in_percent_format():
    text = TUTORIAL.read_text()
    cells = re.findall(r"^# %%(.*)$", text, flags=re.M)
    assert text.lstrip().startswith("# ---")  # jupytext header
    assert sum(c.strip() == "[markdown]" for c in cells) >= 6
    assert sum(c.strip() == "" for c in cells) >= 6
    assert "__main__" not in text  # a plain script, no guard needed


@pytest.mark.slow
def test_tutorial_runs_small(tmp_path):
    env = {**os.environ, "DLNSIM_TUTORIAL_SIZE": "small"}
    env.pop("MPLBACKEND", None)
    res = subprocess.run(
        [sys.executable, str(TUTORIAL)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    # 1. the equilibrium: the closed form sqrt((d-1)(N-1)/(2 N beta)) for Schatten-2
    s_star = float(re.search(r"sigma_\* = (\S+)", out).group(1))
    assert s_star == pytest.approx(math.sqrt(3 * 9 / (2 * 10 * 5.0)), rel=1e-11)
    # 2. the flow reaches sigma_* and the fitted rates match the predicted ones
    assert float(re.search(r"max \|sigma_i - sigma_\*\| at the end: (\S+)", out).group(1)) < 1e-6
    rates = re.findall(r"mode: predicted (\S+), fitted (\S+)", out)
    assert len(rates) == 2
    for predicted, fitted in rates:
        assert float(fitted) == pytest.approx(float(predicted), rel=1e-4)
    # 3. the ensemble ran without failures
    assert "16 members, 0 failed" in out
    # 4. the verdict
    assert "verdict: DLN chamber model shows no repulsion" in out
    # 5. orders in 1/N close to 1
    orders = [float(v) for v in re.findall(r"order (\S+) in 1/N", out)]
    assert len(orders) == 4 and all(0.85 < v < 1.15 for v in orders), orders
    for name in FIGURES:
        png = tmp_path / "tutorial-figures" / f"{name}.png"
        assert png.stat().st_size > 10_000, png
        img = matplotlib.image.imread(png)
        assert len(np.unique(img.reshape(-1, img.shape[-1]).round(3), axis=0)) > 50, png
    assert sorted(p.stem for p in (tmp_path / "tutorial-figures").iterdir()) == FIGURES
