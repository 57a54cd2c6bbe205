"""The exact search behind the neighbour lists: every (atom pair, lattice image) within a radius, batched.

Per crystal, the image box follows from the cell's face heights (image_search.py). Each atom pair (i, j) gets an
(a, b) box of images placed by its fractional difference; along each line of c images, the ones inside the
sphere form an interval around the line's closest approach (half-width sqrt(r^2 - gap^2) / |c|), so they are
generated directly rather than tested. A final exact test |edge_vec| <= r makes the result independent of how
the interval ends round. All crystals of a batch go through the same few vectorised operations, so the cost
grows with the number of edges, not with the number of crystals or cell shapes. The search runs in float64
whatever the input dtype: float32 inputs get exactly the neighbour set of their values.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen.geometry.image_search import (
    LINE_SLACK,
    box_shape,
    check_image_count,
    contiguous_blocks,
    face_heights,
    fractional_reach,
    image_lines,
)

MAX_IMAGES_PER_PAIR = 10**6
"""Searches needing more images per atom pair raise ValueError: the cell has collapsed far below the radius."""


def crystal_index(num_atoms: Tensor, num_nodes: int | None = None) -> Tensor:
    """(N,) crystal of each atom from ``num_atoms`` (B,), i.e. PyG's ``batch`` vector."""
    crystals = torch.arange(num_atoms.numel(), device=num_atoms.device)
    return torch.repeat_interleave(crystals, num_atoms, output_size=num_nodes)


def atoms_of(crystals: Tensor, num_atoms: Tensor) -> Tensor:
    """Indices of the atoms of ``crystals`` (in that order) in a batch with ``num_atoms`` (B,) per crystal."""
    first_atom = torch.cumsum(num_atoms, 0) - num_atoms
    counts = num_atoms.index_select(0, crystals)
    start = torch.repeat_interleave(first_atom.index_select(0, crystals) - (torch.cumsum(counts, 0) - counts), counts)
    return start + torch.arange(start.numel(), device=start.device)


@torch.no_grad()
def edges_within(
    frac_coords: Tensor, lattice: Tensor, num_atoms: Tensor, radius: Tensor, chunk_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(source, target, offsets, edge_vec) of every image pair within ``radius`` (B,) Angstrom of each crystal.

    Conventions as neighbors.py (source j, target i, offset of j, float64 vectors i -> j image), zero-offset
    self-loops excluded, ordered by target, then source, then offset. Blocks of centres are processed with at
    most about ``chunk_size`` (pair, image) candidates each, which bounds the working memory.
    """
    frac_coords, lattice, radius = frac_coords.double(), lattice.double(), radius.double()
    device = frac_coords.device
    num_nodes = frac_coords.shape[0]
    if int(num_atoms.sum()) != num_nodes:
        raise ValueError(f"num_atoms sums to {int(num_atoms.sum())} but frac_coords has {num_nodes} rows")
    if not bool(torch.isfinite(frac_coords).all()):
        atom = int((~torch.isfinite(frac_coords)).any(dim=-1).nonzero()[0, 0])
        raise ValueError(
            f"frac_coords row {atom} is not finite ({frac_coords[atom].tolist()}); cannot build a periodic graph"
        )
    reach = fractional_reach(radius, face_heights(lattice))
    images_per_pair = box_shape(reach).prod(dim=-1)
    check_image_count(images_per_pair, MAX_IMAGES_PER_PAIR)
    crystal = crystal_index(num_atoms, num_nodes)
    partners = num_atoms.index_select(0, crystal)
    found = []
    for start, stop in contiguous_blocks(partners * images_per_pair.index_select(0, crystal), chunk_size):
        centre = torch.repeat_interleave(torch.arange(start, stop, device=device), partners[start:stop])
        pairs = (centre, partners[start:stop])
        found.append(_edges_of_pairs(frac_coords, lattice, num_atoms, crystal, *pairs, reach, radius))
    if not found:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty, empty.view(0, 3), torch.empty(0, 3, dtype=torch.float64, device=device)
    source, target, offsets, vectors = (torch.cat(column) for column in zip(*found))
    return source, target, offsets, vectors


def _edges_of_pairs(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    crystal: Tensor,
    centre: Tensor,
    partners: Tensor,
    reach: Tensor,
    radius: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Edges of the pairs (centre[p], j) for every atom j of the centre's crystal; centres repeat ``partners`` times.

    Indexing uses index_select throughout: on CPU it is several times faster than advanced indexing.
    """
    device = frac_coords.device
    pair_crystal = crystal.index_select(0, centre)
    first_atom = torch.cumsum(num_atoms, 0) - num_atoms
    pair_start = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners)
    neighbour = first_atom.index_select(0, pair_crystal) + torch.arange(centre.numel(), device=device) - pair_start
    delta = frac_coords.index_select(0, neighbour) - frac_coords.index_select(0, centre)
    lines = image_lines(delta, reach.index_select(0, pair_crystal)[:, :2], lattice.index_select(0, pair_crystal))
    radius_sq = (radius**2).index_select(0, pair_crystal).index_select(0, lines.row)
    half_width = (radius_sq - lines.gap_sq).clamp_(min=0).div_(lines.step_sq).sqrt_().add_(LINE_SLACK)
    first = (lines.nearest - half_width).ceil_()
    count = half_width.add_(lines.nearest).floor_().sub_(first).add_(1).clamp_(min=0).long()
    line = torch.repeat_interleave(torch.arange(count.numel(), device=device), count)
    # Images along a line run upwards from its first one: first + (position in the output - where the line starts).
    line_start = torch.cumsum(count, 0) - count
    n_c = (first.long() - line_start).index_select(0, line) + torch.arange(line.numel(), device=device)
    n_c_real = n_c.to(frac_coords.dtype)
    vec = [
        lines.start[xyz].index_select(0, line).addcmul_(n_c_real, lines.step[xyz].index_select(0, line))
        for xyz in range(3)
    ]
    squared = (vec[0] * vec[0]).addcmul_(vec[1], vec[1]).addcmul_(vec[2], vec[2])
    pair = lines.row.index_select(0, line)
    n_a, n_b = lines.n_a.index_select(0, line), lines.n_b.index_select(0, line)
    source, target = neighbour.index_select(0, pair), centre.index_select(0, pair)
    keep = squared <= radius_sq.index_select(0, line)
    keep &= (source != target) | (n_a != 0) | (n_b != 0) | (n_c != 0)
    kept = keep.nonzero().squeeze(1)
    offsets = torch.stack([n.index_select(0, kept) for n in (n_a, n_b, n_c)], dim=-1)
    vectors = torch.stack([v.index_select(0, kept) for v in vec], dim=-1)
    return source.index_select(0, kept), target.index_select(0, kept), offsets, vectors
