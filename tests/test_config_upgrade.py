"""Checkpoints written before models were built from named parts still load: each model's upgrade_config maps the
``model`` section that crystalgen-core 0.1's plugins saved onto today's, and the runner applies it wherever a saved
configuration is rebuilt (load_trained for sample/reconstruct/optimize, resume_config for train --resume).

OLD holds the ``model`` sections of every preset of the three plugins as they were at commit 64edc26 (comments
dropped), the shape a 0.1 checkpoint carries.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from pymatgen.core import Lattice, Structure

from crystalgen.runner.checkpoint import load_checkpoint, save_checkpoint
from crystalgen.runner.config import compose, to_yaml
from crystalgen.runner.models import load_trained, model_class
from crystalgen.runner.pipeline import resume_config, sample, train
from crystalgen.runner.run_dir import RunDir

OLD = {
    ("symmcd", "small"): """
num_steps: 1000
sigma_begin: 0.005
sigma_end: 0.5
loss_weights:
  lattice_k: 5.0
  frac_coords: 1.0
  atom_types: 0.1
  site_symmetry: 10.0
spacegroup_prior: data
symprec: 0.1
angle_tolerance: 5.0
max_cell_atoms: null
max_representatives: 64
denoiser:
  hidden: 128
  num_layers: 3
  num_frequencies: 16
  time_dim: 10
  spacegroup_dim: 64
  site_symmetry_dim: 64
  site_axis_dim: 4
  site_logit_rank: 8
  layer_norm: true
""",
    ("symmcd", "paper"): """
num_steps: 1000
sigma_begin: 0.005
sigma_end: 0.5
loss_weights:
  lattice_k: 5.0
  frac_coords: 1.0
  atom_types: 0.1
  site_symmetry: 10.0
spacegroup_prior: data
symprec: 0.1
angle_tolerance: 5.0
max_cell_atoms: null
max_representatives: 64
denoiser:
  hidden: 1024
  num_layers: 8
  num_frequencies: 128
  time_dim: 10
  spacegroup_dim: 512
  site_symmetry_dim: 512
  site_axis_dim: 4
  site_logit_rank: 8
  layer_norm: true
""",
    ("cdvae", "small"): """
max_atoms: 20
num_elements: 100
latent_dim: 64
property: null
encoder:
  graph: radius
  hidden_channels: 64
  num_blocks: 2
  int_emb_size: 32
  basis_emb_size: 8
  out_emb_channels: 128
  num_spherical: 7
  num_radial: 6
  cutoff: 7.0
  max_neighbors: 12
  envelope_exponent: 5
decoder:
  hidden_dim: 64
  emb_trip: 32
  emb_bilinear: 32
  emb_rbf: 16
  emb_cbf: 16
  num_spherical: 7
  num_radial: 32
  num_blocks: 2
  num_before_skip: 1
  num_after_skip: 1
  num_concat: 1
  num_atom: 2
  cutoff: 7.0
  max_neighbors: 12
  scale_factors: fit
  fit_batches: 4
  fit_batch_size: 32
heads:
  hidden_dim: 128
  num_layers: 1
noise:
  num_levels: 50
  sigma_begin: 10.0
  sigma_end: 0.01
  type_sigma_begin: 5.0
  type_sigma_end: 0.01
  independent_levels: true
loss_weights:
  num_atoms: 1.0
  lattice: 10.0
  coord: 10.0
  type: 1.0
  composition: 1.0
  kl: 0.01
  property: 1.0
teacher_forcing_max_epoch: 20
validation_loss: decoder
optimization:
  steps: 500
  lr: 0.001
  decode_every: 100
""",
    ("cdvae", "paper"): """
max_atoms: 20
num_elements: 100
latent_dim: 256
property: null
encoder:
  graph: crystalnn
  hidden_channels: 128
  num_blocks: 4
  int_emb_size: 64
  basis_emb_size: 8
  out_emb_channels: 256
  num_spherical: 7
  num_radial: 6
  cutoff: 7.0
  max_neighbors: 20
  envelope_exponent: 5
decoder:
  hidden_dim: 128
  emb_trip: 64
  emb_bilinear: 64
  emb_rbf: 16
  emb_cbf: 16
  num_spherical: 7
  num_radial: 128
  num_blocks: 3
  num_before_skip: 1
  num_after_skip: 2
  num_concat: 1
  num_atom: 3
  cutoff: 7.0
  max_neighbors: 20
  scale_factors: paper
  fit_batches: 16
  fit_batch_size: 32
heads:
  hidden_dim: 256
  num_layers: 1
noise:
  num_levels: 50
  sigma_begin: 10.0
  sigma_end: 0.01
  type_sigma_begin: 5.0
  type_sigma_end: 0.01
  independent_levels: true
loss_weights:
  num_atoms: 1.0
  lattice: 10.0
  coord: 10.0
  type: 1.0
  composition: 1.0
  kl: 0.01
  property: 1.0
teacher_forcing_max_epoch: 1500
validation_loss: decoder
optimization:
  steps: 5000
  lr: 0.001
  decode_every: 555
""",
    ("cdvae", "paper_mp_20"): """
max_atoms: 20
num_elements: 100
latent_dim: 256
property: formation_energy_per_atom
encoder:
  graph: crystalnn
  hidden_channels: 128
  num_blocks: 4
  int_emb_size: 64
  basis_emb_size: 8
  out_emb_channels: 256
  num_spherical: 7
  num_radial: 6
  cutoff: 7.0
  max_neighbors: 20
  envelope_exponent: 5
decoder:
  hidden_dim: 128
  emb_trip: 64
  emb_bilinear: 64
  emb_rbf: 16
  emb_cbf: 16
  num_spherical: 7
  num_radial: 128
  num_blocks: 3
  num_before_skip: 1
  num_after_skip: 2
  num_concat: 1
  num_atom: 3
  cutoff: 7.0
  max_neighbors: 20
  scale_factors: paper
  fit_batches: 16
  fit_batch_size: 32
heads:
  hidden_dim: 256
  num_layers: 1
noise:
  num_levels: 50
  sigma_begin: 10.0
  sigma_end: 0.01
  type_sigma_begin: 5.0
  type_sigma_end: 0.01
  independent_levels: true
loss_weights:
  num_atoms: 1.0
  lattice: 10.0
  coord: 10.0
  type: 1.0
  composition: 1.0
  kl: 0.01
  property: 1.0
teacher_forcing_max_epoch: 500
validation_loss: decoder
optimization:
  steps: 5000
  lr: 0.001
  decode_every: 555
""",
    ("cdvae", "paper_carbon_24"): """
max_atoms: 24
num_elements: 100
latent_dim: 256
property: null
encoder:
  graph: crystalnn
  hidden_channels: 128
  num_blocks: 4
  int_emb_size: 64
  basis_emb_size: 8
  out_emb_channels: 256
  num_spherical: 7
  num_radial: 6
  cutoff: 7.0
  max_neighbors: 20
  envelope_exponent: 5
decoder:
  hidden_dim: 128
  emb_trip: 64
  emb_bilinear: 64
  emb_rbf: 16
  emb_cbf: 16
  num_spherical: 7
  num_radial: 128
  num_blocks: 3
  num_before_skip: 1
  num_after_skip: 2
  num_concat: 1
  num_atom: 3
  cutoff: 7.0
  max_neighbors: 20
  scale_factors: paper
  fit_batches: 16
  fit_batch_size: 32
heads:
  hidden_dim: 256
  num_layers: 1
noise:
  num_levels: 50
  sigma_begin: 10.0
  sigma_end: 0.01
  type_sigma_begin: 5.0
  type_sigma_end: 0.01
  independent_levels: true
loss_weights:
  num_atoms: 1.0
  lattice: 10.0
  coord: 10.0
  type: 1.0
  composition: 1.0
  kl: 0.01
  property: 1.0
teacher_forcing_max_epoch: 1000
validation_loss: decoder
optimization:
  steps: 5000
  lr: 0.001
  decode_every: 555
""",
    ("structrepdiff", "small"): """
ead:
  lmax: 1
  mu_start: 0.0
  mu_stop: 8.0
  mu_step: 0.2
  etas: [1.0, 20.0, 90.0]
  cutoff: 8.0
  angular: cumulative
ead_method: table
table_spacing: 0.01
num_elements: 96
max_atoms: null
num_steps: 2000
schedule: cosine
scaling: standard
clip_x0: true
unet:
  dim: 16
  dim_mults: [1, 2, 4]
  groups: 4
  attention_heads: 2
  attention_dim_head: 16
reconstruction:
  trials: 2
  hops: 2
  iterations: 100
  lr: 0.3
  lr_final: 0.005
  hop_step: 1.0
  relocate_atoms: 0
  relocate_closer_than: 0.0
  loss_threshold: 0.0001
  d_min_penalty: 1.0
  check_every: 10
  skin: 1.0
  max_pairs: 4000000
  loss_weighting: none
  std_floor: 10.0
  d_min_weight: 40.0
""",
    ("structrepdiff", "paper"): """
ead:
  lmax: 1
  mu_start: 0.0
  mu_stop: 20.0
  mu_step: 0.1
  etas: [1.0, 20.0, 90.0]
  cutoff: 20.0
  angular: cumulative
ead_method: table
table_spacing: 0.01
num_elements: 96
max_atoms: null
num_steps: 2000
schedule: cosine
scaling: standard
clip_x0: true
unet:
  dim: 64
  dim_mults: [1, 2, 4, 8]
  groups: 8
  attention_heads: 4
  attention_dim_head: 64
reconstruction:
  trials: 6
  hops: 7
  iterations: 300
  lr: 0.3
  lr_final: 0.005
  hop_step: 1.0
  relocate_atoms: 0
  relocate_closer_than: 0.0
  loss_threshold: null
  d_min_penalty: 0.0
  check_every: 10
  skin: 1.0
  max_pairs: 4000000
  loss_weighting: none
  std_floor: 10.0
  d_min_weight: 200.0
""",
}


def preset_model_section(name: str, preset: str) -> dict:
    """The preset's model section as a run on the default data resolves it (e.g. benchmark_max_atoms: 20)."""
    return OmegaConf.to_container(compose(model_class(name).presets(), preset, model_name=name).model, resolve=True)


@pytest.mark.parametrize(("name", "preset"), sorted(OLD))
def test_an_old_model_section_upgrades_to_the_matching_preset(name, preset):
    pytest.importorskip(f"crystalgen_{name}")
    upgraded = OmegaConf.to_container(model_class(name).upgrade_config(OmegaConf.create(OLD[name, preset])))
    expected = preset_model_section(name, preset)
    if name == "structrepdiff":  # the presets lowered max_pairs after 64edc26 (448d610); a checkpoint keeps its own
        assert upgraded["decoder"]["max_pairs"] == 4_000_000
        expected["decoder"]["max_pairs"] = 4_000_000
    assert upgraded == expected


@pytest.mark.parametrize("name", ["symmcd", "cdvae", "structrepdiff"])
def test_a_section_in_todays_shape_comes_back_unchanged(name):
    pytest.importorskip(f"crystalgen_{name}")
    cls = model_class(name)
    for preset in cls.presets():
        section = OmegaConf.load(cls.presets()[preset]).model
        assert OmegaConf.to_container(cls.upgrade_config(section)) == OmegaConf.to_container(section), preset


def test_structrepdiff_keys_older_checkpoints_lack_get_the_values_they_were_read_with():
    """0.1 read scaling, clip_x0 and the later search settings with defaults when a checkpoint lacked them; the
    decoder's own default loss weighting is now the paper's (none), so the upgrade writes 0.1's (spread)."""
    pytest.importorskip("crystalgen_structrepdiff")
    old = OmegaConf.create(OLD["structrepdiff", "small"])
    for key in ("scaling", "clip_x0"):
        del old[key]
    for key in ("relocate_atoms", "relocate_closer_than", "d_min_penalty", "loss_weighting"):
        del old.reconstruction[key]
    upgraded = model_class("structrepdiff").upgrade_config(old)
    assert (upgraded.scaling, upgraded.clip_x0) == ("standard", True)
    assert (upgraded.decoder.relocate_atoms, upgraded.decoder.relocate_closer_than, upgraded.decoder.d_min_penalty,
            upgraded.decoder.loss_weighting) == (0, 0.0, 0.0, "spread")
    assert model_class("structrepdiff").from_config(upgraded).decoder.loss_weighting == "spread"


# -- end to end: a checkpoint whose saved configuration has the old shape -----------------------------------------
#: A tiny StructRepDiff in the 0.1 shape (what such a checkpoint's config.yaml holds under ``model``).
TINY_OLD = """
ead: {lmax: 1, mu_start: 0.5, mu_stop: 5.5, mu_step: 0.25, etas: [1.0, 4.0, 16.0], cutoff: 6.0}
ead_method: table
table_spacing: 0.01
num_elements: 96
max_atoms: null
num_steps: 50
schedule: cosine
scaling: standard
clip_x0: true
unet: {dim: 8, dim_mults: [1, 2], groups: 4, attention_heads: 2, attention_dim_head: 8}
reconstruction: {trials: 2, hops: 1, iterations: 10, lr: 0.3, lr_final: 0.005, hop_step: 1.0, relocate_atoms: 0,
                 relocate_closer_than: 0.0, loss_threshold: null, d_min_penalty: 1.0, check_every: 10, skin: 1.0,
                 max_pairs: 1000000, loss_weighting: none, std_floor: 10.0, d_min_weight: 9.0}
"""


def crystals() -> list[Structure]:
    return [Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            Structure(Lattice.cubic(4.0), ["Sr", "Ti", "O", "O", "O"],
                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])]


@pytest.fixture
def old_checkpoint(tmp_path, monkeypatch):
    """A tiny StructRepDiff trained for one epoch, its checkpoint's configuration rewritten to the 0.1 shape."""
    pytest.importorskip("crystalgen_structrepdiff")
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cls = model_class("structrepdiff")
    cfg = compose(cls.presets(), "small", model_name="structrepdiff",
                  overrides=["trainer.max_epochs=1", "trainer.max_minutes=null", "data.batch_size=3"])
    cfg.model = cls.upgrade_config(OmegaConf.create(TINY_OLD))
    transform = cls.transform(cfg.model)
    items = [transform(s) for s in crystals()]
    run = RunDir(tmp_path / "run")
    train("structrepdiff", cfg, run, data=(items, items), show_progress=False)
    path = run.checkpoints / "last.ckpt"
    payload = load_checkpoint(path)
    saved = OmegaConf.create(payload["config"])
    saved.model = OmegaConf.create(TINY_OLD)
    payload["config"] = to_yaml(saved)
    save_checkpoint(payload, path)
    yield path
    torch.set_num_threads(threads)


def test_a_checkpoint_with_an_old_shaped_config_loads_samples_and_resumes(old_checkpoint, tmp_path):
    assert "reconstruction:" in load_checkpoint(old_checkpoint)["config"]  # the stored config is the old shape
    # the weights fit the model as built from the upgraded section: no key missing, none left over
    trained = load_trained(old_checkpoint, model_overrides=["decoder.trials=1"])
    payload = load_checkpoint(old_checkpoint)
    keys = trained.model.load_state_dict(payload["model"])
    assert not keys.missing_keys and not keys.unexpected_keys
    assert trained.config.model.decoder.name == "structrepdiff_reconstruction"
    assert trained.model.decoder.settings.trials == 1  # an override in today's keys reaches the decoder

    counts = sample(old_checkpoint, tmp_path / "samples", num_samples=2, steps=2, batch_size=2, show_progress=False)
    assert counts["requested"] == 2 and counts["ok"] >= 1

    name, cfg, _, _ = resume_config(old_checkpoint, ["trainer.max_epochs=2"])
    assert name == "structrepdiff" and cfg.model.processes.representation.name == "vp_gaussian"
    assert cfg.model.transform.method == "table" and "reconstruction" not in cfg.model
