"""Where the chunks' results go: the ``Sink`` protocol and the in-memory sink.

A sink receives each finished chunk (``write``), hands the reduction tree nodes of chunks
stored earlier to the sweep (``loader``), and at the end the reductions and the run's summary
(``finish``) before it builds the result (``dataset``).  ``MemorySink`` keeps numpy arrays;
``zarr_sink.ZarrSink`` streams into a verified, resumable Zarr store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import xarray as xr

from .chunk import member_fields
from .plan import Plan
from .tree import Node

__all__ = ["MemorySink", "Sink"]


class Sink(Protocol):
    """What the runner needs from a destination of chunk results (a structural type: a sink
    need not inherit from it).

    Parameters
    ----------
    *args, **kwargs
        A protocol is not instantiated; each sink has its own constructor.
    """

    def open(self) -> tuple[set[int], bool]:
        """The chunks already done (verified), and whether the whole result is (then nothing
        runs and ``dataset`` is the result)."""
        ...

    def loader(self, name: str) -> Callable[[int], list[Node]] | None:
        """Reads the stored tree nodes of reduction ``name`` of a done chunk (None: none kept)."""
        ...

    def write(self, chunk: int, result: Mapping[str, Any]) -> None:
        """Keep a finished chunk's result."""
        ...

    def final_check(self, rerun: Callable[[int], dict[str, Any]]) -> bool:
        """Verify every chunk, recompute damaged ones with ``rerun``; True if any was."""
        ...

    def failures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``failed``, ``failed_time`` and ``last_finite`` of all members."""
        ...

    def finish(self, reduced: Mapping[str, tuple[np.ndarray, ...]], attrs: dict) -> None:
        """Keep the reductions ``(mean, var, count)`` and the final attributes."""
        ...

    def dataset(self) -> xr.Dataset:
        """The result."""
        ...


class MemorySink:
    """Collects the chunks into numpy arrays (no store).

    Parameters
    ----------
    plan : Plan
        The run.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.schema = plan.schema()
        self.attrs: dict[str, Any] = {}
        sizes = plan.sizes()
        self.arrays = {
            name: np.full(tuple(sizes[d] for d in var.dims), var.fill, dtype=var.dtype)
            for name, var in self.schema.items()
        }
        self.arrays[plan.layout.start][...] = plan.starts

    def open(self) -> tuple[set[int], bool]:
        """Nothing is done yet.

        Returns
        -------
        tuple
            ``(set(), False)``.
        """
        return set(), False

    def loader(self, name: str) -> None:
        """No chunk is stored before the run.

        Parameters
        ----------
        name : str
            Reduction name.
        """
        return None

    def write(self, chunk: int, result: Mapping[str, Any]) -> None:
        """Copy a finished chunk's per-member arrays.

        Parameters
        ----------
        chunk : int
            Chunk index.
        result : Mapping
            The ``run_chunk`` result.
        """
        lo, hi = self.plan.bounds(chunk)
        for name, values in member_fields(result).items():
            self.arrays[name][lo:hi] = values

    def final_check(self, rerun: Callable[[int], dict[str, Any]]) -> bool:
        """Memory keeps what is written: nothing to verify.

        Parameters
        ----------
        rerun : callable
            Unused.

        Returns
        -------
        bool
            False.
        """
        return False

    def failures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``failed``, ``failed_time``, ``last_finite`` of all members.

        Returns
        -------
        tuple of numpy.ndarray
            The three arrays.
        """
        return self.arrays["failed"], self.arrays["failed_time"], self.arrays["last_finite"]

    def finish(self, reduced: Mapping[str, tuple[np.ndarray, ...]], attrs: dict) -> None:
        """Keep the reductions and the dataset attributes (provenance, parameters, ``attrs``).

        Parameters
        ----------
        reduced : Mapping
            Reduction name -> ``(mean, var, count)``.
        attrs : dict
            The final attributes (``complete``, ``n_failed``, ``failures``).
        """
        for name, values in reduced.items():
            for stat, value in zip(("mean", "var", "count"), values, strict=True):
                self.arrays[f"{name}_{stat}"][...] = value
        self.attrs = self.plan.dataset_attrs(attrs)

    def dataset(self) -> xr.Dataset:
        """The result in memory.

        Returns
        -------
        xarray.Dataset
            Dims ``member, time`` and the layout's (``particle``).
        """
        data = {name: (v.dims, self.arrays[name], v.attrs) for name, v in self.schema.items()}
        return xr.Dataset(data, coords=self.plan.coords(), attrs=dict(self.attrs))
