"""Presets of the GemsDiff model (package data)."""
