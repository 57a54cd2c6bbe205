"""Predicted lattice parameters -> lattice matrices the decoder can run on.

The lattice head is an unconstrained regression (CDVAE does not clamp it), so a prediction can describe no cell
(angles that do not close) or a cell so thin that the periodic graph would need millions of images. Such a
crystal is marked, given a stand-in cell so that the rest of its batch can proceed, and reported as a failure
when decoded (never silently "fixed").
"""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen import lattice_params_to_matrix

#: Angstrom. A cell thinner than this along any lattice plane normal is treated as implausible: real crystals
#: have interplanar spacings of Niggli cells far above it, and it bounds the decoder's image search to
#: (2 * cutoff / MIN_FACE_HEIGHT + 1)^3 images per atom pair.
MIN_FACE_HEIGHT = 0.5
#: Angstrom^3 per atom of the stand-in cube given to implausible crystals (about a typical solid's).
STAND_IN_VOLUME_PER_ATOM = 15.0


def predicted_cells(lengths: Tensor, angles: Tensor, num_atoms: Tensor) -> tuple[Tensor, Tensor, list[str | None]]:
    """(lattice (B, 3, 3) Angstrom, plausible (B,) bool, reason per crystal or None).

    lengths (B, 3) Angstrom and angles (B, 3) degrees; implausible crystals get a cube of
    STAND_IN_VOLUME_PER_ATOM * N.
    """
    matrix, valid = lattice_params_to_matrix(lengths, angles, strict=False)
    safe = torch.where(valid[:, None, None], matrix, torch.eye(3, dtype=matrix.dtype, device=matrix.device))
    heights = 1.0 / torch.linalg.inv(safe).norm(dim=-2)
    thin = valid & (heights.min(dim=-1).values < MIN_FACE_HEIGHT)
    plausible = valid & ~thin
    side = (STAND_IN_VOLUME_PER_ATOM * num_atoms.to(matrix.dtype)) ** (1 / 3)
    stand_in = side[:, None, None] * torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    reasons: list[str | None] = [None] * lengths.shape[0]
    for i in (~plausible).nonzero().flatten().tolist():
        params = ", ".join(f"{v:.4g}" for v in torch.cat([lengths[i], angles[i]]).tolist())
        if not bool(valid[i]):
            reasons[i] = f"invalid predicted lattice (a, b, c, alpha, beta, gamma = {params})"
        else:
            reasons[i] = f"implausibly thin predicted lattice (height {float(heights[i].min()):.3g} A; a, b, c, alpha, beta, gamma = {params})"
    return torch.where(plausible[:, None, None], matrix, stand_in), plausible, reasons
