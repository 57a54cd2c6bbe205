"""CIF and extxyz IO: lossless round trips through crystal tensors, per-entry errors, clear messages on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.data.crystal import InvalidCrystalError, data_to_structure, structure_to_data
from crystalgen.data.io import (
    CrystalReadError,
    read_cif,
    read_crystals,
    read_extxyz,
    structure_from_cif,
    structure_to_cif,
    write_cif,
    write_extxyz,
)
from crystalgen.testing import benchmark_csv


def rocksalt() -> Structure:
    """Conventional NaCl (8 atoms), written out site by site (from_spacegroup is slow)."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, fcc + [[x + 0.5 if x == 0 else x - 0.5 for x in p] for p in fcc])


def triclinic(seed: int = 0) -> Structure:
    """A low-symmetry cell in a rotated (non-standard) orientation with coordinates at full float precision."""
    rng = np.random.default_rng(seed)
    matrix = Lattice.from_parameters(4.1, 5.3, 6.7, 77.0, 101.0, 95.0).matrix
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))
    return Structure(Lattice(matrix @ rotation.T), ["Li", "Fe", "P", "O", "O"], rng.random((5, 3)))


def assert_same_tensors(a: Structure, b: Structure, atol: float = 1e-6) -> None:
    """Lattice and atom types equal; fractional coordinates equal up to a lattice translation (0.99999999 -> 0)."""
    da, db = structure_to_data(a), structure_to_data(b)
    torch.testing.assert_close(db.lattice, da.lattice, atol=atol, rtol=0)
    assert torch.equal(da.atom_types, db.atom_types)
    delta = db.frac_coords - da.frac_coords
    assert (delta - torch.round(delta)).abs().max() <= atol


def cif_rows(name: str, n: int) -> pd.DataFrame:
    return pd.read_csv(benchmark_csv(name, "test"), usecols=["material_id", "cif"]).sample(n=n, random_state=0)


@pytest.mark.data
@pytest.mark.parametrize("dataset", ["mp_20", "perov_5", "carbon_24"])
def test_cif_tensors_cif_tensors_round_trip_is_lossless_on_real_crystals(dataset):
    for material_id, cif in zip(*cif_rows(dataset, 40).T.values):
        first = structure_from_cif(cif, source=f"{dataset}/test.csv {material_id}")
        text = structure_to_cif(data_to_structure(structure_to_data(first)), name=str(material_id))
        assert text.splitlines()[1] == f"data_{material_id}"
        assert_same_tensors(first, structure_from_cif(text))


@pytest.mark.data
def test_extxyz_round_trip_on_real_crystals_with_frame_info(tmp_path):
    rows = pd.read_csv(benchmark_csv("mp_20", "test"), usecols=["material_id", "cif", "band_gap"]).sample(n=40, random_state=1)
    structures = [structure_from_cif(c) for c in rows["cif"]]
    infos = [{"material_id": m, "band_gap": g} for m, g in zip(rows["material_id"], rows["band_gap"])]
    result = read_extxyz(write_extxyz(tmp_path / "mp20.extxyz", structures, infos))
    assert result.errors == [] and [r.index for r in result.records] == list(range(40))
    for structure, info, record in zip(structures, infos, result.records):
        assert_same_tensors(structure, record.structure, atol=1e-8)
        assert record.info == info  # band gaps round-trip exactly (written with repr precision)


def test_multi_block_cif_keeps_good_blocks_and_reports_each_bad_one(tmp_path):
    partial = Structure(Lattice.cubic(4.0), [{"Fe": 0.5}], [[0, 0, 0]])
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    malformed = "data_broken\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n"
    malformed += "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
    text = "".join(
        [
            structure_to_cif(rocksalt(), "first"),
            malformed,
            structure_to_cif(partial, "partial"),
            structure_to_cif(disordered, "disordered"),
            structure_to_cif(triclinic(), "last"),
        ]
    )
    path = tmp_path / "mixed.cif"
    path.write_text(text)
    result = read_cif(path)
    assert [(r.index, r.info["name"]) for r in result.records] == [(0, "first"), (4, "last")]
    assert [e.index for e in result.errors] == [1, 2, 3]
    assert "malformed CIF: data block 'broken': missing field" in result.errors[0].reason
    assert "partial occupancy 0.5 of Fe" in result.errors[1].reason
    assert "disordered" in result.errors[2].reason
    assert str(result.errors[1]).startswith(f"{path} [entry 2]: ")
    assert len(read_cif(path, require_ordered=False).records) == 4


def test_write_cif_names_and_single_structure(tmp_path):
    structures = [rocksalt(), triclinic(1), triclinic(2)]
    result = read_cif(write_cif(tmp_path / "three.cif", structures, names=["nacl", "mp 1", "mp-2"]))
    assert [r.info["name"] for r in result.records] == ["nacl", "mp_1", "mp-2"]  # whitespace is not allowed in names
    for written, record in zip(structures, result.records):
        assert record.structure.lattice.parameters == pytest.approx(written.lattice.parameters, abs=1e-6)
    defaults = [r.info["name"] for r in read_cif(write_cif(tmp_path / "default.cif", structures)).records]
    assert defaults == ["NaCl_0", "LiFePO2_1", "LiFePO2_2"]
    single = read_cif(write_cif(tmp_path / "one.cif", rocksalt()))
    assert single.records[0].info["name"] == "NaCl" and len(single.records[0].structure) == 8
    with pytest.raises(ValueError, match="unique"):
        write_cif(tmp_path / "dup.cif", structures[:2], names=["x", "x"])
    with pytest.raises(ValueError, match="2 structures but 1 names"):
        write_cif(tmp_path / "n.cif", structures[:2], names=["x"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "x.csv row 3: malformed CIF: empty CIF text"),
        ("   \n\n", "empty CIF text"),
        ("this is not a CIF", "found no data block"),
        ("data_a\n_cell_length_a 3\n", "malformed CIF: missing field"),
    ],
)
def test_structure_from_cif_errors_name_the_source(text, message):
    with pytest.raises(CrystalReadError, match=message) as info:
        structure_from_cif(text, source="x.csv row 3")
    assert info.value.source == "x.csv row 3"


def test_structure_from_cif_rejects_multi_block_text_and_disorder():
    two = structure_to_cif(rocksalt(), "a") + structure_to_cif(rocksalt(), "b")
    with pytest.raises(CrystalReadError, match="found 2 data blocks"):
        structure_from_cif(two)
    disordered = structure_to_cif(Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]))
    with pytest.raises(CrystalReadError, match=r"<string>: disordered structure: site 0 is disordered"):
        structure_from_cif(disordered)
    assert not structure_from_cif(disordered, require_ordered=False).is_ordered


def test_empty_files_give_file_level_errors(tmp_path):
    for suffix, kind in ((".cif", "malformed CIF"), (".extxyz", "malformed extxyz frame")):
        path = tmp_path / f"empty{suffix}"
        path.write_text("\n")
        result = read_crystals(path)
        assert result.records == [] and [(e.index, e.reason) for e in result.errors] == [(None, f"{kind}: file is empty")]
    (tmp_path / "no_block.cif").write_text("# only a comment\n")
    assert "no CIF data block" in read_cif(tmp_path / "no_block.cif").errors[0].reason
    with pytest.raises(ValueError, match="unknown crystal file type '.pdb'"):
        read_crystals(tmp_path / "x.pdb")
    with pytest.raises(FileNotFoundError):
        read_cif(tmp_path / "missing.cif")


def test_extxyz_keeps_orientation_numeric_ids_and_properties(tmp_path):
    structures = [triclinic(3), rocksalt()]
    infos = [{"material_id": "7055", "heat_ref": -1.25, "label": "two words"}, {"material_id": "mp-1"}]
    result = read_crystals(write_extxyz(tmp_path / "two.xyz", structures, infos))
    assert result.errors == []
    assert result.records[0].info == {"material_id": "7055", "heat_ref": -1.25, "label": "two words"}
    assert result.records[1].info == {"material_id": "mp-1"}
    # the full matrix is stored: the rotated orientation survives (a CIF would not keep it)
    np.testing.assert_array_equal(result.records[0].structure.lattice.matrix, structures[0].lattice.matrix)
    assert_same_tensors(structures[0], result.records[0].structure, atol=1e-8)


def test_extxyz_bad_frames_are_reported_and_the_rest_kept(tmp_path):
    good = (tmp_path / "good.extxyz")
    write_extxyz(good, [rocksalt(), triclinic()])
    good_text = good.read_text()
    unknown_element = '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T"\nQq 0 0 0\n'
    no_cell = "1\nProperties=species:S:1:pos:R:3\nNa 0 0 0\n"
    truncated = '3\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T"\nNa 0 0 0\n'
    path = tmp_path / "mixed.extxyz"
    path.write_text(good_text + unknown_element + no_cell + good_text + truncated)
    result = read_extxyz(path)
    assert [r.index for r in result.records] == [0, 1, 4, 5]
    assert [e.index for e in result.errors] == [2, 3, 6]
    assert "Qq" in result.errors[0].reason
    assert "no periodic 3D cell" in result.errors[1].reason
    assert "frame of 3 atoms is cut short" in result.errors[2].reason

    path.write_text(good_text + "two\ncomment\nNa 0 0 0\n" + good_text)
    result = read_extxyz(path)
    assert len(result.records) == 2 and "expected the atom count of a frame, got 'two'" in result.errors[0].reason


def test_write_extxyz_refuses_disorder_naming_the_structure(tmp_path):
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(InvalidCrystalError, match="write_extxyz: structure 1: site 0 is disordered"):
        write_extxyz(tmp_path / "x.extxyz", [rocksalt(), disordered])
    assert not (tmp_path / "x.extxyz").exists()
