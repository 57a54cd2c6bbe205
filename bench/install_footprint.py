"""Installed size and install time of crystalgen-core alone, in a fresh virtual environment.

Why: the core is what a third-party sampler or dataset plugin pulls in; the evaluation suite's dependencies
belong to the `metrics` extra. This measures what `pip install <core>` costs after torch (installed first, as
the README says, and timed separately because every variant shares it).

    python bench/install_footprint.py --label after                  # the core of this checkout
    python bench/install_footprint.py --label before --ref 9ca6bc9   # the core of another commit (git archive)
    python bench/install_footprint.py --label after-metrics --extra metrics

Writes bench/results/install_footprint_<label>.json: the commands, commit, load average, versions, seconds,
site-packages size (total and without torch and its NVIDIA/triton companions) and whether the evaluation stack
(matminer, chgnet, scikit-learn, pymongo) got installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
EVALUATION_STACK = ("matminer", "chgnet", "scikit-learn", "pymongo")
TORCH_FAMILY = ("torch", "nvidia", "triton", "functorch", "torchgen")


def run(cmd: list[str]) -> float:
    """Run a command to completion (output kept out of the way) and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - start


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def core_source(ref: str | None, workdir: Path) -> tuple[Path, str]:
    """The core/ folder to install: this checkout's, or the one of ``ref`` unpacked from git."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref or "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    if ref is None:
        return ROOT / "core", commit
    archive = workdir / "core.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit, "core"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(workdir / "src", filter="data")
    return workdir / "src" / "core", commit


def measure(label: str, ref: str | None, extra: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="crystalgen-footprint-") as tmp:
        workdir = Path(tmp)
        source, commit = core_source(ref, workdir)
        # a copy, so that the build does not leave egg-info or build/ in the checkout
        staged = workdir / "core"
        if source != staged:
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
        venv = workdir / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--quiet"]
        target = f"{staged}[{extra}]" if extra else str(staged)
        torch_seconds = run([*pip, TORCH])
        core_seconds = run([*pip, target])
        site = next((venv / "lib").glob("python*/site-packages"))
        total = tree_bytes(site)
        torch_bytes = sum(tree_bytes(p) for p in site.iterdir() if p.is_dir() and p.name.lower().startswith(TORCH_FAMILY))
        freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], check=True,
                                capture_output=True, text=True).stdout
        installed = {d["name"].lower(): d["version"] for d in json.loads(freeze)}
        list_ok = subprocess.run([str(venv / "bin" / "crystalgen"), "list"], capture_output=True, text=True).returncode == 0
    return {
        "label": label,
        "commands": [" ".join(["pip install", TORCH]), f"pip install core{f'[{extra}]' if extra else ''}"],
        "commit": commit,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "pip": installed.get("pip"),
        "torch_install_seconds": round(torch_seconds, 1),
        "core_install_seconds": round(core_seconds, 1),
        "site_packages_mib": round(total / 2**20, 1),
        "site_packages_without_torch_mib": round((total - torch_bytes) / 2**20, 1),
        "distributions": len(installed),
        "evaluation_stack_installed": {name: name in installed for name in EVALUATION_STACK},
        "crystalgen_list_ok": list_ok,
        "crystalgen_core_version": installed.get("crystalgen-core"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="result name: bench/results/install_footprint_<label>.json")
    parser.add_argument("--ref", help="git commit whose core/ to install (default: this checkout)")
    parser.add_argument("--extra", help="install core[EXTRA] instead of the bare core")
    args = parser.parse_args()
    result = measure(args.label, args.ref, args.extra)
    out = ROOT / "bench" / "results" / f"install_footprint_{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
