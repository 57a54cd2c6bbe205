"""The plugin host: builds the pluggy manager, loads entry points, merges registries.

Built-ins are registered like any plugin (the core's own entry point ``core = crystalgen.builtin``). A plugin
that fails to import is recorded and reported, never fatal; two plugins registering one name are reported and
the first (by load order: the core, then entry points sorted by name) is kept.

Before importing a plugin the host reads its distribution's requirement on crystalgen-core: a plugin built for
another contract (the installed core outside its range) is not imported, and a plugin named in
``$CRYSTALGEN_DISABLE_PLUGINS`` (entry-point names, comma separated) is skipped. Both are listed by
``crystalgen list``, and looking up a name they would have provided says why it is missing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy

from crystalgen import hookspecs
from crystalgen.plugin_requirements import CORE_DISTRIBUTION, core_requirement, installed_core_version
from crystalgen.registry import Conflict, Entry, Registry

ENTRY_POINT_GROUP = "crystalgen.plugins"
#: entry-point names of plugins to skip without uninstalling them, comma separated (the core cannot be skipped)
DISABLE_ENV = "CRYSTALGEN_DISABLE_PLUGINS"

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
    "crystalgen_tasks": "task",
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
class UnloadedPlugin:
    """An installed plugin the host did not import: disabled by the user, or built for another core."""

    plugin: str
    distribution: str | None
    version: str | None
    status: Literal["disabled", "incompatible"]
    reason: str

    def describe(self) -> str:
        dist = " ".join(filter(None, [self.distribution, self.version])) or "unknown distribution"
        return f"plugin {self.plugin!r} ({dist}) is {self.status}: {self.reason}"


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
    unloaded: list[UnloadedPlugin] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def get(self, kind: str, name: str) -> Any:
        return self.registries[kind].get(name)

    def problems(self) -> list[str]:
        """What went wrong or needs the user's attention (a plugin disabled on purpose is not a problem)."""
        incompatible = [u.describe() for u in self.unloaded if u.status == "incompatible"]
        return [f.describe() for f in self.failures] + incompatible + [c.describe() for c in self.conflicts] + self.warnings


def _load_entry_points(group: str) -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=group)
    # The core first, so that its built-ins win any clash; the rest in a stable order.
    return sorted(eps, key=lambda ep: (ep.name != "core", ep.name))


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def disabled_plugins() -> set[str]:
    """Entry-point names listed in $CRYSTALGEN_DISABLE_PLUGINS."""
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _skip_reason(ep: metadata.EntryPoint, disabled: set[str], core_version: str) -> UnloadedPlugin | None:
    """Why the host must not import this entry point, or None to load it."""
    dist, version = _dist_of(ep)
    if ep.name in disabled and dist != CORE_DISTRIBUTION:
        return UnloadedPlugin(ep.name, dist, version, "disabled", f"named in ${DISABLE_ENV}")
    requirement = core_requirement(getattr(ep, "dist", None))
    if requirement is not None and requirement.specifier and not requirement.specifier.contains(core_version, prereleases=True):
        return UnloadedPlugin(
            ep.name, dist, version, "incompatible",
            f"built for {CORE_DISTRIBUTION}{requirement.specifier} (the plugin contract of those versions), but "
            f"{CORE_DISTRIBUTION} {core_version} is installed; install a {dist or 'plugin'} release made for it, "
            f"or {CORE_DISTRIBUTION}{requirement.specifier}",
        )
    return None


def build_host(extra_plugins: list[Any] | None = None, group: str = ENTRY_POINT_GROUP,
               core_version: str | None = None) -> PluginHost:
    """Create the plugin manager, load every entry point of ``group`` and merge the registries.

    ``extra_plugins`` are registered after the entry points (tests use this for in-process plugins);
    ``core_version`` replaces the installed crystalgen-core version in the compatibility check (tests).
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager=manager, registries={kind: Registry(kind) for kind in KINDS.values()})
    core_version = installed_core_version() if core_version is None else core_version
    disabled = disabled_plugins()

    loaded: list[tuple[Any, PluginInfo]] = []
    entry_points = _load_entry_points(group)
    for ep in entry_points:
        dist, version = _dist_of(ep)
        skip = _skip_reason(ep, disabled, core_version)
        if skip is not None:
            host.unloaded.append(skip)
            continue
        requirement = core_requirement(getattr(ep, "dist", None))
        if dist != CORE_DISTRIBUTION and (requirement is None or not requirement.specifier):
            host.warnings.append(f"plugin {ep.name!r} ({dist or 'unknown distribution'}) declares no version range on "
                                 f"{CORE_DISTRIBUTION}: it may be built for another plugin contract")
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
    unknown = disabled - {ep.name for ep in entry_points}
    if unknown:
        host.warnings.append(f"${DISABLE_ENV} names {', '.join(sorted(unknown))}, which no installed plugin is called")
    if "core" in disabled:
        host.warnings.append(f"${DISABLE_ENV} names core: the core's built-ins cannot be disabled")
    not_loaded = [u.describe() for u in host.unloaded] + [f.describe() for f in host.failures]
    for registry in host.registries.values():
        registry.not_loaded = not_loaded
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
