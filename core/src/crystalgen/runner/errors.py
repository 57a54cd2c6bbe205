"""Runner failures that the command line reports as one line (no torch import here: the CLI loads it early)."""

from __future__ import annotations


class NoCrystalsGeneratedError(RuntimeError):
    """Every requested crystal failed. The sample directory is still written, with one reason per crystal, so the
    failure can be inspected; the message names the first crystal's reason."""


class MemoryBudgetError(ValueError):
    """One crystal alone would exceed the memory budget; the message gives the estimate, the budget and the option
    that raises it."""
