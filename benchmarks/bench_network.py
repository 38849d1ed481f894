"""Cost of one step of the matrix Langevin engine against batched LAPACK SVDs (issue 15 item 6).

Run on demand:  ``python benchmarks/bench_network.py [--quick]``.

Case: ``d = 32``, ``M = 200`` members, depth ``N = 3``, ``beta = 2``, ``dt = 1e-4`` (small, so
that no member fails).  Side by side, in the same process and rounds:

- ``svd``: one batched ``numpy.linalg.svd`` of the ``(200, 32, 32)`` stack (``U``, ``sigma``,
  ``V^T``): the unit of cost;
- ``step spectral``: one Euler-Maruyama step of ``network.simulate_matrix_members`` with the
  spectral energy ``E = sum sigma^2 / 2`` (one SVD per step, ``network.system.frame``);
- ``step regression``: the same with the non-spectral ``E = |X - Phi|^2 / 2`` (one SVD and two
  more products per member to rotate the gradient);
- ``step metropolis``: the spectral step with the Metropolis test (still one SVD per step:
  the proposal's SVD is the next step's).

A step's time is ``(time of n + 1 steps - time of 1 step) / n`` with ``n = 20`` (the start
frame and the output arrays are paid once), best of 5 rounds (1 with ``--quick``).  The
reported ratio is step / svd; the requirement is ``<= 3``.  BLAS and LAPACK are pinned to one
thread.  Timings on a loaded machine vary between rounds: the ratios, taken within a round
from the same round's SVD time, are the meaningful numbers.  The table is printed and written
to ``benchmarks/results/network.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from dlnsim.network import simulate_matrix_members  # noqa: E402
from dlnsim.particles import Schatten  # noqa: E402

D, M, DEPTH, BETA, DT, N_STEPS = 32, 200, 3, 2.0, 1e-4, 20
RESULTS = Path(__file__).resolve().parent / "results" / "network.md"


class _Model:
    """The four fields the engine reads (``network.MatrixModel`` has them too)."""

    def __init__(self, energy: object) -> None:
        self.width, self.depth, self.beta, self.energy = D, DEPTH, BETA, energy


class _Regression:
    def __init__(self, target: np.ndarray) -> None:
        self.target = target

    def energy(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * ((x - self.target) ** 2).sum(axis=(-2, -1))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return x - self.target


def _model(kind: str) -> _Model:
    if kind == "regression":
        return _Model(_Regression(np.random.default_rng(1).standard_normal((D, D))))
    try:  # the public model when it is there
        from dlnsim.network import MatrixModel, Spectral

        return MatrixModel(D, DEPTH, BETA, Spectral(Schatten(2)))  # type: ignore[return-value]
    except ImportError:
        return _Model(Schatten(2))


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of five")
    args = parser.parse_args()
    rounds = 1 if args.quick else 5
    x0 = np.eye(D) + 0.3 * np.random.default_rng(0).standard_normal((M, D, D))
    members = np.arange(M)
    cases = {
        "step spectral": (_model("spectral"), False),
        "step regression": (_model("regression"), False),
        "step metropolis": (_model("spectral"), True),
    }

    def run(model, metropolis, steps):
        return simulate_matrix_members(
            model, x0, members, [steps * DT], DT, 7, metropolis=metropolis
        )

    for model, metropolis in cases.values():  # warm up (numba cache, allocations)
        run(model, metropolis, 2)
    best: dict[str, float] = {}
    ratios: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        svd = min(_time(lambda: np.linalg.svd(x0)) for _ in range(5))
        best["svd"] = min(best.get("svd", np.inf), svd)
        for name, (model, metropolis) in cases.items():
            one = _time(lambda: run(model, metropolis, 1))  # noqa: B023
            many = _time(lambda: run(model, metropolis, N_STEPS + 1))  # noqa: B023
            step = (many - one) / N_STEPS
            best[name] = min(best.get(name, np.inf), step)
            ratios[name].append(step / svd)
    lines = [
        f"# Matrix Langevin step vs batched SVD (d = {D}, {M} members, N = {DEPTH})",
        "",
        f"{platform.processor() or platform.machine()}, numpy {np.__version__}, "
        f"{os.cpu_count()} cores, BLAS/LAPACK on 1 thread, best of {rounds} rounds; "
        "the machine may be loaded (see the ratios' spread).",
        "",
        "| operation | best time (ms) | ratio to the SVD (per round) |",
        "|---|---:|---|",
        f"| batched SVD (U, sigma, V^T) | {1e3 * best['svd']:.2f} | 1 |",
    ]
    for name in cases:
        per = ", ".join(f"{r:.2f}" for r in ratios[name])
        lines.append(f"| {name} | {1e3 * best[name]:.2f} | {per} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
