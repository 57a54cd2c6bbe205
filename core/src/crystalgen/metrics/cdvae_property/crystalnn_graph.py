"""CrystalNN bond graphs as CDVAE built them for its property models (``cdvae/common/data_utils.py``).

Per crystal (``build_crystal`` + ``build_crystal_graph``): Niggli-reduce the cell (``niggli: true``,
``primitive: false`` in the hparams), find the bonds with pymatgen's CrystalNN with CDVAE's settings
(``distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False``) through a StructureGraph, whose edge set
is the union of every site's CrystalNN neighbours, one undirected edge per (i, j, image); then emit both
directions. CrystalNN is the slow part (tens of ms per small crystal), so :func:`crystalnn_graphs` spreads it over
worker processes.

Lattice: the property model sees the real cell. The ``lattice_scale_method: scale_length`` hparam only concerns
CDVAE's ``scaled_lattice`` target (lengths / N^(1/3)), never the property model's input.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure


@dataclass(frozen=True)
class CrystalGraph:
    """One crystal's CrystalNN graph in CDVAE's convention (numpy, ready to batch).

    lattice (3, 3) rows in Angstrom; frac_coords (N, 3); atom_types (N,) Z; edge_index (2, E) rows
    (source j, target i); cell_offsets (E, 3) integer image of j, both directions present.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atom_types: np.ndarray
    edge_index: np.ndarray
    cell_offsets: np.ndarray


def _crystal_nn():
    from pymatgen.core.local_env import CrystalNN

    return CrystalNN(distance_cutoffs=None, x_diff_weight=-1, porous_adjustment=False)


def cdvae_cell(structure: Structure, niggli: bool = True, primitive: bool = False) -> Structure:
    """The cell CDVAE graphs: optional primitive cell, then Niggli reduction (``build_crystal``)."""
    if primitive:
        structure = structure.get_primitive_structure()
    if niggli:
        structure = structure.get_reduced_structure()
    return structure


def crystalnn_graph(structure: Structure, niggli: bool = True, primitive: bool = False) -> CrystalGraph:
    """CDVAE's CrystalNN graph of one ordered structure (raises on structures CrystalNN cannot handle)."""
    from pymatgen.core.graphs import StructureGraph

    cell = cdvae_cell(structure, niggli, primitive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing radii; it falls back as CDVAE's did
        graph = StructureGraph.from_local_env_strategy(cell, _crystal_nn())
    edges, offsets = [], []
    for i, j, image in graph.graph.edges(data="to_jimage"):
        edges += [(j, i), (i, j)]  # bond i -> image of j, and its reverse
        offsets += [image, tuple(-x for x in image)]
    return CrystalGraph(
        lattice=np.asarray(cell.lattice.matrix, dtype=np.float64),
        frac_coords=np.asarray(cell.frac_coords, dtype=np.float64),
        atom_types=np.asarray(cell.atomic_numbers, dtype=np.int64),
        edge_index=np.asarray(edges, dtype=np.int64).reshape(-1, 2).T.copy(),
        cell_offsets=np.asarray(offsets, dtype=np.int64).reshape(-1, 3),
    )


def _job(structure: Structure, niggli: bool, primitive: bool) -> tuple | str:
    """Plain arrays to ship to a worker (cheaper to pickle than a Structure), or why there are none."""
    if not structure.is_ordered:
        return "disordered structure: CrystalNN graphs need one element per site"
    return np.asarray(structure.lattice.matrix), list(structure.atomic_numbers), np.asarray(structure.frac_coords), niggli, primitive


def _graph_or_error(args: tuple | str) -> CrystalGraph | str:
    if isinstance(args, str):
        return args
    lattice, numbers, frac, niggli, primitive = args
    try:
        return crystalnn_graph(Structure(Lattice(lattice), numbers, frac), niggli, primitive)
    except Exception as exc:  # a generated crystal CrystalNN cannot handle gets NaN, not a crash
        return f"{type(exc).__name__}: {exc}"


def _graphs_of_chunk(jobs: Sequence[tuple | str]) -> list[CrystalGraph | str]:
    return [_graph_or_error(job) for job in jobs]


def crystalnn_graphs(
    structures: Sequence[Structure],
    *,
    niggli: bool = True,
    primitive: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> list[CrystalGraph | str]:
    """CDVAE CrystalNN graphs in input order; a failed structure gives the error text instead of a graph.

    ``workers`` processes (default: all available cores) share the work through crystalgen.metrics.parallel.
    """
    from crystalgen.metrics.parallel import map_chunks

    jobs = [_job(s, niggli, primitive) for s in structures]
    return map_chunks(_graphs_of_chunk, jobs, workers=workers, chunk_size=8, desc="CrystalNN graphs", progress=progress)
