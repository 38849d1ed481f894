"""The compiled entropy value ``pairsum.entropy_values`` (what ``Model.entropy`` and
``Model.free_energy`` use) against the numpy reference ``particles.entropy.entropy`` and
against mpmath, on random, near-coincident, clustered and widely spread members."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlnsim.particles import Model, Schatten
from dlnsim.particles.entropy import entropy
from dlnsim.particles.pairsum import entropy_values


def _members(d: int) -> np.ndarray:
    rng = np.random.default_rng(d)
    rows = [rng.normal(size=d), 3.0 * rng.normal(size=d), np.full(d, 0.7)]
    near = np.linspace(0.0, 1e-9, d)  # pairs at 1e-10 and below: the series branch
    wide = np.linspace(-300.0, 300.0, d)  # e^{-2|x|} underflows: the far branch
    edge = 0.5 * np.arange(d)  # differences on the series cutoff 0.5 and its multiples
    return np.array(rows + [near, wide, edge])


@pytest.mark.parametrize("depth", [1, 2, 3, 10, 64, math.inf])
@pytest.mark.parametrize("d", [1, 2, 7, 33, 100])
def test_entropy_values_equal_the_numpy_reference(d, depth):
    """Agreement to 1e-13 of the scale d^2 (1 + spread), a bound on the sum of the |psi| terms
    (|psi_N(x)| <= log N + |x|): rounding over d^2/2 terms stays far below it, while a wrong
    series coefficient, branch or log N constant moves S_N by far more."""
    rho = _members(d)
    got = entropy_values(rho, depth)
    ref = entropy(rho, depth)
    scale = 1.0 + d * d * (1.0 + np.ptp(rho, axis=-1))
    assert got.shape == ref.shape == (rho.shape[0],)
    assert np.all(np.abs(got - ref) <= 1e-13 * scale), (got - ref) / scale


def test_entropy_values_against_mpmath():
    """S_N at d = 6 from log(sinh x / sinh(x/N)) summed in mpmath at 40 digits: 1e-14 relative."""
    mp = pytest.importorskip("mpmath")
    rho = np.array([[1.3, 0.2, 0.2 + 1e-9, -0.4, -0.45, -2.0]])
    for depth in (2, 5, math.inf):
        with mp.workdps(40):
            d = rho.shape[1]
            a = mp.mpf(0.5) * (1 - (0 if depth == math.inf else mp.mpf(1) / depth)) * (d - 1)
            total = a * mp.fsum(mp.mpf(v) for v in rho[0])
            for i in range(d):
                for j in range(i + 1, d):
                    x = mp.mpf(rho[0, i]) - mp.mpf(rho[0, j])
                    if depth == math.inf:
                        psi = mp.log(mp.sinh(x) / x)
                    else:
                        psi = mp.log(mp.sinh(x) / mp.sinh(x / depth))
                    total += psi / 2
        assert entropy_values(rho, depth)[0] == pytest.approx(float(total), rel=1e-14)


def test_model_free_energy_uses_it_and_checks_arguments():
    model = Model(5, 3, 2.0, Schatten(2.0))
    sigma = np.array([[1.2, 0.9, 0.5, 0.5, 0.1]])
    want = (sigma**2).sum() / 2 - entropy(np.log(sigma), 3)[0] / 2.0
    assert model.free_energy(sigma)[0] == pytest.approx(want, rel=1e-14)
    assert entropy_values(np.zeros((2, 3, 4)), 2).shape == (2, 3)
    with pytest.raises(ValueError, match="bad depth="):
        entropy_values(np.zeros(3), 0)
    with pytest.raises(ValueError, match="bad rho="):
        entropy_values(5.0, 2)
