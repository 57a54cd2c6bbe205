"""Voronoi faces of every site of a crystal, as pymatgen's ``VoronoiNN`` sees them (the neighbours within 7 A).

pymatgen tessellates the whole point cloud within ``search_cutoff`` of the site with ``scipy.spatial.Voronoi`` and
then walks every ridge in Python (~3-5 ms per site). Only the cell of the central site matters, and that cell is
the polar dual of the convex hull of the points ``2 p / |p|^2`` (p: neighbour position relative to the site, A):
each hull vertex is a neighbour with a face, each hull facet ``n.x + c = 0`` a cell vertex ``-n / c``. The hull of
the neighbours within the same cutoff gives the same cell, so the same faces, solid angles and areas (to rounding).

Anything this shortcut cannot reproduce exactly is reported as ``None`` for the site, and the caller falls back to
pymatgen for the crystal: an unbounded cell (pymatgen then retries with a doubled cutoff), a qhull failure, or two
atoms on the same spot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

SEARCH_CUTOFF = 7.0  # A, CrystalNN's default search_cutoff, which matminer's preset keeps
_COINCIDENT = 1e-6  # A: closer neighbours make qhull's and pymatgen's handling of the duplicate unpredictable
_BOUNDED = 1e-10  # facet offsets closer to 0 mean the origin is on the hull: an (almost) unbounded cell


@dataclass(frozen=True)
class SiteFaces:
    """The Voronoi faces of one site: per face the neighbour's index in the crystal, vector (A), solid angle, area."""

    neighbour: np.ndarray  # (F,) int, site index in the crystal
    vector: np.ndarray  # (F, 3) A, neighbour position minus site position
    solid_angle: np.ndarray  # (F,) sr
    area: np.ndarray  # (F,) A^2


def neighbour_shells(lattice: np.ndarray, frac: np.ndarray, cutoff: float = SEARCH_CUTOFF) -> tuple[np.ndarray, np.ndarray]:
    """All periodic images within ``cutoff`` (A) of every site: (vectors (N, M, 3) A, neighbour index (N, M)).

    Positions are Cartesian ``frac @ lattice`` (rows of ``lattice`` are the cell vectors); padded entries have an
    infinite length. The site itself (vector 0) is excluded.
    """
    n_sites = len(frac)
    wrapped = frac - np.floor(frac)
    reciprocal = np.linalg.inv(lattice).T  # rows: reciprocal vectors without 2 pi
    reach = np.ceil(cutoff * np.linalg.norm(reciprocal, axis=1)).astype(int) + 1
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    shifts = grid @ lattice  # (I, 3)
    cart = wrapped @ lattice
    delta = cart[None, :, :] - cart[:, None, :]  # (N, N, 3): site j minus site i in the home cell
    vectors = delta[:, :, None, :] + shifts[None, None, :, :]  # (N, N, I, 3)
    lengths = np.linalg.norm(vectors, axis=-1)
    within = (lengths <= cutoff) & (lengths > 0)
    counts = within.reshape(n_sites, -1).sum(axis=1)
    width = int(counts.max()) if n_sites else 0
    out_vec = np.full((n_sites, width, 3), np.inf)
    out_idx = np.zeros((n_sites, width), dtype=np.int64)
    index = np.broadcast_to(np.arange(n_sites)[None, :, None], lengths.shape)
    for i in range(n_sites):
        keep = within[i]
        out_vec[i, : counts[i]] = vectors[i][keep]
        out_idx[i, : counts[i]] = index[i][keep]
    return out_vec, out_idx


def site_faces(vectors: np.ndarray, neighbours: np.ndarray) -> SiteFaces | None:
    """Voronoi faces of the origin among ``vectors`` (M, 3) A; None where pymatgen's path must decide (see module)."""
    lengths_sq = np.einsum("ij,ij->i", vectors, vectors)
    if len(vectors) < 4 or lengths_sq.min() < _COINCIDENT**2:
        return None
    dual = 2.0 * vectors / lengths_sq[:, None]
    try:
        hull = ConvexHull(dual)
    except QhullError:
        return None
    normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
    if offsets.max() > -_BOUNDED:
        return None
    cell_vertices = normals / -offsets[:, None]  # (T, 3) A, one per (triangulated) hull facet
    # Incidence: each hull triangle gives its cell vertex to the faces of its three dual points.
    face_of = hull.simplices.reshape(-1)
    vertex_of = np.repeat(np.arange(len(cell_vertices)), 3)
    faces, face_slot = np.unique(face_of, return_inverse=True)
    axis = vectors[faces] / np.sqrt(lengths_sq[faces])[:, None]
    # An in-plane frame per face, to order its vertices by angle (the polygon is convex).
    helper = np.where(np.abs(axis[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(axis, e1)
    points = cell_vertices[vertex_of]
    # Angles around the mean of the face's vertices, which is inside the face (the foot of the perpendicular from
    # the site, p / 2, need not be: a small face can lie beside it).
    centre = np.stack([np.bincount(face_slot, points[:, d]) for d in range(3)], axis=1) / np.bincount(face_slot)[:, None]
    relative = points - centre[face_slot]
    angle = np.arctan2(np.einsum("ij,ij->i", relative, e2[face_slot]), np.einsum("ij,ij->i", relative, e1[face_slot]))
    order = np.lexsort((angle, face_slot))
    slot, points = face_slot[order], points[order]
    starts = np.searchsorted(slot, np.arange(len(faces)))
    # Fan triangles (v0, v_t, v_t+1) of every face, as pymatgen's solid_angle and vol_tetra build them.
    a = points[starts[slot]]
    b = points
    c = np.empty_like(points)
    c[:-1] = points[1:]
    fan = np.ones(len(points), dtype=bool)
    ends = np.append(starts[1:], len(points)) - 1
    fan[ends] = False
    fan[starts] = False
    c[~fan] = b[~fan]  # no triangle: zero contribution below
    triple = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    na, nb, nc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    denominator = na * nb * nc + nc * np.einsum("ij,ij->i", a, b) + nb * np.einsum("ij,ij->i", a, c) + na * np.einsum("ij,ij->i", b, c)
    triangle_angle = np.where(fan, 2.0 * np.arctan2(triple, denominator), 0.0)
    triangle_area = np.where(fan, 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1), 0.0)
    solid_angle = np.add.reduceat(triangle_angle, starts)
    area = np.add.reduceat(triangle_area, starts)
    return SiteFaces(neighbours[faces], vectors[faces], solid_angle, area)
