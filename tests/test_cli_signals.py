"""SIGTERM and SIGINT stop a verb cleanly: its worker processes end with it (none is left to init), the exit code is
128 + the signal, and an output folder it had begun is marked PARTIAL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.cli.stopping import PARTIAL, Terminated, partial_outputs
from crystalgen.data.io import structure_to_cif

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


def descendants(pid: int) -> set[int]:
    """Live processes below ``pid`` (from /proc: parent ids), zombies left out."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cif_text(i: int) -> str:
    return structure_to_cif(Structure(Lattice.cubic(4.0 + 0.001 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "CRYSTALGEN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "crystalgen", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_when_workers_run(process: subprocess.Popen, signum: int, workers: int) -> tuple[set[int], str]:
    """Send ``signum`` once at least ``workers`` processes run below ``process`` and no new one has appeared for a
    second (all started: the resource tracker, a forkserver, the workers); (the processes seen, stderr)."""
    seen: set[int] = set()
    deadline, settled = time.monotonic() + 120, time.monotonic() + 1.0
    while time.monotonic() < deadline and process.poll() is None:
        new = descendants(process.pid) - seen
        if new:
            seen |= new
            settled = time.monotonic() + 1.0
        elif len(seen) >= workers and time.monotonic() > settled:
            break
        time.sleep(0.05)
    assert process.poll() is None and len(seen) >= workers, f"stopped waiting (saw {seen}); the input is too small"
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    return seen, err


def assert_all_ended(pids: set[int]) -> None:
    deadline = time.monotonic() + 15  # a forkserver notices its parent's exit on its own
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)], "worker processes outlived the stopped verb"


def test_sigterm_ends_evaluate_and_its_workers(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3000):
        (folder / f"{i:05d}.cif").write_text(cif_text(i))
    process = start(["evaluate", str(folder), "--reference", str(folder), "--out", str(tmp_path / "metrics"),
                     "--metrics", "validity", "--workers", "2", "--no-progress"], tmp_path)
    seen, err = stop_when_workers_run(process, signal.SIGTERM, workers=2)
    assert process.returncode == 143, err
    assert "crystalgen evaluate: stopped by SIGTERM; worker processes ended" in err
    assert "Traceback" not in err
    assert_all_ended(seen)


def test_sigint_ends_data_prepare_and_its_forked_workers(tmp_path):
    table = tmp_path / "crystals.csv"
    table.write_text("material_id,cif\n" + "".join(f'x{i},"{cif_text(i)}"\n' for i in range(4000)))
    process = start(["data", "prepare", str(table), "--transform", "full_cell", "--workers", "2"], tmp_path)
    seen, err = stop_when_workers_run(process, signal.SIGINT, workers=2)
    assert process.returncode == 130, err
    assert "crystalgen data: stopped by SIGINT; worker processes ended" in err
    assert_all_ended(seen)


def test_an_unfinished_output_folder_is_marked_partial_and_a_finished_one_is_not(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Terminated), partial_outputs(out, "sample"):
        out.mkdir()
        (out / "samples.jsonl").write_text("{}\n")
        raise Terminated()
    assert (out / PARTIAL).read_text().startswith("crystalgen sample did not finish writing this folder: stopped by "
                                                  "SIGTERM at ")
    with partial_outputs(out, "sample"):
        (out / "samples.jsonl").write_text("{}\n{}\n")
    assert not (out / PARTIAL).exists()

    untouched = tmp_path / "untouched"
    with pytest.raises(KeyboardInterrupt), partial_outputs(untouched, "evaluate"):
        raise KeyboardInterrupt
    assert not untouched.exists()
