"""dlnsim: thermodynamics of the deep linear network.

The singular values of the end-to-end matrix ``X = W_N ... W_1`` are particles on the chamber
``sigma_1 >= ... >= sigma_d > 0``, driven by the free energy ``F_beta = E - S_N / beta`` through
the DLN metric (``docs/theory.md``).  The subpackages:

- :mod:`dlnsim.particles`: the model (entropy, energies, charts, ``Model``) and its simulation
  (gradient flow, Langevin ensembles, random-matrix baselines);
- :mod:`dlnsim.meanfield`: the mean-field density PDE;
- :mod:`dlnsim.analysis`: statistics, comparisons, figures, experiments and the command line.

The main names are re-exported here: ``Model``, ``Schatten``, ``SeparableEnergy``,
``gradient_flow``, ``langevin_ensemble``, ``save`` and ``load``.
"""

import logging as _logging

from .particles import Model, Schatten, SeparableEnergy, gradient_flow, langevin_ensemble
from .particles.datasets import load, save
from .particles.version import __version__

# a library logs, the application decides what is shown: nothing unless logging is configured
# (the CLI shows INFO on stderr); warnings about results use the warnings module
_logging.getLogger("dlnsim").addHandler(_logging.NullHandler())

__all__ = [
    "Model",
    "Schatten",
    "SeparableEnergy",
    "__version__",
    "gradient_flow",
    "langevin_ensemble",
    "load",
    "save",
]
