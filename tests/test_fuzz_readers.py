"""Seeded fuzzing of the CIF readers: mutated CIFs through `crystalgen evaluate` and `crystalgen data prepare`.

The base CIFs are the first rows of the benchmark test splits when CRYSTALGEN_DATA is set, else crystals of the
embedded set. Each mutant gets one or two of: truncation, byte flips, NaN / inf, huge or negative numbers,
duplicated atom lines, broken loops, bad symmetry operations, unknown element symbols. Nothing may crash, and every
row must come out either as a crystal or with a reason that has a detail. The default run (1,000 mutants) takes
well under a minute; `pytest -m slow` adds a 10,000-mutant run.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from crystalgen.cli.main import main
from crystalgen.data.io import structure_to_cif

SEED = 20240601
NUMBER = re.compile(r"-?\d+\.\d+")


def _truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text))]


def _flip_bytes(text: str, rng: random.Random) -> str:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return data.decode("utf-8", errors="replace")


def _replace_number(values: tuple[str, ...]) -> Callable[[str, random.Random], str]:
    def mutate(text: str, rng: random.Random) -> str:
        numbers = list(NUMBER.finditer(text))
        if not numbers:
            return text
        hit = rng.choice(numbers)
        return text[: hit.start()] + rng.choice(values) + text[hit.end():]

    return mutate


def _duplicate_atoms(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    atoms = [i for i, line in enumerate(lines) if len(line.split()) >= 6 and NUMBER.search(line)]
    if not atoms:
        return text
    i = rng.choice(atoms)
    return "\n".join(lines[: i + 1] + [lines[i]] * rng.randint(1, 40) + lines[i + 1:]) + "\n"


def _break_loop(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    loops = [i for i, line in enumerate(lines) if line.strip() == "loop_"]
    headers = [i for i, line in enumerate(lines) if line.strip().startswith("_atom_site")]
    choice = rng.random()
    if loops and choice < 0.4:
        del lines[rng.choice(loops)]
    elif headers:
        del lines[rng.choice(headers)]
    return "\n".join(lines) + "\n"


def _bad_symmetry(text: str, rng: random.Random) -> str:
    op = rng.choice(["'x, y, q'", "'x, y'", "'__import__(\"os\").system(\"true\")'", "'x+1e308, y, z'",
                     "'-x, -y, -z', 'x, y, z'", "'2*x, y, z'", "''"])
    return re.sub(r"'x, y, z'", op, text, count=1)


def _unknown_element(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    atoms = [i for i, line in enumerate(lines) if len(line.split()) >= 6 and NUMBER.search(line)]
    if not atoms:
        return text
    i = rng.choice(atoms)
    parts = lines[i].split()
    parts[0] = rng.choice(["Xx", "Uue", "D", "Q1", "0", "na"])
    lines[i] = "  " + "  ".join(parts)
    return "\n".join(lines) + "\n"


MUTATIONS: list[Callable[[str, random.Random], str]] = [
    _truncate, _flip_bytes, _replace_number(("nan", "NaN", "inf", "-inf", "?", ".")),
    _replace_number(("1e308", "-1e308", "1" * 400, "-5.6", "0", "-0.0", "1e-300", "180", "1e8")),
    _duplicate_atoms, _break_loop, _bad_symmetry, _unknown_element,
]


def base_cifs(count: int) -> list[str]:
    """Real CIFs: the benchmark test splits' first rows (CRYSTALGEN_DATA), else embedded crystals."""
    root = os.environ.get("CRYSTALGEN_DATA")
    texts: list[str] = []
    if root:
        for name in ("mp_20", "perov_5", "carbon_24"):
            path = Path(root) / name / "test.csv"
            if path.is_file():
                csv.field_size_limit(1 << 24)
                with path.open(newline="") as handle:
                    for i, row in enumerate(csv.DictReader(handle)):
                        if i >= count:
                            break
                        texts.append(row["cif"])
    if not texts:
        from crystalgen.data.embedded import embedded_records

        texts = [structure_to_cif(r.structure) for r in embedded_records("test")[:count]]
    return texts


def mutants(n: int, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    bases = base_cifs(40)
    out = []
    for _ in range(n):
        text = rng.choice(bases)
        for mutate in rng.sample(MUTATIONS, rng.choice((1, 1, 2))):
            text = mutate(text, rng) if text else text
        out.append(text)
    return out


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))
    logger = logging.getLogger("crystalgen")
    saved = logger.propagate, logger.level, list(logger.handlers)
    yield
    logger.propagate, logger.level, logger.handlers[:] = saved[0], saved[1], saved[2]


def fuzz(tmp_path: Path, n: int, capsys) -> None:
    table = tmp_path / "fuzz.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif"])
        writer.writerows((f"m{i}", text) for i, text in enumerate(mutants(n)))

    out = tmp_path / "metrics"
    code = main(["evaluate", str(table), "--reference", "embedded:test", "--metrics", "validity", "--workers", "0",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    with (out / "per_sample.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [f"m{i}" for i in range(n)]  # every row accounted for, in order
    invalid = [r for r in rows if r["valid"] != "True"]
    assert invalid and all(r["reason"] and r["detail"] for r in invalid)

    from crystalgen.data.preprocess import prepare_split
    from crystalgen.data.registry import get_dataset
    from crystalgen.encoders.full_cell import FullCellTransform

    loaded = get_dataset(table).load("train", workers=0, progress=False)
    assert loaded.rows_read == n and sorted([r.row for r in loaded.records] + [s.row for s in loaded.skipped]) == list(range(n))
    assert all(s.kind and s.reason.split(":", 1)[1].strip() for s in loaded.skipped)
    prepared = prepare_split(loaded, FullCellTransform(), workers=0, progress=False)
    assert len(prepared.items) + len(prepared.skipped) == len(loaded.records)
    capsys.readouterr()
    assert main(["data", "prepare", str(table), "--transform", "full_cell", "--workers", "0"]) == 0
    assert "rows read" in capsys.readouterr().out


def test_a_thousand_mutated_cifs_crash_nothing_and_every_row_has_a_reason(tmp_path, capsys):
    fuzz(tmp_path, 1000, capsys)


@pytest.mark.slow
def test_ten_thousand_mutated_cifs(tmp_path, capsys):
    fuzz(tmp_path, 10_000, capsys)
