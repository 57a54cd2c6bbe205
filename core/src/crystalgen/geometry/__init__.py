"""Periodic geometry in pure torch: lattice maths and periodic graphs (rows of a lattice are vectors, Angstrom)."""

# Lattice maths: parameters <-> matrices, cell choice, SymmCD's k form, GemsDiff's gl(3) form.
from crystalgen.geometry.gl3_lattice import (
    GL3_LAMBDA,
    algebra_to_gl3_coords,
    gl3_basis,
    gl3_coords_to_algebra,
    gl3_coords_to_lattice,
    lattice_to_gl3_coords,
    lattice_volume_from_gl3,
)
from crystalgen.geometry.lattice import (
    InvalidLatticeError,
    lattice_matrix_to_params,
    lattice_matrix_validity,
    lattice_params_to_matrix,
    lattice_params_validity,
    scale_lengths,
    standard_orientation,
    unscale_lengths,
)
from crystalgen.geometry.log_lattice import (
    HEXAGONAL_K1,
    apply_k_mask,
    crystal_system,
    k_to_lattice,
    lattice_to_k,
    log_lattice_basis,
    space_group_k_mask,
    space_group_k_masks,
)

# Periodic graphs: neighbour lists with image offsets, minimum images, triplets (conventions in neighbors.py).
from crystalgen.geometry.minimum_image import minimum_image
from crystalgen.geometry.neighbors import (
    PeriodicGraph,
    crystal_index,
    edge_vectors,
    knn_graph_pbc,
    radius_graph_pbc,
    reverse_edges,
)
from crystalgen.geometry.niggli import niggli_reduce, with_standard_orientation
from crystalgen.geometry.triplets import Triplets, triplet_angles, triplets
