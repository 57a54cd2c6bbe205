"""Models built from named parts: a part swapped by configuration alone, a third-party denoiser serving an existing
model, and pairings that cannot work refused when the model is assembled, naming the installed parts that fit.

Uses the test-only ``toy`` model and the third-party fixture tests/fixtures/crystalgen_extra_denoiser (both
installed with ``pip install -e``, see the README's test command).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crystalgen.cli.main import main
from crystalgen.models.assembly import IncompatiblePartsError, PartConfigError
from crystalgen.processes import ContinuousProcess, D3PMMarginal, VEGaussian, VPGaussian, WrappedNormal
from crystalgen.runner.config import ConfigError, compose
from crystalgen.runner.models import load_trained, model_class

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
pytest.importorskip("crystalgen_extra_denoiser", reason="install tests/fixtures/crystalgen_extra_denoiser (pip install -e)")

TINY = ["--no-progress", "model.num_steps=10", "trainer.max_epochs=2", "data.max_train_rows=32", "data.max_val_rows=8",
        "data.workers=0", "sample.num_samples=6", "sample.batch_size=4", "evaluate.metrics=[validity]",
        "evaluate.workers=1", "evaluate.train_split=null"]


pytestmark = pytest.mark.usefixtures("private_cache", "one_torch_thread")


def toy_config(*overrides: str):
    cls = model_class("toy")
    return cls, compose(cls.presets(), "small", model_name="toy", overrides=list(overrides))


def run_toy(root: Path, *overrides: str) -> Path:
    assert main(["run", "toy", "--runs-root", str(root), *TINY, *overrides]) == 0
    (run,) = [p for p in root.iterdir() if p.name.startswith("toy-embedded-")]
    return run


# -- the configuration of a part -----------------------------------------------------------------------------
def test_naming_another_part_drops_the_options_of_the_one_it_replaces():
    _, cfg = toy_config("model.processes.lattice.name=ve_gaussian", "model.processes.lattice.sigma_max=5.0")
    assert dict(cfg.model.processes.lattice) == {"name": "ve_gaussian", "sigma_max": 5.0}  # no VP `schedule` left
    _, same = toy_config("model.processes.lattice.prediction=x0")
    assert dict(same.model.processes.lattice) == {"name": "vp_gaussian", "schedule": "cosine", "prediction": "x0"}


def test_the_parts_options_are_their_constructors():
    cls, cfg = toy_config("model.processes.lattice.name=ve_gaussian", "model.processes.lattice.sigma_mx=5.0")
    with pytest.raises(PartConfigError, match="VEGaussian has no option 'sigma_mx'. Did you mean 'sigma_max'?"):
        cls.assemble(cfg.model)
    cls, cfg = toy_config("model.processes.lattice.num_steps=7")
    with pytest.raises(PartConfigError, match="model.processes.lattice.num_steps is set by the model"):
        cls.assemble(cfg.model)
    with pytest.raises(ConfigError, match="must be the name of a registered part"):
        toy_config("model.denoiser.name=3")


def test_an_unknown_part_name_lists_the_installed_ones():
    cls, cfg = toy_config("model.decoder.name=cel")
    with pytest.raises(LookupError, match=r"model.decoder: Unknown decoder 'cel'. Did you mean 'cell'"):
        cls.assemble(cfg.model)


# -- refusals at assembly (before anything is built or read) -----------------------------------------------------
@pytest.mark.parametrize(("override", "problem", "fits"), [
    ("model.processes.atom_types.name=vp_gaussian", "is a continuous process, atom_types needs a categorical one",
     "model.processes.atom_types: d3pm_marginal"),
    ("model.processes.frac_coords.name=vp_gaussian", "works on real values, frac_coords holds torus values",
     "model.processes.frac_coords: wrapped_normal"),
    ("model.decoder.name=symmcd_wyckoff", "reads lattice_k, site_symmetry, which the model does not produce",
     "model.decoder: cell"),
    ("model.denoiser.name=symmcd", "predicts no lattice", "model.denoiser: set_transformer, toy_mlp"),
])
def test_a_part_that_cannot_fit_is_refused_naming_the_installed_parts_that_do(override, problem, fits):
    cls, cfg = toy_config(override)
    with pytest.raises(IncompatiblePartsError) as err:
        cls.assemble(cfg.model)
    message = str(err.value)
    assert message.startswith("model 'toy' cannot be built: ") and "\n" not in message
    assert problem in message and f"installed parts that fit {fits}." in message


def test_replacements_are_the_installed_parts_that_fit_each_slot():
    cls, cfg = toy_config()
    assembly = cls.assemble(cfg.model)
    assert assembly.replacements("processes.lattice") == ["ve_gaussian", "vp_gaussian"]
    assert assembly.replacements("processes.atom_types") == ["d3pm_marginal"]
    assert assembly.replacements("denoiser") == ["set_transformer", "toy_mlp"]
    assert assembly.replacements("decoder") == ["cell"]


def test_parts_that_fit_only_with_options_are_listed_with_them_not_as_fitting_by_name():
    """structrepdiff_ead provides every field a full-cell transform writes but has no default for its `ead`
    settings; the VE Gaussian fits SymmCD's lattice only once its prediction is set to eps."""
    cls, cfg = toy_config()
    assembly = cls.assemble(cfg.model)
    assert "structrepdiff_ead" not in assembly.replacements("transform")
    assert [str(f) for f in assembly.fits("transform") if not f.as_is] == ["structrepdiff_ead (needs ead)"]
    symmcd = model_class("symmcd")
    symmcd_assembly = symmcd.assemble(compose(symmcd.presets(), "small", model_name="symmcd").model)
    assert symmcd_assembly.replacements("processes.lattice_k") == ["vp_gaussian"]
    assert [str(f) for f in symmcd_assembly.fits("processes.lattice_k")] == ["ve_gaussian (prediction=eps)", "vp_gaussian"]
    _, named = toy_config("model.transform.name=structrepdiff_ead")
    with pytest.raises(PartConfigError, match=r"model.transform: .* \(structrepdiff_ead\) needs the option\(s\) ead"):
        cls.assemble(named.model)
    with pytest.raises(IncompatiblePartsError, match=r"\(set prediction to one of eps\); installed parts that fit "
                                                     r"model.processes.lattice_k: vp_gaussian\."):
        symmcd.assemble(compose(symmcd.presets(), "small", model_name="symmcd",
                                overrides=["model.processes.lattice_k.name=ve_gaussian"]).model)


def test_the_cli_refuses_an_incompatible_part_in_one_line_before_reading_data(tmp_path, capsys, monkeypatch):
    import crystalgen.runner.pipeline as pipeline

    monkeypatch.setattr(pipeline, "prepared_split", lambda *a, **k: pytest.fail("data was read"))
    code = main(["train", "toy", "--runs-root", str(tmp_path), "--no-progress", "model.processes.atom_types.name=vp_gaussian"])
    assert code == 2
    first, *rest = capsys.readouterr().err.splitlines()
    assert first.startswith("crystalgen train: error: model 'toy' cannot be built: model.processes.atom_types 'vp_gaussian'")
    assert first.endswith("installed parts that fit model.processes.atom_types: d3pm_marginal.")
    assert rest == ["(set CRYSTALGEN_TRACEBACK=1 for the full traceback)"]
    assert not list(tmp_path.iterdir()), "a run directory was made for a model that cannot be built"


# -- swapped parts train and sample -------------------------------------------------------------------------------
def test_a_noise_process_swapped_by_config_trains_and_samples(tmp_path):
    run = run_toy(tmp_path, "model.processes.lattice.name=ve_gaussian", "model.processes.lattice.sigma_max=3.0")
    trained = load_trained(run / "checkpoints" / "last.ckpt")
    lattice = trained.model.processes["lattice"]
    assert isinstance(lattice, VEGaussian) and not isinstance(lattice, VPGaussian)
    assert float(lattice.sigmas[-1]) == pytest.approx(3.0)
    assert (run / "samples" / "samples.jsonl").read_text().count("\n") == 6
    assert "ve_gaussian" in (run / "config.yaml").read_text()


def test_a_noise_process_of_a_real_plugin_swapped_by_config_trains_and_samples_through_the_cli(tmp_path):
    """SymmCD's lattice process (VP, cosine) swapped for the VE Gaussian by configuration alone: `crystalgen run`
    trains, samples and evaluates, and `crystalgen sample` rebuilds the swapped process from the checkpoint."""
    pytest.importorskip("crystalgen_symmcd", reason="install plugins/symmcd (pip install -e)")
    swap = ["model.processes.lattice_k.name=ve_gaussian", "model.processes.lattice_k.prediction=eps",
            "model.processes.lattice_k.sigma_max=5.0"]
    tiny = ["--no-progress", "--threads", "1", "model.denoiser.hidden=16", "model.denoiser.num_layers=1",
            "model.denoiser.num_frequencies=2", "trainer.max_epochs=2", "trainer.max_minutes=null",
            "data.max_train_rows=32", "data.max_val_rows=8", "data.workers=0", "sample.num_samples=4", "sample.steps=5",
            "evaluate.metrics=[validity]", "evaluate.workers=1", "evaluate.train_split=null"]
    run = tmp_path / "run"
    assert main(["run", "symmcd", "--run-dir", str(run), *tiny, *swap]) == 0
    trained = load_trained(run / "checkpoints" / "last.ckpt")
    lattice = trained.model.processes["lattice_k"]
    assert isinstance(lattice, VEGaussian) and not isinstance(lattice, VPGaussian)
    assert lattice.prediction == "eps" and float(lattice.sigmas[-1]) == pytest.approx(5.0)
    assert isinstance(trained.model.processes["frac_coords"], WrappedNormal)  # the other processes are the preset's
    assert trained.payload["progress"]["global_step"] > 0
    assert (run / "samples" / "samples.jsonl").read_text().count("\n") == 4
    assert (run / "metrics" / "metrics.json").is_file()
    out = tmp_path / "more"
    assert main(["sample", "symmcd", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "-n", "3", "--steps", "4",
                 "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    assert (out / "samples.jsonl").read_text().count("\n") == 3


def test_a_third_party_denoiser_serves_an_existing_model_by_config_alone(tmp_path):
    from crystalgen_extra_denoiser.set_transformer import SetTransformerDenoiser

    run = run_toy(tmp_path, "model.denoiser.name=set_transformer", "model.denoiser.heads=2")
    trained = load_trained(run / "checkpoints" / "last.ckpt")
    assert isinstance(trained.model.denoiser, SetTransformerDenoiser)
    assert trained.model.denoiser.blocks[0].self_attn.num_heads == 2
    assert trained.payload["progress"]["global_step"] > 0
    assert (run / "samples" / "samples.jsonl").read_text().count("\n") == 6


# -- crystalgen list -------------------------------------------------------------------------------------------
def test_a_model_reads_a_process_as_the_kind_it_calls_and_refuses_another_naming_both():
    cls, cfg = toy_config()
    model = cls.from_config(cfg.model)
    assert isinstance(model.process_as("atom_types", D3PMMarginal), D3PMMarginal)
    with pytest.raises(TypeError, match=r"ContinuousProcess for the variable 'atom_types'.* a D3PMMarginal"):
        model.process_as("atom_types", ContinuousProcess)
    assert model.as_sampling_model() is model
    model.processes["lattice"] = torch.nn.Identity()
    with pytest.raises(TypeError, match=r"not noise processes: \{'lattice': 'Identity'\}"):
        model.as_sampling_model()


def test_list_shows_each_models_parts_and_what_could_replace_them(capsys):
    from crystalgen.cli.list_plugins import inventory

    toy = inventory()["models"]["toy"]
    assert toy["denoiser"] == {"part": "toy_mlp", "fits": ["set_transformer", "toy_mlp"], "fits_with_options": {}}
    assert toy["processes.lattice"] == {"part": "vp_gaussian", "fits": ["ve_gaussian", "vp_gaussian"],
                                        "fits_with_options": {}}
    assert toy["transform"]["fits_with_options"] == {"structrepdiff_ead": {"required": ["ead"], "set": {}}}
    assert "structrepdiff_ead" not in toy["transform"]["fits"]
    assert inventory()["models"]["cdvae"]["processes.frac_coords"] == {"part": "cartesian_ve", "fits": ["cartesian_ve"],
                                                                      "fits_with_options": {}}
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "    denoiser                   toy_mlp                  fits: set_transformer, toy_mlp*" in out
    assert "fits: cdvae_niggli, full_cell*\n" in out and "with options: structrepdiff_ead (needs ead)" in out
