"""Robustness sweep of ``meanfield.solve`` over issue 14's parameter grid (run on demand).

    python benchmarks/sweep_meanfield.py [--quick | --corner | --sample K --seed S] [--horizon T]
        [--limit SECONDS] [--out FILE]

For every case ``(d, N, p, beta, initial data, diffusion)`` it runs ``solve`` at default
settings to ``horizon`` (``t``, or ``tau = N t`` at ``N = inf``) with 5 saves and checks what
the PDE guarantees: mass 1 (error printed), cell masses >= 0, and (with diffusion) the free
energy non-increasing at every save. It prints one line per case (CPU time, steps, mass error,
largest rise of ``F``, or the error message) and a table of the worst mass error and the slowest
case. A case ``solve`` refuses up front (``ValueError`` naming the cause: at ``N = 1`` without
diffusion every ``sigma`` reaches 0 in finite time, which the log-sigma chart cannot follow) is
reported as refused, apart from the errors. ``--quick`` varies one axis at a time around a base
case (150 cases); the full product (``WIDTHS x DEPTHS x POWERS x BETAS x SHAPES x diffusion``)
has thousands of cases, and ``--sample K --seed S`` draws ``K`` of them uniformly without
replacement (the interactions the one-axis sweep misses). ``--corner`` runs every case of the
stiff corner (``d`` in {2, 3}, ``N`` in {1, 2, 3}, ``beta`` in {0.5, 2}, with diffusion; 240
cases), where the mobility ``N sigma^{-2/N}`` is largest in the tail toward ``sigma = 0``. A
case that runs longer than ``--limit`` CPU seconds (the issue's 60 s on one core) is stopped and
counted as a failure. ``--out`` also writes the lines and the table to a file. ``N = inf`` with
``d <= 3`` and diffusion has no equilibrium; ``solve`` runs a finite horizon there too (the
density spreads toward sigma = 0), so the sweep reports it like any other case.
"""

from __future__ import annotations

import argparse
import itertools
import math
import signal
import time

import numpy as np

from dlnsim.meanfield import solve
from dlnsim.particles import Model, Schatten  # noqa: E402

WIDTHS = (2, 3, 4, 8, 16, 64, 256, 1024)
DEPTHS = (1, 2, 3, 10, 50, math.inf)
POWERS = (1.0, 1.5, 2.0, 4.0)
BETAS = (0.5, 2.0, 10.0, 100.0, 1e4)
QUICK_WIDTHS = (2, 3, 8, 64, 1024)  # the one-axis sweep's values (150 cases)
QUICK_BETAS = (0.5, 10.0, 1e4)
SHAPES = ("narrow", "wide", "bimodal", "above", "below")


def initial(model: Model, shape: str):
    """Initial density of sigma: log-normal bumps around the scale ``sigma_*`` (1 when
    ``c = 0``): narrow (std 0.02 in log sigma), wide (std 1.5), bimodal (0.5 and 2 sigma_*),
    far above (100 sigma_*) and far below (0.01 sigma_*), std 0.2 for the last three."""
    star = model.equilibrium()
    centre = math.log(star) if star > 0 else 0.0
    bumps = {
        "narrow": [(0.0, 0.02)],
        "wide": [(0.0, 1.5)],
        "bimodal": [(math.log(0.5), 0.2), (math.log(2.0), 0.2)],
        "above": [(math.log(100.0), 0.2)],
        "below": [(math.log(0.01), 0.2)],
    }[shape]

    def f(s):
        r = np.log(s) - centre
        return sum(np.exp(-0.5 * ((r - mu) / w) ** 2) for mu, w in bumps) / s

    return f


class CaseTimeout(Exception):
    """Raised by the alarm when a case exceeds the time limit."""


def _alarm(signum, frame):
    raise CaseTimeout


def run_case(d, n, p, beta, shape, diffusion, horizon=1.0, limit=None) -> dict:
    """One case; returns its CPU time (``time.process_time``: the solver runs on one core, and
    CPU seconds do not grow with the machine's load as wall seconds do), steps, mass error, the
    largest rise of F between saves (positive = violation) and the minimum cell mass, or the
    error (also when the case runs longer than ``limit`` CPU seconds, if given)."""
    model = Model(d, n, beta, Schatten(p))
    start = time.process_time()
    if limit:
        previous = signal.signal(signal.SIGVTALRM, _alarm)
        signal.setitimer(signal.ITIMER_VIRTUAL, limit)
    try:
        ds = solve(model, initial(model, shape), np.linspace(0.0, horizon, 5), diffusion=diffusion)
    except ValueError as exc:  # refused up front, naming the cause (e.g. extinction at N = 1)
        return {"refused": str(exc), "seconds": time.process_time() - start}
    except RuntimeError as exc:
        return {"error": str(exc), "seconds": time.process_time() - start}
    except CaseTimeout:
        return {"error": f"over the {limit:g} s limit", "seconds": time.process_time() - start}
    finally:
        if limit:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            signal.signal(signal.SIGVTALRM, previous)
    masses = (ds.density * ds.cell_width).values
    free = ds.free_energy.values
    rise = float(np.max(np.diff(free) / (1.0 + np.abs(free[:-1])))) if diffusion else -math.inf
    return {
        "seconds": time.process_time() - start,
        "steps": int(ds.attrs["steps"]),
        "mass_error": float(np.max(np.abs(ds.mass.values - 1.0))),
        "min_mass": float(masses.min()),
        "rise": rise,
    }


def full_product() -> list[tuple]:
    """Every case of the issue's grid, in a fixed order."""
    return list(itertools.product(WIDTHS, DEPTHS, POWERS, BETAS, SHAPES, (True, False)))


def sample(k: int, seed: int) -> list[tuple]:
    """``k`` cases drawn uniformly without replacement from ``full_product()``."""
    grid = full_product()
    if not 1 <= k <= len(grid):
        raise ValueError(f"bad sample={k}: must be in 1..{len(grid)}")
    pick = np.random.default_rng(seed).choice(len(grid), size=k, replace=False)
    return [grid[i] for i in pick]


def corner() -> list[tuple]:
    """The stiff corner of the grid: small ``d`` and ``N``, hot, with diffusion (240 cases)."""
    return list(itertools.product((2, 3), (1, 2, 3), POWERS, (0.5, 2.0), SHAPES, (True,)))


def cases(quick: bool):
    if quick:  # one value per axis beside a base case, each shape, both diffusions
        base = (8, 3, 2.0, 10.0)
        out = {base}
        for i, axis in enumerate((QUICK_WIDTHS, DEPTHS, POWERS, QUICK_BETAS)):
            for v in axis:
                out.add(tuple(v if j == i else base[j] for j in range(4)))
        grid = sorted(out, key=str)
        return [(*g, s, diff) for g in grid for s in SHAPES for diff in (True, False)]
    return full_product()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one axis at a time around a base")
    parser.add_argument("--corner", action="store_true", help="the small-d, small-N hot corner")
    parser.add_argument("--sample", type=int, default=0, help="K cases from the full product")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--horizon", type=float, default=1.0)
    parser.add_argument("--limit", type=float, default=0.0, help="seconds per case (0: none)")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()
    lines = []

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write("\n".join(lines) + "\n")

    if args.sample:
        todo = sample(args.sample, args.seed)
    else:
        todo = corner() if args.corner else cases(args.quick)
    report(
        f"# sweep_meanfield: {len(todo)} cases "
        + (
            f"drawn uniformly (seed {args.seed}) from the {len(full_product())}-case product"
            if args.sample
            else ("corner" if args.corner else "quick" if args.quick else "full product")
        )
        + f", horizon {args.horizon:g}, limit {args.limit:g} CPU s; times are CPU seconds"
    )
    results = []
    for case in todo:
        r = run_case(*case, horizon=args.horizon, limit=args.limit or None)
        results.append((case, r))
        if "error" in r:
            report(f"{case}: ERROR after {r['seconds']:.1f}s: {r['error']}")
        elif "refused" in r:
            report(f"{case}: refused: {r['refused']}")
        else:
            report(
                f"{case}: {r['seconds']:.1f}s {r['steps']} steps, mass err {r['mass_error']:.1e}, "
                f"min mass {r['min_mass']:.1e}, F rise {r['rise']:.1e}"
            )
    ok = [(c, r) for c, r in results if "error" not in r and "refused" not in r]
    failed = [(c, r) for c, r in results if "error" in r]
    refused = [(c, r) for c, r in results if "refused" in r]
    bad = [
        (c, r) for c, r in ok if r["rise"] > 1e-10 or r["min_mass"] < 0 or r["mass_error"] > 1e-8
    ]
    report(
        f"\n{len(results)} cases, {len(failed)} errors, {len(bad)} violations, {len(refused)} "
        "refused up front with the cause named (no solution in the log-sigma chart)"
    )
    if ok:
        worst = max(ok, key=lambda cr: cr[1]["mass_error"])
        slow = max(ok, key=lambda cr: cr[1]["seconds"])
        rise = max(ok, key=lambda cr: cr[1]["rise"])
        total = sum(r["seconds"] for _, r in results)
        report(f"worst mass error {worst[1]['mass_error']:.2e} at {worst[0]}")
        report(f"largest relative F rise {rise[1]['rise']:.2e} at {rise[0]}")
        report(f"slowest {slow[1]['seconds']:.1f}s ({slow[1]['steps']} steps) at {slow[0]}")
        report(f"total {total:.0f} s")
    for c, r in failed + bad:
        report(f"FAIL {c} {r}")


if __name__ == "__main__":
    main()
