"""Output paths: every verb refuses an unusable output in one line (exit code 2) before it loads a model or reads
crystals, leaves existing files as they were, and reports a file-system error met while writing in one line."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.cli.main import main
from crystalgen.data.io import structure_to_cif


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, and the crystalgen logger put back after `main` set it up for a terminal."""
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    logger = logging.getLogger("crystalgen")
    saved = logger.propagate, logger.level, list(logger.handlers)
    yield
    logger.propagate, logger.level, logger.handlers[:] = saved[0], saved[1], saved[2]


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder where no file can be created: mode 555, or sysfs for root (whom file modes do not stop)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield folder
        folder.chmod(stat.S_IRWXU)
        return
    folder = Path("/sys")
    try:
        (folder / "crystalgen-probe").mkdir()
    except OSError:
        yield folder
        return
    pytest.skip("no read-only folder available")


@pytest.fixture
def garbage_ckpt(tmp_path) -> Path:
    """A file that fails as a checkpoint: an error about it means the checkpoint was read before the check."""
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"not a checkpoint")
    return path


@pytest.fixture
def samples(tmp_path) -> Path:
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, a in enumerate((5.6, 4.1)):
        (folder / f"{i}.cif").write_text(structure_to_cif(Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])))
    return folder


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines and "Traceback" not in "\n".join(lines)
    return lines[0]


@pytest.mark.parametrize("verb", ["sample", "reconstruct", "optimize"])
def test_out_naming_an_existing_file_is_refused_before_the_checkpoint_is_read(verb, tmp_path, garbage_ckpt, capsys):
    out = tmp_path / "results.txt"
    out.write_text("precious")
    extra = {"sample": ["-n", "2"], "reconstruct": ["--input", "embedded:test"],
             "optimize": ["--input", "embedded:test"]}[verb]
    assert main([verb, "toy", "--ckpt", str(garbage_ckpt), "--out", str(out), "--no-progress", *extra]) == 2
    assert error_line(capsys) == (f"crystalgen {verb}: error: --out {out}: exists and is not a folder (it is left as "
                                  "it is); give a folder to write into")
    assert out.read_text() == "precious"


def test_sampler_settings_are_checked_before_the_checkpoint_is_read(tmp_path, garbage_ckpt, capsys):
    for option, value in (("--steps", "0"), ("--batch-size", "0"), ("-n", "0")):
        args = ["sample", "toy", "--ckpt", str(garbage_ckpt), "--out", str(tmp_path / "x"), "-n", "2", option, value]
        assert main(args) == 2
        assert error_line(capsys) == f"crystalgen sample: error: {option} must be at least 1, got 0"
    assert not (tmp_path / "x").exists()


def test_read_only_outputs_are_refused_in_one_line(read_only, garbage_ckpt, samples, capsys):
    out = read_only / "new" / "folder"
    assert main(["sample", "toy", "--ckpt", str(garbage_ckpt), "-n", "2", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert line.startswith(f"crystalgen sample: error: --out {out}: cannot write in {read_only} (")
    assert main(["evaluate", str(samples), "--reference", "embedded:test", "--out", str(out)]) == 2
    assert error_line(capsys).startswith(f"crystalgen evaluate: error: --out {out}: cannot write in {read_only} (")
    assert main(["train", "toy", "--runs-root", str(out)]) == 2
    assert error_line(capsys).startswith(f"crystalgen train: error: --runs-root {out}: cannot write in {read_only} (")
    assert main(["run", "toy", "--run-dir", str(out)]) == 2
    assert error_line(capsys).startswith(f"crystalgen run: error: --run-dir {out}: cannot write in {read_only} (")
    assert main(["data", "fetch", "mp_20", "--dest", str(out)]) == 2
    assert error_line(capsys).startswith(f"crystalgen data: error: --dest {out}: cannot write in {read_only} (")


def test_evaluate_out_naming_a_file_is_refused_before_reading(tmp_path, samples, capsys):
    out = tmp_path / "metrics"
    out.write_text("keep me")
    assert main(["evaluate", str(samples), "--reference", "no_such_set:test", "--out", str(out)]) == 2
    assert "exists and is not a folder" in error_line(capsys)  # not the unknown reference: the output came first
    assert out.read_text() == "keep me"


def test_a_file_system_error_while_writing_is_one_line_naming_the_path(tmp_path, samples, capsys):
    out = tmp_path / "metrics"
    (out / "metrics.json").mkdir(parents=True)  # the verb cannot write its file there
    code = main(["evaluate", str(samples), "--reference", str(samples), "--out", str(out), "--metrics", "validity",
                 "--workers", "0", "--no-progress"])
    assert code == 2
    line = error_line(capsys)
    assert line.startswith("crystalgen evaluate: error: ") and str(out / "metrics.json") in line
    assert line.endswith(": Is a directory")
