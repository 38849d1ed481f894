"""Packaging: one top-level name, the SPDX licence, dependency floors that CI really installs.

``.ci/run`` also runs the ``smoke`` tests against a non-editable install of exactly the floors
of ``.ci/constraints-floor.txt`` (``.ci/floor``), with ``DLNSIM_EXPECT_FLOORS=1``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ("particles", "analysis", "meanfield")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints-floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = Version(version.strip())
    return pins


def _floor(requirement: str) -> tuple[str, Version]:
    req = Requirement(requirement)
    (spec,) = [s for s in req.specifier if s.operator == ">="]
    return req.name.lower(), Version(spec.version)


@pytest.mark.smoke
def test_distribution_claims_no_generic_top_level_name():
    """The installed distribution (editable or built wheel) provides only ``dlnsim``."""
    dist = metadata.distribution("dlnsim")
    assert dist.read_text("top_level.txt").split() == ["dlnsim"]
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        # setuptools' editable finder maps each top-level name to a source folder
        finders = [f for f in dist.files if f.name.endswith("_finder.py")]
        assert finders, "editable install without a finder"
        spec = importlib.util.spec_from_file_location("_dlnsim_finder", finders[0].locate())
        finder = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(finder)
        assert {name.split(".")[0] for name in finder.MAPPING} == {"dlnsim"}, finder.MAPPING
    else:
        tops = {
            f.parts[0]
            for f in dist.files
            if not f.parts[0].endswith(".dist-info") and f.parts[0] not in ("..", "__pycache__")
        }
        assert tops == {"dlnsim"}, tops
        assert {"particles", "meanfield", "analysis"} <= {
            f.parts[1] for f in dist.files if f.parts[0] == "dlnsim" and len(f.parts) > 2
        }


@pytest.mark.smoke
def test_generic_names_are_not_importable_from_a_clean_directory(tmp_path):
    code = (
        "import importlib.util as u, json, dlnsim, dlnsim.particles, dlnsim.analysis.cli\n"
        f"found = {{n: getattr(u.find_spec(n), 'origin', None) for n in {GENERIC!r}}}\n"
        "print(json.dumps([dlnsim.__version__, found]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    version, found = json.loads(proc.stdout)
    assert version == metadata.version("dlnsim")
    for name, origin in found.items():
        # another project's module of that name may exist; ours must not be it
        assert origin is None or str(ROOT) not in origin, (name, origin)


def test_license_is_spdx_mit_with_the_file():
    meta = metadata.metadata("dlnsim")
    assert meta["License-Expression"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the dlnsim authors" in text
    project = _pyproject()
    assert project["project"]["license"] == "MIT"
    setuptools_floor = [_floor(r) for r in project["build-system"]["requires"]]
    assert ("setuptools", Version("77")) in setuptools_floor  # PEP 639 license expressions


def test_ruff_is_a_dev_tool_not_a_test_dependency():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert not any(Requirement(r).name == "ruff" for r in extras["test"])
    assert any(Requirement(r).name == "ruff" for r in extras["dev"])
    # no test runs ruff (this file only names it)
    for test in (ROOT / "tests").glob("*.py"):
        assert test.name == Path(__file__).name or "ruff" not in test.read_text(), test


def test_constraints_pin_exactly_the_floors():
    """Every dependency (and test extra) floor of pyproject.toml is pinned at that version in
    .ci/constraints-floor.txt: the smoke run tests the floors that are declared."""
    project = _pyproject()["project"]
    pins = _constraints()
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    for requirement in requirements:
        name, floor = _floor(requirement)
        assert pins.get(name) == floor, (name, floor, pins.get(name))
        if name == "dask":  # dask[distributed]: distributed is released in lockstep
            assert pins["distributed"] == floor
    # zarr 3 (zarr_format=) and the xarray that reads and writes it
    assert pins["zarr"] >= Version("3") and pins["xarray"] >= Version("2025.1.1")


@pytest.mark.smoke
def test_installed_versions_are_the_floors():
    """In the floor venv (.ci/floor test) every pinned distribution is installed at its pin."""
    if os.environ.get("DLNSIM_EXPECT_FLOORS") != "1":
        pytest.skip("only in the dependency-floor venv of .ci/run")
    for name, pin in _constraints().items():
        if name == "setuptools":
            continue  # the build backend lives in the isolated build environment
        assert Version(metadata.version(name)) == pin, name


def test_every_source_subpackage_is_listed_for_the_wheel():
    """``[tool.setuptools] packages`` is an explicit list: a subpackage folder missing from it
    (e.g. ``analysis/experiments/``) works in an editable install but is absent from a built
    wheel.  Every folder with an ``__init__.py`` under the mapped source folders must be listed."""
    setup = _pyproject()["tool"]["setuptools"]
    listed = set(setup["packages"])
    for package, folder in setup["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((package, *parts)) in listed, init.parent
