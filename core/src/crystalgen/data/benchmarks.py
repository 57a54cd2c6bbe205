"""Facts about the CDVAE benchmark datasets (Xie et al., 2022): official files, sizes, properties, identities.

The official files are ``data/<name>/<split>.csv`` of txie-93/cdvae at commit ``CDVAE_COMMIT``; ``BLOB_IDS`` are
their git blob ids (SHA-1 of ``b"blob <size>\\0" + content``) in that commit's tree, so a downloaded or local file
is the official one exactly when its blob id matches. Loaders compare a local file with these facts and say so
when it is partial (fewer rows) or lacks property columns, instead of assuming either.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CDVAE_COMMIT = "f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    rows: dict[str, int]  # official rows per split
    property_columns: tuple[str, ...]  # numeric property columns of the official files
    default_property: str
    blob_ids: dict[str, str]
    #: the atom cap of the dataset's published training configs (CDVAE's conf/data/*.yaml ``max_atoms``), which
    #: size-dependent heads (number of atoms, per-element counts) are built for
    max_atoms: int


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "perov_5",
            "Perov-5: 18,928 perovskites ABX3, 5 atoms per cell, 56 elements (Castelli et al., 2012)",
            {"train": 11356, "val": 3787, "test": 3785},
            ("heat_all", "heat_ref", "dir_gap", "ind_gap"),
            "heat_ref",
            {"train": "0769074b5d51d293b765c4371b8f55c468c9c9f2", "val": "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f",
             "test": "d3c5d5af4b27a2a139149f2bb73c8a3dba9d8ac1"},
            20,
        ),
        Benchmark(
            "carbon_24",
            "Carbon-24: 10,153 carbon structures, 6-24 atoms per cell, from AIRSS at 10 GPa (Pickard, 2020)",
            {"train": 6091, "val": 2032, "test": 2030},
            ("energy_per_atom",),
            "energy_per_atom",
            {"train": "5e7ae970fbad8ddc46b6963e8cd6e425f11783a6", "val": "b3e29b927883642426ca1d9632d00359b412742b",
             "test": "9beca843fde489de1fe288b32f9e3ff710d42803"},
            24,
        ),
        Benchmark(
            "mp_20",
            "MP-20: 45,231 experimentally known materials with at most 20 atoms per cell, 89 elements (Materials Project)",
            {"train": 27136, "val": 9047, "test": 9046},
            ("formation_energy_per_atom", "band_gap", "e_above_hull"),
            "formation_energy_per_atom",
            {"train": "b1c9d498565ac2fd8d075a51ff2ef5e51ba6c21f", "val": "7efe4d7ebeb4f460ceaad35e5326c42111d9c9a1",
             "test": "5dc643041df53f5ce4970a79930ad262b4f07acd"},
            20,
        ),
    ]
}


def data_root() -> Path:
    """Where benchmark folders live: ``$CRYSTALGEN_DATA``, else ``$XDG_DATA_HOME/crystalgen`` (default
    ``~/.local/share/crystalgen``), which is also where ``crystalgen data fetch`` writes by default."""
    env = os.environ.get("CRYSTALGEN_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "crystalgen"


def data_root_origin() -> str:
    return "CRYSTALGEN_DATA" if os.environ.get("CRYSTALGEN_DATA") else "the default folder, CRYSTALGEN_DATA is not set"


def git_blob_id(path: Path) -> str:
    """Git's object id of a file's content (what ``git hash-object`` prints)."""
    from crystalgen.data.user_files import open_checked

    with open_checked(path, text=False) as fh:
        h = hashlib.sha1(f"blob {os.fstat(fh.fileno()).st_size}\0".encode())
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
