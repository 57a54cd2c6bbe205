"""Read generated crystals in any SAMPLES form the ``evaluate`` verb accepts.

- a sample directory written by ``crystalgen sample`` (``samples.jsonl`` + ``cif/<index:06d>.cif``): one entry per
  requested crystal, so failed decodes count as invalid with the sampler's reason;
- a folder of ``*.cif`` files (one crystal per file, sorted by name);
- one ``.cif`` file (one crystal per data block);
- an extended-XYZ file (``.extxyz`` / ``.xyz``; one crystal per frame, ``Lattice=`` required);
- a CSV file with a ``cif`` column (ids from ``material_id`` when present).

Nothing here raises for a bad entry: it becomes ``None`` with a ``"<reason key>: <detail>"`` failure string (keys
in validity.REASONS), so that the evaluation counts it. Only a path that is none of the forms above is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pymatgen.core import Element, Structure

from crystalgen.data import user_files
from crystalgen.data.physical import (
    IMPOSSIBLE_CELL,
    NON_FINITE,
    UNKNOWN_ELEMENT,
    PhysicalProblem,
    check_structure,
    cut,
)
from crystalgen.data.records import one_line
from crystalgen.data.user_files import RefusedFileError
from crystalgen.metrics.crystal_features import CompactCrystal, compact, rebuild
from crystalgen.metrics.parallel import map_chunks

ParsedEntry = CompactCrystal | str  # a crystal, or a failure string


def _screen(structure: Structure) -> ParsedEntry:
    try:
        check_structure(structure)
    except PhysicalProblem as exc:
        return f"{_KIND_KEYS[exc.kind]}: {exc.detail}"
    for i, site in enumerate(structure):
        if len(site.species) != 1 or abs(next(iter(site.species.values())) - 1.0) > 1e-6:
            return f"disordered: site {i} holds {site.species.formula}"
        specie = site.specie
        if not isinstance(getattr(specie, "element", specie), Element):
            return f"unknown_element: site {i} holds {specie}"
    if len(structure) == 0:
        return "no_atoms: the structure has no sites"
    return compact(structure)


#: Reason key (validity.REASONS) of each read-time kind of crystalgen.data (other kinds: ``unreadable``).
_KIND_KEYS = {UNKNOWN_ELEMENT: "unknown_element", IMPOSSIBLE_CELL: "impossible_cell", NON_FINITE: "non_finite"}


def _parse_cif(text: str) -> ParsedEntry:
    if not text.strip():
        return "empty_file: no CIF text"
    from crystalgen.data.io import CrystalReadError, structure_from_cif

    try:
        structure = structure_from_cif(text, require_ordered=False)
    except CrystalReadError as exc:
        key = _KIND_KEYS.get(exc.kind)
        return f"{key}: {exc.reason[len(exc.kind) + 2:]}" if key else f"unreadable: CIF parse error: {exc.reason}"
    return _screen(structure)


def parse_cif_chunk(texts: Sequence[str]) -> list[ParsedEntry]:
    """Worker: parse CIF texts (see ``_parse_cif``)."""
    return [_parse_cif(t) for t in texts]


def _to_results(parsed: Sequence[ParsedEntry]) -> tuple[list[Structure | None], list[str | None]]:
    structures: list[Structure | None] = []
    failures: list[str | None] = []
    for entry in parsed:
        if isinstance(entry, str):
            structures.append(None)
            failures.append(one_line(entry))
        else:
            structures.append(rebuild(entry))
            failures.append(None)
    return structures, failures


def _parse_cifs(texts: Sequence[str | None], failures: Sequence[str | None], workers, progress):
    """Parse the CIF texts that exist; entries with a failure string keep it."""
    todo = [i for i, t in enumerate(texts) if t is not None]
    parsed = map_chunks(parse_cif_chunk, [texts[i] for i in todo], workers=workers, desc="reading CIFs", progress=progress, chunk_size=64)
    entries: list[ParsedEntry] = [f or "unreadable: no CIF" for f in failures]
    for i, entry in zip(todo, parsed):
        entries[i] = entry
    return _to_results(entries)


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) of a checked user file (user_files), or (None, failure string)."""
    try:
        text = user_files.read_text(path)
    except RefusedFileError as exc:
        return None, f"{exc.kind}: {exc}"
    except OSError as exc:
        return None, f"unreadable: {path}: {exc.strerror or exc}"
    return (text, None) if text.strip() else (None, f"empty_file: {path} is empty")


def _extxyz_frame_texts(root: Path) -> list[str]:
    """The readable frame texts of a sample directory's samples.extxyz (one per decoded crystal, in order)."""
    text, _ = _read_text(root / "samples.extxyz")
    frames, _ = _extxyz_frames(text or "")
    return frames


def _read_sample_dir(root: Path, workers, progress):
    """A sample directory: each decoded crystal from its CIF, or from samples.extxyz when its CIF was omitted
    because it would not read back (cif_omitted, runner.sample_dir)."""
    index_file = root / "samples.jsonl"
    texts: list[str | None] = []
    failures: list[str | None] = []
    ids: list[str] = []
    from_extxyz: dict[int, int] = {}  # entry position -> frame position
    decoded = 0
    for line_no, line in enumerate(user_files.read_text(index_file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            index = entry["index"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            texts.append(None)
            failures.append(f"unreadable: {index_file} line {line_no}: {exc}")
            ids.append(f"line{line_no}")
            continue
        ids.append(str(index))
        if entry.get("ok", False) and not entry.get("cif") and entry.get("cif_omitted"):
            from_extxyz[len(texts)] = decoded
            decoded += 1
            texts.append(None)
            failures.append("unreadable: samples.extxyz has no frame for it")
            continue
        decoded += bool(entry.get("ok", False))
        if not entry.get("ok", False) or not entry.get("cif"):
            texts.append(None)
            failures.append(f"decode_failed: {entry.get('reason') or 'no reason given'}")
            continue
        text, failure = _read_text(root / entry["cif"])
        texts.append(text)
        failures.append(failure)
    structures, failures = _parse_cifs(texts, failures, workers, progress)
    if from_extxyz:
        frames = _extxyz_frame_texts(root)
        for position, frame in from_extxyz.items():
            if frame_text := (frames[frame] if frame < len(frames) else None):
                entry = _parse_extxyz_frame(frame_text)
                structures[position], failures[position] = (None, entry) if isinstance(entry, str) else (rebuild(entry), None)
    return structures, failures, ids


def _read_cif_folder(root: Path, workers, progress):
    paths = sorted(root.glob("*.cif"))
    if not paths:
        raise ValueError(f"{root}: no samples.jsonl and no *.cif files; expected a sample directory or a folder of CIFs")
    texts, failures = zip(*(_read_text(p) for p in paths))
    structures, failures = _parse_cifs(list(texts), list(failures), workers, progress)
    return structures, failures, [p.stem for p in paths]


def _split_cif_blocks(text: str) -> list[str]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line.lstrip().lower().startswith("data_"):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
    return ["\n".join(b) + "\n" for b in blocks] or [text]


def _read_cif_file(path: Path, workers, progress):
    text, failure = _read_text(path)
    if text is None:
        return [None], [failure], [path.stem]
    blocks = _split_cif_blocks(text)
    structures, failures = _parse_cifs(blocks, [None] * len(blocks), workers, progress)
    return structures, failures, [f"{path.stem}:{i}" for i in range(len(blocks))]


def _extxyz_frames(text: str) -> tuple[list[str], str | None]:
    """The frame texts of an extended-XYZ file, and the failure that stopped reading (None: read to the end)."""
    lines = text.splitlines()
    frames: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:  # without a count, frame boundaries are lost
            return frames, f"unreadable: line {i + 1}: expected the number of atoms, got {lines[i][:40]!r}"
        if i + 2 + n > len(lines):
            return frames, f"unreadable: line {i + 1}: frame of {n} atoms is truncated"
        frames.append("\n".join(lines[i:i + 2 + n]) + "\n")
        i += 2 + n
    return frames, None


def _parse_extxyz_frame(text: str) -> ParsedEntry:
    from io import StringIO

    from ase import Atoms
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        atoms = read(StringIO(text), format="extxyz")
    except Exception as exc:  # noqa: BLE001
        return f"unreadable: extxyz frame: {exc}"
    if not isinstance(atoms, Atoms):  # ASE returns a list for a slice index; one frame is read here
        return f"unreadable: extxyz frame read as {len(atoms)} structures"
    if not atoms.cell.any():
        return "unreadable: extxyz frame has no Lattice="
    if len(atoms) == 0:
        return "no_atoms: empty frame"
    return _screen(AseAtomsAdaptor.get_structure(atoms))


def _read_extxyz(path: Path):
    text, failure = _read_text(path)
    if text is None:
        return [None], [failure], [path.stem]
    frames, stopped = _extxyz_frames(text)
    entries: list[ParsedEntry] = [_parse_extxyz_frame(frame) for frame in frames]
    if stopped is not None:
        entries.append(stopped)
    structures, failures = _to_results(entries)
    return structures, failures, [str(i) for i in range(len(entries))]


def _read_csv(path: Path, workers, progress):
    import pandas as pd

    with user_files.open_checked(path, newline="") as handle:
        try:
            frame = pd.read_csv(handle)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: the file is empty; expected a header with a 'cif' column and one row per "
                             "crystal") from None
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: no 'cif' column (columns: {cut(', '.join(map(str, frame.columns)), 200)})")
    if frame.empty:
        raise ValueError(f"{path}: the file has a header but no rows; expected one row per crystal")
    # Rows count from 0 after the header, as everywhere in crystalgen (docs/data.md).
    ids = [str(x) for x in frame["material_id"]] if "material_id" in frame.columns else [str(i) for i in range(len(frame))]
    texts = [c if isinstance(c, str) and c.strip() else None for c in frame["cif"]]
    failures = [None if t is not None else f"empty_file: {path} row {i} has no CIF" for i, t in enumerate(texts)]
    structures, failures = _parse_cifs(texts, failures, workers, progress)
    return structures, failures, ids


def read_samples(
    path: str | Path, *, workers: int | None = None, progress: bool = True
) -> tuple[list[Structure | None], list[str | None], list[str]]:
    """(structures, failures, ids) from any SAMPLES form (module docstring); None + failure for bad entries."""
    path = Path(path)
    if path.is_dir():
        if (path / "samples.jsonl").is_file():
            return _read_sample_dir(path, workers, progress)
        return _read_cif_folder(path, workers, progress)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such sample directory or file")
    user_files.check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".cif":
        return _read_cif_file(path, workers, progress)
    if suffix in (".extxyz", ".xyz"):
        return _read_extxyz(path)
    if suffix == ".csv":
        return _read_csv(path, workers, progress)
    raise ValueError(f"{path}: unsupported sample file (expected a directory, .cif, .extxyz/.xyz or .csv with a 'cif' column)")
