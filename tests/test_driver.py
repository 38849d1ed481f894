"""The System interface and the one step loop (particles.system, particles.driver,
particles.steppers): every system implements the protocol, the generic Euler-Maruyama stepper
agrees with the chamber model's fused one, and a matrix-shaped system runs through the same loop
with its exact discrete law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlnsim.particles import DysonModel, MatrixVariant, Model, Schatten
from dlnsim.particles.driver import simulate, step_plan
from dlnsim.particles.langevin import simulate_members
from dlnsim.particles.steppers import EulerMaruyama
from dlnsim.particles.system import LogGasSystem, System


def test_every_system_implements_the_protocol():
    chamber = Model(3, 2, 1.5, Schatten(2.0))
    matrix = MatrixVariant.from_model(chamber)
    dyson = DysonModel(3, 2.0)
    for system in (chamber, matrix, dyson, Model(4, math.inf, 1.0, Schatten(2.0))):
        assert isinstance(system, System)
        assert system.state_shape == (system.width,)
        assert set(system.outputs) == {"sigma"}
    assert isinstance(matrix, LogGasSystem) and isinstance(dyson, LogGasSystem)
    assert not isinstance(chamber, LogGasSystem)  # no singular pair force: Euler-Maruyama
    # a type's public methods work: the chamber contract of equilibrium() is declared
    assert chamber.equal_sigma_equilibrium and not matrix.equal_sigma_equilibrium
    assert chamber.equilibrium() > 0


def test_chart_round_trip_drift_and_failure_rule():
    model = Model(3, 4, 2.0, Schatten(2.0))
    sigma = np.array([[2.0, 1.0, 0.5]])
    u = model.to_chart(sigma)
    np.testing.assert_allclose(u, sigma ** (1 / 4), rtol=1e-15)
    np.testing.assert_allclose(model.save(u)["sigma"], sigma, rtol=1e-14)
    # drift in u is -(1/N) dF/du (theory.md 9.1)
    np.testing.assert_allclose(model.drift(u), -model.free_energy_gradient(u, "u") / 4, rtol=1e-12)
    assert model.time_scale(True) == 0.25 and model.time_scale(False) == 1.0
    assert model.noise_variance(0.5) == 0.25
    with np.errstate(divide="ignore"):  # log(0): the loop runs under errstate(all="ignore")
        bad = model.bad_rows(np.array([[1.0, 0.5, 0.0], [1.0, np.nan, 1.0], [1e200, 1, 1], u[0]]))
    assert bad.tolist() == [True, True, True, False]  # u = 0, NaN, sigma = u^4 overflows
    x = np.array([[1.0, -0.5, -0.1], [1.0, 0.5, 0.1]])
    assert model.reflect(x).tolist() == [2, 0] and np.all(x >= 0)
    inf = Model(4, math.inf, 1.0, Schatten(2.0))
    rho = np.log(np.array([[2.0, 1.5, 1.0, 0.5]]))
    np.testing.assert_array_equal(inf.drift(rho), -inf.free_energy_gradient(rho, "rho"))
    assert inf.reflect(rho.copy()) is None


def test_generic_euler_maruyama_matches_the_fused_chamber_stepper():
    times = np.array([0.05, 0.2])  # (at t = 0 the generic loop saves save(to_chart(sigma0)))
    rng = np.random.default_rng(3)
    start = rng.uniform(0.5, 2.0, (5, 4))
    # N = inf: rho + h (-g) == rho - h g in floating point, so the two are bitwise equal
    inf = Model(4, math.inf, 1.0, Schatten(2.0))
    fused = simulate_members(inf, start, np.arange(5), times, 0.01, 11)
    generic = simulate(inf, np.sort(start)[:, ::-1], np.arange(5), times, 0.01, 11)
    np.testing.assert_array_equal(generic.outputs["sigma"], fused.sigma)
    # finite N: the same scheme up to the logarithm (portable_log vs numpy's): rounding only.
    # A hot, shallow model reaches u = 0, so the reflections are compared too.
    model = Model(4, 2, 0.2, Schatten(2.0))
    fused = simulate_members(model, start * 0.2, np.arange(5), times, 0.01, 11)
    assert fused.reflections.sum() > 0
    start = np.sort(start * 0.2)[:, ::-1]
    generic = simulate(model, start, np.arange(5), times, 0.01, 11, stepper=EulerMaruyama)
    np.testing.assert_array_equal(generic.stats["reflections"], fused.reflections)
    np.testing.assert_allclose(generic.outputs["sigma"], fused.sigma, rtol=1e-11)


class _MatrixOU:
    """A (d, d) system for the loop: dX = -a X dt + sqrt(2 T) dB entrywise (flat chart X)."""

    def __init__(self, d: int, a: float):
        self.width, self.beta, self.a = d, 1.0, a

    state_shape = property(lambda self: (self.width, self.width))
    outputs = property(lambda self: {"matrix": (self.width,) * 2, "sigma": (self.width,)})

    def describe(self):
        return {"system": "matrix_ou", "width": self.width}

    def resolve_rescaled(self, rescaled):
        return False

    def check_state(self, state, name="sigma0"):
        return np.array(state, dtype=np.float64)

    def time_scale(self, rescaled):
        return 1.0

    def noise_variance(self, temperature):
        return 2.0 * temperature

    def to_chart(self, state):
        return state

    def drift(self, x):
        return -self.a * x

    def reflect(self, x):
        return None

    def bad_rows(self, x):
        return ~np.all(np.isfinite(x), axis=(1, 2))

    def save(self, x):
        return {"matrix": x.copy(), "sigma": np.linalg.svd(x, compute_uv=False)}

    def potential(self, x):
        return self.a * np.sum(x * x, axis=(1, 2)) / 2


def test_a_matrix_system_runs_through_the_same_loop_with_its_exact_discrete_law():
    d, a, h, m = 3, 1.0, 0.05, 4000
    system = _MatrixOU(d, a)
    assert isinstance(system, System)
    x0 = np.tile(np.eye(d) * 2.0, (m, 1, 1))
    times = np.array([0.5, 1.0])
    # T = 0: Euler for dX = -a X is X_n = (1 - a h)^n X_0 exactly (10 steps per save time)
    det = simulate(system, x0[:2], np.arange(2), times, h, 0, temperature=0.0)
    np.testing.assert_allclose(det.outputs["matrix"][:, 1], (1 - a * h) ** 20 * x0[:2], 1e-14)
    np.testing.assert_allclose(det.outputs["sigma"][:, 1], 2.0 * (1 - a * h) ** 20, 1e-14)
    # T = 1: X_n = q^n X_0 + sum_k q^k sqrt(2 T h) xi; mean q^20 X_0, entry variance
    # 2 T h (1 - q^40) / (1 - q^2).  Averaged over the 9 entries of 4000 members the mean has
    # SE sqrt(var / 36000) ~ 0.005: a 5 SE band detects a drift or noise factor off by ~3%.
    run = simulate(system, x0, np.arange(m), times, h, 5, temperature=1.0)
    q = 1 - a * h
    var = 2 * h * (1 - q**40) / (1 - q**2)
    dev = run.outputs["matrix"][:, 1] - q**20 * x0
    se = math.sqrt(var / (m * d * d))
    assert abs(dev.mean()) < 5 * se
    # the sample variance over 36000 entries has SE var sqrt(2 / 36000) ~ 0.75% of var
    assert abs(dev.var() / var - 1) < 5 * math.sqrt(2 / (m * d * d))
    # the saved singular values are those of the saved matrices
    np.testing.assert_allclose(
        run.outputs["sigma"], np.linalg.svd(run.outputs["matrix"], compute_uv=False), 1e-12
    )
    # member k's path depends only on (seed, k): a sub-block reproduces it bitwise
    part = simulate(system, x0[7:9], np.array([7, 8]), times, h, 5, temperature=1.0)
    np.testing.assert_array_equal(part.outputs["matrix"], run.outputs["matrix"][7:9])


def test_simulate_refuses_non_systems_and_step_plan_is_public():
    with pytest.raises(ValueError, match="bad system="):
        simulate("not a system", np.ones((1, 2)), [0], [1.0], 0.1, 0)
    plan = step_plan(np.array([0.0, 0.3]), 0.1)  # 0.3 / 0.1 counts as 3 steps, not 4
    assert [n for _, _, n, _ in plan] == [0, 3] and plan[1][3] == pytest.approx(0.1, rel=1e-15)
    with pytest.raises(ValueError, match="bad sigma0="):
        simulate(_MatrixOU(2, 1.0), np.ones((2, 2)), [0], [1.0], 0.1, 0)  # one member, no axis
