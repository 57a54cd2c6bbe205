"""Predicted properties for the metrics suite (CDVAE's property EMD and property-optimisation success rates).

Three sources, one interface (:class:`PropertyPredictor`: Structures in, one float per crystal out):

* ``cdvae_perov_5`` / ``cdvae_carbon_24`` / ``cdvae_mp_20`` (and ``cdvae`` with ``path=``): CDVAE's own
  independent DimeNet++ property models, read from a folder of their weights (``$CRYSTALGEN_CDVAE_PROP_MODELS``
  or ``models_dir=``: the folder holding ``perovskite/``, ``carbon/``, ``mp20/`` as CDVAE shipped them);
  see docs/property_models.md for how faithfully they are reproduced and their measured errors;
* ``chgnet_energy``: CHGNet's energy per atom (weights ship inside the chgnet wheel);
* anything a plugin registers through the ``crystalgen_property_predictors`` hook.

Importing this module is cheap; models are loaded by the factories.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

#: Environment variable naming the folder with CDVAE's property models (perovskite/, carbon/, mp20/).
MODELS_ENV = "CRYSTALGEN_CDVAE_PROP_MODELS"

#: Our dataset name -> CDVAE's model folder name.
CDVAE_MODEL_FOLDERS = {"perov_5": "perovskite", "carbon_24": "carbon", "mp_20": "mp20"}


class PropertyPredictor(ABC):
    """Predicts one scalar property per crystal.

    ``name`` is the registry name, ``units`` the physical units of the output (e.g. "eV/atom"); ``predict``
    returns a float array of len(structures) with NaN for the crystals it cannot handle (never raises for one
    bad crystal). ``cache_identity`` (optional) names the model's weights and pipeline for the on-disk cache.
    """

    name: str
    units: str
    description: str = ""
    cache_identity: str | None = None

    @abstractmethod
    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        """One value per structure, NaN where the predictor cannot handle it."""

    def predict_with_reasons(self, structures: Sequence[Structure]) -> tuple[np.ndarray, list[str]]:
        """:meth:`predict`, and for each structure why it was refused for the memory budget ("" if it was not)."""
        return np.asarray(self.predict(structures), dtype=np.float64), [""] * len(structures)

    def predict_reference(self, structures: Sequence[Structure]) -> np.ndarray:
        """:meth:`predict` on a reference split (whose values the suite caches). A predictor whose network also
        yields what another metric needs of the same split overrides it to compute and cache both in one pass."""
        return np.asarray(self.predict(structures), dtype=np.float64)


def cached_outputs(identity: str, structures: Sequence[Structure], compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` for these structures under model ``identity`` (weights digest + pipeline version), stored in
    the metrics cache (crystalgen.metrics.cache) keyed by the structures' content, so a changed split or model is
    recomputed, never served stale."""
    from crystalgen.metrics.cache import ArrayCache, structures_digest

    cache = ArrayCache()
    key = cache.key("model-outputs", structures_digest(structures), {"identity": identity})
    stored = cache.load(key)
    if stored is not None:
        return stored
    result = compute()
    cache.save(key, result)
    return result


def predict_cached(predictor: Any, structures: Sequence[Structure]) -> np.ndarray:
    """``predictor.predict(structures)``, cached on disk when the predictor has a ``cache_identity``.

    Meant for reference sets (test/train splits) that every evaluation compares against.
    """
    identity = getattr(predictor, "cache_identity", None)
    if not identity:
        return np.asarray(predictor.predict(structures), dtype=np.float64)
    return cached_outputs(identity, structures, lambda: {"values": np.asarray(predictor.predict(structures), dtype=np.float64)})["values"]


def cdvae_models_dir(models_dir: str | Path | None = None) -> Path | None:
    """The folder with CDVAE's property models: ``models_dir``, else ``$CRYSTALGEN_CDVAE_PROP_MODELS``, else None."""
    chosen = models_dir if models_dir is not None else os.environ.get(MODELS_ENV)
    return Path(chosen).expanduser() if chosen else None


def cdvae_model_folder(dataset: str, models_dir: str | Path | None = None) -> Path | None:
    """The model folder for ``dataset`` (perov_5, carbon_24, mp_20) if its weights are present, else None."""
    root = cdvae_models_dir(models_dir)
    folder_name = CDVAE_MODEL_FOLDERS.get(dataset)
    if root is None or folder_name is None:
        return None
    folder = root / folder_name
    return folder if any(folder.glob("*.ckpt")) else None


def _cdvae_factory(dataset: str | None) -> Callable[..., PropertyPredictor]:
    def factory(path: str | Path | None = None, models_dir: str | Path | None = None, **options: Any) -> PropertyPredictor:
        from crystalgen.metrics.cdvae_property.predictor import CDVAEPropertyPredictor

        name = f"cdvae_{dataset}" if dataset else "cdvae"
        folder = Path(path) if path is not None else (cdvae_model_folder(dataset, models_dir) if dataset else None)
        if folder is None:
            where = cdvae_models_dir(models_dir)
            expected = f"{where or '$' + MODELS_ENV}/{CDVAE_MODEL_FOLDERS[dataset] if dataset else '<model>'}"
            raise FileNotFoundError(
                f"property predictor {name!r}: CDVAE property-model weights not found (looked for {expected}/*.ckpt). "
                f"Set {MODELS_ENV} to the folder holding perovskite/, carbon/ and mp20/ (CDVAE's cdvae/prop_models), "
                "pass models_dir=... or path=<model folder>, or use 'chgnet_energy'."
            )
        return CDVAEPropertyPredictor(folder, name=name, **options)

    return factory


def _chgnet_factory(**options: Any) -> PropertyPredictor:
    from crystalgen.metrics.chgnet_backend import CHGNetEnergyPredictor

    return CHGNetEnergyPredictor(**options)


def builtin_predictors() -> dict[str, Callable[..., PropertyPredictor]]:
    """The core's predictors by name; the plugin host registers them like any plugin's."""
    predictors: dict[str, Callable[..., PropertyPredictor]] = {f"cdvae_{d}": _cdvae_factory(d) for d in CDVAE_MODEL_FOLDERS}
    predictors["cdvae"] = _cdvae_factory(None)
    predictors["chgnet_energy"] = _chgnet_factory
    return predictors


def get_predictor(name: str, **options: Any) -> PropertyPredictor:
    """Build the predictor registered as ``name`` (built-in or from a plugin) with ``options``.

    Unknown names raise crystalgen.registry.UnknownComponentError listing what is installed.
    """
    from crystalgen.plugins import default_host

    factory = default_host().registry("property predictor").get(name)
    predictor = factory(**options)
    missing = [attr for attr in ("name", "units", "predict") if not hasattr(predictor, attr)]
    if missing:
        raise TypeError(f"property predictor {name!r} built an object without {', '.join(missing)}; see crystalgen.metrics.properties.PropertyPredictor")
    return predictor


def default_predictor_for(dataset_name: str | None, models_dir: str | Path | None = None) -> str:
    """``cdvae_<dataset>`` when CDVAE's model for that dataset is found, else ``chgnet_energy``."""
    if dataset_name and cdvae_model_folder(dataset_name, models_dir) is not None:
        return f"cdvae_{dataset_name}"
    return "chgnet_energy"
