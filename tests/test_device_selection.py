"""Where training runs: ``select_device`` (trainer.device / --device) with and without CUDA, and the command line's
refusal of a device string it cannot use. No GPU is needed: CUDA's presence is monkeypatched and only the
``torch.device`` returned is checked."""

from __future__ import annotations

import logging

import pytest
import torch

from crystalgen.runner.config import ConfigError, apply_user_layers, runner_defaults
from crystalgen.runner.distributed import select_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def console_logger():
    """The CLI's console setup changes the level and propagation of the ``crystalgen`` logger: restore them."""
    logger = logging.getLogger("crystalgen")
    level, propagate = logger.level, logger.propagate
    yield
    logger.setLevel(level)
    logger.propagate = propagate


def test_auto_is_the_cpu_without_cuda(no_cuda):
    assert select_device("auto") == torch.device("cpu")
    assert select_device("auto", local_rank=3) == torch.device("cpu")  # also under torchrun


def test_auto_is_the_local_gpu_with_cuda(with_cuda):
    assert select_device("auto") == torch.device("cuda", 0)
    assert select_device("auto", local_rank=1) == torch.device("cuda", 1)  # each torchrun process its own GPU
    assert select_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert select_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an explicit index is kept


@pytest.mark.parametrize("available", [False, True])
def test_cpu_is_the_cpu_whether_or_not_cuda_is_present(available, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("cpu", local_rank=1) == torch.device("cpu")


@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused_with_the_alternatives(requested, no_cuda):
    with pytest.raises(ValueError, match=rf"device '{requested}' requested but CUDA is not available "
                                         r"\(use --device cpu or auto\)"):
        select_device(requested)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda0", "cuda:x", "cuda:-1", "cuda:0:1", "mps", "cpu,cuda"])
def test_the_command_line_refuses_a_malformed_device_before_creating_a_run(device, tmp_path, capsys, console_logger):
    pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
    from crystalgen.cli.main import main

    assert main(["train", "toy", "--device", device, "--runs-root", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"crystalgen train: error: 'trainer.device' must be auto, cpu, cuda or cuda:N, got '{device}'" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("device", ["cpu\n", "cuda\n", "auto\n"])
def test_a_config_file_device_with_a_trailing_newline_is_refused(device, tmp_path):
    # A regex's `$` also matches before a final newline; torch.device("cpu\n") would then fail at the start of
    # training with a RuntimeError instead of this ConfigError.
    user = tmp_path / "device.yaml"
    user.write_text(f"trainer:\n  device: {device!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match="'trainer.device' must be auto, cpu, cuda or cuda:N"):
        apply_user_layers(runner_defaults(), user_files=[user])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_well_formed_devices_pass_the_config_check(device):
    assert apply_user_layers(runner_defaults(), overrides=[f"trainer.device={device}"]).trainer.device == device


@pytest.mark.parametrize("verb", ["train", "run"])
def test_an_unavailable_gpu_is_refused_before_a_run_folder_is_made(verb, no_cuda, tmp_path, capsys, console_logger):
    pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
    from crystalgen.cli.main import main

    assert main([verb, "toy", "--device", "cuda", "--runs-root", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert "CUDA is not available (use --device cpu or auto)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
