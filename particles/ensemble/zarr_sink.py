"""The Zarr sink: results streamed into a store laid out up front, verified and resumable.

The store holds the ``Plan.schema()`` variables full size (NaN / -1 until written), chunked
along ``member`` like the work chunks, plus ``Plan.store_variables()``: ``chunk_done`` per
chunk, each finished chunk's checksums ``chunk_sha256`` and its reduction tree nodes
``<name>_partial``.  A finished chunk is written, then checksummed, then flagged done, so a
killed run leaves a readable store.  The integrity checks (checksums, structure, lock, atomic
swap) are those of ``particles/store.py``; ``check_resume`` compares a store's parameters with
the plan's.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import store as _store
from ..validation import fail
from .chunk import member_fields
from .plan import STORE_FORMAT, Plan, Variable
from .tree import Node, dyadic_blocks

__all__ = ["ZarrSink", "check_resume", "stored_value"]

_log = logging.getLogger("dlnsim.ensemble")


class ZarrSink:
    """Streams the chunks into a Zarr store (see the module docstring).

    Each finished chunk's checksums are recorded before its ``chunk_done`` flag; an opened store
    is verified (``particles/store.py``) and its damaged chunks unflagged, to be run again.

    Parameters
    ----------
    path : pathlib.Path
        The ``.zarr`` store.
    plan : Plan
        The run.
    create : bool
        Lay the store out (replacing what is at ``path``), else open it to resume.
    """

    def __init__(self, path: Path, plan: Plan, create: bool) -> None:
        self.path = path
        self.plan = plan
        self.created = create
        self.schema = plan.schema()
        self.repaired: list[int] = []  # chunks found damaged and recomputed by this run
        if create:  # laid out beside, then swapped in: never a half-made store at ``path``
            scratch = _store.scratch_path(path)
            try:
                self._create(self.schema, scratch)
                _store.swap_in(scratch, path)
            except BaseException:
                _store.remove_scratch(scratch)
                raise
        self.root = _store.open_root(path, mode="r+")
        self.names = plan.chunk_arrays()

    def open(self) -> tuple[set[int], bool]:
        """The done chunks, and whether the store is complete and intact (verified on resume).

        Returns
        -------
        tuple
            ``(done chunks, intact)``.
        """
        return self.verify() if not self.created else (self.done(), False)

    def verify(self) -> tuple[set[int], bool]:
        """On resume: the verified done chunks, and whether the finished reductions verify.

        Missing arrays or unreadable metadata raise ``StoreError``; damaged coordinates are
        rewritten from the parameters; damaged chunks are unflagged (to be recomputed) and
        logged.

        Returns
        -------
        tuple
            ``(done chunks, intact)``.
        """
        root, plan = self.root, self.plan
        _store.check_structure(root, self.path, plan.reductions)
        layout = _store.verify_layout(root)
        if layout:
            _log.warning("dlnsim: %s: rewriting damaged %s", self.path, ", ".join(layout))
            coords = plan.store_coords()
            for name in layout:
                root[name][...] = plan.starts if name == plan.layout.start else coords[name][1]
        done, unreadable = _store.flagged_chunks(root, plan.n_chunks)
        damage = {**unreadable, **_store.verify_chunks(root, sorted(done))}
        complete = int(root.attrs.get("complete", 0)) == 1
        reductions_ok = complete and (not plan.reductions or _store.verify_reductions(root))
        if damage or (complete and not reductions_ok):
            root.attrs["complete"] = 0
        self._unflag(damage)
        return done - set(damage), reductions_ok and not damage

    def _unflag(self, damage: Mapping[int, str]) -> None:
        for chunk, why in sorted(damage.items()):
            lo, hi = self.plan.bounds(chunk)
            _log.warning(
                "dlnsim: %s: chunk %d (members %d-%d) is damaged (%s); recomputing it from its "
                "seeds",
                self.path, chunk, lo, hi - 1, why,
            )  # fmt: skip
            self.root["chunk_done"][chunk] = 0
            self.repaired.append(chunk)

    def final_check(self, rerun: Callable[[int], dict[str, Any]]) -> bool:
        """Verify every chunk once all are written; recompute with ``rerun`` (in-process) those
        that do not verify.

        Parameters
        ----------
        rerun : callable
            ``rerun(chunk)`` -> the chunk's ``run_chunk`` result.

        Returns
        -------
        bool
            True if any chunk was rewritten.

        Raises
        ------
        StoreError
            If rewriting does not help.
        """
        plan, rewrote = self.plan, False
        for _attempt in range(2):
            done, unreadable = _store.flagged_chunks(self.root, plan.n_chunks)
            damage = {c: "not flagged done" for c in range(plan.n_chunks) if c not in done}
            damage.update(unreadable)
            damage.update(_store.verify_chunks(self.root, sorted(done)))
            if not damage:
                return rewrote
            self._unflag(damage)
            for chunk in sorted(damage):
                self.write(chunk, rerun(chunk))
            rewrote = True
        damage = _store.verify_chunks(self.root, range(plan.n_chunks))
        if damage:
            raise _store.StoreError(
                f"bad store={str(self.path)!r}: chunks {sorted(damage)} still differ from their "
                "checksums after being rewritten; the storage does not keep what is written to it"
            )
        return rewrote

    def _create(self, schema: Mapping[str, Variable], target: Path) -> None:
        import dask.array as da

        plan = self.plan
        sizes = {**plan.sizes(), "chunk_array": len(self.plan.chunk_arrays()), "sha256_byte": 32}
        data, encoding = {}, {}
        for name, var in {**schema, **plan.store_variables()}.items():
            shape = tuple(sizes[d] for d in var.dims)
            # one Zarr chunk per work chunk: along ``member`` and ``chunk``
            chunks = tuple(_chunk_length(d, sizes[d], plan.chunk_size) for d in var.dims)
            if name == plan.layout.start:
                values: Any = plan.starts
            elif isinstance(var.fill, float) and math.isnan(var.fill):
                values = da.full(shape, np.nan, dtype=var.dtype, chunks=chunks)  # never written
            else:
                values = np.full(shape, var.fill, dtype=var.dtype)
            data[name] = (var.dims, values, var.attrs)
            encoding[name] = {"chunks": chunks}
        attrs = plan.dataset_attrs({"complete": 0, "n_failed": -1, "failures": "unknown"})
        ds = xr.Dataset(data, coords=plan.store_coords(), attrs=attrs)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.to_zarr(target, mode="w", compute=False, consolidated=False, encoding=encoding)

    def done(self) -> set[int]:
        """The chunks flagged done (not verified).

        Returns
        -------
        set of int
            Chunk indices.
        """
        return {int(c) for c in np.flatnonzero(self.root["chunk_done"][:] == 1)}

    def write(self, chunk: int, result: Mapping[str, Any]) -> None:
        """Write a finished chunk, its checksums, then its ``chunk_done`` flag.

        Parameters
        ----------
        chunk : int
            Chunk index.
        result : Mapping
            The ``run_chunk`` result.
        """
        lo, hi = self.plan.bounds(chunk)
        fields = member_fields(result)
        digests = []
        for name in self.names:
            array = self.root[name]
            if name.endswith("_partial"):  # the whole row: unused slots NaN
                nodes = result["nodes"][name[: -len("_partial")]]
                values = np.full(array.shape[1:], np.nan)
                values[: len(nodes)] = np.stack([np.stack(stats) for _, _, stats in nodes])
            else:
                values = np.asarray(fields[name], dtype=array.dtype)
            array[_store.chunk_region(name, chunk, lo, hi)] = values
            digests.append(np.frombuffer(_store.digest(name, values), dtype=np.uint8))
        self.root["chunk_sha256"][chunk] = np.stack(digests)  # then the flag: the chunk counts
        self.root["chunk_done"][chunk] = 1  # only once its data and checksums are on disk

    def loader(self, name: str) -> Callable[[int], list[Node]]:
        """Reads a done chunk's stored tree nodes of reduction ``name``.

        Parameters
        ----------
        name : str
            Reduction name.

        Returns
        -------
        callable
            ``load(chunk)`` -> list of nodes.
        """

        def load(chunk: int) -> list[Node]:
            blocks = dyadic_blocks(*self.plan.bounds(chunk))
            stored = self.root[f"{name}_partial"][chunk, : len(blocks)]
            return [(lv, ix, tuple(stored[k])) for k, (lv, ix) in enumerate(blocks)]

        return load

    def finish(self, reduced: Mapping[str, tuple[np.ndarray, ...]], attrs: dict) -> None:
        """Write the reductions, then their checksum with ``attrs`` (``complete = 1``); the
        partials stay: they let a later ``--resume`` repair the reductions without rerunning
        the members.

        Parameters
        ----------
        reduced : Mapping
            Reduction name -> ``(mean, var, count)``.
        attrs : dict
            The final attributes.
        """
        written = []
        for name, values in reduced.items():
            for stat, value in zip(("mean", "var", "count"), values, strict=True):
                array = self.root[f"{name}_{stat}"]
                value = np.asarray(value, dtype=array.dtype)
                array[...] = value
                written.append((f"{name}_{stat}", value))
        self.root.attrs.update({**attrs, "reductions_sha256": _store.reductions_digest(written)})

    def failures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``failed``, ``failed_time``, ``last_finite`` of all members, read from the store.

        Returns
        -------
        tuple of numpy.ndarray
            The three arrays.
        """
        return (
            self.root["failed"][:],
            self.root["failed_time"][:],
            self.root["last_finite"][:],
        )

    def dataset(self) -> xr.Dataset:
        """The result, opened lazily from the store (without the bookkeeping variables);
        ``repaired_chunks`` (not stored) lists the damaged chunks this run recomputed.

        Returns
        -------
        xarray.Dataset
            Lazy (dask) variables.
        """
        ds = xr.open_zarr(self.path, consolidated=False)
        ds = ds[[name for name in self.schema if name in ds]]
        ds.attrs["repaired_chunks"] = ", ".join(map(str, sorted(set(self.repaired)))) or "none"
        return ds


def _chunk_length(dim: str, size: int, chunk_size: int) -> int:
    return chunk_size if dim == "member" else 1 if dim == "chunk" else size


def check_resume(path: Path, plan: Plan) -> None:
    """ValueError naming the first parameter of ``plan`` that the store at ``path`` differs in.

    Parameters
    ----------
    path : pathlib.Path
        The existing store.
    plan : Plan
        The run (with ``attrs``).

    Raises
    ------
    ValueError
        ``bad <name>=...`` for the first differing parameter, or a store that is not a dlnsim
        ensemble store of format ``STORE_FORMAT``.
    """
    if not path.is_dir():
        raise fail("store", str(path), "is not a directory (not a dlnsim ensemble store)")
    root = _store.open_root(path)  # attributes only: the arrays are verified later
    attrs = dict(root.attrs)
    kind = plan.attrs["kind"]
    if attrs.get("kind") != kind or "chunk_done" not in root:
        found = f" (it holds a {attrs['kind']})" if attrs.get("kind") in _store.KINDS else ""
        raise fail("store", str(path), f"is not a dlnsim {kind} store{found}")
    if attrs.get("store_format") != STORE_FORMAT:
        raise fail(
            "store",
            str(path),
            f"has layout {attrs.get('store_format')}, not {STORE_FORMAT} (written by another "
            "dlnsim version, without checksums): rerun with --overwrite",
        )
    if attrs.get("noise_scheme") != plan.attrs["noise_scheme"]:
        raise fail(
            "store",
            str(path),
            f"was written with the noise scheme {attrs.get('noise_scheme', 'numpy PCG64')!r}, "
            f"not {plan.attrs['noise_scheme']!r}: its members would not continue on the same "
            "noise (rerun with --overwrite)",
        )
    describe = plan.layout.describe(plan.model)
    keys = ["system", *describe, "rescaled_time", "seed", "dt", "temperature"]
    keys += ["members", "chunk_size", "reductions", "save_members", "metropolis"]
    for key in keys:
        if attrs.get(key) != plan.attrs.get(key):
            raise fail(
                key, plan.attrs.get(key), f"does not match {attrs.get(key)!r} stored in {path}"
            )
    # compared with the recorded digests, not the stored arrays (which may be damaged)
    if attrs.get("time_sha256") != plan.attrs["time_sha256"]:
        raise fail("times", plan.times.size, f"do not match the times stored in {path}")
    start = plan.layout.start
    if attrs.get(f"{start}_sha256") != plan.attrs[f"{start}_sha256"]:
        raise fail(start, plan.starts.shape, f"does not match {start} stored in {path}")


def stored_value(path: Path, key: str) -> object:
    """The attribute ``key`` of the store at ``path``; None if it cannot be read.

    Parameters
    ----------
    path : pathlib.Path
        The store.
    key : str
        Attribute name.

    Returns
    -------
    object
        The value, or None.
    """
    with contextlib.suppress(Exception):
        return _store.open_root(path).attrs.get(key)
    return None
