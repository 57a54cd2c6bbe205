"""Model recipes: the contract between a method and the runner (see base.py)."""

from crystalgen.models.base import Decoded, GenerativeModel, UnsupportedRequestError

__all__ = ["Decoded", "GenerativeModel", "UnsupportedRequestError"]
