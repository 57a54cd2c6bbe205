"""The plugin host: builds the pluggy manager, loads entry points, merges registries.

Built-ins are registered like any plugin (the core's own entry point ``core = crystalgen.builtin``). A plugin
that fails to import is recorded and reported, never fatal; two plugins registering one name are reported and
the first (by load order: the core, then entry points sorted by name) is kept.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from crystalgen import hookspecs
from crystalgen.registry import Conflict, Entry, Registry

ENTRY_POINT_GROUP = "crystalgen.plugins"

#: hook name -> registry kind, in the order `crystalgen list` shows them.
KINDS: dict[str, str] = {
    "crystalgen_models": "model",
    "crystalgen_encoders": "encoder",
    "crystalgen_denoisers": "denoiser",
    "crystalgen_noise_processes": "noise process",
    "crystalgen_samplers": "sampler",
    "crystalgen_decoders": "decoder",
    "crystalgen_datasets": "dataset",
    "crystalgen_property_predictors": "property predictor",
}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised."""

    plugin: str
    distribution: str | None
    error: str
    details: str

    def describe(self) -> str:
        dist = self.distribution or "unknown distribution"
        return f"plugin {self.plugin!r} from {dist} failed: {self.error}"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    module: str


@dataclass
class PluginHost:
    """Everything the installed plugins provide, by kind, plus what went wrong while loading them."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Any:
        return self.registries[kind].get(name)

    def problems(self) -> list[str]:
        return [f.describe() for f in self.failures] + [c.describe() for c in self.conflicts]


def _load_entry_points(group: str) -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=group)
    # The core first, so that its built-ins win any clash; the rest in a stable order.
    return sorted(eps, key=lambda ep: (ep.name != "core", ep.name))


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def build_host(extra_plugins: list[Any] | None = None, group: str = ENTRY_POINT_GROUP) -> PluginHost:
    """Create the plugin manager, load every entry point of ``group`` and merge the registries.

    ``extra_plugins`` are registered after the entry points (tests use this for in-process plugins).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager=manager, registries={kind: Registry(kind) for kind in KINDS.values()})

    loaded: list[tuple[Any, PluginInfo]] = []
    for ep in _load_entry_points(group):
        dist, version = _dist_of(ep)
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            host.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        info = PluginInfo(ep.name, dist, version, getattr(module, "__name__", ep.value))
        loaded.append((module, info))
    for i, obj in enumerate(extra_plugins or []):
        name = getattr(obj, "__name__", f"extra{i}")
        loaded.append((obj, PluginInfo(name, None, None, name)))

    registered: list[PluginInfo] = []
    for module, info in loaded:
        try:
            manager.register(module, name=info.name)
        except Exception as exc:  # e.g. a hookimpl whose signature does not match the spec
            host.failures.append(PluginFailure(info.name, info.distribution, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        registered.append(info)
    host.plugins = registered
    _collect(host, {info.name: info for info in registered})
    return host


def _collect(host: PluginHost, infos: dict[str, PluginInfo]) -> None:
    """Call each hook implementation separately (to know who provided what) and fill the registries.

    pluggy calls implementations last-registered-first; we use registration order instead so that the core's
    built-ins are seen first and win clashes.
    """
    order = {name: i for i, name in enumerate(infos)}
    for hook_name, kind in KINDS.items():
        impls = getattr(host.manager.hook, hook_name).get_hookimpls()
        for impl in sorted(impls, key=lambda im: order.get(im.plugin_name, len(order))):
            info = infos[impl.plugin_name]
            try:
                items = list((impl.function() or {}).items())
            except Exception as exc:
                host.failures.append(
                    PluginFailure(info.name, info.distribution, f"{hook_name} raised {type(exc).__name__}: {exc}", traceback.format_exc())
                )
                continue
            for name, obj in items:
                conflict = host.registries[kind].add(Entry(name, obj, info.name, info.distribution, info.version))
                if conflict is not None:
                    host.conflicts.append(conflict)


@functools.lru_cache(maxsize=1)
def default_host() -> PluginHost:
    """The process-wide host over the installed entry points (built once)."""
    return build_host()


def get(kind: str, name: str) -> Any:
    """Look up an installed component by kind and name, e.g. ``get("sampler", "ddim")``."""
    return default_host().get(kind, name)


def reset() -> None:
    """Forget the cached host (after installing a plugin in-process, or in tests)."""
    default_host.cache_clear()
    importlib.invalidate_caches()
