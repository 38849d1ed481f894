"""The dlnsim command line: the default run, configs, and one-line errors with exit status 2."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlnsim.analysis.cli import main
from dlnsim.analysis.pipeline import load_config
from dlnsim.particles.datasets import load

ROOT = Path(__file__).resolve().parents[1]
DLNSIM = Path(sys.executable).parent / "dlnsim"


def test_default_run_writes_dataset_figures_and_summary(tmp_path):
    """`dlnsim run` (the installed console script) on the built-in defaults."""
    proc = subprocess.run(
        [str(DLNSIM), "run"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "dlnsim-out"
    for name in (
        "flow.nc",
        "flow_phase_portrait.png",
        "flow_relaxation.png",
        "summary.txt",
        "ensemble_trajectories.png",
        "ensemble_temperature.png",
        "ensemble_temperatures.nc",
        "depth.nc",
        "depth_convergence.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "relaxation rate" in proc.stdout and "sigma_*" in proc.stdout
    assert "Langevin ensemble" in proc.stdout and "fitted trajectory" in proc.stdout
    ens = load(out / "ensemble.zarr")
    assert ens.sigma.dims == ("member", "time", "particle") and int(ens.failed.sum()) == 0
    ds = load(out / "flow.nc")
    np.testing.assert_allclose(ds.sigma.isel(time=-1).values, 0.3, rtol=1e-6)
    assert "Traceback" not in proc.stderr
    from test_claims_cli import check_default_run_outputs  # the README's other outputs

    check_default_run_outputs(out, proc.stdout)


def test_example_config_runs(tmp_path):
    experiments, out = load_config(ROOT / "examples" / "experiments.toml")
    assert out == "dlnsim-example-out" and len(experiments) == 3
    small = tmp_path / "small.toml"
    small.write_text(
        '[[experiment]]\nkind = "flow"\nwidth = 3\ndepth = "inf"\nbeta = 1.0\nmembers = 2\n'
        "t_end = 5.0\nn_times = 11\nphase_portrait = false\n"
    )
    assert main(["run", str(small), "--out", str(tmp_path / "o")]) == 0
    ds = load(tmp_path / "o" / "flow.nc")
    assert ds.attrs["depth"] == "inf" and ds.sigma.shape == (2, 11, 3)


def test_phase_portrait_command(tmp_path):
    target = tmp_path / "pp.png"
    assert main(["phase-portrait", "--out", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"


def test_flow_command(tmp_path, capsys):
    target = tmp_path / "f.zarr"
    code = main(
        [
            "flow",
            "--width",
            "3",
            "--depth",
            "inf",
            "--sigma0",
            "1,0.5,0.2",
            "--t-end",
            "2",
            "--out",
            str(target),
        ]
    )
    assert code == 0
    assert load(target).sigma.dims == ("time", "particle")


CONFIG_ERRORS = [
    ('kind = "flow"\nwidth = 0', "width"),
    ('kind = "flow"\nwidth = 2.5', "width"),
    ('kind = "flow"\ndepth = 0', "depth"),
    ('kind = "flow"\ndepth = "deep"', "depth"),
    ('kind = "flow"\nbeta = -1.0', "beta"),
    ('kind = "flow"\nbeta = inf', "beta"),
    ('kind = "flow"\np = 0.0', "p"),
    ('kind = "flow"\ninitial = [[1.0, -0.5]]', "initial"),
    ('kind = "flow"\ninitial = [[1.0, nan]]', "initial"),
    ('kind = "flow"\nt_end = -1.0', "t_end"),
    ('kind = "flow"\nwidht = 2', "widht"),
    ('kind = "nope"', "kind"),
]


@pytest.mark.parametrize("body,name", CONFIG_ERRORS)
def test_config_errors_name_the_parameter(tmp_path, capsys, body, name):
    cfg = tmp_path / "bad.toml"
    extra = "" if "t_end" in body else "t_end = 0.1\n"
    cfg.write_text("[[experiment]]\n" + body + "\n" + extra + "n_times = 2\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bad {name}=" in err[0], err


FLAG_ERRORS = [
    (["flow", "--sigma0", "1,2", "--width", "-1"], "width"),
    (["flow", "--sigma0", "1,2", "--depth", "1.5"], "depth"),
    (["flow", "--sigma0", "1,2", "--beta", "0"], "beta"),
    (["flow", "--sigma0", "1,2", "--beta", "abc"], "--beta"),
    (["flow", "--sigma0", "1,2", "--p", "-2"], "p"),
    (["flow", "--sigma0", "1,0"], "sigma0"),
    (["flow", "--sigma0", "1,2", "--n-times", "1"], "n-times"),
    (["flow", "--sigma0", "1,2", "--out", "x.csv"], "path"),
    (["run", "missing.toml"], "config"),
    (["run", "--frobnicate"], "--frobnicate"),
]


@pytest.mark.parametrize("argv,name", FLAG_ERRORS)
def test_cli_errors_one_line_exit_2(tmp_path, monkeypatch, argv, name):
    """Through the console script: exit status 2, one line on stderr naming the parameter."""
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([str(DLNSIM), *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_times_must_increase():
    from dlnsim.particles import Model, Schatten, gradient_flow

    with pytest.raises(ValueError, match="bad times="):
        gradient_flow(Model(2, 3, 1.0, Schatten(2)), [1.0, 0.5], [0.0, 2.0, 1.0])


def test_depth_command(tmp_path):
    out = tmp_path / "o"
    code = main(
        [
            "depth",
            "--width",
            "3",
            "--initial",
            "1,0.5,0.2",
            "--depths",
            "16,32,64,inf",
            "--tau-end",
            "1",
            "--members",
            "0",  # d = 3 has no N = inf stationary law: ensembles need d >= 4 (now refused)
            "--out",
            str(out),
        ]
    )
    assert code == 0
    ds = load(out / "depth.nc")
    assert list(ds.depth.values[:3]) == [16, 32, 64] and np.isinf(ds.depth.values[-1])
    assert abs(ds.attrs["order_sigma_star"] - 1) < 0.1
    assert (out / "depth_convergence.png").exists()
    assert "fitted" in (out / "summary.txt").read_text()


@pytest.mark.parametrize(
    "argv,name",
    [
        (["depth", "--depths", "4,0,inf"], "depths"),
        (["depth", "--initial", "1,2"], "initial"),
        (["depth", "--tau-end", "-1"], "tau_end"),
    ],
)
def test_depth_command_errors(tmp_path, capsys, argv, name):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bad {name}=" in err[0], err


def test_ensemble_command_and_resume(tmp_path):
    store = tmp_path / "e.zarr"
    args = [
        "ensemble",
        "--width",
        "3",
        "--members",
        "6",
        "--seed",
        "11",
        "--t-end",
        "0.5",
        "--dt",
        "0.01",
        "--scheduler",
        "serial",
        "--out",
        str(store),
    ]
    assert main(args) == 0
    first = load(store)
    assert first.attrs["seed"] == "11" and first.sigma.shape == (6, 51, 3)
    assert "sigma_mean" in first and "spread_var" in first
    # resuming a complete store changes nothing
    assert main([*args, "--resume"]) == 0
    np.testing.assert_array_equal(load(store).sigma.values, first.sigma.values)
    # an existing store is not overwritten by accident
    assert main(args) == 2


@pytest.mark.parametrize(
    "extra,name",
    [
        (["--members", "0"], "members"),
        (["--dt", "0"], "dt"),
        (["--save-times", "0,2,1"], "times"),
        (["--reductions", "median"], "reductions"),
        (["--out", "e.nc"], "store"),
    ],
)
def test_ensemble_command_errors(tmp_path, capsys, extra, name):
    code = main(["ensemble", "--scheduler", "serial", "--out", str(tmp_path / "e.zarr"), *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bad {name}" in err[0], err
