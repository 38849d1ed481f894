"""One chunk of members: the unit of work (one Dask task) and of storage (one Zarr chunk).

``run_chunk`` is the task a worker runs: it asks the plan's layout for its members' block
(``layout.block``: for the particles ``particle_block``, which calls the engine in ``simulate``,
the one place where a particle engine is called, and computes ``E`` and ``F_beta``; the matrix
layout of ``dlnsim.network`` runs ``network.simulate_matrix_members``) and computes the chunk's
reduction tree nodes (``tree.chunk_nodes``) over its ``sigma`` and ``free_energy``.  It is a
top-level function of its arguments only, so that Dask pickles it by reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datasets import valid_states
from ..model import Model
from ..system import LogGasSystem
from .tree import chunk_nodes

__all__ = ["member_fields", "particle_block", "run_chunk", "simulate"]


def simulate(
    model: Model,
    starts: np.ndarray,
    members: np.ndarray,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float,
    rescaled: bool,
    metropolis: bool,
) -> Any:
    """The engine's block of trajectories of ``members`` (the single dispatch to the engines).

    Parameters
    ----------
    model : Model, MatrixVariant or DysonModel
        The dynamics.
    starts : numpy.ndarray
        Starts, shape ``(len(members), d)``.
    members : numpy.ndarray
        Member indices (they pick the random streams).
    times, dt, seed, temperature, rescaled, metropolis
        As in ``langevin_ensemble`` (validated).

    Returns
    -------
    object
        The engine's result: ``sigma``, ``reflections``, ``failed_time``, ``last_finite``
        (and ``accepted`` with ``metropolis``).
    """
    from ..baselines import simulate_baseline_members
    from ..langevin import simulate_members

    if isinstance(model, LogGasSystem):  # a singular log-gas: the proximal/Metropolis stepper
        engine, extra = simulate_baseline_members, {"metropolis": metropolis}
    else:
        engine, extra = simulate_members, {}
    return engine(
        model, starts, members, times, dt, seed, temperature=temperature, rescaled=rescaled, **extra
    )


def _energies(model: Model, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E`` and ``F_beta`` per state, NaN where ``sigma`` is not finite (as trajectory_dataset)."""
    finite = valid_states(model, sigma)
    safe = np.where(finite[..., None], sigma, 1.0)
    with np.errstate(all="ignore"):
        energy = np.where(finite, model.energy(safe), np.nan)
        free = np.where(finite, model.free_energy(safe), np.nan)
    return energy, free


def _reduced_values(name: str, sigma: np.ndarray, free: np.ndarray | None) -> np.ndarray:
    """The per-member values the reduction ``name`` averages (``REDUCTIONS``)."""
    if name == "sigma":
        return sigma
    if name == "free_energy":
        return free  # type: ignore[return-value]
    return np.max(sigma, axis=-1) - np.min(sigma, axis=-1)  # spread


def particle_block(
    model: Model,
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
    """The per-member arrays of a block of particle members (``plan.ParticleLayout.block``).

    Parameters
    ----------
    model : Model, MatrixVariant or DysonModel
        The dynamics.
    starts : numpy.ndarray
        Starts, shape ``(len(members), d)``, rows sorted descending.
    members : numpy.ndarray
        Member indices (they pick the random streams).
    times, dt, seed, temperature, rescaled, metropolis
        As in ``langevin_ensemble`` (validated).
    energies : bool
        Whether to compute ``energy`` and ``free_energy``.

    Returns
    -------
    dict
        ``reflections``, ``accepted`` (with ``metropolis``), ``failed_time``,
        ``last_finite``, ``sigma`` (and ``energy``, ``free_energy`` with ``energies``).
    """
    block = simulate(model, starts, members, times, dt, seed, temperature, rescaled, metropolis)
    sigma = np.asarray(block.sigma, dtype=np.float64)
    out = {
        "reflections": np.asarray(block.reflections, dtype=np.int64),
        **({"accepted": np.asarray(block.accepted, dtype=np.int64)} if metropolis else {}),
        "failed_time": np.asarray(block.failed_time, dtype=np.float64),
        "last_finite": np.asarray(block.last_finite, dtype=np.float64),
        "sigma": sigma,
    }
    if energies:
        out["energy"], out["free_energy"] = _energies(model, sigma)
    return out


def run_chunk(
    model: Any,
    starts: np.ndarray,
    first: int,
    times: np.ndarray,
    dt: float,
    seed: int,
    temperature: float,
    rescaled: bool,
    reductions: tuple[str, ...],
    save_members: bool,
    metropolis: bool = False,
    layout: Any = None,
) -> dict[str, Any]:
    """Simulate members ``first .. first+len(starts)-1``; their saved fields and tree nodes.

    Parameters
    ----------
    model : Model, MatrixVariant, DysonModel or the layout's model
        The dynamics.
    starts : numpy.ndarray
        The chunk's starts, ``(n, ...)`` (``(n, d)`` rows sorted descending for particles).
    first : int
        Index of the chunk's first member.
    times, dt, seed, temperature, rescaled, metropolis
        As in ``langevin_ensemble`` (validated).
    reductions : tuple of str
        The reductions to compute tree nodes for.
    save_members : bool
        Whether to return the trajectories (``layout.trajectories``).
    layout : Layout or None, default None
        What a member's state is (``plan.Layout``); None for the particles.

    Returns
    -------
    dict
        The layout's per-member arrays (``reflections``, ``failed_time``, ``last_finite``, ...;
        the trajectories ``sigma``, ``energy``, ``free_energy``, ... only with
        ``save_members``) and ``nodes``: reduction name -> list of tree nodes.
    """
    if layout is None:
        from .plan import PARTICLES as layout
    members = np.arange(first, first + len(starts), dtype=np.int64)
    energies = save_members or "free_energy" in reductions
    fields = layout.block(
        model, starts, members, times, dt, seed, temperature, rescaled, metropolis, energies
    )
    sigma, free = fields["sigma"], fields.get("free_energy")
    out: dict[str, Any] = {
        name: values
        for name, values in fields.items()
        if save_members or name not in layout.trajectories
    }
    out["nodes"] = {}
    use = np.isnan(fields["failed_time"])
    for name in reductions:
        out["nodes"][name] = chunk_nodes(_reduced_values(name, sigma, free), use, first)
    return out


def member_fields(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The per-member arrays of a chunk result, with the derived ``failed`` flag (0/1).

    Parameters
    ----------
    result : dict
        A ``run_chunk`` result.

    Returns
    -------
    dict
        Variable name -> values for the chunk's members.
    """
    fields = {name: values for name, values in result.items() if name != "nodes"}
    fields["failed"] = (~np.isnan(result["failed_time"])).astype(np.int8)
    return fields
