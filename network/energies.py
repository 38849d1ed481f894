r"""Energies of the end-to-end matrix ``X`` (docs/theory.md section 12.7).

Each energy gives ``E(X)`` and its Euclidean gradient ``grad E(X)`` (the matrix of partial
derivatives ``dE/dX_ij``), vectorized over leading axes: ``X`` has shape ``(..., d, d)``,
``energy(X)`` shape ``(...)`` and ``gradient(X)`` shape ``(..., d, d)``.  Energies add with
``+`` (the sum's energy and gradient are the sums).

- ``Completion(mask, target)``: ``1/2 sum_{(i,j) in mask} (X_ij - target_ij)^2``;
- ``Regression(target)``: ``1/2 |X - target|_F^2``;
- ``Sensing(operators, measurements)``: ``1/2 sum_k (<A_k, X> - y_k)^2``;
- ``Spectral(energy, weight)``: ``weight * sum_i e(sigma_i(X))`` for a ``particles`` energy,
  with gradient ``weight * U diag(e'(sigma)) V^T`` (theory.md section 12.2).

Confinement.  ``unconfined_direction(width)`` returns a unit matrix ``Z`` along which the energy
stays bounded (``E(X + tZ)`` constant in ``t``) or ``None``.  Since ``S_N`` grows like
``(1 - 1/N)(d - 1) log sigma_1`` (theory.md section 12.7), such a direction makes ``F_beta``
unbounded below at finite ``beta``; ``MatrixModel`` warns about it.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

import numpy as np

from dlnsim.particles.energies import Energy, Schatten
from dlnsim.particles.validation import fail

__all__ = ["MatrixEnergy", "Completion", "Regression", "Sensing", "Spectral", "SumEnergy"]

#: Largest ``d^2`` for which a sum of sensing terms is searched for a common free direction
#: (a dense ``(constraints, d^2)`` SVD); beyond, ``unconfined_direction`` reports none found.
_DENSE_SEARCH_LIMIT = 4096


def check_matrix(x: object, name: str) -> np.ndarray:
    """A finite float64 array of shape ``(..., d, d)`` (the argument check of ``network``).

    Parameters
    ----------
    x : array_like
        The matrices.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    numpy.ndarray
        ``x`` as float64, shape ``(..., d, d)``.

    Raises
    ------
    ValueError
        ``bad <name>=...`` if ``x`` is not a finite real array of square matrices.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, x, "must be a real array of shape (..., d, d)") from None
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] < 1:
        raise fail(name, getattr(x, "shape", x), "must have shape (..., d, d), square")
    if not np.all(np.isfinite(arr)):
        raise fail(name, "non-finite entries", "must be finite")
    return arr


class MatrixEnergy(ABC):
    """An energy ``E(X)`` of the ``d x d`` end-to-end matrix (theory.md section 12.7)."""

    #: The width ``d`` the energy is defined for (``None``: any width).
    width: int | None = None

    @abstractmethod
    def _energy(self, x: np.ndarray) -> np.ndarray:
        """``E(X)`` without checks."""

    @abstractmethod
    def _gradient(self, x: np.ndarray) -> np.ndarray:
        """``grad E(X)`` without checks."""

    @abstractmethod
    def describe(self) -> dict[str, str | float]:
        """Parameters for dataset attributes (``energy`` names the family)."""

    def _check(self, x: object) -> np.ndarray:
        arr = check_matrix(x, "X")
        if self.width is not None and arr.shape[-1] != self.width:
            raise fail("X", arr.shape, f"must be (..., {self.width}, {self.width}) for this energy")
        return arr

    def energy(self, x: np.ndarray) -> np.ndarray:
        """``E(X)``.

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``, finite.

        Returns
        -------
        numpy.ndarray
            Shape ``(...)``.

        Raises
        ------
        ValueError
            ``bad X=...`` for a wrong shape or non-finite entries.
        """
        return self._energy(self._check(x))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The Euclidean gradient ``grad E(X)``, ``(grad E)_ij = dE/dX_ij``.

        Parameters
        ----------
        x : array_like
            Matrices, shape ``(..., d, d)``, finite.

        Returns
        -------
        numpy.ndarray
            Shape ``(..., d, d)``.

        Raises
        ------
        ValueError
            ``bad X=...`` for a wrong shape or non-finite entries.
        """
        return self._gradient(self._check(x))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``E(X)`` (same as ``energy``)."""
        return self.energy(x)

    def __add__(self, other: object) -> SumEnergy:
        if not isinstance(other, MatrixEnergy):
            return NotImplemented
        return SumEnergy((self, other))

    def unconfined_direction(self, width: int) -> np.ndarray | None:
        """A unit ``d x d`` matrix ``Z`` with ``E(X + tZ) = E(X)`` for all ``t``, or ``None``.

        Parameters
        ----------
        width : int
            The width ``d``.

        Returns
        -------
        numpy.ndarray or None
            ``Z`` (Frobenius norm 1), or ``None`` when the energy confines every direction
            (or none was found).
        """
        return _free_direction((self,), width)

    def errors(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
        """Errors against a target, ``name -> (values (...), attrs)``; empty without target."""
        return {}


def _relative(diff: np.ndarray, ref: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    if where is not None:
        diff = np.where(where, diff, 0.0)
        ref = np.where(where, ref, 0.0)
    scale = math.sqrt(float(np.sum(ref * ref)))
    num = np.sqrt(np.sum(diff * diff, axis=(-2, -1)))
    return num / scale if scale > 0 else num


class Completion(MatrixEnergy):
    """Matrix completion ``E(X) = 1/2 sum_{(i,j) in mask} (X_ij - target_ij)^2``.

    Parameters
    ----------
    mask : array_like of bool
        Observed entries ``Omega``, shape ``(d, d)``.
    target : array_like
        The matrix ``Phi`` whose observed entries are fitted, shape ``(d, d)``, finite (its
        unobserved entries are used only for the reconstruction errors).

    Raises
    ------
    ValueError
        ``bad mask=...`` or ``bad target=...`` for wrong shapes, types or non-finite values.
    """

    def __init__(self, mask: np.ndarray, target: np.ndarray) -> None:
        m = np.asarray(mask)
        if m.dtype != bool or m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
            raise fail("mask", getattr(mask, "shape", mask), "must be a square 2-d bool array")
        t = check_matrix(target, "target")
        if t.shape != m.shape:
            raise fail("target", t.shape, f"must have the mask's shape {m.shape}")
        self.mask = m.copy()
        self.target = t.copy()
        self.width = m.shape[0]
        self._masked_target = np.where(m, t, 0.0)

    def _gradient(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.mask, x, 0.0) - self._masked_target

    def _energy(self, x: np.ndarray) -> np.ndarray:
        r = self._gradient(x)
        return 0.5 * np.sum(r * r, axis=(-2, -1))

    def describe(self) -> dict[str, str | float]:
        return {"energy": "completion", "observed_entries": int(self.mask.sum())}

    def errors(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
        diff = x - self.target
        return {
            "error": (
                _relative(diff, self.target),
                {"long_name": "relative error |X - target|_F / |target|_F", "units": "1"},
            ),
            "error_unobserved": (
                _relative(diff, self.target, ~self.mask),
                {
                    "long_name": "relative error on the unobserved entries "
                    "|P(X - target)|_F / |P target|_F, P = projection off the mask",
                    "units": "1",
                },
            ),
        }


class Regression(MatrixEnergy):
    """Regression (denoising) ``E(X) = 1/2 |X - target|_F^2``.

    Parameters
    ----------
    target : array_like
        The matrix ``Phi``, shape ``(d, d)``, finite.

    Raises
    ------
    ValueError
        ``bad target=...`` for a wrong shape or non-finite values.
    """

    def __init__(self, target: np.ndarray) -> None:
        t = check_matrix(target, "target")
        if t.ndim != 2:
            raise fail("target", t.shape, "must be one (d, d) matrix")
        self.target = t.copy()
        self.width = t.shape[0]

    def _gradient(self, x: np.ndarray) -> np.ndarray:
        return x - self.target

    def _energy(self, x: np.ndarray) -> np.ndarray:
        r = x - self.target
        return 0.5 * np.sum(r * r, axis=(-2, -1))

    def describe(self) -> dict[str, str | float]:
        return {"energy": "regression"}

    def errors(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
        return {
            "error": (
                _relative(x - self.target, self.target),
                {"long_name": "relative error |X - target|_F / |target|_F", "units": "1"},
            )
        }


class Sensing(MatrixEnergy):
    """Matrix sensing ``E(X) = 1/2 sum_k (<A_k, X> - y_k)^2``, ``<A, X> = Tr(A^T X)``.

    Parameters
    ----------
    operators : array_like
        The sensing matrices ``A_k``, shape ``(K, d, d)``, finite.
    measurements : array_like
        ``y_k``, shape ``(K,)``, finite.

    Raises
    ------
    ValueError
        ``bad operators=...`` or ``bad measurements=...`` for wrong shapes or values.
    """

    def __init__(self, operators: np.ndarray, measurements: np.ndarray) -> None:
        a = check_matrix(operators, "operators")
        if a.ndim != 3:
            raise fail("operators", a.shape, "must have shape (K, d, d)")
        try:
            y = np.asarray(measurements, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail("measurements", measurements, "must be a real array") from None
        if y.shape != (a.shape[0],) or not np.all(np.isfinite(y)):
            raise fail("measurements", y.shape, f"must be finite with shape ({a.shape[0]},)")
        self.operators = a.copy()
        self.measurements = y.copy()
        self.width = a.shape[-1]

    def _residual(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("kij,...ij->...k", self.operators, x) - self.measurements

    def _gradient(self, x: np.ndarray) -> np.ndarray:
        return np.einsum("...k,kij->...ij", self._residual(x), self.operators)

    def _energy(self, x: np.ndarray) -> np.ndarray:
        r = self._residual(x)
        return 0.5 * np.sum(r * r, axis=-1)

    def describe(self) -> dict[str, str | float]:
        return {"energy": "sensing", "measurements": int(self.measurements.size)}


class Spectral(MatrixEnergy):
    """A spectral energy ``weight * sum_i e(sigma_i(X))`` from a ``particles`` energy.

    Its gradient is ``weight * U diag(e'(sigma)) V^T`` for ``X = U diag(sigma) V^T``
    (theory.md section 12.2).

    Parameters
    ----------
    energy : particles.Energy
        E.g. ``Schatten(2)`` (``e(s) = s^2 / 2``).
    weight : float, default 1.0
        The factor ``weight > 0``.
    confining : bool or None, default None
        Whether ``e`` grows faster than any multiple of ``log sigma`` (so that it confines
        ``F_beta``).  ``None``: true for ``Schatten(p)`` (``p > 0``), otherwise decided by the
        growth of ``e`` between ``sigma = 1e6`` and ``1e12`` (more than ``10^3`` times
        ``log 10^6``).

    Raises
    ------
    ValueError
        ``bad energy=...``, ``bad weight=...`` or ``bad confining=...``.
    """

    def __init__(self, energy: Energy, weight: float = 1.0, confining: bool | None = None) -> None:
        if not isinstance(energy, Energy):
            raise fail("energy", energy, "must be a particles energy (Schatten, ...)")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Real)
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise fail("weight", weight, "must be a finite real number > 0")
        if confining is not None and not isinstance(confining, bool):
            raise fail("confining", confining, "must be True, False or None")
        self.spectral = energy
        self.weight = float(weight)
        if confining is None:
            if isinstance(energy, Schatten):
                confining = True
            else:
                with np.errstate(all="ignore"):
                    grow = float(energy.e(np.array(1e12)) - energy.e(np.array(1e6)))
                confining = bool(math.isfinite(grow) and grow > 1e3 * math.log(1e6))
        self.confining = confining

    def _energy(self, x: np.ndarray) -> np.ndarray:
        s = np.linalg.svd(x, compute_uv=False)
        return self.weight * np.sum(self.spectral.e(s), axis=-1)

    def _gradient(self, x: np.ndarray) -> np.ndarray:
        u, s, vt = np.linalg.svd(x)
        return self.weight * (u * self.spectral.de(s)[..., None, :]) @ vt

    def describe(self) -> dict[str, str | float]:
        inner = self.spectral.describe()
        out: dict[str, str | float] = {f"spectral_{k}": v for k, v in inner.items()}
        out["energy"] = f"spectral({inner.get('energy', 'energy')})"
        out["spectral_weight"] = self.weight
        return out


class SumEnergy(MatrixEnergy):
    """The sum of matrix energies (made by ``+``); energy and gradient are the sums.

    Parameters
    ----------
    terms : tuple of MatrixEnergy
        The terms (nested sums are flattened), all of the same width.

    Raises
    ------
    ValueError
        ``bad terms=...`` for an empty tuple, a non-energy or different widths.
    """

    def __init__(self, terms: tuple[MatrixEnergy, ...]) -> None:
        flat: list[MatrixEnergy] = []
        for term in terms:
            if not isinstance(term, MatrixEnergy):
                raise fail("terms", term, "must be matrix energies")
            flat.extend(term.terms if isinstance(term, SumEnergy) else (term,))
        if not flat:
            raise fail("terms", terms, "must not be empty")
        widths = {t.width for t in flat if t.width is not None}
        if len(widths) > 1:
            raise fail("terms", sorted(widths), "all terms must have the same width")
        self.terms = tuple(flat)
        self.width = widths.pop() if widths else None

    def _energy(self, x: np.ndarray) -> np.ndarray:
        return sum(t._energy(x) for t in self.terms)

    def _gradient(self, x: np.ndarray) -> np.ndarray:
        return sum(t._gradient(x) for t in self.terms)

    def describe(self) -> dict[str, str | float]:
        out: dict[str, str | float] = {}
        names = []
        for t in self.terms:
            part = t.describe()
            names.append(str(part.pop("energy")))
            for k, v in part.items():
                out.setdefault(k, v)
        out["energy"] = " + ".join(names)
        return out

    def unconfined_direction(self, width: int) -> np.ndarray | None:
        return _free_direction(self.terms, width)

    def errors(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
        for t in self.terms:
            found = t.errors(x)
            if found:
                return found
        return {}


def _free_direction(terms: tuple[MatrixEnergy, ...], width: int) -> np.ndarray | None:
    """A unit matrix on which every term is constant, or None (theory.md section 12.7).

    Regression and confining spectral terms confine every direction.  Non-confining spectral
    terms are bounded along any direction and ignored.  Completion terms leave exactly the
    entries off their masks free; sensing terms leave the null space of their operators free
    (searched densely while ``d^2 <= 4096``)."""
    free = np.ones((width, width), dtype=bool)
    rows = []
    for t in terms:
        if isinstance(t, Regression) or (isinstance(t, Spectral) and t.confining):
            return None
        if isinstance(t, Completion):
            free &= ~t.mask
        elif isinstance(t, Sensing):
            rows.append(t.operators.reshape(t.operators.shape[0], -1))
        elif not isinstance(t, Spectral):
            return None  # an unknown energy: assume it confines
    idx = np.flatnonzero(free.ravel())
    if idx.size == 0:
        return None
    if not rows:
        z = np.zeros(width * width)
        z[idx[0]] = 1.0
        return z.reshape(width, width)
    if width * width > _DENSE_SEARCH_LIMIT:
        return None
    a = np.concatenate(rows)[:, idx]
    _, s, vt = np.linalg.svd(a, full_matrices=True)
    tol = max(a.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    rank = int(np.sum(s > tol))
    if rank >= idx.size:
        return None
    z = np.zeros(width * width)
    z[idx] = vt[rank]
    return z.reshape(width, width)
