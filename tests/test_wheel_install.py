"""The README's promise as a user gets it from wheels: in a fresh virtual environment, crystalgen-core and
crystalgen-symmcd installed from wheels built from this checkout (not editable, not this checkout's source on the
path) run `crystalgen run symmcd` to its report, with the evaluation suite that the plugin's requirement
`crystalgen-core[metrics]` brings. The run is the main job with a shorter training budget (20 s instead of 4 min)
and 20 samples, so that the test proves packaging (presets and the runner's YAML as package data, entry points,
dependency ranges), not the model. Slow: it installs torch and every dependency from the package index (minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--threads", "1", "--no-progress", "trainer.max_minutes=0.33", "sample.num_samples=20", "evaluate.workers=1"]


def build_wheels(out: Path, *projects: Path) -> dict[str, Path]:
    """Distribution name (as in the wheel's file name) -> the wheel built into ``out`` from a clean copy of each of
    ``projects`` (a build in place would leave build/ in the checkout, whose stale files a later wheel could take)."""
    copies = []
    for project in projects:
        copy = out / "src" / project.name
        shutil.copytree(project, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        copies.append(copy)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    *map(str, copies)], check=True, cwd=out)
    return {w.name.split("-")[0]: w for w in out.glob("*.whl")}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would put this checkout's code on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env | extra


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_core_and_symmcd_from_wheels_run_the_main_job(tmp_path):
    wheels = build_wheels(tmp_path, ROOT / "core", ROOT / "plugins" / "symmcd")
    assert set(wheels) == {"crystalgen_core", "crystalgen_symmcd"}, wheels
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "crystalgen")
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, env=clean_env())
    subprocess.run([*pip, f"{wheels['crystalgen_core']}[metrics]", str(wheels["crystalgen_symmcd"])], check=True,
                   env=clean_env())

    where = subprocess.run([python, "-c", "import json, crystalgen, crystalgen_symmcd;"
                            "print(json.dumps([crystalgen.__file__, crystalgen_symmcd.__file__]))"],
                           check=True, capture_output=True, text=True, env=clean_env(), cwd=tmp_path).stdout
    assert all(path.startswith(str(venv)) for path in json.loads(where)), where  # from the wheels, not the checkout
    editable = subprocess.run([python, "-m", "pip", "list", "--editable"], capture_output=True, text=True,
                              env=clean_env()).stdout
    assert "crystalgen" not in editable

    env = clean_env(CRYSTALGEN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    proc = subprocess.run(["nice", "-n", "10", cli, "run", "symmcd", "--run-dir", str(run), *SHORT],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["n_samples"] == 20
    assert {"struct_valid", "cov_recall", "wdist_density", "d_sg"} <= set(metrics)  # the evaluation suite ran
    assert (run / "report.md").is_file() and "preset small" in (run / "run.log").read_text()
