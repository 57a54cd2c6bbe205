"""The EAD descriptor and R_str: hand-computed values, table vs exact, invariances, gradients."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from pymatgen.core import Lattice, Structure
from structrepdiff_testdata import cartesian, small_params, triclinic_structure

from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.ead import EADParameters, Monomials, RadialTable, cosine_cutoff, radial_basis


def descriptor_of(structure: Structure, method: str = "exact", params: EADParameters | None = None) -> torch.Tensor:
    positions, z, lattice, n = cartesian(structure)
    return StructureDescriptor(params or small_params(), method).of_cells(positions, z, lattice, n)[0]


def test_parameters_follow_the_paper_grid():
    p = EADParameters.from_grid(1, 0.0, 20.0, 0.1, [1, 20, 90], 20.0)
    assert len(p.mus) == 201 and p.mus[0] == 0.0 and p.mus[-1] == 20.0 and p.mus[37] == pytest.approx(3.7)
    assert p.num_radial == 603 and p.num_features == 1206
    with pytest.raises(ValueError, match="etas must be positive"):
        EADParameters(1, (1.0,), (0.0,), 5.0)


def test_cosine_cutoff_and_basis_values():
    r = torch.tensor([0.0, 3.0, 6.0, 7.0], dtype=torch.float64)
    assert cosine_cutoff(r, 6.0).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    p = EADParameters(0, (1.0, 2.0), (20.0,), 6.0)
    g = radial_basis(torch.tensor([2.0], dtype=torch.float64), p)[0]
    fc = 0.5 * (math.cos(math.pi * 2 / 6) + 1)
    assert g.tolist() == pytest.approx([math.exp(-20.0) * fc, fc])


def test_monomials_and_multinomial_weights():
    m = Monomials(2)
    assert m.exponents[:4] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    weights = dict(zip(m.exponents, m.weights, strict=True))
    assert weights[(2, 0, 0)] == 1 and weights[(1, 1, 0)] == 2 and weights[(0, 1, 1)] == 2
    assert len(m) == 10


@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_monomial_vector_jacobian_product_matches_autograd(lmax):
    """The hand-written backward of the tabulated densities differentiates the monomials through Monomials.vjp."""
    m = Monomials(lmax)
    vec = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(len(m), 7, dtype=torch.float64)
    (expected,) = torch.autograd.grad((m.evaluate(vec) * grad).sum(), vec)
    torch.testing.assert_close(m.vjp(vec.detach(), grad), expected)


def test_dimer_by_hand():
    """Two atoms 2.1 A apart in a cell much wider than 2 r_c: phi_0 = (Z g)^2 and phi_1 = (Z g)^2 r^2 per centre."""
    p = EADParameters(1, (2.0, 2.5), (1.0, 20.0), 6.0)
    s = Structure(Lattice.cubic(30.0), ["O", "Ti"], [[0, 0, 0], [2.1 / 30, 0, 0]])
    positions, z, lattice, n = cartesian(s)
    desc = StructureDescriptor(p, "exact")
    pairs = desc.pairs(positions, lattice, n)
    from crystalgen_structrepdiff.ead import ead

    per_atom = ead(pairs.vectors(positions), pairs.centre, z.index_select(0, pairs.neighbour), 2, p)
    g = radial_basis(torch.tensor([2.1], dtype=torch.float64), p)[0]  # (eta, mu) order
    for atom, neighbour_z in ((0, 22), (1, 8)):
        expected = torch.cat([(neighbour_z * g) ** 2, (neighbour_z * g * 2.1) ** 2])
        torch.testing.assert_close(per_atom[atom], expected)
    R = desc(positions, z, n, pairs)[0]
    assert R[-1].item() == pytest.approx(2.1)  # d_min
    torch.testing.assert_close(R[:8], torch.maximum(per_atom[0], per_atom[1]))
    torch.testing.assert_close(R[8:16], torch.minimum(per_atom[0], per_atom[1]))


@pytest.mark.parametrize("method", ["exact", "table"])
def test_dimer_by_hand_in_the_cumulative_convention(method):
    """PyXtal-FF's form: phi_0 = (Z g)^2 as before, phi_1 = ((Z g)^2 + (Z g)^2 r^2) / r_c^2 per centre."""
    p = EADParameters(1, (2.0, 2.5), (1.0, 20.0), 6.0, angular="cumulative")
    s = Structure(Lattice.cubic(30.0), ["O", "Ti"], [[0, 0, 0], [2.1 / 30, 0, 0]])
    positions, z, lattice, n = cartesian(s)
    desc = StructureDescriptor(p, method)
    pairs = desc.pairs(positions, lattice, n)
    from crystalgen_structrepdiff.ead import ead

    per_atom = ead(pairs.vectors(positions), pairs.centre, z.index_select(0, pairs.neighbour), 2, p, desc.table)
    g = radial_basis(torch.tensor([2.1], dtype=torch.float64), p)[0]
    for atom, neighbour_z in ((0, 22), (1, 8)):
        s_density = (neighbour_z * g) ** 2
        expected = torch.cat([s_density, (s_density + s_density * 2.1**2) / 6.0**2])
        torch.testing.assert_close(per_atom[atom], expected, rtol=1e-3 if method == "table" else 1e-7, atol=1e-12)


def test_cumulative_blocks_are_scaled_running_sums_of_the_per_degree_ones():
    """For lmax = 2: block l = l! / r_c^(2l) * sum_{d <= l} (per-degree block d) / d!, on a triclinic crystal."""
    per_degree = small_params()
    cutoff, K = per_degree.cutoff, per_degree.num_radial
    params = dataclasses.replace(per_degree, lmax=2)
    positions, z, lattice, n = cartesian(triclinic_structure())
    from crystalgen_structrepdiff.ead import ead

    def per_atom(p):
        desc = StructureDescriptor(p, "exact")
        pairs = desc.pairs(positions, lattice, n)
        return ead(pairs.vectors(positions), pairs.centre, z.index_select(0, pairs.neighbour), positions.shape[0], p).view(-1, 3, K)

    by_degree = per_atom(params)
    expected = torch.stack([by_degree[:, 0],
                            (by_degree[:, 0] + by_degree[:, 1]) / cutoff**2,
                            2 * (by_degree[:, 0] + by_degree[:, 1] + by_degree[:, 2] / 2) / cutoff**4], dim=1)
    torch.testing.assert_close(per_atom(dataclasses.replace(params, angular="cumulative")), expected)
    with pytest.raises(ValueError, match="angular must be one of per_degree, cumulative"):
        dataclasses.replace(params, angular="summed")


@pytest.mark.parametrize("spacing, tolerance", [(0.01, 5e-4), (0.005, 1.5e-4)])
def test_table_matches_exact_at_the_paper_parameters(spacing, tolerance):
    """Catmull-Rom table vs direct exponentials, error relative to each (pool, l, eta) block's largest value."""
    p = EADParameters.from_grid(1, 0.0, 20.0, 0.1, [1, 20, 90], 20.0)
    s = triclinic_structure()
    exact = descriptor_of(s, "exact", p)
    positions, z, lattice, n = cartesian(s)
    table = StructureDescriptor(p, "table", table_spacing=spacing).of_cells(positions, z, lattice, n)[0]
    blocks_exact, blocks_table = exact[:-1].view(-1, 201), table[:-1].view(-1, 201)
    error = (blocks_table - blocks_exact).abs().amax(dim=1) / blocks_exact.abs().amax(dim=1)
    assert float(error.max()) < tolerance
    assert table[-1] == pytest.approx(float(exact[-1]))


def test_table_reads_back_the_basis():
    p = small_params()
    table = RadialTable(p, 0.01, torch.float64)
    r = torch.linspace(0.3, 5.99, 97, dtype=torch.float64)
    first, weights, _ = RadialTable.taps_of(r, table.spacing)
    rows = table.table[first.unsqueeze(1) + torch.arange(4)]  # (P, 4, K)
    interpolated = (weights.T.unsqueeze(2) * rows).sum(1)
    assert (interpolated - radial_basis(r, p)).abs().max() < 1e-4  # the basis peaks at 1


# -- invariances ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "table"])
def test_permutation_invariance(method):
    s = triclinic_structure()
    permuted = Structure(s.lattice, [s[i].specie for i in (2, 0, 1)], [s[i].frac_coords for i in (2, 0, 1)])
    torch.testing.assert_close(descriptor_of(permuted, method), descriptor_of(s, method))


@pytest.mark.parametrize("method", ["exact", "table"])
def test_rotation_invariance(method):
    s = triclinic_structure()
    angle = 0.7
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    axis = axis / axis.norm()
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    rotation = torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
    rotated = Structure(Lattice((torch.tensor(s.lattice.matrix) @ rotation.T).numpy()), s.species, s.frac_coords)
    torch.testing.assert_close(descriptor_of(rotated, method), descriptor_of(s, method))


@pytest.mark.parametrize("method", ["exact", "table"])
def test_translation_and_wrapping_invariance(method):
    s = triclinic_structure()
    shifted = Structure(s.lattice, s.species, s.frac_coords + [0.37, -0.21, 0.66])  # not wrapped back into the cell
    wrapped = Structure(s.lattice, s.species, (s.frac_coords + [0.37, -0.21, 0.66]) % 1.0)
    reference = descriptor_of(s, method)
    torch.testing.assert_close(descriptor_of(shifted, method), reference)
    torch.testing.assert_close(descriptor_of(wrapped, method), reference)


@pytest.mark.parametrize("method", ["exact", "table"])
def test_periodic_cell_choice_invariance(method):
    """Another basis of the same lattice (unimodular change) and a 2x1x1 supercell describe the same crystal: the
    per-atom environments, hence the pooled EAD and d_min, are the same."""
    s = triclinic_structure()
    reference = descriptor_of(s, method)
    other_basis = s.copy()
    other_basis.make_supercell([[1, 1, 0], [0, 1, 0], [0, -1, 1]])
    assert len(other_basis) == len(s)
    torch.testing.assert_close(descriptor_of(other_basis, method), reference)
    supercell = s.copy()
    supercell.make_supercell([2, 1, 1])
    torch.testing.assert_close(descriptor_of(supercell, method), reference)


@pytest.mark.parametrize("method, lmax", [("exact", 1), ("table", 1), ("table", 2)])
def test_gradient_matches_finite_differences(method, lmax):
    s = triclinic_structure()
    positions, z, lattice, n = cartesian(s)
    desc = StructureDescriptor(dataclasses.replace(small_params(), lmax=lmax), method)
    pairs = desc.pairs(positions, lattice, n, skin=0.5)
    weights = torch.linspace(0.5, 1.5, desc.size, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        R = desc(x, z, n, pairs)[0]
        return (R[:-1] / (R[:-1].abs() + 1.0) * weights[:-1]).sum() + R[-1]  # bounded per feature, d_min included

    x = positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    h = 1e-5
    numeric = torch.zeros_like(positions)
    for i in range(positions.shape[0]):
        for k in range(3):
            e = torch.zeros_like(positions)
            e[i, k] = h
            numeric[i, k] = (f(positions + e) - f(positions - e)) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-6)


def test_pair_list_stays_complete_within_half_the_skin():
    s = triclinic_structure()
    positions, z, lattice, n = cartesian(s)
    desc = StructureDescriptor(small_params(), "exact")
    pairs = desc.pairs(positions, lattice, n, skin=1.0)
    moved = positions + torch.tensor([[0.45, 0.0, 0.0], [0.0, -0.3, 0.2], [0.1, 0.1, 0.1]], dtype=torch.float64)
    assert pairs.still_complete(moved, desc.params.cutoff)
    fresh = desc.pairs(moved, lattice, n)
    torch.testing.assert_close(desc(moved, z, n, pairs), desc(moved, z, n, fresh))
    assert not pairs.still_complete(positions + torch.tensor([0.6, 0.0, 0.0], dtype=torch.float64), desc.params.cutoff)
