"""The test fixtures' plugins keep their kinds' contracts (crystalgen.testing.check_plugin): the toy model and its
denoiser, the third-party denoiser inside a model that takes it, and the third-party sampler."""

from __future__ import annotations

import pytest

from crystalgen.testing import check_plugin


@pytest.mark.parametrize("distribution, expected", [
    ("crystalgen-toy-model", {("model", "toy"), ("denoiser", "toy_mlp")}),
    ("crystalgen-extra-denoiser", {("denoiser", "set_transformer")}),
    ("crystalgen-extra-sampler", {("sampler", "heun")}),
])
def test_fixture_plugins_pass_the_conformance_checks(distribution, expected):
    assert expected <= set(check_plugin(distribution))
