"""`import crystalgen` is the public face: light to import, every advertised name resolves, type checkers see the
same names, and the plugins (ours, the test fixtures and the worked example) import nothing deeper than it and crystalgen.testing.
EXCEPTIONS lists the deep imports left today; the test fails when one disappears, so the list only shrinks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import crystalgen

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted([*ROOT.glob("plugins/*/src"), *ROOT.glob("tests/fixtures/*/src"), *ROOT.glob("examples/*/src"),
                         *ROOT.glob("examples/*/tests")])
ALLOWED_MODULES = {"crystalgen", "crystalgen.testing"}

#: (file relative to the repository, deep module it imports) still allowed; remove entries as they are switched.
EXCEPTIONS = {
    # the Data fields DimeNet++ reads, which CDVAE's transform writes and declares in its EncoderSpec
    ("plugins/cdvae/src/crystalgen_cdvae/transform.py", "crystalgen.encoders.dimenet_pp.encoder"),
    # CDVAE's CrystalNN bond graph, shared with its property models (metrics); written at preprocessing time
    ("plugins/cdvae/src/crystalgen_cdvae/transform.py", "crystalgen.metrics.cdvae_property.crystalnn_graph"),
}


def deep_imports() -> set[tuple[str, str]]:
    """(file, module) for every import of a crystalgen module other than the public ones, at any depth of a file."""
    found = set()
    for source in PLUGIN_SOURCES:
        for path in source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                modules = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                for module in modules:
                    if module.split(".")[0] == "crystalgen" and module not in ALLOWED_MODULES:
                        found.add((str(path.relative_to(ROOT)), module))
    return found


def public_names_imported() -> set[str]:
    """Names plugins take from ``crystalgen`` itself."""
    names = set()
    for source in PLUGIN_SOURCES:
        for path in source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "crystalgen" and node.level == 0:
                    names |= {alias.name for alias in node.names}
    return names


def test_plugins_import_only_the_public_face():
    found = deep_imports()
    new = sorted(found - EXCEPTIONS)
    assert not new, f"plugins import internal modules; use `from crystalgen import ...` (add a name there if needed): {new}"
    gone = sorted(EXCEPTIONS - found)
    assert not gone, f"no longer imported, remove from EXCEPTIONS: {gone}"
    missing = public_names_imported() - set(crystalgen.__all__)
    assert not missing, f"imported from crystalgen but not exported: {sorted(missing)}"


def test_every_public_name_resolves_and_type_checkers_see_the_same_names():
    tree = ast.parse(Path(crystalgen.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    typed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert all(alias.asname == alias.name for node in block.body for alias in node.names)  # explicit re-exports
    assert typed == crystalgen._EXPORTS
    for name in crystalgen.__all__:
        assert getattr(crystalgen, name) is not None, name
    assert crystalgen.Sampler.__module__ == "crystalgen.samplers.base"
    assert crystalgen.CONTRACT_VERSION == "2.3"


def test_import_crystalgen_stays_light():
    code = "import sys, crystalgen; print(sorted(m for m in ('torch', 'pymatgen', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
