"""Every part crystalgen-gemsdiff registers keeps its kind's contract (crystalgen.testing.check_plugin): the model on
its small preset, the denoiser ``gemsnet`` on the inputs the model hands it."""

from __future__ import annotations

from crystalgen.testing import check_gradients_reach_parameters, check_plugin


def test_every_registered_part_passes_the_conformance_checks():
    checked = check_plugin("crystalgen-gemsdiff")
    assert ("model", "gemsdiff") in checked


def test_one_training_loss_reaches_every_parameter():
    """DistributedDataParallel (torchrun) refuses a model whose loss leaves a parameter without a gradient."""
    assert check_gradients_reach_parameters("gemsdiff")
