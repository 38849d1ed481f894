"""Where runs happen and what they print: no process started unless asked, numba threads on
every core in-process (bitwise the serial result), logging instead of print, and the CLI's
LocalCluster options, dashboard link and -v/-q."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import psutil
import pytest

import dlnsim
from dlnsim.analysis.cli import main
from dlnsim.particles import Model, Schatten, gradient_flow, langevin_ensemble
from dlnsim.particles.datasets import describe, load, save

ROOT = Path(__file__).resolve().parents[1]
#: The automatic-cluster threshold of the old code (``members * steps * d^2``): above it a call
#: without a cluster argument started a LocalCluster of its own.
OLD_WORK_THRESHOLD = 5.0e8

# The script of issue 12 (no __main__ guard, fed through stdin as `python - <<EOF`), at a size
# that runs in a few seconds but is above the old threshold: 1000 * 500 * 32^2 = 5.12e8.
STDIN_SCRIPT = """
import multiprocessing, sys
import numpy as np
from dlnsim import particles
from dlnsim.particles import Model, Schatten

model = Model(32, 10, 5.0, Schatten(2))
sigma0 = model.equilibrium() * np.geomspace(1.5, 0.7, 32)
ds = particles.langevin_ensemble(model, sigma0, np.linspace(0, 5, 5), members=1000, dt=1e-2, seed=1)
print("RESULT", ds.attrs["executor"], ds.attrs["work_estimate"], int(ds.failed.values.sum()),
      "distributed" in sys.modules, len(multiprocessing.active_children()))
"""


def test_plain_script_through_stdin_runs_in_process_and_spawns_nothing():
    """The old code started a LocalCluster above the threshold, whose spawned workers cannot
    import a main module read from stdin: `RuntimeError: Nanny failed to start` (planting the
    old threshold back makes this test fail with exactly that, and children are seen)."""
    proc = subprocess.Popen(
        [sys.executable, "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    proc.stdin.write(STDIN_SCRIPT)
    proc.stdin.close()
    parent = psutil.Process(proc.pid)
    children: set[int] = set()
    while proc.poll() is None:  # watch for any child process during the whole run
        try:
            children.update(c.pid for c in parent.children(recursive=True))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait()
    assert proc.returncode == 0, err
    assert not children, f"child processes started: {children}"
    fields = re.search(r"RESULT (.+) (\S+) (\d+) (True|False) (\d+)$", out.strip()).groups()
    executor, work, failed, imported, active = fields
    assert executor == "in-process"
    assert float(work) > OLD_WORK_THRESHOLD  # the old code would have started a cluster
    assert failed == "0" and imported == "False" and active == "0"
    assert err == ""  # a library call prints nothing (no seed line, no bar off a terminal)


def test_in_process_numba_threads_are_bitwise_the_serial_kernel():
    """In-process the pair sums run on numba's threads (``members * d^2`` above the kernels'
    threading cutoff here); one thread gives the same bits."""
    model = Model(32, 10, 5.0, Schatten(2.0))  # the stdin script's model: one compilation
    sigma0 = model.equilibrium() * np.geomspace(1.5, 0.7, 32)
    times = np.array([0.0, 0.02, 0.05])
    kwargs = dict(seed=3, reductions="sigma,spread", progress=False)
    threaded = langevin_ensemble(model, sigma0, times, 64, 1e-3, **kwargs)
    assert threaded.attrs["executor"] == "in-process"
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = langevin_ensemble(model, sigma0, times, 64, 1e-3, **kwargs)
    finally:
        numba.set_num_threads(old)
    for name in threaded.data_vars:
        assert np.array_equal(threaded[name].values, single[name].values, equal_nan=True), name
    assert np.isfinite(threaded.sigma.values).all()


# ------------------------------------------------------------------ logging, no print
def _library_files() -> list[Path]:
    files = []
    for folder in ("particles", "meanfield", "analysis", "network"):
        files += sorted((ROOT / folder).rglob("*.py"))  # subpackages too
    return [f for f in files if f.name != "cli.py"]


def test_library_code_has_no_print_call():
    calls = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "print":  # e.g. print as a default
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not calls, calls
    assert len(_library_files()) > 20  # the scan does look at the package


def test_library_calls_print_nothing_and_log_through_dlnsim(capfd, caplog, tmp_path):
    model = Model(3, 4, 2.0, Schatten(2.0))
    with caplog.at_level(logging.INFO, logger="dlnsim"):
        flow = gradient_flow(model, [1.0, 0.6, 0.3], np.linspace(0.0, 0.5, 5))
        ens = langevin_ensemble(
            model, [1.0, 0.6, 0.3], [0.0, 0.1], 4, 1e-2, seed=None, reductions="sigma"
        )
        save(flow, tmp_path / "f.nc")
        describe(tmp_path / "f.nc")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # the drawn seed went to the dlnsim logger (a child logger), nowhere else
    seeds = [r for r in caplog.records if "seed = " in r.getMessage()]
    assert len(seeds) == 1 and seeds[0].name.startswith("dlnsim.")
    assert ens.attrs["seed"] in seeds[0].getMessage()
    assert logging.getLogger("dlnsim").handlers  # the package's NullHandler: silent by default


def _ensemble_args(tmp_path, *extra):
    return [
        "ensemble",
        "--width",
        "3",
        "--members",
        "4",
        "--t-end",
        "0.05",
        "--dt",
        "0.01",
        "--out",
        str(tmp_path / "e.zarr"),
        "--overwrite",
        *extra,
    ]


def test_cli_shows_info_messages_and_quiet_hides_them(tmp_path, capfd):
    assert main(_ensemble_args(tmp_path, "--scheduler", "serial")) == 0
    out, err = capfd.readouterr()
    assert re.search(r"^dlnsim: seed = \d+", err, re.M), err  # drawn seed, shown by the CLI
    assert "dlnsim: wrote" in out
    assert main(_ensemble_args(tmp_path, "--scheduler", "serial", "-q")) == 0
    out, err = capfd.readouterr()
    assert err == "" and "dlnsim: wrote" in out
    # the CLI restores the logger: a library call afterwards prints nothing again
    langevin_ensemble(Model(2, 3, 1.0, Schatten(2.0)), [1.0, 0.5], [0.0, 0.1], 2, 0.05)
    assert capfd.readouterr() == ("", "")
    with pytest.raises(SystemExit) as exc:  # exclusive options: argparse's one-line error
        main(_ensemble_args(tmp_path, "-q", "-v"))
    assert exc.value.code == 2


@pytest.mark.slow
def test_cli_local_cluster_options_dashboard_and_verbose_logs(tmp_path, capfd):
    args = _ensemble_args(tmp_path, "--seed", "5", "--n-workers", "1", "--threads-per-worker", "2")
    assert main(args) == 0
    out, err = capfd.readouterr()
    ds = load(tmp_path / "e.zarr")
    assert ds.attrs["executor"] == "dask LocalCluster, 1 worker processes, 2 threads"
    assert re.search(r"dashboard https?://\S+", err), err
    assert "distributed." not in err  # the cluster's own logs are off by default
    assert main([*args, "-v"]) == 0
    out, err = capfd.readouterr()
    assert re.search(r"dashboard https?://\S+", err), err
    assert re.search(r"distributed\.\w+ - INFO - ", err), err  # -v: the infrastructure logs
    again = load(tmp_path / "e.zarr")
    for name in ("sigma", "sigma_mean", "spread_var"):
        np.testing.assert_array_equal(again[name].values, ds[name].values)
    serial = _ensemble_args(tmp_path, "--seed", "5", "--scheduler", "serial")
    assert main(serial) == 0
    np.testing.assert_array_equal(load(tmp_path / "e.zarr").sigma.values, ds.sigma.values)


@pytest.mark.parametrize(
    "extra,name",
    [
        (["--n-workers", "0"], "n-workers"),
        (["--threads-per-worker", "-1"], "threads-per-worker"),
        (["--n-workers", "2", "--scheduler", "serial"], "n-workers"),
    ],
)
def test_cli_cluster_options_are_validated(tmp_path, capfd, extra, name):
    assert main(_ensemble_args(tmp_path, *extra)) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"bad {name}=" in err[0], err


def test_local_cluster_is_public_and_validated():
    from dlnsim.particles import ensemble

    assert "local_cluster" in ensemble.__all__ and "WORK_THRESHOLD" not in ensemble.__all__
    for bad in ({"n_workers": 0}, {"threads_per_worker": 1.5}, {"logs": "loud"}):
        with pytest.raises(ValueError, match=f"bad {next(iter(bad))}="):
            ensemble.local_cluster(**bad)
    with pytest.raises(ValueError, match="bad n_workers="):
        with ensemble.local_cluster_options(n_workers=-2):
            pass


def test_pipeline_no_longer_imports_a_private_factory():
    for path in (ROOT / "analysis" / "pipeline.py", ROOT / "benchmarks" / "bench_langevin.py"):
        assert "_local_cluster" not in path.read_text(), path
    assert dlnsim.langevin_ensemble is langevin_ensemble

