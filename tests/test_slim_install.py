"""A fresh virtual environment with crystalgen-core and the third-party sampler fixture only: the evaluation
stack (matminer, chgnet) is not installed, `crystalgen list` shows the sampler, and `crystalgen evaluate` names the
extra to install. Slow (it installs torch and the core's dependencies from the package index: a few minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_core_and_a_sampler_plugin_install_without_the_evaluation_suite(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "crystalgen")
    pip = [python, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, str(ROOT / "core"), str(ROOT / "tests" / "fixtures" / "crystalgen_extra_sampler")], check=True)

    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                               text=True).stdout.lower()
    assert "matminer==" not in installed and "chgnet==" not in installed
    listing = subprocess.run([cli, "list"], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "heun" in listing and "crystalgen-extra-sampler" in listing and "Problems:" not in listing
    evaluate = subprocess.run([cli, "evaluate", str(tmp_path), "--reference", "mp_20:test", "--out", str(tmp_path / "m")],
                              capture_output=True, text=True, cwd=tmp_path)
    assert evaluate.returncode == 2
    assert "needs the evaluation suite" in evaluate.stderr and "pip install 'crystalgen-core[metrics]'" in evaluate.stderr
