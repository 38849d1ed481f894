"""docs/claims.md maps every README claim to a test id; every id listed must exist.

Ids are ``tests/<file>.py::<test function>`` (parametrized tests without their brackets); a
test exists when its file defines that function at module level (``ast``, no import).  The
map must also name every command of the README's CLI table and every output file of
``dlnsim run``, so that a claim added to the README without a row fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "docs" / "claims.md"
ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_listed_test_id_exists():
    text = CLAIMS.read_text()
    ids = ID.findall(text)
    assert len(ids) >= 60, len(ids)
    missing = []
    cache: dict[str, set[str]] = {}
    for file, name in ids:
        path = ROOT / file
        if not path.exists():
            missing.append(f"{file} (no such file)")
            continue
        funcs = cache.setdefault(file, _functions(path))
        if name not in funcs:
            missing.append(f"{file}::{name}")
        elif not name.startswith("test_"):
            missing.append(f"{file}::{name} (not a test)")
    assert not missing, missing


def test_map_covers_the_readme_commands_and_outputs():
    readme = (ROOT / "README.md").read_text()
    claims = CLAIMS.read_text()
    commands = set(re.findall(r"^\| `dlnsim ([\w-]+)", readme, flags=re.M))
    assert {"run", "ensemble", "meanfield", "repulsion"} <= commands
    for command in commands:
        assert f"dlnsim {command}" in claims, command
    outputs = readme.split("### Outputs of `dlnsim run`")[1].split("\n## ")[0]
    files = set(re.findall(r"`([\w*]+\.(?:nc|png|zarr|txt))`", outputs))
    assert {"flow.nc", "summary.txt", "repulsion.nc", "meanfield.nc"} <= files
    for name in files:
        stem = name.replace("*", "")
        assert name in claims or stem in claims or name.split("_")[0] + "_*" in claims, name


def test_the_id_pattern_rejects_what_does_not_exist(tmp_path):
    """The check itself can fail: a made-up id is reported missing."""
    funcs = _functions(ROOT / "tests" / "test_claims.py")
    assert "test_every_listed_test_id_exists" in funcs and "test_no_such_thing" not in funcs
    found = ID.findall("`tests/test_x.py::test_y` and `README.md`")
    assert found == [("tests/test_x.py", "test_y")]
