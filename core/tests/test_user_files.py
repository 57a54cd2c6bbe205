"""Special and oversize files among user inputs: refused by name, never read, never blocking.

Every test that could hang on a FIFO runs under an alarm, so a regression fails instead of stalling the suite.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.cli.main import main
from crystalgen.data.io import structure_to_cif
from crystalgen.data.registry import get_dataset
from crystalgen.data.user_files import ENV_MAX_FILE_MB, RefusedFileError, check_file, max_file_bytes, read_text
from crystalgen.metrics.samples import read_samples


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_MAX_FILE_MB, raising=False)


@contextmanager
def deadline(seconds: int = 20) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging (a blocking open of a FIFO is interrupted by the alarm)."""
    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cif() -> str:
    return structure_to_cif(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


@pytest.fixture
def hostile_folder(tmp_path, monkeypatch) -> Path:
    """a.cif fine, b.cif a FIFO, c.cif a link to /dev/zero, d.cif above a 0.002 MB limit, e.cif a link to a.cif."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "a.cif").write_text(cif())
    os.mkfifo(folder / "b.cif")
    (folder / "c.cif").symlink_to("/dev/zero")
    (folder / "d.cif").write_text(cif() + "#" * 3000)
    (folder / "e.cif").symlink_to(folder / "a.cif")
    monkeypatch.setenv(ENV_MAX_FILE_MB, "0.002")
    return folder


def test_evaluate_reader_reports_each_special_file_by_name(hostile_folder):
    with deadline():
        structures, failures, ids = read_samples(hostile_folder, workers=0, progress=False)
    assert ids == ["a", "b", "c", "d", "e"]
    assert [s is not None for s in structures] == [True, False, False, False, True]
    assert failures[1] == f"not_regular_file: {hostile_folder / 'b.cif'}: is a FIFO (named pipe), not a regular file; only regular files are read"
    assert failures[2].startswith(f"not_regular_file: {hostile_folder / 'c.cif'}: is a symbolic link to /dev/zero, a character device")
    assert failures[3].startswith(f"too_large: {hostile_folder / 'd.cif'}: is 3,")
    assert failures[3].endswith("bytes, above the limit of 2,000 bytes per input file; raise it with --max-file-mb "
                                "or CRYSTALGEN_MAX_FILE_MB")


def test_data_loader_skips_each_special_file_with_its_reason(hostile_folder):
    with deadline():
        loaded = get_dataset(hostile_folder).load("train")
    assert [r.id for r in loaded.records] == ["a", "e"]
    assert {s.id: s.kind for s in loaded.skipped} == {"b": "not a regular file", "c": "not a regular file",
                                                     "d": "file too large"}


def test_top_level_special_paths_are_refused_before_reading(tmp_path, capsys):
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.cif"
    zero.symlink_to("/dev/zero")
    with deadline():
        with pytest.raises(RefusedFileError, match="is a FIFO"):
            get_dataset(fifo)
        with pytest.raises(RefusedFileError, match="symbolic link to /dev/zero, a character device"):
            get_dataset(zero)
        with pytest.raises(RefusedFileError, match="is a FIFO"):
            read_samples(fifo, workers=0, progress=False)
        code = main(["evaluate", str(fifo), "--reference", "embedded:test", "--out", str(tmp_path / "m"),
                     "--no-progress"])
    assert code == 2
    assert f"crystalgen evaluate: error: {fifo}: is a FIFO (named pipe)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_size_limit_is_documented_default_and_overridable(tmp_path, monkeypatch, capsys):
    big = tmp_path / "big.csv"
    big.write_text("cif\n" + "x" * 5000 + "\n")
    assert max_file_bytes() == 512_000_000
    assert check_file(big) == big
    monkeypatch.setenv(ENV_MAX_FILE_MB, "0.001")
    with pytest.raises(RefusedFileError, match=r"big.csv: is 5,005 bytes, above the limit of 1,000 bytes per input file"):
        get_dataset(big).load("train", progress=False)
    with pytest.raises(RefusedFileError):
        read_text(big)
    monkeypatch.setenv(ENV_MAX_FILE_MB, "lots")
    with pytest.raises(ValueError, match="CRYSTALGEN_MAX_FILE_MB='lots': expected a positive number"):
        check_file(big)
    monkeypatch.setenv(ENV_MAX_FILE_MB, "0.001")
    code = main(["data", "info", str(big), "--max-file-mb", "1", "--no-symmetry"])
    assert "above the limit" not in capsys.readouterr().err
    assert code == 0
    assert os.environ[ENV_MAX_FILE_MB] == "1.0"


# -- configuration files and checkpoints -------------------------------------------------------------------------
def test_a_config_file_must_be_a_regular_file_within_its_limit(tmp_path, monkeypatch, capsys):
    from crystalgen.data.user_files import CONFIG_MAX_FILE_MB
    from crystalgen.runner.config import ConfigError, load_yaml

    fifo, zero, big = tmp_path / "fifo.yaml", tmp_path / "zero.yaml", tmp_path / "big.yaml"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    big.write_text("trainer:\n  max_epochs: 1\n" + "# padding\n" * 2000)
    with deadline():
        with pytest.raises(ConfigError, match=r"config file .*fifo.yaml: is a FIFO \(named pipe\), not a regular file"):
            load_yaml(fifo)
        with pytest.raises(ConfigError, match="symbolic link to /dev/zero, a character device"):
            load_yaml(zero)
        code = main(["train", "toy", "--config", str(fifo), "--runs-root", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2 and "is a FIFO" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert CONFIG_MAX_FILE_MB == 10.0 and load_yaml(big).trainer.max_epochs == 1
    monkeypatch.setenv(ENV_MAX_FILE_MB, "0.001")
    from crystalgen.runner.config import compose
    from crystalgen.runner.models import model_class

    toy = model_class("toy")
    assert compose(toy.presets(), "small", model_name="toy").preset == "small"  # presets are not user files
    with pytest.raises(ConfigError, match=r"big.yaml: is 20,025 bytes, above the limit of 1,000 bytes per input file"):
        load_yaml(big)


def test_a_checkpoint_must_be_a_regular_file_within_its_limit(tmp_path, monkeypatch):
    from crystalgen.data.user_files import CHECKPOINT_MAX_FILE_MB
    from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    fifo, zero = tmp_path / "fifo.ckpt", tmp_path / "zero.ckpt"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    good = save_checkpoint({"model_name": "toy", "config": "{}", "model": {}}, tmp_path / "good.ckpt")
    with deadline():
        with pytest.raises(CheckpointError, match=r"fifo.ckpt: is a FIFO \(named pipe\), not a regular file"):
            load_checkpoint(fifo)
        with pytest.raises(CheckpointError, match="zero.ckpt: is a symbolic link to /dev/zero, a character device"):
            load_checkpoint(zero)
    assert CHECKPOINT_MAX_FILE_MB == 4000.0 and load_checkpoint(good)["model_name"] == "toy"
    monkeypatch.setenv(ENV_MAX_FILE_MB, "0.0001")
    with pytest.raises(CheckpointError, match=r"good.ckpt: is [\d,]+ bytes, above the limit of 100 bytes per input file; "
                                              r"raise it with --max-file-mb"):
        load_checkpoint(good)


def test_max_file_mb_is_an_option_of_every_verb_that_reads_user_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_MAX_FILE_MB, "512")  # so that the value --max-file-mb sets is undone after the test
    big = tmp_path / "big.yaml"
    big.write_text("trainer:\n  max_epochs: 1\n" + "# padding\n" * 200)
    code = main(["train", "toy", "--config", str(big), "--max-file-mb", "0.001", "--runs-root", str(tmp_path / "runs"),
                 "--no-progress"])
    assert code == 2 and "above the limit of 1,000 bytes per input file" in capsys.readouterr().err
    from crystalgen.cli.main import build_parser

    for verb in ("train", "run", "sample", "reconstruct", "optimize", "evaluate", "data"):
        parser, _ = build_parser([verb])
        assert "--max-file-mb" in _verb_help(parser, verb), verb


def _verb_help(parser, verb: str) -> str:
    """Help of a verb (and of its sub-commands, for data) as one text."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.format_help() + "".join(p.format_help() for a in nested for p in a.choices.values())
