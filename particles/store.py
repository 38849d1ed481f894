"""Integrity of the ensemble's Zarr stores: content checksums, verification, one writer at a time.

Checksums.  When a chunk of members is finished, ``langevin_ensemble`` records the SHA-256 of
the decoded bytes of every array's region of that chunk (``chunk_sha256``, one digest per chunk
and array, in the order of the attribute ``chunk_hash_arrays``) before it flags the chunk done.
The digest is of the data as a reader sees it, independent of the codecs: a deleted chunk file
(read back as the fill value), a truncated or garbled one (undecodable or different bytes) and a
flag set without data all fail the check.  The coordinates and the start (``sigma0``, or the
store's ``start_variable``: ``X0`` of a matrix ensemble, kind in ``KINDS``) are checked against
the digests ``time_sha256`` and ``sigma0_sha256`` (``X0_sha256``) of the run's parameters,
and the finished reductions against ``reductions_sha256``.  ``verify_store`` reports the state
of a store; ``--resume`` and the finishing step of a run recompute every damaged chunk (exact: a
member's noise depends only on its seed) and rewrite damaged coordinates from the parameters.
Damage that cannot be repaired (a missing array, unreadable metadata) raises ``StoreError``.

Lock.  A writer holds an exclusive ``flock`` on the file ``<store>.lock`` beside the store
(holding its pid, host and start time) for the whole run; a second writer fails at once with
``StoreLocked`` naming the holder.  The kernel drops a ``flock`` when its process dies, even on
SIGKILL, so a lock file whose lock nobody holds is stale by construction: the next writer takes it
over and logs who had left it.  (``flock`` is reliable on local file systems and on NFS v4 with
Linux clients; on other network file systems run one writer per store yourself.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import errno
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .validation import fail

__all__ = ["KINDS", "StoreError", "StoreLocked", "verify_store"]

#: The ``kind`` attributes of the ensemble stores (particles; matrices of ``dlnsim.network``).
KINDS = ("langevin_ensemble", "network_langevin_ensemble")

log = logging.getLogger("dlnsim.store")


class StoreError(ValueError):
    """A store that cannot be used or repaired (missing array, unreadable metadata, ...)."""


class StoreLocked(ValueError):
    """Another process is writing the store."""


# ------------------------------------------------------------------ digests
def digest(name: str, values: Any) -> bytes:
    """SHA-256 of ``values`` as a C-contiguous array, prefixed by its name, dtype and shape.

    Parameters
    ----------
    name : str
        The array's name (hashed first).
    values : array_like
        The data.

    Returns
    -------
    bytes
        The 32-byte digest.
    """
    a = np.ascontiguousarray(values)
    h = hashlib.sha256(f"{name}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.digest()


def hex_digest(name: str, values: Any) -> str:
    """``digest`` as a hex string.

    Parameters
    ----------
    name : str
        The array's name.
    values : array_like
        The data.

    Returns
    -------
    str
        64 hex digits.
    """
    return digest(name, values).hex()


def chunk_region(name: str, chunk: int, lo: int, hi: int) -> tuple[Any, ...]:
    """The index of ``chunk`` (members ``lo .. hi-1``) in the array ``name``.

    Parameters
    ----------
    name : str
        The array's name (``*_partial`` arrays are indexed by chunk, others by member).
    chunk : int
        Chunk index.
    lo, hi : int
        The chunk's members ``lo .. hi-1``.

    Returns
    -------
    tuple
        ``(chunk,)`` or ``(slice(lo, hi),)``.
    """
    return (chunk,) if name.endswith("_partial") else (slice(lo, hi),)


def reductions_digest(arrays: Iterable[tuple[str, Any]]) -> str:
    """SHA-256 over the ``digest`` of each named array, in order.

    Parameters
    ----------
    arrays : iterable of (str, array_like)
        Names and data.

    Returns
    -------
    str
        64 hex digits.
    """
    h = hashlib.sha256()
    for name, values in arrays:
        h.update(digest(name, values))
    return h.hexdigest()


# ------------------------------------------------------------------ verification
def _attr_int(attrs: Any, key: str) -> int:
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise StoreError(f"bad store attribute {key}={value!r}: the metadata is damaged")
    return int(value)


def _arrays(attrs: Any) -> list[str]:
    names = attrs.get("chunk_hash_arrays")
    if not isinstance(names, str) or not names:
        raise StoreError(
            f"bad store attribute chunk_hash_arrays={names!r}: the metadata is damaged"
        )
    return names.split(",")


def open_root(path: Path, mode: str = "r") -> Any:
    """The store's root group; ``StoreError`` when its metadata cannot be read.

    Parameters
    ----------
    path : pathlib.Path
        The ``.zarr`` store.
    mode : str, default "r"
        The ``zarr.open_group`` mode.

    Returns
    -------
    zarr.Group
        The root group.

    Raises
    ------
    StoreError
        ``bad store=...`` for unreadable metadata.
    FileNotFoundError, NotADirectoryError, PermissionError
        Passed through.
    """
    import zarr

    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=None)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable metadata
        raise StoreError(
            f"bad store={str(path)!r}: its metadata cannot be read ({type(err).__name__}: {err}); "
            "it cannot be repaired: rerun with --overwrite"
        ) from None


def start_name(attrs: Any) -> str:
    """The name of a store's start variable: ``start_variable`` (matrix stores: ``X0``), else
    ``sigma0``.

    Parameters
    ----------
    attrs : Mapping
        The store's attributes.

    Returns
    -------
    str
        The variable name.
    """
    return str(attrs.get("start_variable", "sigma0"))


def check_structure(root: Any, path: Path, reductions: Iterable[str]) -> None:
    """``StoreError`` unless every array of the layout is present with readable metadata.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    path : pathlib.Path
        The store's path (for messages).
    reductions : iterable of str
        The reduction names whose ``_mean``, ``_var``, ``_count`` arrays must exist.

    Raises
    ------
    StoreError
        ``bad store=...`` (missing or unreadable array, wrong member count) or
        ``bad store attribute ...`` (damaged metadata).
    """
    names = [*_arrays(root.attrs), "chunk_done", "chunk_sha256", start_name(root.attrs), "time"]
    for r in reductions:
        names += [f"{r}_mean", f"{r}_var", f"{r}_count"]
    members = _attr_int(root.attrs, "members")
    for name in names:
        try:
            arr = root[name]
            shape = arr.shape
        except KeyError:
            raise StoreError(
                f"bad store={str(path)!r}: the array {name!r} is missing; it cannot be repaired: "
                "rerun with --overwrite"
            ) from None
        except Exception as err:  # noqa: BLE001 - damaged array metadata
            raise StoreError(
                f"bad store={str(path)!r}: the metadata of {name!r} cannot be read "
                f"({type(err).__name__}); it cannot be repaired: rerun with --overwrite"
            ) from None
        if not name.endswith("_partial") and name in _arrays(root.attrs) and shape[0] != members:
            raise StoreError(
                f"bad store={str(path)!r}: the array {name!r} has shape {shape}, not "
                f"{members} members; it cannot be repaired: rerun with --overwrite"
            )


def flagged_chunks(root: Any, n_chunks: int) -> tuple[set[int], dict[int, str]]:
    """Chunks flagged done, and chunks whose flag cannot be read (with the reason).

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    n_chunks : int
        Number of chunks.

    Returns
    -------
    tuple of (set of int, dict of int to str)
        The done chunks, and the unreadable ones with their reason.
    """
    try:
        flags = np.asarray(root["chunk_done"][:])
        return {int(c) for c in np.flatnonzero(flags == 1)}, {}
    except Exception:  # noqa: BLE001 - read the flags one by one
        pass
    done, bad = set(), {}
    for c in range(n_chunks):
        try:
            if int(root["chunk_done"][c]) == 1:
                done.add(c)
        except Exception as err:  # noqa: BLE001
            bad[c] = f"chunk_done unreadable ({type(err).__name__})"
    return done, bad


def verify_chunks(root: Any, chunks: Iterable[int]) -> dict[int, str]:
    """Chunks whose data differ from their recorded checksums, with the first reason each.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    chunks : iterable of int
        The chunks to check.

    Returns
    -------
    dict of int to str
        The damaged chunks and why (empty when all match).

    Raises
    ------
    StoreError
        ``bad store attribute ...`` for damaged metadata.
    """
    attrs = root.attrs
    names = _arrays(attrs)
    members = _attr_int(attrs, "members")
    size = _attr_int(attrs, "chunk_size")
    arrays = {name: root[name] for name in names}
    record = root["chunk_sha256"]
    damaged: dict[int, str] = {}
    for c in chunks:
        lo, hi = c * size, min((c + 1) * size, members)
        try:
            want = np.asarray(record[c])
        except Exception as err:  # noqa: BLE001
            damaged[c] = f"its checksum record is unreadable ({type(err).__name__})"
            continue
        for k, name in enumerate(names):
            try:
                values = arrays[name][chunk_region(name, c, lo, hi)]
            except Exception as err:  # noqa: BLE001 - undecodable (truncated, garbled) chunk
                damaged[c] = f"{name} is unreadable ({type(err).__name__})"
                break
            if digest(name, values) != bytes(want[k]):
                damaged[c] = f"{name} differs from its checksum"
                break
    return damaged


def verify_layout(root: Any) -> list[str]:
    """Names of the coordinate arrays and ``sigma0`` whose content is not the recorded one.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.

    Returns
    -------
    list of str
        Among ``time``, ``sigma0``, ``member``, ``chunk``, ``particle``; empty when intact.

    Raises
    ------
    StoreError
        ``bad store attribute ...`` for damaged metadata.
    """
    attrs = root.attrs
    members = _attr_int(attrs, "members")
    n_chunks = _attr_int(attrs, "n_chunks")
    bad = []
    start = start_name(attrs)
    for name in ("time", start):
        try:
            ok = hex_digest(name, np.asarray(root[name][...])) == attrs.get(f"{name}_sha256")
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            bad.append(name)
    expected = {"member": np.arange(members), "chunk": np.arange(n_chunks)}
    with contextlib.suppress(Exception):
        expected["particle"] = np.arange(1, root[start].shape[-1] + 1)
    for name, want in expected.items():
        try:
            ok = np.array_equal(np.asarray(root[name][...]), want)
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            bad.append(name)
    return bad


def reduction_arrays(root: Any, reductions: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """The stored ``<r>_mean``, ``<r>_var``, ``<r>_count`` arrays of each reduction ``r``.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    reductions : iterable of str
        Reduction names.

    Returns
    -------
    iterator of (str, numpy.ndarray)
        Names and values, in that order.
    """
    for r in reductions:
        for s in ("mean", "var", "count"):
            yield f"{r}_{s}", np.asarray(root[f"{r}_{s}"][...])


def verify_reductions(root: Any) -> bool:
    """Whether the stored reductions match their recorded ``reductions_sha256``.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.

    Returns
    -------
    bool
        False when they differ or cannot be read.
    """
    reductions = _reductions(root.attrs)
    try:
        return reductions_digest(reduction_arrays(root, reductions)) == root.attrs.get(
            "reductions_sha256"
        )
    except Exception:  # noqa: BLE001 - unreadable
        return False


def _reductions(attrs: Any) -> list[str]:
    value = attrs.get("reductions", "none")
    return [] if value in ("none", "", None) else str(value).split(",")


def verify_store(path: str | os.PathLike) -> dict[str, Any]:
    """Check every finished chunk of an ensemble store against its recorded checksums.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.zarr`` store written by ``langevin_ensemble``.

    Returns
    -------
    dict
        ``state``: ``"complete"`` (finished, everything verifies), ``"partial"`` (some chunks
        not run yet, the finished ones verify), ``"damaged"`` (repairable: ``--resume``
        recomputes the damaged chunks), ``"unrepairable"`` (see ``problems``) or
        ``"unverifiable"`` (written before checksums existed); ``chunks_total``,
        ``chunks_done`` (finished and verified), ``chunks_damaged`` (sorted list), ``damage``
        (chunk -> reason), ``layout_damaged`` (coordinates or ``sigma0`` that differ from the
        run's parameters), ``reductions_ok`` (None until complete), ``problems`` (list of
        str), ``locked_by`` (the lock file's holder, or None).

    Raises
    ------
    ValueError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise fail("path", str(path), "does not exist")
    out: dict[str, Any] = {
        "path": str(path),
        "state": "unrepairable",
        "chunks_total": None,
        "chunks_done": 0,
        "chunks_damaged": [],
        "damage": {},
        "layout_damaged": [],
        "reductions_ok": None,
        "problems": [],
        "locked_by": lock_holder(path),
    }
    try:
        root = open_root(path)
        attrs = root.attrs
        if attrs.get("kind") not in KINDS:
            raise StoreError(f"bad store={str(path)!r}: not a dlnsim langevin_ensemble store")
        if "chunk_sha256" not in root or "chunk_hash_arrays" not in attrs:
            out["state"] = "unverifiable"
            out["problems"].append("written before checksums existed (no chunk_sha256)")
            return out
        n_chunks = _attr_int(attrs, "n_chunks")
        out["chunks_total"] = n_chunks
        check_structure(root, path, _reductions(attrs))
        done, unreadable = flagged_chunks(root, n_chunks)
        damage = {**unreadable, **verify_chunks(root, sorted(done))}
        out["damage"] = dict(sorted(damage.items()))
        out["chunks_damaged"] = sorted(damage)
        out["chunks_done"] = len(done - set(damage))
        out["layout_damaged"] = verify_layout(root)
        complete = int(attrs.get("complete", 0)) == 1
        if complete:
            out["reductions_ok"] = verify_reductions(root) if _reductions(attrs) else True
        if damage or out["layout_damaged"] or out["reductions_ok"] is False:
            out["state"] = "damaged"
        else:
            out["state"] = "complete" if complete else "partial"
    except StoreError as err:
        out["problems"].append(str(err))
    return out


# ------------------------------------------------------------------ lock
def make_parent(path: Path) -> None:
    """Create the folder of ``path``; ``NotADirectoryError`` naming a component that is a file
    (``mkdir`` itself would report a misleading "File exists").

    Parameters
    ----------
    path : pathlib.Path
        A file or store path.

    Raises
    ------
    NotADirectoryError
        When a component of the folder is a file.
    """
    parent = Path(path).parent
    for folder in [*reversed(parent.parents), parent]:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    parent.mkdir(parents=True, exist_ok=True)


def lock_path(path: Path) -> Path:
    """The lock file ``<store>.lock`` of the store ``path``.

    Parameters
    ----------
    path : pathlib.Path
        The store.

    Returns
    -------
    pathlib.Path
        The lock file's path.
    """
    return path.with_name(path.name + ".lock")


def lock_holder(path: Path) -> str | None:
    """Who holds the lock on the store at ``path`` (None if nobody does).

    Parameters
    ----------
    path : pathlib.Path
        The store.

    Returns
    -------
    str or None
        The holder's record (pid, host, start) or ``"another process"``; None if unlocked.
    """
    lock = lock_path(Path(path))
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    return ""


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the store ``path`` for the duration of the block.

    Raises ``StoreLocked`` at once if another process (or another open in this process) holds
    it.  The lock file is removed on exit; a file replaced between open and lock is retried, so
    that two writers can never both hold a lock on different inodes of the same name.

    Parameters
    ----------
    path : pathlib.Path
        The store.

    Returns
    -------
    contextlib.AbstractContextManager
        A context manager (the generator wrapped by ``contextlib.contextmanager``); entering
        it yields None.

    Raises
    ------
    StoreLocked
        ``bad store=...`` when another run holds the lock.
    NotADirectoryError
        From ``make_parent``.
    """
    lock = lock_path(path)
    make_parent(lock)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "another process"
            os.close(fd)
            raise StoreLocked(
                f"bad store={str(path)!r}: another run is writing it ({holder}; lock file "
                f"{lock}); wait for it to finish or stop that process"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: retry
    try:
        previous = _read(fd)
        if previous:
            log.warning(
                "dlnsim: %s: took over a stale lock (%s), whose process has ended", path, previous
            )
        now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
        info = f"pid {os.getpid()} on {platform.node()}, started {now}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


# ------------------------------------------------------------------ atomic replacement
def remove_scratch(path: Path, settle: float = 2.0) -> None:
    """Remove a scratch store left by a failed write, and keep removing it for up to ``settle``
    seconds: zarr's concurrent writes can still be landing after the first one failed (the
    first error ends the call while its sibling writes run on), recreating files behind a
    single ``rmtree``.

    Parameters
    ----------
    path : pathlib.Path
        The scratch store.
    settle : float, default 2.0
        Seconds to keep removing it.
    """
    import time

    deadline = time.monotonic() + settle
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
        if not path.exists():
            time.sleep(0.2)  # a late write would recreate it now
            if not path.exists():
                return


def scratch_path(path: Path) -> Path:
    """A fresh hidden sibling name, with the same suffix, for a file or store being written.

    Parameters
    ----------
    path : pathlib.Path
        The target.

    Returns
    -------
    pathlib.Path
        ``.new-<pid>-<random>-<name>`` beside it.
    """
    return path.with_name(f".new-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


def save_atomically(ds: Any, path: str | os.PathLike) -> Path:
    """``datasets.save`` into a scratch sibling, then swapped in: a failure (full disk, ...)
    leaves whatever was at ``path`` untouched and no partial file behind.

    Replaces a file for ``.nc`` and a Zarr store for ``.zarr``; refuses (``FileExistsError``)
    to replace anything else, e.g. a directory named ``x.nc`` or a non-Zarr ``x.zarr``.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset.
    path : str or os.PathLike
        A ``.nc`` or ``.zarr`` path.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        ``bad path=...`` for another suffix.
    FileExistsError
        When ``path`` exists and is not a file/store dlnsim may replace.
    OSError
        A write failure, naming ``path``.
    """
    from .datasets import check_path, save

    path = Path(path)
    engine = check_path(path)
    if path.exists() or path.is_symlink():
        zarr_store = path.is_dir() and any(
            (path / name).exists() for name in ("zarr.json", ".zgroup", ".zattrs")
        )
        if (engine == "zarr" and not zarr_store) or (engine != "zarr" and not path.is_file()):
            raise FileExistsError(
                errno.EEXIST, f"exists and is not a {engine} file dlnsim may replace", str(path)
            )
    make_parent(path)
    scratch = scratch_path(path)
    try:
        if engine == "zarr":
            save(ds, scratch)
            swap_in(scratch, path)
        else:  # encoded in memory (as ``save`` does on disk), then written by plain file I/O:
            # h5py left with a file that hit ENOSPC crashes the interpreter when it closes it
            payload = ds.to_netcdf(engine="h5netcdf")
            with open(scratch, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(scratch, path)
    except BaseException as err:
        if scratch.is_dir():
            remove_scratch(scratch)
        else:
            with contextlib.suppress(OSError):
                scratch.unlink()
        if isinstance(err, OSError) and err.errno is not None and err.strerror:
            raise type(err)(err.errno, err.strerror, str(path)) from err  # name the target
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # not supported by this kernel or file system: rename aside instead
    raise OSError(code, os.strerror(code), str(b))


def swap_in(new: Path, path: Path) -> None:
    """Make the store ``new`` appear at ``path`` in one step, then delete what was there.

    The old store (or file) is never deleted while it has the name ``path``: it is first
    exchanged with ``new`` (or renamed aside, where the exchange is not supported) and removed
    under its new name.

    Parameters
    ----------
    new : pathlib.Path
        The new store (or file).
    path : pathlib.Path
        Where it should appear.

    Raises
    ------
    OSError
        When a rename fails.
    """
    if not path.exists() and not path.is_symlink():
        os.rename(new, path)
        return
    if path.is_dir() and not path.is_symlink() and _exchange(new, path):
        old = new
    else:
        old = path.with_name(f".old-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
        os.rename(path, old)
        os.rename(new, path)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            old.unlink()
