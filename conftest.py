"""Fixtures shared by the core's, the plugins' and the cross-package tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crystalgen.testing import benchmark_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with <dataset>/<split>.csv; tests over real data skip cleanly without it."""
    root = benchmark_data_root()
    if root is None:
        pytest.skip("benchmark data not available: set CRYSTALGEN_DATA to a folder with perov_5/, carbon_24/, mp_20/")
    return root


@pytest.fixture(scope="session", autouse=True)
def one_thread_by_default():
    """Tests run with one torch thread unless they ask for more: their tensors are small, two threads on a shared
    machine wait for each other, and the automatic choice would follow the machine's load from run to run."""
    from crystalgen.resources import THREADS_ENV

    patch = pytest.MonkeyPatch()
    patch.setenv(THREADS_ENV, "1")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def thread_setting_restored(monkeypatch):
    """A verb run in-process sets $CRYSTALGEN_THREADS for its workers; the next test starts from the default again."""
    from crystalgen.resources import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test, restored after: small tensors, and one order of float reductions, so that
    bit-exact comparisons (resume, fine-tuning, stages) hold. Modules use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def private_cache(tmp_path_factory, monkeypatch):
    """The session's own preprocessing and metrics cache (shared by the module's tests, apart from the user's), and
    torch's thread count put back afterwards: verbs run in-process set it. Modules use it with
    ``pytestmark = pytest.mark.usefixtures("private_cache")``."""
    import torch

    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def counted_reads(monkeypatch) -> list[str]:
    """The splits read from the embedded dataset while the test runs (tasks must read their input split once)."""
    from crystalgen.data.registry import EmbeddedDataset

    reads: list[str] = []
    load = EmbeddedDataset.load

    def counting(self, split, **kwargs):
        reads.append(split)
        return load(self, split, **kwargs)

    monkeypatch.setattr(EmbeddedDataset, "load", counting)
    return reads


#: .ci/run names a file here that pytest writes only when its session ends normally.
SESSION_END_ENV = "CRYSTALGEN_PYTEST_SESSION_END"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the exit status to $CRYSTALGEN_PYTEST_SESSION_END: a process that ends the test process early (an
    ``os._exit`` in code under test once did, with status 0, at 83 % of the suite) leaves no file, and .ci/run fails
    on that instead of reporting the shortened run as passed."""
    marker = os.environ.get(SESSION_END_ENV)
    if marker:
        Path(marker).write_text(f"{exitstatus}\n")
