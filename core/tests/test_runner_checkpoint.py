"""Checkpoints: atomic round trip, safe loading, clear errors for damaged files, and RNG states as tensors."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def payload() -> dict:
    return {"model_name": "m", "config": "trainer:\n  lr: 0.1\n", "model": {"w": torch.arange(6.0).reshape(2, 3)},
            "progress": {"epoch": 2, "best_loss": float("inf")}, "rng": [rng_state()]}


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    path = save_checkpoint(payload(), tmp_path / "ck" / "last.ckpt")
    loaded = load_checkpoint(path)
    assert loaded["format"] == "crystalgen-checkpoint" and loaded["model_name"] == "m"
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert loaded["progress"] == {"epoch": 2, "best_loss": float("inf")}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_overwrite_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = save_checkpoint(payload(), tmp_path / "last.ckpt")
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(payload(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = save_checkpoint(payload(), tmp_path / "last.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be read \(truncated or corrupt"):
        load_checkpoint(path)


def test_random_bytes_and_missing_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_foreign_files_are_refused_without_running_their_pickles(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="not a crystalgen checkpoint"):
        load_checkpoint(plain)

    hostile = tmp_path / "hostile.pt"  # any class is a global whose unpickling could run code
    torch.save({"format": "crystalgen-checkpoint", "obj": Fraction(1, 3)}, hostile)
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        load_checkpoint(hostile)


def test_rng_states_survive_a_checkpoint_and_replay_the_same_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in numpy's state
    save_checkpoint({"rng": [rng_state()]}, tmp_path / "r.ckpt")
    expected = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "r.ckpt")["rng"][0])
    replay = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    assert replay[:3] == expected[:3] and torch.equal(replay[3], expected[3])
