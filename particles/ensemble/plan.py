"""The plan of a run (everything fixed before the first chunk runs) and the declared layout of
its result and of its store.

``Plan`` cuts the members into chunks and makes each chunk's task.  ``Plan.schema()`` declares
every result variable (dims, dtype, fill value meaning "not computed yet", attrs);
``Plan.store_variables()`` the bookkeeping variables a Zarr store adds (``chunk_done``,
``chunk_sha256`` and the reduction tree nodes ``<name>_partial``).  ``Plan.attrs`` are the run's
parameters: those compared on resume (``zarr_sink.check_resume``) are among them.  The layout is
``STORE_FORMAT``; a change of it needs a new format number.

What a member's state is (its variables, their dims, the coordinates, the engine that runs a
block of members) is the plan's ``layout``: ``PARTICLES`` (``ParticleLayout``: the singular
values, dims ``member, time, particle``) unless the caller passes another one (the matrix
Langevin ensemble of ``dlnsim.network`` passes its ``MatrixLayout``: states ``X`` with dims
``member, time, row, col``).  The runner, the sinks and the store only ever ask the layout.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import numpy as np

from .. import store as _store
from ..datasets import clean_attrs, provenance
from ..model import Model
from ..philox import NOISE_SCHEME
from . import chunk as _chunk
from .tree import STATS, dyadic_blocks

__all__ = [
    "PARTICLES",
    "BIT_GENERATOR",
    "CHUNK_BYTES",
    "CHUNK_PAIR_WORK",
    "REDUCTIONS",
    "SEEDING_SCHEME",
    "STORE_FORMAT",
    "Layout",
    "ParticleLayout",
    "Plan",
    "Variable",
    "default_chunk_size",
]

REDUCTIONS = ("sigma", "free_energy", "spread")
SEEDING_SCHEME = (
    "Gaussian increments: counter-based, normal i of member k at step s a pure function of "
    "(seed, k, s, i) (noise_scheme)"
)
BIT_GENERATOR = "Philox4x64-10"
#: Target size of one chunk's ``sigma`` block when ``chunk_size`` is chosen automatically.
CHUNK_BYTES = 64 * 2**20
#: Members per automatically sized chunk are at least ``CHUNK_PAIR_WORK / d^2`` (when the
#: workers stay busy): a few ms of pair sums per step and chunk.
CHUNK_PAIR_WORK = 2**22
#: Version of the Zarr store layout (checked on resume); 2 added the checksums (particles/store.py).
STORE_FORMAT = 2

#: What each reduction averages, in the variables' long names.
_REDUCED = {
    "sigma": "sorted singular value",
    "free_energy": "free energy F_beta",
    "spread": "spread max sigma - min sigma",
}


class Variable(NamedTuple):
    """One declared variable: ``dims``, ``dtype``, ``fill`` (the value of "not computed yet")
    and ``attrs``.

    Parameters
    ----------
    dims : tuple of str
        Dimension names.
    dtype : type
        numpy dtype.
    fill : object
        Fill value.
    attrs : dict
        Variable attributes (``long_name``, ``units``, flags).
    """

    dims: tuple[str, ...]
    dtype: Any
    fill: Any
    attrs: dict[str, Any]


def _member_variables(metropolis: bool) -> dict[str, Variable]:
    """The per-member variables every result has (besides the trajectories)."""
    f8, i8 = np.float64, np.int64
    out = {
        "sigma0": Variable(("member", "particle"), f8, np.nan, {
            "long_name": "initial singular values (sorted descending)", "units": "1"}),
        "reflections": Variable(("member",), i8, -1, {
            "long_name": "reflections at u = 0 (-1 = not computed yet)"}),
        "accepted": Variable(("member",), i8, -1, {
            "long_name": "accepted Metropolis proposals (-1 = not computed yet)"}),
        "failed": Variable(("member",), np.int8, -1, {
            "long_name": "member failed (reached a non-finite state)",
            "flag_values": np.array([-1, 0, 1], dtype=np.int8),
            "flag_meanings": "not_computed_yet ok failed"}),
        "failed_time": Variable(("member",), f8, np.nan, {
            "long_name": "time of the first non-finite state (NaN if none)", "units": "1"}),
        "last_finite": Variable(("member", "particle"), f8, np.nan, {
            "long_name": "last finite state (the final state if the member did not fail)"}),
    }  # fmt: skip
    if not metropolis:
        del out["accepted"]
    return out


def _trajectory_variables(model: Any) -> dict[str, Variable]:
    """``sigma``, ``energy``, ``free_energy``, with the attrs of ``datasets.trajectory_dataset``
    (the model may rename the state and the free energy)."""
    state = getattr(model, "state_long_name", "singular value of the end-to-end matrix")
    free = getattr(model, "free_energy_long_name", "free energy F_beta = E - S_N / beta")
    dims = ("member", "time")
    return {
        "sigma": Variable((*dims, "particle"), np.float64, np.nan, {
            "long_name": state, "units": "1"}),
        "energy": Variable(dims, np.float64, np.nan, {
            "long_name": "energy E(sigma) = sum_i e(sigma_i)", "units": "1"}),
        "free_energy": Variable(dims, np.float64, np.nan, {"long_name": free, "units": "1"}),
    }  # fmt: skip


def _reduction_variables(name: str) -> dict[str, Variable]:
    """``<name>_mean``, ``<name>_var``, ``<name>_count`` of one reduction."""
    dims = reduced_dims(name)
    what = _REDUCED[name]
    return {
        f"{name}_mean": Variable(dims, np.float64, np.nan, {
            "long_name": f"ensemble mean of the {what}"}),
        f"{name}_var": Variable(dims, np.float64, np.nan, {
            "long_name": f"ensemble sample variance (ddof=1) of the {what}"}),
        f"{name}_count": Variable(dims, np.int64, -1, {
            "long_name": f"members in the {name} reductions (finite, not failed)"}),
    }  # fmt: skip


def reduced_dims(name: str) -> tuple[str, ...]:
    """The dims of the reduction ``name``'s result (over members).

    Parameters
    ----------
    name : str
        One of ``REDUCTIONS``.

    Returns
    -------
    tuple of str
        ``("time", "particle")`` for ``sigma``, else ``("time",)``.
    """
    return ("time", "particle") if name == "sigma" else ("time",)


class Layout(Protocol):
    """What a kind of member state declares to the runner (a structural type).

    ``kind`` is the result's and the store's ``kind`` attribute (a resume refuses a store of
    another kind); ``start`` names the start variable (``sigma0``, ``X0``); ``trajectories``
    are the per-time variables a chunk returns only with ``save_members``.

    Parameters
    ----------
    *args, **kwargs
        A protocol is not instantiated.
    """

    kind: str
    start: str
    trajectories: tuple[str, ...]

    def describe(self, model: Any) -> dict[str, Any]:
        """The model's parameters as attributes (compared on resume)."""
        ...

    def sizes(self, model: Any) -> dict[str, int]:
        """The lengths of the state's dimensions (``particle``, ``row``, ...)."""
        ...

    def coords(self, model: Any) -> dict[str, Any]:
        """The state's coordinates: name -> ``(dim, values, attrs)``."""
        ...

    def variables(self, model: Any, save_members: bool, metropolis: bool) -> dict[str, Variable]:
        """The per-member result variables (trajectories first), without the reductions."""
        ...

    def chunk_arrays(self, save_members: bool, metropolis: bool) -> list[str]:
        """The per-member arrays a finished chunk writes, in the order of their checksums."""
        ...

    def state_size(self, width: int) -> int:
        """Numbers saved per member and save time (memory and chunk-size estimates)."""
        ...

    def attrs(self) -> dict[str, Any]:
        """Extra run attributes of this kind (empty for the particles)."""
        ...

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
        """The engine's per-member arrays of a block of members: ``sigma`` and
        ``failed_time`` always, ``free_energy`` with ``energies``, the trajectories and the
        other ``chunk_arrays`` (but ``failed``)."""
        ...


class ParticleLayout:
    """The particle ensemble: states are the ``d`` singular values (dims ``member, time,
    particle``), run by ``chunk.simulate`` (``particles.langevin`` or the baselines).

    The layout of ``STORE_FORMAT`` 2: unchanged by the introduction of layouts.
    """

    kind = "langevin_ensemble"
    start = "sigma0"
    trajectories = ("sigma", "energy", "free_energy")

    def __reduce__(self) -> str:
        return "PARTICLES"  # the one instance, pickled by reference

    def describe(self, model: Any) -> dict[str, Any]:
        """``model.describe()``."""
        return model.describe()

    def sizes(self, model: Any) -> dict[str, int]:
        """``particle``: ``d``."""
        return {"particle": model.width}

    def coords(self, model: Any) -> dict[str, Any]:
        """The ``particle`` coordinate ``1 .. d``."""
        return {
            "particle": (
                "particle",
                np.arange(1, model.width + 1),
                {"long_name": "singular value index (1 = largest at t = 0)"},
            )
        }

    def variables(self, model: Any, save_members: bool, metropolis: bool) -> dict[str, Variable]:
        """``sigma``, ``energy``, ``free_energy`` (with ``save_members``), ``sigma0``,
        ``reflections``, ``accepted`` (``metropolis``), ``failed``, ``failed_time``,
        ``last_finite``."""
        out = _trajectory_variables(model) if save_members else {}
        out.update(_member_variables(metropolis))
        return out

    def chunk_arrays(self, save_members: bool, metropolis: bool) -> list[str]:
        """The trajectories (``save_members``), ``reflections``, ``accepted`` (``metropolis``),
        ``failed_time``, ``last_finite``, ``failed``."""
        names = list(self.trajectories) if save_members else []
        names += ["reflections", *(["accepted"] if metropolis else [])]
        return names + ["failed_time", "last_finite", "failed"]

    def state_size(self, width: int) -> int:
        """``d``."""
        return width

    def attrs(self) -> dict[str, Any]:
        """None."""
        return {}

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
        """``chunk.particle_block``."""
        return _chunk.particle_block(
            model, starts, members, times, dt, seed, temperature, rescaled, metropolis, energies
        )


#: The particle layout (the default of ``Plan``).
PARTICLES = ParticleLayout()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@dataclass
class Plan:
    """Everything fixed before the first chunk runs.

    Parameters
    ----------
    model : Model, MatrixVariant or DysonModel
        The dynamics.
    starts : numpy.ndarray
        ``(members, d)``, rows sorted descending.
    times : numpy.ndarray
        Save times.
    members, dt, seed, temperature, rescaled, chunk_size, reductions, save_members, metropolis
        The validated arguments of ``langevin_ensemble``.
    attrs : dict
        The run's parameters as dataset attributes (``run_attrs``).
    layout : Layout or None, default None
        What a member's state is (module docstring); None for ``PARTICLES``.
    """

    model: Model
    starts: np.ndarray
    times: np.ndarray
    members: int
    dt: float
    seed: int
    temperature: float
    rescaled: bool
    chunk_size: int
    reductions: tuple[str, ...]
    save_members: bool
    metropolis: bool = False
    attrs: dict[str, str | int | float] = field(default_factory=dict)
    layout: Any = None

    def __post_init__(self) -> None:
        if self.layout is None:
            self.layout = PARTICLES

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return -(-self.members // self.chunk_size)

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Members ``[lo, hi)`` of ``chunk``.

        Parameters
        ----------
        chunk : int
            Chunk index.

        Returns
        -------
        tuple of int
            ``(lo, hi)``.
        """
        return chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.members)

    @property
    def slots(self) -> int:
        """Most tree nodes any chunk produces (the second axis of the stored partials)."""
        return max(len(dyadic_blocks(*self.bounds(c))) for c in range(self.n_chunks))

    def task(self, chunk: int) -> dict[str, Any]:
        """The keyword arguments of ``chunk.run_chunk`` for ``chunk``.

        Parameters
        ----------
        chunk : int
            Chunk index.

        Returns
        -------
        dict
            Keyword arguments (picklable).
        """
        lo, hi = self.bounds(chunk)
        return {
            "model": self.model,
            "starts": np.ascontiguousarray(self.starts[lo:hi]),
            "first": lo,
            "times": self.times,
            "dt": self.dt,
            "seed": self.seed,
            "temperature": self.temperature,
            "rescaled": self.rescaled,
            "reductions": self.reductions,
            "save_members": self.save_members,
            "metropolis": self.metropolis,
            "layout": self.layout,
        }

    def sizes(self) -> dict[str, int]:
        """The length of every dimension of the result and of the store.

        Returns
        -------
        dict
            Dimension name -> length.
        """
        return {
            "member": self.members,
            "time": self.times.size,
            **self.layout.sizes(self.model),
            "chunk": self.n_chunks,
            "slot": self.slots,
            "stat": len(STATS),
        }

    def schema(self) -> dict[str, Variable]:
        """Every result variable, in order.

        Returns
        -------
        dict
            Name -> ``Variable``.
        """
        out = self.layout.variables(self.model, self.save_members, self.metropolis)
        for name in self.reductions:
            out.update(_reduction_variables(name))
        return out

    def chunk_arrays(self) -> list[str]:
        """The arrays a finished chunk writes, in the order of their checksums in
        ``chunk_sha256``.

        Returns
        -------
        list of str
            Variable names.
        """
        names = self.layout.chunk_arrays(self.save_members, self.metropolis)
        return names + [f"{name}_partial" for name in self.reductions]

    def store_variables(self) -> dict[str, Variable]:
        """The bookkeeping variables of a store: ``chunk_done``, ``chunk_sha256`` and the tree
        nodes ``<name>_partial`` of each chunk (``(chunk, slot, stat, ...)``).

        Returns
        -------
        dict
            Name -> ``Variable``.
        """
        out = {
            "chunk_done": Variable(("chunk",), np.int8, 0, {
                "long_name": "1 = this chunk of members is complete on disk"}),
            "chunk_sha256": Variable(("chunk", "chunk_array", "sha256_byte"), np.uint8, 0, {
                "long_name": "SHA-256 of each finished chunk's data per array "
                "(chunk_hash_arrays)"}),
        }  # fmt: skip
        for name in self.reductions:
            out[f"{name}_partial"] = Variable(
                ("chunk", "slot", "stat", *reduced_dims(name)),
                np.float64,
                np.nan,
                {"long_name": f"per-chunk reduction tree nodes of {name} (count, mean, M2)"},
            )
        return out

    def coords(self) -> dict[str, Any]:
        """The coordinates ``member``, ``time`` and the layout's (``particle``, as in
        ``trajectory_dataset``).

        Returns
        -------
        dict
            Name -> ``(dim, values, attrs)``.
        """
        time_name = "rescaled time tau = N t" if self.rescaled else "time t"
        return {
            "member": ("member", np.arange(self.members), {"long_name": "ensemble member"}),
            "time": ("time", self.times, {"long_name": time_name, "units": "1"}),
            **self.layout.coords(self.model),
        }

    def store_coords(self) -> dict[str, Any]:
        """The coordinates of a store: ``coords()`` and ``chunk``, ``stat``.

        Returns
        -------
        dict
            Name -> ``(dim, values, attrs)``.
        """
        coords = self.coords()
        coords["chunk"] = ("chunk", np.arange(self.n_chunks), {"long_name": "chunk of members"})
        coords["stat"] = (
            "stat",
            np.arange(len(STATS), dtype=np.int8),
            {
                "long_name": "reduction statistic",
                "flag_values": np.arange(len(STATS), dtype=np.int8),
                "flag_meanings": " ".join(STATS),
            },
        )
        return coords

    @cached_property
    def provenance(self) -> dict[str, str | int | float]:
        """The provenance attributes every result of this run shares (computed once)."""
        describe = self.layout.describe(self.model)
        return provenance(**describe, rescaled_time=int(self.rescaled))

    def run_attrs(self) -> dict[str, str | int | float]:
        """The run's parameters as dataset attributes (those checked on resume among them).

        Returns
        -------
        dict
            Attribute name -> value (``clean_attrs``).
        """
        steps = math.ceil(float(self.times[-1]) / self.dt)
        work = float(self.members) * max(steps, 1) * self.model.width**2
        start = self.layout.start
        return clean_attrs(
            {
                **self.layout.describe(self.model),
                "rescaled_time": int(self.rescaled),
                "kind": self.layout.kind,
                "seed": str(self.seed),
                "seeding_scheme": SEEDING_SCHEME,
                "bit_generator": BIT_GENERATOR,
                "noise_scheme": NOISE_SCHEME,
                "dask_version": _version("dask"),
                "distributed_version": _version("distributed"),
                "zarr_version": _version("zarr"),
                "dt": self.dt,
                "temperature": self.temperature,
                "members": self.members,
                "chunk_size": self.chunk_size,
                "n_chunks": self.n_chunks,
                "reductions": ",".join(self.reductions) or "none",
                "save_members": int(self.save_members),
                "metropolis": int(self.metropolis),
                "variance": "sample variance over members (ddof=1)",
                "reduction_scheme": "Chan pairwise (count, mean, M2) on a fixed binary tree of "
                "member indices; failed members excluded",
                "work_estimate": work,
                "store_format": STORE_FORMAT,
                "checksum": "sha256 of each finished chunk's decoded data per array (chunk_sha256)",
                "chunk_hash_arrays": ",".join(self.chunk_arrays()),
                "time_sha256": _store.hex_digest("time", self.times),
                f"{start}_sha256": _store.hex_digest(start, self.starts),
                **self.layout.attrs(),
            }
        )

    def dataset_attrs(self, extra: dict[str, object]) -> dict[str, str | int | float]:
        """Provenance, the run's parameters and ``extra``, as dataset attributes.

        Parameters
        ----------
        extra : dict
            Attributes known only at the end (``complete``, ``n_failed``, ``failures``).

        Returns
        -------
        dict
            Attribute name -> value (``clean_attrs``).
        """
        return clean_attrs({**self.provenance, **self.attrs, **extra})


def default_chunk_size(members: int, n_times: int, width: int, threads: int) -> int:
    """``k`` chunks per worker thread (1 in-process: ``threads=0``), ``k`` from 1 to 4 as large
    as keeps at least ``CHUNK_PAIR_WORK / d^2`` members per chunk (a step of a chunk costs a
    fixed ~30 us of Python besides ~1 ns per pair: fewer, larger chunks keep that below ~5%,
    benchmarks/bench_langevin.py), and each chunk's ``sigma`` at most ``CHUNK_BYTES``.

    Parameters
    ----------
    members, n_times, width : int
        The run's size.
    threads : int
        Worker threads of the executor (0 in-process).

    Returns
    -------
    int
        Members per chunk.
    """
    by_memory = math.ceil(members * n_times * width * 8 / CHUNK_BYTES)
    slots = max(threads, 1)
    min_members = max(1, CHUNK_PAIR_WORK // max(width * width, 1))
    per_slot = min(4, max(1, members // (min_members * slots)))
    n_chunks = max(by_memory, per_slot * threads, 1)
    return max(1, math.ceil(members / min(members, n_chunks)))
