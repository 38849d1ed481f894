"""The deep linear network at the level of the end-to-end matrix ``X`` (theory.md section 12)."""

from .langevin import MatrixBlock, langevin_ensemble, simulate_matrix_members

__all__ = ["MatrixBlock", "langevin_ensemble", "simulate_matrix_members"]
