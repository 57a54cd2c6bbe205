"""check_plugin: every part a plugin registers, held to its kind's contract where it is used."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from crystalgen.conformance.expect import expect
from crystalgen.conformance.models import check_model
from crystalgen.conformance.samplers import check_sampler
from crystalgen.models.assembly import assemble, part_sections, resolve, slot_type

#: kinds whose parts are checked inside a model that uses them (they need the model's inputs)
PART_KINDS = ("encoder", "denoiser", "noise process", "decoder")


def registered(plugin: ModuleType | str) -> dict[str, dict[str, Any]]:
    """Kind -> {name: component} that ``plugin`` registers: a hook module, its import name, or a distribution whose
    ``crystalgen.plugins`` entry points name hook modules."""
    from crystalgen.plugins import ENTRY_POINT_GROUP, KINDS

    if isinstance(plugin, ModuleType):
        modules = [plugin]
    else:
        try:
            dist = metadata.distribution(plugin)
            modules = [ep.load() for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except metadata.PackageNotFoundError:
            modules = [importlib.import_module(plugin)]
    out: dict[str, dict[str, Any]] = {}
    for module in modules:
        for hook, kind in KINDS.items():
            implementation = getattr(module, hook, None)
            if implementation is not None:
                out.setdefault(kind, {}).update(implementation() or {})
    return out


def check_plugin(plugin: ModuleType | str, *, overrides: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, str]]:
    """Run the right check for every part ``plugin`` registers (see :func:`registered` for what ``plugin`` may be).

    Models: :func:`check_model` on their ``small`` preset (with ``overrides[model name]``), which also checks each
    part the preset names. Samplers: :func:`check_sampler`. An encoder, denoiser, noise process or decoder that no
    checked model used is checked inside the first installed model (the plugin's own first) whose ``small`` preset
    takes it in a slot with its default options, swapped in by an override. Datasets and property predictors
    have no conformance check. Every check runs on the CPU and, when present, the GPU. Returns the ``(kind, name)`` of every part checked; raises AssertionError naming
    the failed check, or a part no installed model can host.
    """
    overrides = dict(overrides or {})
    parts = registered(plugin)
    expect(bool(parts), f"plugin {plugin!r}", "registration", "at least one component from its hooks")
    checked: set[tuple[str, str]] = set()
    for name in sorted(parts.get("model", {})):
        checked |= set(check_model(parts["model"][name], overrides=overrides.get(name, ())))
        checked.add(("model", name))
    for name, sampler in sorted(parts.get("sampler", {}).items()):
        check_sampler(sampler, name=name)
        checked.add(("sampler", name))
    for kind in PART_KINDS:
        for name in sorted(parts.get(kind, {})):
            if (kind, name) not in checked:
                host, swap = find_host(kind, name, parts[kind][name], parts.get("model", {}))
                checked |= set(check_model(host, overrides=[*overrides.get(host, ()), *swap]))
    return sorted(checked)


def find_host(kind: str, name: str, component: Any, own: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The first model (the plugin's own, then the installed ones by name) with a slot that takes part ``name`` with
    its default options, and the override that swaps it in. Models build their parts by name, so the part must be installed."""
    from crystalgen.plugins import default_host
    from crystalgen.runner.config import compose

    registry = default_host().registry(kind)
    expect(name in registry and registry.get(name) is component, f"{kind} {name!r}", "registration",
           f"the installed {kind} of that name to be this one (install the plugin, e.g. pip install -e .)")
    installed = default_host().registry("model")
    for model in list(sorted(own)) + [m for m in installed if m not in own]:
        cls = own.get(model) or installed.get(model)
        cfg = compose(cls.presets(), "small", model_name=model).model
        assembly = assemble(cls, cfg, check=False)
        for slot in part_sections(cls, cfg):
            if slot_type(slot).kind == kind and name in assembly.replacements(slot):
                # with its default options (a model that handles only another parameterisation cannot host it)
                candidate = resolve(slot, name, {}, assembly.context.get(slot, {}), assembly.host)
                if not assembly.problems(slot, candidate):
                    return model, [f"model.{slot}.name={name}"]
    raise AssertionError(f"{kind} {name!r}: hosting: expected an installed model whose small preset takes it in one of "
                         f"its slots (none does); check it directly with the check of its kind on your own inputs")


