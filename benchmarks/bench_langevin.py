"""Throughput of the particle Langevin engine (``particles.langevin.simulate_members``).

Run on demand:  ``python benchmarks/bench_langevin.py [--quick]``.

Cases (depth N = 10, Schatten p = 2), each in two states:

- A: M = 1000 members of width d = 32; B: M = 20 members of width d = 512;
- *spread*: beta = 2, dt = 1e-3, singular values uniform on [0.3, 1.5] (log-spread ~ 1.6);
- *clustered*: beta = 160, dt = 1e-4, a stationary state (no repulsion: the singular values
  bunch around sigma_*), reached by a burn-in run from sigma_* (1 + 0.01 xi).

Reported: particle-steps per second (steps * M * d / s) and pair interactions per second
(steps * M * d * (d - 1) / s), for

- ``fused``: the engine as ``simulate_members`` runs it (``FusedChamberEulerMaruyama``: one
  compiled call per save interval, the noise drawn inside), one thread;
- ``per-step``: ``fused=False`` (``ChamberEulerMaruyama``: the Python loop of ``driver``, the
  noise drawn per batch of steps by ``philox.normals``), one thread: the engine before issue 16
  but for the noise stream;
- ``kernel alone``: only the pair sum ``entropy_gradient_rho_at_u_into`` on the same states,
  once per step (what a whole step cannot beat; ``method="auto"`` as in the engine: the
  Chebyshev fast summation at d = 512); the share of a fused step outside the pair sum is
  ``1 - kernel time / fused time``; ``exact kernel alone``: ``method="exact"``;
- ``fused, 2 threads`` (``prange`` over blocks of rows) and ``fused, 2 processes`` (each half of
  the members; bitwise the same result);
- ``pipeline``: ``particles.langevin_ensemble`` on a ``LocalCluster`` of 1 or 2 worker
  processes (one thread each), default chunking, streaming into a Zarr store (what
  ``dlnsim ensemble`` does), and the busiest worker's compute time from Dask's task stream;
- ``numpy``: a plain-numpy Euler-Maruyama step in ``u = sigma^{1/N}`` with the M x d x d matrix
  of ``psi_N'(rho_i - rho_j)`` from ``particles.entropy.psi`` (broadcast).

Each timing is the best of 3 rounds (1 with ``--quick``) that run every engine of a case in
turn, so a slow spell of the shared machine hits all of them.  The table is printed and written
to ``benchmarks/results/langevin.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from dlnsim.particles import Model, Schatten  # noqa: E402
from dlnsim.particles.entropy import linear_coefficient, psi  # noqa: E402
from dlnsim.particles.langevin import simulate_members  # noqa: E402
from dlnsim.particles.pairsum import entropy_gradient_rho_at_u_into, pair_force_u  # noqa: E402

DEPTH, P, BETA, DT = 10, 2.0, 2.0, 1e-3
CASES = {"A": (1000, 32), "B": (20, 512)}
#: state -> (beta, dt)
STATES = {"spread": (2.0, 1e-3), "clustered": (160.0, 1e-4)}
RESULTS = Path(__file__).resolve().parent / "results" / "langevin.md"


def _model(d: int, beta: float = BETA) -> Model:
    return Model(d, DEPTH, beta, Schatten(P))


def _start(m: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.sort(rng.uniform(0.3, 1.5, (m, d)), axis=1)[:, ::-1]


def state(case: str, name: str) -> tuple[Model, np.ndarray, float]:
    """(model, start, dt) of a case in a state (module docstring)."""
    m, d = CASES[case]
    beta, dt = STATES[name]
    model = _model(d, beta)
    if name == "spread":
        return model, _start(m, d), dt
    rng = np.random.default_rng(1)
    s0 = model.equilibrium() * (1.0 + 0.01 * rng.standard_normal((m, d)))
    burn = simulate_members(model, np.abs(s0), np.arange(m), [2000 * dt], dt, 99)
    return model, np.ascontiguousarray(burn.sigma[:, -1]), dt


def log_spread(s0: np.ndarray) -> float:
    """Median over members of log(sigma_max / sigma_min)."""
    return float(np.median(np.log(s0[:, 0] / s0[:, -1])))


# --------------------------------------------------------------------- plain-numpy reference
def numpy_step(
    u: np.ndarray, xi: np.ndarray, h: float, temperature: float, beta: float = BETA
) -> np.ndarray:
    """One step ``u <- |u - (h/u) dF/drho + sqrt(2 T h / N) xi|`` with a broadcast pair matrix.

    ``dF/drho_i = sigma_i^p - (1/beta) [a + 1/2 sum_j psi_N'(rho_i - rho_j)]``, ``rho = N log u``.
    """
    rho = DEPTH * np.log(u)
    diff = rho[:, :, None] - rho[:, None, :]  # (M, d, d)
    ds = linear_coefficient(u.shape[1], DEPTH) + 0.5 * psi(diff, DEPTH, 1).sum(axis=-1)
    g = np.exp(P * rho) - ds / beta
    return np.abs(u - (h * g) / u + math.sqrt(2 * temperature * h / DEPTH) * xi)


def run_numpy(model: Model, s0: np.ndarray, dt: float, steps: int) -> float:
    u = s0 ** (1 / DEPTH)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(steps):
        u = numpy_step(u, rng.standard_normal(u.shape), dt, 1 / model.beta, model.beta)
    return time.perf_counter() - t0


def check_reference(d: int = 16, m: int = 5) -> float:
    """Max relative difference of one deterministic step, engine vs numpy reference."""
    s0 = _start(m, d)
    eng = simulate_members(_model(d), s0, np.arange(m), [DT], DT, 0, temperature=0.0).sigma[:, 0]
    ref = numpy_step(s0 ** (1 / DEPTH), np.zeros((m, d)), DT, 0.0) ** DEPTH
    ref = np.sort(ref, axis=1)[:, ::-1]
    return float(np.max(np.abs(eng / ref - 1)))


# ------------------------------------------------------------------------------ the engine
def run_engine(
    model: Model, s0: np.ndarray, dt: float, steps: int, fused: bool = True,
    members: np.ndarray | None = None,
) -> float:  # fmt: skip
    members = np.arange(s0.shape[0]) if members is None else members
    start = s0[members]
    t0 = time.perf_counter()
    blk = simulate_members(model, start, members, [steps * dt], dt, 7, fused=fused)
    elapsed = time.perf_counter() - t0
    assert np.all(np.isnan(blk.failed_time))
    return elapsed


def run_kernel(model: Model, s0: np.ndarray, dt: float, steps: int) -> float:
    """The pair sum alone, once per step on the same (fixed) states, one thread."""
    u = np.ascontiguousarray(s0 ** (1 / DEPTH))
    out = np.empty_like(u)
    t0 = time.perf_counter()
    for _ in range(steps):
        entropy_gradient_rho_at_u_into(u, DEPTH, 1, out)
    return time.perf_counter() - t0


def run_kernel_exact(model: Model, s0: np.ndarray, dt: float, steps: int) -> float:
    """The exact pair sum alone (``pair_force_u(method="exact")``: no fast summation), once per
    step on the same states, one thread."""
    u = np.ascontiguousarray(s0 ** (1 / DEPTH))
    t0 = time.perf_counter()
    for _ in range(steps):
        pair_force_u(u, DEPTH, method="exact", threads=1)
    return time.perf_counter() - t0


def run_engine_threads(model: Model, s0: np.ndarray, dt: float, steps: int) -> float:
    """The fused engine on 2 numba threads (``prange`` over blocks of rows)."""
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        return run_engine(model, s0, dt, steps)
    finally:
        numba.set_num_threads(old)


def _worker(model, s0, dt, steps, members, barrier, queue) -> None:
    import numba

    numba.set_num_threads(1)
    run_engine(model, s0, dt, 2, members=members)  # warm-up (numba cache, imports)
    barrier.wait()
    queue.put(run_engine(model, s0, dt, steps, members=members))


def run_engine_two_processes(model: Model, s0: np.ndarray, dt: float, steps: int) -> float:
    """Wall time for two processes, each with half of the members, started together."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    halves = np.array_split(np.arange(s0.shape[0]), 2)
    procs = [
        ctx.Process(target=_worker, args=(model, s0, dt, steps, h, barrier, queue)) for h in halves
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    times = [queue.get() for _ in procs]
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    return max(wall, *times)


# ------------------------------------------------------------------- the whole pipeline
#: (case, state, workers, wall time) -> compute seconds of the busiest worker (Dask's task
#: stream): wall time minus that is what the pipeline adds (scheduling, transfers, saving)
PIPELINE_BUSY: dict[tuple, float] = {}


def run_pipeline(
    model: Model, s0: np.ndarray, dt: float, steps: int, workers: int, key: tuple = ()
) -> float:
    """Wall time of ``langevin_ensemble`` on the LocalCluster that ``dlnsim ensemble`` starts
    (``workers`` processes, one thread each), streaming into a Zarr store: Dask scheduling,
    transfers and saving included; the cluster start and a warm-up run (numba cache loads in the
    workers) excluded."""
    from distributed import get_task_stream

    from dlnsim.particles import langevin_ensemble
    from dlnsim.particles.ensemble import local_cluster

    m = s0.shape[0]
    client = local_cluster(workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = dict(seed=7, client=client, progress=False, overwrite=True)
            langevin_ensemble(model, s0, [2 * dt], m, dt, store=f"{tmp}/warm.zarr", **kwargs)
            with get_task_stream(client=client) as stream:
                t0 = time.perf_counter()
                ds = langevin_ensemble(
                    model, s0, [steps * dt], m, dt, store=f"{tmp}/run.zarr", **kwargs
                )
                elapsed = time.perf_counter() - t0
            assert bool(np.isfinite(ds.sigma.values).all())
    finally:
        client.close()
    busy: dict[str, float] = {}  # compute seconds per worker
    for task in stream.data:
        for part in task["startstops"]:
            if part["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + part["stop"] - part["start"]
    PIPELINE_BUSY[(*key, workers, elapsed)] = max(busy.values(), default=0.0)
    return elapsed


FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from dlnsim.particles import Model, Schatten
from dlnsim.particles.langevin import simulate_members
t1 = time.perf_counter()
simulate_members(Model(4, 10, 2.0, Schatten(2.0)), np.ones((2, 4)), [0, 1], [0.01], 0.01, 0)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_times() -> tuple[float, float, float]:
    """(import, first call with an empty numba cache, first call with a warm cache) in s."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = []
        for _ in range(2):
            res = subprocess.run(
                [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True,
                check=True, cwd=Path(__file__).resolve().parents[1],
            )  # fmt: skip
            out.append([float(v) for v in res.stdout.split()])
    return out[0][0], out[0][1], out[1][1]


# ---------------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the Dask pipeline runs")
    args = parser.parse_args(argv)
    import numba

    numba.set_num_threads(1)  # one thread unless a run says otherwise (run_engine_threads)
    steps = {"A": 200, "B": 300} if args.quick else {"A": 2000, "B": 3000}
    ref_steps = {"A": 5, "B": 2} if args.quick else {"A": 15, "B": 4}
    repeats = 1 if args.quick else 3  # rounds: the machine may be shared

    diff = check_reference()
    print(f"engine vs numpy reference, one deterministic step: max rel. diff {diff:.1e}")
    t_import, t_cold, t_warm = first_call_times()
    print(f"import {t_import:.2f} s; first call: {t_cold:.2f} s cold cache, {t_warm:.2f} s warm")

    rows = []
    notes = []
    for case, (m, d) in CASES.items():
        for name in STATES:
            model, s0, dt = state(case, name)
            run_engine(model, s0[:8], dt, 2)  # compile / load in this process
            run_engine(model, s0[:8], dt, 2, fused=False)
            key = (case, name)
            runs = [
                ("fused, 1 thread", run_engine, steps[case]),
                ("per-step, 1 thread", partial(run_engine, fused=False), steps[case]),
                ("kernel alone, 1 thread", run_kernel, steps[case]),
                ("exact kernel alone, 1 thread", run_kernel_exact, steps[case]),
                ("fused, 2 threads", run_engine_threads, steps[case]),
                ("fused, 2 processes", run_engine_two_processes, steps[case]),
                ("numpy broadcast", run_numpy, ref_steps[case]),
            ]
            if not args.no_pipeline:
                for workers in (1, 2):
                    label = f"pipeline, {workers} worker{'s' if workers > 1 else ''}"
                    fn = partial(run_pipeline, workers=workers, key=key)
                    runs.append((label, fn, steps[case]))
            times: list[list[float]] = [[] for _ in runs]
            for _ in range(repeats):
                for i, (_, fn, n) in enumerate(runs):
                    times[i].append(fn(model, s0, dt, n))
            best = [min(t) for t in times]
            rate = {}
            for (label, _, n), elapsed in zip(runs, best, strict=True):
                ps = n * m * d / elapsed
                rate[label] = ps * (d - 1)
                rows.append((case, name, m, d, label, n, elapsed, ps, ps * (d - 1)))
                print(f"{case} {name:9s} M={m} d={d} {label:24s} {n:5d} steps {elapsed:7.2f} s "
                      f"{ps:10.3e} particle-steps/s {ps * (d - 1):10.3e} pairs/s")  # fmt: skip
            fused, kernel = rate["fused, 1 thread"], rate["kernel alone, 1 thread"]
            line = (
                f"Case {case}, {name} (median log-spread {log_spread(s0):.2f}): the fused step "
                f"runs at {fused / kernel:.0%} of the kernel alone (share of a step outside the "
                f"pair sum {1 - fused / kernel:.0%}), {fused / rate['per-step, 1 thread']:.2f}x "
                f"the per-step engine and {fused / rate['numpy broadcast']:.0f}x the numpy step; "
                f"2 threads give {rate['fused, 2 threads'] / fused:.2f}x and 2 processes "
                f"{rate['fused, 2 processes'] / fused:.2f}x of 1 thread."
            )
            if not args.no_pipeline:
                for workers, bare in ((1, "fused, 1 thread"), (2, "fused, 2 processes")):
                    label = f"pipeline, {workers} worker{'s' if workers > 1 else ''}"
                    elapsed = best[[r[0] for r in runs].index(label)]
                    busy = PIPELINE_BUSY[(*key, workers, elapsed)]
                    line += (
                        f"  Pipeline on {workers} worker(s): {rate[label] / rate[bare]:.0%} of "
                        f"{bare}; the busiest worker computed {busy:.2f} s of {elapsed:.2f} s "
                        f"wall ({(elapsed - busy) / elapsed:.0%} added)."
                    )
            notes.append(line)
            print(line)

    lines = [
        "# Langevin engine throughput",
        "",
        f"`python benchmarks/bench_langevin.py{' --quick' if args.quick else ''}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}; load average before the "
        f"run {os.getloadavg()[0]:.2f}.",
        f"N = {DEPTH}, Schatten p = {P}; spread: beta = 2, dt = 1e-3; clustered: beta = 160, "
        "dt = 1e-4 (stationary).  Pair interactions = steps * M * d * (d - 1).",
        f"Best of {repeats} round(s) that run every engine in turn.",
        "",
        f"First call in a fresh process: import {t_import:.2f} s; first `simulate_members` "
        f"{t_cold:.2f} s with an empty numba cache (compilation), {t_warm:.2f} s with a warm "
        "cache.",
        f"Engine vs numpy reference, one deterministic step: max relative difference {diff:.1e}.",
        "",
        "| case | state | M | d | engine | steps | time (s) | particle-steps/s | "
        "pair interactions/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, name, m, d, label, n, elapsed, ps, pairs in rows:
        lines.append(
            f"| {case} | {name} | {m} | {d} | {label} | {n} | {elapsed:.2f} | {ps:.3e} | "
            f"{pairs:.3e} |"
        )
    lines += ["", *notes]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
