"""Selecting parameters (and buffers) by name prefix, as fine-tuning (``trainer.init_from_keys``) and training stages
(``Stage.trainable``) do.

A prefix names a module or a tensor of ``model.state_dict()``: ``denoiser`` selects ``denoiser.atom.0.weight`` but not
``denoiser_head.bias`` (prefixes match at a dot), ``denoiser.atom.0.weight`` selects that tensor alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def selected(name: str, prefixes: Sequence[str]) -> bool:
    """Whether ``name`` lies under one of ``prefixes`` (every name when there are none)."""
    if not prefixes:
        return True
    return any(name == p or name.startswith(f"{p}.") for p in (prefix.rstrip(".") for prefix in prefixes))


def unmatched(names: Iterable[str], prefixes: Sequence[str]) -> list[str]:
    """The prefixes that select none of ``names`` (a misspelt module name)."""
    names = list(names)
    return [p for p in prefixes if not any(selected(n, [p]) for n in names)]
