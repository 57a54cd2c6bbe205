"""The small preset as GemsDiff's tests load it."""

from __future__ import annotations

from importlib import resources

from omegaconf import DictConfig, OmegaConf


def small_config() -> DictConfig:
    """A fresh copy of the `small` preset."""
    return OmegaConf.load(str(resources.files("crystalgen_gemsdiff.configs").joinpath("small.yaml")))
