"""The matrix Langevin ensemble's state for the particles' ensemble runner (theory.md 12.5).

``network.langevin_ensemble`` validates a matrix run and hands it to ``particles.ensemble``'s
runner (``run_ensemble``) with the layout ``MATRIX`` of this module: the runner, its executors
(in-process, a Dask client, an address, ``scheduler="local"``), its chunking, progress bar,
Zarr streaming with checksums, resume, overwrite, lock, failure handling and reduction trees
are the particles' ones.  Only what a member's state is differs, and ``MatrixLayout`` declares
it: the variables ``X`` (dims ``member, time, row, col``), ``sigma`` (``member, time,
particle``), ``energy``, ``free_energy``, the start ``X0`` and ``last_finite`` (``member, row,
col``), ``failed``, ``failed_time``, ``accepted`` and ``steps``; its block of members is
``network.simulate_matrix_members``.  Member ``k`` draws only from ``(seed, k)``, so the result
is bitwise the same for any chunking, any cluster and serially.  A matrix store has the kind
``network_langevin_ensemble`` and its start variable ``X0`` (attribute ``start_variable``); a
resume refuses a store of the particles, and conversely.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlnsim.particles.ensemble import SEEDING_SCHEME
from dlnsim.particles.ensemble.plan import Variable

__all__ = ["MATRIX", "SCHEME", "MatrixLayout"]

SCHEME = "Euler-Maruyama in X, noise sqrt(2 T h) U (sqrt(K) o Z) V^T (theory.md 12.5)"


def _describe(model: Any) -> dict[str, object]:
    """``model.describe()``, or the four fields the engine reads (a duck-typed model)."""
    describe = getattr(model, "describe", None)
    if callable(describe):
        return dict(describe())
    depth = "inf" if model.depth == math.inf else str(model.depth)
    energy = model.energy.describe() if hasattr(model.energy, "describe") else {}
    return {"width": model.width, "depth": depth, "beta": model.beta, **energy}


class MatrixLayout:
    """The matrix ensemble's state for the runner (``particles.ensemble.plan.Layout``):
    a member is the ``d x d`` matrix ``X``, run by ``simulate_matrix_members``."""

    kind = "network_langevin_ensemble"
    start = "X0"
    trajectories = ("X", "sigma", "energy", "free_energy")

    def __reduce__(self) -> str:
        return "MATRIX"  # the one instance, pickled by reference

    def describe(self, model: Any) -> dict[str, Any]:
        """The model's parameters (``model.describe()`` or width, depth, beta, energy)."""
        return _describe(model)

    def sizes(self, model: Any) -> dict[str, int]:
        """``row``, ``col``, ``particle``: ``d`` each."""
        d = int(model.width)
        return {"row": d, "col": d, "particle": d}

    def coords(self, model: Any) -> dict[str, Any]:
        """``row``, ``col`` (0-based) and ``particle`` (``1 .. d``, 1 = largest)."""
        d = int(model.width)
        return {
            "row": ("row", np.arange(d), {"long_name": "row index of X"}),
            "col": ("col", np.arange(d), {"long_name": "column index of X"}),
            "particle": (
                "particle",
                np.arange(1, d + 1),
                {"long_name": "singular value index (1 = largest)"},
            ),
        }

    def variables(self, model: Any, save_members: bool, metropolis: bool) -> dict[str, Variable]:
        """``X``, ``sigma``, ``energy``, ``free_energy`` (with ``save_members``), ``X0``,
        ``failed``, ``failed_time``, ``last_finite``, ``accepted``, ``steps``."""
        f8, i8 = np.float64, np.int64
        mat, per_time = ("member", "time", "row", "col"), ("member", "time")
        out = {
            "X": Variable(mat, f8, np.nan, {"long_name": "end-to-end matrix X", "units": "1"}),
            "sigma": Variable((*per_time, "particle"), f8, np.nan, {
                "long_name": "singular value of the end-to-end matrix", "units": "1"}),
            "energy": Variable(per_time, f8, np.nan, {"long_name": "energy E(X)", "units": "1"}),
            "free_energy": Variable(per_time, f8, np.nan, {
                "long_name": "free energy F_beta = E - S_N / beta", "units": "1"}),
        }  # fmt: skip
        if not save_members:
            out = {}
        out.update({
            "X0": Variable(("member", "row", "col"), f8, np.nan, {
                "long_name": "initial matrix", "units": "1"}),
            "failed": Variable(("member",), np.int8, -1, {
                "long_name": "member failed (non-finite or singular state)",
                "flag_values": np.array([-1, 0, 1], dtype=np.int8),
                "flag_meanings": "not_computed_yet ok failed"}),
            "failed_time": Variable(("member",), f8, np.nan, {
                "long_name": "end of the failing step (NaN if none)", "units": "1"}),
            "last_finite": Variable(("member", "row", "col"), f8, np.nan, {
                "long_name": "last finite state (the final state if the member did not fail)",
                "units": "1"}),
            "accepted": Variable(("member",), i8, -1, {
                "long_name": "accepted Metropolis proposals (all steps without the test; "
                "-1 = not computed yet)"}),
            "steps": Variable(("member",), i8, -1, {
                "long_name": "steps taken (-1 = not computed yet)"}),
        })  # fmt: skip
        return out

    def chunk_arrays(self, save_members: bool, metropolis: bool) -> list[str]:
        """The trajectories (``save_members``), ``accepted``, ``steps``, ``failed_time``,
        ``last_finite``, ``failed``."""
        names = list(self.trajectories) if save_members else []
        return names + ["accepted", "steps", "failed_time", "last_finite", "failed"]

    def state_size(self, width: int) -> int:
        """``d^2 + d`` (``X`` and ``sigma``)."""
        return width * width + width

    def attrs(self) -> dict[str, Any]:
        """``start_variable``, ``scheme`` and the seeding of the Metropolis uniforms."""
        return {
            "start_variable": self.start,
            "scheme": SCHEME,
            "seeding_scheme": SEEDING_SCHEME
            + "; Metropolis uniforms: numpy PCG64, SeedSequence(seed, spawn_key=(member, 1))",
        }

    def block(
        self,
        model: Any,
        starts: np.ndarray,
        members: np.ndarray,
        times: np.ndarray,
        dt: float,
        seed: int,
        temperature: float,
        rescaled: bool,
        metropolis: bool,
        energies: bool,
    ) -> dict[str, np.ndarray]:
        """``simulate_matrix_members`` of the block (it always computes the energies)."""
        from .langevin import simulate_matrix_members  # the engine imports this module

        b = simulate_matrix_members(
            model, starts, members, times, dt, seed, temperature, rescaled, metropolis
        )
        return {
            "X": b.x,
            "sigma": b.sigma,
            "energy": b.energy,
            "free_energy": b.free_energy,
            "accepted": np.asarray(b.accepted, dtype=np.int64),
            "steps": np.asarray(b.steps, dtype=np.int64),
            "failed_time": np.asarray(b.failed_time, dtype=np.float64),
            "last_finite": np.asarray(b.last_finite, dtype=np.float64),
        }


#: The matrix layout (``langevin_ensemble`` passes it to the runner).
MATRIX = MatrixLayout()
