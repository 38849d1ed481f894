"""The fused compiled Langevin step (``particles.steppers.FusedChamberEulerMaruyama``) and the
counter-based noise of the step loop (issue 16): the fused step against the per-step stepper and
the generic one on the same noise, its bitwise independence of threads, blocks and save-time
splits, its failure handling, its bound on ``u``, and the noise scheme recorded in an ensemble
store and checked on resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from dlnsim.particles import Model, Schatten, SeparableEnergy, langevin_ensemble
from dlnsim.particles.driver import simulate
from dlnsim.particles.langevin import simulate_members
from dlnsim.particles.model import LOG_MAX
from dlnsim.particles.pairsum import portable_log
from dlnsim.particles.philox import NOISE_SCHEME
from dlnsim.particles.steppers import (
    MAX_INT_POWER,
    EulerMaruyama,
    FusedChamberEulerMaruyama,
    _int_power,
    fusable,
    u_limit,
)


def _start(m: int, d: int, lo: float = 0.3, hi: float = 1.5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(lo, hi, (m, d)), axis=1)[:, ::-1].copy()


# (d, N, p, beta): the small-width lanes kernels (d < 64, N <= 16), the member kernels (d >= 64;
# N > 16), an exponent N p that is not an integer (exp(p N log u)), N p above the squaring cap
CASES = [(8, 3, 2.0, 4.0), (33, 10, 2.0, 2.0), (70, 5, 1.0, 3.0), (12, 20, 2.0, 2.0),
         (6, 3, 1.5, 2.0), (5, 40, 2.0, 1.0)]  # fmt: skip


@pytest.mark.parametrize("d,depth,p,beta", CASES)
def test_fused_step_agrees_with_the_per_step_and_generic_steppers(d, depth, p, beta):
    """Same noise, three implementations: the fused interval (compiled pair sum + powers +
    in-kernel Philox), ``ChamberEulerMaruyama`` (the loop's noise, numpy ``exp``) and the generic
    ``EulerMaruyama`` through ``Model.drift`` (numpy throughout).  After 200 steps the states
    agree to 1e-12 relative (rounding compounds over the steps; a wrong noise row, amplitude,
    sign or force would move them by >= amp ~ 1e-2) and the reflection counts agree exactly."""
    model = Model(d, depth, beta, Schatten(p))
    assert fusable(model)
    s0 = _start(5, d, 0.05, 1.2)  # small singular values: reflections at u = 0 happen
    members, times, dt, seed = np.array([4, 0, 9, 2, 7]), [0.0, 0.1, 0.2], 1e-3, 2**65 + 3
    fused = simulate_members(model, s0, members, times, dt, seed, fused=True)
    per_step = simulate_members(model, s0, members, times, dt, seed, fused=False)
    generic = simulate(model, s0, members, times, dt, seed, stepper=EulerMaruyama)
    assert np.all(np.isnan(fused.failed_time))
    np.testing.assert_allclose(fused.sigma, per_step.sigma, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fused.sigma, generic.outputs["sigma"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(fused.reflections, per_step.reflections)
    np.testing.assert_array_equal(fused.reflections, generic.stats["reflections"])


def test_fused_step_is_bitwise_independent_of_threads_blocks_and_splits():
    """Member k's path depends only on (seed, k) and the step grid: the same bits on 1 or 2
    threads, alone or in a block of 300 (three blocks of the lanes kernel), and with the save
    times split differently (the noise counter runs over the whole run)."""
    model = Model(16, 4, 8.0, Schatten(2.0))
    s0 = _start(300, 16)
    members = np.arange(1000, 1300)
    dt = 2.0**-10  # binary fractions: every split below has the same step h = dt, exactly
    times = [20 * dt, 50 * dt]
    kw = {"temperature": None, "rescaled": False}
    one = FusedChamberEulerMaruyama(model, s0, 1 / 8.0, False, threads=1)  # the 50 steps
    two = FusedChamberEulerMaruyama(model, s0, 1 / 8.0, False, threads=2)
    for stepper in (one, two):
        stepper.begin(dt, 50)
        assert np.all(stepper.advance(50, 0, 11, members) == -1)
    assert np.array_equal(one.u.view(np.int64), two.u.view(np.int64))
    full = simulate_members(model, s0, members, times, dt, 11, **kw).sigma
    alone = simulate_members(model, s0[[123]], members[[123]], times, dt, 11, **kw).sigma
    assert np.array_equal(full[123], alone[0])
    split_times = [10 * dt, 20 * dt, 30 * dt, 50 * dt]
    split = simulate_members(model, s0, members, split_times, dt, 11, **kw).sigma
    assert np.array_equal(full[:, 0], split[:, 1]) and np.array_equal(full[:, 1], split[:, 3])
    direct = one.u.max(axis=1) ** 4  # the 50-step state of the stepper: the largest sigma
    np.testing.assert_allclose(full[:, 1, 0], direct, rtol=1e-13)


def test_a_failing_member_stops_alone_with_its_last_finite_state():
    """A member whose energy force overflows the update (sigma ~ 1e150, p = 2: the step sends
    u past u_limit) fails at its first step with the per-step stepper's failed_time and
    last_finite; the other members' bits are those of a run without it."""
    model = Model(6, 2, 4.0, Schatten(2.0))
    s0 = _start(4, 6)
    s0[2, 0] = 1e150
    times, dt = [0.01, 0.02], 1e-3
    fused = simulate_members(model, s0, np.arange(4), times, dt, 5, fused=True)
    per_step = simulate_members(model, s0, np.arange(4), times, dt, 5, fused=False)
    assert np.isnan(fused.sigma[2]).all() and fused.failed_time[2] == pytest.approx(dt)
    np.testing.assert_array_equal(fused.failed_time, per_step.failed_time)
    np.testing.assert_allclose(fused.last_finite, per_step.last_finite, rtol=1e-13)
    # the state before the step is the start (via u = sigma^(1/2) and back: ~|log sigma| ulps)
    np.testing.assert_allclose(fused.last_finite[2], s0[2], rtol=1e-13)
    rest = [0, 1, 3]
    alone = simulate_members(model, s0[rest], np.array(rest), times, dt, 5, fused=True)
    assert np.array_equal(fused.sigma[rest], alone.sigma)


def _squaring_reference(x: float, k: int) -> float:
    """x**k by repeated squaring in Python floats, bit by bit from the lowest: the product order
    the fused step documents (the result starts at the lowest set bit's square)."""
    result, base = None, x
    while k:
        if k & 1:
            result = base if result is None else result * base
        k >>= 1
        base = base * base
    return result


def test_int_power_is_the_documented_squaring_for_every_exponent():
    """The fused step's ``u^{N p}`` (``_int_power``, seven squarings selected by the bits of
    ``k``) equals repeated squaring in Python bitwise for every ``k`` up to ``MAX_INT_POWER``,
    and ``x^k`` to a few ulp (mpmath-free: ``x`` near 1, where ``x**k`` is accurate).  An
    exponent bit dropped (e.g. six squarings: ``k = 64``) or a product order changed fails."""
    rng = np.random.default_rng(4)
    xs = np.concatenate([rng.uniform(0.5, 1.5, 40), [1.0, 0.25, 3.0, 1e-3]])
    for k in range(1, MAX_INT_POWER + 1):
        for x in xs:
            got = _int_power(float(x), k)
            assert got == _squaring_reference(float(x), k), (x, k)
            assert got == pytest.approx(float(x) ** k, rel=2e-14, abs=0.0), (x, k)


@pytest.mark.parametrize("depth", [1, 2, 3, 10, 64, 1000])
def test_u_limit_is_the_exact_bound_of_the_failure_rule(depth):
    """u_limit(N) is the last float with N portable_log(u) <= log(max float) (advance_u's rule
    on rho); the next float breaks it (or u_limit is the largest float, at N = 1)."""
    lim = u_limit(depth)
    assert depth * portable_log(lim) <= LOG_MAX
    with np.errstate(over="ignore"):
        nxt = np.nextafter(lim, np.inf)
    assert depth * portable_log(nxt) > LOG_MAX or not math.isfinite(nxt)
    assert lim == pytest.approx(math.exp(LOG_MAX / depth), rel=1e-13)


def test_user_energies_and_infinite_depth_use_the_per_step_form():
    """A user energy (callables) and N = inf are not fusable: ``fused=None`` takes the per-step
    stepper on the same noise (equal to the Schatten run when the user energy is s^2/2);
    ``fused=True`` is refused with the reason."""
    user = SeparableEnergy(lambda s: s**2 / 2, lambda s: s, lambda s: np.ones_like(s))
    model_user = Model(5, 3, 4.0, user)
    model_sch = Model(5, 3, 4.0, Schatten(2.0))
    assert not fusable(model_user) and not fusable(Model(5, math.inf, 4.0, Schatten(2.0)))
    s0 = _start(3, 5)
    a = simulate_members(model_user, s0, np.arange(3), [0.05], 1e-3, 8)
    b = simulate_members(model_sch, s0, np.arange(3), [0.05], 1e-3, 8)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-12)
    with pytest.raises(ValueError, match="bad fused=.*Schatten"):
        simulate_members(model_user, s0, np.arange(3), [0.05], 1e-3, 8, fused=True)
    with pytest.raises(ValueError, match="bad model="):
        FusedChamberEulerMaruyama(model_user, s0, 0.25, False)


def test_the_store_records_the_noise_scheme_and_resume_refuses_another(tmp_path):
    """An ensemble store records ``noise_scheme``; resuming a store written with another scheme
    (an older dlnsim's PCG64 stream: no attribute, or a different one) is refused, naming the
    store and the scheme, before any chunk runs."""
    model = Model(4, 3, 4.0, Schatten(2.0))
    path = tmp_path / "run.zarr"
    kw = {"seed": 3, "scheduler": "serial", "progress": False, "store": str(path)}
    ds = langevin_ensemble(model, _start(1, 4)[0], [0.01], 4, 1e-3, **kw)
    assert ds.attrs["noise_scheme"] == NOISE_SCHEME
    group = zarr.open_group(str(path), mode="r+")
    assert group.attrs["noise_scheme"] == NOISE_SCHEME
    for old in ("philox4x64-10/.../v0", None):
        if old is None:
            del group.attrs["noise_scheme"]
        else:
            group.attrs["noise_scheme"] = old
        with pytest.raises(ValueError, match="bad store=.*noise scheme"):
            langevin_ensemble(model, _start(1, 4)[0], [0.01], 4, 1e-3, resume=True, **kw)
