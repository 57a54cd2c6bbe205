"""The worked model plugin of docs/plugins.md (examples/crystalgen-minimal-diffusion), tested as a user gets it: its
wheel is built and unpacked, and crystalgen, in a fresh process with only that folder added to its path, finds the
model through the wheel's entry point, lists it with its parts, runs it end to end on the embedded data and finds
every part conformant. Installed from the wheel, not in editable mode, so the presets are proven to ship as package
data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "crystalgen-minimal-diffusion"
DISTRIBUTION = "crystalgen-minimal-diffusion"
TINY = ["--no-progress", "--threads", "1", "model.num_steps=10", "model.denoiser.hidden=16", "trainer.max_epochs=1",
        "data.max_train_rows=32", "data.max_val_rows=8", "data.workers=0", "sample.num_samples=4", "sample.batch_size=4",
        "evaluate.metrics=[validity]", "evaluate.workers=1", "evaluate.train_split=null"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(EXAMPLE)], check=True, cwd=out)
    (built,) = out.glob("crystalgen_minimal_diffusion-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked into a folder, which is what installing it puts in site-packages."""
    folder = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


def crystalgen(site: Path, tmp: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               CRYSTALGEN_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "crystalgen", *args]
    return subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_the_presets_and_the_entry_point(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "minimal_diffusion = crystalgen_minimal_diffusion.plugin" in archive.read(entry_points).decode()
    assert {"crystalgen_minimal_diffusion/configs/small.yaml", "crystalgen_minimal_diffusion/configs/paper.yaml"} <= names


def test_only_the_wheel_provides_the_plugin(site, tmp_path):
    """No other installed distribution has its name or entry point, so the host sees the model once, from the wheel."""
    code = ("import importlib.metadata as m, json, crystalgen_minimal_diffusion as p;"
            f"d = [str(x._path) for x in m.distributions() if x.metadata['Name'] == {DISTRIBUTION!r}];"
            "e = [ep.value for ep in m.entry_points(group='crystalgen.plugins') if ep.name == 'minimal_diffusion'];"
            "print(json.dumps([d, e, p.__file__]))")
    proc = crystalgen(site, tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr
    dists, entry_points, module = json.loads(proc.stdout)
    assert len(dists) == 1 and dists[0].startswith(str(site))
    assert entry_points == ["crystalgen_minimal_diffusion.plugin"]
    assert module.startswith(str(site))


def test_crystalgen_lists_the_model_with_its_parts(site, tmp_path):
    proc = crystalgen(site, tmp_path, "list")
    assert proc.returncode == 0, proc.stderr
    assert "crystalgen-minimal-diffusion" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["minimal"] for line in lines), proc.stdout
    assert "minimal_mlp" in proc.stdout and "registered twice" not in proc.stdout


def test_a_tiny_run_trains_samples_evaluates_and_reports(site, tmp_path):
    proc = crystalgen(site, tmp_path, "run", "minimal", "--runs-root", str(tmp_path / "runs"), *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("minimal-embedded-")
    assert (run / "report.md").is_file()
    samples = [json.loads(line) for line in (run / "samples" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4


def test_every_part_passes_the_conformance_checks(site, tmp_path):
    code = ("from crystalgen.testing import check_plugin;"
            f"print(sorted(set(check_plugin({DISTRIBUTION!r}))))")
    proc = crystalgen(site, tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "('model', 'minimal')" in proc.stdout and "('denoiser', 'minimal_mlp')" in proc.stdout
