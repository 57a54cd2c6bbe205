"""Training stages: the two-stage ``toy_staged`` model (tests/fixtures/crystalgen_toy_model/.../staged.py).

Stage ``autoencoder`` (a third of the epochs) trains only the lattice autoencoder on its reconstruction loss; stage
``diffusion`` freezes it and trains the denoiser on a loss whose gradients reach the autoencoder too, so only the
freezing keeps it still. Each stage ends with its own checkpoint, and a run interrupted inside either stage resumes
there and ends exactly like an uninterrupted one.
"""

from __future__ import annotations

import pytest
import torch

from crystalgen import Stage
from crystalgen.runner.checkpoint import load_checkpoint
from crystalgen.runner.config import compose
from crystalgen.runner.distributed import seed_everything
from crystalgen.runner.metric_log import read_metric_log
from crystalgen.runner.models import model_class
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir
from crystalgen.runner.stages import plan_stages

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
from crystalgen_toy_model.crystals import toy_structures  # noqa: E402
from crystalgen_toy_model.staged import ToyStagedDiffusion  # noqa: E402

BASE = ["trainer.max_epochs=3", "data.batch_size=6", "trainer.log_every=1", "model.num_steps=10", "trainer.seed=5"]
# Stateful features on for the resume tests: cosine schedule per stage, EMA, clipping.
STATEFUL = ["trainer.scheduler.name=cosine", "trainer.ema_decay=0.9", "trainer.grad_clip=1.0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(*overrides: str):
    cls = model_class("toy_staged")
    return compose(cls.presets(), "small", model_name="toy_staged", overrides=[*BASE, *overrides])


@pytest.fixture(scope="module")
def data():
    transform = model_class("toy_staged").transform(config().model)
    items = [transform(s) for s in toy_structures(16, seed=2)]
    return items[:12], items[12:]  # 2 training steps and 1 validation batch per epoch


def part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} {what}"


def assert_changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert any(not torch.equal(a[k], b[k]) for k in a), f"no tensor of {what} changed"


def test_stages_run_in_order_each_training_only_its_parameters_and_ending_with_a_checkpoint(tmp_path, data):
    cfg = config()
    seed_everything(cfg.trainer.seed)  # as train() does before building the model: its initial weights
    initial = model_class("toy_staged").from_config(cfg.model).state_dict()
    run = RunDir(tmp_path / "run")
    progress = train("toy_staged", cfg, run, data=data, show_progress=False)
    assert progress.finished and progress.stage == 2 and progress.epoch == 3 and progress.global_step == 6
    first = load_checkpoint(run.checkpoints / "stage-autoencoder.ckpt")
    second = load_checkpoint(run.checkpoints / "stage-diffusion.ckpt")
    last = load_checkpoint(run.checkpoints / "last.ckpt")
    assert first["progress"]["epoch"] == 1 and second["progress"]["epoch"] == 3  # shares 1 : 2 of 3 epochs
    # stage 1 trained the autoencoder only
    assert_changed(part(first["model"], "autoencoder"), part(initial, "autoencoder"), "the autoencoder in stage 1")
    assert_equal(part(first["model"], "denoiser"), part(initial, "denoiser"), "changed in stage 1, which freezes it")
    # stage 2 trained the denoiser only, although its loss reaches the autoencoder
    assert_changed(part(last["model"], "denoiser"), part(first["model"], "denoiser"), "the denoiser in stage 2")
    assert_equal(part(last["model"], "autoencoder"), part(first["model"], "autoencoder"), "changed in stage 2")
    assert_equal(second["model"], last["model"], "differs between stage-diffusion.ckpt and last.ckpt")
    # each stage had its own optimiser over its own parameters
    model = ToyStagedDiffusion(cfg.model)
    sizes = {prefix: sum(1 for n, _ in model.named_parameters() if n.startswith(prefix)) for prefix in ("autoencoder", "denoiser")}
    assert len(first["optimizer"]["param_groups"][0]["params"]) == sizes["autoencoder"]
    assert len(second["optimizer"]["param_groups"][0]["params"]) == sizes["denoiser"]
    assert {int(s["step"]) for s in second["optimizer"]["state"].values()} == {4}  # stage 2's steps only
    # each stage monitored its own loss: stage 1 validated the reconstruction only
    metrics = read_metric_log(run.train_log)
    assert [epoch for _, epoch, _ in metrics["val/reconstruction"]] == [0, 1, 2]
    assert [epoch for _, epoch, _ in metrics["val/frac_coords"]] == [1, 2]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run the resumed ones must reproduce (with EMA, a cosine schedule and clipping)."""
    run = RunDir(tmp_path_factory.mktemp("reference"))
    assert train("toy_staged", config(*STATEFUL), run, data=data, show_progress=False).finished
    return run


@pytest.mark.parametrize("crash_at", [4, 8], ids=["start-of-stage-2", "mid-stage-2"])
def test_a_run_interrupted_in_stage_two_resumes_there_and_ends_exactly_like_an_uninterrupted_one(tmp_path, data,
                                                                                               reference, crash_at,
                                                                                               monkeypatch):
    # training_loss calls per epoch: 2 steps + 1 validation batch; call 4 is stage 2's first step, 8 its third
    run = RunDir(tmp_path / "crashed")
    calls = {"n": 0}
    original = ToyStagedDiffusion.training_loss

    def crash(self, batch):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch)

    monkeypatch.setattr(ToyStagedDiffusion, "training_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        train("toy_staged", config(*STATEFUL), run, data=data, show_progress=False)
    monkeypatch.setattr(ToyStagedDiffusion, "training_loss", original)
    saved = load_checkpoint(run.checkpoints / "last.ckpt")["progress"]
    assert saved["stage"] == 1 and saved["stage_begun"] == (crash_at == 8)
    progress = train("toy_staged", config(*STATEFUL), run, data=data, show_progress=False,
                     resume=run.checkpoints / "last.ckpt")
    assert progress.finished and progress.global_step == 6
    for name in ("last.ckpt", "stage-diffusion.ckpt"):
        expected, got = load_checkpoint(reference.checkpoints / name), load_checkpoint(run.checkpoints / name)
        assert_equal(got["model"], expected["model"], f"differs from the uninterrupted run in {name}")
        assert_equal(got["ema"], expected["ema"], f"(EMA) differs from the uninterrupted run in {name}")
    # the frozen autoencoder is the average stage 1 ended with, as validation and sampling use it
    first = load_checkpoint(run.checkpoints / "stage-autoencoder.ckpt")
    final = load_checkpoint(run.checkpoints / "last.ckpt")
    assert_equal(part(final["model"], "autoencoder"), part(first["ema"], "autoencoder"), "is not stage 1's average")


def test_stage_plans_split_max_epochs_by_share_and_refuse_misnamed_stages_and_parameters():
    model = ToyStagedDiffusion(config().model)
    plan = plan_stages([Stage("a", share=1), Stage("b", share=3), Stage("c", epochs=7)], model, max_epochs=8)
    assert [(p.epochs, p.until) for p in plan] == [(2, 0.2), (5, 0.8), (7, 1.0)]  # shares 1 : 3 : 1
    with pytest.raises(ValueError, match=r"unique, repeated: \['a'\]"):
        plan_stages([Stage("a"), Stage("a")], model, max_epochs=4)
    with pytest.raises(ValueError, match=r"trainable \['autoencoer'\] select no parameter; the model's modules: "
                                         r"autoencoder, denoiser"):
        plan_stages([Stage("a", trainable=("autoencoer",))], model, max_epochs=4)
    with pytest.raises(ValueError, match="checkpoint file"):
        Stage("stage 1")
    with pytest.raises(TypeError, match="tuple of prefixes"):
        Stage("a", trainable="denoiser")  # type: ignore[arg-type]


def test_a_stage_ends_when_its_share_of_the_time_budget_is_spent_and_the_whole_budget_stops_the_run(tmp_path, data,
                                                                                                   monkeypatch):
    """A clock that advances 10 s per training_loss call: the one-minute budget gives stage 1 (a third) 20 s."""
    now = {"t": 0.0}
    original = ToyStagedDiffusion.training_loss

    def slow(self, batch):
        now["t"] += 10.0
        return original(self, batch)

    monkeypatch.setattr(ToyStagedDiffusion, "training_loss", slow)
    monkeypatch.setattr("crystalgen.runner.training.time.perf_counter", lambda: now["t"])
    run = RunDir(tmp_path / "run")
    progress = train("toy_staged", config("trainer.max_epochs=30", "trainer.max_minutes=1"), run, data=data,
                     show_progress=False)
    # stage 1: steps at 10 s and 20 s, then its 20 s are spent (of 10 planned epochs); stage 2 until 60 s
    first = load_checkpoint(run.checkpoints / "stage-autoencoder.ckpt")["progress"]
    assert first["global_step"] == 2 and first["epoch"] == 1
    assert not progress.finished and progress.stage == 1 and "time budget" in progress.stop_reason
    assert not (run.checkpoints / "stage-diffusion.ckpt").exists()
    assert load_checkpoint(run.checkpoints / "last.ckpt")["progress"]["stage"] == 1


def test_crystalgen_run_trains_a_staged_model_stage_by_stage_and_samples_from_the_last_stage(tmp_path, monkeypatch):
    from crystalgen.cli.main import main

    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    tiny = ["--no-progress", "model.num_steps=10", "trainer.max_epochs=3", "data.max_train_rows=24",
            "data.max_val_rows=8", "data.workers=0", "sample.num_samples=4", "sample.batch_size=4",
            "evaluate.metrics=[validity]", "evaluate.workers=1", "evaluate.train_split=null"]
    assert main(["run", "toy_staged", "--run-dir", str(tmp_path / "run"), *tiny]) == 0
    run = RunDir(tmp_path / "run")
    assert (run.checkpoints / "stage-autoencoder.ckpt").is_file() and (run.checkpoints / "stage-diffusion.ckpt").is_file()
    best = load_checkpoint(run.checkpoints / "best.ckpt")["progress"]
    assert best["stage"] == 1  # written by the last stage's validations, not left over from the autoencoder's
    assert (run.samples / "sampling.json").is_file() and run.report.is_file()
