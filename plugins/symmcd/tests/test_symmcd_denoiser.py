"""The denoiser's symmetries: permutation equivariance over representatives and periodicity of coordinates."""

from __future__ import annotations

import torch

from crystalgen.denoisers.embeddings import periodic_fourier_features
from crystalgen.state import Condition
from crystalgen_symmcd.denoiser import NUM_ELEMENTS, SymmCDDenoiser, fully_connected_edges
from crystalgen_symmcd.symmetry import space_group_encoding

COUNTS = [3, 1, 4]


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, b = sum(COUNTS), len(COUNTS)
    return {
        "frac_coords": torch.rand(n, 3, generator=g),
        "atom_types": torch.randint(0, NUM_ELEMENTS, (n,), generator=g),
        "lattice_k": torch.randn(b, 6, generator=g),
        "t": torch.randint(1, 1000, (b,), generator=g),
        "spacegroup_encoding": torch.stack([torch.from_numpy(space_group_encoding(s)).float() for s in (225, 14, 194)]),
        "batch": torch.repeat_interleave(torch.arange(b), torch.tensor(COUNTS)),
        "site_symmetry": torch.randint(0, 13, (n, 15), generator=g),
    }


def run(model: SymmCDDenoiser, x: dict) -> dict:
    """The denoiser's call as the model makes it: noisy state, levels, condition data."""
    state = {k: x[k] for k in ("frac_coords", "atom_types", "lattice_k", "site_symmetry") if k in x}
    condition = Condition(len(x["t"]), {}, data={"encoding": x["spacegroup_encoding"], "crystal": x["batch"]})
    return model(state, x["t"], condition)


def net() -> SymmCDDenoiser:
    torch.manual_seed(0)
    return SymmCDDenoiser(hidden=32, num_layers=2, num_frequencies=4, spacegroup_dim=16, site_symmetry_dim=16).eval()


def test_fully_connected_edges_are_all_pairs_within_each_crystal():
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(COUNTS))
    src, dst = fully_connected_edges(batch, 3)
    assert len(src) == sum(c * c for c in COUNTS)
    assert bool((batch[src] == batch[dst]).all())
    assert len({(int(s), int(d)) for s, d in zip(src, dst)}) == len(src)


def test_permuting_representatives_permutes_the_outputs():
    model, x = net(), inputs()
    perm = torch.tensor([2, 0, 1, 3, 6, 4, 7, 5])  # within each crystal (crystals stay contiguous)
    permuted = dict(x, **{k: x[k][perm] for k in ("frac_coords", "atom_types", "site_symmetry")})
    with torch.no_grad():
        out, out_p = run(model, x), run(model, permuted)
    for var in ("frac_coords", "atom_types", "site_symmetry"):
        torch.testing.assert_close(out_p[var], out[var][perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_p["lattice_k"], out["lattice_k"], atol=1e-5, rtol=1e-5)


def test_reordering_crystals_in_the_batch_reorders_the_outputs():
    model, x = net(), inputs()
    order = [2, 0, 1]
    starts = [0, 3, 4]
    nodes = torch.cat([torch.arange(starts[c], starts[c] + COUNTS[c]) for c in order])
    counts = torch.tensor([COUNTS[c] for c in order])
    y = {
        "frac_coords": x["frac_coords"][nodes], "atom_types": x["atom_types"][nodes], "site_symmetry": x["site_symmetry"][nodes],
        "lattice_k": x["lattice_k"][order], "t": x["t"][order], "spacegroup_encoding": x["spacegroup_encoding"][order],
        "batch": torch.repeat_interleave(torch.arange(3), counts),
    }
    with torch.no_grad():
        out, out_y = run(model, x), run(model, y)
    torch.testing.assert_close(out_y["frac_coords"], out["frac_coords"][nodes], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_y["lattice_k"], out["lattice_k"][order], atol=1e-5, rtol=1e-5)


def test_integer_shifts_of_coordinates_change_nothing():
    """Fourier features with integer frequencies make x and x + n the same input (same point of the crystal)."""
    model, x = net(), inputs()
    shift = torch.randint(-2, 3, x["frac_coords"].shape).float()
    with torch.no_grad():
        out, out_s = run(model, x), run(model, dict(x, frac_coords=x["frac_coords"] + shift))
    for var in out:
        torch.testing.assert_close(out_s[var], out[var], atol=2e-4, rtol=2e-4)


def test_fourier_features_of_differences_are_shift_invariant_and_informative():
    xi, xj = torch.rand(50, 3), torch.rand(50, 3)
    n = torch.randint(-3, 4, (50, 3)).float()
    base = periodic_fourier_features(xj - xi, 8)
    torch.testing.assert_close(periodic_fourier_features(xj + n - xi, 8), base, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(periodic_fourier_features(xj - (xi - n), 8), base, atol=1e-4, rtol=1e-4)
    # ... but not invariant to non-integer translations of one point
    assert (periodic_fourier_features(xj + 0.25 - xi, 8) - base).abs().max() > 0.5


def test_full_cell_variant_needs_no_site_symmetry():
    torch.manual_seed(0)
    model = SymmCDDenoiser(hidden=32, num_layers=1, num_frequencies=4, spacegroup_dim=16, site_symmetry=False)
    x = inputs()
    x.pop("site_symmetry")
    out = run(model, x)
    assert set(out) == {"frac_coords", "lattice_k", "atom_types"}
    assert set(SymmCDDenoiser.declare({"site_symmetry": False}).predicts) == set(out)
