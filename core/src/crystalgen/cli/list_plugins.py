"""List installed plugins, their components (tasks included) and versions, each model's conditions and the tasks it
can run, each model's parts (and the installed parts that could replace each one), plugins not loaded (disabled,
incompatible) and any plugin that failed to load or clashed.

Examples:
  crystalgen list
  crystalgen list --json
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def model_parts(name: str, cls) -> dict:
    """Slot -> {part, fits, fits_with_options} of model ``name`` as its ``small`` preset assembles it, or {error}
    when it cannot. ``fits``: parts that fit when only their name is given; ``fits_with_options``: parts that fit
    once given the ``required`` options they have no default for and the ``set`` values (a process's prediction)."""
    from crystalgen.runner.config import compose

    try:
        assembly = cls.assemble(compose(cls.presets(), "small", model_name=name).model)  # checks the fit
        return {slot: {"part": part.name, "fits": [f.name for f in fits if f.as_is],
                       "fits_with_options": {f.name: {"required": list(f.required), "set": dict(f.settings)}
                                             for f in fits if not f.as_is}}
                for slot, part in assembly.parts.items() for fits in [assembly.fits(slot)]}
    except Exception as exc:  # a broken preset must not hide the rest of the listing
        return {"error": f"{type(exc).__name__}: {exc}"}


def capabilities(cls) -> dict:
    """The conditions a model accepts and the tasks it can run (crystalgen.tasks)."""
    from crystalgen.runner.tasks import registered_tasks
    from crystalgen.tasks.base import supported_tasks

    return {"conditions": sorted(cls.conditions), "tasks": supported_tasks(cls, registered_tasks())}


def with_options(entry: dict) -> list:
    """The Fit of each part of a slot's ``fits_with_options`` (for its one-line form)."""
    from crystalgen.models.assembly import Fit

    return [Fit(name, tuple(o["required"]), tuple(o["set"].items())) for name, o in entry["fits_with_options"].items()]


def inventory() -> dict:
    """Plugins, components by kind (with the plugin and distribution that provide them), each model's parts,
    failures, conflicts."""
    from crystalgen.plugins import KINDS, default_host

    host = default_host()
    components = {}
    for kind in KINDS.values():
        registry = host.registry(kind)
        components[kind] = [
            {"name": e.name, "plugin": e.plugin, "distribution": e.distribution, "version": e.version}
            for e in (registry.entry(n) for n in registry)
        ]
    return {
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module}
                    for p in host.plugins],
        "components": components,
        "unloaded": [{"name": u.plugin, "distribution": u.distribution, "version": u.version, "status": u.status,
                      "reason": u.reason} for u in host.unloaded],
        "models": {name: model_parts(name, cls) for name, cls in host.registry("model").items()},
        "model_capabilities": {name: capabilities(cls) for name, cls in host.registry("model").items()},
        "failures": [{"plugin": f.plugin, "distribution": f.distribution, "error": f.error} for f in host.failures],
        "conflicts": [c.describe() for c in host.conflicts],
        "warnings": host.warnings,
    }


def run(args: argparse.Namespace) -> int:
    data = inventory()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print("Plugins:")
    for p in data["plugins"]:
        print(f"  {p['name']:<16} {p['distribution'] or '-'} {p['version'] or ''}  ({p['module']})")
    for u in data["unloaded"]:
        print(f"  {u['name']:<16} {u['distribution'] or '-'} {u['version'] or ''}  {u['status']}: {u['reason']}")
    for kind, entries in data["components"].items():
        print(f"\n{kind}{'es' if kind.endswith('s') else 's'} ({len(entries)}):")
        for e in entries:
            origin = e["distribution"] or e["plugin"]
            print(f"  {e['name']:<24} {origin} {e['version'] or ''}")
        if not entries:
            print("  (none)")
    if data["models"]:
        print("\nmodel parts (slot: part, then the installed parts that fit the slot by name alone, * marking the "
              "preset's,\n  and those that fit only with options: `needs X` = options without a default, `k=v` = a "
              "value to set):")
    for model, slots in data["models"].items():
        able = data["model_capabilities"][model]
        print(f"  {model}  (conditions: {', '.join(able['conditions']) or 'none'}; tasks: {', '.join(able['tasks'])})")
        if "error" in slots:
            print(f"    cannot be assembled: {slots['error']}")
            continue
        for slot, entry in slots.items():
            fits = ", ".join(f"{n}*" if n == entry["part"] else n for n in entry["fits"])
            print(f"    {slot:<26} {entry['part']:<24} fits: {fits}")
            if entry["fits_with_options"]:
                print(f"    {'':<26} {'':<24} with options: {', '.join(map(str, with_options(entry)))}")
    problems = [f"plugin {f['plugin']!r} ({f['distribution'] or 'unknown distribution'}) failed to load: {f['error']}"
                for f in data["failures"]] + [f"plugin {u['name']!r} ({u['distribution'] or 'unknown distribution'}) is "
                                              f"incompatible: {u['reason']}" for u in data["unloaded"]
                                              if u["status"] == "incompatible"] + data["conflicts"] + data["warnings"]
    if problems:
        print("\nProblems:")
        for line in problems:
            print(f"  {line}")
    return 0
