"""Checkpoints: atomic round trip, safe loading, clear errors for damaged files, and RNG states as tensors."""

from __future__ import annotations

import logging
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from crystalgen.runner.checkpoint import (
    MAGIC,
    VERSION,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    temporary_files,
)


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


def one_line_error(path, **kwargs) -> str:
    """The CheckpointError message of loading ``path``, checked to be one line without torch's unsafe advice."""
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message and message.startswith(f"checkpoint {path}: ")
    return message


def test_truncated_checkpoint_names_the_file_and_the_cause(tmp_path):
    path = save_checkpoint(payload(), tmp_path / "last.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert "truncated (" in one_line_error(path)
    path.write_bytes(data[:20])
    assert "truncated (20 bytes" in one_line_error(path)


def test_bytes_overwritten_in_the_middle_fail_the_digest_before_any_tensor_is_read(tmp_path):
    path = save_checkpoint({**payload(), "model": {"w": torch.zeros(4000)}}, tmp_path / "last.ckpt")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = np.random.default_rng(0).bytes(4096)
    path.write_bytes(bytes(data))
    assert "corrupt (content digest mismatch" in one_line_error(path)
    path.write_bytes(bytes(data) + b"x")  # a longer file than declared is damaged as well
    assert "corrupt (" in one_line_error(path)


def test_random_bytes_and_missing_files_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    assert "corrupt or not a checkpoint" in one_line_error(junk)
    assert "does not exist" in one_line_error(tmp_path / "nope.ckpt")
    assert "not a regular file" in one_line_error(tmp_path)


def test_foreign_files_are_refused_without_running_their_pickles(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    assert "foreign file" in one_line_error(plain)

    hostile = tmp_path / "hostile.pt"  # any class is a global whose unpickling could run code
    torch.save({"format": "crystalgen-checkpoint", "obj": Fraction(1, 3)}, hostile)
    assert "foreign code (holds fractions.Fraction" in one_line_error(hostile)

    sealed = save_checkpoint({**payload(), "obj": Fraction(1, 3)}, tmp_path / "sealed.ckpt")  # a valid digest
    assert "foreign code (holds fractions.Fraction" in one_line_error(sealed)


def test_newer_format_and_other_model_are_named(tmp_path):
    path = save_checkpoint(payload(), tmp_path / "last.ckpt")
    data = bytearray(path.read_bytes())
    data[len(MAGIC):len(MAGIC) + 2] = (VERSION + 1).to_bytes(2, "little")
    newer = tmp_path / "newer.ckpt"
    newer.write_bytes(bytes(data))
    assert f"newer format (checkpoint format {VERSION + 1}" in one_line_error(newer)
    assert "other model (holds 'm', not 'symmcd')" in one_line_error(path, expected_model="symmcd")
    assert load_checkpoint(path, expected_model="m")["model_name"] == "m"


def test_version_1_files_load_with_a_warning_that_nothing_was_verified(tmp_path, caplog):
    legacy = tmp_path / "v1.ckpt"
    torch.save({"format": "crystalgen-checkpoint", "version": 1, **payload()}, legacy)
    with caplog.at_level(logging.WARNING, logger="crystalgen.checkpoint"):
        assert load_checkpoint(legacy)["model_name"] == "m"
    assert "no content digest" in caplog.text


def test_temporary_files_of_interrupted_writes_are_ignored_and_cleaned_at_the_next_write(tmp_path):
    path = save_checkpoint(payload(), tmp_path / "last.ckpt")
    stale = tmp_path / ".last.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.ckpt.abc123.tmp"  # another checkpoint's write, cleaned at its own next write
    other.write_bytes(b"x")
    assert temporary_files(path) == [stale]
    assert load_checkpoint(path)["model_name"] == "m"
    save_checkpoint(payload(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.ckpt.abc123.tmp", "last.ckpt"]


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
