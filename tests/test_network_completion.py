"""The completion experiment (issue 15 item 7; theory.md section 12): a tiny version end to end,
its parameter checks, and (behind DLNSIM_FULL_COMPLETION=1) the full size."""

import dataclasses
import math
import os

import numpy as np
import pytest

from dlnsim.analysis.cli import main
from dlnsim.analysis.experiments import DEFAULT_EXPERIMENTS, EXPERIMENTS
from dlnsim.network import completion as c
from dlnsim.particles.datasets import load

TINY = ["--size", "5", "--observations", "8,20", "--depths", "1,3", "--betas", "10",
        "--beta-observation", "1", "--t-end", "6", "--lr", "0.02"]  # fmt: skip


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


def test_completion_command_end_to_end(tmp_path, capsys):
    """``dlnsim completion`` on tiny options: the dataset, the figure and the summary table
    (planted bug caught: a CLI option not reaching the parameters, e.g. ``--size`` ignored, gives
    an 8 x 8 target)."""
    out = tmp_path / "o"
    assert main(["completion", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ds = load(out / "completion.nc")
    assert ds.target.shape == (5, 5) and list(ds.observations.values) == [8, 20]
    assert list(ds.depth.values) == [1, 3] and list(ds.beta.values) == [10.0]
    assert (out / "completion.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "summary.txt").read_text()
    assert "completion: n=5, rank 1" in summary and "trained factors (N=3" in summary
    assert "completion: n=5, rank 1" in printed
    # the table's depth-3 cell at m = 20 is the dataset's
    row = next(line for line in summary.splitlines() if line.strip().startswith("20 "))
    assert f"{float(ds.error.sel(depth=3, observations=20)):7.4f}" in row


@pytest.mark.parametrize(
    "argv,name",
    [
        (["--size", "1"], "size"),
        (["--observations", "30,10"], "observations"),
        (["--depths", "0"], "depths"),
        (["--lr", "50"], "lr"),
        (["--betas", "-1"], "betas"),
    ],
)
def test_completion_command_bad_option_exits_2_one_line(tmp_path, capsys, argv, name):
    code = main(["completion", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"dlnsim: error: bad {name}="), err
    assert not (tmp_path / "o").exists()


def test_completion_kind_in_configs_and_the_default_run(tmp_path, capsys):
    """``[[experiment]] kind = "completion"`` is checked by ``dlnsim run --check`` (unknown keys
    and bad values refused, naming the key) and the default run includes it."""
    assert EXPERIMENTS["completion"] is c.EXPERIMENT
    assert {"kind": "completion"} in DEFAULT_EXPERIMENTS
    cfg = tmp_path / "c.toml"
    for body, code, name in [
        ('kind = "completion"\nsize = 6\nobservations = [10, 30]\nbeta_observation = 1\n', 0, ""),
        ('kind = "completion"\nsizes = 6\n', 2, "sizes"),
        ('kind = "completion"\nsize = 3\n', 2, "observations"),
        ('kind = "completion"\ndepths = [1, 2.5]\n', 2, "depths"),
    ]:
        cfg.write_text("[[experiment]]\n" + body)
        got = main(["run", "--check", str(cfg), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip().splitlines()
        assert got == code, err
        if code:
            assert len(err) == 1 and err[0].startswith(f"dlnsim: error: bad {name}="), err
    assert not (tmp_path / "o").exists()


def test_parameters_from_a_table_equal_the_constructor():
    p = c.EXPERIMENT.validate({"kind": "completion", "observations": [3, 9], "size": 4,
                               "beta_observation": 1})  # fmt: skip
    assert p == c.CompletionParams(observations=(3, 9), size=4, beta_observation=1)
    assert p.observations == [3, 9] and (c.FULL.size, c.FULL.rank) == (100, 5)  # Arora et al.
    # the full-size config of examples/experiments.toml is completion.FULL
    from pathlib import Path

    from dlnsim.analysis.pipeline import load_config

    experiments, _ = load_config(Path(__file__).parents[1] / "examples" / "experiments.toml")
    table = next(e for e in experiments if e.get("kind") == "completion")
    assert c.EXPERIMENT.validate(table) == dataclasses.replace(c.FULL, name=table["name"])


@pytest.mark.skipif(
    os.environ.get("DLNSIM_FULL_COMPLETION") != "1", reason="the full size: minutes"
)
def test_full_completion_depth_recovers_with_fewer_observations():
    ds = c.run(c.FULL).dataset
    assert math.isfinite(float(ds.error.max()))
    deep = ds.error.sel(depth=4).values
    shallow = ds.error.sel(depth=2).values
    assert np.all(deep[-2:] < shallow[-2:])
