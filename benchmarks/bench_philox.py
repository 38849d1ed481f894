"""Benchmark of the counter-based noise stream (``particles.philox``), run on demand.

    python benchmarks/bench_philox.py [--quick]

Standard normals per second, one thread, for the shape of case A (1000 members x 32 particles
per step, 16 steps per call: 512 000 normals) and of case B (20 x 512, 16 steps):

* ``philox.normals`` (compiled Philox4x64-10 + the portable 256-layer ziggurat through
  ``fill_member_normals``, one member at a time: the words of all its steps in stream order,
  a vectorized branch-free fast path, the rare slow words fixed up after; the path of the
  fused step, which draws a few steps' noise at once);
* ``fill_normals`` (the scalar path: one member and one step at a time, block by block) in a
  compiled loop with one reused row;
* numpy ``Generator(PCG64).standard_normal`` and ``Generator(Philox).standard_normal``
  (ziggurat, one stream) into a preallocated array of the same size;
* numpy with one ``Generator(PCG64)`` per member (1000 small calls: the engine's way before the
  counter-based stream).

Times are the best of ``rounds`` repetitions (wall clock); the 1-minute load average is shown,
since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout

import numba  # noqa: E402

from dlnsim.particles import philox  # noqa: E402

STEPS = 16
CASES = [("A", 1000, 32), ("B", 20, 512)]


@numba.njit(cache=True, error_model="numpy")
def _fill_loop(seed, n_members, n_steps, row):
    acc = 0.0
    for m in range(n_members):
        for t in range(n_steps):
            philox.fill_normals(seed, np.uint64(m), np.uint64(t), row)
            acc += row[0]
    return acc


def _best(fn, rounds):
    fn()
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _case(members, d, rounds):
    """Seconds per call of every method for one case (members x STEPS x d normals)."""
    out = np.empty((members, STEPS, d))
    idx = np.arange(members)
    row = np.empty(d)
    pcg = np.random.Generator(np.random.PCG64(1))
    phx = np.random.Generator(np.random.Philox(1))
    per_member = [np.random.Generator(np.random.PCG64(k)) for k in range(members)]

    def per_member_draw():
        for k, g in enumerate(per_member):
            g.standard_normal(out=out[k])

    return {
        "philox.normals (compiled)": _best(
            lambda: philox.normals(1, idx, 0, STEPS, d, out), rounds
        ),
        "fill_normals row by row (compiled)": _best(
            lambda: _fill_loop(np.uint64(1), members, STEPS, row), rounds
        ),
        "numpy PCG64 standard_normal": _best(lambda: pcg.standard_normal(out=out), rounds),
        "numpy Philox standard_normal": _best(lambda: phx.standard_normal(out=out), rounds),
        "numpy PCG64, one call per member": _best(per_member_draw, rounds),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 15")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 15
    numba.set_num_threads(1)
    print(f"load average before: {os.getloadavg()[0]:.2f}; scheme {philox.NOISE_SCHEME}")
    print("| case | method | normals/s | vs numpy PCG64 |")
    print("|---|---|---|---|")
    for case, members, d in CASES:
        n = members * STEPS * d
        timings = _case(members, d, rounds)
        ref = n / timings["numpy PCG64 standard_normal"]
        for name, t in timings.items():
            label = f"{case} ({members} x {d} x {STEPS})"
            print(f"| {label} | {name} | {n / t:.3g} | {n / t / ref:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
