"""Checkpoints under DDP: two CPU processes (gloo) train the toy model into one run directory.

Only rank 0 writes checkpoint files (every rank records each checkpoint it writes, so a write by rank 1 shows),
no temporary file is left behind, and last.ckpt holds the random state of each rank, in rank order: the states
differ between ranks (each seeds with trainer.seed + rank), so a resumed rank 1 must get its own back. The
checkpoint loads with ``weights_only=True`` through the runner's loader.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp_processes import become_rank, free_port
from pymatgen.core import Lattice, Structure

from crystalgen.runner import training
from crystalgen.runner.checkpoint import load_checkpoint
from crystalgen.runner.config import compose, from_yaml
from crystalgen.runner.distributed import Environment
from crystalgen.runner.metric_log import read_metric_log
from crystalgen.runner.models import load_trained, model_class
from crystalgen.runner.pipeline import train
from crystalgen.runner.run_dir import RunDir

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")

WORLD = 2
# 16 training crystals, 4 per rank and step: 2 steps per epoch, 4 in all; validation (3 crystals) every epoch.
OVERRIDES = ["trainer.max_epochs=2", "data.batch_size=4", "trainer.device=cpu", "trainer.log_every=1",
             "trainer.seed=7", "trainer.ema_decay=0.5"]


def _crystals(n: int) -> list[Structure]:
    """Small rattled cubic cells with 1-3 atoms (built directly: Structure.from_spacegroup, as in toy_structures,
    spends ~10 s loading symmetry tables in every spawned process)."""
    rng = np.random.default_rng(2)
    sites = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, 0.0, 0.0]])
    return [Structure(Lattice.cubic(3.0 + 0.1 * i), ["Na", "Cl", "K"][: 1 + i % 3],
                      (sites[: 1 + i % 3] + rng.uniform(-0.02, 0.02, (1 + i % 3, 3))) % 1.0) for i in range(n)]


def _worker(rank: int, port: int, run_path: str, out_dir: str) -> None:
    become_rank(rank, WORLD, port)

    writes: list[str] = []
    save = training.save_checkpoint

    def recording_save(payload, path):
        writes.append(Path(path).name)
        return save(payload, path)

    training.save_checkpoint = recording_save  # this process only (spawned)
    cls = model_class("toy")
    cfg = compose(cls.presets(), "small", model_name="toy", overrides=OVERRIDES)
    transform = cls.transform(cfg.model)
    items = [transform(s) for s in _crystals(19)]
    progress = train("toy", cfg, RunDir(Path(run_path)), data=(items[:16], items[16:]), show_progress=False)
    # Nothing draws random numbers after the final last.ckpt was written, so these are the states it must hold.
    torch.save({
        "writes": writes,
        "global_step": progress.global_step,
        "torch": torch.get_rng_state(),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
    }, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.timeout(480)
def test_under_ddp_only_rank_0_writes_checkpoints_and_they_hold_every_ranks_random_state(tmp_path):
    run = RunDir(tmp_path / "run")
    mp.start_processes(_worker, args=(free_port(), str(run.path), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert [r["global_step"] for r in ranks] == [4, 4]

    # Only rank 0 wrote checkpoints: best after the first validation, last after epoch 1 and at the end.
    assert ranks[1]["writes"] == []
    writes = ranks[0]["writes"]
    assert writes[:2] == ["best.ckpt", "last.ckpt"] and writes[-1] == "last.ckpt", writes
    assert set(writes) == {"best.ckpt", "last.ckpt"}
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary files
    # One metric history (rank 0's): no step logged twice.
    series = read_metric_log(run.train_log)
    assert [step for step, _, _ in series["train/loss"]] == [1, 2, 3, 4]

    # The runner's loader reads it with weights_only=True; one random state per rank, in rank order.
    payload = load_checkpoint(run.checkpoints / "last.ckpt")
    assert payload["progress"]["global_step"] == 4 and payload["progress"]["finished"]
    assert len(payload["rng"]) == WORLD
    for rank, recorded in enumerate(ranks):
        state = payload["rng"][rank]
        assert torch.equal(state["torch"], recorded["torch"]), f"torch state of rank {rank}"
        assert torch.equal(state["python"], recorded["python"]), f"python state of rank {rank}"
        assert torch.equal(state["numpy_keys"], recorded["numpy"]), f"numpy state of rank {rank}"
    assert not torch.equal(payload["rng"][0]["torch"], payload["rng"][1]["torch"])
    trained = load_trained(run.checkpoints / "last.ckpt")
    assert trained.name == "toy" and trained.payload["ema"] is not None

    # A resumed rank 1 continues with rank 1's state (load_state needs no process group).
    env = Environment(torch.device("cpu"), rank=1, world_size=WORLD, local_rank=1)
    cfg = from_yaml(payload["config"], "last.ckpt")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            training.Trainer(trained.model, cfg, env, None, show_progress=False).load_state(payload)
            assert torch.equal(torch.get_rng_state(), ranks[1]["torch"])
            assert torch.equal(torch.tensor(random.getstate()[1], dtype=torch.int64), ranks[1]["python"])
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
