"""docs/cli.md documents every verb, every `data` subcommand, every option and every runner configuration key.

The command's own argparse parser (crystalgen.cli.main.build_parser) is the source of truth: an option added to a
verb without a line in its docs/cli.md section fails here with the list of what is missing. An option counts as
documented when it appears inside inline code (`...`) in the section of its command, i.e. in a table row or the
text, not only in an example block.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from omegaconf import OmegaConf

from crystalgen.cli.main import VERBS, build_parser

REPO = Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
RUNNER_YAML = REPO / "core" / "src" / "crystalgen" / "configs" / "runner.yaml"

#: Sections that document their options by reference to another command's section.
#: ``train`` is documented as "All options of `run`, plus:".
INHERITS = {"train": "run"}

_HEADING = re.compile(r"^(#{1,6}) (.*)$", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """(command path, its option strings other than -h/--help) for the parser and every sub-parser, depth first."""
    options = [s for action in parser._actions for s in action.option_strings if s not in ("-h", "--help")]
    yield path, options
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))


def sections(doc: str) -> dict[str, str]:
    """Heading text -> its body up to the next heading of the same or a higher level; "" is the introduction (the
    text before the first heading below the title), where the program's own options belong."""
    heads = list(_HEADING.finditer(doc))
    out = {"": doc[: next((h.start() for h in heads if len(h.group(1)) >= 2), len(doc))]}
    for i, head in enumerate(heads):
        level = len(head.group(1))
        end = next((h.start() for h in heads[i + 1:] if len(h.group(1)) <= level), len(doc))
        out[head.group(2).strip()] = doc[head.end():end]
    return out


def section_of(path: tuple[str, ...], secs: dict[str, str]) -> str | None:
    """The text of the section headed by ``crystalgen <path>`` (a heading may name several commands, split by '/')."""
    if not path:
        return secs[""]
    wanted = "crystalgen " + " ".join(path)
    for heading, body in secs.items():
        if wanted in (part.strip() for part in heading.split("/")):
            return body
    return None


def documented_options(text: str) -> set[str]:
    """Option strings that appear in inline code of ``text`` (fenced example blocks do not count)."""
    prose = _FENCE.sub("", text)
    return {opt for span in _INLINE_CODE.findall(prose) for opt in _OPTION.findall(span)}


def missing_docs(parser: argparse.ArgumentParser, doc: str) -> list[str]:
    """Commands without a section and options not documented in their command's section, as readable lines."""
    secs = sections(doc)
    missing = []
    for path, options in commands(parser):
        body = section_of(path, secs)
        name = " ".join(("crystalgen",) + path)
        if body is None:
            missing.append(f"{name}: no section headed '{name}'")
            continue
        if path and path[0] in INHERITS:
            body += section_of((INHERITS[path[0]],), secs) or ""
        known = documented_options(body)
        missing += [f"{name} {opt}" for opt in options if opt not in known]
    return missing


def runner_keys(node: dict, prefix: str = "") -> Iterator[str]:
    """Dotted keys of the runner defaults; an empty mapping (free-form, e.g. `model`) is one key."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from runner_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def config_table_keys(doc: str) -> set[str]:
    """Keys named in the first cell of the configuration table; `a.b` / `c` abbreviates `a.b` and `a.c`."""
    table = doc[doc.index("| key | default | meaning |"):]
    keys = set()
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        parts = [p.strip().strip("`") for p in line.split("|")[1].split(" / ")]
        full = parts[0].removesuffix(".*")
        keys.add(full)
        parent = full.rpartition(".")[0]
        keys.update(f"{parent}.{p}" if parent else p for p in parts[1:])
    return keys


def test_every_verb_subcommand_and_option_is_in_cli_md():
    parser, modules = build_parser([])
    assert set(modules) == set(VERBS), "build_parser([]) should load every verb"
    paths = {path for path, _ in commands(parser)}
    assert {("data", sub) for sub in ("list", "info", "fetch", "prepare")} <= paths
    missing = missing_docs(parser, CLI_DOC.read_text())
    assert not missing, "docs/cli.md does not document:\n  " + "\n  ".join(missing)


def test_the_check_reports_an_undocumented_option_and_command():
    """The checker itself: an option only shown in an example, or documented under another verb, is missing."""
    parser = argparse.ArgumentParser(prog="crystalgen")
    sub = parser.add_subparsers()
    a = sub.add_parser("alpha")
    a.add_argument("--documented")
    a.add_argument("--only-in-example")
    a.add_argument("--elsewhere")
    sub.add_parser("beta").add_argument("-q")
    doc = (
        "# intro\n\n## crystalgen alpha\n\n```bash\ncrystalgen alpha --only-in-example\n```\n\n"
        "| `--documented X` | meaning |\n\n## crystalgen gamma\n\n`--elsewhere`\n"
    )
    assert missing_docs(parser, doc) == [
        "crystalgen alpha --only-in-example",
        "crystalgen alpha --elsewhere",
        "crystalgen beta: no section headed 'crystalgen beta'",
    ]


def test_configuration_table_lists_every_runner_key():
    documented = config_table_keys(CLI_DOC.read_text())
    keys = list(runner_keys(OmegaConf.to_container(OmegaConf.load(RUNNER_YAML))))
    assert "threads" in keys and "trainer.threads" not in keys
    missing = [k for k in keys if k not in documented]
    assert not missing, f"docs/cli.md's configuration table lacks runner keys: {missing}"
