"""Crystal files: CIF and extended XYZ, for one structure or many, with per-entry errors.

Reading never fails a whole file because of one bad entry: ``read_cif`` / ``read_extxyz`` return a
:class:`ReadResult` holding the structures that parsed and one :class:`ReadError` (file, entry index, reason) per
entry that did not. ``structure_from_cif`` parses one CIF string (a dataset row) and raises
:class:`CrystalReadError` naming its source.

Precision: CIF stores lattice parameters and fractional coordinates with 8 decimals (pymatgen's CifWriter) and
no orientation, so a CIF round trip returns the lattice in pymatgen's ``from_parameters`` orientation; pymatgen's
parser also snaps fractional coordinates within 1e-4 (relative) of 1/3 and 2/3 to those values (``frac_tolerance``).
extxyz stores the full lattice matrix (full float precision) and Cartesian positions with 8 decimals (ASE's writer),
so it keeps the orientation; frame info (material_id, properties) is written as key=value pairs.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ase.io
import numpy as np
from ase import Atoms
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifFile, CifParser, CifWriter, str2float

from crystalgen.atomic import replace_text
from crystalgen.data.crystal import InvalidCrystalError, check_ordered
from crystalgen.data.physical import (
    UNKNOWN_ELEMENT,
    PhysicalProblem,
    check_cell_parameters,
    check_structure,
    check_symbols,
    cut,
)
from crystalgen.data.user_files import read_text

CIF_SUFFIXES = (".cif",)
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
# pymatgen's default: coordinates this close (relative) to 1/3 or 2/3 are snapped, as CDVAE's loader did.
DEFAULT_FRAC_TOLERANCE = 1e-4


MALFORMED_CIF = "malformed CIF"
MALFORMED_EXTXYZ = "malformed extxyz frame"
DISORDERED = "disordered structure"


class CrystalReadError(ValueError):
    """An entry of a crystal file (or a CIF string) that could not be turned into a usable Structure; ``kind``
    names the reason (docs/data.md lists them), ``reason`` is ``"<kind>: <detail>"``."""

    def __init__(self, source: str, reason: str, index: int | None = None, kind: str = MALFORMED_CIF):
        self.kind = kind
        self.reason = reason if reason.startswith(f"{kind}:") else f"{kind}: {reason}"
        self.source, self.index = source, index
        where = source if index is None else f"{source} [entry {index}]"
        super().__init__(f"{where}: {self.reason}")


def ordering_kind(exc: InvalidCrystalError) -> str:
    """The reason kind of check_ordered's refusal: a symbol that is no element, or disorder."""
    return UNKNOWN_ELEMENT if "not a chemical element" in str(exc) else DISORDERED


def _check_physical(block: dict | None, structure: Structure | None, source: str, index: int | None) -> None:
    """Read-time checks of crystalgen.data.physical on a CIF block's values as written and on the parsed structure."""
    try:
        if block is not None:
            symbols = block.get("_atom_site_type_symbol")
            if symbols is not None:
                check_symbols([symbols] if isinstance(symbols, str) else symbols)
            check_cell_parameters(block)
        if structure is not None:
            check_structure(structure)
    except PhysicalProblem as exc:
        raise CrystalReadError(source, str(exc), index, kind=exc.kind) from None


@dataclass(frozen=True)
class ReadError:
    """Why entry ``index`` (0-based CIF data block or extxyz frame; None for the whole file) of ``source`` failed:
    ``reason`` reads ``"<kind>: <detail>"``."""

    source: str
    index: int | None
    reason: str
    kind: str = MALFORMED_CIF

    def __str__(self) -> str:
        return str(CrystalReadError(self.source, self.reason, self.index, self.kind))


@dataclass(frozen=True)
class FileEntry:
    """One structure read from a file: where it came from and the entry's metadata.

    ``info`` holds the CIF data-block name under ``"name"``, or an extxyz frame's key=value pairs
    (e.g. ``material_id``, property values).
    """

    structure: Structure
    source: str
    index: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReadResult:
    records: list[FileEntry]
    errors: list[ReadError]

    @property
    def structures(self) -> list[Structure]:
        return [r.structure for r in self.records]


# ---------------------------------------------------------------------------------------------------------------- CIF


def structure_from_cif(
    text: str, source: str = "<string>", *, require_ordered: bool = True, frac_tolerance: float = DEFAULT_FRAC_TOLERANCE
) -> Structure:
    """The one structure of a CIF string, as written (no primitive reduction).

    Args:
        text: CIF text with exactly one data block holding a structure.
        source: named in errors (e.g. ``"mp_20/train.csv row 17 (mp-1234)"``).
        require_ordered: reject disordered sites and partial occupancies (crystalgen's tensors cannot hold them).
        frac_tolerance: pymatgen's snapping of coordinates near 1/3, 2/3 (0 disables it).

    Raises:
        CrystalReadError: empty or malformed text, no or several structures, or (if required) a disordered site.
    """
    return _parse_cif_block(text, source, None, require_ordered, frac_tolerance)


def _parse_cif_block(text: str, source: str, index: int | None, require_ordered: bool, frac_tolerance: float) -> Structure:
    if not text.strip():
        raise CrystalReadError(source, "empty CIF text", index)
    blocks = len(_split_cif_blocks(text))
    if blocks != 1:
        found = "no data block (a line starting with 'data_')" if blocks == 0 else f"{blocks} data blocks; use read_cif for multi-block files"
        raise CrystalReadError(source, f"expected one CIF data block, found {found}", index)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser, listed = None, None
        try:
            parser = CifParser.from_str(text, frac_tolerance=frac_tolerance)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many types on malformed text; report them all the same way
            block = _block_data(text, parser)
            _check_physical(block, None, source, index)  # an impossible cell is named as such, not as malformed
            listed = _p1_structure(block)
            if listed is not None:  # coinciding sites pymatgen could not merge: keep them, they are the finding
                structures = [listed]
            else:
                cause = exc.__cause__
                what = f"missing field {cause.args[0]}" if isinstance(cause, KeyError) else f"{type(exc).__name__}: {exc}"
                notes = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
                detail = f" (parser warnings: {notes})" if notes else ""
                raise CrystalReadError(source, f"{what}{detail}", index) from exc
    (structure,) = structures  # one data block gives at most one structure, and an empty list raised above
    if listed is None:  # the fallback above already read the sites as listed and checked the block
        block = _block_data(text, parser)
        _check_physical(block, None, source, index)
        listed = _p1_structure(block) if len(structure) else None
    if listed is not None and len(listed) > len(structure):  # pymatgen merged coinciding sites
        structure = listed
    _check_physical(None, structure, source, index)
    if require_ordered:
        try:
            check_ordered(structure)
        except InvalidCrystalError as exc:
            raise CrystalReadError(source, str(exc), index, kind=ordering_kind(exc)) from exc
    return structure


def _block_data(text: str, parser: CifParser | None) -> dict | None:
    """The fields of the single data block, from the parser when it got that far (parsing the text again costs
    about an eighth of a read), else from the text; None when the text is no CIF at all."""
    try:
        blocks = parser.as_dict() if parser is not None else {k: v.data for k, v in CifFile.from_str(text).data.items()}
        return next(iter(blocks.values()))
    except Exception:  # noqa: BLE001 - not parseable as CIF: the caller reports the full parser's error
        return None


def _p1_structure(block: dict | None) -> Structure | None:
    """The sites of a P1 CIF block (its fields) exactly as listed (no merging), or None when the block is not plain
    P1 with ordered, typed sites.

    pymatgen's parser merges sites that coincide, so a generated crystal with two atoms on one spot would come back
    with fewer or mixed sites, or not at all; reading it as written lets validity report it as overlapping atoms.
    """
    if block is None:
        return None
    try:
        ops = block.get("_symmetry_equiv_pos_as_xyz", block.get("_space_group_symop_operation_xyz"))
        ops = [ops] if isinstance(ops, str) else ops
        if not ops or [op.replace(" ", "").lower() for op in ops] != ["x,y,z"]:
            return None
        species = block["_atom_site_type_symbol"]
        occupancy = block.get("_atom_site_occupancy", ["1"] * len(species))
        if any(abs(str2float(o) - 1.0) > 1e-6 for o in occupancy):
            return None
        lattice = Lattice.from_parameters(*(str2float(block[f"_cell_length_{axis}"]) for axis in "abc"),
                                          *(str2float(block[f"_cell_angle_{angle}"]) for angle in ("alpha", "beta", "gamma")))
        coords = [[str2float(block[f"_atom_site_fract_{axis}"][i]) for axis in "xyz"] for i in range(len(species))]
        return Structure(lattice, species, coords)
    except Exception:  # noqa: BLE001 - anything unexpected: not a plain P1 block, let the full parser decide
        return None


def _cif_block_name(name: str) -> str:
    return re.sub(r"\s+", "_", name.strip())[:74]


def structure_to_cif(structure: Structure, name: str | None = None) -> str:
    """CIF text (P1, 8 decimals, pymatgen's CifWriter) with data block ``data_<name>`` (default: reduced formula)."""
    writer = CifWriter(structure)
    if name is not None:
        block_name = _cif_block_name(name)
        if not block_name:
            raise ValueError("CIF data block name is empty")
        (block,) = writer.cif_file.data.values()
        block.header = block_name
    return str(writer)


def _split_cif_blocks(text: str) -> list[str]:
    """Data blocks (each starting at its ``data_`` line), split as pymatgen's CifFile does but keeping duplicates."""
    return [f"data_{part}" for part in re.split(r"^\s*data_", f"x\n{text}", flags=re.MULTILINE)[1:]]


def read_cif(path: str | os.PathLike, *, require_ordered: bool = True, frac_tolerance: float = DEFAULT_FRAC_TOLERANCE) -> ReadResult:
    """All structures of a CIF file (one per data block), with an error per block that fails.

    Raises:
        FileNotFoundError: the file does not exist (an empty or block-less file gives a file-level ReadError).
        RefusedFileError: not a regular file, or above the size limit (crystalgen.data.user_files).
    """
    source = str(path)
    text = read_text(Path(path))
    if not text.strip():
        return ReadResult([], [ReadError(source, None, f"{MALFORMED_CIF}: file is empty")])
    blocks = _split_cif_blocks(text)
    if not blocks:
        return ReadResult([], [ReadError(source, None, f"{MALFORMED_CIF}: no CIF data block (a line starting with "
                                                       "'data_') found")])
    records, errors = [], []
    for index, block in enumerate(blocks):
        name = block.split(maxsplit=1)[0][len("data_"):]
        try:
            structure = _parse_cif_block(block, source, index, require_ordered, frac_tolerance)
        except CrystalReadError as exc:
            detail = exc.reason[len(exc.kind) + 2:]
            errors.append(ReadError(source, index, f"{exc.kind}: data block '{name}': {detail}", exc.kind))
            continue
        records.append(FileEntry(structure, source, index, {"name": name}))
    return ReadResult(records, errors)


def _as_list(structures: Structure | Sequence[Structure]) -> list[Structure]:
    return [structures] if isinstance(structures, Structure) else list(structures)


def write_cif(path: str | os.PathLike, structures: Structure | Sequence[Structure], names: Sequence[str] | None = None) -> Path:
    """Write one or more structures to one CIF file, one data block each (written atomically).

    Block names default to the reduced formula for a single structure and ``<formula>_<i>`` for a list; given names
    must be unique (other readers, pymatgen's among them, keep only one block per name).
    """
    items = _as_list(structures)
    if names is None:
        names = [items[0].reduced_formula] if isinstance(structures, Structure) else [f"{s.reduced_formula}_{i}" for i, s in enumerate(items)]
    names = [_cif_block_name(n) for n in names]
    if len(names) != len(items):
        raise ValueError(f"write_cif: {len(items)} structures but {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError("write_cif: data block names must be unique")
    return replace_text(path, "".join(structure_to_cif(s, n) for s, n in zip(items, names)))


# ------------------------------------------------------------------------------------------------------------- extxyz


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _frame_to_record(chunk: str, source: str, index: int, require_ordered: bool) -> FileEntry:
    atoms = cast(Atoms, ase.io.read(io.StringIO(chunk), format="extxyz", index=0))  # index=0: one frame
    if not atoms.pbc.all() or abs(atoms.cell.volume) == 0:
        raise ValueError("frame has no periodic 3D cell (needs Lattice=\"...\" with pbc \"T T T\")")
    info = {key: _plain(value) for key, value in atoms.info.items()}
    if atoms.calc is not None:  # ASE moves energy/stress-like keys into a calculator; put them back
        info.update({key: _plain(value) for key, value in atoms.calc.results.items() if np.ndim(value) < 2})
    if "material_id" in info:
        info["material_id"] = str(info["material_id"])
    structure = Structure(Lattice(atoms.cell.array), atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True)
    try:
        check_structure(structure)
    except PhysicalProblem as exc:
        raise CrystalReadError(source, str(exc), index, kind=exc.kind) from None
    if require_ordered:
        try:
            check_ordered(structure)
        except InvalidCrystalError as exc:
            raise CrystalReadError(source, str(exc), index, kind=ordering_kind(exc)) from exc
    return FileEntry(structure, source, index, info)


def read_extxyz(path: str | os.PathLike, *, require_ordered: bool = True) -> ReadResult:
    """All frames of an extended-XYZ file as periodic structures, with an error per frame that fails.

    A frame whose atom-count line is unreadable, or that is cut short, ends the reading (frame boundaries are
    unknown after it) and is reported with its line number. Info values are parsed by ASE (numbers become int/float,
    T/F become bools); ``material_id`` is always returned as a string.
    """
    source = str(path)
    lines = read_text(Path(path)).splitlines(keepends=True)
    if not any(line.strip() for line in lines):
        return ReadResult([], [ReadError(source, None, f"{MALFORMED_EXTXYZ}: file is empty", MALFORMED_EXTXYZ)])
    records, errors = [], []
    start, index = 0, 0
    while start < len(lines):
        if not lines[start].strip():
            start += 1
            continue
        count = lines[start].strip()
        if not re.fullmatch(r"\d+", count):
            errors.append(ReadError(source, index, f"{MALFORMED_EXTXYZ}: line {start + 1}: expected the atom count of a "
                                                   f"frame, got {cut(count)!r}; rest of file skipped", MALFORMED_EXTXYZ))
            break
        end = start + 2 + int(count)
        if end > len(lines):
            errors.append(ReadError(source, index, f"{MALFORMED_EXTXYZ}: line {start + 1}: frame of {cut(count)} atoms is "
                                                   "cut short by the end of the file", MALFORMED_EXTXYZ))
            break
        try:
            records.append(_frame_to_record("".join(lines[start:end]), source, index, require_ordered))
        except CrystalReadError as exc:
            detail = exc.reason[len(exc.kind) + 2:]
            errors.append(ReadError(source, index, f"{exc.kind}: line {start + 1}: {detail}", exc.kind))
        except Exception as exc:  # ASE and pymatgen raise many types on malformed frames
            errors.append(ReadError(source, index, f"{MALFORMED_EXTXYZ}: line {start + 1}: {type(exc).__name__}: "
                                                   f"{exc}", MALFORMED_EXTXYZ))
        start, index = end, index + 1
    return ReadResult(records, errors)


def write_extxyz(
    path: str | os.PathLike, structures: Structure | Sequence[Structure], infos: Sequence[Mapping[str, Any]] | None = None
) -> Path:
    """Write ordered structures as extxyz frames (lattice matrix, species, Cartesian positions in Angstrom, pbc),
    each with its ``infos[i]`` as key=value pairs (e.g. ``{"material_id": "mp-1", "band_gap": 1.2}``)."""
    items = _as_list(structures)
    infos = list(infos) if infos is not None else [{} for _ in items]
    if len(infos) != len(items):
        raise ValueError(f"write_extxyz: {len(items)} structures but {len(infos)} info dicts")
    frames = []
    for i, (structure, info) in enumerate(zip(items, infos)):
        try:
            check_ordered(structure)
        except InvalidCrystalError as exc:
            raise InvalidCrystalError(f"write_extxyz: structure {i}: {exc}") from exc
        numbers = [site.specie.Z for site in structure]
        frames.append(Atoms(numbers=numbers, positions=structure.cart_coords, cell=structure.lattice.matrix, pbc=True, info=dict(info)))
    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    return replace_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------------- dispatch


def read_crystals(path: str | os.PathLike, *, require_ordered: bool = True) -> ReadResult:
    """Read a CIF (``.cif``) or extended-XYZ (``.extxyz``, ``.xyz``) file by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in CIF_SUFFIXES:
        return read_cif(path, require_ordered=require_ordered)
    if suffix in EXTXYZ_SUFFIXES:
        return read_extxyz(path, require_ordered=require_ordered)
    raise ValueError(f"{path}: unknown crystal file type {suffix!r}; expected one of {CIF_SUFFIXES + EXTXYZ_SUFFIXES}")
