r"""The one step loop of every Langevin engine: step plan, seeding, noise batches, save times and
failure bookkeeping (docs/theory.md sections 13.2-13.4).  What a step does is the stepper's
(``particles.steppers``, ``particles.proximal``); what is stepped is the system's
(``particles.system.System``).

Step grid.  With ``t_{-1} = 0`` and save times ``t_0 < t_1 < ...``, the interval
``[t_{k-1}, t_k]`` is split into ``n_k = ceil((t_k - t_{k-1}) / dt)`` equal steps (the ceiling
taken with a relative tolerance of ``1e-12``, so that ``0.3 / 0.1`` counts as 3 steps; ``n_k =
0`` only for ``t_0 = 0``).  Hence the results at a save time depend only on the step grid, and
two runs whose grids coincide (e.g. save times that are multiples of ``dt``) agree bitwise.

Noise (``NOISE_SCHEME``, docs/theory.md 13.3).  Step ``s`` of the run (counted from 0 at
``t = 0`` over all save intervals) of member ``k`` is driven by the standard normals
``philox.normals(seed, [k], s, 1, size)``: a pure function of ``(seed, k, s)`` and the entry's
index (a counter-based Philox4x64-10 stream), so a member's path does not depend on the other
members of the block, on the block size, on how the save times are split, or on the machine.
The loop draws them for the active rows in batches of ``K = noise_batch_steps(size)`` steps
(``K`` depends on the state size only); an *interval stepper* (one with ``advance``, e.g. the
chamber model's fused compiled step) draws the same normals itself, inside compiled code, for a
whole save interval.  With ``T = 0`` no noise is drawn.  A stepper may draw from further
per-member streams of its own (the Metropolis uniforms, ``proximal.acceptance_rng``) at the same
refills.

Failures.  A member whose step the stepper reports bad (the failure rule of
``particles.system``; an interval stepper reports the index of the failing step within the
interval and keeps the state before it) stops: its later saved outputs are NaN,
``failed_time`` is the end of the failing step and ``last_finite`` the outputs of the state
before it.  Its rows are removed from
every array, so the other members are not affected (every operation is row-wise).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .philox import NOISE_SCHEME, normals
from .steppers import EulerMaruyama
from .system import System
from .validation import check_positive, check_times, fail

__all__ = [
    "NOISE_SCHEME",
    "IntervalStepper",
    "RunArgs",
    "RunResult",
    "Stepper",
    "check_index",
    "check_members",
    "check_run",
    "check_seed",
    "noise_batch_steps",
    "run_steps",
    "simulate",
    "step_plan",
]

_STEP_RTOL = 1e-12


def check_index(value: object, name: str) -> int:
    """A non-negative integer (seed, member index).

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Its name in the error message.

    Returns
    -------
    int
        ``value`` as an int.

    Raises
    ------
    ValueError
        ``bad <name>=...`` unless ``value`` is an integer >= 0 (bools are refused).
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or value < 0:
        raise fail(name, value, "must be a non-negative integer")
    return int(value)


def check_members(members: object, m: int) -> np.ndarray:
    """``m`` distinct non-negative integer member indices, as int64.

    Parameters
    ----------
    members : array_like
        The global member indices of the ``m`` rows of a block.
    m : int
        The number of rows.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` int64.

    Raises
    ------
    ValueError
        ``bad members=...`` for a wrong shape, non-integers, negatives or repeats.
    """
    arr = np.asarray(members)
    if arr.ndim != 1 or arr.size != m:
        raise fail("members", members, f"must be a 1-D array of {m} member indices (one per row)")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise fail("members", members, "must be integers")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise fail("members", members, "must be non-negative")
    if np.unique(arr).size != arr.size:
        raise fail("members", members, "must be distinct (each member has its own noise)")
    return arr


def check_seed(value: object) -> int:
    """A seed of the noise stream: an integer ``0 <= seed < 2**128`` (the Philox key and counter
    hold 128 bits of it; ``numpy.random.SeedSequence().entropy`` is such a number).

    Parameters
    ----------
    value : object
        The seed.

    Returns
    -------
    int
        ``value`` as an int.

    Raises
    ------
    ValueError
        ``bad seed=...`` unless ``value`` is an integer in ``[0, 2**128)``.
    """
    seed = check_index(value, "seed")
    if seed >= 2**128:
        raise fail("seed", value, "must be below 2**128 (the noise stream keys 128 bits)")
    return seed


def noise_batch_steps(width: int) -> int:
    """``K``: the number of steps whose noise a member draws at once, ``max(1, 512 // d)``.

    Parameters
    ----------
    width : int
        Width ``d`` (for a state of any shape: its number of entries).

    Returns
    -------
    int
        ``K``, a function of ``d`` only (so the noise of a step never depends on ``dt``).
    """
    return max(1, 512 // int(width))


def step_plan(times: np.ndarray, dt: float) -> list[tuple[float, float, int, float]]:
    """``(t_start, t_end, n_steps, h)`` for each save interval, starting from ``t = 0``.

    Parameters
    ----------
    times : numpy.ndarray
        Validated save times (increasing, >= 0).
    dt : float
        The largest step, > 0.

    Returns
    -------
    list of (float, float, int, float)
        Per save time: the interval, its number of equal steps and their length ``h``
        (``n_steps = 0`` only for a first save time at 0).
    """
    plan = []
    t_prev = 0.0
    for t in times:
        t = float(t)
        length = t - t_prev
        if length == 0.0:  # only the first save time can coincide with the start
            plan.append((t_prev, t, 0, 0.0))
        else:
            n = max(1, math.ceil(length / dt * (1.0 - _STEP_RTOL)))
            plan.append((t_prev, t, n, length / n))
        t_prev = t
    return plan


class Stepper(Protocol):
    """One scheme stepping the active rows of a block (rows = members, in block order).

    The loop calls, per save interval, ``begin``; per step, ``refill`` (when the noise batch is
    renewed), ``step``, then ``drop`` (only if some rows failed) and ``commit``; per save time
    ``save``; at the end ``finish``.
    """

    #: saved outputs and their per-member shapes (``System.outputs``)
    outputs: Mapping[str, tuple[int, ...]]
    #: the shape of one member's noise per step (``System.state_shape``)
    noise_shape: tuple[int, ...]

    def begin(self, h: float, n_steps: int) -> None:
        """Start a save interval of ``n_steps`` steps of length ``h`` (the run's time)."""
        ...

    def refill(self, active: np.ndarray) -> None:
        """The noise batch was renewed: draw the stepper's own streams for rows ``active``."""
        ...

    def step(self, xi: np.ndarray, pos: int, active: np.ndarray) -> np.ndarray | None:
        """Take one step with noise rows ``xi`` (``(rows, *noise_shape)``; column ``pos`` of the
        batch); return the ``(rows,)`` bool mask of failing rows, or None if none failed."""
        ...

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """Remove the failing rows ``bad`` (global members ``lost``); return their outputs
        before the failing step (the ``last_finite`` values)."""
        ...

    def commit(self, pos: int, active: np.ndarray) -> None:
        """Make the step's new states current (rows ``active``, failures already removed)."""
        ...

    def save(self) -> dict[str, np.ndarray]:
        """The outputs of the current states, keyed as ``outputs``."""
        ...

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """Per-member ``(m,)`` statistics of the run (reflections, Newton counts, ...)."""
        ...


class IntervalStepper(Protocol):
    """A stepper that takes a whole save interval at once and draws the run's noise itself
    (the same normals as the loop would give it: ``NOISE_SCHEME``).  The loop calls ``begin``,
    then ``advance`` (it has no ``refill``/``step``/``commit``), then ``drop`` for the rows that
    failed (whose state is the one before their failing step); ``outputs``, ``noise_shape``,
    ``drop``, ``save`` and ``finish`` are those of ``Stepper``."""

    outputs: Mapping[str, tuple[int, ...]]
    noise_shape: tuple[int, ...]

    def begin(self, h: float, n_steps: int) -> None:
        """Start a save interval of ``n_steps`` steps of length ``h`` (the run's time)."""
        ...

    def drop(self, bad: np.ndarray, ok: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
        """As ``Stepper.drop``."""
        ...

    def save(self) -> dict[str, np.ndarray]:
        """As ``Stepper.save``."""
        ...

    def finish(self, active: np.ndarray) -> dict[str, np.ndarray]:
        """As ``Stepper.finish``."""
        ...

    def advance(self, n_steps: int, step0: int, seed: int, members: np.ndarray) -> np.ndarray:
        """Take the interval's ``n_steps`` steps, the run's steps ``step0 .. step0 + n_steps -
        1``, for the active rows (global member indices ``members``, noise key ``seed``);
        return the ``(rows,)`` int64 index of each row's failing step within the interval, -1
        for the rows that did not fail (a failed row stops, keeping its state before that step).
        """
        ...


@dataclass(frozen=True)
class RunResult:
    """What ``run_steps`` returns for ``m`` members and ``n_times`` save times.

    Parameters
    ----------
    outputs : dict
        Name -> ``(m, n_times, *shape)`` saved outputs, NaN after a failure.
    failed_time : numpy.ndarray
        ``(m,)`` end of the failing step, NaN for members that did not fail.
    last_finite : dict
        Name -> ``(m, *shape)``: the outputs before the failing step, or the final ones.
    stats : dict
        Name -> ``(m,)`` per-member statistics of the stepper.
    """

    outputs: dict[str, np.ndarray]
    failed_time: np.ndarray
    last_finite: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]


def run_steps(
    stepper: Stepper | IntervalStepper,
    start: Mapping[str, np.ndarray],
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    noisy: bool,
) -> RunResult:
    """The step loop over the save intervals of ``times`` (module docstring), for validated
    arguments.

    Parameters
    ----------
    stepper : Stepper or IntervalStepper
        The scheme, already holding the ``m`` initial states.
    start : mapping
        The outputs of the initial states (saved at a save time 0), name -> ``(m, *shape)``.
    members : numpy.ndarray
        ``(m,)`` global member indices (the noise key's member word).
    times : numpy.ndarray
        Save times, increasing, >= 0.
    dt : float
        The largest step.
    seed : int
        The root seed, ``< 2**128``.
    noisy : bool
        Draw noise (``T > 0``).

    Returns
    -------
    RunResult
        Saved outputs, failures and the stepper's statistics.
    """
    m = members.size
    shapes = dict(stepper.outputs)
    out = {name: np.full((m, times.size, *shape), np.nan) for name, shape in shapes.items()}
    last_finite = {name: np.full((m, *shape), np.nan) for name, shape in shapes.items()}
    failed_time = np.full(m, np.nan)
    active = np.arange(m)
    interval = callable(getattr(stepper, "advance", None))
    size = math.prod(stepper.noise_shape)
    batch = noise_batch_steps(size)
    buf = np.empty((m, batch, *stepper.noise_shape))
    pos = batch  # the buffer is refilled before the first step
    step = 0  # the run's step index: the noise counter
    with np.errstate(all="ignore"):
        for k, (t_start, t_end, n_steps, h) in enumerate(step_plan(times, dt)):
            stepper.begin(h, n_steps)
            if interval and n_steps:
                fail_at = stepper.advance(n_steps, step, seed, members[active])
                bad = fail_at >= 0
                if bad.any():
                    j = fail_at[bad]
                    lost = active[bad]
                    failed_time[lost] = np.where(j == n_steps - 1, t_end, t_start + (j + 1) * h)
                    for name, value in stepper.drop(bad, ~bad, lost).items():
                        last_finite[name][lost] = value
                    active = active[~bad]
                step += n_steps
            for j in range(0 if interval else n_steps):
                if noisy and pos == batch:
                    flat = buf.reshape(active.size, batch, size)
                    normals(seed, members[active], step, batch, size, out=flat)
                    stepper.refill(active)
                    pos = 0
                bad = stepper.step(buf[:, min(pos, batch - 1)], pos, active)  # unused if silent
                if bad is not None:
                    ok = ~bad
                    lost = active[bad]
                    failed_time[lost] = t_end if j == n_steps - 1 else t_start + (j + 1) * h
                    for name, value in stepper.drop(bad, ok, lost).items():
                        last_finite[name][lost] = value
                    active, buf = active[ok], np.ascontiguousarray(buf[ok])
                stepper.commit(pos, active)
                pos += 1
                step += 1
            saved = {n: v[active] for n, v in start.items()} if n_steps == 0 else stepper.save()
            for name, value in saved.items():
                out[name][active, k] = value
    stats = stepper.finish(active)
    for name, value in out.items():
        last_finite[name][active] = value[active, -1]
    return RunResult(outputs=out, failed_time=failed_time, last_finite=last_finite, stats=stats)


@dataclass(frozen=True)
class RunArgs:
    """Validated arguments of a run (``check_run``).

    Parameters
    ----------
    start : numpy.ndarray
        ``(m, *state_shape)`` initial states (``System.check_state``).
    members : numpy.ndarray
        ``(m,)`` int64 member indices.
    times : numpy.ndarray
        Save times.
    dt : float
        The largest step.
    seed : int
        The root seed.
    temperature : float
        Noise temperature ``T >= 0``.
    rescaled : bool
        The run's time is ``tau = N t``.
    """

    start: np.ndarray
    members: np.ndarray
    times: np.ndarray
    dt: float
    seed: int
    temperature: float
    rescaled: bool


def check_run(
    system: System,
    state0: object,
    members: object,
    times: object,
    dt: object,
    seed: object,
    temperature: object = None,
    rescaled: object = None,
) -> RunArgs:
    """Validate the arguments of a run of ``system`` (in this order: ``rescaled``, ``sigma0``,
    ``members``, ``times``, ``dt``, ``seed``, ``temperature``).

    Parameters
    ----------
    system : System
        The system (its ``resolve_rescaled`` and ``check_state`` are used).
    state0 : array_like
        ``(m, *state_shape)`` initial states.
    members : array_like
        ``(m,)`` distinct member indices >= 0.
    times : array_like
        Save times, increasing, >= 0.
    dt : float
        The largest step, > 0.
    seed : int
        The root seed, ``0 <= seed < 2**128``.
    temperature : float, optional
        ``T >= 0``; default ``1 / system.beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default the system's.

    Returns
    -------
    RunArgs
        The validated arguments.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for the first invalid argument.
    """
    rescaled = system.resolve_rescaled(rescaled)
    shape = tuple(system.state_shape)
    start = system.check_state(state0, "sigma0")
    if start.ndim != 1 + len(shape):
        dims = ", ".join(map(str, shape))
        raise fail("sigma0", start.shape, f"must have shape (members, {dims})")
    members = check_members(members, start.shape[0])
    times = check_times(times)
    dt = check_positive(dt, "dt")
    seed = check_seed(seed)
    if temperature is None:
        temp = 1.0 / system.beta
    else:
        temp = check_positive(temperature, "temperature", allow_zero=True)
    return RunArgs(start, members, times, dt, seed, temp, rescaled)


def simulate(
    system: System,
    sigma0: object,
    members: object,
    times: object,
    dt: object,
    seed: object,
    temperature: object = None,
    rescaled: object = None,
    stepper: type | None = None,
) -> RunResult:
    """Run ``m`` members of any ``System`` with a stepper; outputs at ``times``.

    The entry point for systems without a dedicated one (``langevin.simulate_members`` for the
    chamber ``Model``, ``baselines.simulate_baseline_members`` for the log-gas baselines; both
    run this same loop).

    Parameters
    ----------
    system : System
        The system.
    sigma0 : array_like
        ``(m, *state_shape)`` initial states.
    members : array_like
        ``(m,)`` distinct global member indices >= 0 (their noise streams).
    times : array_like
        Save times, increasing, ``>= 0``, in the system's time.
    dt : float
        The largest step, > 0.
    seed : int
        The root seed, >= 0.
    temperature : float, optional
        Noise temperature ``T >= 0``; default ``1 / beta``.
    rescaled : bool, optional
        Time ``tau = N t``; default the system's.
    stepper : type, optional
        A ``Stepper`` class built as ``stepper(system, start, temperature, rescaled)``; default
        ``steppers.EulerMaruyama``.

    Returns
    -------
    RunResult
        Outputs at the save times, failures and the stepper's statistics.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    """
    if not isinstance(system, System):
        raise fail("system", system, "must implement particles.system.System")
    args = check_run(system, sigma0, members, times, dt, seed, temperature, rescaled)
    stepper = EulerMaruyama if stepper is None else stepper
    start = np.ascontiguousarray(args.start)
    run = stepper(system, start, args.temperature, args.rescaled)
    return run_steps(
        run, system.save(system.to_chart(start)), args.members, args.times, args.dt, args.seed,
        args.temperature > 0.0,
    )  # fmt: skip
