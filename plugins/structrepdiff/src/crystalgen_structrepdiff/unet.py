"""The 1D U-Net that predicts the noise of a representation vector (paper appendix A.3.2).

The representation R (length N) is a one-channel signal. Each resolution level has two ResNet blocks (weight-
standardised convolutions followed by GroupNorm, Kolesnikov et al. 2020 "Big Transfer"; the diffusion time enters
as a scale and shift after the first norm) and a linear-attention block (multi-head, 4 heads x 64 = 256 dims in
the paper, Shen et al. 2021 efficient attention), then halves the length. The middle stage has two ResNet blocks
with linear attention between them; the upsampling stages mirror the downsampling ones, each block taking the skip
connection of its counterpart; a final ResNet block and a 1x1 convolution give the predicted noise.

Registered as denoiser ``structrepdiff_unet1d``: it reads and predicts the one variable ``representation``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crystalgen import Condition, Denoiser, DenoiserSpec, SinusoidalTimeEmbedding
from crystalgen_structrepdiff.representation import VARIABLE


class WeightStandardizedConv1d(nn.Conv1d):
    """Conv1d whose kernel is standardised per output channel before use (zero mean, unit variance; BiT)."""

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        w = self.weight
        mean = w.mean(dim=(1, 2), keepdim=True)
        var = w.var(dim=(1, 2), keepdim=True, unbiased=False)
        return F.conv1d(x, (w - mean) * (var + eps).rsqrt(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class Block(nn.Module):
    """Weight-standardised conv (kernel 3) -> GroupNorm -> optional time scale/shift -> SiLU."""

    def __init__(self, dim_in: int, dim_out: int, groups: int) -> None:
        super().__init__()
        self.conv = WeightStandardizedConv1d(dim_in, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(self, x: Tensor, scale_shift: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ResnetBlock(nn.Module):
    """Two Blocks with the time embedding as scale and shift of the first, plus a (1x1 projected) residual."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * dim_out))
        self.block1 = Block(dim_in, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups)
        self.residual = nn.Conv1d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        scale_shift = self.time(time).unsqueeze(-1).chunk(2, dim=1)
        return self.block2(self.block1(x, scale_shift)) + self.residual(x)


class LinearAttention(nn.Module):
    """Multi-head linear attention, pre-normalised and residual: softmax over features for queries and over
    positions for keys, so the cost is linear in the length (Shen et al. 2021)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.norm = nn.GroupNorm(1, dim)
        self.to_qkv = nn.Conv1d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv1d(hidden, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, _, n = x.shape
        q, k, v = (t.reshape(b, self.heads, self.dim_head, n) for t in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        q = q.softmax(dim=2) * self.scale
        k = k.softmax(dim=3)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, self.heads * self.dim_head, n)
        return x + self.to_out(out)


class UNet1D(Denoiser):
    """eps_theta(R_t, t) for representation vectors (B, N) (or another real-valued parameterisation of them: the
    network does not care what it is trained to output).

    Args:
        length: N, the representation size (padded inside to a multiple of 2^(levels - 1)); set by the model.
        dim: channels of the first level.
        dim_mults: channel multipliers per level (the number of levels is their count).
        groups: GroupNorm groups.
        attention_heads, attention_dim_head: linear attention (paper: 4 heads, 256 dims in total).
    """

    spec = DenoiserSpec(predicts={VARIABLE: frozenset({"eps", "x0", "score"})}, reads=frozenset({VARIABLE}))

    def __init__(self, length: int, dim: int = 64, dim_mults: tuple[int, ...] = (1, 2, 4, 8), groups: int = 8,
                 attention_heads: int = 4, attention_dim_head: int = 64) -> None:
        super().__init__()
        if length < 1 or not dim_mults:
            raise ValueError(f"UNet1D needs length >= 1 and at least one level, got length={length}, dim_mults={dim_mults}")
        self.length = int(length)
        self.multiple = 2 ** (len(dim_mults) - 1)
        time_dim = 4 * dim
        self.time = nn.Sequential(SinusoidalTimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))
        self.init_conv = nn.Conv1d(1, dim, 7, padding=3)
        dims = [dim, *(dim * m for m in dim_mults)]
        stages = list(zip(dims[:-1], dims[1:], strict=True))

        def attention(channels: int) -> LinearAttention:
            return LinearAttention(channels, attention_heads, attention_dim_head)

        self.down = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(stages):
            last = i == len(stages) - 1
            self.down.append(nn.ModuleList([
                ResnetBlock(d_in, d_in, time_dim, groups),
                ResnetBlock(d_in, d_in, time_dim, groups),
                attention(d_in),
                nn.Conv1d(d_in, d_out, 3, padding=1) if last else nn.Conv1d(d_in, d_out, 4, stride=2, padding=1),
            ]))
        mid = dims[-1]
        self.mid = nn.ModuleList([ResnetBlock(mid, mid, time_dim, groups), attention(mid), ResnetBlock(mid, mid, time_dim, groups)])
        self.up = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(stages)):
            last = i == len(stages) - 1
            self.up.append(nn.ModuleList([
                ResnetBlock(d_out + d_in, d_out, time_dim, groups),
                ResnetBlock(d_out + d_in, d_out, time_dim, groups),
                attention(d_out),
                nn.Conv1d(d_out, d_in, 3, padding=1) if last else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(d_out, d_in, 3, padding=1)),
            ]))
        self.final = ResnetBlock(2 * dim, dim, time_dim, groups)
        self.out = nn.Conv1d(dim, 1, 1)

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """The prediction for ``representation``; the network reads nothing else."""
        return {VARIABLE: self.predict(state[VARIABLE], t)}

    def predict(self, x: Tensor, t: Tensor) -> Tensor:
        """x (B, N) noisy normalised representations, t (B,) integer levels -> predicted noise (B, N)."""
        pad = (-self.length) % self.multiple
        h = self.init_conv(F.pad(x.unsqueeze(1), (0, pad)))
        first = h
        time = self.time(t)
        skips = []
        for stage in self.down:  # each stage a ModuleList (its keys 0..3 are the checkpoints' names)
            block1, block2, attn, downsample = stage.children()
            h = block1(h, time)
            skips.append(h)
            h = attn(block2(h, time))
            skips.append(h)
            h = downsample(h)
        block1, attn, block2 = self.mid
        h = block2(attn(block1(h, time)), time)
        for stage in self.up:
            block1, block2, attn, upsample = stage.children()
            h = block1(torch.cat([h, skips.pop()], dim=1), time)
            h = attn(block2(torch.cat([h, skips.pop()], dim=1), time))
            h = upsample(h)
        h = self.final(torch.cat([h, first], dim=1), time)
        return self.out(h).squeeze(1)[:, : self.length]
