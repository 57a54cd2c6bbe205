"""The plugin's own test: everything it registers keeps its kind's contract (run after `pip install .`)."""

from crystalgen.testing import check_plugin


def test_every_part_passes_the_conformance_checks():
    assert ("model", "minimal") in check_plugin("crystalgen-minimal-diffusion")
