"""Issue 13's structural constraints, kept by a test: no import cycle between the package's
modules (module-level imports) and no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"particles": "dlnsim.particles", "meanfield": "dlnsim.meanfield",
           "analysis": "dlnsim.analysis", "network": "dlnsim.network"}  # fmt: skip


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            mods[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return mods


def _target(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mods: dict[str, Path], nested: bool) -> dict[str, list[tuple[str, str]]]:
    """Per module: (imported module, name) pairs, at module level or (nested) anywhere."""
    out = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        nodes = ast.walk(tree) if nested else tree.body
        pairs = []
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                target = _target(module, path, node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    pairs.append((sub if sub in mods else target, alias.name))
            elif isinstance(node, ast.Import):
                pairs += [(alias.name, "") for alias in node.names]
        out[module] = pairs
    return out


def test_no_private_name_is_imported_from_another_module():
    mods = _modules()
    assert len(mods) > 50  # the scan does see the package
    private = [
        (module, target, name)
        for module, pairs in _imports(mods, nested=True).items()
        for target, name in pairs
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not private, private


def test_no_import_cycle_between_modules():
    """Module-level imports form no cycle (a package ``__init__`` re-exporting its own
    submodules is not an edge back)."""
    mods = _modules()
    graph = {}
    for module, pairs in _imports(mods, nested=False).items():
        graph[module] = {t for t, _ in pairs if t in mods and t != module}
        graph[module] -= {t for t in graph[module] if t.startswith(module + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
