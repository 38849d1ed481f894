"""Throughput of the proximal (Metropolis-adjusted) log-gas stepper (``particles.proximal``).

Run on demand:  ``python benchmarks/bench_proximal.py [--quick]``.

Case: Dyson Brownian motion (``DysonModel``), width d = 16, b = 2, M = 50 members (the
repulsion experiment's Dyson baseline), h = 1e-3 (~2.3 Newton iterations per step),
Metropolis-adjusted, from a stationary state (burn-in run first).

Measured (2 shared cores, loaded, 2026-12-01): compiled 1280-1420 steps/s (1.5e7-1.7e7
pairs/s), numpy 229-240 steps/s (2.7e6-2.9e6 pairs/s): 5.3-6.2x.

Reported: steps per second (one step = all M members), particle-steps per second
(steps * M * d / s) and pair interactions per second (steps * M * d * (d - 1) / s), CPU time
(``time.process_time``), for

- ``compiled``: the engine as ``simulate_baseline_members`` runs it (``proximal.prox``: the
  Newton solve row by row in numba, Cholesky; the Metropolis terms compiled too);
- ``numpy``: the former engine (``proximal.prox_reference``: batched numpy, LAPACK solves;
  ``slogdet`` for the Metropolis terms), patched in for the measurement.

Each variant runs twice (the first run loads or compiles the numba cache and is not counted).
The table is printed and written to ``benchmarks/results/proximal.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dlnsim.particles import DysonModel, simulate_baseline_members
from dlnsim.particles import proximal as P

WIDTH, B, MEMBERS, DT = 16, 2.0, 50, 1e-3
RESULTS = Path(__file__).resolve().parent / "results" / "proximal.md"


def _numpy_terms(system, x, h_x, hk, temp):
    """The Metropolis terms as computed before the compiled kernels (LAPACK ``slogdet``)."""
    force, lap = P._pair_terms(x, system.mirror)
    _, logdet = np.linalg.slogdet(np.eye(x.shape[1]) + hk * lap)
    return P._Terms(
        phi=system.potential(x) / temp,
        mean=x + h_x * system.smooth_drift(x),
        back=x - hk * force,
        logdet=logdet,
    )


def _run(system, start, steps: int, seed: int) -> tuple[float, float]:
    """CPU seconds of ``steps`` Metropolis steps of every member; mean Newton iterations."""
    t0 = time.process_time()
    block = simulate_baseline_members(
        system, start, np.arange(MEMBERS), np.array([steps * DT]), DT, seed, metropolis=True
    )
    cpu = time.process_time() - t0
    return cpu, float(block.newton_iterations.sum() / block.steps.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps instead of 2000")
    steps = 200 if parser.parse_args().quick else 2000
    system = DysonModel(WIDTH, B)
    first = np.linspace(2.0, -2.0, WIDTH) * np.sqrt(WIDTH)
    burn = simulate_baseline_members(
        system, np.tile(first, (MEMBERS, 1)), np.arange(MEMBERS), np.array([3.0]), 0.01, 1,
        metropolis=True,
    )  # fmt: skip
    start = np.ascontiguousarray(burn.sigma[:, -1])
    compiled = (P.prox, P._terms)
    lines = [f"Dyson d={WIDTH} b={B:g}, M={MEMBERS}, h={DT:g}, {steps} Metropolis steps (CPU time)"]
    print(lines[0])
    variants = (("compiled", compiled), ("numpy", (P.prox_reference, _numpy_terms)))
    for name, (prox, terms) in variants:
        P.prox, P._terms = prox, terms
        try:
            _run(system, start, 20, 2)  # warm: numba cache load or compilation
            cpu, newton = _run(system, start, steps, 2)
        finally:
            P.prox, P._terms = compiled
        rate = steps / cpu
        lines.append(
            f"{name:>9}: {rate:8.0f} steps/s  {rate * MEMBERS * WIDTH:10.3g} particle-steps/s  "
            f"{rate * MEMBERS * WIDTH * (WIDTH - 1):10.3g} pairs/s  "
            f"({cpu:.2f} s, {newton:.2f} Newton iterations/step)"
        )
        print(lines[-1])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
