r"""Langevin dynamics of the end-to-end matrix ``X`` (theory.md section 12.5-12.6).

The state of a member is the whole ``d x d`` matrix ``X``; its Langevin equation at noise
temperature ``T`` (default ``1/beta``) for the free energy ``F_beta = E - S_N / beta`` of any
energy ``E(X)`` is

    dX = [ -A_X(grad E - grad S_N / beta) + T (N - 1) X (X^T X)^{-1/N} ] dt
         + sqrt(2 T) A_X^{1/2}(dW),

with ``A_X(P) = U (K o (U^T P V)) V^T`` from one SVD (``network.system``).  Its stationary
density w.r.t. ``dX`` is ``exp(-F_beta / T) det(A_X)^{-1/2}``; for a spectral ``E`` the
singular values then follow the matrix variant of section 10 (``N = 1``: Gaussian matrices).

Scheme (``simulate_matrix_members``).  Euler-Maruyama, all members at once:

    Y = X + U [ h D + sqrt(2 T h) sqrt(K) o Z ] V^T,

with ``D = U^T b(X) V`` the drift in the frame and ``Z`` a ``d x d`` matrix of standard normals
(``U^T dW V`` is again such a matrix, section 12.5).  Each state costs ONE batched SVD of the
``(m, d, d)`` stack (``numpy.linalg.svd``), done once when the state is reached and reused for
the step from it, for the singular values saved and (Metropolis) for the density and the
reverse proposal.  The unadjusted scheme is weakly first order; its stationary law is ``O(h)``
off the exact one, largest where the coefficients are stiff (section 12.6).

``metropolis=True`` (``T > 0``): ``Y`` is a proposal with the Gaussian density
``q(Y | X) = N(X + h b(X), 2 T h A_X)``; it is accepted with probability
``min(1, pi(Y) q(X | Y) / (pi(X) q(Y | X)))`` against the exact stationary density ``pi``
above (a Metropolis-adjusted Langevin algorithm with a position-dependent metric), so the
stationary law is exact at every ``h``.  ``q(X | Y)`` needs ``A_Y`` and ``b(Y)``: they come from
``Y``'s SVD, which is also the next step's when ``Y`` is accepted (one SVD per step still).

Seeding (as ``particles.langevin``).  Member ``k`` draws its noise only from
``particles.langevin.member_rng(seed, k)``: one ``d x d`` block of standard normals per step
(row-major), drawn in batches of ``noise_batch_steps(d * d)`` steps, so step ``j`` always uses
block ``j`` of the stream whatever the step size, the block of members or the chunking; the
Metropolis uniforms come from ``particles.baselines.acceptance_rng(seed, k)``, one per step, so
the noise drives the same steps with and without the test.  ``T = 0`` draws nothing (explicit
Euler for the flow of section 12.3).  Every operation is per member (batched LAPACK SVDs and
BLAS products act matrix by matrix), so a member's path is bitwise independent of the other
members of its block.

Ensembles.  ``langevin_ensemble`` validates a run and hands it to the particles' ensemble runner
(``particles.ensemble.runner.run_ensemble``) with the layout ``network.ensemble.MATRIX``: the
executors, chunking, Zarr store (checksums, resume, lock), failure records and reductions are
the particles' ones.

Step grid and faults as ``particles.langevin.simulate_members``: each save interval is split
into ``ceil(length / dt)`` equal steps; a member whose state becomes non-finite or singular
(``sigma_d = 0``: the frame is undefined) stops, its later saved states are NaN,
``failed_time`` is the end of the failing step and ``last_finite`` the state before it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from dlnsim.particles.driver import (
    check_members,
    check_seed,
    noise_batch_steps,
    run_steps,
)
from dlnsim.particles.ensemble import Execution, Output, Storage
from dlnsim.particles.ensemble.options import UNSET
from dlnsim.particles.ensemble.runner import Dynamics, options, run_ensemble
from dlnsim.particles.proximal import acceptance_rng
from dlnsim.particles.validation import (
    check_bool,
    check_integer,
    check_positive,
    check_times,
    fail,
)

from .ensemble import MATRIX
from .system import Frame, frame, from_frame, to_frame

__all__ = ["MatrixBlock", "MatrixLangevin", "langevin_ensemble", "simulate_matrix_members"]

_log = logging.getLogger("dlnsim.network")


# ------------------------------------------------------------------ arguments
def _check_model(model: object) -> Any:
    """A model of the matrix level: ``width``, ``depth``, ``beta``, ``energy``."""
    need = ("width", "depth", "beta", "energy")
    if not all(hasattr(model, name) for name in need):
        raise fail("model", model, "must be a network.MatrixModel (width, depth, beta, energy)")
    return model


def _rescaled(model: Any, rescaled: object) -> bool:
    infinite = model.depth == math.inf
    if rescaled is None:
        return infinite
    rescaled = check_bool(rescaled, "rescaled")
    if infinite and not rescaled:
        raise fail("rescaled", rescaled, "depth = inf runs in rescaled time tau = N t only")
    return rescaled


def _check_start(x0: object, width: int, name: str = "X0") -> np.ndarray:
    """A finite float64 stack ``(..., d, d)`` (copy)."""
    try:
        arr = np.array(x0, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, x0, "must be an array of real numbers") from None
    if arr.ndim < 2 or arr.shape[-2:] != (width, width):
        raise fail(name, arr.shape, f"must end in ({width}, {width}) (width={width})")
    if not np.all(np.isfinite(arr)):
        raise fail(name, "non-finite entries", "must be finite")
    return arr


def _temperature(model: Any, temperature: object) -> float:
    if temperature is None:
        return 1.0 / float(model.beta)
    return check_positive(temperature, "temperature", allow_zero=True)


# ------------------------------------------------------------------ the block engine
@dataclass(frozen=True)
class MatrixBlock:
    """The result of ``simulate_matrix_members`` for ``m`` members (the matrix analogue of
    ``particles.langevin.LangevinBlock``).

    Parameters
    ----------
    x : numpy.ndarray
        ``(m, n_times, d, d)`` states at the save times, NaN after a failure.
    sigma : numpy.ndarray
        ``(m, n_times, d)`` their singular values, descending.
    energy, free_energy : numpy.ndarray
        ``(m, n_times)`` ``E`` and ``F_beta`` of the saved states (NaN after a failure).
    reflections : numpy.ndarray
        ``(m,)`` int64, always 0 (the matrix state has no boundary); kept for the runner.
    failed_time : numpy.ndarray
        ``(m,)`` end of the failing step, NaN for members that did not fail.
    last_finite : numpy.ndarray
        ``(m, d, d)`` the last finite state (the final state if the member did not fail).
    accepted : numpy.ndarray
        ``(m,)`` int64 accepted proposals (every step counts without ``metropolis``).
    steps : numpy.ndarray
        ``(m,)`` int64 steps taken (including a failing one).
    """

    x: np.ndarray
    sigma: np.ndarray
    energy: np.ndarray
    free_energy: np.ndarray
    reflections: np.ndarray
    failed_time: np.ndarray
    last_finite: np.ndarray
    accepted: np.ndarray
    steps: np.ndarray


class MatrixLangevin:
    """The Euler-Maruyama step of the matrix Langevin equation, optionally Metropolis-adjusted
    (module docstring): a stepper of the one step loop (``particles.driver.Stepper``).

    Outputs per member: ``X`` ``(d, d)``, ``sigma`` ``(d,)`` (descending), ``energy`` and
    ``free_energy`` ``()``.  Statistics (``finish``): ``steps`` (taken, including a failing
    one) and ``accepted`` (accepted proposals; every step without ``metropolis``).  One
    batched SVD per step: the proposal's frame (``network.system.frame``) is the next step's.

    Parameters
    ----------
    model : MatrixModel
        ``width``, ``depth``, ``beta``, ``energy``.
    start : numpy.ndarray
        ``(m, d, d)`` validated, invertible initial states.
    temperature : float
        Noise temperature ``T >= 0`` (``> 0`` with ``metropolis``).
    rescaled : bool
        The run's time is ``tau = N t`` (``A_X / N``).
    metropolis : bool, default False
        Accept or reject each step against ``exp(-F_beta / T) det(A_X)^{-1/2}``.
    members : numpy.ndarray, optional
        ``(m,)`` global member indices: the Metropolis uniforms come from
        ``acceptance_rng(seed, k)`` (needed with ``metropolis``).
    seed : int, default 0
        The root seed of those streams.
    """

    def __init__(
        self,
        model: Any,
        start: np.ndarray,
        temperature: float,
        rescaled: bool,
        metropolis: bool = False,
        members: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        d = int(model.width)
        self.model = model
        self.outputs = {"X": (d, d), "sigma": (d,), "energy": (), "free_energy": ()}
        self.noise_shape = (d, d)
        self.temp = temperature
        self.noisy = temperature > 0.0
        self.metropolis = metropolis
        infinite = model.depth == math.inf
        self.scale = float(model.depth) if (rescaled and not infinite) else 1.0
        m = start.shape[0]
        self.cur = self._frame(np.array(start, dtype=np.float64, order="C"))  # own copy
        self.new = self.cur
        self.z = np.empty((m, d, d))
        self.stats = {name: np.zeros(m, dtype=np.int64) for name in ("steps", "accepted")}
        members = np.arange(m) if members is None else members
        self.urngs = [acceptance_rng(seed, int(k)) for k in members] if metropolis else []
        self.ubuf = np.empty((m, noise_batch_steps(d * d)))  # one uniform per step of a batch
        self.h = self.var = self.amp = 0.0

    def _frame(self, x: np.ndarray) -> Frame:
        m = self.model
        return frame(x, m.width, m.depth, m.beta, m.energy, self.temp, self.scale)

    def bad_start(self) -> np.ndarray:
        """``(m,)`` rows whose initial state has no frame (singular, or ``E`` not finite)."""
        return ~self.cur.ok()

    def begin(self, h: float, n_steps: int) -> None:
        """A save interval with steps ``h`` (the run's time: ``K`` is already per unit)."""
        self.h = h
        self.var = 2.0 * self.temp * h
        self.amp = math.sqrt(self.var)

    def refill(self, active: np.ndarray) -> None:
        """Draw the Metropolis uniforms of the next noise batch."""
        if self.metropolis:
            for a, idx in enumerate(active):
                self.urngs[idx].random(out=self.ubuf[a])

    def step(self, xi: np.ndarray, pos: int, active: np.ndarray) -> np.ndarray | None:
        """``Y = X + U [h D + sqrt(2 T h) sqrt(K) o Z] V^T`` and its frame; failing rows."""
        cur = self.cur
        move = self.h * cur.drift
        if self.noisy:
            move += self.amp * np.sqrt(cur.k) * xi
            self.z = xi
        y = cur.x + from_frame(cur.u, move, cur.vt)
        fin = np.isfinite(y).all(axis=(1, 2))
        if not fin.all():
            y[~fin] = 0.0  # kept out of LAPACK (a NaN would fail the whole stack)
        self.new = self._frame(y)
        self.stats["steps"][active] += 1
        bad = ~(fin & self.new.ok())
        return bad if bad.any() else None

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove failing rows; their outputs before the step."""
        last = self._outputs(self.cur.take(bad))
        self.cur, self.new = self.cur.take(ok), self.new.take(ok)
        self.ubuf = self.ubuf[ok]
        if self.noisy:
            self.z = self.z[ok]
        return last

    def commit(self, pos: int, active: np.ndarray) -> None:
        """The Metropolis test (if any), then the new states become current."""
        cur, new = self.cur, self.new
        if self.metropolis:
            z = self.z
            log_fwd = -0.5 * (z * z).sum(axis=(1, 2)) - 0.5 * cur.logdet
            log_rev = _log_reverse(new, cur.x, self.h, self.var)
            log_ratio = (new.log_density - cur.log_density) + (log_rev - log_fwd)
            accept = np.log(self.ubuf[:, pos]) < log_ratio
            cur.update(accept, new)
        else:
            accept = np.ones(active.size, dtype=bool)
            self.cur = new
        self.stats["accepted"][active] += accept

    @staticmethod
    def _outputs(f: Frame) -> dict[str, np.ndarray]:
        return {
            "X": f.x.copy(),
            "sigma": f.sigma.copy(),
            "energy": f.energy.copy(),
            "free_energy": f.free_energy.copy(),
        }

    def save(self) -> dict[str, np.ndarray]:
        """The outputs of the current states."""
        return self._outputs(self.cur)

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """The per-member statistics (class docstring)."""
        return self.stats


def _log_reverse(new: Frame, old_x: np.ndarray, h: float, var: float) -> np.ndarray:
    """``log q(X | Y)`` up to the constant shared with the forward density: the residual
    ``X - Y - h b(Y)`` in ``Y``'s frame, weighted by ``1 / (2 T h K_Y)``, and ``-1/2 log det``."""
    r = to_frame(new.u, old_x, new.vt)
    idx = np.arange(r.shape[-1])
    r[:, idx, idx] -= new.sigma
    r -= h * new.drift
    return -0.5 * (r * r / new.k).sum(axis=(1, 2)) / var - 0.5 * new.logdet


def _run_steps(stepper, start, members, times, dt, seed, noisy):
    """The one step loop ``particles.driver.run_steps``: ``(outputs, failed_time, last_finite,
    stats)``."""
    run = run_steps(stepper, start, members, times, dt, seed, noisy)
    return run.outputs, run.failed_time, run.last_finite, run.stats


def simulate_matrix_members(
    model: Any,
    x0: np.ndarray,
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float | None = None,
    rescaled: bool | None = None,
    metropolis: bool = False,
) -> MatrixBlock:
    """Euler-Maruyama (optionally Metropolis-adjusted) for ``m`` members of the matrix
    Langevin equation; states saved at ``times`` (theory.md section 12.5).

    Same signature and conventions as ``particles.langevin.simulate_members`` (step grid,
    noise streams, faults), with a matrix state; see the module docstring for the scheme.

    Parameters
    ----------
    model : MatrixModel
        The matrix model (``width``, ``depth``, ``beta``, ``energy``).
    x0 : array_like
        ``(m, d, d)`` initial matrices, finite and invertible.
    members : array_like
        ``(m,)`` distinct global member indices >= 0 (their noise streams).
    times : array_like
        Save times, increasing, ``>= 0``, in ``t`` or (``rescaled``) ``tau = N t``.
    dt : float
        The largest time step, > 0, in the unit of ``times``.
    seed : int
        The root seed, >= 0.
    temperature : float, optional
        Noise temperature ``T >= 0``; default ``1 / beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default False for finite ``N`` (always True at ``N = inf``).
    metropolis : bool, default False
        Metropolis-adjust every step against the exact stationary density (needs ``T > 0``).

    Returns
    -------
    MatrixBlock
        States and singular values at the save times, failures and acceptance counts.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    """
    model = _check_model(model)
    d = int(model.width)
    rescaled = _rescaled(model, rescaled)
    x0 = _check_start(x0, d, "x0")
    if x0.ndim != 3:
        raise fail("x0", x0.shape, f"must have shape (members, {d}, {d})")
    m = x0.shape[0]
    members = check_members(members, m)
    times = check_times(times)
    dt = check_positive(dt, "dt")
    seed = check_seed(seed)
    temp = _temperature(model, temperature)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and temp == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    stepper = MatrixLangevin(model, x0, temp, rescaled, metropolis, members, seed)
    bad0 = stepper.bad_start()
    if bad0.any():
        rows = np.flatnonzero(bad0)[:5].tolist()
        raise fail("x0", f"members {rows}", "must be invertible with a finite energy")
    out, failed_time, last_finite, stats = _run_steps(
        stepper, stepper.save(), members, times, dt, seed, temp > 0.0
    )
    return MatrixBlock(
        x=out["X"],
        sigma=out["sigma"],
        energy=out["energy"],
        free_energy=out["free_energy"],
        reflections=np.zeros(m, dtype=np.int64),
        failed_time=failed_time,
        last_finite=last_finite["X"],
        accepted=stats["accepted"],
        steps=stats["steps"],
    )


# ------------------------------------------------------------------ the ensemble
def _check_starts(model: Any, x0: object, members: int, temperature: float) -> np.ndarray:
    """``(members, d, d)`` starts (one start is broadcast), invertible with a finite energy."""
    d = int(model.width)
    starts = _check_start(x0, d)
    if starts.ndim not in (2, 3) or (starts.ndim == 3 and starts.shape[0] != members):
        raise fail("X0", starts.shape, f"must have shape ({d}, {d}) or ({members}, {d}, {d})")
    stack = starts.reshape(-1, d, d)
    bad = MatrixLangevin(model, stack, temperature, False).bad_start()
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise fail("X0", f"members {rows}", "must be invertible with a finite energy")
    if starts.ndim == 2:
        starts = np.broadcast_to(starts, (members, d, d))
    return np.ascontiguousarray(starts)


def langevin_ensemble(
    model: Any,
    X0: np.ndarray,  # noqa: N803 - the matrix, as in the theory
    times: np.ndarray,
    members: int,
    dt: float,
    seed: int | None = None,
    metropolis: bool = False,
    *,
    temperature: float | None = None,
    rescaled: bool | None = None,
    execution: Execution | None = None,
    storage: Storage | None = None,
    output: Output | None = None,
    chunk_size: int | None = UNSET,
    store: str | os.PathLike | None = UNSET,
    resume: bool = UNSET,
    client: Any | None = UNSET,
    scheduler: str | None = UNSET,
    reductions: Iterable[str] | str = UNSET,
    save_members: bool = UNSET,
    progress: bool | None = UNSET,
    overwrite: bool = UNSET,
    cluster_timeout: float = UNSET,
) -> xr.Dataset:
    """Run ``members`` independent trajectories of the matrix Langevin equation of ``model``,
    saved at ``times`` (theory.md section 12.5; scheme and seeding in ``network.langevin``).

    The run goes through the particles' ensemble runner (module docstring): ``client``,
    ``scheduler``, ``chunk_size``, ``store``, ``resume``, ``overwrite``, ``progress``,
    ``reductions``, ``save_members``, ``cluster_timeout`` and the grouped options
    ``execution``, ``storage``, ``output`` mean what they mean for
    ``particles.langevin_ensemble``.  Member ``k`` draws its noise only from ``(seed, k)``, so
    the dataset is bitwise the same for any chunking, on any cluster and serially.  The
    reductions (``"sigma"``, ``"free_energy"``, ``"spread"``) are over the singular values
    ``sigma`` and ``F_beta`` of the members that did not fail.

    Parameters
    ----------
    model : MatrixModel
        The model (``width``, ``depth``, ``beta``, ``energy``; ``describe()`` if it has one).
    X0 : array_like
        The start: one ``(d, d)`` matrix for all members or ``(members, d, d)``, finite and
        invertible with a finite energy.
    times : array_like
        Save times, 1-D, finite, >= 0, strictly increasing (in ``t``, or ``tau = N t`` if
        rescaled).
    members : int
        Number of trajectories, >= 1.
    dt : float
        The largest step, > 0.
    seed : int or None, default None
        Seed >= 0; None draws one (logged at INFO on ``dlnsim`` and stored; on resume the
        stored one).
    metropolis : bool, default False
        Metropolis-adjust every step against the exact stationary density
        ``exp(-F_beta / T) det(A_X)^{-1/2}`` (needs ``T > 0``).
    temperature : float or None, default None
        Noise temperature ``T >= 0``; None for ``1 / beta``.
    rescaled : bool or None, default None
        Whether ``times`` are in ``tau = N t`` (None: ``t``, or ``tau`` at ``N = inf``).
    execution, storage, output : Execution, Storage, Output or None
        Grouped options, as in ``particles.langevin_ensemble``.
    chunk_size, store, resume, client, scheduler, reductions, save_members
        As in ``particles.langevin_ensemble``.
    progress, overwrite, cluster_timeout
        As in ``particles.langevin_ensemble``.

    Returns
    -------
    xarray.Dataset
        ``X`` (``member, time, row, col``), ``sigma`` (``member, time, particle``,
        descending), ``energy`` and ``free_energy`` (``member, time``) unless
        ``save_members=False``; ``X0``, ``last_finite`` (``member, row, col``), ``failed``,
        ``failed_time``, ``accepted`` (accepted proposals, or steps without ``metropolis``),
        ``steps``; ``<name>_mean``, ``<name>_var``, ``<name>_count`` per reduction; the
        parameters, seed, scheme and provenance in ``attrs`` (``kind`` =
        ``network_langevin_ensemble``).  Lazy on the store when ``store`` is given.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid argument (``model``, ``X0``, ``times``,
        ``members``, ``dt``, ``seed``, ``metropolis``, ``temperature``, ``rescaled``,
        ``chunk_size``, ``store``, ...), a store of another kind or other parameters on
        ``resume``, or a run too large for memory; ``StoreError``/``StoreLocked`` as for the
        particles.
    TimeoutError
        When no worker or scheduler is reachable within ``cluster_timeout``.
    """
    execution, storage, output = options(locals())
    model = _check_model(model)
    members = check_integer(members, "members", 1)
    dt = check_positive(dt, "dt")
    times = check_times(times)
    if not float(times[-1]) / dt < 2.0**53:
        raise fail("dt", dt, f"gives more than 2^53 steps to t={times[-1]:g}")
    rescaled = _rescaled(model, rescaled)
    temp = _temperature(model, temperature)
    metropolis = check_bool(metropolis, "metropolis")
    if metropolis and temp == 0.0:
        raise fail("metropolis", metropolis, "needs a positive temperature")
    starts = _check_starts(model, X0, members, temp)
    dynamics = Dynamics(model, starts, times, members, dt, temp, rescaled, metropolis, MATRIX)
    return run_ensemble(dynamics, seed, execution, storage, output)
