"""The crystalgen conformance checks on every part SyMat registers (model, encoder, denoiser)."""

from crystalgen.testing import check_plugin


def test_every_part_passes_the_conformance_checks():
    check_plugin("crystalgen-symat")
