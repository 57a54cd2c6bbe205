"""cached_statistics: a model's estimate from its training crystals is computed once per content and settings."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen import cached_statistics, structure_to_data
from crystalgen.data.statistics_cache import statistics_file


def items() -> list:
    """Fresh Data objects each call, equal in content."""
    rocksalt = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [structure_to_data(s) for s in (rocksalt, cscl)]


class Counted:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"std": torch.arange(4, dtype=torch.float64) + self.calls}


def test_the_same_crystals_and_settings_are_computed_once(tmp_path):
    compute = Counted()
    first = cached_statistics("demo", items(), {"levels": 4}, compute, cache_dir=tmp_path)
    second = cached_statistics("demo", items(), {"levels": 4}, compute, cache_dir=tmp_path)
    assert compute.calls == 1 and torch.equal(first["std"], second["std"])
    assert second["std"].dtype == torch.float64


@pytest.mark.parametrize("change", ["coordinate", "settings", "order"])
def test_other_crystals_settings_or_order_compute_anew(tmp_path, change):
    compute = Counted()
    cached_statistics("demo", items(), {"levels": 4}, compute, cache_dir=tmp_path)
    data, settings = items(), {"levels": 4}
    if change == "coordinate":
        data[1].frac_coords[0, 0] += 1e-6
    elif change == "settings":
        settings = {"levels": 5}
    else:
        data.reverse()
    again = cached_statistics("demo", data, settings, compute, cache_dir=tmp_path)
    assert compute.calls == 2 and again["std"][0] == 2


def test_a_damaged_file_is_recomputed_with_a_warning(tmp_path):
    compute = Counted()
    cached_statistics("demo", items(), {}, compute, cache_dir=tmp_path)
    (path,) = (tmp_path / "statistics").iterdir()
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.warns(UserWarning, match="truncated"):
        cached_statistics("demo", items(), {}, compute, cache_dir=tmp_path)
    assert compute.calls == 2


def test_an_unwritable_cache_warns_and_still_gives_the_values(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="not cached"):
        values = cached_statistics("demo", items(), {}, Counted(), cache_dir=blocked)
    assert torch.equal(values["std"], torch.arange(4, dtype=torch.float64) + 1)
    assert not statistics_file("demo", "0" * 64, blocked).exists()
