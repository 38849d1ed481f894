"""Robustness sweep of ``meanfield.solve`` over issue 14's parameter grid (run on demand).

    python benchmarks/sweep_meanfield.py [--quick] [--horizon T]

For every case ``(d, N, p, beta, initial data, diffusion)`` it runs ``solve`` at default settings
to ``horizon`` (``t``, or ``tau = N t`` at ``N = inf``) with 5 saves and checks what the PDE
guarantees: mass 1 (error printed), cell masses >= 0, and (with diffusion) the free energy
non-increasing at every save.  It prints one line per case (wall time, steps, mass error, largest
rise of ``F``, or the error message) and a table of the worst mass error and the slowest case.
``N = inf`` with ``d <= 3`` and diffusion has no equilibrium; ``solve`` runs a finite horizon
there too (the density spreads toward sigma = 0), so the sweep reports it like any other case.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

from dlnsim.meanfield import solve
from dlnsim.particles import Model, Schatten  # noqa: E402

WIDTHS = (2, 3, 8, 64, 1024)
DEPTHS = (1, 2, 3, 10, 50, math.inf)
POWERS = (1.0, 1.5, 2.0, 4.0)
BETAS = (0.5, 10.0, 1e4)
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


def run_case(d, n, p, beta, shape, diffusion, horizon=1.0) -> dict:
    """One case; returns wall time, steps, mass error, the largest rise of F between saves
    (positive = violation) and the minimum cell mass, or the error."""
    model = Model(d, n, beta, Schatten(p))
    start = time.perf_counter()
    try:
        ds = solve(model, initial(model, shape), np.linspace(0.0, horizon, 5), diffusion=diffusion)
    except (RuntimeError, ValueError) as exc:
        return {"error": str(exc), "seconds": time.perf_counter() - start}
    masses = (ds.density * ds.cell_width).values
    free = ds.free_energy.values
    rise = float(np.max(np.diff(free) / (1.0 + np.abs(free[:-1])))) if diffusion else -math.inf
    return {
        "seconds": time.perf_counter() - start,
        "steps": int(ds.attrs["steps"]),
        "mass_error": float(np.max(np.abs(ds.mass.values - 1.0))),
        "min_mass": float(masses.min()),
        "rise": rise,
    }


def cases(quick: bool):
    if quick:  # one value per axis beside a base case, each shape, both diffusions
        base = (8, 3, 2.0, 10.0)
        out = {base}
        for i, axis in enumerate((WIDTHS, DEPTHS, POWERS, BETAS)):
            for v in axis:
                out.add(tuple(v if j == i else base[j] for j in range(4)))
        grid = sorted(out, key=str)
        return [(*g, s, diff) for g in grid for s in SHAPES for diff in (True, False)]
    return list(itertools.product(WIDTHS, DEPTHS, POWERS, BETAS, SHAPES, (True, False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one axis at a time around a base")
    parser.add_argument("--horizon", type=float, default=1.0)
    args = parser.parse_args()
    results = []
    for case in cases(args.quick):
        r = run_case(*case, horizon=args.horizon)
        results.append((case, r))
        if "error" in r:
            print(f"{case}: ERROR after {r['seconds']:.1f}s: {r['error']}", flush=True)
        else:
            print(
                f"{case}: {r['seconds']:.1f}s {r['steps']} steps, mass err {r['mass_error']:.1e}, "
                f"min mass {r['min_mass']:.1e}, F rise {r['rise']:.1e}",
                flush=True,
            )
    ok = [(c, r) for c, r in results if "error" not in r]
    failed = [(c, r) for c, r in results if "error" in r]
    bad = [
        (c, r) for c, r in ok if r["rise"] > 1e-10 or r["min_mass"] < 0 or r["mass_error"] > 1e-8
    ]
    print(f"\n{len(results)} cases, {len(failed)} errors, {len(bad)} violations")
    if ok:
        worst = max(ok, key=lambda cr: cr[1]["mass_error"])
        slow = max(ok, key=lambda cr: cr[1]["seconds"])
        rise = max(ok, key=lambda cr: cr[1]["rise"])
        print(f"worst mass error {worst[1]['mass_error']:.2e} at {worst[0]}")
        print(f"largest relative F rise {rise[1]['rise']:.2e} at {rise[0]}")
        print(f"slowest {slow[1]['seconds']:.1f}s ({slow[1]['steps']} steps) at {slow[0]}")
    for c, r in failed + bad:
        print("FAIL", c, r)


if __name__ == "__main__":
    main()
