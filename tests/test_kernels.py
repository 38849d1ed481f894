"""The compiled entropy pair force (``particles.pairsum``).

Reference: the numpy ``particles.entropy.psi`` on the full pair matrix.  The error measure is the
relative force error of a member, ``max_i |F_i - F_i^ref| / max(max_j |F_j^ref|, tiny)``, maximized
over the members of a batch.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
import threading
from fractions import Fraction

import numba
import numpy as np
import pytest

from dlnsim.particles import entropy, pairsum, steppers
from dlnsim.particles.entropy import entropy_gradient as reference_gradient
from dlnsim.particles.entropy import psi
from dlnsim.particles.pairsum import coefficients, pair_force, pair_force_u, pairs, portable

DEPTHS = [1, 2, 3, 10, 16, 17, 1000, math.inf]
EXACT_TOL = 1e-12
TINY = 1e-300


def reference(rho: np.ndarray, depth: float) -> np.ndarray:
    """``sum_{j != i} psi_N'(rho_i - rho_j)`` in numpy (``psi_N'(0) = 0``)."""
    rho = np.asarray(rho, dtype=float)
    if depth == 1:
        return np.zeros_like(rho)
    return psi(rho[..., :, None] - rho[..., None, :], depth, 1).sum(axis=-1)


def reference_u(u: np.ndarray, depth: int) -> np.ndarray:
    """The same at ``rho = N log u``, with the pair differences ``N log(u_i/u_j)`` formed
    accurately (``log1p`` of the exact ``u_i - u_j`` for close particles)."""
    u = np.asarray(u, dtype=float)
    if depth == 1:
        return np.zeros_like(u)
    ui = u[..., :, None]
    uj = u[..., None, :]
    q = (ui - uj) / uj
    with np.errstate(divide="ignore"):
        x = depth * np.where(np.abs(q) < 0.5, np.log1p(q), np.log(ui / uj))
    return psi(x, depth, 1).sum(axis=-1)


def rel_error(f: np.ndarray, ref: np.ndarray) -> float:
    """Max over members of the relative force error."""
    f = np.asarray(f).reshape(-1, f.shape[-1])
    ref = np.asarray(ref).reshape(-1, ref.shape[-1])
    num = np.max(np.abs(f - ref), axis=-1, initial=0.0)
    den = np.maximum(np.max(np.abs(ref), axis=-1, initial=0.0), TINY)
    return float(np.max(num / den, initial=0.0))


def configurations(d: int, seed: int) -> dict[str, np.ndarray]:
    """Batches of 3 members: random, near-coincident, clustered and widely spread."""
    rng = np.random.default_rng(seed)
    out = {
        "normal": rng.normal(size=(3, d)),
        "normal x3": 3.0 * rng.normal(size=(3, d)),
        "offset 250": 250.0 + 0.5 * rng.normal(size=(3, d)),
        "cluster 1e-6": 0.3 + 1e-6 * rng.normal(size=(3, d)),
        "cluster 1e-12": -1.7 + 1e-12 * rng.normal(size=(3, d)),
        "wide 300": rng.uniform(-300.0, 300.0, size=(3, d)),
    }
    near = rng.normal(size=(3, d))
    wide = rng.uniform(-300.0, 300.0, size=(3, d))
    gaps = [0.0, 1e-14, 1e-10, 1e-6, 1e-3, pairsum.NEAR_CUT, pairsum.NEAR_CUT * (1 + 1e-9)]
    for k, gap in enumerate(gaps):
        if 2 * k + 1 < d:
            near[:, 2 * k + 1] = near[:, 2 * k] + gap
            wide[:, 2 * k + 1] = wide[:, 2 * k] + gap
    out["near pairs"] = near
    out["wide 300 near pairs"] = wide
    return out


# --------------------------------------------------------------------------- exact kernel
@pytest.mark.parametrize("d", [2, 3, 9, 40, 130])
@pytest.mark.parametrize("depth", DEPTHS)
def test_exact_rho_matches_reference(d, depth):
    for name, rho in configurations(d, seed=d).items():
        f = pair_force(rho, depth, method="exact", threads=1)
        err = rel_error(f, reference(rho, depth))
        assert err <= EXACT_TOL, (name, err)


@pytest.mark.parametrize("d", [2, 3, 9, 40, 130])
@pytest.mark.parametrize("depth", [d for d in DEPTHS if d != math.inf])
def test_exact_u_matches_reference(d, depth):
    for name, rho in configurations(d, seed=100 + d).items():
        u = np.exp(rho / depth)
        if not np.all((u > 0) & np.isfinite(u)):
            continue  # rho / N outside the float range of u
        f = pair_force_u(u, depth, method="exact", threads=1)
        err = rel_error(f, reference_u(u, depth))
        assert err <= EXACT_TOL, (name, err)


def test_exact_agrees_with_mpmath_pairs():
    """Single pairs against high-precision coth, across the near/far cut and far from 0."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 80
    gaps = [1e-15, 1e-8, 0.1, 0.349, 0.35, 0.351, 0.5, 1.0, 3.0, 20.0, 300.0]
    for depth in [2, 3, 10, 16, 17, 1000, math.inf]:
        for offset in [0.0, -123.25, 310.0]:
            rho = np.array([[offset, offset + g] for g in gaps])
            f = pair_force(rho, depth, method="exact", threads=1)
            for k, row in enumerate(rho):
                a = mp.mpf(float(row[1])) - mp.mpf(float(row[0]))
                if a == 0:  # the gap is below the resolution at this offset
                    assert f[k, 1] == 0.0
                    continue
                exact = mp.coth(a) - (1 / a if depth == math.inf else mp.coth(a / depth) / depth)
                assert abs(f[k, 1] - float(exact)) <= 2e-13 * abs(float(exact)), (depth, row)
                assert f[k, 0] == -f[k, 1]


def test_layouts_and_fallbacks():
    rng = np.random.default_rng(3)
    small = rng.normal(size=(2, 10))
    big = rng.normal(size=(2, pairsum.SORT_WIDTH + 5))
    codes = {v: k for k, v in pairsum.KERNEL_NAMES.items()}
    _, plan = pair_force(small, 10, method="exact", return_plan=True)
    assert np.all(plan["kernel"] == codes["branchless"])
    _, plan = pair_force(big, 10, method="exact", return_plan=True)
    assert np.all(plan["kernel"] == codes["sorted"])
    _, plan = pair_force_u(np.exp(small / 10), 10, method="exact", return_plan=True)
    assert np.all(plan["kernel"] == codes["rational-u"])
    _, plan = pair_force(small, 1, return_plan=True)
    assert np.all(plan["kernel"] == codes["zero"])
    # spread beyond SPREAD_MAX: per-pair exp, still exact
    wide = np.array([[-400.0, 0.0, 0.3, 399.0]])
    f, plan = pair_force(wide, 10, method="exact", return_plan=True)
    assert plan["kernel"][0] == codes["per-pair-exp"]
    assert rel_error(f, reference(wide, 10)) <= EXACT_TOL


def test_nan_and_invalid_u_give_nan_for_that_member_only():
    rho = np.random.default_rng(4).normal(size=(3, 12))
    rho[1, 5] = np.nan
    f = pair_force(rho, 10)
    assert np.all(np.isnan(f[1])) and np.all(np.isfinite(f[[0, 2]]))
    u = np.exp(rho / 10)
    u[1, 5] = -1.0
    fu = pair_force_u(u, 10)
    assert np.all(np.isnan(fu[1])) and np.all(np.isfinite(fu[[0, 2]]))
    np.testing.assert_array_equal(fu[0], pair_force_u(u[:1], 10)[0])


def test_edge_widths_and_shapes():
    assert pair_force(np.array([0.7]), 10).tolist() == [0.0]
    assert pair_force(np.zeros((4, 0)), 10).shape == (4, 0)
    assert pair_force(np.zeros((0, 5)), 10).shape == (0, 5)
    for depth in [2, 10, math.inf]:
        pair = np.array([0.2, -0.45])
        f = pair_force(pair, depth)
        expected = psi(0.65, depth, 1)
        assert f[0] == pytest.approx(expected, rel=1e-14) and f[1] == -f[0]
    rng = np.random.default_rng(5)
    rho = rng.normal(size=(2, 3, 7))
    f = pair_force(rho, 3)
    assert f.shape == rho.shape
    np.testing.assert_array_equal(f.reshape(6, 7), pair_force(rho.reshape(6, 7), 3))
    np.testing.assert_array_equal(f[1, 2], pair_force(rho[1, 2], 3))
    assert rel_error(f, reference(rho, 3)) <= EXACT_TOL
    # Fortran-ordered, read-only and integer input
    np.testing.assert_array_equal(pair_force(np.asfortranarray(rho[0]), 3), f[0])
    frozen = rho.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(pair_force(frozen, 3), f)
    assert pair_force([[0, 1, 2]], 2).dtype == np.float64


def test_bitwise_independent_of_batch_and_threads():
    """A member's forces do not depend on the other members, their order, or the threads
    (also across the LANES-member blocks of the small-width kernels: m = 300 > 2 LANES)."""
    rng = np.random.default_rng(6)
    for m, d in [(40, 24), (300, 13), (6, 100), (4, 700)]:
        rho = rng.normal(size=(m, d))
        for depth in [3, 100, math.inf]:
            one = pair_force(rho, depth, threads=1)
            two = pair_force(rho, depth, threads=2)
            alone = np.stack([pair_force(rho[k], depth, threads=1) for k in range(m)])
            flipped = pair_force(rho[::-1], depth, threads=2)[::-1]
            for other in (two, alone, flipped):
                np.testing.assert_array_equal(one, other)
        u = np.exp(rho / 10)
        one = pair_force_u(u, 10, threads=1)
        np.testing.assert_array_equal(one, pair_force_u(u, 10, threads=2))
        np.testing.assert_array_equal(one[::-1], pair_force_u(u[::-1], 10, threads=2))
        for k in (0, 1, m - 1):
            np.testing.assert_array_equal(one[k], pair_force_u(u[k], 10, threads=1))
        # a member the fast path cannot take (non-positive u) leaves the others' bits alone
        bad = u.copy()
        bad[m // 2, 0] = 0.0
        broken = pair_force_u(bad, 10, threads=1)
        assert np.all(np.isnan(broken[m // 2]))
        np.testing.assert_array_equal(np.delete(broken, m // 2, 0), np.delete(one, m // 2, 0))


def test_sorting_of_nearly_sorted_and_reversed_rows_is_exact():
    rng = np.random.default_rng(7)
    rho = np.sort(rng.normal(size=(2, 300)), axis=1)
    rho[1] = rho[1, ::-1] + 1e-3 * rng.normal(size=300)
    f = pair_force(rho, 10, method="exact")
    assert rel_error(f, reference(rho, 10)) <= EXACT_TOL


# --------------------------------------------------------------------------- fast summation
@pytest.mark.parametrize("d", [600, 2000])
@pytest.mark.parametrize("depth", [2, 10, math.inf])
def test_fast_default_tolerance(d, depth):
    rng = np.random.default_rng(d)
    rho = np.concatenate([rng.normal(size=(2, d)), rng.uniform(-4, 4, size=(1, d))])
    exact = pair_force(rho, depth, method="exact")
    f, plan = pair_force(rho, depth, method="fast", return_plan=True)
    assert np.all(plan["kernel"] == 5) and np.all(plan["rank"] > 0)
    assert rel_error(f, exact) <= pairsum.DEFAULT_TOL
    assert rel_error(f, exact) <= 1e-12


@pytest.mark.parametrize("tol", [1e-6, 1e-9])
def test_fast_user_tolerance(tol):
    rng = np.random.default_rng(11)
    scales = np.array([[1.0], [2.5], [1e-5]])
    rho = scales * rng.normal(size=(3, 1500))
    for depth in [3, 10, math.inf]:
        exact = pair_force(rho, depth, method="exact")
        f, plan = pair_force(rho, depth, method="fast", tol=tol, return_plan=True)
        _, plan_tight = pair_force(rho, depth, method="fast", tol=1e-13, return_plan=True)
        assert np.all(plan["kernel"] == 5)
        assert np.all(plan["rank"] <= plan_tight["rank"])
        for k in range(rho.shape[0]):
            assert rel_error(f[k : k + 1], exact[k : k + 1]) <= tol


def test_fast_falls_back_for_wide_spreads():
    rng = np.random.default_rng(12)
    rho = rng.uniform(-300, 300, size=(2, 800))
    f, plan = pair_force(rho, 10, method="fast", return_plan=True)
    assert np.all(plan["kernel"] == 2)  # rank needed > d/4: exact sorted kernel
    assert rel_error(f, reference(rho, 10)) <= EXACT_TOL


def test_auto_choice():
    rng = np.random.default_rng(13)
    below = rng.normal(size=(2, pairsum.CROSSOVER_WIDTH - 1))
    _, plan = pair_force(below, 10, return_plan=True)
    assert np.all(plan["kernel"] == 2)
    above = rng.normal(size=(2, 1024))
    f, plan = pair_force(above, 10, return_plan=True)
    assert np.all(plan["kernel"] == 5)
    assert rel_error(f, pair_force(above, 10, method="exact")) <= pairsum.DEFAULT_TOL
    spread = rng.uniform(-60, 60, size=(1, 1024))  # rank would exceed the cost of the exact sum
    _, plan = pair_force(spread, 10, return_plan=True)
    assert plan["kernel"][0] == 2
    u = np.exp(above / 10)
    fu, plan = pair_force_u(u, 10, return_plan=True)
    assert np.all(plan["kernel"] == 5)
    assert rel_error(fu, reference_u(u, 10)) <= 2 * pairsum.DEFAULT_TOL


# --------------------------------------------------------------------------- API
def test_entropy_gradients():
    rng = np.random.default_rng(14)
    rho = rng.normal(size=(3, 20))
    for depth in [1, 2, 10, math.inf]:
        ref = reference_gradient(rho, depth)
        assert rel_error(pairsum.entropy_gradient_rho(rho, depth), ref) <= EXACT_TOL
        ref_pair = reference(rho, depth)
        assert rel_error(pairsum.pair_force(rho, depth), ref_pair) <= EXACT_TOL
    u = np.exp(rho / 4)
    g = pairsum.entropy_gradient_rho_at_u(u, 4)
    assert rel_error(g, reference_gradient(4 * np.log(u), 4)) <= 1e-12


def test_one_name_per_contract():
    """The compiled ``dS_N/drho`` under its new names: from ``rho`` (``entropy_gradient_rho``),
    at ``rho = N log u`` (``entropy_gradient_rho_at_u``, a gradient in ``rho``, not in ``u``) and
    its in-place form (bitwise the same values); the former modules no longer exist."""
    rng = np.random.default_rng(17)
    rho = rng.normal(size=(4, 12))
    for depth in [2, 10, 17, math.inf]:
        ref = reference_gradient(rho, depth)
        assert rel_error(pairsum.entropy_gradient_rho(rho, depth), ref) <= EXACT_TOL
        if depth != math.inf:
            u = np.exp(rho / depth)
            g = pairsum.entropy_gradient_rho_at_u(u, depth)
            assert rel_error(g, ref) <= 1e-12
            out = np.empty_like(u)
            assert pairsum.entropy_gradient_rho_at_u_into(u, depth, 1, out) is out
            assert np.array_equal(out, g)
    assert pairsum.portable_log is portable.portable_log
    for old in ("pairforce", "kernels"):  # the former modules are gone: one name per contract
        with pytest.raises(ImportError):
            importlib.import_module(f"dlnsim.particles.{old}")


def test_series_coefficients_against_closed_forms():
    """``coefficients``, the one source of the series of the kernels and of the numpy reference:
    Bernoulli numbers against their known values and mpmath, ``c_n`` against the Taylor series of
    ``coth x - 1/x`` (mpmath), the near-coincidence series of ``psi_N'`` against mpmath at
    ``a = NEAR_CUT``, and ``particles.entropy`` using the same floats.  Catches a wrong index,
    sign or factorial in any coefficient (each moves these sums by far more than 1e-15)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    b = coefficients.bernoulli_numbers(36)
    assert [b[k] for k in (0, 1, 2, 4, 6, 12)] == [
        1,
        -0.5,
        Fraction(1, 6),
        Fraction(-1, 30),
        Fraction(1, 42),
        Fraction(-691, 2730),
    ]
    assert all(b[k] == 0 for k in range(3, 37, 2))
    assert all(
        abs(float(b[k]) - float(mp.bernoulli(k))) <= 1e-15 * abs(float(b[k]))
        for k in range(2, 37, 2)
    )
    c = coefficients.lsinhc_series(18)
    assert c[:3] == [Fraction(1, 3), Fraction(-1, 45), Fraction(2, 945)]
    for x in (0.1, 0.5, 1.0):
        series = sum(float(cn) * x ** (2 * n - 1) for n, cn in enumerate(c, start=1))
        assert series == pytest.approx(float(mp.coth(x) - 1 / mp.mpf(x)), rel=2e-15, abs=0)
    a = pairs.NEAR_CUT
    for depth in (2, 10, 1000, math.inf):
        near = sum(
            k * a ** (2 * n - 1)
            for n, k in enumerate(coefficients.near_coefficients(depth)[::-1], 1)
        )
        n_mp = mp.inf if depth == math.inf else mp.mpf(depth)
        truth = mp.coth(a) - (1 / mp.mpf(a) if depth == math.inf else mp.coth(a / n_mp) / n_mp)
        assert near == pytest.approx(float(truth), rel=1e-15, abs=0)
    assert tuple(entropy._C1[:12]) == coefficients.LSINHC1_COEFFICIENTS


def test_kernels_contract_shapes():
    rho = np.random.default_rng(15).normal(size=(2, 3, 5))
    assert pairsum.pair_force(rho, 10).shape == rho.shape
    assert pairsum.entropy_gradient_rho(rho[0, 0], "inf").shape == (5,)
    assert np.all(pairsum.pair_force(rho, 1) == 0.0)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: pair_force([1.0, 2.0], 0), "depth"),
        (lambda: pair_force([1.0, 2.0], 2.5), "depth"),
        (lambda: pair_force([1.0, 2.0], 10, method="fmm"), "method"),
        (lambda: pair_force([1.0, 2.0], 10, tol=0.0), "tol"),
        (lambda: pair_force([1.0, 2.0], 10, tol=1.0), "tol"),
        (lambda: pair_force([1.0, 2.0], 10, tol=float("nan")), "tol"),
        (lambda: pair_force([1.0, 2.0], 10, tol="small"), "tol"),
        (lambda: pair_force([1.0, 2.0], 10, threads=0), "threads"),
        (lambda: pair_force([1.0, 2.0], 10, threads=1.5), "threads"),
        (lambda: pair_force([1.0, 2.0], 10, threads=True), "threads"),
        (lambda: pair_force(3.0, 10), "rho"),
        (lambda: pair_force([["a", "b"]], 10), "rho"),
        (lambda: pair_force_u([1.0, 2.0], math.inf), "depth"),
        (lambda: pair_force_u(5.0, 3), "u"),
    ],
)
def test_argument_validation(call, name):
    with pytest.raises(ValueError, match=f"^bad {name}="):
        call()


def test_default_threads():
    assert pairsum.default_threads() == numba.get_num_threads()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(pairsum.default_threads()))
    worker.start()
    worker.join()
    assert seen == [1]


# --------------------------------------------------------------------------- CPU independence
_LIBM = re.compile(
    r"\b(?:math|np|numpy)\.(exp|expm1|exp2|log|log1p|log2|log10|pow|power|sin|cos|tan|sinh|"
    r"cosh|tanh|asin|acos|atan|atan2|arcsin|arccos|arctan|arctan2|erf|erfc|gamma|lgamma|cbrt|"
    r"hypot)\b"
)


def test_no_fast_math_and_no_libm_in_kernels():
    """Every compiled function of the hot paths (``pairsum``, ``steppers``, ``philox``,
    ``proximal``) is compiled without fast-math flags (reassociation and contraction let the
    compiler pick the summation order and the FMA fusion per CPU) and calls no libm
    transcendental (libm and vector libraries differ between machines in the last bit): the
    hand-written ``_exp``/``_vexp``, ``_log``/``_vlog``,
    ``_log1p_core`` and ``_cospi`` are used instead.  tests/test_cpu_independence.py compares
    the bits of two CPU targets; this test also covers what one machine cannot show (libm)."""
    found = []
    subpackage = [f"{pairsum.__name__}.{m.name}" for m in pkgutil.iter_modules(pairsum.__path__)]
    extra = ["dlnsim.particles.philox", "dlnsim.particles.proximal"]
    for mod in [*map(importlib.import_module, [*subpackage, *extra]), steppers]:
        for name, obj in vars(mod).items():
            compiled = isinstance(obj, numba.core.registry.CPUDispatcher)
            if compiled and obj.__module__ == mod.__name__:
                found.append((name, obj))
    assert len(found) >= 30
    for name, disp in found:
        assert not disp.targetoptions.get("fastmath"), name
        calls = _LIBM.findall(inspect.getsource(disp.py_func))
        assert not calls, (name, calls)


def test_hand_written_transcendentals_are_accurate():
    """``_vexp``/``_exp``, ``_vlog``/``_log``, ``_log1p_core`` and ``_cospi`` against mpmath
    (scalar and vector forms give identical bits) and at their special values."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    rng = np.random.default_rng(16)
    y = np.concatenate([rng.uniform(-705.0, 705.0, 300), [0.0, -0.35, 0.35, 1e-300]])
    ev = np.empty_like(y)
    portable.portable_vexp(y, np.zeros_like(y), ev, np.empty(y.size, dtype=np.int64))
    for k, v in enumerate(y):
        assert portable.portable_exp(v) == ev[k]
        assert abs(ev[k] - float(mp.exp(v))) <= 2.5e-16 * float(mp.exp(v)), v
    x = np.concatenate(
        [np.exp(rng.uniform(-700.0, 700.0, 300)), [1.0, 2.0, 0.5, math.sqrt(2.0), 2.5e-308]]
    )
    x = np.concatenate([x, np.nextafter(math.sqrt(2.0), [0.0, 2.0])])
    lv = np.empty_like(x)
    portable.portable_vlog(x, lv, np.empty(x.size, dtype=np.int64))
    for k, v in enumerate(x):
        assert portable.portable_log(v) == lv[k]
        exact = float(mp.log(mp.mpf(float(v))))
        assert abs(lv[k] - exact) <= 2.5e-16 * max(abs(exact), 0.5), v
    for f in np.concatenate([rng.uniform(portable.LOG1P_LO, portable.LOG1P_HI, 200), [0.0]]):
        exact = float(mp.log1p(mp.mpf(float(f))))
        assert abs(portable.log1p_core(f) - exact) <= 2.5e-16 * abs(exact), f
    assert portable.portable_log(0.0) == -math.inf and portable.portable_log(math.inf) == math.inf
    assert math.isnan(portable.portable_log(-1.0)) and math.isnan(portable.portable_log(math.nan))
    assert portable.portable_log(5e-324) == pytest.approx(math.log(5e-324), rel=1e-15)
    assert portable.portable_exp(710.0) == math.inf and portable.portable_exp(-750.0) == 0.0
    assert portable.portable_exp(-740.0) == pytest.approx(math.exp(-740.0), rel=1e-12)  # subnormal
    assert math.isnan(portable.portable_exp(math.nan))
    for den in (8, 37, 120):
        for n in range(0, 4 * den + 3):
            exact = float(mp.cos(mp.pi * n / den))
            assert abs(portable.cospi(n, den) - exact) <= 2.5e-16, (n, den)
