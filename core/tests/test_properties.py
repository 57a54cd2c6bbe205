"""Property-predictor registry, lookup, defaults, caching and the CHGNet energy predictor."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen import plugins
from crystalgen.hookspecs import hookimpl
from crystalgen.metrics.properties import (
    MODELS_ENV,
    PropertyPredictor,
    builtin_predictors,
    default_predictor_for,
    get_predictor,
    predict_cached,
)
from crystalgen.registry import UnknownComponentError


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


class CountingPredictor(PropertyPredictor):
    """Number of sites, counting how often predict runs (for the cache and plugin tests)."""

    name = "num_sites"
    units = "atoms"
    cache_identity = "test/num_sites/1"

    def __init__(self, **options):
        self.calls = 0
        self.options = options

    def predict(self, structures):
        self.calls += 1
        return np.array([float(len(s)) for s in structures])


class SitesPlugin:
    @hookimpl
    def crystalgen_property_predictors(self):
        return {"num_sites": CountingPredictor}


def test_builtin_names_are_registered_through_the_hook():
    names = set(plugins.default_host().registry("property predictor"))
    assert {"cdvae_perov_5", "cdvae_carbon_24", "cdvae_mp_20", "cdvae", "chgnet_energy"} <= names
    assert set(builtin_predictors()) <= names


def test_unknown_name_lists_alternatives():
    with pytest.raises(UnknownComponentError, match="cdvae_mp_20"):
        get_predictor("cdvae_mp20")


def test_plugin_predictor_is_found_with_its_options(monkeypatch):
    host = plugins.build_host(extra_plugins=[SitesPlugin()])
    monkeypatch.setattr(plugins, "default_host", lambda: host)
    predictor = get_predictor("num_sites", scale=2)
    assert predictor.options == {"scale": 2}
    assert predictor.predict([rocksalt(), rocksalt() * (2, 1, 1)]).tolist() == [2.0, 4.0]


def test_default_predictor_follows_the_weights_found(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert default_predictor_for("mp_20") == "chgnet_energy"
    (tmp_path / "mp20").mkdir()
    (tmp_path / "mp20" / "epoch=1-step=1.ckpt").write_bytes(b"")
    assert default_predictor_for("mp_20", models_dir=tmp_path) == "cdvae_mp_20"
    assert default_predictor_for("perov_5", models_dir=tmp_path) == "chgnet_energy"  # no perovskite/ folder
    assert default_predictor_for("my_dataset", models_dir=tmp_path) == "chgnet_energy"
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert default_predictor_for("mp_20") == "cdvae_mp_20"


def test_missing_cdvae_weights_say_where_to_point(monkeypatch, tmp_path):
    monkeypatch.delenv(MODELS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=MODELS_ENV):
        get_predictor("cdvae_carbon_24")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "carbon")):
        get_predictor("cdvae_carbon_24", models_dir=tmp_path)


def test_predict_cached_reuses_results_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path))
    predictor = CountingPredictor()
    structures = [rocksalt(), rocksalt() * (1, 1, 2)]
    first = predict_cached(predictor, structures)
    again = predict_cached(predictor, [s.copy() for s in structures])
    assert predictor.calls == 1 and np.array_equal(first, again)
    predict_cached(predictor, [rocksalt(5.70), structures[1]])  # different content -> recomputed
    assert predictor.calls == 2
    assert len(list((tmp_path / "metrics").glob("*.npz"))) == 2


def test_chgnet_energy_per_atom_with_nan_for_unusable_crystals():
    predictor = get_predictor("chgnet_energy")
    assert (predictor.name, predictor.units) == ("chgnet_energy", "eV/atom")
    isolated = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # no neighbour within 6 A
    nacl = rocksalt()
    californium = Structure(Lattice.cubic(3.0), ["Cf", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # beyond CHGNet's Z <= 94
    energies = predictor.predict([nacl, isolated, nacl * (2, 1, 1), californium])
    assert np.isnan(energies[[1, 3]]).all() and np.isfinite(energies[[0, 2]]).all()
    assert -6.0 < energies[0] < -2.0  # NaCl in MP: about -3.4 eV/atom
    assert energies[2] == pytest.approx(energies[0], abs=1e-4)  # per-atom energy is extensive-invariant


def test_properties_module_import_stays_light():
    import subprocess
    import sys

    code = "import sys, crystalgen.metrics.properties; print('torch' in sys.modules, 'chgnet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
