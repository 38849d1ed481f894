r"""Euler-Maruyama steppers for the one step loop (``particles.driver``; docs/theory.md 9, 13.2).

``EulerMaruyama`` steps any ``particles.system.System`` in its flat chart ``x``:

    x <- reflect(x + h_x b(x) + sqrt(noise_variance(T) h_x) xi),

with ``h_x = h * time_scale`` and one reflection counted per sign flip at a reflecting boundary.

``FusedChamberEulerMaruyama`` is the chamber ``Model`` at finite ``N`` with a Schatten energy
(the engine of ``particles.langevin.simulate_members`` for those): an interval stepper
(``driver.IntervalStepper``) whose save interval runs in one compiled call, rows in blocks
(``prange`` over blocks when threads are given), each block stepping on its own: the pair sum
(``pairsum.pair_force_u_rows``, the kernel ``pair_force_u`` picks per member), the energy force
``sigma^p`` (``u^{N p}`` by repeated squaring when ``N p`` is an integer up to 64, else
``exp(p N log u)``, portable), the noise (``philox.fill_member_normals``: the stream the loop
would give), the update, the reflection count and the failure check, with no Python per step.
A block's rows leave and enter memory once per interval.  Failure: ``|u_new| = 0``, NaN, or
``|u_new| > u_limit(N)`` (the largest ``u`` with ``N portable_log(u) <= log(max float)``), the
same rule as ``advance_u``'s on ``rho``; a failing row keeps its state before the step.

``ChamberEulerMaruyama`` is the per-step form for any energy:

* finite ``N``, in ``u = sigma^{1/N}``: ``u <- |u - (h_u dF/drho) / u + amp xi|`` with
  ``dF/drho`` from ``Model.gradient_rho_u`` (the compiled pair sum straight from ``u``, no
  logarithm per pair), and the update, the reflection count and ``rho = N log u`` in one
  compiled pass (``advance_u``) on preallocated buffers: a step allocates no array;
* ``N = inf``, in ``rho``: ``rho <- rho - h dF/drho + amp xi``.

All three agree (the same noise; tests/test_fused.py): bitwise at ``N = inf``; at finite ``N`` to
rounding (the logarithm: ``advance_u`` uses ``pairsum.portable_log``, the generic stepper numpy's;
the energy force: the fused step's powers against numpy's ``exp``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .energies import Schatten
from .model import LOG_MAX, Model, sorted_desc
from .pairsum import LANES, default_threads, portable_log
from .pairsum.coefficients import linear_coefficient
from .pairsum.dispatch import pair_force_u_rows, row_kernel_args
from .pairsum.portable import portable_exp
from .philox import fill_member_normals, noise_work, seed_words
from .system import System
from .validation import fail

__all__ = [
    "ChamberEulerMaruyama",
    "EulerMaruyama",
    "FUSE_MIN_WIDTH",
    "FusedChamberEulerMaruyama",
    "advance_u",
    "fusable",
    "u_limit",
]


@numba.njit(cache=True, error_model="numpy")
def advance_u(u, g, h_u, amp, xi, noisy, depth, hits, u_new, rho_new, bad):
    """One Euler-Maruyama step in ``u`` for every row (compiled, fused; no fast-math, and the
    logarithm is ``pairsum.portable_log``, not libm's, so the bits do not depend on the CPU):
    ``u_new = |u - (h_u g) / u + amp xi|``, ``rho_new = N log u_new``.  A row is bad when some
    ``rho_new`` is NaN, ``-inf`` (``u_new = 0``) or above ``log(max float)``; for the other rows
    each sign flip (reflection) adds 1 to ``hits``.  Returns the number of bad rows.

    Parameters
    ----------
    u, g : numpy.ndarray
        ``(m, d)`` states and ``dF/drho``.
    h_u, amp : float
        The step in ``u``'s time and the noise amplitude ``sqrt(2 T h_u / N)``.
    xi : numpy.ndarray
        ``(m, d)`` standard normals (read only if ``noisy``).
    noisy : bool
        Add the noise.
    depth : float
        ``N``.
    hits : numpy.ndarray
        ``(m, d)`` int64 reflection counts, incremented.
    u_new, rho_new : numpy.ndarray
        ``(m, d)`` outputs.
    bad : numpy.ndarray
        ``(m,)`` bool output: failing rows.

    Returns
    -------
    int
        The number of bad rows.
    """
    m, d = u.shape
    n_bad = 0
    for b in range(m):
        ok = True
        for i in range(d):
            x = u[b, i] - (h_u * g[b, i]) / u[b, i]
            if noisy:
                x += amp * xi[b, i]
            u_new[b, i] = x
            r = depth * portable_log(abs(x))
            rho_new[b, i] = r
            ok = ok and r <= LOG_MAX and r > -math.inf
        bad[b] = not ok
        if ok:
            for i in range(d):
                if u_new[b, i] < 0.0:
                    hits[b, i] += 1
                    u_new[b, i] = -u_new[b, i]
        else:
            n_bad += 1
    return n_bad


#: the largest integer exponent ``N p`` taken by repeated squaring (else ``exp(p N log u)``)
MAX_INT_POWER = 64
#: the narrowest width the fused step is chosen for by default (``fused=None``): its compiled
#: code is specialized per depth (~10 s of compilation each on a cold cache), which the small
#: systems of the default run (d = 4, 6, 8) would pay many times over for little run time
FUSE_MIN_WIDTH = 16


def u_limit(depth: int) -> float:
    """The largest float ``u`` with ``depth * portable_log(u) <= LOG_MAX``: the fused step's
    bound on ``u = sigma^{1/N}``, the same rule as ``advance_u``'s ``rho <= log(max float)``.

    Parameters
    ----------
    depth : int
        ``N``, a finite integer >= 1.

    Returns
    -------
    float
        The bound.
    """
    lo = float(np.exp(LOG_MAX / depth))
    while depth * portable_log(lo) > LOG_MAX:  # rounding may put the estimate just above
        lo = float(np.nextafter(lo, 0.0))
    top = float(np.finfo(np.float64).max)
    while lo < top and depth * portable_log(float(np.nextafter(lo, top))) <= LOG_MAX:
        lo = float(np.nextafter(lo, top))
    return lo


@numba.njit(cache=True, error_model="numpy")
def _int_power(x, k):
    """``x**k`` for an integer ``1 <= k < 128`` by repeated squaring in a fixed order: the
    result starts as ``x^(2^b)`` at the lowest set bit ``b`` of ``k`` and is multiplied by
    ``x^(2^b')`` at each higher set bit ``b'``.  Seven squarings whatever ``k`` (the unused ones
    are discarded), so a loop over ``x`` vectorizes: the choices are selects on ``k``."""
    result = 1.0
    first = True
    base = x
    for bit in range(7):
        if (k >> bit) & 1:
            result = base if first else result * base
            first = False
        base = base * base
    return result


@numba.njit(cache=True, error_model="numpy")
def _sigma_p(u, depth, p, k_int):
    """``sigma^p = u^{N p}``: repeated squaring for ``k_int = N p`` an integer, else
    ``exp(p (N log u))`` (portable)."""
    if k_int > 0:
        return _int_power(u, k_int)
    return portable_exp(p * (depth * portable_log(u)))


@numba.njit(cache=True, error_model="numpy")
def _advance_block(u, hits, fail_at, members, lo, hi, seed_lo, seed_hi, step0, n_steps, h_u, amp,
                   noisy, beta, lin, depth, p, k_int, u_lim, n_int, fam, cn, cl, nt, lanes,
                   k_steps):  # fmt: skip
    """Rows ``lo <= r < hi`` of ``u`` through ``n_steps`` steps (the module docstring's fused
    step); ``fail_at[r]`` the failing step's index in the interval, or -1."""
    d = u.shape[1]
    b = hi - lo
    rows = np.empty((b, d))  # the block's own copy: contiguous, in cache, not shared
    for r in range(b):
        fail_at[lo + r] = -1
        for i in range(d):
            rows[r, i] = u[lo + r, i]
    grad = np.empty((b, d))
    new = np.empty(d)
    codes = np.empty(b, dtype=np.int64)
    ranks = np.empty(b, dtype=np.int64)
    fs = np.empty((11, d))
    ks = np.empty((2, d), dtype=np.int64)
    xi = np.zeros((b, k_steps, d))
    work = noise_work()
    t0 = 0
    while t0 < n_steps:
        kk = min(k_steps, n_steps - t0)
        if noisy:
            for r in range(b):
                if fail_at[lo + r] < 0:
                    fill_member_normals(
                        seed_lo, seed_hi, np.uint64(members[lo + r]), np.uint64(step0 + t0),
                        xi[r, :kk], work,
                    )  # fmt: skip
        for t in range(kk):
            pair_force_u_rows(rows, grad, codes, ranks, n_int, fam, cn, cl, nt, lanes, fs, ks)
            for r in range(b):
                if fail_at[lo + r] >= 0:
                    continue
                # the drift, then the noise and the failure check, then the reflection: loops
                # without branches on the data (vectorized; the same operations and order)
                if k_int > 0:
                    for i in range(d):
                        ui = rows[r, i]
                        g = _int_power(ui, k_int) - (0.5 * grad[r, i] + lin) / beta
                        new[i] = ui - (h_u * g) / ui
                else:
                    for i in range(d):
                        ui = rows[r, i]
                        g = _sigma_p(ui, depth, p, k_int) - (0.5 * grad[r, i] + lin) / beta
                        new[i] = ui - (h_u * g) / ui
                n_bad = 0
                if noisy:
                    for i in range(d):
                        x = new[i] + amp * xi[r, t, i]
                        new[i] = x
                        ax = abs(x)
                        n_bad += not ((ax > 0.0) & (ax <= u_lim))
                else:
                    for i in range(d):
                        ax = abs(new[i])
                        n_bad += not ((ax > 0.0) & (ax <= u_lim))
                if n_bad == 0:
                    for i in range(d):
                        x = new[i]
                        neg = x < 0.0
                        hits[lo + r, i] += neg
                        rows[r, i] = -x if neg else x
                else:
                    fail_at[lo + r] = t0 + t
        t0 += kk
    for r in range(b):
        for i in range(d):
            u[lo + r, i] = rows[r, i]


@numba.njit(cache=True, error_model="numpy")
def _advance_serial(u, hits, fail_at, members, block, seed_lo, seed_hi, step0, n_steps, h_u, amp,
                    noisy, beta, lin, depth, p, k_int, u_lim, n_int, fam, cn, cl, nt, lanes,
                    k_steps):  # fmt: skip
    m = u.shape[0]
    for lo in range(0, m, block):
        _advance_block(
            u, hits, fail_at, members, lo, min(m, lo + block), seed_lo, seed_hi, step0,
            n_steps, h_u, amp, noisy, beta, lin, depth, p, k_int, u_lim, n_int, fam, cn, cl, nt,
            lanes, k_steps,
        )  # fmt: skip


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _advance_parallel(u, hits, fail_at, members, block, seed_lo, seed_hi, step0, n_steps, h_u,
                      amp, noisy, beta, lin, depth, p, k_int, u_lim, n_int, fam, cn, cl, nt,
                      lanes, k_steps):  # fmt: skip
    m = u.shape[0]
    for c in prange((m + block - 1) // block):
        lo = c * block
        _advance_block(
            u, hits, fail_at, members, lo, min(m, lo + block), seed_lo, seed_hi, step0,
            n_steps, h_u, amp, noisy, beta, lin, depth, p, k_int, u_lim, n_int, fam, cn, cl, nt,
            lanes, k_steps,
        )  # fmt: skip


def fusable(model: Model) -> bool:
    """Whether ``FusedChamberEulerMaruyama`` takes ``model``: finite ``N`` and a Schatten
    energy (a user energy's callables cannot run inside compiled code).

    Parameters
    ----------
    model : Model
        The chamber model.

    Returns
    -------
    bool
        True for the fused step.
    """
    return not model.infinite and isinstance(model.energy, Schatten)


class FusedChamberEulerMaruyama:
    """The fused compiled Euler-Maruyama step of the chamber ``Model`` at finite ``N`` with a
    Schatten energy (module docstring), a ``driver.IntervalStepper``.

    Parameters
    ----------
    model : Model
        The chamber model (``fusable(model)``).
    start : numpy.ndarray
        ``(m, d)`` initial singular values, rows sorted descending, C-contiguous.
    temperature : float
        Noise temperature ``T >= 0``.
    rescaled : bool
        The run's time is ``tau = N t``.
    threads : int, optional
        Threads over blocks of rows; default ``pairsum.default_threads()``.  The bits do not
        depend on it.
    """

    def __init__(
        self,
        model: Model,
        start: np.ndarray,
        temperature: float,
        rescaled: bool,
        threads: int | None = None,
    ):
        if not fusable(model):
            why = "the fused step needs a finite depth and a Schatten energy"
            raise fail("model", model.describe(), why)
        self.model = model
        self.outputs = model.outputs
        self.noise_shape = model.state_shape
        m, d = start.shape
        self.depth = float(model.depth)
        self.u_scale = model.time_scale(rescaled)
        self.noise_var = model.noise_variance(temperature)
        self.noisy = temperature > 0.0
        self.u = np.ascontiguousarray(np.exp(np.log(start) / model.depth))
        self.hits = np.zeros((m, d), dtype=np.int64)
        self.reflections = np.zeros(m, dtype=np.int64)
        self.threads = default_threads() if threads is None else int(threads)
        p = float(model.energy.p)
        k = p * model.depth
        self.p = p
        self.k_int = int(k) if k == int(k) and 1 <= k <= MAX_INT_POWER else 0
        self.u_lim = u_limit(int(model.depth))
        self.lin = float(linear_coefficient(d, model.depth))
        self.kargs = row_kernel_args(int(model.depth), d)
        lanes = self.kargs[-1]
        self.block = LANES if lanes else 4
        self.k_steps = max(1, 256 // d) if lanes else max(1, 512 // d)
        self.h_u = self.amp = 0.0

    def begin(self, h: float, n_steps: int) -> None:
        """A save interval with steps ``h``: ``h_u = h * time_scale``, the noise amplitude."""
        self.h_u = h * self.u_scale
        self.amp = math.sqrt(self.noise_var * self.h_u)

    def advance(self, n_steps: int, step0: int, seed: int, members: np.ndarray) -> np.ndarray:
        """The interval's steps in one compiled call; each row's failing step, or -1."""
        fail_at = np.empty(self.u.shape[0], dtype=np.int64)
        if self.u.shape[0] == 0:
            return fail_at
        seed_lo, seed_hi = seed_words(seed)
        parallel = self.threads > 1 and self.u.shape[0] > self.block
        kernel = _advance_parallel if parallel else _advance_serial
        args = (
            self.u, self.hits, fail_at, np.ascontiguousarray(members, dtype=np.int64),
            self.block, seed_lo, seed_hi, np.int64(step0), n_steps, self.h_u, self.amp,
            self.noisy, float(self.model.beta), self.lin, self.depth, self.p, self.k_int,
            self.u_lim, *self.kargs, self.k_steps,
        )  # fmt: skip
        if parallel:
            old = numba.get_num_threads()
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
            try:
                kernel(*args)
            finally:
                numba.set_num_threads(old)
        else:
            kernel(*args)
        return fail_at

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove failing rows; their singular values before the failing step."""
        last = self._sigma(self.u[bad])
        self.reflections[lost] = self.hits[bad].sum(axis=1)
        self.u, self.hits = self.u[ok], self.hits[ok]
        return {"sigma": last}

    def _sigma(self, u: np.ndarray) -> np.ndarray:
        rho = np.empty_like(u)
        _depth_log(u, self.depth, rho)
        return sorted_desc(np.exp(rho))

    def save(self) -> dict[str, np.ndarray]:
        """``sigma = e^{N log u}``, rows sorted descending."""
        return {"sigma": self._sigma(self.u)}

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """``reflections``: ``(m,)`` int64 sign flips at ``u = 0``."""
        self.reflections[active] = self.hits.sum(axis=1)
        return {"reflections": self.reflections}


@numba.njit(cache=True, error_model="numpy")
def _depth_log(u, depth, out):
    """``out = N portable_log(u)`` elementwise (``rho``, as ``advance_u`` computes it)."""
    m, d = u.shape
    for b in range(m):
        for i in range(d):
            out[b, i] = depth * portable_log(u[b, i])


class ChamberEulerMaruyama:
    """Euler-Maruyama for the chamber ``Model`` (module docstring), a ``driver.Stepper``.

    Parameters
    ----------
    model : Model
        The chamber model.
    start : numpy.ndarray
        ``(m, d)`` initial singular values, rows sorted descending, C-contiguous.
    temperature : float
        Noise temperature ``T >= 0``.
    rescaled : bool
        The run's time is ``tau = N t``.
    """

    def __init__(self, model: Model, start: np.ndarray, temperature: float, rescaled: bool):
        self.model = model
        self.outputs = model.outputs
        self.noise_shape = model.state_shape
        self.infinite = model.infinite
        self.depth = float(model.depth)
        self.u_scale = model.time_scale(rescaled)  # h_u = h * u_scale
        self.noise_var = model.noise_variance(temperature)  # per unit of h_u
        self.noisy = temperature > 0.0
        m, d = start.shape
        self.reflections = np.zeros(m, dtype=np.int64)
        self.rho = np.log(start)
        self.rho_new = np.empty((0, 0))
        if not self.infinite:
            self.u = np.exp(self.rho / model.depth)
            self.hits = np.zeros((m, d), dtype=np.int64)  # reflections per particle
            self.threads = default_threads()
            # preallocated buffers: no per-step allocation (a Dask worker's glibc returns
            # freed blocks to the OS, so fresh arrays would page-fault)
            self.grad = self.work = self.u_new = np.empty((0, 0))
            self.bad_rows = np.empty(0, dtype=np.bool_)
        self.h_u = self.amp = 0.0

    def begin(self, h: float, n_steps: int) -> None:
        """A save interval with steps ``h``: ``h_u = h * time_scale``, the noise amplitude."""
        self.h_u = h * self.u_scale
        self.amp = math.sqrt(self.noise_var * self.h_u)

    def refill(self, active: np.ndarray) -> None:
        """No streams of its own."""

    def step(self, xi: np.ndarray, pos: int, active: np.ndarray) -> np.ndarray | None:
        """One step of every row; the failing rows (or None)."""
        if self.infinite:
            rho = self.rho
            rho_new = rho - self.h_u * self.model.gradient_rho(rho)
            if self.noisy:
                rho_new += self.amp * xi
            self.rho_new = rho_new
            # whole-array test first (cheap); rows only when something went wrong
            fine = rho_new.max(initial=-np.inf) <= LOG_MAX
            fine = fine and rho_new.min(initial=0.0) > -np.inf
            return None if fine else self.model.bad_rows(rho_new)
        u = self.u
        if self.grad.shape != u.shape:
            self.grad, self.work, self.u_new, self.rho_new = (np.empty_like(u) for _ in range(4))
            self.bad_rows = np.empty(u.shape[0], dtype=np.bool_)
        g = self.model.gradient_rho_u(self.rho, u, self.threads, self.grad, self.work)
        n_bad = advance_u(
            u, g, self.h_u, self.amp, xi, self.noisy, self.depth, self.hits, self.u_new,
            self.rho_new, self.bad_rows,
        )  # fmt: skip
        return self.bad_rows.copy() if n_bad else None

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove failing rows; their singular values before the step."""
        last = sorted_desc(np.exp(self.rho[bad]))
        if not self.infinite:
            self.reflections[lost] = self.hits[bad].sum(axis=1)
            self.u_new, self.hits = self.u_new[ok], self.hits[ok]  # boolean indexing copies
        self.rho_new = self.rho_new[ok]
        return {"sigma": last}

    def commit(self, pos: int, active: np.ndarray) -> None:
        """The new states become current (double buffers swapped at finite ``N``)."""
        if not self.infinite:
            self.u, self.u_new = self.u_new, self.u
            self.rho, self.rho_new = self.rho_new, self.rho
        else:
            self.rho = self.rho_new

    def save(self) -> dict[str, np.ndarray]:
        """``sigma = e^rho``, rows sorted descending."""
        return {"sigma": sorted_desc(np.exp(self.rho))}

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """``reflections``: ``(m,)`` int64 sign flips at ``u = 0``."""
        if not self.infinite:
            self.reflections[active] = self.hits.sum(axis=1)
        return {"reflections": self.reflections}


class EulerMaruyama:
    """Euler-Maruyama for any ``System`` in its chart (module docstring), a ``driver.Stepper``.

    Parameters
    ----------
    system : System
        The system.
    start : numpy.ndarray
        ``(m, *state_shape)`` validated initial states.
    temperature : float
        Noise temperature ``T >= 0``.
    rescaled : bool
        The run's time is ``tau = N t``.
    """

    def __init__(self, system: System, start: np.ndarray, temperature: float, rescaled: bool):
        self.system = system
        self.outputs = system.outputs
        self.noise_shape = tuple(system.state_shape)
        self.scale = system.time_scale(rescaled)
        self.noise_var = system.noise_variance(temperature)
        self.noisy = temperature > 0.0
        self.x = system.to_chart(start)
        self.x_new = self.x
        self.reflections = np.zeros(start.shape[0], dtype=np.int64)
        self.h_x = self.amp = 0.0

    def begin(self, h: float, n_steps: int) -> None:
        """A save interval with steps ``h``: ``h_x = h * time_scale``, the noise amplitude."""
        self.h_x = h * self.scale
        self.amp = math.sqrt(self.noise_var * self.h_x)

    def refill(self, active: np.ndarray) -> None:
        """No streams of its own."""

    def step(self, xi: np.ndarray, pos: int, active: np.ndarray) -> np.ndarray | None:
        """One step of every row; the failing rows (or None)."""
        x_new = self.x + self.h_x * self.system.drift(self.x)
        if self.noisy:
            x_new += self.amp * xi
        flips = self.system.reflect(x_new)
        bad = self.system.bad_rows(x_new)
        if flips is not None:
            self.reflections[active[~bad]] += flips[~bad]
        self.x_new = x_new
        return bad if bad.any() else None

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove failing rows; their outputs before the step."""
        last = self.system.save(self.x[bad])
        self.x_new = self.x_new[ok]
        return last

    def commit(self, pos: int, active: np.ndarray) -> None:
        """The new states become current."""
        self.x = self.x_new

    def save(self) -> dict[str, np.ndarray]:
        """The system's outputs of the current states."""
        return self.system.save(self.x)

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """``reflections``: ``(m,)`` int64 sign flips at the boundary."""
        return {"reflections": self.reflections}
