"""The host reads each plugin distribution's range on crystalgen-core before importing it, skips plugins the user
disabled, and says why a component is missing when its plugin was not loaded. The plugins are real installed
distributions (a dist-info folder on sys.path), found through importlib.metadata like any other."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from crystalgen import plugins
from crystalgen.cli.main import main
from crystalgen.registry import UnknownComponentError

PLUGIN_SOURCE = '''
from crystalgen import hookimpl
from crystalgen.samplers.ancestral import AncestralSampler

IMPORTED.append(__name__)


class {cls}(AncestralSampler):
    name = "{sampler}"


@hookimpl
def crystalgen_samplers():
    return {{"{sampler}": {cls}}}
'''


def install_plugin(root: Path, name: str, requirement: str | None) -> None:
    """A distribution crystalgen-<name> 1.0 with entry point <name> -> module <name>_plugin (sampler <name>_sampler)."""
    module = f"{name}_plugin"
    (root / f"{module}.py").write_text(
        "import builtins\nIMPORTED = builtins.__dict__.setdefault('_crystalgen_test_imported', [])\n"
        + PLUGIN_SOURCE.format(cls=f"{name.title()}Sampler", sampler=f"{name}_sampler"))
    info = root / f"crystalgen_{name}-1.0.dist-info"
    info.mkdir()
    requires = f"Requires-Dist: {requirement}\n" if requirement else ""
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: crystalgen-{name}\nVersion: 1.0\n{requires}")
    info.joinpath("entry_points.txt").write_text(f"[crystalgen.plugins]\n{name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder of fake installed plugins on sys.path; forgets the imports and the cached host afterwards."""
    import builtins

    imported: list[str] = []
    monkeypatch.setattr(builtins, "_crystalgen_test_imported", imported, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    plugins.reset()
    yield tmp_path, imported
    plugins.reset()
    for name in [m for m, module in sys.modules.items() if str(getattr(module, "__file__", "")).startswith(str(tmp_path))]:
        del sys.modules[name]


def test_a_plugin_built_for_another_core_is_not_imported_and_says_why(site):
    root, imported = site
    install_plugin(root, "oldstyle", "crystalgen-core[metrics]<0.2,>=0.1")
    install_plugin(root, "current", "crystalgen-core[metrics]<0.3,>=0.2")
    host = plugins.build_host(core_version="0.2.1")

    assert imported == ["current_plugin"]
    assert "current_sampler" in host.registry("sampler")
    (old,) = [u for u in host.unloaded if u.plugin == "oldstyle"]
    assert (old.distribution, old.version, old.status) == ("crystalgen-oldstyle", "1.0", "incompatible")
    assert "built for crystalgen-core<0.2,>=0.1" in old.reason and "crystalgen-core 0.2.1 is installed" in old.reason
    assert any(p.startswith("plugin 'oldstyle' (crystalgen-oldstyle 1.0) is incompatible") for p in host.problems())

    with pytest.raises(UnknownComponentError) as info:
        host.registry("sampler").get("oldstyle_sampler")
    # (under a mocked 0.2.1 core our own installed plugins, which need 0.2.2, are listed there too)
    assert "Not loaded: plugin '" in str(info.value)
    assert "plugin 'oldstyle' (crystalgen-oldstyle 1.0) is incompatible: built for" in str(info.value)


def test_the_installed_core_version_decides(site):
    root, imported = site
    install_plugin(root, "future", "crystalgen-core>=0.3,<0.4")
    assert [u.plugin for u in plugins.build_host(core_version="0.2.5").unloaded] == ["future"]
    assert "future_sampler" in plugins.build_host(core_version="0.3.0").registry("sampler")


def test_a_plugin_on_contract_2_2_is_refused_by_a_0_2_1_core(site):
    """Our model plugins rely on 2.2's default from_config: under crystalgen-core 0.2.1 they are listed as
    incompatible instead of failing to build their model."""
    root, imported = site
    install_plugin(root, "recent", "crystalgen-core[metrics]>=0.2.2,<0.3")
    (old,) = [u for u in plugins.build_host(core_version="0.2.1").unloaded if u.plugin == "recent"]
    assert old.status == "incompatible" and "crystalgen-core 0.2.1 is installed" in old.reason and imported == []
    assert "recent_sampler" in plugins.build_host(core_version="0.2.2").registry("sampler")


@pytest.mark.parametrize("requirement", ["crystalgen-core", None])
def test_a_plugin_without_a_range_is_loaded_with_a_warning(site, requirement):
    root, imported = site
    install_plugin(root, "unranged", requirement)
    host = plugins.build_host(core_version="0.2.1")
    assert imported == ["unranged_plugin"] and not [u for u in host.unloaded if u.plugin == "unranged"]
    assert ("plugin 'unranged' (crystalgen-unranged) declares no version range on crystalgen-core: it may be built "
            "for another plugin contract") in host.problems()


def test_disabled_plugins_are_skipped_listed_and_explained(site, monkeypatch, capsys):
    root, imported = site
    install_plugin(root, "quiet", "crystalgen-core>=0")
    monkeypatch.setenv(plugins.DISABLE_ENV, "quiet, core,nosuch")
    host = plugins.build_host()

    assert imported == []
    assert [(u.plugin, u.status) for u in host.unloaded] == [("quiet", "disabled")]
    assert "core" in {p.name for p in host.plugins}  # the built-ins cannot be disabled
    assert not any("quiet" in p for p in host.problems())  # switched off on purpose: not a problem
    assert "$CRYSTALGEN_DISABLE_PLUGINS names nosuch, which no installed plugin is called" in host.warnings
    assert "$CRYSTALGEN_DISABLE_PLUGINS names core: the core's built-ins cannot be disabled" in host.warnings
    with pytest.raises(UnknownComponentError, match=r"Not loaded: plugin 'quiet' \(crystalgen-quiet 1.0\) is "
                                                    r"disabled: named in \$CRYSTALGEN_DISABLE_PLUGINS"):
        host.registry("sampler").get("quiet_sampler")

    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "quiet            crystalgen-quiet 1.0  disabled: named in $CRYSTALGEN_DISABLE_PLUGINS" in text
    assert "quiet_sampler" not in text


def test_list_shows_an_incompatible_plugin_with_its_reason(site, capsys):
    root, imported = site
    install_plugin(root, "ancient", "crystalgen-core>=99")
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (entry,) = [u for u in data["unloaded"] if u["name"] == "ancient"]
    assert entry["status"] == "incompatible" and entry["reason"].startswith("built for crystalgen-core>=99")
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "ancient          crystalgen-ancient 1.0  incompatible: built for crystalgen-core>=99" in text
    assert "plugin 'ancient' (crystalgen-ancient) is incompatible: built for" in text.split("Problems:")[1]
    assert imported == []
