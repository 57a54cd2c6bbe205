"""Presets of StructRepDiff (``small``: CPU-sized; ``paper``: the published settings)."""
