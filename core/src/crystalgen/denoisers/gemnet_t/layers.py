"""Dense layers of GemNet (Gasteiger, Becker & Guennemann 2021, appendix of the paper and OCP's reference code):
bias-free linear maps with a scaled SiLU, residual pairs, He-orthogonal initialisation and fixed scale factors.

Every residual sum is multiplied by 1/sqrt(2) and every summation over neighbours by a fitted constant, so that
activations keep unit variance through the depth of the network (GemNet section 4, "scaling factors").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

INV_SQRT_2 = 1 / math.sqrt(2.0)


def he_orthogonal_(weight: Tensor) -> Tensor:
    """Orthogonal matrix, standardised over its fan-in and scaled to variance 1/fan_in (GemNet's initialiser).

    ``weight`` is (out, in) for a linear layer or (fan_a, fan_b, out) for the bilinear tensors, whose fan-in is
    the product of the first two axes.
    """
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        dims = (0, 1) if weight.dim() == 3 else (1,)
        fan_in = math.prod(weight.shape[d] for d in dims)
        var, mean = torch.var_mean(weight, dim=dims, keepdim=True, unbiased=True)
        weight.copy_((weight - mean) / (var + 1e-6).sqrt() / math.sqrt(fan_in))
    return weight


class ScaledSiLU(nn.Module):
    """SiLU / 0.6: SiLU of a unit Gaussian has a standard deviation of about 0.6, so this keeps unit scale."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x) * (1 / 0.6)


class Dense(nn.Module):
    """Linear map (bias-free by default) followed by the scaled SiLU or nothing."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = ScaledSiLU() if activation else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        he_orthogonal_(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))


class ResidualLayer(nn.Module):
    """x + Dense(Dense(x)), both with activation, divided by sqrt(2)."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(Dense(units, units, activation=True), Dense(units, units, activation=True))

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.dense(x)) * INV_SQRT_2


def residual_mlp(units_in: int, units: int, num_residual: int) -> nn.Sequential:
    """Dense(units_in -> units) with activation, then ``num_residual`` residual layers (GemNet's atom MLP)."""
    return nn.Sequential(Dense(units_in, units, activation=True), *(ResidualLayer(units) for _ in range(num_residual)))


class ScaleFactor(nn.Module):
    """A fixed multiplier after a summation, fitted once so that the output variance equals a reference's.

    ``forward(y, ref)`` returns ``scale * y``. While :meth:`observe` is active it accumulates the mean
    per-feature variance of ``ref`` and of the scaled output; :meth:`fit` then multiplies ``scale`` by
    sqrt(Var(ref) / Var(out)) (GemNet's AutomaticFit). The value is a buffer: saved with the model, not trained.
    """

    scale: Tensor

    def __init__(self, name: str, value: float = 1.0) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("scale", torch.tensor(float(value)))
        self._sums: list[float] | None = None

    def forward(self, y: Tensor, ref: Tensor) -> Tensor:
        out = y * self.scale
        if self._sums is not None and out.shape[0] > 1:
            rows = out.shape[0]
            self._sums[0] += float(ref.detach().var(dim=0).mean()) * rows
            self._sums[1] += float(out.detach().var(dim=0).mean()) * rows
            self._sums[2] += rows
        return out

    def observe(self) -> None:
        self._sums = [0.0, 0.0, 0.0]

    def fit(self) -> float:
        """Apply the observed variance ratio; returns the new value (unchanged when nothing was observed)."""
        sums, self._sums = self._sums, None
        if sums is None or sums[2] == 0 or sums[1] <= 0:
            return float(self.scale)
        self.scale.mul_(math.sqrt(sums[0] / sums[1]))
        return float(self.scale)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, scale={float(self.scale):.4g}"
