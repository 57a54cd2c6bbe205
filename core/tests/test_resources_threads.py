"""How many threads a process takes: cgroup quotas (v1 and v2), CPU affinity, the load average, torchrun's
local processes, $CRYSTALGEN_THREADS and the refusal of bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from crystalgen import resources
from crystalgen.resources import THREADS_ENV, ThreadPlan, apply_threads, plan_threads, usable_cores


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake machine: 8 cores in the affinity mask, no cgroup files, load 0, idle CPUs, no thread settings."""
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/\n")
    monkeypatch.setattr(resources, "CGROUP_ROOT", root)
    monkeypatch.setattr(resources, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(resources, "busy_cores", lambda window=0.0: 0.0)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return root, proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_affinity_without_quota(machine):
    assert usable_cores() == 8


def test_cgroup_v2_quota_caps_the_affinity_and_rounds_down(machine):
    root, _ = machine
    write(root / "cpu.max", "250000 100000\n")  # 2.5 CPUs
    assert usable_cores() == 2
    write(root / "cpu.max", "max 100000\n")
    assert usable_cores() == 8


def test_cgroup_v2_quota_of_a_parent_of_the_process_cgroup_binds_it(machine):
    root, proc = machine
    proc.write_text("0::/user.slice/job.scope\n")
    write(root / "user.slice" / "job.scope" / "cpu.max", "max 100000\n")
    write(root / "user.slice" / "cpu.max", "300000 100000\n")
    assert usable_cores() == 3


def test_cgroup_v1_quota(machine):
    root, proc = machine
    proc.write_text("4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "100000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert usable_cores() == 1
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    assert usable_cores() == 8


def test_a_quota_below_one_cpu_still_leaves_one_core_and_garbage_is_ignored(machine):
    root, _ = machine
    write(root / "cpu.max", "20000 100000\n")
    assert usable_cores() == 1
    write(root / "cpu.max", "not a quota\n")
    assert usable_cores() == 8


def test_affinity_smaller_than_the_quota_wins(machine, monkeypatch):
    root, _ = machine
    write(root / "cpu.max", "400000 100000\n")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert usable_cores() == 2


def test_auto_takes_the_usable_cores_minus_the_busy_ones(machine, monkeypatch):
    plan = plan_threads()
    assert (plan.threads, plan.source, plan.usable_cores, plan.warning) == (8, "auto", 8, None)
    monkeypatch.setattr(resources, "busy_cores", lambda window=0.0: 5.4)
    plan = plan_threads("auto")
    assert plan.threads == 3 and plan.warning is None and plan.busy_cores == 5.4


def test_a_load_average_left_by_work_that_has_ended_takes_no_thread(machine, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.7, 0.9, 0.4))  # the previous command, finished just now
    assert plan_threads().threads == 8


def test_without_proc_stat_the_load_average_stands_in(machine, monkeypatch):
    monkeypatch.setattr(resources, "busy_cores", lambda window=0.0: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.4, 0.0, 0.0))
    assert plan_threads().threads == 3


def test_busy_cores_counts_the_cpus_of_this_process_from_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # cpu0 busy for the whole window, cpu1 idle or waiting, cpu2 busy with niced work, cpu3 outside the affinity mask
    frames = iter(["cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\ncpu2 0 100 0 0 0 0 0 0\n"
                   "cpu3 100 0 0 0 0 0 0 0\n",
                   "cpu  0 0 0 0 0 0 0 0\ncpu0 200 0 0 0 0 0 0 0\ncpu1 0 0 0 180 20 0 0 0\ncpu2 0 200 0 0 0 0 0 0\n"
                   "cpu3 200 0 0 0 0 0 0 0\n"])
    monkeypatch.setattr(resources, "PROC_STAT", stat)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)

    def read_frame(self, *args, **kwargs):
        return next(frames)

    monkeypatch.setattr(Path, "read_text", read_frame)
    monkeypatch.setattr(resources, "niced_work_yields", lambda: True)
    assert resources.busy_cores(window=0.0) == pytest.approx(1.0)  # iowait and niced work yield to us


@pytest.mark.parametrize("switch, busy", [("0\n", 1.0), ("1\n", 2.0), (None, 1.0)])
def test_niced_work_counts_as_busy_where_autogroup_scheduling_shares_the_cpus_by_session(tmp_path, monkeypatch,
                                                                                           switch, busy):
    """cpu0 busy at normal priority, cpu1 busy with niced work: with autogroup on, that niced work is another
    session's full share and takes the core; with it off (or no switch: an old kernel) it yields to us."""
    stat = tmp_path / "stat"
    frames = iter(["cpu0 100 0 0 0 0 0 0 0\ncpu1 0 100 0 0 0 0 0 0\n", "cpu0 200 0 0 0 0 0 0 0\ncpu1 0 200 0 0 0 0 0 0\n"])
    stat.write_text("")
    monkeypatch.setattr(resources, "PROC_STAT", stat)
    autogroup = tmp_path / "sched_autogroup_enabled"
    if switch is not None:
        autogroup.write_text(switch)
    monkeypatch.setattr(resources, "AUTOGROUP_SWITCH", autogroup)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    real_read_text = Path.read_text

    def read(self, *args, **kwargs):
        return next(frames) if self == stat else real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read)
    assert resources.busy_cores(window=0.0) == pytest.approx(busy)


def test_busy_cores_sees_a_busy_process(tmp_path):
    import subprocess
    import sys

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    if os.nice(0) > 0 and resources.niced_work_yields():  # the spinner would inherit the niceness and yield
        pytest.skip("the test process is niced")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert resources.busy_cores(window=0.5) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


def test_load_above_the_cores_gives_one_thread_and_a_one_line_warning(machine, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.2, 0.0, 0.0))
    monkeypatch.setattr(resources, "busy_cores", lambda window=0.0: 2.0)
    plan = plan_threads()
    assert plan.threads == 1
    assert plan.warning is not None and "\n" not in plan.warning
    assert "4.2" in plan.warning and "2 core(s)" in plan.warning and "--threads" in plan.warning
    assert plan_threads(2).warning is not None  # an explicit count is kept, the warning still stands
    assert plan_threads(2).threads == 2


def test_torchrun_processes_share_the_cores(machine, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    plan = plan_threads()
    assert plan.threads == 2 and plan.processes == 4 and plan.as_dict()["processes"] == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert plan_threads().threads == 1
    assert plan_threads(3).threads == 3  # an explicit count is per process, as given


def test_option_then_environment_then_auto(machine, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert (plan_threads().threads, plan_threads().source) == (3, "environment")
    assert (plan_threads(5).threads, plan_threads(5).source) == (5, "option")
    assert (plan_threads("6").threads, plan_threads(" 6 ").source) == (6, "option")
    monkeypatch.setenv(THREADS_ENV, "auto")
    assert plan_threads().source == "auto"


@pytest.mark.parametrize("bad", [0, -2, "two", "1.5", 2.0, True, ""])
def test_bad_requests_are_refused_naming_the_setting(machine, bad):
    with pytest.raises(ValueError, match="threads") as info:
        plan_threads(bad)
    assert repr(bad) in str(info.value)


def test_a_bad_environment_value_names_the_variable(machine, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ValueError, match=rf"\${THREADS_ENV} must be a whole number.*'many'"):
        plan_threads()


def test_apply_sets_torch_and_the_environment_for_workers(machine, monkeypatch):
    before = torch.get_num_threads()
    try:
        apply_threads(ThreadPlan(1, "option", 8, 0.0))
        assert torch.get_num_threads() == 1 and os.environ[THREADS_ENV] == "1"
    finally:
        torch.set_num_threads(before)


def test_as_dict_is_plain_and_rounded():
    plan = ThreadPlan(2, "auto", 2, 1.23456, "busy")
    assert plan.as_dict() == {"threads": 2, "source": "auto", "usable_cores": 2, "load_average": 1.23,
                              "processes": 1, "busy_cores": None}


def test_one_thread_per_worker(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV):
        monkeypatch.setenv(name, "4")
    before = torch.get_num_threads()
    try:
        resources.one_thread_per_worker()
        assert torch.get_num_threads() == 1
        assert all(os.environ[n] == "1" for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV))
    finally:
        torch.set_num_threads(before)
