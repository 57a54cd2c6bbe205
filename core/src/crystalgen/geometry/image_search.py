"""Which periodic images can hold a point within a given distance: face heights and per-row image boxes.

A Cartesian vector v = x @ L (x fractional, L rows = lattice vectors) with |v| <= r has |x_a| <= r / h_a on each
axis, where h_a is the cell's height over the face spanned by the two other lattice vectors (h_a = V / |b x c|).
Bounding image searches by these heights, not by the lattice lengths, is what keeps them exact for skewed
triclinic cells and for cells thinner than the search radius (where many images are needed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

# Widening of the image boxes and of the intervals along c (in images): an extra candidate only costs time (the
# exact distance test rejects it), a missed one is a wrong graph, so round generously.
_REACH_RELATIVE_SLACK = 1e-5
_REACH_ABSOLUTE_SLACK = 1e-6
LINE_SLACK = 1e-5
# A face height this far below the longest lattice vector is a numerically singular cell.
_SINGULAR_RELATIVE_HEIGHT = 1e-6


def face_heights(lattice: Tensor) -> Tensor:
    """Perpendicular widths (B, 3) in Angstrom of cells ``lattice`` (B, 3, 3), rows = lattice vectors.

    h_a = |V| / |b x c| (and cyclically), i.e. 1 / |a*| with a* the reciprocal vector. Computed from cross
    products rather than an inverse so that a singular cell yields a height of zero instead of an exception.
    Raises ValueError naming the crystal when a lattice is singular or not finite.
    """
    a, b, c = lattice.unbind(dim=-2)
    faces = torch.stack((torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)), dim=-2)
    volume = (a * faces[..., 0, :]).sum(dim=-1, keepdim=True).abs()
    heights = volume / faces.norm(dim=-1)
    longest = lattice.norm(dim=-1).amax(dim=-1, keepdim=True)
    bad = ~(torch.isfinite(heights) & (heights > _SINGULAR_RELATIVE_HEIGHT * longest)).all(dim=-1)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"crystal {index} of the batch has a singular or non-finite lattice {lattice[index].tolist()}: "
            "no periodic images can be enumerated; check the lattice (rows are the lattice vectors, Angstrom)"
        )
    return heights


def check_image_count(images_per_pair: Tensor, limit: int) -> None:
    """Refuse searches of more than ``limit`` images per atom pair (B,): such a cell has collapsed, it is no crystal."""
    too_many = images_per_pair > limit
    if bool(too_many.any()):
        index = int(too_many.nonzero()[0, 0])
        raise ValueError(
            f"crystal {index} of the batch would need {int(images_per_pair[index])} periodic images per atom pair: "
            "its cell is far thinner than the search radius; check the lattice (rows are lattice vectors, Angstrom) "
            "or lower the cutoff"
        )


def fractional_reach(radius: Tensor, heights: Tensor) -> Tensor:
    """Largest |fractional component| (R, 3) a vector of length <= ``radius`` (R,) can have, slightly widened."""
    return radius.unsqueeze(-1) / heights * (1 + _REACH_RELATIVE_SLACK) + _REACH_ABSOLUTE_SLACK


def box_shape(reach: Tensor) -> Tensor:
    """Images per axis (R, k) of a box that holds every n with |delta + n|_a <= reach_a, whatever delta is.

    The admissible n_a run from ceil(-reach_a - delta_a) to floor(reach_a - delta_a): at most floor(2 reach_a) + 1
    integers.
    """
    return (torch.floor(2 * reach) + 1).long()


def contiguous_blocks(cost: Tensor, budget: int) -> list[tuple[int, int]]:
    """Split items into contiguous [start, stop) blocks costing at most ``budget`` (a block holds at least one item)."""
    blocks, start, done = [], 0, 0
    cost_end = torch.cumsum(cost, 0).tolist()
    for index, end in enumerate(cost_end):
        if end - done > budget and index > start:
            blocks.append((start, index))
            start, done = index, cost_end[index - 1]
    if start < len(cost_end):
        blocks.append((start, len(cost_end)))
    return blocks


def _xyz(components: Iterable[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The x, y and z components of a vector field, as the triple ImageLines holds."""
    x, y, z = components
    return x, y, z


@dataclass(frozen=True)
class ImageLines:
    """Lines of images along c through each row's (a, b) image box: point(n_c) = start + n_c * c, Cartesian Angstrom.

    One line per (row p, n_a, n_b) with |delta_a + n_a| <= reach_a and likewise for b, in (row, n_a, n_b) order;
    every field is (L,). ``nearest`` is the real n_c where the line comes closest to the Cartesian origin and
    ``gap_sq`` that closest squared distance. Solving along c in closed form (the squared length is a parabola
    in n_c) means the third axis is never enumerated.
    """

    row: Tensor
    n_a: Tensor
    n_b: Tensor
    start: tuple[Tensor, Tensor, Tensor]
    step: tuple[Tensor, Tensor, Tensor]
    step_sq: Tensor
    nearest: Tensor
    gap_sq: Tensor


def image_lines(frac_delta: Tensor, reach_ab: Tensor, lattice: Tensor) -> ImageLines:
    """Lines for rows ``frac_delta`` (P, 3) with (a, b) reaches ``reach_ab`` (P, 2), lattice (P, 3, 3) rows = vectors.

    Rows have boxes of different shapes, so lines are laid out ragged (repeat_interleave), which keeps every
    operation one-dimensional and contiguous; work per line is a few gathers and a dozen multiply-adds.
    """
    device = frac_delta.device
    origin = torch.ceil(-reach_ab - frac_delta[:, :2]).long()
    shape = box_shape(reach_ab)
    per_row = shape[:, 0] * shape[:, 1]
    row = torch.repeat_interleave(torch.arange(per_row.numel(), device=device), per_row)
    cell = torch.arange(row.numel(), device=device) - (torch.cumsum(per_row, 0) - per_row).index_select(0, row)
    width_b = shape[:, 1].index_select(0, row)
    n_a = origin[:, 0].index_select(0, row) + cell // width_b
    n_b = origin[:, 1].index_select(0, row) + cell % width_b
    n_a_real, n_b_real = n_a.to(frac_delta.dtype), n_b.to(frac_delta.dtype)
    vectors = lattice.permute(1, 2, 0).contiguous()  # (lattice vector, xyz, P): contiguous rows to gather from
    corner = frac_delta[:, 0] * vectors[0] + frac_delta[:, 1] * vectors[1] + frac_delta[:, 2] * vectors[2]
    start = _xyz(
        corner[xyz]
        .index_select(0, row)
        .addcmul_(n_a_real, vectors[0, xyz].index_select(0, row))
        .addcmul_(n_b_real, vectors[1, xyz].index_select(0, row))
        for xyz in range(3)
    )
    step = _xyz(vectors[2, xyz].index_select(0, row) for xyz in range(3))
    step_sq = (vectors[2] * vectors[2]).sum(dim=0).index_select(0, row)
    dot = (start[0] * step[0]).addcmul_(start[1], step[1]).addcmul_(start[2], step[2])
    nearest = dot / -step_sq
    # |start|^2 - (start . c)^2 / |c|^2; the cancellation error (~1e-16 |start|^2) is far below any distance scale.
    gap_sq = (start[0] * start[0]).addcmul_(start[1], start[1]).addcmul_(start[2], start[2]).addcmul_(dot, nearest)
    return ImageLines(
        row=row, n_a=n_a, n_b=n_b, start=start, step=step, step_sq=step_sq, nearest=nearest, gap_sq=gap_sq
    )
