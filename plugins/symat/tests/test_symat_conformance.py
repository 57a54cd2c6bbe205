"""The crystalgen conformance checks on every part SyMat registers (model, encoder, denoiser)."""

from crystalgen.testing import check_gradients_reach_parameters, check_plugin


def test_every_part_passes_the_conformance_checks():
    check_plugin("crystalgen-symat")


def test_one_training_loss_reaches_every_parameter():
    """DistributedDataParallel (torchrun) refuses a model whose loss leaves a parameter without a gradient."""
    assert check_gradients_reach_parameters("symat")
