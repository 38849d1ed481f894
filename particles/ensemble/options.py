"""The options of ``langevin_ensemble`` grouped by concern, as frozen dataclasses.

``Execution`` (where and how the chunks run), ``Storage`` (the store) and ``Output`` (what is
kept) validate their fields when built, so a bad value fails with ``bad <name>=...`` before
anything runs.  ``langevin_ensemble`` accepts either these objects or today's flat keywords
(``group`` builds the objects from the keywords, and rejects a keyword given together with the
object that holds it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from ..validation import check_bool, check_integer, check_positive, fail
from .executors import ADDRESS, CLUSTER_TIMEOUT, SERIAL
from .plan import REDUCTIONS

__all__ = ["UNSET", "Execution", "Output", "Storage", "check_reductions", "group"]


class _Unset:
    """The default of a flat keyword: "not given" (its group's default applies)."""

    def __repr__(self) -> str:
        return "<default>"


#: The default of ``langevin_ensemble``'s flat keywords.
UNSET: Any = _Unset()


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)  # normalize a field of a frozen dataclass


@dataclass(frozen=True)
class Execution:
    """Where and how the chunks run.

    Parameters
    ----------
    client : distributed.Client or None, default None
        Run on this client's cluster.
    scheduler : str or None, default None
        Else an address (``tcp://host:port``), ``"local"`` (a ``LocalCluster`` for the call)
        or ``"serial"`` (in-process); None: the active client, ``$DASK_SCHEDULER_ADDRESS``,
        else in-process.
    chunk_size : int or None, default None
        Members per task, >= 1; None for automatic.  It changes no value.
    progress : bool or None, default None
        Show a progress bar (None: on a terminal only).
    cluster_timeout : float, default CLUSTER_TIMEOUT
        Seconds, > 0, to connect to a scheduler and that a cluster may have no worker.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid field, or both ``client`` and ``scheduler``.
    """

    client: Any | None = None
    scheduler: str | None = None
    chunk_size: int | None = None
    progress: bool | None = None
    cluster_timeout: float = CLUSTER_TIMEOUT

    def __post_init__(self) -> None:
        if self.chunk_size is not None:
            _set(self, "chunk_size", check_integer(self.chunk_size, "chunk_size", 1))
        if self.client is not None:
            import distributed

            if not isinstance(self.client, distributed.Client):
                raise fail("client", self.client, "must be a distributed.Client")
            if self.scheduler is not None:
                raise fail("scheduler", self.scheduler, "give either client or scheduler, not both")
        _check_scheduler(self.scheduler)
        if self.progress is not None:
            _set(self, "progress", check_bool(self.progress, "progress"))
        timeout = check_positive(self.cluster_timeout, "cluster_timeout")
        _set(self, "cluster_timeout", timeout)


def _check_scheduler(scheduler: object) -> None:
    if scheduler is None:
        return
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise fail("scheduler", scheduler, "must be an address, 'local' or 'serial'")
    if scheduler not in ("local", *SERIAL) and not ADDRESS.match(scheduler.strip()):
        raise fail(
            "scheduler", scheduler, "must be 'local', 'serial' or an address tcp://HOST:PORT"
        )


@dataclass(frozen=True)
class Storage:
    """Where the result is kept.

    Parameters
    ----------
    store : str or os.PathLike or None, default None
        A ``.zarr`` path; None keeps the result in memory.
    resume : bool, default False
        Finish an existing store's undone chunks (a missing store is started afresh).
    overwrite : bool, default False
        Replace an existing store.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid field, or ``resume`` without a store.
    """

    store: str | os.PathLike | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        _set(self, "store", _check_store(self.store))
        _set(self, "resume", check_bool(self.resume, "resume"))
        _set(self, "overwrite", check_bool(self.overwrite, "overwrite"))
        if self.resume and self.store is None:
            raise fail("resume", True, "needs a store to resume from")

    @property
    def path(self) -> Path | None:
        """The store's path (None in memory)."""
        return self.store  # type: ignore[return-value]

    def resuming(self) -> bool:
        """Whether this run finishes an existing store (check under the store's lock).

        Returns
        -------
        bool
            True with ``resume`` and an existing store.

        Raises
        ------
        ValueError
            ``bad store=...`` if the store exists and neither ``resume`` nor ``overwrite``.
        """
        path = self.path
        if path is None or not path.exists():
            return False
        if not self.resume and not self.overwrite:
            why = "exists: pass resume=True to finish it or overwrite=True"
            raise fail("store", str(path), why)
        return self.resume


def _check_store(store: object) -> Path | None:
    if store is None:
        return None
    if not isinstance(store, str | os.PathLike) or not str(store).strip():
        raise fail("store", store, "must be a path ending in .zarr")
    path = Path(store)
    if not path.name.lower().endswith(".zarr"):
        raise fail("store", str(store), "must be a path ending in .zarr")
    return path


@dataclass(frozen=True)
class Output:
    """What the result keeps.

    Parameters
    ----------
    reductions : iterable of str or str, default ()
        Among ``"sigma"``, ``"free_energy"``, ``"spread"`` (or a comma-separated string):
        ensemble mean, sample variance and count over the members that did not fail.
    save_members : bool, default True
        Keep the per-member trajectories ``sigma`` (with ``energy``, ``free_energy``).

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid field, or nothing to keep.
    """

    reductions: Iterable[str] | str = ()
    save_members: bool = True

    def __post_init__(self) -> None:
        _set(self, "reductions", check_reductions(self.reductions))
        _set(self, "save_members", check_bool(self.save_members, "save_members"))
        if not self.save_members and not self.reductions:
            raise fail("save_members", False, "without reductions nothing would be kept")


def check_reductions(reductions: object) -> tuple[str, ...]:
    """The reductions named by ``reductions``, in the order of ``REDUCTIONS``.

    Parameters
    ----------
    reductions : iterable of str, str or None
        Names, or a comma-separated string; None for none.

    Returns
    -------
    tuple of str
        A subset of ``REDUCTIONS``.

    Raises
    ------
    ValueError
        ``bad reductions=...`` for an unknown name or a non-iterable.
    """
    if reductions is None:
        return ()
    items = reductions.split(",") if isinstance(reductions, str) else reductions
    try:
        names = [str(x).strip() if isinstance(x, str) else x for x in items]  # type: ignore[union-attr]
    except TypeError:
        raise fail("reductions", reductions, f"must be a subset of {REDUCTIONS}") from None
    names = [n for n in names if n != ""]
    bad = [n for n in names if n not in REDUCTIONS]
    if bad:
        raise fail("reductions", reductions, f"unknown {bad}; choose from {', '.join(REDUCTIONS)}")
    return tuple(n for n in REDUCTIONS if n in names)


_Group = TypeVar("_Group", Execution, Storage, Output)


def group(kind: type[_Group], given: object, name: str, flat: Mapping[str, Any]) -> _Group:
    """The options object of ``kind``: ``given``, or built from the flat keywords ``flat``.

    Parameters
    ----------
    kind : type
        ``Execution``, ``Storage`` or ``Output``.
    given : object
        The object passed as ``name=`` (None if not).
    name : str
        Its keyword (``execution``, ``storage``, ``output``).
    flat : Mapping
        The flat keywords of ``kind``'s fields; ``UNSET`` where not given.

    Returns
    -------
    Execution, Storage or Output
        The validated options.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid value, a ``given`` of another type, or a flat
        keyword given together with ``given``.
    """
    passed = {k: v for k, v in flat.items() if v is not UNSET}
    if given is None:
        return kind(**passed)
    if not isinstance(given, kind):
        raise fail(name, given, f"must be a {kind.__name__} or None")
    if passed:
        key = next(iter(passed))
        raise fail(key, passed[key], f"give it in {name}={kind.__name__}(...) or alone, not both")
    return given


def field_names(kind: type) -> tuple[str, ...]:
    """The fields of an options class (its flat keywords).

    Parameters
    ----------
    kind : type
        ``Execution``, ``Storage`` or ``Output``.

    Returns
    -------
    tuple of str
        Field names.
    """
    return tuple(f.name for f in fields(kind))
