"""Shared denoiser embeddings (crystalgen.denoisers.embeddings): hand-computed values and periodicity."""

from __future__ import annotations

import math

import torch

from crystalgen.denoisers.embeddings import (
    PeriodicFourierFeatures,
    SinusoidalTimeEmbedding,
    periodic_fourier_features,
    sinusoidal_embedding,
)


def test_sinusoidal_embedding_values():
    t = torch.tensor([0.0, 1.0, 10.0])
    e = sinusoidal_embedding(t, 4, max_period=100.0)  # w = [1, 100^-1/2 = 0.1]
    expected = torch.tensor([[math.sin(v), math.sin(0.1 * v), math.cos(v), math.cos(0.1 * v)] for v in (0.0, 1.0, 10.0)])
    torch.testing.assert_close(e, expected)
    assert SinusoidalTimeEmbedding(5)(torch.tensor([3])).shape == (1, 5)


def test_periodic_fourier_features_values_and_periodicity():
    x = torch.tensor([[0.25, 0.0, 0.5]])
    f = periodic_fourier_features(x, 2)  # per coordinate: sin(2 pi x), sin(4 pi x), cos(2 pi x), cos(4 pi x)
    expected = torch.tensor([[1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, -1.0, 1.0]])
    torch.testing.assert_close(f, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(periodic_fourier_features(x + torch.tensor([[1.0, -2.0, 3.0]]), 2), f, atol=1e-5, rtol=0)
    assert PeriodicFourierFeatures(3).out_dim(3) == 18
