"""crystalgen: a plugin framework for generative models of periodic crystals."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crystalgen-core")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
