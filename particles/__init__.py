"""dlnsim particles: the chamber model of the deep linear network and its particle simulation.

The singular values of the end-to-end matrix are particles driven by the free energy
``F_beta = E - S_N / beta`` (see docs/theory.md).  ``Model`` holds the mathematics;
``gradient_flow`` integrates the deterministic flow.  ``MatrixVariant`` and ``DysonModel`` are
the random-matrix baselines (theory.md section 10), simulated by ``simulate_baseline_members``.
"""

from .baselines import DysonModel, MatrixVariant, simulate_baseline_members
from .coordinates import COORDINATES, mobility
from .energies import Energy, Schatten, SeparableEnergy
from .ensemble import langevin_ensemble, local_cluster, local_cluster_options
from .entropy import log_kernel, psi
from .flow import gradient_flow
from .model import Model
from .version import __version__

__all__ = [
    "COORDINATES",
    "DysonModel",
    "Energy",
    "MatrixVariant",
    "Model",
    "Schatten",
    "SeparableEnergy",
    "__version__",
    "gradient_flow",
    "langevin_ensemble",
    "local_cluster",
    "local_cluster_options",
    "log_kernel",
    "mobility",
    "psi",
    "simulate_baseline_members",
]
