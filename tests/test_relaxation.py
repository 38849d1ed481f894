"""Measured relaxation rates (analysis.relaxation) against theory.md section 7."""

import math

import numpy as np
import pytest

from dlnsim.analysis import measured_relaxation_rates
from dlnsim.particles import Model, Schatten, SeparableEnergy


@pytest.mark.parametrize(
    "model",
    [
        Model(2, 10, 5.0, Schatten(2)),
        Model(5, math.inf, 2.0, Schatten(3)),
        Model(3, 4, 1.0, SeparableEnergy(lambda s: np.cosh(s) - 1, np.sinh, np.cosh)),
    ],
)
def test_fitted_rates_match_predictions(model):
    """Fits over 12 e-foldings from a 1e-5 perturbation: the quadratic terms bias the fitted
    rate by O(eps) = 1e-5 relative, so 1e-4 is a safe bound."""
    fitted = measured_relaxation_rates(model)
    np.testing.assert_allclose(fitted, model.relaxation_rates(), rtol=1e-4)


def test_bad_eps():
    with pytest.raises(ValueError, match="bad eps="):
        measured_relaxation_rates(Model(2, 3, 1.0, Schatten(2)), eps=0.5)
