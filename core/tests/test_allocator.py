"""The malloc tuning of crystalgen.runner.allocator: applied on glibc, and never over the user's own choice."""

from __future__ import annotations

import platform

import pytest

from crystalgen.runner.allocator import keep_freed_memory

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_thresholds_are_set_on_glibc(monkeypatch):
    for key in ("CRYSTALGEN_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)
    assert keep_freed_memory() is True


def test_a_threshold_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        keep_freed_memory(0)


@pytest.mark.parametrize("key, value", [("CRYSTALGEN_MALLOC_TUNING", "0"), ("MALLOC_TRIM_THRESHOLD_", "131072"),
                                        ("MALLOC_MMAP_THRESHOLD_", "131072"), ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")])
def test_the_users_choice_wins(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    assert keep_freed_memory() is False


def test_the_command_line_applies_it(monkeypatch):
    import crystalgen.runner.allocator as allocator
    from crystalgen.cli.main import main

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    assert main(["list"]) == 0
    assert calls == [True]
