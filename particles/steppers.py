r"""Euler-Maruyama steppers for the one step loop (``particles.driver``; docs/theory.md 9, 13.2).

``EulerMaruyama`` steps any ``particles.system.System`` in its flat chart ``x``:

    x <- reflect(x + h_x b(x) + sqrt(noise_variance(T) h_x) xi),

with ``h_x = h * time_scale`` and one reflection counted per sign flip at a reflecting boundary.

``ChamberEulerMaruyama`` is the same scheme for the chamber ``Model``, in its fast form (the
engine of ``particles.langevin.simulate_members``):

* finite ``N``, in ``u = sigma^{1/N}``: ``u <- |u - (h_u dF/drho) / u + amp xi|`` with
  ``dF/drho`` from ``Model.gradient_rho_u`` (the compiled pair sum straight from ``u``, no
  logarithm per pair), and the update, the reflection count and ``rho = N log u`` in one
  compiled pass (``advance_u``) on preallocated buffers: a step allocates no array;
* ``N = inf``, in ``rho``: ``rho <- rho - h dF/drho + amp xi``.

The two agree: bitwise at ``N = inf``; at finite ``N`` up to the logarithm (``advance_u`` uses
``pairsum.portable_log``, the generic stepper numpy's), i.e. to rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .model import LOG_MAX, Model, sorted_desc
from .pairsum import default_threads, portable_log
from .system import System

__all__ = ["ChamberEulerMaruyama", "EulerMaruyama", "advance_u"]


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
