"""The core works without its `metrics` extra: no module needs the evaluation suite at import time, `crystalgen
list` works, and the commands that evaluate say in one line what to install. The extra's packages are hidden from
a child interpreter by an import hook, as if they were not installed."""

from __future__ import annotations

import subprocess
import sys

from crystalgen.extras import METRICS_INSTALL, METRICS_MODULES

HIDE_EXTRA = f"""
import importlib.abc, sys
class Hiding(importlib.abc.MetaPathFinder):
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {METRICS_MODULES!r}:
            return None
        return self.finder.find_spec(name, path, target)
    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()
    def find_distributions(self, *args, **kwargs):
        return getattr(self.finder, "find_distributions", lambda *a, **k: [])(*args, **kwargs)
sys.meta_path[:] = [Hiding(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
"""


def run_without_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE_EXTRA + code], capture_output=True, text=True, timeout=300)


def test_every_core_module_imports_without_the_extra():
    result = run_without_extra("""
import pkgutil, importlib, crystalgen
failed = []
for info in pkgutil.walk_packages(crystalgen.__path__, "crystalgen."):
    if info.name.endswith("__main__"):
        continue  # runs the command line
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed.append(f"{info.name}: {exc}")
print("\\n".join(failed))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"modules that need the metrics extra at import time:\n{result.stdout}"


def test_list_works_and_evaluate_names_the_extra_in_one_line(tmp_path):
    result = run_without_extra(f"""
from crystalgen.cli.main import main
assert main(["list"]) == 0
raise SystemExit(main(["evaluate", {str(tmp_path)!r}, "--reference", "mp_20:test", "--out", {str(tmp_path / "m")!r}]))
""")
    assert result.returncode == 2, result.stderr
    assert "\n  ddim " in result.stdout and "core             crystalgen-core" in result.stdout
    first = result.stderr.splitlines()[0]
    assert first.startswith("crystalgen evaluate: error: crystalgen evaluate needs the evaluation suite (matminer, chgnet, pandas")
    assert first.endswith(METRICS_INSTALL)


def test_run_refuses_before_training_without_the_extra(tmp_path):
    result = run_without_extra(f"""
from crystalgen.cli.main import main
raise SystemExit(main(["run", "symmcd", "--runs-root", {str(tmp_path)!r}]))
""")
    assert result.returncode == 2, result.stderr
    assert "crystalgen run (its evaluation and report) needs the evaluation suite" in result.stderr
    assert METRICS_INSTALL in result.stderr
    assert not any(tmp_path.iterdir())  # no run directory was made
