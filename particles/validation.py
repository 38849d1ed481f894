"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` whose message names the parameter and the offending value,
so that the CLI can print it as one line (``dlnsim: bad width=0: ...``).
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np


def fail(name: str, value: object, why: str) -> ValueError:
    """The one error format of the package: ``bad <name>=<value>: <why>``.

    Parameters
    ----------
    name : str
        The parameter's name.
    value : object
        The offending value (shown with ``repr``).
    why : str
        What is wrong, or what it must be.

    Returns
    -------
    ValueError
        The exception, for the caller to raise (``raise fail(...)``).
    """
    return ValueError(f"bad {name}={value!r}: {why}")


def check_width(width: object, name: str = "width") -> int:
    """``d``: an integer >= 1.

    Parameters
    ----------
    width : object
        The value to check (``bool`` is rejected).
    name : str, default "width"
        The parameter's name, used in the error message.

    Returns
    -------
    int
        ``width``.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if it is not an integer >= 1.
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise fail(name, width, "must be an integer >= 1")
    return int(width)


def check_depth(depth: object, name: str = "depth") -> int | float:
    """``N``: an integer >= 1, or ``math.inf`` (the string 'inf' is accepted too).

    Parameters
    ----------
    depth : object
        An integer >= 1, an integral float, ``math.inf`` or ``"inf"``/``"infinity"``.
    name : str, default "depth"
        The parameter's name, used in the error message.

    Returns
    -------
    int or float
        The depth as an ``int``, or ``math.inf``.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` otherwise.
    """
    if isinstance(depth, str) and depth.strip().lower() in {"inf", "infinity"}:
        return math.inf
    if isinstance(depth, numbers.Real) and not isinstance(depth, bool):
        if depth == math.inf:
            return math.inf
        if isinstance(depth, numbers.Integral) and depth >= 1:
            return int(depth)
        if isinstance(depth, float) and depth.is_integer() and depth >= 1:
            return int(depth)
    raise fail(name, depth, "must be an integer >= 1 or math.inf")


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``).

    Parameters
    ----------
    value : object
        The value to check (``bool`` is rejected).
    name : str
        The parameter's name, used in the error message.
    allow_zero : bool, default False
        Accept 0.

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if it is not a finite real number in range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, value, "must be a real number")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise fail(name, value, "must be finite and " + (">= 0" if allow_zero else "> 0"))
    return v


def check_bool(value: object, name: str) -> bool:
    """``True`` or ``False`` (numpy booleans included).

    Parameters
    ----------
    value : object
        The value to check (``0``/``1`` are rejected).
    name : str
        The parameter's name, used in the error message.

    Returns
    -------
    bool
        ``value`` as a Python bool.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if it is not a boolean.
    """
    if not isinstance(value, bool | np.bool_):
        raise fail(name, value, "must be True or False")
    return bool(value)


def check_integer(value: object, name: str, minimum: int = 1) -> int:
    """An integer ``>= minimum``.

    Parameters
    ----------
    value : object
        The value to check (``bool`` and integral floats are rejected).
    name : str
        The parameter's name, used in the error message.
    minimum : int, default 1
        The smallest accepted value.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if it is not an integer >= minimum.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise fail(name, value, f"must be an integer >= {minimum}")
    return int(value)


def check_singular_values(sigma: object, width: int, name: str = "sigma0") -> np.ndarray:
    """Positive finite singular values with last axis of length ``width`` (float64 copy).

    Parameters
    ----------
    sigma : array_like
        Singular values, shape ``(..., width)`` (any order).
    width : int
        The required length of the last axis.
    name : str, default "sigma0"
        The parameter's name, used in the error message.

    Returns
    -------
    numpy.ndarray
        A float64 copy of ``sigma``.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if ``sigma`` is not numeric, has the wrong last axis,
        or is not positive and finite.
    """
    try:
        arr = np.array(sigma, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, sigma, "must be an array of real numbers") from None
    if arr.ndim == 0 or arr.shape[-1] != width:
        raise fail(name, short_repr(arr), f"last axis must have length width={width}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise fail(name, short_repr(arr), "singular values must be positive and finite")
    return arr


def check_times(times: object, name: str = "times") -> np.ndarray:
    """Save times: a 1-D, finite, non-negative, strictly increasing array.

    Parameters
    ----------
    times : array_like
        The times (a scalar is taken as one time).
    name : str, default "times"
        The parameter's name, used in the error message.

    Returns
    -------
    numpy.ndarray
        The times, float64, 1-D.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if the times are empty, not finite, negative or not
        strictly increasing.
    """
    try:
        t = np.array(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, times, "must be an array of real numbers") from None
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0:
        raise fail(name, short_repr(t), "must be a non-empty 1-D array")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise fail(name, short_repr(t), "must be finite and >= 0")
    if np.any(np.diff(t) <= 0):
        raise fail(name, short_repr(t), "must be strictly increasing")
    return t


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        The parameter's name, used in the error message.
    choices : tuple of str
        The accepted values.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ValueError
        ``bad <name>=<value>: ...`` if ``value`` is not one of ``choices``.
    """
    if value not in choices:
        raise fail(name, value, f"must be one of {', '.join(choices)}")
    return str(value)


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 if unknown).

    Returns
    -------
    int
        ``SC_PAGE_SIZE * SC_PHYS_PAGES``, or 0 where ``os.sysconf`` cannot tell.
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 0


def check_memory(nbytes: float, name: str, value: object) -> None:
    """Refuse, before allocating, a size whose estimated memory exceeds the physical memory.

    Parameters
    ----------
    nbytes : float
        The estimated memory in bytes.
    name : str
        The parameter to blame in the error message.
    value : object
        Its value, for the message.

    Raises
    ------
    ValueError
        ``bad <name>=...`` when ``nbytes`` exceeds ``physical_memory()`` (never when that is
        unknown).
    """
    total = physical_memory()
    if total and not nbytes <= total:
        raise fail(
            name,
            value,
            f"needs about {nbytes / 2**30:.3g} GiB of memory, more than the {total / 2**30:.3g} "
            "GiB of this machine",
        )


def short_repr(arr: object) -> str:
    """A one-line rendering of an array for error messages (its first 6 entries).

    Parameters
    ----------
    arr : array_like
        The array.

    Returns
    -------
    str
        E.g. ``"[1.,2.,3.,4.,5.,6.]..."``.
    """
    return np.array2string(np.asarray(arr).ravel()[:6], precision=6, separator=",") + (
        "..." if np.size(arr) > 6 else ""
    )
