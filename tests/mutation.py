"""On-demand mutation testing of dlnsim (not collected by pytest, not run in CI).

Each mutant is one small, targeted source change (a wrong constant, sign, exponent, factor or
branch, the kind of bug a reviewer plants), applied to a *copy* of the source tree, never in
place.  The copy lives in one fixed working folder (default ``$TMPDIR/dlnsim-mutation``), laid
out as the installed package (``dlnsim/``, ``dlnsim/particles``, ...) next to a copy of
``tests/``; ``PYTHONPATH`` puts it ahead of the editable install.  Unchanged files keep their
modification times, so numba's on-disk cache of the compiled kernels stays valid and only a
mutant of a compiled function (a source-level mutation of its Python body) recompiles.  numba's
cache checks only the file that defines a function, not the files of the functions it calls, so
a mutant in the compiled subpackage ``particles/pairsum/`` runs with an empty cache of its own
(``NUMBA_CACHE_DIR``; everything compiles again, about a minute).

For every mutant the fast test subset that should kill it runs (``tests`` below: files with
an optional ``-k`` expression) under a time limit.  Status:

- ``killed``: some test failed (or pytest errored during collection);
- ``SURVIVED``: every selected test passed;
- ``stale``: the mutated text is no longer in the source (the code changed: update the list);
- ``timeout``: over ``--timeout`` (reported, not counted: rerun it with a longer limit).

Usage (from the repository root, with the project's venv active)::

    python tests/mutation.py              # every mutant
    python tests/mutation.py -k entropy   # mutants whose id contains "entropy"
    python tests/mutation.py --list       # the mutants, their files and test subsets
    python tests/mutation.py --jobs 2     # mutants in parallel (one working copy per job)

It prints one line per mutant and, at the end, the kill rate and the survivors; the exit
status is 0 when the kill rate reaches ``--target`` (default 0.95).  ``EQUIVALENT`` lists
mutants known to change no observable behaviour (they are reported, not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> package folder inside the working copy
PACKAGES = {
    "dlnsim": "dlnsim",
    "particles": "dlnsim/particles",
    "meanfield": "dlnsim/meanfield",
    "analysis": "dlnsim/analysis",
    "network": "dlnsim/network",
}
EXTRA = ["tests", "examples", "docs", "benchmarks", "README.md", "pyproject.toml"]
#: a folder of compiled modules calling each other (a mutant there needs a fresh numba cache)
COMPILED_PACKAGE = "particles/pairsum/"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # path in the repository
    old: str  # exact text, replaced once (the ``nth`` occurrence, 0-based)
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, "-k", expressions, "-m", ...
    nth: int = 0


def M(id, file, old, new, *tests, nth=0):  # noqa: N802 - a table constructor
    return Mutant(id, file, old, new, tuple(tests), nth)


FAST = ("-m", "not slow")
MUTANTS: list[Mutant] = [
    # ---------------------------------------------------------------- model: entropy, energy
    M("entropy.linear_coefficient", "particles/pairsum/coefficients.py",
      "return 0.5 * one_minus(depth) * (width - 1)", "return 0.5 * one_minus(depth) * width",
      "tests/test_entropy.py"),
    M("entropy.psi_value_logN", "particles/entropy.py",
      "return math.log(n) + log_sinhc(x) - log_sinhc(y)", "return log_sinhc(x) - log_sinhc(y)",
      "tests/test_entropy.py"),
    M("entropy.psi_derivative_chain", "particles/entropy.py",
      "return log_sinhc(x, 1) - log_sinhc(y, 1) / n", "return log_sinhc(x, 1) - log_sinhc(y, 1)",
      "tests/test_entropy.py"),
    M("entropy.log_sinhc_large", "particles/entropy.py",
      "large = xl - np.log(2.0 * xl) + np.log1p(-np.exp(-2.0 * xl))",
      "large = xl - np.log(2.0 * xl) + np.log1p(-np.exp(-xl))", "tests/test_entropy.py"),
    M("entropy.csch2_factor", "particles/entropy.py",
      "return 4.0 * np.exp(-2.0 * ax) / (em * em)", "return 2.0 * np.exp(-2.0 * ax) / (em * em)",
      "tests/test_entropy.py"),
    M("entropy.pair_half", "particles/entropy.py",
      "out = out + 0.5 * psi(rho[..., iu] - rho[..., ju], n).sum(axis=-1)",
      "out = out + psi(rho[..., iu] - rho[..., ju], n).sum(axis=-1)", "tests/test_entropy.py"),
    M("entropy.hessian_diagonal_sign", "particles/entropy.py",
      "out[..., idx, idx] = 0.5 * p2.sum(axis=-1)", "out[..., idx, idx] = -0.5 * p2.sum(axis=-1)",
      "tests/test_entropy.py", "tests/test_model.py"),
    M("entropy.series_terms", "particles/entropy.py", "_N_TERMS = 16", "_N_TERMS = 5",
      "tests/test_entropy.py"),
    M("energies.schatten_de", "particles/energies.py",
      "return np.power(sigma, self.p - 1.0)", "return np.power(sigma, self.p - 0.9)",
      "tests/test_model.py", *FAST),
    M("energies.schatten_log_hessian", "particles/energies.py",
      "return g, self.p * g", "return g, (self.p - 1.0) * g", "tests/test_model.py", *FAST),
    M("energies.schatten_equilibrium", "particles/energies.py",
      "return float(c ** (1.0 / self.p))", "return float(c ** (1.0 / (self.p + 1.0)))",
      "tests/test_model.py", *FAST),
    M("coordinates.mobility_factor", "particles/coordinates.py",
      "return depth * np.power(sigma, 2.0 - 2.0 / depth)",
      "return np.power(sigma, 2.0 - 2.0 / depth)", "tests/test_model.py", *FAST),
    M("coordinates.to_rho_u", "particles/coordinates.py",
      "return depth * np.log(x)", "return np.log(x) / depth", "tests/test_model.py", *FAST),
    M("model.entropic_force", "particles/model.py",
      "return (self.width - 1) * frac / (2.0 * self.beta)",
      "return (self.width - 1) * frac / self.beta", "tests/test_model.py", *FAST),
    M("model.time_factor_rescaled", "particles/model.py",
      "return w if rescaled else self.depth * w", "return self.depth * w if rescaled else w",
      "tests/test_model.py", "tests/test_flow.py", *FAST),
    M("model.free_energy_sign", "particles/model.py",
      "return self.energy(np.exp(rho)) - entropy_values(rho, self.depth) / self.beta",
      "return self.energy(np.exp(rho)) + entropy_values(rho, self.depth) / self.beta",
      "tests/test_model.py", *FAST),
    M("model.gradient_beta", "particles/model.py",
      "return g_e - entropy_gradient_rho(rho, self.depth) / self.beta",
      "return g_e - entropy_gradient_rho(rho, self.depth) * self.beta",
      "tests/test_model.py", "tests/test_flow.py", *FAST),
    # ---------------------------------------------------------------- Langevin engine
    M("langevin.noise_variance", "particles/model.py",
      "return 2.0 * temperature * (1.0 if self.infinite else 1.0 / self.depth)",
      "return 1.9 * temperature * (1.0 if self.infinite else 1.0 / self.depth)",
      "tests/test_langevin.py", "tests/test_ensemble_temperature.py"),
    M("langevin.noise_depth_scaling", "particles/model.py",
      "return 2.0 * temperature * (1.0 if self.infinite else 1.0 / self.depth)",
      "return 2.0 * temperature * (1.0 if self.infinite else 1.0)",
      "tests/test_langevin.py", "-k", "width_one or depth_one or temperature"),
    M("langevin.kernel_drift_chart", "particles/steppers.py",  # compiled (numba) body
      "x = u[b, i] - (h_u * g[b, i]) / u[b, i]", "x = u[b, i] - (h_u * g[b, i]) * u[b, i]",
      "tests/test_fused.py", "-k", "agrees"),  # the per-step form, against the fused one
    M("langevin.kernel_reflection_count", "particles/steppers.py",  # compiled (numba) body
      "hits[b, i] += 1", "hits[b, i] += 0", "tests/test_fused.py", "-k", "agrees"),
    M("langevin.rescaled_step", "particles/model.py",
      "return 1.0 if (self.infinite or not rescaled) else 1.0 / self.depth",
      "return 1.0", "tests/test_langevin.py", "-k", "zero_temperature"),
    M("langevin.step_count", "particles/driver.py",
      "n = max(1, math.ceil(length / dt * (1.0 - _STEP_RTOL)))",
      "n = max(1, math.ceil(length / dt * (1.0 - _STEP_RTOL)) - 1)",
      "tests/test_langevin.py", *FAST),
    M("langevin.default_temperature", "particles/driver.py",
      "temp = 1.0 / system.beta", "temp = 0.5 / system.beta",
      "tests/test_langevin.py", "tests/test_ensemble_temperature.py", *FAST),
    M("langevin.infinite_depth_drift", "particles/steppers.py",
      "rho_new = rho - self.h_u * self.model.gradient_rho(rho)",
      "rho_new = rho - 0.9 * self.h_u * self.model.gradient_rho(rho)",
      "tests/test_unadjusted_drift.py", "-k", "chamber"),
    M("langevin.noise_counter", "particles/driver.py",  # the step loop's noise counter: only
      "                step += 1\n", "",  # the next batch (after K steps) repeats the noise
      "tests/test_fused.py", "-k", "agrees"),
    M("langevin.noise_rows", "particles/driver.py",
      "normals(seed, members[active], step, batch, size, out=flat)",
      "normals(seed, members[active] + 1, step, batch, size, out=flat)",
      "tests/test_langevin.py", "-k", "documented"),
    # the fused compiled step (compiled bodies; its file recompiles)
    M("fused.drift_chart", "particles/steppers.py",
      "new[i] = ui - (h_u * g) / ui", "new[i] = ui - (h_u * g) * ui", "tests/test_fused.py", "-k",
      "agrees"),
    M("fused.reflection_count", "particles/steppers.py",
      "hits[lo + r, i] += neg", "hits[lo + r, i] += 0", "tests/test_fused.py", "-k", "agrees"),
    M("fused.overflow_rule", "particles/steppers.py",
      "n_bad += not ((ax > 0.0) & (ax <= u_lim))", "n_bad += not (ax > 0.0)",
      "tests/test_fused.py"),
    M("fused.noise_counter", "particles/steppers.py",
      "np.uint64(members[lo + r]), np.uint64(step0 + t0),",
      "np.uint64(members[lo + r]), np.uint64(step0 + t0 + 1),", "tests/test_fused.py", "-k",
      "agrees"),
    M("fused.int_power", "particles/steppers.py",
      "        base = base * base", "        base = base * x", "tests/test_fused.py",
      "-k", "agrees"),
    M("fused.entropy_half", "particles/steppers.py",
      "(0.5 * grad[r, i] + lin) / beta", "(grad[r, i] + lin) / beta", "tests/test_fused.py",
      "-k", "agrees"),
    # the noise stream: Philox and the ziggurat (philox.py's own kernels recompile)
    M("noise.philox_weyl", "particles/philox.py",
      "_W1 = np.uint64(0xBB67AE8584CAA73B)", "_W1 = np.uint64(0xBB67AE8584CAA73C)",
      "tests/test_philox.py", "-k", "known_answer"),
    M("noise.ziggurat_wedge", "particles/philox.py",
      "        if _ZF[j] + u2 * (_ZF[j + 1] - _ZF[j]) < portable_exp(-0.5 * x * x):",
      "        if True:", "tests/test_philox.py", "-k", "normality or tail"),
    M("noise.ziggurat_tail", "particles/philox.py",
      "                if b + b > a * a:", "                if b > a * a:",
      "tests/test_philox.py", "-k", "normality or tail"),
    M("noise.counter_seed_hi", "particles/philox.py",
      "            c[2, j] = seed_hi\n", "            c[2, j] = zero\n",
      "tests/test_philox.py", "-k", "bitwise"),
    M("entropy_values.log_n", "particles/pairsum/values.py",
      "scratch[k] = (log_n + _log_sinhc(x)) - _log_sinhc(x * inv_n)",
      "scratch[k] = _log_sinhc(x) - _log_sinhc(x * inv_n)", "tests/test_entropy_values.py"),
    M("entropy_values.far_branch", "particles/pairsum/values.py",
      "return ax - portable_log(2.0 * ax) + tail", "return ax - portable_log(ax) + tail",
      "tests/test_entropy_values.py"),
    # ---------------------------------------------------------------- ensemble
    M("ensemble.temperature_dropped", "particles/ensemble/chunk.py",
      "model, starts, members, times, dt, seed, temperature=temperature, rescaled=rescaled",
      "model, starts, members, times, dt, seed, temperature=None, rescaled=rescaled",
      "tests/test_ensemble_temperature.py", *FAST),
    M("ensemble.default_temperature", "particles/ensemble/runner.py",
      "1.0 / model.beta\n        if temperature is None",
      "0.5 / model.beta\n        if temperature is None",
      "tests/test_ensemble_temperature.py", *FAST),
    M("ensemble.combine_m2", "particles/ensemble/tree.py",
      "m2 = sa + sb + (delta * delta) * (na * nb / n)", "m2 = sa + sb",
      "tests/test_ensemble.py", "-k", "reductions"),
    M("ensemble.sample_variance", "particles/ensemble/tree.py",
      "var = np.where(count > 1, m2 / (count - 1.0), np.nan)",
      "var = np.where(count > 1, m2 / count, np.nan)",
      "tests/test_ensemble.py", "-k", "reductions"),
    # ---------------------------------------------------------------- mean field
    M("meanfield.sheppard", "meanfield/solver.py",
      "+ self.dxi**2 / 12.0", "+ 0.0", "tests/test_meanfield.py",
      "tests/test_meanfield_accuracy.py", "tests/test_meanfield_equilibrium.py",
      "tests/test_pde_exact.py", *FAST),
    # the Scharfetter-Gummel flux's common factor: the stationary state does not depend on it
    # (every equilibrium test passes), only the speed of the dynamics does: killed by the exact
    # Ornstein-Uhlenbeck solution (tests/test_pde_exact.py)
    M("meanfield.diffusion_coefficient", "meanfield/solver.py",
      "coef = a / (beta * h * h)", "coef = a / (beta * h * h * 1.01)",
      "tests/test_pde_exact.py", "tests/test_meanfield_equilibrium.py",
      "-k", "ornstein or solve_long_time"),
    M("meanfield.free_energy_pair_half", "meanfield/solver.py",
      "out -= 0.5 * self.weight * float(masses @ v)", "out -= self.weight * float(masses @ v)",
      "tests/test_pde_exact.py"),  # the equilibrium solver shares Scheme.free_energy
    M("meanfield.chart_jacobian", "meanfield/solver.py",
      "out = 0.5 * h * (g @ gw) - self.jacobian * h", "out = 0.5 * h * (g @ gw)",
      "tests/test_pde_exact.py", "-k", "stationary"),
    M("meanfield.wasserstein_trapezoid", "meanfield/solver.py",
      "crossing, 2.0 * total, 1.0), 0.5 * total)", "crossing, 2.0 * total, 1.0), total)",
      "tests/test_pde_exact.py", "tests/test_meanfield.py", *FAST),
    M("meanfield.wasserstein_crossing", "meanfield/solver.py",
      "mean = np.where(crossing, (a * a + b * b)", "mean = np.where(crossing, 0.5 * (a + b)",
      "tests/test_pde_exact.py", "-k", "step_error"),
    # the collapsed bump's stiff centre (ROS2) and the mobility cap in the far tail
    M("meanfield.ros2_second_stage", "meanfield/solver.py",
      "vm1 = 2.0 * vm0 + gain * (vm1 - 2.0 * vm0)", "vm1 = gain * vm1",
      "tests/test_meanfield_sweep.py", "-k", "collapsed"),
    M("meanfield.guard_lowest_free", "meanfield/solver.py",
      "free = min(free, new_free)", "free = new_free",
      "tests/test_meanfield_sweep.py", "-k", "small_rises"),
    M("meanfield.mobility_cap", "meanfield/solver.py",
      "return np.minimum(self.model.time_factor(rho, self.rescaled), self.mobility_cap)",
      "return self.model.time_factor(rho, self.rescaled)",
      "tests/test_meanfield_grid.py", "-k", "small_depth"),
    # the mobility a = N e^{-2 rho/N} the mean field's fluxes use (Model.time_factor)
    M("meanfield.mobility_slope", "particles/model.py",
      "w = np.exp(-2.0 * rho / self.depth)", "w = np.exp(-1.0 * rho / self.depth)",
      "tests/test_meanfield.py", *FAST),
    # ---------------------------------------------------------------- statistics
    M("repulsion.ratio_se", "analysis/repulsion.py",
      "return float(row.mean()), float(row.std(ddof=1) / math.sqrt(row.size))",
      "return float(row.mean()), float(row.std(ddof=1) / row.size)", "tests/test_repulsion.py"),
    M("repulsion.small_fraction", "analysis/repulsion.py",
      "return float(np.mean(s < threshold))", "return float(np.mean(s < 1.2 * threshold))",
      "tests/test_repulsion.py"),
    M("repulsion.raw_spacings_normalised", "analysis/repulsion.py",
      "return raw / mean", "return raw", "tests/test_repulsion.py"),
    M("repulsion.exponent_interval", "analysis/repulsion.py",
      "alpha = 0.5 * (1.0 - confidence)", "alpha = 1.0 - confidence", "tests/test_repulsion.py"),
    M("repulsion.ratio_min_max", "analysis/repulsion.py",
      "lo = np.minimum(s[:, :-1], s[:, 1:])", "lo = s[:, :-1]", "tests/test_repulsion.py"),
    M("relaxation.rate_fit", "analysis/relaxation.py",
      "fitted = -np.polyfit(times[start:], np.log(dist[start:]), 1)[0]",
      "fitted = -np.polyfit(times[start:], np.log(dist[start:]), 1)[0] * 0.98",
      "tests/test_relaxation.py"),
    M("depth.fit_order", "analysis/experiments/depth.py",
      "np.log(errors[use]), 1)[0])", "np.log(errors[use] ** 1.1), 1)[0])",
      "tests/test_depth.py", *FAST),
    M("meanfield_compare.l1_missing_mass", "analysis/meanfield_compare.py",
      "return float(np.abs(masses - frac).sum() + (1.0 - frac.sum()))",
      "return float(np.abs(masses - frac).sum())", "tests/test_meanfield_compare.py", *FAST),
    M("rmt.gbe_diagonal", "particles/rmt.py",
      "diag = rng.standard_normal((size, n)) * np.sqrt(2.0 / b)",
      "diag = rng.standard_normal((size, n)) * np.sqrt(1.0 / b)", "tests/test_rmt.py"),
    M("rmt.gbe_chi_dof", "particles/rmt.py",
      "dof = b * np.arange(n - 1, 0, -1, dtype=np.float64)",
      "dof = b * np.arange(n, 1, -1, dtype=np.float64)", "tests/test_rmt.py"),
    M("rmt.ginibre_scale", "particles/rmt.py",
      "scale = np.sqrt(variance)", "scale = variance", "tests/test_rmt.py"),
    M("rmt.ginibre_default_variance", "particles/rmt.py",
      "rng: np.random.Generator, variance: float = 1.0",
      "rng: np.random.Generator, variance: float = 1.05", "tests/test_rmt.py"),
    # ---------------------------------------------------------------- baselines
    M("baselines.orbit_linear_term", "particles/baselines.py",
      "return (self.width - 1) / n + rowsum(offdiag(1.0 / np.tanh(diff / n))) / n",
      "return rowsum(offdiag(1.0 / np.tanh(diff / n))) / n", "tests/test_baselines.py", *FAST),
    M("baselines.dyson_confinement", "particles/baselines.py",
      "return -0.5 * x", "return -0.45 * x",
      "tests/test_baselines.py", "tests/test_repulsion_experiment.py", *FAST),
    # ---------------------------------------------------------------- kernels (compiled)
    M("pairforce.dL_large", "particles/pairsum/pairs.py",  # compiled (numba) body
      "val = (1.0 + t) / (1.0 - t) - 1.0 / ax", "val = (1.0 + t) / (1.0 - t) - 0.5 / ax",
      "tests/test_kernels.py", *FAST),
    M("pairforce.antisymmetry", "particles/pairsum/exact.py",  # compiled (numba) body
      "out[j] -= f", "out[j] += f", "tests/test_kernels.py", *FAST),
    # ---------------------------------------------------------------- experiments, CLI, I/O
    M("experiment.verdict_inverted", "analysis/experiments/repulsion.py",
      "no_rep = all(low[k] <= 0 <= high[k] for k in chamber) if chamber else None",
      "no_rep = (not all(low[k] <= 0 <= high[k] for k in chamber)) if chamber else None",
      "tests/test_verdict.py", *FAST),
    M("experiment.expected_exponent_ginibre", "analysis/experiments/repulsion.py",
      'if kind in ("matrix_variant", "ginibre"):\n        return 1.0',
      'if kind in ("matrix_variant", "ginibre"):\n        return 2.0',
      "tests/test_repulsion_experiment.py", "-k", "not command"),
    M("pipeline.scan_temperature", "analysis/experiments/ensemble.py",
      "temperature=float(temp),", "temperature=None,", "tests/test_claims_cli.py", "-k", "run"),
    M("pipeline.default_scan", "analysis/experiments/ensemble.py",
      "[1 / (model.beta * 2**k) for k in range(4)]", "[1 / (model.beta * 2**k) for k in range(3)]",
      "tests/test_claims_cli.py", "-k", "run"),
    M("cli.default_local_cluster", "analysis/cli.py",
      'os.environ.get("DASK_SCHEDULER_ADDRESS") or DEFAULT_SCHEDULER',
      'os.environ.get("DASK_SCHEDULER_ADDRESS") or "serial"',
      "tests/test_claims_cli.py", "-k", "local_cluster"),
    M("cli.exit_status", "analysis/cli.py",
      "return _error(exc, EXIT_BAD_INPUT)", "return _error(exc, 1)",
      "tests/test_cli.py", *FAST),
    M("validation.why", "particles/validation.py",
      'return ValueError(f"bad {name}={value!r}: {why}")',
      'return ValueError(f"bad {name}={value!r}")', "tests/test_claims_cli.py", "-k", "why"),
    M("datasets.inf_attr", "particles/datasets.py",
      'out[key] = "inf" if value > 0 else', 'out[key] = "Infinity" if value > 0 else',
      "tests/test_datasets.py"),
    # ------------------------------------- log-gas engine (particles/proximal.py), matrix variant
    # drift-only and chart-noise bugs that a Metropolis-adjusted run hides (the proposal density
    # uses the same drift, kappa and variance, so the law stays exact): killed by the unadjusted
    # one-step drift and the unadjusted stationary virial (tests/test_unadjusted_drift.py)
    M("proximal.unadjusted_smooth_step", "particles/proximal.py",
      "else x + self.h_x * self.system.smooth_drift(x)",
      "else x + 0.9 * self.h_x * self.system.smooth_drift(x)",
      "tests/test_unadjusted_drift.py", "tests/test_baselines.py", *FAST),
    M("proximal.pair_step", "particles/proximal.py",
      "self.hk = self.kappa * self.h_x", "self.hk = 0.9 * self.kappa * self.h_x",
      "tests/test_unadjusted_drift.py", "tests/test_baselines.py", *FAST),
    M("proximal.chart_noise", "particles/proximal.py",
      "self.var = self.noise_var * self.h_x", "self.var = 0.5 * self.noise_var * self.h_x",
      "tests/test_unadjusted_drift.py", "tests/test_baselines.py", *FAST),
    M("variant.smooth_drift_depth", "particles/baselines.py",
      "return -self.smooth_gradient_rho(self.depth * np.log(x)) / x",
      "return -self.smooth_gradient_rho(self.depth * np.log(x)) / (self.depth * x)",
      "tests/test_unadjusted_drift.py", "tests/test_baselines.py", *FAST),
    M("variant.pair_coefficient", "particles/baselines.py",
      "return 1.0 / self.beta if self.infinite else 1.0 / (self.depth * self.beta)",
      "return 1.0 / self.beta", "tests/test_unadjusted_drift.py",
      "tests/test_baselines.py", *FAST),
    M("variant.chart_noise", "particles/baselines.py",
      "return 2.0 * temperature if self.infinite else 2.0 * temperature / self.depth",
      "return 2.0 * temperature", "tests/test_unadjusted_drift.py",
      "tests/test_baselines.py", *FAST),
    # ---------------------------------------------------------------- network (matrix level)
    M("network.completion_gradient_mask", "network/energies.py",
      "return np.where(self.mask, x, 0.0) - self._masked_target",
      "return x - self._masked_target", "tests/test_network.py", *FAST),
    M("network.regression_half", "network/energies.py",
      "return 0.5 * np.sum(r * r, axis=(-2, -1))", "return np.sum(r * r, axis=(-2, -1))",
      "tests/test_network.py", *FAST, nth=1),
    M("network.unobserved_error", "network/energies.py",
      "_relative(diff, self.target, ~self.mask)", "_relative(diff, self.target, self.mask)",
      "tests/test_network.py", "tests/test_network_completion.py", *FAST),
    M("network.model_entropy_sign", "network/model.py",
      "frame[..., idx, idx] -= ds / self.beta", "frame[..., idx, idx] += ds / self.beta",
      "tests/test_network.py", *FAST),
    M("network.model_kernel_rescaled", "network/model.py",
      "return k / self.depth if (rescaled and not self.infinite) else k", "return k",
      "tests/test_network.py", *FAST),
    M("network.velocity_operator", "network/model.py",
      "return -(u @ (self._kernel(s, rescaled) * frame) @ vt)",
      "return -(u @ (np.sqrt(self._kernel(s, rescaled)) * frame) @ vt)",
      "tests/test_network.py", *FAST),
    M("network.effective_rank_entropy", "network/model.py",
      "return np.where(total[..., 0] > 0, np.exp(h), np.nan)",
      "return np.where(total[..., 0] > 0, np.exp(0.5 * h), np.nan)",
      "tests/test_network.py", "tests/test_network_completion.py", *FAST),
    M("network.factors_root", "network/factors.py",
      "root = s ** (1.0 / n)", "root = s ** (1.0 / (n + 1))", "tests/test_network.py", *FAST),
    M("network.factors_gradient_transpose", "network/factors.py",
      "out[j] = above.T @ g @ below[j].T", "out[j] = above @ g @ below[j].T",
      "tests/test_network.py", *FAST),
    M("network.completion_observed", "network/completion.py",
      "mask[order[:m]] = True", "mask[order[: m - 1]] = True",
      "tests/test_network_completion.py", *FAST),
    # drift-only (hidden by Metropolis): the Ito coefficient T (1 - 1/N), and the step's drift
    M("network.ito_coefficient", "network/system.py",
      "spectral = grad_s / beta + temperature * weight",
      "spectral = grad_s / beta + temperature", "tests/test_network_langevin.py", *FAST),
    M("network.ito_half", "network/system.py",
      "spectral = grad_s / beta + temperature * weight",
      "spectral = grad_s / beta + 0.5 * temperature * weight",
      "tests/test_network_langevin.py", *FAST),
    M("network.kernel_diagonal", "network/system.py",
      "logk[:, idx, idx] = 2.0 * weight * rho + (0.0 if infinite else math.log(depth))",
      "logk[:, idx, idx] = 2.0 * weight * rho", "tests/test_network_langevin.py", *FAST),
    M("network.step_drift", "network/langevin.py",
      "move = self.h * cur.drift", "move = 0.9 * self.h * cur.drift",
      "tests/test_network_langevin.py", *FAST),
    # the noise map sqrt(K) o Z: K = 1 at N = 1, so only a test at N > 1 sees it
    M("network.noise_sqrt_kernel", "network/langevin.py",
      "move += self.amp * np.sqrt(cur.k) * xi", "move += self.amp * cur.k * xi",
      "tests/test_network_langevin.py", *FAST),
    # Metropolis only: -1/2 log det A_Y in the reverse proposal (0 at N = 1)
    M("network.reverse_logdet", "network/langevin.py",
      "/ var - 0.5 * new.logdet", "/ var", "tests/test_network_langevin.py", "-k", "metropolis"),
]  # fmt: skip

#: mutants known to change nothing observable: id -> why (reported, not counted)
EQUIVALENT: dict[str, str] = {
    "meanfield.sheppard": (
        "Scheme.moments only places the moving grid (centre m, scale s): dropping the cell's "
        "dxi^2/12 moves s (the grid_width output) by ~dxi^2/24, 1e-4 relative on the tests' "
        "grids, and the density and its moments (midpoint sums) only by discretization error"
    ),
}


# ------------------------------------------------------------------------------ machinery
def _copy_tree(dest: Path) -> None:
    """(Re)build the working copy: package layout plus tests; keeps mtimes (numba's cache)."""
    for src, rel in PACKAGES.items():
        target = dest / rel
        _sync(ROOT / src, target, skip=set(PACKAGES) if src == "dlnsim" else set())
    for name in EXTRA:
        src = ROOT / name
        if src.is_dir():
            _sync(src, dest / name, skip=set())
        elif src.exists():
            shutil.copy2(src, dest / name)


def _sync(src: Path, dest: Path, skip: set[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in skip or item.name == "__pycache__" or item.name.startswith("."):
            continue
        if item.is_dir():
            _sync(item, dest / item.name, set())
        elif item.suffix not in (".nbi", ".nbc", ".pyc"):
            target = dest / item.name
            st = item.stat()
            if not target.exists() or target.stat().st_mtime != st.st_mtime:
                shutil.copy2(item, target)


def _target(dest: Path, file: str) -> Path:
    top, rest = file.split("/", 1)
    return dest / PACKAGES.get(top, top) / rest


def _apply(m: Mutant, dest: Path) -> bool:
    path = _target(dest, m.file)
    text = path.read_text()
    pos = -1
    for _ in range(m.nth + 1):
        pos = text.find(m.old, pos + 1)
        if pos < 0:
            return False
    path.write_text(text[:pos] + m.new + text[pos + len(m.old) :])
    return True


def _restore(m: Mutant, dest: Path) -> None:
    shutil.copy2(ROOT / m.file, _target(dest, m.file))


def _pytest(
    dest: Path, args: tuple[str, ...], timeout: float, cache_dir: str | None = None
) -> tuple[int | None, str, float]:
    env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    if cache_dir is not None:  # compile everything afresh (see the module docstring)
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None, "timeout", time.monotonic() - start
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, tail[-1] if tail else "", time.monotonic() - start


def _check_copy(dest: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(dest))
    out = subprocess.run(
        [sys.executable, "-c", "import dlnsim.particles as p; print(p.__file__)"],
        cwd=dest, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not out.startswith(str(dest)):
        raise SystemExit(f"the working copy is not imported first ({out}); aborting")


def run(mutants: list[Mutant], work: Path, timeout: float, jobs: int) -> list[tuple]:
    dests = [work / f"copy{j}" for j in range(jobs)]
    for dest in dests:
        _copy_tree(dest)
        _check_copy(dest)
    free = list(dests)
    results: list[tuple] = []

    def one(m: Mutant) -> tuple:
        dest = free.pop()
        try:
            if not _apply(m, dest):
                return m, "stale", "mutated text not found", 0.0
            try:
                if m.file.startswith(COMPILED_PACKAGE):
                    with tempfile.TemporaryDirectory() as cache_dir:
                        code, tail, secs = _pytest(dest, m.tests, timeout, cache_dir)
                else:
                    code, tail, secs = _pytest(dest, m.tests, timeout)
            finally:
                _restore(m, dest)
            if code is None:  # over the time limit: on a busy machine this is not a kill
                status = "timeout"
            elif code == 0:
                status = "equivalent" if m.id in EQUIVALENT else "SURVIVED"
            elif code in (4, 5):  # usage error / no test collected: the subset is wrong
                status, tail = "error", f"pytest exit {code}: " + tail
            else:
                status = "killed"
            return m, status, tail, secs
        finally:
            free.append(dest)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for m, status, tail, secs in pool.map(one, mutants):
            print(f"{status:>10}  {m.id:<40} {secs:6.1f}s  {tail[:90]}", flush=True)
            results.append((m, status, tail, secs))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutants whose id contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    parser.add_argument("--target", type=float, default=0.95, help="kill rate to reach")
    parser.add_argument(
        "--work", default=os.path.join(tempfile.gettempdir(), "dlnsim-mutation"),
        help="working folder (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--exclude", default=None, help="skip mutants whose id contains this")
    parser.add_argument("--reverse", action="store_true", help="run the selection backwards")
    parser.add_argument("--shard", default="0/1", help="run mutants i, i+n, ... (i/n)")
    parser.add_argument("--baseline", action="store_true", help="first run every subset unmutated")
    args = parser.parse_args(argv)
    index, count = (int(v) for v in args.shard.split("/"))
    mutants = [
        m for m in MUTANTS if args.k in m.id and not (args.exclude and args.exclude in m.id)
    ][index::count]
    if args.reverse:
        mutants.reverse()
    if args.list:
        for m in mutants:
            print(f"{m.id:<40} {m.file:<36} {' '.join(m.tests)}")
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.baseline:
        dest = work / "copy0"
        _copy_tree(dest)
        for tests in sorted({m.tests for m in mutants}):
            code, tail, secs = _pytest(dest, tests, args.timeout)
            print(f"{'baseline':>10}  {' '.join(tests):<60} {secs:6.1f}s  {tail[:60]}")
            if code != 0:
                raise SystemExit("the unmutated code fails this subset: fix it first")
    results = run(mutants, work, args.timeout, max(1, args.jobs))
    counted = [r for r in results if r[1] in ("killed", "SURVIVED", "error")]
    killed = sum(r[1] == "killed" for r in counted)
    rate = killed / len(counted) if counted else 0.0
    print(f"\nkill rate: {killed}/{len(counted)} = {rate:.1%} (target {args.target:.0%})")
    for m, status, tail, _ in results:
        if status != "killed":
            why = EQUIVALENT.get(m.id, tail)
            print(f"  {status}: {m.id} ({m.file}): {why}")
    return 0 if rate >= args.target and all(r[1] != "stale" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
