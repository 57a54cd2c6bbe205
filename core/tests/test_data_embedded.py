"""The embedded default dataset: size, intended symmetry, sane geometry, charge balance, determinism, speed."""

from __future__ import annotations

import time
import warnings
from collections import Counter

import numpy as np
import pytest
import spglib
import torch
from pymatgen.core import Element

from crystalgen.data import embedded
from crystalgen.data.record_store import records_checksum
from crystalgen.data.records import CrystalRecord
from crystalgen.data.registry import get_dataset


@pytest.fixture(scope="module")
def built():
    start = time.perf_counter()
    crystals = embedded.build_embedded()
    return crystals, time.perf_counter() - start


def spacegroup(structure, symprec):
    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return spglib.get_symmetry_dataset(cell, symprec=symprec).number


def test_size_cells_and_build_time(built):
    crystals, seconds = built
    assert len(crystals) >= 500
    assert max(len(c.structure) for c in crystals) <= 20
    assert len({c.structure.composition.reduced_formula for c in crystals}) >= 400  # varied compositions
    assert seconds < 30  # about 2 s on a quiet 2-core machine; generous for a shared one


def wrong_spacegroups(crystals, symprec=1e-3):
    return [(c.id, c.spacegroup, sg) for c in crystals if (sg := spacegroup(c.structure, symprec)) != c.spacegroup]


def test_intended_space_groups(built):
    """The first crystals of every prototype and every 8th crystal (spglib takes 5-30 ms per call here)."""
    crystals, _ = built
    firsts = {}
    for c in crystals:
        firsts.setdefault(c.prototype, []).append(c)
    sample = {c.id: c for group in firsts.values() for c in group[:3]} | {c.id: c for c in crystals[::8]}
    assert not wrong_spacegroups(sample.values())
    assert len({c.spacegroup for c in crystals}) >= 10
    # the symmetry is exact, so the looser tolerance of the metrics finds the same groups
    assert not wrong_spacegroups(crystals[::40], symprec=0.1)


@pytest.mark.slow
def test_every_crystal_has_its_intended_space_group(built):
    assert not wrong_spacegroups(built[0])


def test_distances_are_sane(built):
    crystals, _ = built
    for c in crystals:
        s = c.structure
        d = s.distance_matrix + np.eye(len(s)) * 1e9
        shortest_vector = min(s.lattice.abc)
        assert min(d.min(), shortest_vector) > 1.0, c.id
        assert s.volume / len(s) > 3.5, c.id  # diamond, the densest, has 4.0 A^3 per atom here


def test_charge_balanced_where_intended(built):
    crystals, _ = built
    balanced = [c for c in crystals if c.oxidation_states]
    assert len(balanced) >= 300
    for c in balanced:
        assert sum(c.oxidation_states[site.specie.symbol] for site in c.structure) == 0, c.id
        for symbol, ox in c.oxidation_states.items():
            assert ox in Element(symbol).oxidation_states, (c.id, symbol, ox)


def test_known_prototypes_come_out_right(built):
    by_id = {c.id: c for c in built[0]}
    nacl = by_id["rocksalt-NaCl"].structure
    assert len(nacl) == 2 and nacl.composition.reduced_formula == "NaCl"
    # Na-Cl nearest-neighbour distance = Shannon crystal radii (CN 6) 1.16 + 1.67 A, within the 2% jitter
    assert abs(nacl.distance_matrix[0, 1] - 2.83) / 2.83 < 0.021
    assert len(by_id["spinel-MgAl2O4"].structure) == 14
    assert len(by_id["perovskite_cubic-SrTiO3"].structure) == 5
    assert by_id["perovskite_cubic-SrTiO3"].spacegroup == 221


def test_deterministic_and_split_deterministically(built):
    crystals, _ = built
    again = embedded.build_embedded()
    as_records = lambda cs: [CrystalRecord(c.id, c.structure, {}, "embedded", i) for i, c in enumerate(cs)]  # noqa: E731
    assert records_checksum(as_records(crystals)) == records_checksum(as_records(again))
    counts = Counter(c.split for c in crystals)
    assert set(counts) == {"train", "val", "test"}
    assert 0.7 < counts["train"] / len(crystals) < 0.9 and counts["val"] > 30 and counts["test"] > 30
    assert all(embedded.split_of(c.id) == c.split for c in crystals)


def test_disk_cache_is_written_once_and_read_back(tmp_path, monkeypatch):
    items, built_now = embedded.load_or_build(tmp_path)
    assert built_now and len(list((tmp_path / "embedded").iterdir())) == 1
    monkeypatch.setattr(embedded, "build_embedded", lambda: pytest.fail("rebuilt despite the cache"))
    again, built_again = embedded.load_or_build(tmp_path)
    assert not built_again and [i["id"] for i in again] == [i["id"] for i in items]
    assert all(torch.equal(a["frac_coords"], b["frac_coords"]) for a, b in zip(items, again, strict=True))


def test_registered_dataset_splits(tmp_path, built):
    spec = get_dataset("embedded")
    assert spec.default_property == "volume_per_atom"
    splits = {s: spec.load(s, cache_dir=tmp_path) for s in spec.splits}
    assert sum(len(loaded.records) for loaded in splits.values()) == len(built[0])
    ids = [r.id for loaded in splits.values() for r in loaded.records]
    assert len(ids) == len(set(ids))
    r = splits["train"].records[0]
    assert np.isclose(r.properties["volume_per_atom"], r.structure.volume / len(r.structure))
    assert len(spec.load("train", cache_dir=tmp_path, max_rows=7).records) == 7
