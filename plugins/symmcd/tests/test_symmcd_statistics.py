"""Data-derived distributions on a hand-made training set (values computed by hand), and the paper preset."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from omegaconf import OmegaConf
from symmcd_testdata import load_small_config
from torch_geometric.data import Data

from crystalgen.state import SampleRequest
from crystalgen_symmcd.model import TOP10_SPACEGROUPS, SymmCD
from crystalgen_symmcd.symmetry import SITE_CLASSES, space_group_table


def classes(*rows: str) -> list[int]:
    """15 class indices from 15 class names."""
    assert len(rows) == 15
    return [SITE_CLASSES.index(r) for r in rows]


# Oriented site symmetries (rows: [100] [010] [001], 4 x <111>, 6 x <110>, [120] [210]), as in Pm-3m / Fm-3m.
CUBIC = classes(*["4/m"] * 3, *["-3"] * 4, *["2/m"] * 6, "-1", "-1")  # m-3m (1a, 1b of Pm-3m; 4a, 4b of Fm-3m)
ALONG_Z = classes("2/m", "2/m", "4/m", *["-1"] * 4, "2/m", "2/m", *["-1"] * 4, "-1", "-1")  # 4/mmm along [001]


def item(spacegroup: int, types: list[int], sites: list[list[int]]) -> Data:
    return Data(spacegroup=torch.tensor([spacegroup]), atom_types=torch.tensor(types),
                site_symmetry=torch.tensor(sites), lattice_k=torch.zeros(1, 6), num_nodes=len(types))


def hand_made() -> list[Data]:
    """Two perovskites and one CsCl in Pm-3m (221), one rock salt in Fm-3m (225)."""
    return [
        item(221, [38, 22, 8], [CUBIC, CUBIC, ALONG_Z]),  # SrTiO3: 1a, 1b, 3d
        item(221, [56, 40, 8], [CUBIC, CUBIC, ALONG_Z]),  # BaZrO3
        item(221, [55, 17], [CUBIC, CUBIC]),  # CsCl
        item(225, [11, 17], [CUBIC, CUBIC]),  # NaCl: 4a, 4b
    ]


@pytest.fixture(scope="module")
def model() -> SymmCD:
    torch.manual_seed(0)
    m = SymmCD(load_small_config().model)
    m.fit_statistics(hand_made())
    return m


def test_space_group_and_representative_count_distributions(model):
    assert model.spacegroup_probs[221].item() == pytest.approx(3 / 4)
    assert model.spacegroup_probs[225].item() == pytest.approx(1 / 4)
    assert model.spacegroup_probs.sum().item() == pytest.approx(1.0)
    p221 = model.representatives_probs[221]
    assert p221[3].item() == pytest.approx(2 / 3) and p221[2].item() == pytest.approx(1 / 3)
    assert model.representatives_probs[225][2].item() == pytest.approx(1.0)
    unseen = model.representatives_probs[14]  # an unseen group falls back to M over all crystals: 2 of 4 have M = 3
    assert unseen[2].item() == pytest.approx(1 / 2) and unseen[3].item() == pytest.approx(1 / 2)


def test_hand_made_site_symmetries_occur_in_their_groups():
    pm3m = space_group_table(221)
    assert list(pm3m.wyckoff[-1].site_symmetry[0]) == CUBIC  # 1a
    assert ALONG_Z in [list(s) for wp in pm3m.wyckoff if wp.multiplicity == 3 for s in wp.site_symmetry]


def test_per_space_group_site_symmetry_marginals(model):
    m = model.site_symmetry_marginals
    c = SITE_CLASSES.index
    # Pm-3m: 8 representatives, 6 with m-3m and 2 with 4/mmm along [001]
    assert m[221, 0, c("4/m")].item() == pytest.approx(6 / 8) and m[221, 0, c("2/m")].item() == pytest.approx(2 / 8)
    assert m[221, 2, c("4/m")].item() == pytest.approx(1.0)
    assert m[221, 3, c("-3")].item() == pytest.approx(6 / 8) and m[221, 3, c("-1")].item() == pytest.approx(2 / 8)
    assert m[221, 13, c("-1")].item() == pytest.approx(1.0)
    assert m[225, 0, c("4/m")].item() == pytest.approx(1.0)  # only m-3m sites in Fm-3m
    assert torch.allclose(m[14], torch.full((15, 13), 1 / 13, dtype=m.dtype))  # unseen: uniform (official code)
    assert torch.allclose(m[[221, 225, 14]].sum(-1), torch.ones(3, 15, dtype=m.dtype))


def test_sampled_representative_counts_and_site_priors_follow_the_space_group(model):
    torch.manual_seed(0)
    cond = model.prepare_sampling(SampleRequest(300, spacegroup=221))
    counts = torch.bincount(cond.data["crystal"], minlength=300)
    assert set(counts.tolist()) == {2, 3}  # the M seen with Pm-3m, both drawn
    assert abs((counts == 3).float().mean().item() - 2 / 3) < 0.1
    marginal = cond.process_args["site_symmetry"]["marginal"]
    assert torch.equal(marginal, model.site_symmetry_marginals[221].expand_as(marginal))
    rock_salt = model.prepare_sampling(SampleRequest(50, spacegroup=225))
    assert set(torch.bincount(rock_salt.data["crystal"]).tolist()) == {2}


def test_paper_preset_has_the_published_settings():
    """The SymmCD paper, App. E: 8 layers x 1024, 128 Fourier frequencies, a
    10-dimensional time embedding, loss weights k 5 / X' 1 / A' 0.1 / S 10, T = 1000, the ten groups of "10 SGs"."""
    cfg = OmegaConf.create(resources.files("crystalgen_symmcd.configs").joinpath("paper.yaml").read_text())
    model = SymmCD(cfg.model)
    net = model.denoiser
    assert len(net.layers) == 8
    assert all(layer.edge_mlp[-2].out_features == 1024 and layer.node_mlp[-2].out_features == 1024 for layer in net.layers)
    assert net.fourier.num_frequencies == 128 and net.fourier.first_frequency == 1
    assert net.time_embedding.dim == 10
    assert isinstance(net.final_norm, torch.nn.LayerNorm)
    assert model.loss_weights == {"lattice_k": 5.0, "frac_coords": 1.0, "atom_types": 0.1, "site_symmetry": 10.0}
    assert model.num_steps == 1000 and {p.num_steps for p in model.processes.values()} == {1000}
    assert sorted(TOP10_SPACEGROUPS) == [2, 12, 14, 62, 63, 139, 166, 194, 221, 225]
