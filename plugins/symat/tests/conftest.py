"""Shared fixtures of the SyMat plugin tests: small rattled crystals (helpers in symat_testdata.py)."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure
from symat_testdata import rattled


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread avoids oversubscribing a shared machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def private_statistics_cache(tmp_path_factory):
    """fit_statistics caches sigma_hat_t: the tests' crystals go to a cache of their own, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRYSTALGEN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def crystals() -> list[Structure]:
    """Four small ordered crystals: perovskite SrTiO3, rock salt (primitive), CsCl, wurtzite-like ZnO."""
    perovskite = Structure(Lattice.cubic(3.91), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    rocksalt = Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    wurtzite = Structure(Lattice.hexagonal(3.25, 5.21), ["Zn", "Zn", "O", "O"],
                         [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38], [2 / 3, 1 / 3, 0.88]])
    return [rattled(s, i) for i, s in enumerate([perovskite, rocksalt, cscl, wurtzite])]
