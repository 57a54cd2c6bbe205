"""The decoder check: one Decoded per crystal, and a bad state reported per crystal, never raised."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from crystalgen.conformance.expect import expect, label, running
from crystalgen.decoders.base import Decoder
from crystalgen.models.base import Decoded
from crystalgen.specs import DecoderSpec
from crystalgen.state import Condition


def check_decoder(decoder: Decoder, state: Mapping[str, Tensor], condition: Condition, *,
                  spec: DecoderSpec | None = None, name: str | None = None) -> None:
    """Hold ``decoder`` to the decoder contract on one input (what a model hands it: ``check_model`` records it).

    Checked: the state holds what its spec reads; it returns a list of one :class:`Decoded` per crystal, each a
    Structure or a failure reason; with every floating-point entry of the state NaN (a diverged sample) it still
    returns one Decoded per crystal, each a failure with its reason, and raises nothing. Raises AssertionError
    naming the failed check.
    """
    part = label("decoder", decoder, name)
    spec = spec or type(decoder).spec
    missing = spec.reads - set(state)
    expect(not missing, part, "inputs", f"a state holding what its spec reads, it lacks {', '.join(sorted(missing))}")
    decoded = running(part, "decode", decoder, dict(state), condition)
    per_crystal(part, "decode", decoded, condition.num_crystals)
    bad = {key: torch.full_like(x, float("nan")) if x.dtype.is_floating_point else x for key, x in state.items()}
    decoded = running(part, "decode a NaN state", decoder, bad, condition)
    per_crystal(part, "decode a NaN state", decoded, condition.num_crystals)
    expect(all(not d.ok for d in decoded), part, "decode a NaN state", "every crystal reported as a failure")


def per_crystal(part: str, check: str, decoded: Any, num_crystals: int) -> None:
    expect(isinstance(decoded, list) and len(decoded) == num_crystals, part, check,
           f"a list of {num_crystals} Decoded, one per crystal, got {type(decoded).__name__} of "
           f"{len(decoded) if hasattr(decoded, '__len__') else '?'}")
    for i, d in enumerate(decoded):
        expect(isinstance(d, Decoded), part, check, f"Decoded items, item {i} is {type(d).__name__}")
        expect(d.ok != bool(d.reason), part, check, f"item {i} to hold either a Structure or a failure reason")
