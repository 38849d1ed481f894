r"""A real deep linear network: balanced factors and plain gradient descent on them
(docs/theory.md section 12.4).

For ``X0 = U diag(sigma) V^T``, ``S = diag(sigma^{1/N})`` and orthogonal ``Q_1..Q_{N-1}``,

    W_1 = Q_1 S V^T,   W_j = Q_j S Q_{j-1}^T,   W_N = U S Q_{N-1}^T

multiply to ``X0`` and are balanced (``W_{j+1}^T W_{j+1} = W_j W_j^T``).  Gradient descent
``W_j <- W_j - lr grad_{W_j} E(W_N ... W_1)`` is the Euler scheme, with step ``lr``, of the
gradient flow on the factors, which moves the product exactly by ``dX/dt = -A_X(grad E)``
(Arora, Cohen, Hazan 2018, Theorem 1): after ``k`` steps the product approximates the
``beta = inf`` matrix flow at time ``t = k lr``, with an error ``O(lr)``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from dlnsim.particles.datasets import provenance
from dlnsim.particles.validation import check_depth, check_integer, check_positive, fail

from .energies import MatrixEnergy, check_matrix
from .model import effective_rank

__all__ = ["balanced_factors", "train_factors", "product", "balance_defect"]


def _haar(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def balanced_factors(x0: np.ndarray, depth: int, seed: int | None = None) -> np.ndarray:
    """``N`` balanced ``d x d`` factors with product ``W_N ... W_1 = X0``.

    Parameters
    ----------
    x0 : array_like
        The end-to-end matrix, shape ``(d, d)``, finite.
    depth : int
        ``N >= 1`` (finite).
    seed : int, optional
        Seed of the Haar orthogonal ``Q_j``; ``None``: ``Q_j = I``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, d, d)``, ``W[j - 1] = W_j`` (``W_1`` acts first).

    Raises
    ------
    ValueError
        ``bad X0=...``, ``bad depth=...`` or ``bad seed=...``.
    """
    x0 = check_matrix(x0, "X0")
    if x0.ndim != 2:
        raise fail("X0", x0.shape, "must be one (d, d) matrix")
    n = check_depth(depth)
    if n == float("inf"):
        raise fail("depth", depth, "a network has finitely many factors")
    if seed is not None:
        seed = check_integer(seed, "seed", 0)
    d = x0.shape[0]
    u, s, vt = np.linalg.svd(x0)
    root = s ** (1.0 / n)
    if n == 1:
        return x0[None].copy()
    rng = np.random.default_rng(seed) if seed is not None else None
    qs = [_haar(rng, d) if rng is not None else np.eye(d) for _ in range(n - 1)]
    w = [(qs[0] * root) @ vt]
    for j in range(1, n - 1):
        w.append((qs[j] * root) @ qs[j - 1].T)
    w.append((u * root) @ qs[-1].T)
    return np.stack(w)


def _check_factors(factors: object) -> np.ndarray:
    w = check_matrix(factors, "factors")
    if w.ndim != 3:
        raise fail("factors", w.shape, "must have shape (N, d, d)")
    return w


def product(factors: np.ndarray) -> np.ndarray:
    """The end-to-end matrix ``W_N ... W_1``.

    Parameters
    ----------
    factors : array_like
        Shape ``(N, d, d)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(d, d)``.

    Raises
    ------
    ValueError
        ``bad factors=...``.
    """
    w = _check_factors(factors)
    x = w[0]
    for wj in w[1:]:
        x = wj @ x
    return x


def balance_defect(factors: np.ndarray) -> float:
    """``max_j max_{ab} |W_{j+1}^T W_{j+1} - W_j W_j^T|_{ab}`` (0 for balanced factors).

    Parameters
    ----------
    factors : array_like
        Shape ``(N, d, d)``.

    Returns
    -------
    float
        The defect (0 for ``N = 1``).

    Raises
    ------
    ValueError
        ``bad factors=...``.
    """
    w = _check_factors(factors)
    return _defect(w)


def _defect(w: np.ndarray) -> float:
    if w.shape[0] < 2:
        return 0.0
    gap = np.swapaxes(w[1:], -1, -2) @ w[1:] - w[:-1] @ np.swapaxes(w[:-1], -1, -2)
    return float(np.max(np.abs(gap)))


def _step_gradients(w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``grad_{W_j} E = (W_N..W_{j+1})^T G (W_{j-1}..W_1)^T`` for all ``j``, ``G = grad E(X)``."""
    n, d, _ = w.shape
    below = [np.eye(d)]  # below[j] = W_j ... W_1 (below[0] = I)
    for j in range(n):
        below.append(w[j] @ below[-1])
    out = np.empty_like(w)
    above = np.eye(d)  # W_N ... W_{j+2}
    for j in range(n - 1, -1, -1):
        out[j] = above.T @ g @ below[j].T
        above = above @ w[j]
    return out


def train_factors(
    factors: np.ndarray,
    energy: MatrixEnergy,
    lr: float,
    steps: int,
    save_every: int = 1,
) -> xr.Dataset:
    """Plain gradient descent ``W_j <- W_j - lr grad_{W_j} E(W_N ... W_1)`` on all factors.

    Step ``k`` corresponds to the flow time ``t = k lr`` of the ``beta = inf`` matrix flow
    ``dX/dt = -A_X(grad E)`` (theory.md section 12.4), which it approximates to ``O(lr)``
    from a balanced start.

    Parameters
    ----------
    factors : array_like
        ``W_1..W_N``, shape ``(N, d, d)`` (e.g. from ``balanced_factors``).
    energy : MatrixEnergy
        The loss ``E(X)`` of the end-to-end matrix.
    lr : float
        Learning rate (step) ``> 0``.
    steps : int
        Number of steps ``>= 1``.
    save_every : int, default 1
        Save the state every this many steps (and at step 0 and the last step).

    Returns
    -------
    xarray.Dataset
        Dims ``time`` (``= step lr``, with a ``step`` coordinate), ``row``, ``col``,
        ``particle``, ``layer``: ``X`` (the product), ``sigma``, ``loss`` (``E(X)``),
        ``effective_rank``, ``balance_defect`` (``max_j |W_{j+1}^T W_{j+1} - W_j W_j^T|``),
        the errors against the target when the energy has one, and the final ``factors``.
        A run that overflows keeps NaN from the first non-finite state on (attribute
        ``failures``).

    Raises
    ------
    ValueError
        ``bad <name>=...`` for any invalid argument.
    """
    w = _check_factors(factors).copy()
    if not isinstance(energy, MatrixEnergy):
        raise fail("energy", energy, "must be a network energy (Completion, ...)")
    if energy.width is not None and energy.width != w.shape[-1]:
        raise fail("energy", energy.width, f"width differs from the factors' {w.shape[-1]}")
    lr = check_positive(lr, "lr")
    steps = check_integer(steps, "steps", 1)
    save_every = check_integer(save_every, "save_every", 1)
    saved = sorted(set(range(0, steps + 1, save_every)) | {steps})
    n, d, _ = w.shape
    xs = np.full((len(saved), d, d), np.nan)
    defect = np.full(len(saved), np.nan)
    failure = "none"
    slot = 0
    for k in range(steps + 1):
        x = w[0]
        for wj in w[1:]:
            x = wj @ x
        if not np.all(np.isfinite(x)):
            failure = f"the product is not finite at step {k} (lr={lr:g} too large?)"
            break
        if k == saved[slot]:
            xs[slot] = x
            defect[slot] = _defect(w)
            slot += 1
        if k == steps:
            break
        with np.errstate(all="ignore"):
            w -= lr * _step_gradients(w, energy._gradient(x))
    ok = np.all(np.isfinite(xs), axis=(-2, -1))
    safe = np.where(ok[:, None, None], xs, 0.0)
    sigma = np.where(ok[:, None], np.linalg.svd(safe, compute_uv=False), np.nan)
    data = {
        "X": (("time", "row", "col"), xs, {"long_name": "end-to-end matrix W_N...W_1"}),
        "sigma": (("time", "particle"), sigma, {"long_name": "singular value of X"}),
        "loss": (("time",), np.where(ok, energy._energy(safe), np.nan), {"long_name": "E(X)"}),
        "effective_rank": (
            ("time",),
            np.where(ok, effective_rank(np.where(ok[:, None], sigma, 1.0)), np.nan),
            {"long_name": "effective rank (Roy-Vetterli)"},
        ),
        "balance_defect": (
            ("time",),
            defect,
            {"long_name": "max_j max |W_{j+1}^T W_{j+1} - W_j W_j^T|"},
        ),
        "factors": (
            ("layer", "row", "col"),
            w if failure == "none" else np.full_like(w, np.nan),
            {"long_name": "final factors W_1..W_N (layer 1 acts first)"},
        ),
    }
    for name, (values, var_attrs) in energy.errors(safe).items():
        data[name] = (("time",), np.where(ok, values, np.nan), var_attrs)
    return xr.Dataset(
        data,
        coords={
            "time": ("time", lr * np.asarray(saved, float), {"long_name": "flow time t = step lr"}),
            "step": ("time", np.asarray(saved), {"long_name": "gradient-descent step"}),
            "row": ("row", np.arange(d)),
            "col": ("col", np.arange(d)),
            "particle": ("particle", np.arange(1, d + 1)),
            "layer": ("layer", np.arange(1, n + 1)),
        },
        attrs=provenance(
            kind="train_factors",
            depth=n,
            width=d,
            lr=lr,
            steps=steps,
            save_every=save_every,
            failures=failure,
            **energy.describe(),
        ),
    )
