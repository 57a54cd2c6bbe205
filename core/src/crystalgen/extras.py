"""The optional evaluation suite of crystalgen-core and the one line that says how to get it.

``pip install crystalgen-core`` brings the contract, the runner and the data layer; the metrics' heavy
dependencies come with the ``metrics`` extra (the model plugins require it). Commands that evaluate or plot call
:func:`require_metrics` first, so that a missing package is named before any work, not deep inside a metric.
"""

from __future__ import annotations

import importlib.util

#: import names of the packages the ``metrics`` extra installs
METRICS_MODULES = ("matminer", "chgnet", "pandas", "matplotlib")
METRICS_INSTALL = "pip install 'crystalgen-core[metrics]'"


class MissingExtraError(ImportError):
    """A command needs an optional part of crystalgen-core that is not installed."""


def require_metrics(purpose: str) -> None:
    """Raise :class:`MissingExtraError` naming the install command when a package of the extra is missing."""
    missing = [name for name in METRICS_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"{purpose} needs the evaluation suite ({', '.join(missing)} not installed): "
                                f"{METRICS_INSTALL}")
