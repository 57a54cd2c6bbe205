"""How a conformance check reports: one AssertionError naming the part, the check and what was expected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def label(kind: str, part: object, name: str | None = None) -> str:
    """``denoiser 'toy_mlp' (ToyDenoiser)``: how messages name a part."""
    cls = part if isinstance(part, type) else type(part)
    return f"{kind} {name!r} ({cls.__name__})" if name else f"{kind} {cls.__name__}"


def expect(ok: bool, part: str, check: str, expected: str) -> None:
    """Raise ``AssertionError("<part>: <check>: expected <expected>")`` unless ``ok``."""
    if not ok:
        raise AssertionError(f"{part}: {check}: expected {expected}")


def running(part: str, check: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, with any exception turned into a failure of ``check``."""
    try:
        return call(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{part}: {check}: expected it to run, it raised {type(exc).__name__}: {exc}") from exc


def same(a: Any, b: Any) -> bool:
    """Exact equality of tensors (NaN equal to NaN), mappings and sequences of them, and plain values."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a, b) or torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def close(a: Tensor, b: Tensor, tolerance: float) -> bool:
    """``|a - b| <= tolerance * (1 + max |a|)`` everywhere: equal up to float noise relative to the output's scale."""
    if a.shape != b.shape:
        return False
    scale = 1.0 + float(a.abs().max()) if a.numel() else 1.0
    return bool(((a.double() - b.double()).abs() <= tolerance * scale).all())


def devices() -> list[torch.device]:
    """The devices a check runs on: the CPU, and the first GPU when one is present."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
