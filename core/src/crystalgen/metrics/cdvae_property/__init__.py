"""CDVAE's independent property models (DimeNet++ on CrystalNN graphs), loaded from their published weights
without running any pickled code. See docs/property_models.md."""

from crystalgen.metrics.cdvae_property.checkpoint import PropertyCheckpoint, read_property_checkpoint
from crystalgen.metrics.cdvae_property.safe_unpickle import UnsafePickleError, load_zip_pickle

__all__ = ["PropertyCheckpoint", "UnsafePickleError", "load_zip_pickle", "read_property_checkpoint"]
