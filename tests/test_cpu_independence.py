"""The compiled kernels give the same bits whatever CPU target numba compiles for (issue 12,
item 4): the same computations run in two fresh processes, one compiling for the host CPU and
one with ``NUMBA_CPU_NAME=generic`` (x86-64 baseline: no FMA, SSE2 vectors), each with its own
empty ``NUMBA_CACHE_DIR``, and every result is compared bit for bit.

Covered: the small-width lanes kernels (``d < SORT_WIDTH``: chain form in ``rho``, rational
form in ``u``, and the branch-free member kernel for ``N > SMALL_DEPTH`` and ``N = inf``), the
sorted kernel (``SORT_WIDTH <= d <= CROSSOVER_WIDTH``), the Chebyshev fast summation
(``d > CROSSOVER_WIDTH``), the per-pair scalar path (spread above ``SPREAD_MAX``), both entry
points (``rho`` and ``u``, whose logarithms are hand-written) and whole
``langevin_ensemble(..., scheduler="serial")`` runs at ``d = 32`` and ``d = 400`` (the sizes of
the issue), and the log-gas engine's compiled proximal Newton step and Metropolis terms
(``particles/proximal.py``, ``d = 3`` and 16, with and without the mirror terms).  What it
catches: fast-math contraction or reassociation in a kernel (FMA fusion and
the vector width differ between the two targets), and any code path whose result depends on
the instruction set.  It cannot see a difference between two machines' libm (both processes
share this machine's), which is why the kernels call no libm transcendental at all
(``test_kernels.py::test_no_fast_math_and_no_libm_in_kernels`` checks the compiled code).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import dlnsim.particles.pairsum as pairsum

WORKER = r"""
import math, sys
import numpy as np
from dlnsim import Model, Schatten, langevin_ensemble
from dlnsim.particles import pairsum

out = {}
rng = np.random.default_rng(20261130)
for d in (32, 100, 400):
    rho = rng.normal(size=(5, d))
    rho[1] *= 3.0  # wider spread
    rho[2] = 0.3 + 1e-6 * rho[2]  # clustered: near pairs only
    rho[3, 1::2] = rho[3, ::2][: d // 2] + 1e-9  # near-coincident pairs
    rho[4] = rng.uniform(-400.0, 400.0, size=d)  # spread > SPREAD_MAX: per-pair exp
    method = "fast" if d > pairsum.CROSSOVER_WIDTH else "exact"
    # d = 32: N = 10 takes the lanes kernels, N = 17 and inf the branch-free member kernel
    for depth in ((10, 17, math.inf) if d < pairsum.SORT_WIDTH else (3, 10, 17, math.inf)):
        f, plan = pairsum.pair_force(rho, depth, method=method, threads=1, return_plan=True)
        out[f"rho d={d} N={depth}"] = f
        out[f"rho d={d} N={depth} plan"] = plan["kernel"]
        if depth != math.inf:
            u = np.exp(rho[:4] / depth)
            f, plan = pairsum.pair_force_u(u, depth, method=method, threads=1, return_plan=True)
            out[f"u d={d} N={depth}"] = f
            out[f"u d={d} N={depth} plan"] = plan["kernel"]
for d, members, dt, steps in ((32, 12, 1e-3, 50), (400, 2, 2e-5, 20)):
    model = Model(width=d, depth=10, beta=5.0, energy=Schatten(2))
    sigma0 = np.linspace(1.5, 0.5, d)
    times = np.array([0.0, 0.5, 1.0]) * steps * dt
    ds = langevin_ensemble(model, sigma0, times, members=members, dt=dt, seed=7,
                           scheduler="serial", progress=False)
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "fiub":
            out[f"ensemble d={d} {name}"] = var.values
# the log-gas engine's compiled proximal Newton step and its Metropolis terms (Cholesky, no
# LAPACK: particles/proximal.py)
from dlnsim.particles import proximal
rng = np.random.default_rng(5)
for d in (3, 16):
    x = np.tile(np.linspace(3.0, 0.5, d), (8, 1))
    y = x + 0.3 * rng.standard_normal((8, d))
    for mirror in (False, True):
        for hk in (1e-2, 10.0):
            z, iters, conv = proximal.prox(y, x, hk, mirror)
            out[f"prox d={d} mirror={mirror} hk={hk}"] = z
            out[f"prox d={d} mirror={mirror} hk={hk} iterations"] = iters
        force, logdet = np.empty_like(x), np.empty(x.shape[0])
        proximal._force_logdet_rows(x, 0.01, mirror, force, logdet)
        out[f"metropolis d={d} mirror={mirror} force"] = force
        out[f"metropolis d={d} mirror={mirror} logdet"] = logdet
np.savez(sys.argv[1], **out)
"""


def _run_worker(tmp_path, label: str, cpu_name: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("NUMBA_CPU_NAME", None)
    env.pop("NUMBA_CPU_FEATURES", None)
    if cpu_name is not None:
        env["NUMBA_CPU_NAME"] = cpu_name
    env["NUMBA_CACHE_DIR"] = str(tmp_path / f"cache-{label}")  # compile from scratch
    env["NUMBA_NUM_THREADS"] = "1"  # serial drivers only: the parallel ones add compile time
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / f"{label}.npz")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of an array, every NaN mapped to one pattern (payloads are not data)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a
    a = np.where(np.isnan(a), np.nan, a).astype(np.float64)
    return a.view(np.uint64)


@pytest.mark.slow
def test_host_and_generic_targets_give_identical_bits(tmp_path):
    procs = {
        "host": _run_worker(tmp_path, "host", None),
        "generic": _run_worker(tmp_path, "generic", "generic"),
    }
    for label, proc in procs.items():
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, (label, err[-3000:])
    host = np.load(tmp_path / "host.npz")
    generic = np.load(tmp_path / "generic.npz")
    assert sorted(host.files) == sorted(generic.files)
    # every layout was exercised (plan codes as in pairsum.KERNEL_NAMES)
    codes = {v: k for k, v in pairsum.KERNEL_NAMES.items()}
    used = set()
    for name in host.files:
        if name.endswith("plan"):
            used.update(int(c) for c in host[name].ravel())
    for kernel in ("branchless", "rational-u", "sorted", "chebyshev", "per-pair-exp"):
        assert codes[kernel] in used, kernel
    for name in ("ensemble d=32 sigma", "ensemble d=400 sigma"):
        assert name in host.files and np.all(np.isfinite(host[name]))
    differing = {}
    for name in host.files:
        a, b = _bits(host[name]), _bits(generic[name])
        assert a.shape == b.shape, name
        n = int(np.count_nonzero(a != b))
        if n:
            differing[name] = f"{n} of {a.size}"
    assert not differing, differing
