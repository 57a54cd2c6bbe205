"""The training loop's mechanics on tiny deterministic modules: data order, schedules, clipping, EMA, early
stopping, time budget, non-finite losses, metric log (CSV and TensorBoard), the torch.compile fallback."""

from __future__ import annotations

import copy
import csv
import logging
import math
import sys
import types

import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor, nn

from crystalgen.data.crystal import collate, structure_to_data
from crystalgen.runner.config import apply_user_layers, runner_defaults
from crystalgen.runner.distributed import Environment
from crystalgen.runner.ema import ExponentialMovingAverage
from crystalgen.runner.metric_log import MetricLog, read_metric_log
from crystalgen.runner.optim import build_optimizer, build_scheduler, clip_gradients
from crystalgen.runner.training import Checkpoints, NonFiniteLossError, Trainer, epoch_batches

CPU = Environment(torch.device("cpu"))


class VolumeRegression(nn.Module):
    """loss = mean over crystals of (w * volume^(1/3) + b - num_atoms)^2: deterministic, one scalar per crystal."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.scale = scale

    def training_loss(self, batch) -> dict[str, Tensor]:
        side = torch.linalg.det(batch.lattice.float()).abs().pow(1 / 3).unsqueeze(-1)
        error = self.linear(side).squeeze(-1) * self.scale - batch.num_atoms.float()
        return {"loss": (error**2).mean(), "abs_error": error.abs().mean()}


def crystals(n: int) -> list:
    return [structure_to_data(Structure(Lattice.cubic(3.0 + 0.1 * i), ["Na"] * (1 + i % 3),
                                        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]][: 1 + i % 3])) for i in range(n)]


def config(*overrides: str):
    return apply_user_layers(runner_defaults(), overrides=["data.val_split=null", "trainer.log_every=1", *overrides])


def test_epoch_batches_cover_every_item_once_and_ranks_split_the_combined_batch():
    single = epoch_batches(10, 4, epoch=3, seed=0)
    assert sorted(i for b in single for i in b) == list(range(10))
    assert single == epoch_batches(10, 4, epoch=3, seed=0)  # reproducible
    assert single != epoch_batches(10, 4, epoch=4, seed=0)  # reshuffled each epoch
    two = [epoch_batches(8, 2, epoch=1, seed=5, rank=r, world_size=2) for r in range(2)]
    combined = epoch_batches(8, 4, epoch=1, seed=5)
    for i, batch in enumerate(combined):
        assert sorted(two[0][i] + two[1][i]) == sorted(batch)


def test_cosine_schedule_ends_at_min_lr_and_plateau_cuts_after_patience():
    w = nn.Parameter(torch.zeros(1))
    cfg = config("trainer.scheduler.name=cosine", "trainer.scheduler.min_lr=0.0001", "trainer.lr=0.01").trainer
    opt = build_optimizer([w], cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 1e-4, rel_tol=1e-6)

    cfg = config("trainer.scheduler.name=plateau", "trainer.scheduler.patience=2", "trainer.scheduler.factor=0.5").trainer
    opt = build_optimizer([w], cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    for loss in (1.0, 1.0, 1.0):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == cfg.lr
    sched.step(1.0)  # third validation without improvement > patience 2
    assert opt.param_groups[0]["lr"] == cfg.lr * 0.5


def test_gradient_clipping_by_norm_and_by_value():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = clip_gradients([a, b], config("trainer.grad_clip=1.0").trainer)
    assert float(norm) == pytest.approx(5.0)
    assert torch.allclose(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.0, 0.8]), atol=1e-6)
    a.grad = torch.tensor([3.0, -0.2])
    clip_gradients([a], config("trainer.grad_clip=0.5", "trainer.grad_clip_mode=value").trainer)
    assert torch.equal(a.grad, torch.tensor([0.5, -0.2]))


def test_ema_follows_the_hand_computed_average_and_swaps_weights_back():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ExponentialMovingAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    ema.update(model)
    assert float(ema.shadow["weight"]) == pytest.approx(0.19)  # 0.9 * 0.1 + 0.1
    with ema.averaged(model):
        assert float(model.weight) == pytest.approx(0.19)
    assert float(model.weight) == 1.0


def test_training_reduces_the_loss_and_logs_every_metric(tmp_path):
    cfg = config("trainer.max_epochs=30", "trainer.lr=0.05", "data.batch_size=4", "trainer.ema_decay=0.5")
    log = MetricLog(tmp_path / "train_log.csv")
    trainer = Trainer(VolumeRegression(), cfg, CPU, Checkpoints(tmp_path / "ck"), log, show_progress=False)
    items = crystals(8)
    progress = trainer.fit(items)
    log.close()
    series = read_metric_log(tmp_path / "train_log.csv")
    assert progress.finished and progress.global_step == 60
    assert {"train/loss", "train/abs_error", "train/lr", "train/crystals_per_s", "train/epoch_loss"} <= set(series)
    epoch_losses = [v for _, _, v in series["train/epoch_loss"]]
    assert epoch_losses[-1] < 0.5 * epoch_losses[0]
    assert (tmp_path / "ck" / "last.ckpt").is_file() and (tmp_path / "ck" / "best.ckpt").is_file()


def test_early_stopping_after_patience_validations_without_improvement(tmp_path):
    cfg = config("trainer.max_epochs=50", "trainer.early_stopping_patience=3", "trainer.lr=0.0")
    trainer = Trainer(VolumeRegression(), cfg, CPU, None, show_progress=False)  # lr 0: the loss never improves
    progress = trainer.fit(crystals(4))
    assert progress.epoch == 4 and "early stopping" in progress.stop_reason and progress.finished


def test_time_budget_stops_cleanly_after_the_current_step():
    cfg = config("trainer.max_epochs=5", "trainer.max_minutes=1e-9", "data.batch_size=2")
    progress = Trainer(VolumeRegression(), cfg, CPU, None, show_progress=False).fit(crystals(6))
    assert (progress.epoch, progress.batch_in_epoch, progress.global_step) == (0, 1, 1)
    assert not progress.finished and "time budget" in progress.stop_reason


def test_a_budget_spent_before_any_validation_still_leaves_a_best_checkpoint(tmp_path):
    cfg = config("trainer.max_epochs=5", "trainer.max_minutes=1e-9", "data.batch_size=2", "trainer.val_every=2")
    trainer = Trainer(VolumeRegression(), cfg, CPU, Checkpoints(tmp_path / "ck"), show_progress=False)
    trainer.fit(crystals(6), crystals(2))
    assert (tmp_path / "ck" / "best.ckpt").is_file() and (tmp_path / "ck" / "last.ckpt").is_file()
    assert not math.isfinite(trainer.progress.best_loss)  # left for the resumed run's first real validation


def test_non_finite_loss_stops_with_the_step_and_advice():
    trainer = Trainer(VolumeRegression(scale=float("nan")), config("trainer.max_epochs=1"), CPU, None, show_progress=False)
    with pytest.raises(NonFiniteLossError, match=r"the training loss is nan at step 1 \(epoch 1\); lower trainer.lr"):
        trainer.fit(crystals(3))


def test_bf16_autocast_trains_on_cpu():
    cfg = config("trainer.max_epochs=2", "trainer.precision=bf16")
    progress = Trainer(VolumeRegression(), cfg, CPU, None, show_progress=False).fit(crystals(4))
    assert progress.finished and math.isfinite(progress.best_loss)


def test_metric_log_drops_rows_after_the_resume_step(tmp_path):
    path = tmp_path / "log.csv"
    log = MetricLog(path)
    for step in range(1, 6):
        log.log(step, 0, {"train/loss": float(step)})
    log.close()
    log = MetricLog(path, resume_step=3)
    log.log(4, 0, {"train/loss": 40.0})
    log.close()
    assert [(s, v) for s, _, v in read_metric_log(path)["train/loss"]] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


class FakeSummaryWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter: records what the metric log sends it."""

    instances: list[FakeSummaryWriter] = []

    def __init__(self, log_dir=None, purge_step=None, **kwargs) -> None:
        self.log_dir, self.purge_step, self.kwargs = log_dir, purge_step, kwargs
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = 0
        FakeSummaryWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        assert self.closed == 0, "add_scalar after close"
        self.scalars.append((tag, value, global_step))

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_tensorboard(monkeypatch):
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeSummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    FakeSummaryWriter.instances = []
    return FakeSummaryWriter.instances


def test_metric_log_sends_every_logged_scalar_to_tensorboard(tmp_path, fake_tensorboard):
    log = MetricLog(tmp_path / "train_log.csv", tensorboard_dir=tmp_path / "tb")
    cfg = config("trainer.max_epochs=3", "data.batch_size=4", "trainer.grad_clip=1.0")
    Trainer(VolumeRegression(), cfg, CPU, None, log, show_progress=False).fit(crystals(8), crystals(3))
    (writer,) = fake_tensorboard
    assert writer.log_dir == str(tmp_path / "tb") and writer.closed == 0
    log.close()
    assert writer.closed == 1
    with (tmp_path / "train_log.csv").open(newline="") as handle:
        rows = [(r["metric"], float(r["value"]), int(r["step"])) for r in csv.DictReader(handle)]
    # The same scalars in the same order: per-step losses, grad norm, lr, throughput, epoch and validation losses.
    assert {"train/loss", "train/grad_norm", "train/lr", "train/epoch_loss", "val/loss", "val/abs_error"} <= {
        tag for tag, _, _ in writer.scalars}
    assert [(tag, step) for tag, _, step in writer.scalars] == [(metric, step) for metric, _, step in rows]
    for (tag, value, _), (_, written, _) in zip(writer.scalars, rows):
        assert isinstance(value, float) and value == pytest.approx(written, rel=1e-7), tag


def test_resumed_metric_log_hides_the_interrupted_runs_later_tensorboard_events(tmp_path, fake_tensorboard):
    path = tmp_path / "train_log.csv"
    log = MetricLog(path, tensorboard_dir=tmp_path / "tb")
    for step in range(1, 6):
        log.log(step, 0, {"train/loss": float(step)})
    log.close()
    MetricLog(path, resume_step=3, tensorboard_dir=tmp_path / "tb").close()
    # As the CSV drops rows after step 3, TensorBoard purges the events from step 4 on (and a fresh log all of them).
    assert [w.purge_step for w in fake_tensorboard] == [0, 4]


def test_without_tensorboard_the_csv_log_still_works(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if tensorboard were absent
    log = MetricLog(tmp_path / "train_log.csv", tensorboard_dir=tmp_path / "tb")
    log.log(1, 0, {"train/loss": 2.5, "train/lr": 0.01})
    log.log(2, 0, {"train/loss": 1.5})
    log.close()
    assert read_metric_log(tmp_path / "train_log.csv") == {"train/loss": [(1, 0, 2.5), (2, 0, 1.5)],
                                                           "train/lr": [(1, 0, 0.01)]}
    assert not (tmp_path / "tb").exists()


def _graph_break() -> Exception:
    from torch._dynamo.exc import Unsupported

    return Unsupported("data-dependent operator aten.nonzero.default")


def _no_compiler() -> Exception:
    """What inductor raises on a machine without a C++ compiler (a common CPU setup)."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InvalidCxxCompiler

    return BackendCompilerFailed(lambda *args: None, InvalidCxxCompiler(), None)


@pytest.mark.parametrize(("failure", "reason"), [(_graph_break, "aten.nonzero.default"),
                                                 (_no_compiler, "No working C++ compiler")],
                         ids=["graph-break", "no-compiler"])
def test_a_loss_torch_compile_cannot_compile_trains_eagerly_after_one_warning(failure, reason, monkeypatch, caplog):
    attempts = []

    def fake_compile(module, *args, **kwargs):
        assert isinstance(module, nn.Module)

        def compiled(batch):
            attempts.append(batch.num_graphs)
            raise failure()

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(logging.getLogger("crystalgen"), "propagate", True)  # the CLI's console turns it off
    torch.manual_seed(0)
    model = VolumeRegression()
    untrained = copy.deepcopy(model)
    cfg = config("trainer.compile=true", "trainer.max_epochs=30", "trainer.lr=0.05", "data.batch_size=4")
    trainer = Trainer(model, cfg, CPU, None, show_progress=False)
    with caplog.at_level(logging.WARNING, logger="crystalgen.train"):
        progress = trainer.fit(crystals(8))
    assert attempts == [4]  # the compiled step was tried once (on the first batch), then never again
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 1 and "training without it" in warnings[0] and reason in warnings[0], warnings
    assert progress.finished and progress.global_step == 60  # every step was taken, eagerly
    for key, value in model.state_dict().items():
        assert not torch.equal(value, untrained.state_dict()[key]), f"{key} did not move"
    batch = collate(crystals(8))
    with torch.no_grad():
        assert model.training_loss(batch)["loss"] < 0.5 * untrained.training_loss(batch)["loss"]
