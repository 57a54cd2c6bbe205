"""R = [R_str, composition, n, lattice]: blocks, scaler, and reading atoms and cells back."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure
from structrepdiff_testdata import SMALL_EAD, triclinic_structure

from crystalgen_structrepdiff.decoding import atom_counts, read_cell
from crystalgen_structrepdiff.representation import RepresentationLayout, RepresentationScaler, composition_block
from crystalgen_structrepdiff.transform import RepresentationTransform


def test_layout_blocks_tile_the_vector():
    layout = RepresentationLayout(num_ead=10, num_elements=96)
    assert layout.size == 2 * 10 + 96 + 8
    assert layout.structure == slice(0, 21) and layout.d_min == 20
    assert layout.composition == slice(21, 117) and layout.num_atoms == 117 and layout.lattice == slice(118, 124)
    assert layout.lattice.stop == layout.size


def test_composition_block_by_hand():
    z = torch.tensor([8, 22, 8, 6, 6, 6, 1])
    block = composition_block(z, torch.tensor([3, 4]), num_elements=96)
    assert block.shape == (2, 96)
    assert block[0, 7] == pytest.approx(2 / 3) and block[0, 21] == pytest.approx(1 / 3)
    assert block[1, 5] == pytest.approx(3 / 4) and block[1, 0] == pytest.approx(1 / 4)
    assert block.sum(1).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="Z=99"):
        composition_block(torch.tensor([99]), torch.tensor([1]), num_elements=96)


def test_transform_output_and_read_back():
    s = triclinic_structure()
    transform = RepresentationTransform(SMALL_EAD)
    data = transform(s)
    layout = transform.layout
    R = data.representation[0]
    assert data.representation.shape == (1, layout.size) and R.dtype == torch.float64
    assert R[layout.num_atoms] == 3
    assert R[layout.lattice].tolist() == pytest.approx(list(s.lattice.abc) + list(s.lattice.angles))
    cell = read_cell(R, layout, max_atoms=20)
    assert sorted(cell.atomic_numbers.tolist()) == sorted(s.atomic_numbers)
    assert torch.allclose(torch.tensor(Lattice(cell.lattice.numpy()).abc), torch.tensor(s.lattice.abc))
    torch.testing.assert_close(cell.target, R[layout.structure])


def test_transform_skips_crystals_it_cannot_represent():
    from crystalgen.encoders.base import SkipCrystal

    with pytest.raises(SkipCrystal, match="max_atoms"):
        RepresentationTransform(SMALL_EAD, max_atoms=2)(triclinic_structure())
    with pytest.raises(SkipCrystal, match="Z=94"):
        RepresentationTransform(SMALL_EAD, num_elements=92)(Structure(Lattice.cubic(3.0), ["Pu"], [[0, 0, 0]]))


def test_transform_cache_key_is_plain_and_picklable():
    import json
    import pickle

    transform = RepresentationTransform(SMALL_EAD)
    transform(triclinic_structure())  # builds the table
    json.dumps(transform.cache_key())
    clone = pickle.loads(pickle.dumps(transform))
    torch.testing.assert_close(clone(triclinic_structure()).representation, transform(triclinic_structure()).representation)


@pytest.mark.parametrize("fractions, n, expected", [
    ([0.2, 0.2, 0.6], 5, [1, 1, 3]),
    ([0.5, 0.5], 3, [2, 1]),  # tie: the lighter element gets the extra atom
    ([0.30, -0.1, 0.71], 4, [1, 0, 3]),  # negative entries count as zero; the rest is renormalised
    ([0.01, 0.99], 6, [0, 6]),
])
def test_atom_counts_sum_to_n(fractions, n, expected):
    counts = atom_counts(torch.tensor(fractions, dtype=torch.float64), n)
    assert counts.tolist() == expected and int(counts.sum()) == n


def test_read_cell_reports_what_is_wrong():
    layout = RepresentationLayout(num_ead=2, num_elements=4)
    good = torch.zeros(layout.size, dtype=torch.float64)
    good[layout.composition] = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64)
    good[layout.num_atoms] = 2.2
    good[layout.lattice] = torch.tensor([3.0, 3.0, 3.0, 90.0, 90.0, 90.0], dtype=torch.float64)
    cell = read_cell(good, layout, max_atoms=10)
    assert cell.atomic_numbers.tolist() == [2, 3]
    too_few = good.clone()
    too_few[layout.num_atoms] = 0.3
    assert "below 1" in read_cell(too_few, layout, 10)
    clamped = good.clone()
    clamped[layout.num_atoms] = 40.0
    lowered = read_cell(clamped, layout, max_atoms=6)
    assert lowered.atomic_numbers.numel() == 6 and lowered.num_atoms_read == 40  # lowered, and said so
    assert cell.num_atoms_read is None
    no_elements = good.clone()
    no_elements[layout.composition] = -0.2
    assert "no positive entry" in read_cell(no_elements, layout, 10)
    flat = good.clone()
    flat[layout.lattice] = torch.tensor([3.0, 3.0, 3.0, 40.0, 40.0, 120.0], dtype=torch.float64)  # alpha + beta < gamma
    assert "describe no cell" in read_cell(flat, layout, 10)
    assert read_cell(torch.full((layout.size,), float("nan"), dtype=torch.float64), layout, 10) == "non-finite representation"


def test_scaler_round_trip_and_constant_features():
    data = torch.tensor([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0], [5.0, 5.0, 0.0]], dtype=torch.float64)
    scaler = RepresentationScaler(3).fit(data)
    assert scaler.std.tolist() == pytest.approx([(8 / 3) ** 0.5, 1.0, 1.0])  # constant columns keep std 1
    normalised = scaler.normalise(data)
    assert normalised[:, 1:].abs().max() == 0 and normalised[:, 0].mean().abs() < 1e-12
    torch.testing.assert_close(scaler.denormalise(normalised), data)
    assert scaler.low.tolist() == pytest.approx([-(1.5**0.5), 0.0, 0.0])  # normalised training range per feature
    assert scaler.high.tolist() == pytest.approx([1.5**0.5, 0.0, 0.0])
    state = scaler.state_dict()
    assert set(state) == {"mean", "std", "low", "high"}  # travels with the checkpoint
    older = RepresentationScaler(3)
    older.load_state_dict({"mean": state["mean"], "std": state["std"]})  # a checkpoint from before the range
    assert bool(torch.isinf(older.low).all()) and bool(torch.isinf(older.high).all())
    with pytest.raises(ValueError, match="empty"):
        scaler.fit(torch.zeros(0, 3, dtype=torch.float64))


def test_minmax_scaling_maps_the_training_range_onto_plus_minus_one():
    """A rare feature (one crystal in four) stays within [-1, 1] instead of reaching sqrt(3) std, and round-trips."""
    data = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 3.0], [0.0, 5.0, 2.0], [0.4, 5.0, 2.0]], dtype=torch.float64)
    scaler = RepresentationScaler(3).fit(data, "minmax")
    normalised = scaler.normalise(data)
    assert normalised[:, 0].tolist() == pytest.approx([-1.0, -1.0, -1.0, 1.0])
    assert normalised[:, 2].tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0])
    assert scaler.std[1] == 1.0 and normalised[:, 1].abs().max() == 0  # a constant feature stays at its value
    assert scaler.low.tolist() == pytest.approx([-1.0, 0.0, -1.0]) and scaler.high.tolist() == pytest.approx([1.0, 0.0, 1.0])
    torch.testing.assert_close(scaler.denormalise(normalised), data)
    assert RepresentationScaler(3).fit(data).normalise(data)[3, 0] == pytest.approx(3**0.5)  # standard, for contrast
    with pytest.raises(ValueError, match="standard, minmax"):
        scaler.fit(data, "robust")
