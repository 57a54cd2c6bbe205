"""Which periodic images can hold a point within a given distance: face heights and per-row image boxes.

A Cartesian vector v = x @ L (x fractional, L rows = lattice vectors) with |v| <= r has |x_a| <= r / h_a on each
axis, where h_a is the cell's height over the face spanned by the two other lattice vectors (h_a = V / |b x c|).
Bounding image searches by these heights, not by the lattice lengths, is what keeps them exact for skewed
triclinic cells and for cells thinner than the search radius (where many images are needed).
"""

from __future__ import annotations

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


def check_image_count(shape: Tensor, limit: int) -> None:
    """Refuse boxes (B, 3) of more than ``limit`` images per atom pair: such a cell has collapsed, it is no crystal."""
    per_pair = shape.prod(dim=-1)
    if bool((per_pair > limit).any()):
        index = int((per_pair > limit).nonzero()[0, 0])
        raise ValueError(
            f"crystal {index} of the batch would need {int(per_pair[index])} periodic images per atom pair "
            f"(box {shape[index].tolist()}): its cell is far thinner than the search radius; check the lattice "
            "(rows are lattice vectors, Angstrom) or lower the cutoff"
        )


def fractional_reach(radius: Tensor, heights: Tensor) -> Tensor:
    """Largest |fractional component| (R, 3) a vector of length <= ``radius`` (R,) can have, slightly widened."""
    return radius.unsqueeze(-1) / heights * (1 + _REACH_RELATIVE_SLACK) + _REACH_ABSOLUTE_SLACK


def box_shape(reach: Tensor) -> Tensor:
    """Images per axis (R, 3) of a box that holds every n with |delta + n|_a <= reach_a, whatever delta is.

    The admissible n_a run from ceil(-reach_a - delta_a) to floor(reach_a - delta_a): at most floor(2 reach_a) + 1
    integers. One shape per crystal lets every atom pair of a crystal share one dense box.
    """
    return (torch.floor(2 * reach) + 1).long()


def box_origin(frac_delta: Tensor, reach: Tensor) -> Tensor:
    """First image (R, 3) of each row's box: ceil(-reach - delta) per axis."""
    return torch.ceil(-reach - frac_delta).long()


def rows_by_shape(shape: Tensor) -> list[tuple[tuple[int, ...], Tensor]]:
    """Group rows by box shape so each group is searched with one dense tensor (few groups in practice)."""
    shapes, group = torch.unique(shape, dim=0, return_inverse=True)
    order = torch.argsort(group, stable=True)
    sizes = torch.bincount(group, minlength=shapes.shape[0]).tolist()
    return [(tuple(dims), rows) for dims, rows in zip(shapes.tolist(), torch.split(order, sizes))]


@dataclass(frozen=True)
class ImageLines:
    """Lines along the c axis through a dense (a, b) box of images: point(n_c) = start + n_c * c, Cartesian Angstrom.

    Line (ia, ib) of row p holds the images (origin_a + ia, origin_b + ib, n_c) of frac_delta[p]. Fields are laid
    out with the row axis last, (na, nb, P), so that elementwise work broadcasts over long contiguous rows (torch
    is many times slower when the innermost axis is a short box axis). ``nearest`` is the real n_c closest to the
    Cartesian origin, ``gap_sq`` the squared distance from the origin to the line; ``step`` (3, P) holds the
    components of c and ``step_sq`` (P,) = |c|^2. Solving along c in closed form means the third axis is never
    enumerated.
    """

    start: tuple[Tensor, Tensor, Tensor]
    step: Tensor
    step_sq: Tensor
    nearest: Tensor
    gap_sq: Tensor


def image_lines(frac_delta: Tensor, origin_ab: Tensor, shape_ab: tuple[int, int], lattice: Tensor) -> ImageLines:
    """Lines for rows ``frac_delta`` (P, 3) with (a, b) box origins ``origin_ab`` (P, 2), lattice (P, 3, 3) rows = vectors."""
    vectors = lattice.permute(1, 2, 0).contiguous()  # (lattice vector, xyz, P)
    shifted = frac_delta.T.contiguous()
    shifted[:2] += origin_ab.T.to(shifted.dtype)
    corner = shifted[0] * vectors[0] + shifted[1] * vectors[1] + shifted[2] * vectors[2]
    steps_a = torch.arange(shape_ab[0], dtype=lattice.dtype, device=lattice.device)[:, None]
    steps_b = torch.arange(shape_ab[1], dtype=lattice.dtype, device=lattice.device)[:, None]
    start = tuple(
        (corner[xyz] + steps_a * vectors[0, xyz])[:, None, :] + (steps_b * vectors[1, xyz])[None, :, :] for xyz in range(3)
    )
    step = vectors[2]
    step_sq = (step * step).sum(dim=0)
    nearest = -(start[0] * step[0] + start[1] * step[1] + start[2] * step[2]) / step_sq
    # |start|^2 - (start . c)^2 / |c|^2; the cancellation error (~1e-16 |start|^2) is far below any distance scale.
    gap_sq = start[0] * start[0] + start[1] * start[1] + start[2] * start[2] - nearest * nearest * step_sq
    return ImageLines(start=start, step=step, step_sq=step_sq, nearest=nearest, gap_sq=gap_sq)
