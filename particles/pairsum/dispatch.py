r"""Which kernel computes which member, the thread policy, and the public entry points.

Every entry point returns, for each member (row) of a batch of positions of shape ``(..., d)``,

    F_i = sum_{j != i} psi_N'(rho_i - rho_j),     psi_N'(x) = coth x - coth(x/N)/N,

(``psi_inf'(x) = coth x - 1/x``; ``N = 1`` gives 0), so that ``dS_N/drho_i = a + F_i / 2``
(theory.md section 2).  ``pair_force`` takes ``rho = log sigma``; ``pair_force_u`` takes the flat
coordinates ``u = sigma^{1/N}`` of the Langevin engine (finite ``N``), i.e. ``rho = N log u``.
``entropy_gradient_rho`` and ``entropy_gradient_rho_at_u`` return ``dS_N/drho`` itself.

The choice per member (``_run``, ``_member``; the code is reported by ``return_plan=True``, see
``KERNEL_NAMES``):

1. ``d < 2`` or ``N = 1``: zero.
2. ``d < SORT_WIDTH`` and ``2 <= N <= SMALL_DEPTH`` (and not the fast summation): the lanes
   kernels (``particles.pairsum.lanes``), ``LANES`` members at a time; from ``u`` the rational
   form (no logarithm), from ``rho`` the chain form.  Members they cannot take go on to 3.
3. per member: from ``u``, ``rho' = N log(u/c)`` about the member's centre ``c`` (as
   ``N log1p((u - c)/c)`` near ``c``, so that close particles keep their exact difference;
   ``u <= 0`` or non-finite gives NaN forces); non-finite ``rho``: the scalar per-pair kernel;
   ``method="fast"``, or ``"auto"`` from ``d >= CROSSOVER_WIDTH``: the Chebyshev summation
   (``particles.pairsum.chebyshev``) unless its rank would exceed the cap; then the exact
   kernels (``particles.pairsum.exact``): branch-free below ``SORT_WIDTH``, sorted from it, the
   scalar per-pair kernel for a spread above ``SPREAD_MAX``.

Accuracy (tests/test_kernels.py, against the numpy reference ``particles.entropy``): relative
force error ``max_i |F_i - F_i^ref| / max_j |F_j^ref|`` below 2e-14 on random, near-coincident
(pairs at 0, 1e-14, 1e-10, 1e-6, 1e-3), fully clustered and widely spread (+-300) members; the
fast summation within ``tol`` (default ``DEFAULT_TOL``).

Threads.  ``threads`` (default ``default_threads()``: 1 inside a worker process or a non-main
thread, else ``numba.get_num_threads()``) above 1 selects a ``parallel=True`` driver with
``prange`` over chunks of members.  A member is always computed by the same code, and every choice
(layout, fallback, rank) depends only on that member's data, so results are bitwise independent
of the batch composition, of the chunking and of ``threads``.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import threading

import numba
import numpy as np
from numba import prange

from ..validation import check_depth, check_positive, fail
from .chebyshev import chebyshev_member, fast_rank_cap
from .coefficients import N_LARGE, N_NEAR, large_coefficients, linear_coefficient, near_coefficients
from .exact import SORT_WIDTH, argsort_adaptive, generic_member, kernel_branchless, kernel_sorted
from .lanes import FORM_CHAIN, FORM_RATIONAL, lanes_batch_parallel, lanes_batch_serial
from .pairs import FAM_LARGE, FAM_SMALL, family, prep_rho
from .portable import LOG1P_HI, LOG1P_LO, TINY, log1p_core, portable_log, portable_vlog

__all__ = [
    "CROSSOVER_WIDTH",
    "DEFAULT_TOL",
    "KERNEL_NAMES",
    "default_threads",
    "entropy_gradient_rho",
    "entropy_gradient_rho_at_u",
    "entropy_gradient_rho_at_u_into",
    "pair_force",
    "pair_force_u",
    "pair_force_u_rows",
    "row_kernel_args",
]

DEFAULT_TOL = 1e-12
# Fast summation is tried from this width on (method="auto").  Measured with
# benchmarks/bench_kernels.py (one thread, N = 10, 8 rows rho ~ normal(0, 1), default tol, rank
# 37-40), exact vs fast per member: d = 256: 0.053 vs 0.062 ms; d = 320: 0.074 vs 0.066 ms;
# d = 384: 0.101 vs 0.073 ms; d = 512: 0.154 vs 0.067 ms (benchmarks/results/kernels.md).  Wider
# spreads need larger ranks; the per-member cost model of chebyshev.fast_rank_cap then keeps the
# exact kernel.
CROSSOVER_WIDTH = 320

# kernel codes reported by ``return_plan=True``
KERNEL_NAMES = {
    0: "zero",  # d < 2 or N = 1
    1: "branchless",  # branch-free pass over j > i (members vectorized in blocks: N <= 16)
    2: "sorted",  # sorted rows, near and far runs
    3: "rational-u",  # pair_force_u, N <= SMALL_DEPTH, branch-free rational form in u
    4: "per-pair-exp",  # spread > SPREAD_MAX or non-finite input: exp per pair
    5: "chebyshev",  # fast summation
}
_K_ZERO, _K_BRANCHLESS, _K_SORTED, _K_RATIONAL, _K_GENERIC, _K_FAST = range(6)
_ENTRY_RHO, _ENTRY_U = 0, 1
_METHOD_EXACT, _METHOD_FAST, _METHOD_AUTO = 0, 1, 2
_METHODS = {"exact": _METHOD_EXACT, "fast": _METHOD_FAST, "auto": _METHOD_AUTO}
_SMALL_WORK = 40_000  # members * d^2 below which threads are not worth starting


# ---------------------------------------------------------------------------- one member
@numba.njit(cache=True, error_model="numpy")
def _rho_from_u(row, fn, x, y, dy, kbuf):
    """``x = rho' = N log(u/c)`` about the centre ``c = sqrt(u_min u_max)``, as
    ``N log1p((u - c)/c)`` near ``c`` (exact ``u - c``), with the hand-written logarithms (the
    same bits on every CPU); False (``x`` not written) unless every ``u`` is positive and
    finite."""
    d = row.shape[0]
    ulo = row[0]
    uhi = row[0]
    for i in range(d):
        ui = row[i]
        if not (ui > 0.0 and ui < np.inf):
            return False
        ulo = min(ulo, ui)
        uhi = max(uhi, ui)
    c = math.sqrt(ulo) * math.sqrt(uhi)
    for i in range(d):
        y[i] = row[i] / c
        dy[i] = (row[i] - c) / c
    if ulo / c >= TINY:
        portable_vlog(y, x, kbuf)
    else:  # a subnormal ratio (u spread over ~600 decades): the scalar log takes it
        for i in range(d):
            x[i] = portable_log(y[i])
    for i in range(d):
        qi = dy[i]
        near = qi >= LOG1P_LO and qi <= LOG1P_HI
        x[i] = fn * (log1p_core(qi) if near else x[i])
    return True


@numba.njit(cache=True, error_model="numpy")
def _member(row, out, entry, n_int, fam, cn, cl, method, tol, fs, ks):
    """Forces of one member into ``out``; returns (kernel code, rank).  ``fs``, ``ks``: float
    and int scratch of shapes ``(11, d)`` and ``(2, d)``."""
    d = row.shape[0]
    if d < 2 or n_int == 1:
        for i in range(d):
            out[i] = 0.0
        return _K_ZERO, 0
    fn = np.inf if n_int == 0 else float(n_int)
    inv_n = 0.0 if n_int == 0 else 1.0 / n_int
    xs = fs[0]
    w = fs[1]
    iw = fs[2]
    v = fs[3]
    iv = fs[4]
    os = fs[5]
    y = fs[6]
    dy = fs[7]
    x = fs[8]
    g0 = fs[9]
    g1 = fs[10]
    idx = ks[0]
    kbuf = ks[1]
    if entry == _ENTRY_U:
        if not _rho_from_u(row, fn, x, y, dy, kbuf):  # NaN forces, like a NaN rho
            for k in range(d):
                out[k] = np.nan
            return _K_GENERIC, 0
    else:
        for i in range(d):
            x[i] = row[i]
    for i in range(d):
        if not (x[i] - x[i] == 0.0):
            generic_member(x, inv_n, out)
            return _K_GENERIC, 0
    if method == _METHOD_FAST or (method == _METHOD_AUTO and d >= CROSSOVER_WIDTH):
        rmax = fast_rank_cap(d, method == _METHOD_AUTO)
        rank = chebyshev_member(x, inv_n, tol, rmax, out, y, w, iw)
        if rank > 0:
            return _K_FAST, rank
    if d < SORT_WIDTH:
        if not prep_rho(x, n_int, fam, w, iw, v, iv, y, dy, kbuf):
            generic_member(x, inv_n, out)
            return _K_GENERIC, 0
        if fam == FAM_SMALL:
            kernel_branchless(x, w, iw, v, iv, cn, cl, (0,), fn, out, g0, g1)
        elif fam == FAM_LARGE:
            kernel_branchless(x, w, iw, v, iv, cn, cl, (0, 0), fn, out, g0, g1)
        else:
            kernel_branchless(x, w, iw, v, iv, cn, cl, (0, 0, 0), fn, out, g0, g1)
        return _K_BRANCHLESS, 0
    argsort_adaptive(x, idx)
    for i in range(d):
        xs[i] = x[idx[i]]
    if not prep_rho(xs, n_int, fam, w, iw, v, iv, y, dy, kbuf):
        generic_member(x, inv_n, out)
        return _K_GENERIC, 0
    if fam == FAM_SMALL:
        kernel_sorted(xs, w, iw, v, iv, cn, cl, (0,), fn, os, g0)
    elif fam == FAM_LARGE:
        kernel_sorted(xs, w, iw, v, iv, cn, cl, (0, 0), fn, os, g0)
    else:
        kernel_sorted(xs, w, iw, v, iv, cn, cl, (0, 0, 0), fn, os, g0)
    for i in range(d):
        out[idx[i]] = os[i]
    return _K_SORTED, 0


@numba.njit(cache=True, error_model="numpy")
def _batch_serial(rows, out, codes, ranks, entry, n_int, fam, cn, cl, method, tol):
    d = rows.shape[1]
    fs = np.empty((11, d))
    ks = np.empty((2, d), dtype=np.int64)
    for b in range(rows.shape[0]):
        code, rank = _member(rows[b], out[b], entry, n_int, fam, cn, cl, method, tol, fs, ks)
        codes[b] = code
        ranks[b] = rank


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _batch_parallel(rows, out, codes, ranks, entry, n_int, fam, cn, cl, method, tol, nchunk):
    m, d = rows.shape
    for c in prange(nchunk):
        fs = np.empty((11, d))
        ks = np.empty((2, d), dtype=np.int64)
        for b in range((c * m) // nchunk, ((c + 1) * m) // nchunk):
            code, rank = _member(rows[b], out[b], entry, n_int, fam, cn, cl, method, tol, fs, ks)
            codes[b] = code
            ranks[b] = rank


@numba.njit(cache=True, error_model="numpy")
def pair_force_u_rows(rows, out, codes, ranks, n_int, fam, cn, cl, nt, lanes, fs, ks):
    """``pair_force_u(rows)`` for compiled callers (``method="auto"``, ``DEFAULT_TOL``): the
    forces of every row of ``rows`` (C-contiguous ``(b, d)``, ``u = sigma^{1/N}``) into ``out``,
    each member by the same kernel ``_run`` would choose for it (so the same bits), serially.

    ``n_int, fam, cn, cl, nt, lanes`` are ``row_kernel_args(depth, d)``; ``codes``, ``ranks``
    int64 ``(b,)`` outputs (the plan); ``fs``, ``ks`` float and int64 scratch of shapes
    ``(11, d)`` and ``(2, d)``."""
    b = rows.shape[0]
    if lanes:  # the small-width kernels; the members they cannot take go to _member
        lanes_batch_serial(FORM_RATIONAL, rows, out, codes, _K_RATIONAL, nt, cn)
        for r in range(b):
            if codes[r] < 0:
                codes[r], ranks[r] = _member(
                    rows[r], out[r], _ENTRY_U, n_int, fam, cn, cl, _METHOD_AUTO, DEFAULT_TOL,
                    fs, ks,
                )  # fmt: skip
            else:
                ranks[r] = 0
        return
    for r in range(b):
        codes[r], ranks[r] = _member(
            rows[r], out[r], _ENTRY_U, n_int, fam, cn, cl, _METHOD_AUTO, DEFAULT_TOL, fs, ks
        )


def row_kernel_args(depth: int, width: int) -> tuple:
    """The kernel parameters of ``pair_force_u_rows`` for a finite depth ``N`` and width ``d``:
    ``(n_int, fam, cn, cl, nt, lanes)``, with ``lanes`` True where ``_run`` would use the
    small-width kernels (``N <= SMALL_DEPTH``, ``2 <= d < SORT_WIDTH``) and ``nt`` the tuple
    ``(0,) * N`` that selects them at compile time.

    Parameters
    ----------
    depth : int
        ``N``, a finite integer >= 1 (not checked).
    width : int
        ``d >= 1``.

    Returns
    -------
    tuple
        ``(n_int, fam, cn, cl, nt, lanes)``.
    """
    n_int = int(depth)
    fam = family(depth)
    cn = near_coefficients(depth) if n_int != 1 else (0.0,) * N_NEAR
    cl = large_coefficients(depth) if n_int != 1 else (0.0,) * N_LARGE
    lanes = fam == FAM_SMALL and n_int >= 2 and 2 <= width < min(SORT_WIDTH, CROSSOVER_WIDTH)
    nt = (0,) * n_int if lanes else (0,)
    return n_int, fam, cn, cl, nt, lanes


# ---------------------------------------------------------------------------- Python API
def default_threads() -> int:
    """Threads used when ``threads=None``: 1 inside a worker process (``multiprocessing`` child,
    e.g. a dask/distributed or ``ProcessPoolExecutor`` worker) or in a non-main thread (thread
    pools; the OpenMP/workqueue layers are not meant for concurrent launches), otherwise
    ``numba.get_num_threads()`` (all cores unless lowered by ``numba.set_num_threads`` or
    ``NUMBA_NUM_THREADS``).

    Returns
    -------
    int
        The thread count, >= 1.
    """
    if multiprocessing.parent_process() is not None:
        return 1
    if threading.current_thread() is not threading.main_thread():
        return 1
    return int(numba.get_num_threads())


def _check_threads(threads: object) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise fail("threads", threads, "must be None or an integer >= 1")
    return min(int(threads), int(numba.config.NUMBA_NUM_THREADS))


def _check_method(method: object) -> int:
    if not isinstance(method, str) or method not in _METHODS:
        raise fail("method", method, "must be one of auto, exact, fast")
    return _METHODS[method]


def _check_tol(tol: object) -> float:
    value = check_positive(tol, "tol")
    if value >= 1.0:
        raise fail("tol", tol, "must be < 1 (a relative force error)")
    return value


def _as_rows(arr: object, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, arr, "must be an array of real numbers") from None
    if a.ndim == 0:
        raise fail(name, arr, "must have at least one axis (..., d)")
    shape = a.shape
    rows = np.ascontiguousarray(a.reshape(-1, shape[-1]) if a.size else a.reshape(0, shape[-1]))
    if not rows.flags.writeable:  # a read-only array would be a new numba type (a recompile)
        rows = rows.copy()
    return rows, shape


def _run(rows, entry, depth, method, tol, threads, out=None):
    m, d = rows.shape
    out = np.empty_like(rows) if out is None else out
    codes = np.zeros(m, dtype=np.int64)
    ranks = np.zeros(m, dtype=np.int64)
    if m == 0 or d == 0:
        return out, codes, ranks
    n_int = 0 if depth == math.inf else int(depth)
    fam = family(depth)
    cn = near_coefficients(depth) if n_int != 1 else (0.0,) * N_NEAR
    cl = large_coefficients(depth) if n_int != 1 else (0.0,) * N_LARGE
    parallel = threads > 1 and m > 1 and m * d * d >= _SMALL_WORK
    todo = rows
    if (
        fam == FAM_SMALL
        and n_int >= 2
        and 2 <= d < SORT_WIDTH
        and method != _METHOD_FAST
        and not (method == _METHOD_AUTO and d >= CROSSOVER_WIDTH)
    ):
        # N as a type (tuple length): polynomials and powers of s unroll at compile time
        nt = (0,) * n_int
        form = FORM_RATIONAL if entry == _ENTRY_U else FORM_CHAIN
        code = _K_RATIONAL if entry == _ENTRY_U else _K_BRANCHLESS
        args = (form, rows, out, codes, code, nt, cn)
        _launch(lanes_batch_serial, lanes_batch_parallel, args, m, threads if parallel else 1)
        rest = np.flatnonzero(codes < 0)  # members these kernels cannot take
        if rest.size == 0:
            return out, codes, ranks
        todo = np.ascontiguousarray(rows[rest])
    sub_out = np.empty_like(todo) if todo is not rows else out
    sub_codes = np.zeros(todo.shape[0], dtype=np.int64) if todo is not rows else codes
    sub_ranks = np.zeros(todo.shape[0], dtype=np.int64) if todo is not rows else ranks
    args = (todo, sub_out, sub_codes, sub_ranks, entry, n_int, fam, cn, cl, method, tol)
    _launch(_batch_serial, _batch_parallel, args, todo.shape[0], threads if parallel else 1)
    if todo is not rows:
        out[rest] = sub_out
        codes[rest] = sub_codes
        ranks[rest] = sub_ranks
    return out, codes, ranks


def _launch(serial, parallel, args, m, threads):
    """Run ``serial(*args)``, or ``parallel(*args, nchunk)`` on ``threads`` threads."""
    if threads <= 1 or m < 2:
        serial(*args)
        return
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        parallel(*args, min(m, 4 * threads))
    finally:
        numba.set_num_threads(old)


def _plan(codes: np.ndarray, ranks: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    lead = shape[:-1]
    return {"kernel": codes.reshape(lead), "rank": ranks.reshape(lead)}


def pair_force(
    rho: np.ndarray,
    depth: int | float,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
    return_plan: bool = False,
):
    """``F_i = sum_{j != i} psi_N'(rho_i - rho_j)`` for ``rho`` of shape ``(..., d)`` (compiled).

    ``method``: ``"exact"`` (rounding-level accuracy, every width), ``"fast"`` (Chebyshev
    summation with relative force error ``<= tol``, ``max_i |F_i - F_i^exact| <= tol max_i |F_i|``;
    members whose rank would exceed ``d/4`` use the exact kernel), ``"auto"`` (``"exact"`` below
    ``CROSSOVER_WIDTH``, above it ``"fast"`` when the cost model says it is cheaper).
    ``threads``: see ``default_threads``.  ``return_plan=True`` also returns
    ``{"kernel": codes, "rank": ranks}`` per member (codes in ``KERNEL_NAMES``).

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values ``rho``, float, shape ``(..., d)`` (each leading index a member).
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"auto", "exact", "fast"}, default "auto"
        The kernel choice above.
    tol : float, default DEFAULT_TOL
        Relative force error of the fast summation, in ``(0, 1)``.
    threads : int or None, default None
        Thread count >= 1 (capped at ``NUMBA_NUM_THREADS``); None for ``default_threads()``.
    return_plan : bool, default False
        Also return the per-member kernel plan.

    Returns
    -------
    numpy.ndarray or tuple of (numpy.ndarray, dict)
        The forces ``F``, float64, shape ``(..., d)``; with ``return_plan=True`` the pair
        ``(F, {"kernel": codes, "rank": ranks})``, both int arrays of shape ``(...)``.

    Raises
    ------
    ValueError
        ``bad depth=...``, ``bad method=...``, ``bad tol=...``, ``bad threads=...``, or
        ``bad rho=...`` (not an array of real numbers, or no axis).
    """
    n = check_depth(depth)
    meth = _check_method(method)
    tol = _check_tol(tol)
    nthreads = _check_threads(threads)
    rows, shape = _as_rows(rho, "rho")
    out, codes, ranks = _run(rows, _ENTRY_RHO, n, meth, tol, nthreads)
    out = out.reshape(shape)
    return (out, _plan(codes, ranks, shape)) if return_plan else out


def pair_force_u(
    u: np.ndarray,
    depth: int,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
    return_plan: bool = False,
):
    """``F_i = sum_{j != i} psi_N'(rho_i - rho_j)`` at ``rho = N log u`` (``u = sigma^{1/N}``).

    Finite ``N`` only (for ``N = inf`` use ``pair_force`` in ``rho``).  ``u`` of shape ``(..., d)``
    must be positive and finite; a member with another value gets NaN forces.  No logarithm is
    taken for ``2 <= N <= SMALL_DEPTH`` and ``d < SORT_WIDTH`` (rational form); otherwise
    ``rho' = N log(u/c)`` about the member's centre ``c`` (as ``N log1p((u - c)/c)`` near ``c``,
    so that differences of close particles are accurate to rounding) feeds the ``rho`` kernels.
    The other arguments are those of ``pair_force``.

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, positive finite floats, shape ``(..., d)``.
    depth : int
        ``N``, a finite integer >= 1.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.
    return_plan : bool, default False
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray or tuple of (numpy.ndarray, dict)
        The forces ``F`` (in ``rho``), float64, shape ``(..., d)``; with ``return_plan=True``
        also the plan, as in ``pair_force``.

    Raises
    ------
    ValueError
        ``bad depth=...`` (also for ``N = inf``), ``bad method=...``, ``bad tol=...``,
        ``bad threads=...``, or ``bad u=...`` (not an array of real numbers, or no axis).
    """
    n = check_depth(depth)
    if n == math.inf:
        raise fail("depth", depth, "u = sigma^(1/N) needs a finite depth; use pair_force(rho)")
    meth = _check_method(method)
    tol = _check_tol(tol)
    nthreads = _check_threads(threads)
    rows, shape = _as_rows(u, "u")
    out, codes, ranks = _run(rows, _ENTRY_U, n, meth, tol, nthreads)
    out = out.reshape(shape)
    return (out, _plan(codes, ranks, shape)) if return_plan else out


def entropy_gradient_rho(
    rho: np.ndarray,
    depth: int | float,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
) -> np.ndarray:
    """``dS_N/drho_i = 1/2 (1 - 1/N)(d - 1) + 1/2 F_i`` from ``rho`` (compiled ``pair_force``).

    The gradient of the entropy in the log coordinates ``rho = log sigma``: the same quantity as
    the numpy reference ``particles.entropy.entropy_gradient``, with the kernel options.

    Parameters
    ----------
    rho : numpy.ndarray
        Log singular values, float, shape ``(..., d)``.
    depth : int or float
        ``N``, an integer >= 1 or ``math.inf``.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray
        ``dS_N/drho``, float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        As in ``pair_force`` (``bad depth=...``, ``bad method=...``, ``bad tol=...``,
        ``bad threads=...``, ``bad rho=...``).
    """
    f = pair_force(rho, depth, method=method, tol=tol, threads=threads)
    return linear_coefficient(f.shape[-1], check_depth(depth)) + 0.5 * f


def entropy_gradient_rho_at_u_into(
    u: np.ndarray, depth: int, threads: int, out: np.ndarray
) -> np.ndarray:
    """``entropy_gradient_rho_at_u`` without argument checks or allocations, into ``out``.

    For engines that validated once: ``u`` and ``out`` C-contiguous writeable float64 ``(m, d)``
    arrays, ``depth`` a finite integer, ``threads`` an int (``default_threads()``);
    ``method="auto"`` at the default tolerance.  Writes ``dS_N/drho`` (the gradient in ``rho``,
    not in ``u``) into ``out`` and returns it (the same values as ``entropy_gradient_rho_at_u``).

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, C-contiguous float64, shape ``(m, d)``.
    depth : int
        ``N``, a finite integer >= 1.
    threads : int
        Thread count >= 1.
    out : numpy.ndarray
        C-contiguous writeable float64 array of shape ``(m, d)``, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``, holding ``dS_N/drho``, shape ``(m, d)``.
    """
    _run(u, _ENTRY_U, depth, _METHOD_AUTO, DEFAULT_TOL, threads, out)
    np.multiply(out, 0.5, out=out)
    return np.add(out, linear_coefficient(u.shape[-1], depth), out=out)


def entropy_gradient_rho_at_u(
    u: np.ndarray,
    depth: int,
    *,
    method: str = "auto",
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
) -> np.ndarray:
    """``dS_N/drho_i`` (the gradient in ``rho``) at ``rho = N log u``, from ``u = sigma^{1/N}``.

    Finite ``N``; the gradient in ``u`` is ``dS/du_i = (N / u_i) dS/drho_i``.

    Parameters
    ----------
    u : numpy.ndarray
        ``u = sigma^{1/N}``, positive finite floats, shape ``(..., d)``.
    depth : int
        ``N``, a finite integer >= 1.
    method : {"auto", "exact", "fast"}, default "auto"
        As in ``pair_force``.
    tol : float, default DEFAULT_TOL
        As in ``pair_force``.
    threads : int or None, default None
        As in ``pair_force``.

    Returns
    -------
    numpy.ndarray
        ``dS_N/drho`` (not ``dS/du``), float64, shape ``(..., d)``.

    Raises
    ------
    ValueError
        As in ``pair_force_u``.
    """
    f = pair_force_u(u, depth, method=method, tol=tol, threads=threads)
    return linear_coefficient(f.shape[-1], check_depth(depth)) + 0.5 * f
