"""The 1D U-Net denoiser: shapes for any length, weight standardisation, time conditioning, gradients, its face as a
denoiser part."""

from __future__ import annotations

import pytest
import torch

from crystalgen import Condition
from crystalgen_structrepdiff.representation import VARIABLE
from crystalgen_structrepdiff.unet import LinearAttention, UNet1D, WeightStandardizedConv1d


@pytest.mark.parametrize("length", [1, 37, 128])
def test_output_matches_input_shape_for_any_length(length):
    net = UNet1D(length, dim=8, dim_mults=(1, 2, 4), groups=4, attention_heads=2, attention_dim_head=8)
    x = torch.randn(3, length)
    out = net.predict(x, torch.tensor([1, 10, 50]))
    assert out.shape == (3, length) and torch.isfinite(out).all()


def test_as_a_denoiser_it_predicts_the_representation_from_the_state():
    torch.manual_seed(0)
    net = UNet1D(20, dim=8, dim_mults=(1, 2), groups=4, attention_heads=2, attention_dim_head=8)
    x, t = torch.randn(2, 20), torch.tensor([3, 7])
    out = net({VARIABLE: x}, t, Condition(2, {VARIABLE: (2, 20)}))
    assert set(out) == {VARIABLE} and torch.equal(out[VARIABLE], net.predict(x, t))


def test_weight_standardised_convolution_ignores_the_kernel_scale_and_offset():
    torch.manual_seed(0)
    conv = WeightStandardizedConv1d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(4, 2, 11)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(0.3)
    # exact up to the eps added to the kernel variance (1e-5 against a variance of about 0.05)
    torch.testing.assert_close(conv(x), before, rtol=2e-3, atol=2e-3)


def test_time_changes_the_prediction_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet1D(20, dim=8, dim_mults=(1, 2), groups=4, attention_heads=2, attention_dim_head=8)
    x = torch.randn(2, 20)
    a, b = net.predict(x, torch.tensor([1, 1])), net.predict(x, torch.tensor([400, 400]))
    assert (a - b).abs().max() > 1e-4
    net.predict(x, torch.tensor([3, 7])).pow(2).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_linear_attention_is_residual_and_linear_in_length():
    attn = LinearAttention(8, heads=2, dim_head=4)
    torch.nn.init.zeros_(attn.to_out[0].weight)
    torch.nn.init.zeros_(attn.to_out[0].bias)
    x = torch.randn(2, 8, 33)
    torch.testing.assert_close(attn(x), x)  # zero output projection: identity through the residual
    # the context is (heads, d, d) whatever the length, so a long signal costs no quadratic memory
    long = torch.randn(1, 8, 20000)
    assert attn(long).shape == long.shape
