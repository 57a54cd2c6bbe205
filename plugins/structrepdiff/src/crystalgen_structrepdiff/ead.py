"""The embedded atom density (EAD) descriptor (Zhang, Hu & Jiang 2019; paper eq. 2-3 and appendix A.2), in torch.

For every atom i and every (l, eta, mu) with l <= lmax:

    phi_i = sum_{lx+ly+lz=l} l! / (lx! ly! lz!) * rho_i(lx, ly, lz)^2
    rho_i(lx, ly, lz) = sum_{j, images} Z_j * x_ij^lx y_ij^ly z_ij^lz * exp(-eta (r_ij - mu)^2) * f_c(r_ij)

with (x_ij, y_ij, z_ij) the Cartesian vector from atom i to an image of atom j (Angstrom, every periodic image within
the cutoff, the atom's own images included, the zero-offset self pair excluded), Z_j the neighbour's atomic number
and f_c(r) = (cos(pi r / r_c) + 1) / 2 the cosine cutoff (PyXtal-FF's EAD uses the same). Squaring the densities
and summing over the orientations of each l is what makes phi rotation invariant; the sum over neighbours makes it
permutation invariant; only differences of positions enter, so it is translation and cell-choice invariant.

How the orientations combine into the invariant of block l is set by ``angular``:

* ``per_degree`` (eq. 2 as printed): phi_i^(l) sums the orientations of degree exactly l, as above.
* ``cumulative`` (PyXtal-FF's EAD, which MatDeepLearn's, the descriptor code of the paper's group, follows):
  phi_i^(l) = l! / r_c^(2l) * sum over the orientations of degree <= l of rho^2 / (lx! ly! lz!). For lmax = 1 the
  second block is (phi^(0) + |p|^2) / r_c^2, so the radial s-densities dominate every block. With a plain L1 this
  is the loss landscape in which basin hopping finds the true structure (docs/structrepdiff.md, "Descriptor
  convention"), which the per-degree form, dominated by the p-densities, does not.

Features are laid out (l, eta, mu) with mu fastest. The densities are linear in the radial basis
g_k(r) = exp(-eta (r - mu)^2) f_c(r), so they are computed in two ways:

* ``exact``: g_k evaluated for every pair (P x K exponentials);
* ``table``: g_k tabulated once on a fine radial grid and interpolated per pair with cubic Catmull-Rom weights,
  so that rho = H @ table, where H deposits each pair's angular weights on 4 grid rows. The K exponentials per
  pair become one matrix product over the grid, tens of times faster at the paper's 20 A cutoff and 603 radial
  functions; at the default 0.01 A spacing each basis function is read to within 1e-4 of its peak and the pooled
  features to within 5e-4 of their largest value (tested).

Both are differentiable with respect to the pair vectors, hence to Cartesian positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from crystalgen_structrepdiff.pairs import lengths

METHODS = ("table", "exact")
#: How orientations combine into the invariant of each l (see the module docstring).
ANGULAR = ("per_degree", "cumulative")


@dataclass(frozen=True)
class EADParameters:
    """Hyper-parameters of the descriptor (paper appendix A.3.1: lmax 1, mu 0..20 by 0.1, eta 1/20/90, r_c 20 A).

    Attributes:
        lmax: largest total angular momentum L.
        mus: Gaussian centres mu in Angstrom.
        etas: Gaussian widths eta in 1/Angstrom^2.
        cutoff: r_c in Angstrom.
        angular: ``per_degree`` (eq. 2 as printed) or ``cumulative`` (PyXtal-FF / MatDeepLearn).
    """

    lmax: int
    mus: tuple[float, ...]
    etas: tuple[float, ...]
    cutoff: float
    angular: str = "per_degree"

    def __post_init__(self) -> None:
        if self.lmax < 0:
            raise ValueError(f"EAD lmax must be >= 0, got {self.lmax}")
        if not self.mus or not self.etas:
            raise ValueError("EAD needs at least one mu and one eta")
        if any(eta <= 0 for eta in self.etas):
            raise ValueError(f"EAD etas must be positive, got {self.etas}")
        if self.cutoff <= 0:
            raise ValueError(f"EAD cutoff must be positive, got {self.cutoff}")
        if self.angular not in ANGULAR:
            raise ValueError(f"EAD angular must be one of {', '.join(ANGULAR)}, got {self.angular!r}")

    @classmethod
    def from_grid(cls, lmax: int, mu_start: float, mu_stop: float, mu_step: float, etas: tuple[float, ...] | list[float],
                  cutoff: float, angular: str = "per_degree") -> EADParameters:
        """mu = mu_start, mu_start + mu_step, ..., mu_stop (inclusive, to rounding)."""
        if mu_step <= 0 or mu_stop < mu_start:
            raise ValueError(f"EAD mu grid needs mu_step > 0 and mu_stop >= mu_start, got {mu_start}..{mu_stop} by {mu_step}")
        count = int(math.floor((mu_stop - mu_start) / mu_step + 1e-6)) + 1
        mus = tuple(round(mu_start + k * mu_step, 10) for k in range(count))
        return cls(int(lmax), mus, tuple(float(e) for e in etas), float(cutoff), str(angular))

    @property
    def num_radial(self) -> int:
        """K = number of (eta, mu) radial functions."""
        return len(self.etas) * len(self.mus)

    @property
    def num_features(self) -> int:
        """N_e = (lmax + 1) * K features per atom."""
        return (self.lmax + 1) * self.num_radial


def cosine_cutoff(r: Tensor, cutoff: float) -> Tensor:
    """f_c(r) = (cos(pi r / r_c) + 1) / 2 for r < r_c, else 0: smooth (zero slope) at the cutoff."""
    inside = r < cutoff
    return torch.where(inside, 0.5 * (torch.cos(math.pi * r / cutoff) + 1.0), torch.zeros_like(r))


def radial_basis(r: Tensor, params: EADParameters) -> Tensor:
    """g_k(r) = exp(-eta (r - mu)^2) f_c(r) for distances r (P,) in Angstrom -> (P, K), k = (eta, mu), mu fastest."""
    eta = torch.tensor(params.etas, dtype=r.dtype, device=r.device).repeat_interleave(len(params.mus))
    mu = torch.tensor(params.mus, dtype=r.dtype, device=r.device).repeat(len(params.etas))
    return torch.exp(-eta * (r.unsqueeze(-1) - mu) ** 2) * cosine_cutoff(r, params.cutoff).unsqueeze(-1)


@dataclass(frozen=True)
class Monomials:
    """The orientations (lx, ly, lz) with lx + ly + lz <= lmax and their multinomial weights l! / (lx! ly! lz!)."""

    lmax: int

    @cached_property
    def exponents(self) -> list[tuple[int, int, int]]:
        return [(lx, ly, degree - lx - ly) for degree in range(self.lmax + 1) for lx in range(degree, -1, -1) for ly in range(degree - lx, -1, -1)]

    @cached_property
    def degrees(self) -> list[int]:
        return [sum(e) for e in self.exponents]

    @cached_property
    def weights(self) -> list[float]:
        return [math.factorial(sum(e)) / (math.factorial(e[0]) * math.factorial(e[1]) * math.factorial(e[2])) for e in self.exponents]

    def __len__(self) -> int:
        return len(self.exponents)

    def evaluate(self, vec: Tensor) -> Tensor:
        """x^lx y^ly z^lz of pair vectors (3, P) -> (M, P)."""
        return torch.stack([_power_product(vec, e) for e in self.exponents])

    def vjp(self, vec: Tensor, grad: Tensor) -> Tensor:
        """sum_m grad[m] d(monomial m)/d vec for vectors (3, P) and ``grad`` (M, P) -> (3, P)."""
        out = torch.zeros_like(vec)
        for m, exponents in enumerate(self.exponents):
            for axis in range(3):
                if exponents[axis]:
                    lowered = tuple(e - (a == axis) for a, e in enumerate(exponents))
                    out[axis].addcmul_(grad[m], _power_product(vec, lowered), value=exponents[axis])
        return out

    def invariants(self, density: Tensor, angular: str, cutoff: float) -> Tensor:
        """Densities (C, M, K) -> invariants (C, lmax + 1, K).

        per_degree: phi_l = sum over orientations of degree l of l! / (lx! ly! lz!) * rho^2.
        cumulative: phi_l = l! / cutoff^(2 l) * sum over orientations of degree <= l of rho^2 / (lx! ly! lz!).
        """
        weights = density.new_tensor(self.weights)
        squared = weights[:, None] * density**2
        degree = torch.tensor(self.degrees, device=density.device)
        per_degree = density.new_zeros(density.shape[0], self.lmax + 1, density.shape[2]).index_add(1, degree, squared)
        if angular == "per_degree":
            return per_degree
        factorial = density.new_tensor([math.factorial(degree) for degree in range(self.lmax + 1)])
        scale = factorial / density.new_tensor([cutoff ** (2 * degree) for degree in range(self.lmax + 1)])
        return torch.cumsum(per_degree / factorial[:, None], dim=1) * scale[:, None]


def _power_product(vec: Tensor, exponents: tuple[int, ...]) -> Tensor:
    """x^ex y^ey z^ez of vectors (3, P), skipping the factors with exponent 0 and the powers of 1."""
    out = vec.new_ones(vec.shape[1])
    for axis, e in enumerate(exponents):
        if e:
            out = out * (vec[axis] if e == 1 else vec[axis] ** e)
    return out


class RadialTable(nn.Module):
    """The radial basis g_k tabulated at r = -h, 0, h, 2h, ... past the cutoff, read with Catmull-Rom weights.

    Catmull-Rom interpolation reproduces quadratics exactly, so its error is O(h^3 g'''); at h = 0.01 A it stays
    below 1e-4 of the peak for the paper's narrowest Gaussians (eta = 90 1/A^2, 0.075 A wide; tested).
    """

    table: Tensor

    def __init__(self, params: EADParameters, spacing: float = 0.01, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if spacing <= 0:
            raise ValueError(f"table spacing must be positive, got {spacing}")
        self.params = params
        self.spacing = float(spacing)
        rows = int(math.ceil(params.cutoff / spacing)) + 4
        r = (torch.arange(rows, dtype=torch.float64) - 1) * spacing
        basis = radial_basis(r.abs(), params)  # row 0 (r = -h) mirrors r = h: g is even in r near 0
        self.register_buffer("table", basis.to(dtype), persistent=False)
        self.bands = self._bands(basis)

    @property
    def rows(self) -> int:
        return self.table.shape[0]

    def _bands(self, basis: Tensor, width: int = 16) -> list[tuple[int, int, int, int]]:
        """(first column, end column, first row, end row) of blocks of ``width`` Gaussians of one eta, each with the
        rows where any of them exceeds 1e-12 of the peak (exp(-27)): a Gaussian 0.075 A wide needs 1.5 A of the
        20 A grid, so multiplying by these blocks alone does a quarter of the work of the dense product."""
        num_mu = len(self.params.mus)
        bands = []
        for block in range(0, basis.shape[1], num_mu):
            for first in range(block, block + num_mu, width):
                end = min(first + width, block + num_mu)
                used = (basis[:, first:end].abs() > 1e-12).any(dim=1).nonzero()
                if used.numel():
                    bands.append((first, end, int(used.min()), int(used.max()) + 1))
        return bands

    def multiply(self, H: Tensor) -> Tensor:
        """H (R, rows) @ table, block by block (see _bands)."""
        out = H.new_zeros(H.shape[0], self.table.shape[1])
        table = self.table.to(H.dtype)
        for first, end, row_first, row_end in self.bands:
            out[:, first:end] = H[:, row_first:row_end] @ table[row_first:row_end, first:end]
        return out

    def multiply_transposed(self, G: Tensor) -> Tensor:
        """G (R, K) @ table^T, block by block."""
        out = G.new_zeros(G.shape[0], self.table.shape[0])
        table = self.table.to(G.dtype)
        for first, end, row_first, row_end in self.bands:
            out[:, row_first:row_end] += G[:, first:end] @ table[row_first:row_end, first:end].T
        return out

    @staticmethod
    def taps_of(r: Tensor, spacing: float) -> tuple[Tensor, Tensor, Tensor]:
        """(first row (P,), weights (4, P), d weights / d r (4, P)) with g(r) ~ sum_q weights[q] table[first + q]
        on a table of the given spacing.

        The grid point at or below r is cell = floor(r / h), at table row cell + 1, so the four taps start at row
        ``cell``. Taps lead and pairs trail so that every per-pair product below runs over contiguous memory.
        Distances are not differentiated through here (see TabulatedDensity).
        """
        x = r / spacing
        cell = torch.floor(x)
        t = x - cell
        t2, t3 = t * t, t * t * t
        weights = torch.stack(((-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2, (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2))
        slopes = torch.stack(((-3 * t2 + 4 * t - 1) / 2, (9 * t2 - 10 * t) / 2, (-9 * t2 + 8 * t + 1) / 2, (3 * t2 - 2 * t) / 2))
        return cell.long(), weights, slopes / spacing


class TabulatedDensity(torch.autograd.Function):
    """rho[c, m, k] = sum_p [centre_p = c] z_p monomial_m(v_p) g_k(|v_p|) from pair vectors v (3, P), z_p the
    neighbour's atomic number (0 beyond the cutoff), with g read from a RadialTable.

    Forward deposits the products weights[q, p] * angular[m, p] of every pair at column centre_p * rows + first_p of
    H4[q, m] (one index_add along the pair axis), folds the taps onto their rows, H[m, c, row] =
    sum_q H4[q, m, c, row - q], and multiplies by the table (its nonzero bands only). Backward runs the same steps in
    reverse down to the pair vectors. Everything per pair is laid out (component, pair), so each product is one long
    contiguous loop; with the pair axis first, or with autograd tracing the distances and monomials, a step took
    about twice as long (docs/benchmarks.md, "StructRepDiff").
    """

    @staticmethod
    def forward(ctx, vec: Tensor, neighbour_z: Tensor, centre: Tensor, num_centres: int, table: RadialTable,
                monomials: Monomials) -> Tensor:
        rows, M, P = table.rows, len(monomials), vec.shape[1]
        r = lengths(vec)
        # Pairs beyond the cutoff get z = 0; reading them at r = 0 keeps their (unused) rows inside the table.
        inside = r < table.params.cutoff
        z = torch.where(inside, neighbour_z.to(vec.dtype), 0.0)
        first, weights, slopes = RadialTable.taps_of(torch.where(inside, r, 0.0), table.spacing)
        angular = monomials.evaluate(vec).mul_(z)  # (M, P)
        column = centre * rows + first
        products = angular.new_empty(4, M, P)
        for q in range(4):  # four (M, P) x (P,) products: a broadcast over both leading axes is several times slower
            torch.mul(angular, weights[q], out=products[q])
        H4 = angular.new_zeros(4 * M, num_centres * rows).index_add_(1, column, products.view(4 * M, P)).view(4, M, num_centres, rows)
        H = H4[0].clone()
        for q in range(1, 4):  # taps never pass the last row: r < cutoff keeps first + 3 inside the table
            H[:, :, q:] += H4[q, :, :, :-q]
        density = table.multiply(H.view(M * num_centres, rows)).view(M, num_centres, -1)
        ctx.save_for_backward(vec, z, r, angular, column, weights, slopes)
        ctx.shape = (num_centres, rows, M)
        ctx.table, ctx.monomials = table, monomials
        return density.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_density: Tensor):
        vec, z, r, angular, column, weights, slopes = ctx.saved_tensors
        num_centres, rows, M = ctx.shape
        grad_H = ctx.table.multiply_transposed(grad_density.transpose(0, 1).reshape(M * num_centres, -1)).view(M, num_centres * rows)
        grad_angular = torch.zeros_like(angular)
        grad_radial = torch.zeros_like(angular)  # d loss / d g(r_p), per monomial, through the tap slopes
        for q in range(4):  # d H4[q, m, c, row] = d H[m, c, row + q]; the taps stay inside the table
            gathered = grad_H.index_select(1, column + q)  # (M, P)
            grad_angular.addcmul_(gathered, weights[q])
            grad_radial.addcmul_(gathered, slopes[q])
        grad_r = grad_radial.mul_(angular).sum(0)
        grad_vec = ctx.monomials.vjp(vec, grad_angular.mul_(z)).addcmul_(vec, grad_r / r)
        return grad_vec, None, None, None, None, None


def atom_densities(vec: Tensor, centre: Tensor, neighbour_z: Tensor, num_centres: int, params: EADParameters,
                   monomials: Monomials, table: RadialTable | None = None, chunk: int = 4096) -> Tensor:
    """rho (C, M, K) of every centre from its pairs.

    Args:
        vec: (3, P) Cartesian vectors centre -> neighbour image, Angstrom (pairs beyond the cutoff add nothing),
            component-major like everything per pair here (see TabulatedDensity).
        centre: (P,) index of each pair's centre atom in 0..C-1.
        neighbour_z: (P,) atomic number Z_j of each pair's neighbour.
        table: interpolate the radial basis (``table`` method); None evaluates it exactly, ``chunk`` pairs at a time.
    """
    if table is not None:
        return TabulatedDensity.apply(vec, neighbour_z, centre, num_centres, table, monomials)
    r = lengths(vec)
    z = torch.where(r.detach() < params.cutoff, neighbour_z.to(vec.dtype), 0.0)
    angular = monomials.evaluate(vec) * z  # (M, P)
    M, K = len(monomials), params.num_radial
    density = vec.new_zeros(num_centres, M * K)
    for start in range(0, r.shape[0], chunk):
        part = slice(start, start + chunk)
        terms = angular[:, part].T.unsqueeze(2) * radial_basis(r[part], params).unsqueeze(1)  # (p, M, K)
        density = density.index_add(0, centre[part], terms.reshape(terms.shape[0], M * K))
    return density.view(num_centres, M, K)


def ead(vec: Tensor, centre: Tensor, neighbour_z: Tensor, num_centres: int, params: EADParameters,
        table: RadialTable | None = None) -> Tensor:
    """Per-atom EAD features (C, N_e), layout (l, eta, mu), from a pair list (see :func:`atom_densities`)."""
    monomials = Monomials(params.lmax)
    density = atom_densities(vec, centre, neighbour_z, num_centres, params, monomials, table)
    return monomials.invariants(density, params.angular, params.cutoff).reshape(num_centres, params.num_features)
