"""The restricted checkpoint reader: data comes back exactly, pickled code never runs."""

from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict

import pytest
import torch

from crystalgen.metrics.cdvae_property.safe_unpickle import Inert, UnsafePickleError, load_zip_pickle


class RunsShell:
    """Pickles as a call to os.system (the classic malicious checkpoint)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getpid()",)


class FakeScaler:
    """Stands in for CDVAE's StandardScalerTorch: pickled under the cdvae module name, never importable here."""

    def __init__(self) -> None:
        self.means = torch.tensor([1.5])
        self.stds = torch.tensor([0.25])


FakeScaler.__module__ = "cdvae.common.data_utils"
FakeScaler.__qualname__ = "StandardScalerTorch"


def test_tensors_and_containers_round_trip(tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    payload = {
        "state_dict": OrderedDict(w=torch.randn(3, 5), idx=torch.tensor([1, 2, 3]), flag=torch.tensor([True, False])),
        "view": base[1:, ::2],  # offset + non-contiguous stride into a shared storage
        "base": base,
        "half": torch.ones(2, dtype=torch.float16),
        "numbers": [1, 2.5, None, "text", (3, 4)],
        "epoch": 7,
    }
    torch.save(payload, tmp_path / "ckpt.pt")
    loaded = load_zip_pickle(tmp_path / "ckpt.pt")
    assert loaded["epoch"] == 7 and loaded["numbers"] == [1, 2.5, None, "text", (3, 4)]
    for key, value in payload["state_dict"].items():
        assert torch.equal(loaded["state_dict"][key], value) and loaded["state_dict"][key].dtype == value.dtype
    assert torch.equal(loaded["view"], payload["view"]) and torch.equal(loaded["base"], base)
    assert loaded["view"].data_ptr() != 0 and loaded["half"].dtype == torch.float16


def test_os_system_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "evil": RunsShell(f"touch {marker}")}, tmp_path / "evil.ckpt")
    with pytest.raises(UnsafePickleError, match=r"system") as info:
        load_zip_pickle(tmp_path / "evil.ckpt")
    assert "evil.ckpt" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [CallsEval(), RunsShell("true")])
def test_other_callables_are_refused(tmp_path, obj):
    torch.save([obj], tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        load_zip_pickle(tmp_path / "evil.pt")


def test_unknown_class_of_any_package_is_refused(tmp_path):
    torch.save({"x": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a pickled nn.Module is code, not data
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_zip_pickle(tmp_path / "module.pt")


def test_checkpoint_classes_become_inert_records(tmp_path, monkeypatch):
    # Saving needs the class importable under CDVAE's name; loading must not import it.
    fake = types.ModuleType("cdvae.common.data_utils")
    fake.StandardScalerTorch = FakeScaler
    for name in ("cdvae", "cdvae.common"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "cdvae.common.data_utils", fake)
    torch.save(FakeScaler(), tmp_path / "prop_scaler.pt")
    monkeypatch.undo()
    loaded = load_zip_pickle(tmp_path / "prop_scaler.pt")
    assert isinstance(loaded, Inert) and (loaded.module, loaded.qualname) == ("cdvae.common.data_utils", "StandardScalerTorch")
    assert torch.equal(loaded.state["means"], torch.tensor([1.5])) and torch.equal(loaded.state["stds"], torch.tensor([0.25]))
    assert "cdvae" not in sys.modules  # nothing was imported to build the placeholder


def test_non_zip_file_is_rejected_clearly(tmp_path):
    (tmp_path / "old.pt").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(ValueError, match="not a torch zip archive"):
        load_zip_pickle(tmp_path / "old.pt")
