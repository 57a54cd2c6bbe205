"""Where a variable's values may lie, by space (crystalgen.specs), so that every update can be held to it."""

from __future__ import annotations

from torch import Tensor

FRACTIONAL = frozenset({"torus", "cell"})


def domain_problem(space: str, x: Tensor, num_classes: int | None = None) -> str | None:
    """Why ``x`` is not a value of ``space`` (None when it is)."""
    if space in ("classes", "atomic_numbers"):
        if x.dtype.is_floating_point or x.dtype.is_complex:
            return f"integer class values, got dtype {x.dtype}"
        low = 0 if space == "classes" else 1
        high = None if num_classes is None else num_classes - 1 + low
        if x.numel() and (int(x.min()) < low or (high is not None and int(x.max()) > high)):
            return f"values in {low}..{high if high is not None else 'K'}, got {int(x.min())}..{int(x.max())}"
        return None
    if not x.dtype.is_floating_point:
        return f"floating-point values, got dtype {x.dtype}"
    if not bool(x.isfinite().all()):
        return "finite values"
    if space in FRACTIONAL and x.numel() and (float(x.min()) < 0 or float(x.max()) >= 1):
        return f"fractional coordinates in [0, 1), got {float(x.min()):.3g}..{float(x.max()):.3g}"
    return None
