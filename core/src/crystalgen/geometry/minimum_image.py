"""Minimum-image displacements: the shortest periodic copy of a fractional difference, exact for any cell shape.

Rounding each fractional component into [-0.5, 0.5] gives the shortest copy only for near-orthogonal cells; in a
skewed cell another image can be shorter (CDVAE and GemsDiff search the 27 nearest cells, which is not always
enough either). The rounded copy's length bounds the answer, so the shortest copy lies in the (a, b) image box
that bound allows (image_search.py); along c, the best image of each line of images is the integer nearest the
line's closest approach, because the squared length is a parabola in n_c. Nothing is left unsearched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crystalgen.geometry.image_search import box_shape, contiguous_blocks, face_heights, fractional_reach, image_lines
from crystalgen.geometry.neighbors import DEFAULT_CHUNK_SIZE
from crystalgen.geometry.radius_search import crystal_index


def minimum_image(
    frac_delta: Tensor, lattice: Tensor, num_atoms: Tensor, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[Tensor, Tensor]:
    """Shortest Cartesian copy of each fractional difference, and the integer shift that gives it.

    frac_delta (N, 3) fractional differences (e.g. x_target - x_noisy per atom), lattice (B, 3, 3) rows = lattice
    vectors in Angstrom, num_atoms (B,) rows of frac_delta per crystal. Returns ``(vec, shift)``: vec (N, 3) in
    Angstrom equals (frac_delta + shift) @ lattice and is the shortest over all integer shifts; shift (N, 3)
    int64. Exactly equally short copies (e.g. a difference of 0.5 in a cubic cell) are chosen deterministically
    but arbitrarily. vec is differentiable w.r.t. frac_delta and lattice with the shift held fixed (the minimum
    image is piecewise constant in it).
    """
    crystal = crystal_index(num_atoms.to(frac_delta.device), frac_delta.shape[0])
    shift = _shortest_shift(frac_delta.double(), lattice.double(), crystal, chunk_size)
    dtype = torch.promote_types(frac_delta.dtype, lattice.dtype)
    frac = (frac_delta + shift.to(frac_delta.dtype)).to(dtype)
    return torch.bmm(frac.unsqueeze(1), lattice.to(dtype).index_select(0, crystal)).squeeze(1), shift


@torch.no_grad()
def _shortest_shift(frac_delta: Tensor, lattice: Tensor, crystal: Tensor, chunk_size: int) -> Tensor:
    rows_lattice = lattice.index_select(0, crystal)
    rounded = -torch.round(frac_delta)
    wrapped = frac_delta + rounded
    bound = torch.bmm(wrapped.unsqueeze(1), rows_lattice).squeeze(1).norm(dim=-1)
    reach = fractional_reach(bound, face_heights(lattice).index_select(0, crystal))[:, :2]
    best = torch.empty_like(rounded, dtype=torch.long)
    for start, stop in contiguous_blocks(box_shape(reach).prod(dim=-1), chunk_size):
        lines = image_lines(wrapped[start:stop], reach[start:stop], rows_lattice[start:stop])
        n_c = torch.round(lines.nearest)
        squared = (n_c - lines.nearest).square_().mul_(lines.step_sq).add_(lines.gap_sq)
        shortest = torch.full((stop - start,), math.inf, dtype=squared.dtype, device=squared.device)
        shortest = shortest.scatter_reduce(0, lines.row, squared, "amin")
        # The first line of each row reaching its minimum (deterministic among exact ties).
        line = torch.arange(lines.row.numel(), device=squared.device)
        at_minimum = (squared == shortest.index_select(0, lines.row)).nonzero().squeeze(1)
        chosen = torch.full((stop - start,), line.numel(), dtype=torch.long, device=squared.device)
        chosen = chosen.scatter_reduce(0, lines.row.index_select(0, at_minimum), at_minimum, "amin")
        best[start:stop] = torch.stack([n.index_select(0, chosen) for n in (lines.n_a, lines.n_b, n_c.long())], dim=-1)
    return rounded.long() + best
