"""Lattice parameters <-> lattice matrices, and CDVAE's N^(1/3) length scaling, batched in torch.

Conventions used throughout crystalgen:
    lattice   (..., 3, 3) rows are the lattice vectors a, b, c in Angstrom.
    lengths   (..., 3) a, b, c in Angstrom.
    angles    (..., 3) alpha = angle(b, c), beta = angle(a, c), gamma = angle(a, b), in degrees.
Matrices built from parameters use pymatgen's ``Lattice.from_parameters`` orientation (c along z, a in the xz plane),
so that tensors made here and Structures made by pymatgen (e.g. from a CIF) agree to rounding. Parameters do not
record orientation or handedness: matrix -> parameters -> matrix returns the same lattice rotated into that
orientation, and a left-handed cell comes back as its right-handed mirror image.

Every function accepts float32 or float64 and is differentiable. Invalid input raises :class:`InvalidLatticeError`
naming the first bad crystal and its values; with ``strict=False`` the functions return a validity mask instead and
fill the rows of invalid crystals with NaN (the gradient of the valid rows is unaffected), for use in samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, overload

import torch
from torch import Tensor

# A cell counts as degenerate when its volume is below this fraction of a*b*c (the volume of a box with the same
# edges), i.e. when sqrt(1 - cos^2 alpha - cos^2 beta - cos^2 gamma + 2 cos alpha cos beta cos gamma) is below it.
MIN_VOLUME_FRACTION = 1e-6


class InvalidLatticeError(ValueError):
    """Lattice parameters or a lattice matrix that describe no (non-degenerate) cell."""


def _crystal_index(flat_index: int, batch_shape: torch.Size) -> int | tuple[int, ...]:
    if len(batch_shape) <= 1:
        return flat_index
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), batch_shape))


def format_values(values: Tensor) -> str:
    """``(v1, v2, ...)`` with 6 significant digits, for error messages."""
    return "(" + ", ".join(f"{v:.6g}" for v in values.detach().reshape(-1).tolist()) + ")"


def raise_for_invalid(caller: str, valid: Tensor, describe: Callable[[int], str]) -> None:
    """Raise :class:`InvalidLatticeError` for the first False entry of ``valid`` (...,), naming ``caller`` and the
    crystal index; ``describe(flat_index)`` says what is wrong with that crystal."""
    bad = torch.nonzero(~valid.reshape(-1)).flatten()
    if bad.numel() == 0:
        return
    first = int(bad[0])
    more = f" ({bad.numel() - 1} more invalid crystals in the batch)" if bad.numel() > 1 else ""
    raise InvalidLatticeError(f"{caller}: crystal {_crystal_index(first, valid.shape)}: {describe(first)}{more}")


def _volume_fraction_squared(cos: Tensor) -> Tensor:
    """(V / abc)^2 = 1 - sum cos^2 + 2 prod cos: positive exactly when the three angles close into a cell."""
    ca, cb, cg = cos.unbind(-1)
    return 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg


def lattice_params_validity(lengths: Tensor, angles: Tensor) -> Tensor:
    """(...,) bool: finite positive lengths, finite angles in (0, 180) degrees that describe a non-degenerate cell."""
    lengths, angles = lengths.detach().double(), angles.detach().double()
    ok_lengths = (torch.isfinite(lengths) & (lengths > 0)).all(-1)
    ok_angles = (torch.isfinite(angles) & (angles > 0) & (angles < 180)).all(-1)
    fraction2 = _volume_fraction_squared(torch.cos(torch.deg2rad(angles)))
    return ok_lengths & ok_angles & (fraction2 > MIN_VOLUME_FRACTION**2)


def _describe_params(lengths: Tensor, angles: Tensor, i: int) -> str:
    ln, an = lengths.detach().double().reshape(-1, 3)[i], angles.detach().double().reshape(-1, 3)[i]
    if not (torch.isfinite(ln).all() and (ln > 0).all()):
        return f"lengths (a, b, c) = {format_values(ln)} Angstrom; lengths must be finite and positive"
    if not (torch.isfinite(an).all() and (an > 0).all() and (an < 180).all()):
        return f"angles (alpha, beta, gamma) = {format_values(an)} degrees; angles must be finite and strictly between 0 and 180"
    alpha, beta, gamma = an.tolist()
    checks = {
        "alpha + beta > gamma": alpha + beta - gamma,
        "alpha + gamma > beta": alpha + gamma - beta,
        "beta + gamma > alpha": beta + gamma - alpha,
        "alpha + beta + gamma < 360": 360 - alpha - beta - gamma,
    }
    failed = [name for name, margin in checks.items() if margin <= 0]
    reason = f"violates {failed[0]}" if failed else "is within rounding of a flat cell"
    return (
        f"angles (alpha, beta, gamma) = {format_values(an)} degrees describe no cell (the triple {reason}; "
        f"volume below {MIN_VOLUME_FRACTION:g} * a*b*c)"
    )


@overload
def lattice_params_to_matrix(lengths: Tensor, angles: Tensor, *, strict: Literal[True] = ...) -> Tensor: ...
@overload
def lattice_params_to_matrix(lengths: Tensor, angles: Tensor, *, strict: Literal[False]) -> tuple[Tensor, Tensor]: ...
def lattice_params_to_matrix(lengths: Tensor, angles: Tensor, *, strict: bool = True):
    """Lattice matrices (..., 3, 3) (rows a, b, c; Angstrom) in pymatgen's ``Lattice.from_parameters`` orientation.

    Args:
        lengths: (..., 3) a, b, c in Angstrom.
        angles: (..., 3) alpha, beta, gamma in degrees.
        strict: raise :class:`InvalidLatticeError` on invalid crystals (default); if False, return
            ``(matrix, valid)`` with NaN rows where ``valid`` (...,) is False.
    """
    if lengths.shape[-1:] != (3,) or angles.shape != lengths.shape:
        raise ValueError(f"lengths and angles must both have shape (..., 3); got {tuple(lengths.shape)} and {tuple(angles.shape)}")
    valid = lattice_params_validity(lengths, angles)
    if strict:
        raise_for_invalid("lattice_params_to_matrix", valid, lambda i: _describe_params(lengths, angles, i))
        return _params_to_matrix(lengths, angles)
    keep = valid.unsqueeze(-1)
    # Build from harmless stand-ins where invalid so that no NaN enters the graph, then blank those rows.
    safe = _params_to_matrix(torch.where(keep, lengths, torch.ones_like(lengths)), torch.where(keep, angles, torch.full_like(angles, 90.0)))
    matrix = torch.where(keep.unsqueeze(-1), safe, torch.full_like(safe, math.nan))
    return matrix, valid


def _params_to_matrix(lengths: Tensor, angles: Tensor) -> Tensor:
    radians = torch.deg2rad(angles)
    cos, sin = torch.cos(radians), torch.sin(radians)
    ca, cb, cg = cos.unbind(-1)
    sa, sb, _ = sin.unbind(-1)
    a, b, c = lengths.unbind(-1)
    # gamma* is the angle between the projections of a and b on the xy plane (the reciprocal angle);
    # sin(gamma*) = sqrt(1 - cos^2) = (V / abc) / (sin alpha sin beta) > 0 for a valid cell.
    cos_gamma_star = (ca * cb - cg) / (sa * sb)
    sin_gamma_star = torch.sqrt((1.0 - cos_gamma_star * cos_gamma_star).clamp_min(torch.finfo(lengths.dtype).tiny))
    zero = torch.zeros_like(a)
    vector_a = torch.stack([a * sb, zero, a * cb], dim=-1)
    vector_b = torch.stack([-b * sa * cos_gamma_star, b * sa * sin_gamma_star, b * ca], dim=-1)
    vector_c = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([vector_a, vector_b, vector_c], dim=-2)


def lattice_matrix_validity(lattice: Tensor) -> Tensor:
    """(...,) bool: finite lattice whose volume is at least MIN_VOLUME_FRACTION * |a||b||c| (lengths > 0)."""
    lattice = lattice.detach().double()
    finite = torch.isfinite(lattice).all(-1).all(-1)
    safe = torch.where(finite.unsqueeze(-1).unsqueeze(-1), lattice, torch.eye(3, dtype=lattice.dtype, device=lattice.device))
    box = torch.linalg.vector_norm(safe, dim=-1).prod(-1)
    return finite & (box > 0) & (torch.linalg.det(safe).abs() > MIN_VOLUME_FRACTION * box)


def _describe_matrix(lattice: Tensor, i: int) -> str:
    m = lattice.detach().double().reshape(-1, 3, 3)[i]
    rows = "; ".join(format_values(r) for r in m)
    if not torch.isfinite(m).all():
        return f"lattice vectors [{rows}] Angstrom contain NaN or infinity"
    return (
        f"lattice vectors [{rows}] Angstrom are degenerate (volume {torch.linalg.det(m).abs():.3g} A^3 is below "
        f"{MIN_VOLUME_FRACTION:g} * |a||b||c|: a zero vector or coplanar vectors)"
    )


def require_valid_lattice(lattice: Tensor, caller: str) -> None:
    """Raise :class:`InvalidLatticeError` naming ``caller``, the first invalid crystal and its vectors, if any
    lattice (..., 3, 3) is non-finite or degenerate."""
    raise_for_invalid(caller, lattice_matrix_validity(lattice), lambda i: _describe_matrix(lattice, i))


@overload
def lattice_matrix_to_params(lattice: Tensor, *, strict: Literal[True] = ...) -> tuple[Tensor, Tensor]: ...
@overload
def lattice_matrix_to_params(lattice: Tensor, *, strict: Literal[False]) -> tuple[Tensor, Tensor, Tensor]: ...
def lattice_matrix_to_params(lattice: Tensor, *, strict: bool = True):
    """Lengths (..., 3) in Angstrom and angles (..., 3) in degrees of lattices (..., 3, 3) with rows a, b, c.

    Angles use atan2(|u x v|, u . v), which keeps the gradient finite near 0 and 180 degrees (arccos does not).
    With ``strict=False`` returns ``(lengths, angles, valid)`` with NaN where ``valid`` is False.
    """
    if lattice.shape[-2:] != (3, 3):
        raise ValueError(f"lattice must have shape (..., 3, 3); got {tuple(lattice.shape)}")
    if strict:
        require_valid_lattice(lattice, "lattice_matrix_to_params")
        return _matrix_to_params(lattice)
    valid = lattice_matrix_validity(lattice)
    keep = valid.unsqueeze(-1)
    eye = torch.eye(3, dtype=lattice.dtype, device=lattice.device)
    lengths, angles = _matrix_to_params(torch.where(keep.unsqueeze(-1), lattice, eye))
    nan = torch.full_like(lengths, math.nan)
    return torch.where(keep, lengths, nan), torch.where(keep, angles, nan), valid


def _matrix_to_params(lattice: Tensor) -> tuple[Tensor, Tensor]:
    a, b, c = lattice.unbind(-2)
    lengths = torch.linalg.vector_norm(lattice, dim=-1)

    def angle(u: Tensor, v: Tensor) -> Tensor:
        return torch.rad2deg(torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(u, v), dim=-1), (u * v).sum(-1)))

    return lengths, torch.stack([angle(b, c), angle(a, c), angle(a, b)], dim=-1)


def standard_orientation(lattice: Tensor) -> Tensor:
    """The same lattices rotated into pymatgen's ``from_parameters`` orientation (right-handed; Angstrom).

    That orientation has positive real eigenvalues (a sin(beta), b sin(alpha) sin(gamma*), c), which the gl(3)
    logarithm of GemsDiff needs. Fractional coordinates are unchanged by the rotation; a left-handed input
    comes back mirrored.
    """
    return lattice_params_to_matrix(*lattice_matrix_to_params(lattice))


def _cube_root_atoms(num_atoms: Tensor, like: Tensor) -> Tensor:
    if (num_atoms < 1).any():
        bad = int(torch.nonzero(num_atoms.reshape(-1) < 1)[0])
        raise ValueError(f"num_atoms must be >= 1; crystal {bad} has {int(num_atoms.reshape(-1)[bad])}")
    return num_atoms.to(like.dtype).unsqueeze(-1) ** (1.0 / 3.0)


def scale_lengths(lengths: Tensor, num_atoms: Tensor) -> Tensor:
    """CDVAE's ``scale_length``: lengths (..., 3) in Angstrom divided by N^(1/3) (num_atoms (...,))."""
    return lengths / _cube_root_atoms(num_atoms, lengths)


def unscale_lengths(scaled_lengths: Tensor, num_atoms: Tensor) -> Tensor:
    """Inverse of :func:`scale_lengths`: lengths in Angstrom."""
    return scaled_lengths * _cube_root_atoms(num_atoms, scaled_lengths)
