"""Every third-party module that a distribution's code imports is one of its declared requirements: a fresh
`pip install ./core` must not miss one that is present here only because another plugin brought it. Optional extras
count (their imports are guarded), and a plugin may rely on what crystalgen-core requires."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml without a third-party parser")

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = [ROOT / "core", *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())]


def imported_top_level(source_root: Path) -> set[str]:
    names: set[str] = set()
    for path in source_root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")


def declared_requirements(distribution: Path) -> set[str]:
    """Names of the distribution, its requirements and extras, and crystalgen-core's when it requires the core."""
    project = tomllib.loads((distribution / "pyproject.toml").read_text())["project"]
    specs = [*project.get("dependencies", []), *(s for extra in project.get("optional-dependencies", {}).values() for s in extra)]
    names = {requirement_name(project["name"]), *(requirement_name(spec) for spec in specs)}
    if "crystalgen-core" in names and distribution != ROOT / "core":
        names |= declared_requirements(ROOT / "core")
    return names


@pytest.mark.parametrize("distribution", DISTRIBUTIONS, ids=lambda p: p.name)
def test_imports_are_declared_requirements(distribution):
    declared = declared_requirements(distribution)
    provided_by = packages_distributions()
    own = {p.name for p in (distribution / "src").iterdir() if p.is_dir()}
    missing = {}
    for module in imported_top_level(distribution / "src") - own - set(sys.stdlib_module_names):
        if module == "crystalgen":
            dists = {"crystalgen-core"}
        else:
            dists = {d.lower().replace("_", "-") for d in provided_by.get(module, [])}
        if not dists:
            continue  # not installed here: an optional import guarded at run time
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"{distribution / 'pyproject.toml'}: imported but not required: {missing}"


CORE_USERS = sorted(p.parent for pattern in ("plugins/*/pyproject.toml", "tests/fixtures/*/pyproject.toml",
                                             "examples/*/pyproject.toml") for p in ROOT.glob(pattern))


def core_range(distribution: Path):
    from packaging.requirements import Requirement

    project = tomllib.loads((distribution / "pyproject.toml").read_text())["project"]
    (spec,) = [s for s in project["dependencies"] if requirement_name(s) == "crystalgen-core"]
    return Requirement(spec).specifier


def defined_functions(source_root: Path) -> set[str]:
    return {node.name for path in source_root.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("distribution", CORE_USERS, ids=lambda p: p.name)
def test_each_range_admits_this_core_and_a_model_on_the_default_from_config_requires_0_2_2(distribution):
    """Contract 2.2 (crystalgen-core 0.2.2) brought the default GenerativeModel.from_config: a model plugin that
    no longer defines one must not install beside a 0.2.1 core, whose from_config is abstract."""
    core_version = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]["version"]
    specifier = core_range(distribution)
    assert specifier.contains(core_version), f"{distribution.name}: {specifier} excludes crystalgen-core {core_version}"
    functions = defined_functions(distribution / "src")
    if "crystalgen_models" in functions and "from_config" not in functions:
        assert not specifier.contains("0.2.1"), f"{distribution.name} relies on the default from_config: require >=0.2.2"
