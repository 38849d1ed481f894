"""dlnsim network: the deep linear network at the matrix level (docs/theory.md section 12).

The state is the whole ``d x d`` end-to-end matrix ``X``, for any energy ``E(X)`` (matrix
completion, regression, sensing, spectral terms): ``MatrixModel`` gives ``F_beta``, the operator
``A_X`` and the flow velocity; ``gradient_flow`` integrates the flow; ``balanced_factors`` and
``train_factors`` run a real network's gradient descent on its factors; ``langevin_ensemble``
runs the matrix Langevin equation at temperature ``1/beta`` (optionally Metropolis-adjusted).
"""

from .energies import Completion, MatrixEnergy, Regression, Sensing, Spectral, SumEnergy
from .factors import balance_defect, balanced_factors, product, train_factors
from .flow import EFFECTIVE_RANK, gradient_flow
from .langevin import MatrixBlock, langevin_ensemble, simulate_matrix_members
from .model import MatrixModel, UnconfinedWarning, effective_rank

__all__ = [
    "EFFECTIVE_RANK",
    "Completion",
    "MatrixBlock",
    "MatrixEnergy",
    "MatrixModel",
    "Regression",
    "Sensing",
    "Spectral",
    "SumEnergy",
    "UnconfinedWarning",
    "balance_defect",
    "balanced_factors",
    "effective_rank",
    "gradient_flow",
    "langevin_ensemble",
    "product",
    "simulate_matrix_members",
    "train_factors",
]
