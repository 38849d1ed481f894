"""Before/after benchmark of the pair-force kernels: the working tree against a git revision.

    python benchmarks/compare_kernels.py [--rev main] [--rounds 15]

The pair-sum code of ``--rev`` (the subpackage ``particles/pairsum/``, or the single file
``particles/pairforce.py`` of revisions before it) is loaded next to the working tree's
``particles.pairsum`` as a second module (its own numba cache entries), and both run the same
calls in the same process, interleaved round by round (one burst of back-to-back calls of ~30 ms
per variant and round; best of ``--rounds``), so that a busy spell of the shared machine hits
both alike.  Reported per row:
pair interactions/s = M d (d - 1) / time (for the fast summation the equivalent rate), from the
thread's CPU time (``time.thread_time``: on a loaded machine the wall clock also counts the time
the process waits for a core) and from the wall clock, and the speed ratio new/old.  One thread
(``threads=1``).  Cases as in ``bench_kernels.py``: A = 1000 members x d = 32, B = 20 x 512,
N = 10 (and N = inf), rows rho ~ normal(0, 1); ``u = e^{rho/N}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout

from dlnsim.particles import pairsum as new  # noqa: E402


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def load_revision(rev: str, tmp: Path):
    """The pair-sum code at ``rev`` as the module ``dlnsim.particles._pairsum_rev``: the
    subpackage ``particles/pairsum/`` if ``rev`` has it, else ``particles/pairforce.py``.  Its
    relative imports (``..validation``, ``..entropy``) resolve to the working tree's."""
    files = (
        _git("ls-tree", "--name-only", f"{rev}:particles/pairsum").split()
        if _git("ls-tree", "--name-only", rev, "particles/pairsum").strip()
        else []
    )
    if files:
        folder = tmp / "_pairsum_rev"
        folder.mkdir()
        for name in files:
            if name.endswith(".py"):
                (folder / name).write_text(_git("show", f"{rev}:particles/pairsum/{name}"))
        path, search = folder / "__init__.py", [str(folder)]
    else:
        path, search = tmp / "_pairsum_rev.py", None
        path.write_text(_git("show", f"{rev}:particles/pairforce.py"))
    spec = importlib.util.spec_from_file_location(
        "dlnsim.particles._pairsum_rev", path, submodule_search_locations=search
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def interleaved_best(fns, rounds: int, clock, burst: float = 0.03) -> list[float]:
    """Best per-call time of each ``fn`` (mean over a burst), rounds calling every fn in turn."""
    reps = []
    for fn in fns:
        fn()  # compile / warm up
        start = time.perf_counter()
        fn()
        reps.append(max(1, math.ceil(burst / max(time.perf_counter() - start, 1e-9))))
    best = [math.inf] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            start = clock()
            for _ in range(reps[k]):
                fn()
            best[k] = min(best[k], (clock() - start) / reps[k])
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="main", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old = load_revision(args.rev, Path(tmp))
        rng = np.random.default_rng(0)
        print(f"working tree vs {args.rev}; load average {os.getloadavg()}")
        print("| case | M x d | kernel | old CPU | new CPU | new/old | old wall | new wall |")
        print("|---|---|---|---|---|---|---|---|")
        for case, m, d in [("A", 1000, 32), ("B", 20, 512)]:
            rho = rng.normal(size=(m, d))
            u = np.exp(rho / 10)
            rows = [  # (label, function name, input, depth, method)
                ("exact rho N=10", "pair_force", rho, 10, "exact"),
                ("exact u N=10", "pair_force_u", u, 10, "exact"),
                ("exact rho N=inf", "pair_force", rho, math.inf, "exact"),
            ]
            if d >= 64:
                rows.append(("fast rho N=10", "pair_force", rho, 10, "fast"))
            fns = []
            for _, fname, arr, depth, method in rows:
                for mod in (old, new):
                    fns.append(partial(getattr(mod, fname), arr, depth, method=method, threads=1))
            cpu = interleaved_best(fns, args.rounds, time.thread_time)
            wall = interleaved_best(fns, max(3, args.rounds // 3), time.perf_counter)
            pairs = m * d * (d - 1)
            for k, (name, *_) in enumerate(rows):
                o, n = cpu[2 * k], cpu[2 * k + 1]
                ow, nw = wall[2 * k], wall[2 * k + 1]
                print(
                    f"| {case} | {m} x {d} | {name} | {pairs / o:.3g} | {pairs / n:.3g} | "
                    f"{o / n:.2f} | {pairs / ow:.3g} | {pairs / nw:.3g} |"
                )
        print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
