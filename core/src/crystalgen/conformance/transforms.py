"""Checks of the encoder kind: a StructureTransform (analytic, cached, run in worker processes) and a learned
Encoder."""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import Any

import torch
from pymatgen.core import Structure
from torch import Tensor
from torch_geometric.data import Batch, Data

from crystalgen.conformance.expect import expect, label, running, same
from crystalgen.encoders.base import Encoder, SkipCrystal, StructureTransform
from crystalgen.specs import EncoderSpec


def check_transform(transform: StructureTransform, structures: Sequence[Structure], *, spec: EncoderSpec | None = None,
                    name: str | None = None) -> list[Data]:
    """Hold ``transform`` to the transform contract on ``structures``; returns its outputs (skipped ones left out).

    Checked: its cache key is JSON (it is hashed); it survives pickling (workers receive a copy) and the copy gives
    the same output; two calls give the same output; it raises nothing but SkipCrystal, and skips at most some
    of the crystals; every output is a ``Data`` holding each field its spec (default: its class's, for its
    options) says it writes. Raises AssertionError naming the failed check.
    """
    part = label("transform", transform, name)
    spec = spec or type(transform).declare(transform.options())
    running(part, "cache key", json.dumps, transform.cache_key(), sort_keys=True)
    copy = running(part, "pickling", lambda: pickle.loads(pickle.dumps(transform)))
    out = []
    for i, structure in enumerate(structures):
        try:
            data = transform(structure)
        except SkipCrystal:
            continue
        except Exception as exc:
            raise AssertionError(f"{part}: transform: expected a Data or SkipCrystal for structure {i} "
                                 f"({structure.composition.reduced_formula}), it raised {type(exc).__name__}: {exc}") from exc
        expect(isinstance(data, Data), part, "transform", f"a torch_geometric Data, got {type(data).__name__}")
        missing = [f for f in sorted(spec.provides) if getattr(data, f, None) is None]
        expect(not missing, part, "declared fields", f"every field of spec.provides, structure {i} lacks {', '.join(missing)}")
        expect(same(data.to_dict(), transform(structure).to_dict()), part, "determinism", "the same Data twice")
        expect(same(data.to_dict(), copy(structure).to_dict()), part, "pickling", "a pickled copy to give the same Data")
        out.append(data)
    expect(bool(out), part, "transform", f"at least one of the {len(structures)} structures transformed, all were skipped")
    return out


def check_encoder(encoder: Encoder, batch: Batch, *, spec: EncoderSpec | None = None, name: str | None = None) -> None:
    """Hold a learned ``encoder`` to its contract on ``batch`` (what a model hands it: ``check_model`` records it).

    Checked, in eval mode: every field its spec reads is in the batch; the same output twice; every tensor it
    returns is finite, on the batch's device, with one row per crystal; ``gaussian_posterior`` (when provided) is a
    pair ``(mu, logvar)`` of one shape. Raises AssertionError naming the failed check.
    """
    part = label("encoder", encoder, name)
    spec = spec or type(encoder).spec
    missing = [f for f in sorted(spec.reads) if getattr(batch, f, None) is None]
    expect(not missing, part, "inputs", f"a batch holding what its spec reads, it lacks {', '.join(missing)}")
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            out = running(part, "forward", encoder, batch)
            expect(same(out, encoder(batch)), part, "determinism", "the same output for the same batch (eval mode)")
    finally:
        encoder.train(was_training)
    device = batch.batch.device if getattr(batch, "batch", None) is not None else torch.device("cpu")
    for i, x in enumerate(tensors(out)):
        expect(x.device == device, part, "output device", f"the batch's device {device}, got {x.device} (tensor {i})")
        expect(x.shape[:1] == (batch.num_graphs,), part, "output rows", f"{batch.num_graphs} rows, one per crystal, got {tuple(x.shape)}")
        expect(bool(x.isfinite().all()), part, "output", "finite values")
    if "gaussian_posterior" in spec.provides:
        expect(isinstance(out, tuple) and len(out) == 2 and out[0].shape == out[1].shape, part, "gaussian_posterior",
               "a pair (mu, logvar) of one shape")


def tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in tensors(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in tensors(v)]
    return []
