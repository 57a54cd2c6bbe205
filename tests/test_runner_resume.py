"""A run interrupted and resumed from its last checkpoint ends with the same parameters as an uninterrupted run.

Uses the test-only ``toy`` model (tests/fixtures/crystalgen_toy_model): its loss draws levels and noise from the
global RNG every step, so exactness needs the RNG states, optimiser, schedule, EMA, data order and counters all
restored from the checkpoint.
"""

from __future__ import annotations

import pytest
import torch

from crystalgen.runner.checkpoint import load_checkpoint
from crystalgen.runner.config import apply_user_layers, compose, from_yaml
from crystalgen.runner.models import model_class
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
from crystalgen_toy_model.crystals import toy_structures  # noqa: E402

# Every stateful feature on: cosine schedule, EMA, clipping; small batches so an epoch has several steps.
OVERRIDES = ["trainer.max_epochs=3", "data.batch_size=6", "trainer.scheduler.name=cosine", "trainer.ema_decay=0.9",
             "trainer.grad_clip=1.0", "trainer.log_every=1", "trainer.seed=3"]


@pytest.fixture(scope="module")
def toy_data():
    cls = model_class("toy")
    cfg = compose(cls.presets(), "small", model_name="toy", overrides=OVERRIDES)
    transform = cls.transform(cfg.model)
    items = [transform(s) for s in toy_structures(22, seed=1)]
    return cfg, (items[:18], items[18:])


@pytest.fixture(scope="module")
def reference_state(toy_data, tmp_path_factory):
    """Final weights of the uninterrupted run that both resume tests must reproduce."""
    cfg, data = toy_data
    run = RunDir(tmp_path_factory.mktemp("uninterrupted"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        progress = train("toy", cfg, run, data=data, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert progress.finished and progress.global_step == 9  # 3 epochs x ceil(18 / 6) steps
    return final_state(run)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def final_state(run: RunDir) -> dict[str, torch.Tensor]:
    payload = load_checkpoint(run.checkpoints / "last.ckpt")
    return {**{f"model.{k}": v for k, v in payload["model"].items()}, **{f"ema.{k}": v for k, v in payload["ema"].items()}}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=f"{key} differs after resume")


def test_resume_after_a_crash_at_an_epoch_boundary_matches_an_uninterrupted_run(tmp_path, toy_data, reference_state,
                                                                                monkeypatch):
    cfg, data = toy_data
    crashed = RunDir(tmp_path / "crashed")
    calls = {"n": 0}
    original = model_class("toy").training_loss

    def crash_in_epoch_three(self, batch):
        calls["n"] += 1
        # per epoch: 3 training steps + 1 validation batch; call 10 is the second step of epoch 3
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(model_class("toy"), "training_loss", crash_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train("toy", cfg, crashed, data=data, show_progress=False)
    monkeypatch.undo()
    stopped = load_checkpoint(crashed.checkpoints / "last.ckpt")["progress"]
    assert (stopped["epoch"], stopped["global_step"]) == (2, 6)

    progress = train("toy", cfg, crashed, resume=crashed.checkpoints / "last.ckpt", data=data, show_progress=False)
    assert progress.finished and progress.global_step == 9
    assert_same(reference_state, final_state(crashed))


def test_resume_after_a_mid_epoch_time_budget_stop_matches_an_uninterrupted_run(tmp_path, toy_data, reference_state):
    cfg, data = toy_data
    budget = RunDir(tmp_path / "budget")
    tiny = apply_user_layers(cfg.copy(), overrides=["trainer.max_minutes=1e-9"])  # stops after the first step
    progress = train("toy", tiny, budget, data=data, show_progress=False)
    assert not progress.finished and "time budget" in progress.stop_reason
    assert (progress.epoch, progress.batch_in_epoch, progress.global_step) == (0, 1, 1)

    saved = from_yaml(load_checkpoint(budget.checkpoints / "last.ckpt")["config"], "last.ckpt")
    resumed_cfg = apply_user_layers(saved, overrides=["trainer.max_minutes=null"])
    progress = train("toy", resumed_cfg, budget, resume=budget.checkpoints / "last.ckpt", data=data, show_progress=False)
    assert progress.finished and progress.global_step == 9
    assert_same(reference_state, final_state(budget))
    # The log holds one history: no step appears twice after the resume.
    rows = [line.split(",")[:3] for line in budget.train_log.read_text().splitlines()[1:]]
    steps = [int(r[0]) for r in rows if r[2] == "train/loss"]
    assert steps == list(range(1, 10))
