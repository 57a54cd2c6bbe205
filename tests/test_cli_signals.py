"""SIGTERM and SIGINT stop a verb cleanly: its worker processes end with it (none is left to init), the exit code is
128 + the signal, and an output folder it had begun is marked PARTIAL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.cli.stopping import PARTIAL, Terminated, partial_outputs
from crystalgen.data.io import structure_to_cif

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


def live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live process (from /proc), zombies left out."""
    found: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return found


def descendants(pid: int) -> set[int]:
    """Live processes below ``pid``."""
    parents = {child: parent for child, (parent, _) in live_processes().items()}
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
    """The verb in a session of its own, so that :func:`session_members` finds every process it started."""
    env = {**os.environ, "CRYSTALGEN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "crystalgen", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def session_members(session: int) -> set[int]:
    """Live processes of ``session`` (the verb and everything it started, even those whose parent has exited)."""
    return {pid for pid, (_, member_of) in live_processes().items() if member_of == session}


@pytest.fixture
def verbs() -> Iterator[list[subprocess.Popen]]:
    """Verbs started by a test; whatever is left of their sessions afterwards is killed, so that a failing test
    leaves no process behind."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        for pid in session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=10)


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


def assert_all_ended(process: subprocess.Popen, pids: set[int]) -> None:
    """Every process seen below ``process``, and any other of its session (one started after the last look), has
    ended."""
    def left() -> set[int]:
        return {p for p in pids if alive(p)} | session_members(process.pid)

    deadline = time.monotonic() + 15  # a forkserver notices its parent's exit on its own
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left(), "worker processes outlived the stopped verb"


def test_sigterm_ends_evaluate_and_its_workers(tmp_path, verbs):
    folder = tmp_path / "samples"
    folder.mkdir()
    for i in range(3000):
        (folder / f"{i:05d}.cif").write_text(cif_text(i))
    process = start(["evaluate", str(folder), "--reference", str(folder), "--out", str(tmp_path / "metrics"),
                     "--metrics", "validity", "--workers", "2", "--no-progress"], tmp_path)
    verbs.append(process)
    seen, err = stop_when_workers_run(process, signal.SIGTERM, workers=2)
    assert process.returncode == 143, err
    assert "crystalgen evaluate: stopped by SIGTERM; worker processes ended" in err
    assert "Traceback" not in err
    assert_all_ended(process, seen)


def test_sigint_ends_data_prepare_and_its_forked_workers(tmp_path, verbs):
    table = tmp_path / "crystals.csv"
    table.write_text("material_id,cif\n" + "".join(f'x{i},"{cif_text(i)}"\n' for i in range(4000)))
    process = start(["data", "prepare", str(table), "--transform", "full_cell", "--workers", "2"], tmp_path)
    verbs.append(process)
    seen, err = stop_when_workers_run(process, signal.SIGINT, workers=2)
    assert process.returncode == 130, err
    assert "crystalgen data: stopped by SIGINT; worker processes ended" in err
    assert_all_ended(process, seen)


def _square(chunk: list[int]) -> list[int]:
    return [x * x for x in chunk]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the data layer forks its workers on Linux only")
def test_a_signal_that_arrives_while_a_worker_is_forked_still_ends_that_worker(monkeypatch):
    """The race behind an orphaned `data prepare` worker: the stop handler ran after a worker's fork but before
    multiprocessing registered it, so the worker was not ended and waited for ever on its task queue. Here the signal
    arrives exactly there, every time."""
    from multiprocessing import popen_fork

    from crystalgen.cli.stopping import stop_cleanly
    from crystalgen.data.parallel import ordered_map

    main_pid, launch = os.getpid(), popen_fork.Popen._launch

    def launch_then_signal(self, process_obj):
        launch(self, process_obj)
        if os.getpid() == main_pid:
            os.kill(main_pid, signal.SIGINT)  # the child exists; Process.start has not yet registered it

    monkeypatch.setattr(popen_fork.Popen, "_launch", launch_then_signal)
    before = descendants(main_pid)
    try:
        with pytest.raises(KeyboardInterrupt), stop_cleanly():
            ordered_map(_square, list(range(1000)), workers=2, desc="", progress=False)
        deadline = time.monotonic() + 15
        while descendants(main_pid) - before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not descendants(main_pid) - before, "a worker forked as the signal arrived outlived the stop"
    finally:
        for pid in descendants(main_pid) - before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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


HANGING_VERB = '''
import os, signal, sys, threading, types
import crystalgen.cli.main as cli

def run(args):
    threading.Thread(target=threading.Event().wait).start()  # not a daemon: the exit joins it, and it never ends
    os.kill(os.getpid(), signal.SIGINT)
    threading.Event().wait(60)
    return 0

verb = types.ModuleType("hanging_verb")
verb.add_arguments, verb.run = (lambda parser: None), run
sys.modules["hanging_verb"] = verb
cli.VERBS["hang"] = "hanging_verb"
raise SystemExit(cli.main(["hang"]))
'''


def test_a_stopped_verb_exits_even_when_a_thread_would_block_the_exit(tmp_path):
    """`data prepare` printed that SIGINT stopped it and then never exited: Python's exit joins each process pool's
    manager thread, and one whose worker was killed while sending a result waits for the rest of it for ever. The
    same situation, every time: a thread that the interpreter's exit would wait for without end."""
    process = subprocess.run([sys.executable, "-c", HANGING_VERB], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "CRYSTALGEN_CACHE": str(tmp_path / "cache")})
    assert process.returncode == 130, process.stderr[-2000:]
    assert "crystalgen hang: stopped by SIGINT" in process.stderr


EMBEDDING_PROGRAM = """
import os, signal, time
from crystalgen.cli.main import main
from crystalgen.cli.stopping import stop_cleanly

try:
    with stop_cleanly() as first:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(10)
except KeyboardInterrupt:
    print("first block stopped by", first.signal)
code = main(["list"])
print("still running after main returned", code)
"""


def test_a_signal_handled_in_an_earlier_block_does_not_end_a_later_verb(tmp_path):
    """The exit after a signal once ended the pytest process itself, with code 0, a fifth of the suite before its
    end: a test had handled a SIGINT in process, and every later in-process `main()` took it for its own stop. Here
    a program does the same: a handled SIGINT, then a verb through `main()`; the program must go on."""
    process = subprocess.run([sys.executable, "-c", EMBEDDING_PROGRAM], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "CRYSTALGEN_CACHE": str(tmp_path / "cache")})
    assert process.returncode == 0, process.stderr[-2000:]
    assert f"first block stopped by {int(signal.SIGINT)}" in process.stdout
    assert "still running after main returned 0" in process.stdout
