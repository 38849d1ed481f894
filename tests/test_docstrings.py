"""numpy-style docstrings on the public API: a ``Parameters`` section when a function or class
takes arguments, a ``Returns`` section when a function returns something.

``MODULES`` lists the modules checked; extend it as more modules are converted.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

#: the modules whose public functions and classes must have numpy-style sections
MODULES = (
    "dlnsim.particles.entropy",
    "dlnsim.particles.energies",
    "dlnsim.particles.coordinates",
    "dlnsim.particles.model",
    "dlnsim.particles.flow",
    "dlnsim.particles.langevin",
    "dlnsim.particles.baselines",
    "dlnsim.particles.rmt",
    "dlnsim.particles.validation",
    "dlnsim.analysis.relaxation",
    "dlnsim.analysis.repulsion",
    "dlnsim.analysis.experiments",
    "dlnsim.analysis.experiments.base",
    "dlnsim.analysis.experiments.params",
    "dlnsim.analysis.experiments.flow",
    "dlnsim.analysis.experiments.ensemble",
    "dlnsim.analysis.experiments.meanfield",
    "dlnsim.analysis.experiments.repulsion",
    "dlnsim.analysis.experiments.depth",
    "dlnsim.analysis.plots",
    "dlnsim.analysis.cli",
    "dlnsim.particles.pairsum",
    "dlnsim.particles.pairsum.coefficients",
    "dlnsim.particles.pairsum.portable",
    "dlnsim.particles.philox",
    "dlnsim.particles.pairsum.pairs",
    "dlnsim.particles.pairsum.exact",
    "dlnsim.particles.pairsum.lanes",
    "dlnsim.particles.pairsum.chebyshev",
    "dlnsim.particles.pairsum.dispatch",
    "dlnsim.particles.ensemble",
    "dlnsim.particles.ensemble.chunk",
    "dlnsim.particles.ensemble.executors",
    "dlnsim.particles.ensemble.options",
    "dlnsim.particles.ensemble.plan",
    "dlnsim.particles.ensemble.runner",
    "dlnsim.particles.ensemble.sinks",
    "dlnsim.particles.ensemble.tree",
    "dlnsim.particles.ensemble.zarr_sink",
    "dlnsim.network.ensemble",
    "dlnsim.particles.datasets",
    "dlnsim.particles.store",
    "dlnsim.meanfield.solver",
    "dlnsim.meanfield.equilibrium",
    "dlnsim.analysis.meanfield_compare",
    "dlnsim.analysis.particles_vs_pde",
    "dlnsim.analysis.config",
    # the experiments' ``run`` functions are checked too: the CLI's ``--help`` shows only the
    # first paragraph of their docstrings (``Experiment.doc``), so their numpy sections stay out
    "dlnsim.analysis.pipeline",
    "dlnsim.network.langevin",
    "dlnsim.network.system",
    "dlnsim.network.energies",
    "dlnsim.network.model",
    "dlnsim.network.flow",
    "dlnsim.network.factors",
    "dlnsim.network.completion",
)

#: classes whose public methods are checked too (extend as they are converted)
CLASSES_WITH_METHODS = ("dlnsim.particles.model.Model", "dlnsim.network.model.MatrixModel")


def sections(doc: str | None) -> set[str]:
    """Section titles of a numpy-style docstring: a title line underlined with dashes."""
    lines = inspect.cleandoc(doc or "").splitlines()
    return {
        lines[k].strip()
        for k in range(len(lines) - 1)
        if lines[k].strip() and re.fullmatch(r"-{3,}", lines[k + 1].strip())
    }


def public_objects(module_name: str) -> list[tuple[str, object]]:
    """Everything in ``__all__`` that is a function or class, and every public function or
    class defined in the module."""
    mod = importlib.import_module(module_name)
    names = set(getattr(mod, "__all__", ()))
    names |= {
        n
        for n, o in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isfunction(o) or inspect.isclass(o))
        and o.__module__ == module_name
    }
    out = []
    for n in sorted(names):
        obj = getattr(mod, n)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            out.append((f"{module_name}.{n}", obj))
    return out


def takes_arguments(obj) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in sig.parameters.values())


def returns_something(func) -> bool:
    ann = inspect.signature(func).return_annotation
    return ann not in (None, "None", inspect.Signature.empty)


def missing(name: str, obj) -> list[str]:
    found = sections(obj.__doc__)
    need = []
    if takes_arguments(obj) and "Parameters" not in found:
        need.append("Parameters")
    if inspect.isfunction(obj) and returns_something(obj) and "Returns" not in found:
        need.append("Returns")
    return need


def public_methods(class_path: str) -> list[tuple[str, object]]:
    """The public methods defined in the class itself (properties take no arguments)."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return [
        (f"{class_path}.{n}", f)
        for n, f in sorted(vars(cls).items())
        if not n.startswith("_") and inspect.isfunction(f)
    ]


CASES = [case for m in MODULES for case in public_objects(m)] + [
    case for c in CLASSES_WITH_METHODS for case in public_methods(c)
]


@pytest.mark.parametrize(("name", "obj"), CASES, ids=[c[0] for c in CASES])
def test_public_docstring_has_numpy_sections(name, obj):
    assert not missing(name, obj), f"{name}: docstring lacks {missing(name, obj)}"


def test_the_checker_detects_a_prose_docstring():
    def prose(x: int) -> int:
        """Twice ``x``."""
        return 2 * x

    def numpy_style(x: int) -> int:
        """Twice ``x``.

        Parameters
        ----------
        x : int
            A number.

        Returns
        -------
        int
            ``2 x``.
        """
        return 2 * x

    assert missing("prose", prose) == ["Parameters", "Returns"]
    assert missing("numpy_style", numpy_style) == []
    assert len(CASES) > 50
    assert "dlnsim.particles.model.Model.relaxation_rates" in dict(CASES)
