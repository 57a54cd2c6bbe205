"""The model check: a model built from a preset trains, samples and decodes deterministically, and each of its
parts honours its kind's contract on the inputs the model itself hands it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from pymatgen.core import Structure
from torch import Tensor, nn

from crystalgen.conformance.crystals import check_crystals
from crystalgen.conformance.decoders import check_decoder
from crystalgen.conformance.denoisers import check_denoiser
from crystalgen.conformance.expect import devices, expect, generator, label, running, same
from crystalgen.conformance.processes import check_process
from crystalgen.conformance.transforms import check_encoder, check_transform
from crystalgen.data.crystal import collate
from crystalgen.decoders.base import Decoder
from crystalgen.models.assembly import PROCESSES, Assembly, slot_type
from crystalgen.models.base import Decoded, GenerativeModel
from crystalgen.processes.base import NoiseProcess
from crystalgen.samplers.base import Sampler, SamplingModel, denoise
from crystalgen.state import SampleRequest


@dataclass
class Calls:
    """The arguments of the first call of each recorded part (the model's own inputs to it)."""

    args: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def check_model(model: str | type[GenerativeModel], preset: str = "small", *, overrides: Sequence[str] = (),
                structures: Sequence[Structure] | None = None, num_samples: int = 3, steps: int = 2,
                device: torch.device | str | None = None) -> list[tuple[str, str]]:
    """Hold a model (registry name or class) and its parts to their contracts, on the configuration of ``preset``
    with ``overrides`` (``["model.denoiser.hidden=8"]``, as on the command line).

    On ``device`` (default: the CPU, and the GPU when present): the preset's parts fit; its transform passes
    :func:`check_transform` on ``structures`` (default: small textbook crystals); after ``fit_statistics`` the
    training loss is a finite scalar, the same for the same seed, whose gradients are finite and reach the
    weights; ``num_samples`` crystals sampled in ``steps`` steps of the default sampler give the same state for the
    same seeds and one Decoded per crystal, also from a NaN state; the memory estimate is a positive float64 per
    crystal. Its denoiser, decoder and learned encoder are then checked (:func:`check_denoiser`,
    :func:`check_decoder`, :func:`check_encoder`) on the inputs the model handed them, and each process
    (:func:`check_process`) on the model's shapes, arguments and predictions. Returns the ``(kind, name)`` of every
    part checked. Raises AssertionError naming the failed check.
    """
    from crystalgen.plugins import get
    from crystalgen.runner.config import compose

    cls: type[GenerativeModel] = get("model", model) if isinstance(model, str) else model
    part = label("model", cls, getattr(cls, "name", None))
    cfg = running(part, f"preset {preset!r}", compose, cls.presets(), preset, model_name=cls.name, overrides=overrides)
    assembly: Assembly = running(part, "assembly", cls.assemble, cfg.model)
    transform = assembly.build("transform")
    data = check_transform(transform, structures or check_crystals(), spec=assembly.parts["transform"].spec,
                           name=assembly.parts["transform"].name)
    for dev in [torch.device(device)] if device is not None else devices():
        check_model_on(cls, part, cfg.model, assembly, data, num_samples, steps, dev)
    return [(slot_type(slot).kind, p.name) for slot, p in assembly.parts.items()]


def check_model_on(cls: type[GenerativeModel], part: str, cfg: Any, assembly: Assembly, data: list[Any],
                   num_samples: int, steps: int, device: torch.device) -> None:
    from crystalgen.plugins import get

    torch.manual_seed(0)
    model = running(part, "from_config", cls.from_config, cfg)
    running(part, "fit_statistics", model.fit_statistics, data)
    model.to(device)
    parts = located(model, assembly, part)
    calls = Calls()
    batch = collate(data).to(device)
    with recording(model, parts, calls, "encoder"):
        check_training(model, part, batch)
    model.eval()
    sampler = get("sampler", model.default_sampler)(steps=steps)

    def sample() -> tuple[Any, dict[str, Tensor]]:
        torch.manual_seed(2)
        condition = model.prepare_sampling(SampleRequest(num_samples))
        return condition, sampler.run(model, condition, generator=generator(device, 0))

    with recording(model, parts, calls, "denoiser"):
        condition, state = running(part, f"sampling with {sampler.name}", sample)
    expect(same(state, sample()[1]), part, "sampling determinism", "the same final state for the same seeds")
    with recording(model, parts, calls, "decoder"):
        decoded = running(part, "decode", model.decode, state, condition)
    expect(isinstance(decoded, list) and len(decoded) == num_samples and all(isinstance(d, Decoded) for d in decoded),
           part, "decode", f"a list of {num_samples} Decoded")
    bad = {var: torch.full_like(x, float("nan")) if x.dtype.is_floating_point else x for var, x in state.items()}
    decoded = running(part, "decode a NaN state", model.decode, bad, condition)
    expect(isinstance(decoded, list) and len(decoded) == num_samples, part, "decode a NaN state",
           f"a list of {num_samples} Decoded, one per crystal")
    check_memory(model, part)
    check_parts(model, assembly, parts, calls, condition)


def check_training(model: GenerativeModel, part: str, batch: Any) -> None:
    model.train()
    losses = []
    for _ in range(2):
        torch.manual_seed(1)
        losses.append(running(part, "training_loss", model.training_loss, batch))
    loss = losses[0].get("loss") if isinstance(losses[0], Mapping) else None
    expect(isinstance(loss, Tensor) and loss.dim() == 0 and bool(loss.isfinite()), part, "training_loss",
           'a dict whose "loss" is a finite scalar tensor')
    assert isinstance(loss, Tensor)
    expect(same(loss.detach(), losses[1]["loss"].detach()), part, "training_loss determinism", "the same loss for the same seed")
    model.zero_grad()
    running(part, "backward", loss.backward)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    expect(bool(grads) and any(bool(g.abs().sum() > 0) for g in grads), part, "backward", "gradients reaching the weights")
    expect(all(bool(g.isfinite().all()) for g in grads), part, "backward", "finite gradients")
    model.zero_grad()


def check_memory(model: GenerativeModel, part: str) -> None:
    nodes = torch.tensor([2, 5])
    for training in (True, False):
        cost = running(part, "memory_cost", model.memory_cost, nodes, training=training)
        expect(isinstance(cost, Tensor) and tuple(cost.shape) == (2,) and cost.dtype == torch.float64
               and bool((cost > 0).all() and cost.isfinite().all()), part, f"memory_cost (training={training})",
               "a positive finite float64 per crystal")
    most = model.max_sample_nodes()
    expect(most is None or (isinstance(most, int) and most >= 1), part, "max_sample_nodes", f"None or a positive int, got {most!r}")


def located(model: GenerativeModel, assembly: Assembly, part: str) -> dict[str, Any]:
    """Slot -> the model's instance of that part (found by its class among the model's modules and attributes)."""
    found: dict[str, Any] = {}
    candidates = list(model.modules()) + [v for v in vars(model).values() if isinstance(v, Decoder)]
    for slot in ("encoder", "denoiser", "decoder"):
        if slot in assembly.parts:
            matches = [c for c in candidates if type(c) is assembly.parts[slot].cls]
            expect(len(matches) == 1, part, "parts", f"one {slot} of class {assembly.parts[slot].cls.__name__} among "
                   f"its modules and attributes, found {len(matches)}")
            found[slot] = matches[0]
    return found


class Recorder:
    """Stands in for a decoder (not a module, so no hooks) and records the first call it forwards."""

    def __init__(self, decoder: Any, slot: str, calls: Calls) -> None:
        self.decoder, self.slot, self.calls = decoder, slot, calls

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.args.setdefault(self.slot, args)
        return self.decoder(*args, **kwargs)


@contextmanager
def recording(model: GenerativeModel, parts: Mapping[str, Any], calls: Calls, slot: str) -> Iterator[None]:
    """Record the first call the model makes to the part in ``slot`` while the block runs."""
    target = parts.get(slot)
    if isinstance(target, nn.Module):
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            calls.args.setdefault(slot, tuple(dict(a) if isinstance(a, dict) else a for a in args))

        handle = target.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        return
    names = [k for k, v in vars(model).items() if v is target] if target is not None else []
    for name in names:
        setattr(model, name, Recorder(target, slot, calls))
    try:
        yield
    finally:
        for name in names:
            setattr(model, name, target)


def check_parts(model: GenerativeModel, assembly: Assembly, parts: Mapping[str, Any], calls: Calls, condition: Any) -> None:
    """Each part on what the model handed it: processes on the sampling shapes, arguments and the model's
    predictions at the first recorded denoiser input."""
    spaces = {var: v.space for var, v in assembly.spec.variables.items()}
    spec_of = {slot: p.spec for slot, p in assembly.parts.items()}
    name_of = {slot: p.name for slot, p in assembly.parts.items()}
    model_part = label("model", model, model.name)
    if "encoder" in parts:
        expect("encoder" in calls.args, model_part, "parts", "training to call its encoder")
        check_encoder(parts["encoder"], calls.args["encoder"][0], spec=spec_of["encoder"], name=name_of["encoder"])
    expect("denoiser" in calls.args, model_part, "parts", "sampling to call its denoiser")
    state, t, denoiser_condition = calls.args["denoiser"][:3]
    check_denoiser(parts["denoiser"], state, t, denoiser_condition, spaces=spaces, spec=spec_of["denoiser"],
                   name=name_of["denoiser"])
    if "decoder" in calls.args:
        decoder_state, decoder_condition = calls.args["decoder"][:2]
        check_decoder(parts["decoder"], decoder_state, decoder_condition, spec=spec_of["decoder"], name=name_of["decoder"])
    else:
        expect(False, model_part, "parts", "decode to call its decoder")
    processes = cast(dict[str, NoiseProcess], dict(model.processes.items()))
    prior = {var: condition.constrain(var, proc.sample_prior(condition.shapes[var], device=condition.device,
                                                             generator=generator(condition.device, 0), **condition.args(var)))
             for var, proc in processes.items()}
    T = next(iter(processes.values())).num_steps
    sampling_model = cast(SamplingModel, model)
    with torch.no_grad():
        prediction = denoise(sampling_model, prior, torch.full((condition.num_crystals,), T, device=condition.device), condition)
    for var, proc in processes.items():
        check_process(proc, condition.shapes[var], args=Sampler.step_args(sampling_model, var, prior, condition),
                      prediction=prediction[var],
                      device=condition.device, name=name_of[f"{PROCESSES}.{var}"])
