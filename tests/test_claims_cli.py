"""README claims about the command line that no other test shows (docs/claims.md maps them).

``--help`` on every command and the ``dlnsim meanfield`` flags; ``dlnsim ensemble
--scheduler ADDR`` (an external scheduler on 127.0.0.1) and the CLI's LocalCluster default;
"an interrupted run keeps every file it had written" (SIGINT to a ``dlnsim run`` process);
the ``ensemble_T*.zarr`` stores of ``dlnsim run`` (values at the scanned temperatures); the
``<why>`` part of every one-line error.  ``check_default_run_outputs`` is called by
``test_cli.py::test_default_run_writes_dataset_figures_and_summary`` on the output of the
built-in ``dlnsim run`` (the other outputs of the README list, summary.txt, default depths).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlnsim.analysis import pipeline
from dlnsim.analysis.cli import build_parser, main
from dlnsim.particles import Model, Schatten
from dlnsim.particles.datasets import load
from dlnsim.particles.langevin import simulate_members

DLNSIM = Path(sys.executable).parent / "dlnsim"
ROOT = Path(__file__).resolve().parents[1]


def _readme_table() -> dict[str, list[str]]:
    """The README's command table: each command and the flags its first cell names."""
    rows = re.findall(r"^\| `dlnsim ([a-z-]+)([^`]*)`", (ROOT / "README.md").read_text(), re.M)
    return {name: re.findall(r"--[a-z][a-z0-9-]*", rest) for name, rest in rows}


README_FLAGS = _readme_table()
COMMANDS = list(README_FLAGS)


def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices)


def test_readme_lists_every_command():
    """The README's table and the parser have the same commands (none missing either way)."""
    assert len(COMMANDS) >= 9 and "info" in COMMANDS and "plot" in COMMANDS
    assert sorted(_subcommands()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: dlnsim {command}")
    for flag in README_FLAGS[command]:
        assert re.search(rf"{re.escape(flag)}\b", text), (command, flag)


def test_python_dash_m_dlnsim_is_the_cli():
    """``python -m dlnsim`` runs the same CLI: ``--version`` and a one-line error, exit 2."""
    from dlnsim import __version__

    proc = subprocess.run(
        [sys.executable, "-m", "dlnsim", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"dlnsim {__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", "dlnsim", "flow", "--sigma0", "0.8,0.1", "--p", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("dlnsim: error: bad p=-1")
    assert proc.stderr.count("\n") == 1


def test_top_level_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(c in text for c in COMMANDS)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.match(r"dlnsim \d+\.\d+", capsys.readouterr().out)


def test_meanfield_flags_reach_the_experiment(tmp_path, monkeypatch):
    """Every README flag of ``dlnsim meanfield`` is parsed into the experiment's parameters
    (the run itself is replaced: its numerics are tested in tests/test_meanfield*.py)."""
    seen = []
    monkeypatch.setattr(
        pipeline, "run_experiments", lambda exps, out, *args, **kw: seen.append((exps, out))
    )
    argv = ["meanfield", "--widths", "8,16", "--b", "2", "--depth", "3", "--n-samples", "64",
            "--p", "1.5", "--times", "0,0.5", "--dt", "0.002", "--seed", "4", "--cells", "64",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    ((experiments, out),) = seen
    assert out == str(tmp_path)
    assert experiments == [
        {"kind": "meanfield", "widths": [8, 16], "b": 2.0, "depth": 3, "n_samples": 64,
         "p": 1.5, "times": [0, 0.5], "dt": 0.002, "seed": 4, "cells": 64}
    ]  # fmt: skip
    # defaults: the README's d = 8, 32, 128 at beta = b d with b = 1
    defaults = pipeline.EXPERIMENTS["meanfield"].defaults
    assert defaults["widths"] == [8, 32, 128] and defaults["b"] == 1.0


# --------------------------------------------------------------------- errors: the <why> part
ERRORS = [
    (["ensemble", "--members", "0"], "members"),
    (["ensemble", "--dt", "-1"], "dt"),
    (["ensemble", "--temperature", "-0.5"], "temperature"),
    (["flow", "--sigma0", "0.8", "--width", "2"], "sigma0"),
    (["flow", "--sigma0", "0.8,0.1", "--n-times", "1"], "n-times"),
    (["meanfield", "--widths", "8"], "widths"),
    (["depth", "--depths", "4,0,inf"], "depths"),
    (["repulsion", "--rows", "3"], "rows"),
    (["run", "missing.toml"], "config"),
]


@pytest.mark.parametrize("argv,name", ERRORS)
def test_every_error_says_why(tmp_path, capsys, monkeypatch, argv, name):
    """One line ``dlnsim: error: bad <name>=<value>: <why>`` with a non-empty reason."""
    monkeypatch.chdir(tmp_path)
    extra = ["--scheduler", "serial", "--out", "e.zarr"] if argv[0] == "ensemble" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # (`dlnsim repulsion --rows 3` is checked only once the run started, after the line
    # "dlnsim: writing into ..."; the one-line contract is tested in test_cli.py)
    errors = [line for line in err if line.startswith("dlnsim: error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    match = re.fullmatch(rf"dlnsim: error: bad {re.escape(name)}=(.+?): (.+)", errors[0])
    assert match, errors[0]
    why = match.group(2)
    assert len(why.split()) >= 2 and "Traceback" not in why, why


# ------------------------------------------------------------ where `dlnsim ensemble` runs
ENSEMBLE = ["ensemble", "--width", "3", "--depth", "4", "--beta", "2", "--sigma0", "1,0.6,0.3",
            "--members", "10", "--seed", "5", "--dt", "0.01",
            "--save-times", "0,0.25,0.5"]  # fmt: skip


def _engine_sigma():
    starts = np.tile([1.0, 0.6, 0.3], (10, 1))
    model = Model(3, 4, 2.0, Schatten(2.0))
    return simulate_members(model, starts, np.arange(10), [0, 0.25, 0.5], 0.01, 5).sigma


@pytest.mark.slow
def test_ensemble_cli_defaults_to_a_local_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert main([*ENSEMBLE, "--chunk-size", "5", "--out", str(tmp_path / "e.zarr")]) == 0
    ds = load(tmp_path / "e.zarr")
    assert ds.attrs["executor"].startswith("dask LocalCluster"), ds.attrs["executor"]
    np.testing.assert_array_equal(ds.sigma.values, _engine_sigma())


@pytest.mark.slow
def test_ensemble_cli_scheduler_address(tmp_path, external_scheduler, monkeypatch):
    """``--scheduler tcp://127.0.0.1:PORT``: runs there, bitwise the serial result; and
    ``$DASK_SCHEDULER_ADDRESS`` is used when no ``--scheduler`` is given."""
    store = tmp_path / "e.zarr"
    assert main([*ENSEMBLE, "--scheduler", external_scheduler, "--out", str(store)]) == 0
    ds = load(store)
    assert ds.attrs["executor"] == f"dask scheduler {external_scheduler}"
    np.testing.assert_array_equal(ds.sigma.values, _engine_sigma())
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", external_scheduler)
    assert main([*ENSEMBLE, "--out", str(tmp_path / "env.zarr")]) == 0
    assert load(tmp_path / "env.zarr").attrs["executor"] == f"dask scheduler {external_scheduler}"


# ------------------------------------------------------------ dlnsim run: the temperature scan
SCAN_CONFIG = """
[[experiment]]
kind = "ensemble"
width = 3
depth = 4
beta = 2.0
members = 6
dt = 0.01
t_end = 0.5
n_times = 6
seed = 3
scheduler = "serial"
"""


def test_run_ensemble_temperature_stores(tmp_path):
    """``ensemble.zarr`` at T = 1/beta and ``ensemble_T{k}.zarr`` at T = 1/(beta 2^k),
    k = 1, 2, 3 (the default scan), each bitwise the engine at that temperature (seed + k),
    and ``ensemble_temperatures.nc`` holds the scan; the summary prints it."""
    cfg = tmp_path / "scan.toml"
    cfg.write_text(SCAN_CONFIG)
    out = tmp_path / "o"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    model = Model(3, 4, 2.0, Schatten(2.0))
    times = np.linspace(0.0, 0.5, 6)
    sigma0 = model.equilibrium() * np.geomspace(3.0, 1 / 3, 3)
    for k in range(4):
        store = out / ("ensemble.zarr" if k == 0 else f"ensemble_T{k}.zarr")
        ds = load(store)
        temp = 1 / (2.0 * 2**k)
        assert float(ds.attrs["temperature"]) == temp, store
        starts = np.tile(sigma0, (6, 1))
        ref = simulate_members(model, starts, np.arange(6), times, 0.01, 3 + k, temp)
        np.testing.assert_array_equal(ds.sigma.values, ref.sigma)
    assert not (out / "ensemble_T4.zarr").exists()
    scan = load(out / "ensemble_temperatures.nc")
    np.testing.assert_array_equal(scan.temperature.values, [1 / (2.0 * 2**k) for k in range(4)])
    summary = (out / "summary.txt").read_text()
    assert "temperature T" in summary and "|<sigma> - sigma_*| ~ T^" in summary


# ------------------------------------------------------------ an interrupted run keeps files
INTERRUPT_CONFIG = """
[[experiment]]
kind = "flow"
members = 2
t_end = 2.0
n_times = 11
phase_portrait = false

[[experiment]]
kind = "ensemble"
width = 4
members = 400
dt = 1e-4
t_end = 5.0
chunk_size = 4
scheduler = "serial"
"""


@pytest.mark.slow
def test_interrupted_run_keeps_every_file(tmp_path):
    """SIGINT to ``dlnsim run`` in its second experiment: exit status 130, one line on stderr,
    and every file written so far is readable (flow.nc, summary.txt, the partial store)."""
    # the same experiments, short, run to the end first: every kernel is then in numba's disk
    # cache, so the SIGINT lands in the simulation, not in a first compile.
    warm = tmp_path / "warm.toml"
    warm.write_text(INTERRUPT_CONFIG.replace("members = 400", "members = 8").replace(
        "t_end = 5.0", "t_end = 0.01"))  # fmt: skip
    subprocess.run(
        [str(DLNSIM), "run", str(warm), "--out", str(tmp_path / "warm")],
        capture_output=True, timeout=600, check=True,
    )  # fmt: skip
    cfg = tmp_path / "long.toml"
    cfg.write_text(INTERRUPT_CONFIG)
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [str(DLNSIM), "run", str(cfg), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test suite started in the background by a non-interactive shell (``... &``)
        # inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored: restore the
        # default, as a terminal's Ctrl-C finds it (this, not numba, was the "lost" SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        store = out / "ensemble.zarr"
        while time.monotonic() < deadline and proc.poll() is None:
            # two chunks done: the run is in the middle of the ensemble experiment
            if store.exists() and _chunks_done(store) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    flow = load(out / "flow.nc")
    assert flow.sigma.shape == (2, 11, 2) and np.isfinite(flow.sigma.values).all()
    assert "[flow]" in (out / "summary.txt").read_text()
    partial = load(store)
    done = partial.chunk_done.values == 1
    assert 0 < done.sum() < done.size
    first = partial.sigma.values[:4]  # chunk 0 is done first (serial)
    assert done[0] and np.isfinite(first).all()


def _chunks_done(store: Path) -> int:
    import zarr

    try:
        return int(np.sum(zarr.open_group(str(store), mode="r")["chunk_done"][:] == 1))
    except Exception:  # not laid out yet
        return 0


# ------------------------------------------------------------ the default `dlnsim run`
def check_default_run_outputs(out: Path, stdout: str) -> None:
    """The README's outputs of ``dlnsim run`` beyond those test_cli.py checks: called from
    ``test_cli.py::test_default_run_writes_dataset_figures_and_summary``."""
    for name in ("meanfield.nc", "meanfield_densities.png", "repulsion.nc", "repulsion.png",
                 "depth_trajectories.png", "depth_convergence.png", "depth_spread.png",
                 "ensemble_temperature.png", "ensemble_trajectories.png"):  # fmt: skip
        assert (out / name).read_bytes()[:8] in (b"\x89PNG\r\n\x1a\n", b"\x89HDF\r\n\x1a\n"), name
    # ensemble.zarr: d = 4, N = 10, beta = 5, 128 members at T = 1/beta; three colder stores
    ens = load(out / "ensemble.zarr")
    assert ens.attrs["width"] == 4 and ens.attrs["depth"] == "10" and ens.attrs["beta"] == 5.0
    assert ens.sigma.shape[0] == 128 and float(ens.attrs["temperature"]) == 0.2
    for k in (1, 2, 3):
        assert float(load(out / f"ensemble_T{k}.zarr").attrs["temperature"]) == 0.2 / 2**k
    # depth.nc: N = 1, 2, 4, ..., 256, inf (inf stored as an IEEE float)
    depth = load(out / "depth.nc")
    np.testing.assert_array_equal(depth.depth.values, [*(2.0**k for k in range(9)), np.inf])
    # meanfield.nc: d = 8, 32, 128; W1 and L1 next to their sampling-noise floors
    mf = load(out / "meanfield.nc")
    assert {"w1", "w1_floor", "l1", "l1_floor"} <= set(mf.data_vars)
    assert any(list(np.asarray(c.values)) == [8, 32, 128] for c in mf.coords.values())
    # repulsion.nc: the systems of the README and the stored verdict
    rep = load(out / "repulsion.nc")
    labels = " ".join(str(s) for s in rep.system.values)
    for name in ("DLN chamber d=16 N=4", "DLN chamber d=16 N=inf", "Dyson", "Ginibre", "GOE",
                 "GUE", "GSE", "independent"):  # fmt: skip
        assert name in labels, name
    assert {"mean_ratio", "gamma", "gamma_low", "gamma_high", "small_fraction", "step",
            "acceptance"} <= set(rep.data_vars)  # fmt: skip
    # completion.nc: the small matrix-completion experiment (n = 8, rank 1, N = 1..4) and its
    # table in the summary
    comp = load(out / "completion.nc")
    assert (out / "completion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert comp.target.shape == (8, 8) and list(comp.depth.values) == [1, 2, 3, 4]
    assert np.all(np.isfinite(comp.error.values)) and np.all(np.isfinite(comp.beta_error.values))
    assert "completion: n=8, rank 1" in stdout and "trained factors (N=3" in stdout
    # summary.txt is what was printed: sigma_* and F_beta predicted vs reached, the rates,
    # the ensemble table, the W1/L1 floors, the verdict and the depth orders
    summary = (out / "summary.txt").read_text()
    for line in summary.splitlines():
        assert line in stdout, line
    for text in ("sigma_*", "F_beta", "relaxation rate", "temperature T", "W1 noise floor",
                 "L1 floor", rep.attrs["verdict"], "fitted"):  # fmt: skip
        assert text in summary, text

