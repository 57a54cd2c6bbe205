"""Named registries of components, filled by the plugin host, with helpful lookup errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


class UnknownComponentError(LookupError):
    """A name that no installed plugin registered; the message lists what exists."""


@dataclass(frozen=True)
class Entry:
    """One registered component and where it came from."""

    name: str
    obj: Any
    plugin: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class Conflict:
    """Two plugins registered the same name for one kind; the first registration is kept."""

    kind: str
    name: str
    kept: Entry
    rejected: Entry

    def describe(self) -> str:
        def who(e: Entry) -> str:
            return f"plugin {e.plugin!r} ({e.distribution or 'unknown distribution'})"

        return (
            f"{self.kind} {self.name!r} is registered twice: kept {who(self.kept)}, "
            f"ignored {who(self.rejected)}. Uninstall one of them or rename the component."
        )


@dataclass
class Registry:
    """Components of one kind by name (e.g. all samplers)."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    #: installed plugins that were not loaded, and why: an unknown name may be theirs
    not_loaded: list[str] = field(default_factory=list)

    def add(self, entry: Entry) -> Conflict | None:
        kept = self.entries.get(entry.name)
        if kept is not None:
            return Conflict(self.kind, entry.name, kept, entry)
        self.entries[entry.name] = entry
        return None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownComponentError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        names = sorted(self.entries)
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        listing = ", ".join(names) if names else "none installed"
        install = " Install the plugin that provides it (e.g. pip install crystalgen-<method>)." if self.kind == "model" else ""
        unloaded = f" Not loaded: {'; '.join(self.not_loaded)}." if self.not_loaded else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {listing}.{install}{unloaded}"

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self.entries[n].obj) for n in self]
