"""Docs, READMEs and code refer only to what the repository and each distribution ship.

Machine paths and notes kept outside the repository mean nothing to a reader of a clone or of an installed
distribution; a plugin README is that distribution's long description, so it must not send the reader to the
repository's docs/ folder, which the distribution does not contain.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"/work/|\.\./shared|shared/data|implementation[- ]notes|papers/\w+\.md|reference/\w+\.md")
TEXTS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("plugins/*/README.md"), *ROOT.glob("bench/*.py"),
                *ROOT.glob("bench/README.md"), *ROOT.glob("core/src/**/*.py"), *ROOT.glob("plugins/*/src/**/*.py"),
                *ROOT.glob("core/tests/*.py"), *ROOT.glob("plugins/*/tests/*.py")])


def test_no_reference_outside_the_repository() -> None:
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}" for path in TEXTS
            for n, line in enumerate(path.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert len(TEXTS) > 100  # the globs found the tree
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("readme", sorted(ROOT.glob("plugins/*/README.md")), ids=lambda p: p.parent.name)
def test_plugin_readme_points_to_nothing_its_distribution_lacks(readme: Path) -> None:
    text = readme.read_text()
    assert not re.search(r"\bdocs/|\]\(\.\./", text), f"{readme.relative_to(ROOT)} links outside its distribution"
