"""What a plugin distribution requires of crystalgen-core, read from its installed metadata.

A plugin declares the core versions it was built for as an ordinary requirement
(``crystalgen-core[metrics]>=0.2,<0.3``); the host compares it with the installed core before importing the
plugin, so that a plugin made for another contract is refused with its reason instead of failing later.
"""

from __future__ import annotations

import importlib.metadata as metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

CORE_DISTRIBUTION = "crystalgen-core"


def core_requirement(dist: metadata.Distribution | None) -> Requirement | None:
    """The distribution's unconditional requirement on crystalgen-core (extras allowed), or None."""
    for spec in (dist.requires or []) if dist is not None else []:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) != CORE_DISTRIBUTION:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            return requirement
    return None


def installed_core_version() -> str:
    """The installed crystalgen-core version ("0" when running from a source tree without installation)."""
    try:
        return metadata.version(CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0"
