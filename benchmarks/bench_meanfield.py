"""Benchmark of the mean-field nonlocal term: direct O(n^2) sum vs the FFT evaluation.

Run on demand (not part of the test suite):

    python benchmarks/bench_meanfield.py [cells ...]

For each number of cells ``n`` it evaluates, on the uniform grid ``x_i = x0 + i h`` in
``log sigma``, the potential jumps ``sum_j [log k_N(x_{i+1}, x_j) - log k_N(x_i, x_j)] M_j`` that
the solver needs twice per time step, with ``meanfield.kernel_jumps`` by the direct sum
(``method="direct"``, the kernel matrix rebuilt since the grid moves) and by FFT, and prints the
best-of-``repeat`` wall times, the speedup and the relative max-norm differences of the jumps
and of the potential ``sum_j log k_N(x_i, x_j) M_j`` (``kernel_potential``).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from dlnsim.meanfield import kernel_jumps, kernel_potential  # noqa: E402


def best_time(fn, repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(cells: list[int], depth: float = 10, repeat: int = 3) -> None:
    rng = np.random.default_rng(0)
    print(f"depth N = {depth}; a bump of relative width 0.1 in sigma over 12 standard deviations")
    header = f"{'cells':>7} {'direct [s]':>11} {'fft [s]':>10} {'speedup':>9} "
    print(header + f"{'jump err':>10} {'value err':>10}")
    for n in cells:
        h = 12 * 0.1 / n
        x0 = -0.6
        masses = np.exp(-0.5 * np.linspace(-6, 6, n) ** 2) * (1 + 0.1 * rng.random(n))
        masses /= masses.sum()
        reps = repeat if n <= 4096 else 1
        t_direct = best_time(partial(kernel_jumps, x0, h, masses, depth, "direct"), reps)
        t_fft = best_time(partial(kernel_jumps, x0, h, masses, depth, "fft"), repeat)
        direct = kernel_jumps(x0, h, masses, depth, "direct")
        fast = kernel_jumps(x0, h, masses, depth, "fft")
        jump_err = np.abs(fast - direct).max() / np.abs(direct).max()
        v_direct = kernel_potential(x0, h, masses, depth, "direct")
        v_fast = kernel_potential(x0, h, masses, depth, "fft")
        value_err = np.abs(v_fast - v_direct).max() / np.abs(v_direct).max()
        print(
            f"{n:>7d} {t_direct:>11.4g} {t_fft:>10.4g} {t_direct / t_fft:>9.1f} "
            f"{jump_err:>10.2e} {value_err:>10.2e}"
        )


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [128, 512, 2048, 8192]
    main(sizes)
