"""The package's architecture, held: imports flow one way, the training core stands alone, nothing imports the CLI.

Three groups, recognisable at a glance (the package docstring lists them): the training core, the tools built on
it, and the notebook helpers. The CLI sits on top of everything.
"""

from __future__ import annotations

import ast

from conftest import ROOT

import distrinews

PACKAGE = ROOT / "lib" / "distrinews"


def imports_of(path) -> set[str]:
    """The package modules a module imports (relative or `distrinews.` imports, at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and node.module and node.module.split(".")[0] == "distrinews":
                parts = node.module.split(".")
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
    return found - {path.stem}


def graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in PACKAGE.glob("*.py")}


def test_every_module_belongs_to_exactly_one_group():
    modules = {name for name in graph() if name not in ("__init__", "__main__", "cli")}
    groups = distrinews.GROUPS
    listed = [name for members in groups.values() for name in members]
    assert sorted(listed) == sorted(modules), "distrinews.GROUPS must list every module once"


def test_the_training_core_imports_only_the_training_core():
    core, edges = set(distrinews.GROUPS["training core"]), graph()
    for name in core:
        assert edges[name] <= core, f"{name} (training core) imports {sorted(edges[name] - core)}"


def test_no_module_imports_the_cli_and_no_two_modules_import_each_other():
    edges = graph()
    assert [name for name, deps in edges.items() if "cli" in deps] == ["__main__"]

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(name for name in edges if name in reachable(name))
    assert cycles == [], f"import cycles through {cycles}"
