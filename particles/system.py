r"""The ``System`` interface: what a stochastic system gives the one step loop (``driver``).

A system is a Langevin equation for ``m`` independent members, each with a state of a fixed
shape (``(d,)`` singular values or eigenvalues; ``(d, d)`` for a matrix system), written in a
*chart* ``x`` in which the metric is flat (a constant multiple of the identity), so that the
Riemannian Langevin equation has no Ito correction (docs/theory.md sections 1.3, 9.1, 12.5):

    dx = b(x) dt_x + sqrt(2 T c) dB,        b(x) = -(1/c) dF/dx  (metric g = (1/c) I in x),

with ``F`` the system's free energy (or potential) and ``T`` the noise temperature (default
``1 / beta``, the temperature of ``F``), so that the stationary density w.r.t. ``dx`` is
``exp(-F / T)`` where it is normalizable (theory.md 9.2).  The charts used today:

=================  =====================  ===============  =========  ====================
system             chart ``x``            ``c``            boundary   saved output
=================  =====================  ===============  =========  ====================
``Model``, N < inf ``u = sigma^{1/N}``    ``1/N``          ``u = 0``  ``sigma`` sorted desc
``Model``, N = inf ``rho = log sigma``    ``1``            none       ``sigma`` sorted desc
``MatrixVariant``  as ``Model``           as ``Model``     as Model   ``sigma`` sorted desc
``DysonModel``     ``l`` (eigenvalues)    ``1``            none       ``l`` strictly desc
matrix system      the entries ``X``      system's own     none       ``X`` and its sing. values
=================  =====================  ===============  =========  ====================

Time.  The loop's step ``h`` is in the time of the save times (``t``, or ``tau = N t`` when
rescaled; theory.md 1.4); the chart moves by ``h_x = h * time_scale(rescaled)`` (``1/N`` for the
rescaled finite-``N`` chamber, else 1) and the noise of a step is ``sqrt(noise_variance(T) h_x)
xi`` with ``xi`` standard normal (theory.md 13.2).

Failure rule (theory.md 13.2, 13.4; the same for every system and stepper).  After each step the
stepper asks ``bad_rows``: a member whose new chart state is non-finite, would overflow its saved
output (``sigma = e^rho > max float``) or hits a boundary it may not touch (``u = 0`` exactly) --
or whose stepper could not finish the step (a Newton solve that did not converge) -- stops.  Its
later saved outputs are NaN, its ``failed_time`` is the end of the failing step and its
``last_finite`` output is the one of the state before that step.  The other members are not
affected, bitwise.

The steppers of ``particles.steppers`` use this interface:

* ``EulerMaruyama``: ``x <- x + h_x b(x) + sqrt(noise_variance(T) h_x) xi``, then
  ``reflect`` (``|x|`` for the chamber in ``u``, with one reflection counted per sign flip).
  ``Model`` runs a fused, compiled form of the same update (``Model.gradient_rho_u``).
* ``Proximal`` (``LogGasSystem`` only): the explicit step with the smooth drift, then the
  proximal (implicit) step of the singular log-gas, optionally Metropolis-adjusted
  (theory.md 13.3).

Implementations: ``particles.Model``, ``particles.MatrixVariant``, ``particles.DysonModel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LogGasSystem", "System"]


@runtime_checkable
class System(Protocol):
    """A Langevin system for the one step loop (module docstring: chart, time, failure rule).

    Arrays of chart states have shape ``(m, *state_shape)``, one row per member; every method
    is row-wise (a row's result never depends on the other rows, bitwise).
    """

    width: int  #: ``d``: number of particles, or the matrix size
    beta: float  #: inverse temperature of the free energy; the default noise ``T = 1 / beta``

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one member's state: ``(d,)`` for particles, ``(d, d)`` for a matrix."""
        ...

    @property
    def outputs(self) -> Mapping[str, tuple[int, ...]]:
        """Saved outputs and their per-member shapes, e.g. ``{"sigma": (d,)}`` or
        ``{"matrix": (d, d), "sigma": (d,)}``; ``save`` returns exactly these keys."""
        ...

    def describe(self) -> dict[str, str | float | int]:
        """Parameters as dataset attributes (str, float or int values)."""
        ...

    def resolve_rescaled(self, rescaled: bool | None) -> bool:
        """The time of the save times: ``tau = N t`` if True, ``t`` if False (theory.md 1.4).
        ``None`` gives the system's default; raises ``ValueError`` for a time it does not
        have (``N = inf`` has only ``tau``, Dyson only ``t``)."""
        ...

    def check_state(self, state: object, name: str = "sigma0") -> np.ndarray:
        """Validated initial states, float64 ``(..., *state_shape)``; ``ValueError("bad
        <name>=...")`` otherwise (e.g. singular values must be positive and finite)."""
        ...

    def time_scale(self, rescaled: bool) -> float:
        """``h_x / h``: the chart time per unit of the loop's time (``1/N`` for the rescaled
        finite-``N`` chamber, whose chart ``u`` runs in ``t = tau / N``; else 1)."""
        ...

    def noise_variance(self, temperature: float) -> float:
        """``2 T c``: the variance of the chart noise per unit ``h_x`` (``2T/N`` in ``u``, ``2T``
        in ``rho`` or ``l``; theory.md 9.1)."""
        ...

    def to_chart(self, state: np.ndarray) -> np.ndarray:
        """Chart coordinates ``x`` of validated states (``u = sigma^{1/N}``, ``rho = log
        sigma``, ``l``, or the matrix entries)."""
        ...

    def drift(self, x: np.ndarray) -> np.ndarray:
        """``b(x) = -(1/c) dF/dx`` in the chart, shape of ``x`` (in ``u``:
        ``-(1/u_i) dF/drho_i``; in ``rho``: ``-dF/drho_i``; theory.md 9.1)."""
        ...

    def reflect(self, x: np.ndarray) -> np.ndarray | None:
        """Fold a step that left the chart's domain back into it, in place, and return the
        per-row count of folds (``u -> |u|`` at the reflecting boundary ``u = 0``, theory.md
        9.3); ``None`` for a chart without boundary."""
        ...

    def bad_rows(self, x: np.ndarray) -> np.ndarray:
        """``(m,)`` bool: rows that fail by the failure rule (non-finite, output overflow,
        boundary hit exactly)."""
        ...

    def save(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The saved outputs of chart states ``x`` (``(m, *state_shape)``), keyed as
        ``outputs`` (``sigma = u^N`` or ``e^rho`` with rows sorted descending, ...)."""
        ...

    def potential(self, x: np.ndarray) -> np.ndarray:
        """``Phi(x)``, shape ``(m,)``: the stationary density w.r.t. ``dx`` is
        ``exp(-Phi / T)`` (``F`` expressed in the chart; ``+inf`` where it is not defined)."""
        ...


@runtime_checkable
class LogGasSystem(System, Protocol):
    """A ``System`` whose drift has a singular log-gas part, stepped by the proximal scheme:

        b(x) = smooth_drift(x) + kappa grad B(x),
        B(x) = sum_{i<j} log(x_i - x_j) [+ log(x_i + x_j) with the mirror],

    on ``D = {x_1 > ... > x_d}`` (mirror: ``{x_1 > ... > x_{d-1} > |x_d|}``), theory.md 10, 13.3.
    """

    @property
    def mirror(self) -> bool:
        """True when ``B`` has the mirror terms ``log(x_i + x_j)`` (matrix variant in ``u``)."""
        ...

    def pair_coefficient(self) -> float:
        """``kappa``: ``1/(N beta)`` in ``u``, ``1/beta`` in ``rho`` (N = inf), 1 for Dyson."""
        ...

    def smooth_drift(self, x: np.ndarray) -> np.ndarray:
        """The drift without the log-gas: ``b(x) - kappa grad B(x)``."""
        ...
