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
