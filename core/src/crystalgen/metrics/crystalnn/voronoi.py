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
_BLOCK_BYTES = 64 * 2**20  # working memory of one block of the neighbour search


@dataclass(frozen=True)
class Faces:
    """The Voronoi faces of every site of a crystal, grouped by site (``site`` is non-decreasing)."""

    site: np.ndarray  # (F,) int, the site whose cell has the face
    neighbour: np.ndarray  # (F,) int, site index of the neighbour across the face
    vector: np.ndarray  # (F, 3) A, neighbour position minus site position
    solid_angle: np.ndarray  # (F,) sr
    area: np.ndarray  # (F,) A^2
    exact: np.ndarray  # (N,) bool per site; False: this shortcut cannot promise pymatgen's cell (no faces given)


def neighbour_shells(lattice: np.ndarray, frac: np.ndarray, cutoff: float = SEARCH_CUTOFF):
    """All periodic images within ``cutoff`` (A) of every site, the site itself excluded, grouped by site.

    Returns (site (M,), neighbour index (M,), vector (M, 3) A = neighbour minus site, Cartesian ``frac @ lattice``,
    rows of ``lattice`` being the cell vectors).
    """
    wrapped = frac - np.floor(frac)
    reciprocal = np.linalg.inv(lattice).T  # rows: reciprocal vectors without 2 pi
    reach = np.ceil(cutoff * np.linalg.norm(reciprocal, axis=1)).astype(int) + 1
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    cart = wrapped @ lattice
    images = grid @ lattice  # (I, 3)
    # |delta + image| <= cutoff needs |image| <= cutoff + |delta| (|delta| at most the diagonal of the sites'
    # bounding box): the grid's corners beyond that never count (about half of it), and dropping them keeps
    # np.nonzero's order of the rest.
    spread = float(np.linalg.norm(cart.max(axis=0) - cart.min(axis=0))) if len(cart) else 0.0
    near = np.einsum("ix,ix->i", images, images) <= (cutoff + spread + 1e-6) ** 2
    grid, images = grid[near], images[near]
    # Blocks of sites, so that the (block, N, I, 3) candidate array stays within _BLOCK_BYTES whatever the cell size
    # (a 2,048-atom cell would otherwise need ~12 GB at once); np.nonzero's row order makes the result the same.
    rows = max(1, _BLOCK_BYTES // max(1, len(cart) * len(images) * 4 * 8))
    home = ~grid.any(axis=1)  # (I,) the zero image
    found = []
    for start in range(0, len(cart), rows):
        delta = cart[None, :, :] - cart[start:start + rows, None, :]  # (b, N, 3): site j minus site i, home cell
        vectors = delta[:, :, None, :] + images[None, None, :, :]  # (b, N, I, 3)
        lengths_sq = np.einsum("abix,abix->abi", vectors, vectors)
        # Only the site itself in the home cell is left out: another atom on the same spot stays, at distance 0,
        # so that the caller sees the coincidence (dropping every zero-length vector hid it).
        itself = (np.arange(start, start + len(delta))[:, None] == np.arange(len(cart))[None, :])[:, :, None] & home
        site, neighbour, image = np.nonzero((lengths_sq <= cutoff * cutoff) & ~itself)
        found.append((site + start, neighbour, vectors[site, neighbour, image]))
    if not found:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros((0, 3))
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _cell(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(hull triangles (T, 3) into ``points``, cell vertices (T, 3) A) of the origin's cell, or None (see module)."""
    lengths_sq = np.einsum("ij,ij->i", points, points)
    if len(points) < 4 or lengths_sq.min() < _COINCIDENT**2:
        return None
    try:
        hull = ConvexHull(2.0 * points / lengths_sq[:, None])
    except QhullError:
        return None
    normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
    if offsets.max() > -_BOUNDED:
        return None
    return hull.simplices, normals / -offsets[:, None]


def crystal_faces(lattice: np.ndarray, frac: np.ndarray, cutoff: float = SEARCH_CUTOFF) -> Faces:
    """The Voronoi faces of every site (one qhull call per site, the geometry for all faces at once)."""
    site, neighbour, vectors = neighbour_shells(lattice, frac, cutoff)
    n_sites = len(frac)
    starts = np.searchsorted(site, np.arange(n_sites + 1))
    exact = np.ones(n_sites, dtype=bool)
    if len(vectors) and np.einsum("ij,ij->i", vectors, vectors).min() < _COINCIDENT**2:
        # Two atoms on (almost) the same spot: pymatgen tessellates the whole cloud with the duplicate in it, which
        # changes the cells of the sites around it too, so no site of this crystal is promised.
        exact[:] = False
        empty = np.zeros(0)
        return Faces(empty.astype(int), empty.astype(int), np.zeros((0, 3)), empty, empty, exact)
    triangles, vertices = [], []
    for i in range(n_sites):
        cell = _cell(vectors[starts[i]:starts[i + 1]])
        if cell is None:
            exact[i] = False
            continue
        triangles.append(cell[0] + starts[i])  # indices into the crystal's point list
        vertices.append(cell[1])
    if not triangles:
        empty = np.zeros(0)
        return Faces(empty.astype(int), empty.astype(int), np.zeros((0, 3)), empty, empty, exact)
    cell_vertices = np.concatenate(vertices)  # (T, 3) A, relative to the triangle's site
    # Incidence: each hull triangle gives its cell vertex to the faces of its three points.
    point_of = np.concatenate(triangles).reshape(-1)
    vertex_of = np.repeat(np.arange(len(cell_vertices)), 3)
    faces, slot = np.unique(point_of, return_inverse=True)  # faces sorted by point, hence by site
    axis = vectors[faces] / np.linalg.norm(vectors[faces], axis=1, keepdims=True)
    # An in-plane frame per face, to order its vertices by angle (the polygon is convex).
    helper = np.where(np.abs(axis[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(axis, e1)
    points = cell_vertices[vertex_of]
    # Angles around the mean of the face's vertices, which is inside the face (the foot of the perpendicular from
    # the site, p / 2, need not be: a small face can lie beside it).
    centre = np.stack([np.bincount(slot, points[:, d]) for d in range(3)], axis=1) / np.bincount(slot)[:, None]
    relative = points - centre[slot]
    angle = np.arctan2(np.einsum("ij,ij->i", relative, e2[slot]), np.einsum("ij,ij->i", relative, e1[slot]))
    order = np.lexsort((angle, slot))
    slot, points = slot[order], points[order]
    first = np.searchsorted(slot, np.arange(len(faces)))
    # Fan triangles (v0, v_t, v_t+1) of every face, as pymatgen's solid_angle and vol_tetra build them.
    a, b = points[first[slot]], points
    c = np.empty_like(points)
    c[:-1] = points[1:]
    fan = np.ones(len(points), dtype=bool)
    fan[np.append(first[1:], len(points)) - 1] = False
    fan[first] = False
    c[~fan] = b[~fan]  # no triangle: zero contribution below
    triple = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    na, nb, nc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    denominator = (na * nb * nc + nc * np.einsum("ij,ij->i", a, b) + nb * np.einsum("ij,ij->i", a, c)
                   + na * np.einsum("ij,ij->i", b, c))
    solid_angle = np.add.reduceat(np.where(fan, 2.0 * np.arctan2(triple, denominator), 0.0), first)
    area = np.add.reduceat(np.where(fan, 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1), 0.0), first)
    return Faces(site[faces], neighbour[faces], vectors[faces], solid_angle, area, exact)
