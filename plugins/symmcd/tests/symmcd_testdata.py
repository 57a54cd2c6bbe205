"""Test data of SymmCD's tests: prototype crystals built from our Wyckoff tables, and the small preset."""

from __future__ import annotations

from omegaconf import OmegaConf
from pymatgen.core import Lattice, Structure


def from_spacegroup(number: int, lattice: Lattice, species: list[str], coords: list[list[float]]) -> Structure:
    """A crystal from its asymmetric unit, expanded with our Wyckoff tables (pymatgen's from_spacegroup is ~1 s each)."""
    import numpy as np

    from crystalgen_symmcd.asymmetric_unit import orbit_of
    from crystalgen_symmcd.symmetry import space_group_table

    table = space_group_table(number)
    sites, points = [], []
    for element, x in zip(species, coords):
        orbit = orbit_of(table, np.asarray(x, dtype=float))
        sites += [element] * len(orbit)
        points.append(orbit)
    return Structure(lattice, sites, np.concatenate(points))


def prototype_crystals() -> list[Structure]:
    """~70 ordered crystals of 7 prototypes in 5 space groups (225, 221, 216, 186, 136), cells 2-12 atoms."""
    out = []
    for a in (5.2, 5.6, 6.0):
        for A, B in (("Na", "Cl"), ("Mg", "O"), ("Ca", "O"), ("K", "Br")):
            out.append(from_spacegroup(225, Lattice.cubic(a), [A, B], [[0, 0, 0], [0.5, 0.5, 0.5]]))
        for A, B in (("Ca", "F"), ("Ba", "F"), ("Zr", "O")):
            out.append(from_spacegroup(225, Lattice.cubic(a), [A, B], [[0, 0, 0], [0.25, 0.25, 0.25]]))
        for A, B in (("Zn", "S"), ("Ga", "As"), ("Cd", "Te")):
            out.append(from_spacegroup(216, Lattice.cubic(a), [A, B], [[0, 0, 0], [0.25, 0.25, 0.25]]))
    for a in (3.8, 4.0, 4.2):
        for A, B in (("Sr", "Ti"), ("Ba", "Zr"), ("La", "Al"), ("K", "Nb")):
            out.append(from_spacegroup(221, Lattice.cubic(a), [A, B, "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]))
        for A, B in (("Cs", "Cl"), ("Tl", "Br")):
            out.append(from_spacegroup(221, Lattice.cubic(a), [A, B], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    for a, c in ((3.2, 5.2), (3.1, 5.0), (3.5, 5.7)):
        for A, B in (("Zn", "O"), ("Ga", "N"), ("Cd", "S")):
            out.append(from_spacegroup(186, Lattice.hexagonal(a, c), [A, B], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]))
    for a, c, x in ((4.6, 3.0, 0.305), (4.7, 3.2, 0.307), (4.4, 2.9, 0.303)):
        for A in ("Ti", "Sn", "Mn"):
            out.append(from_spacegroup(136, Lattice.tetragonal(a, c), [A, "O"], [[0, 0, 0], [x, x, 0]]))
    return out


def load_small_config():
    from importlib import resources

    return OmegaConf.create(resources.files("crystalgen_symmcd.configs").joinpath("small.yaml").read_text())


#: Adam steps of the tests' small model (and of bench/symmcd_sampler_symmetry.py, which reports on the same model)
TRAIN_STEPS = 150


def train_small_model(items: list, steps: int = TRAIN_STEPS):
    """The small preset's model after ``steps`` Adam steps (lr 1e-3, batch 32, values clipped at 0.5) on ``items``,
    seeded, in eval mode. Run with one torch thread for the speed the tests assume."""
    import torch

    from crystalgen.data.crystal import collate
    from crystalgen_symmcd.model import SymmCD

    torch.manual_seed(0)
    model = SymmCD(load_small_config().model)
    model.fit_statistics(items)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        order = torch.randperm(len(items), generator=generator)[:32]
        loss = model.training_loss(collate([items[i] for i in order]))["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
        optimiser.step()
    model.eval()
    return model
