"""Reading a (generated) representation back: atom counts, the cell, then positions by gradient reconstruction.

The composition block and n give integer counts per element that sum to n (largest remainders); the six lattice
parameters give the cell (pymatgen's orientation); R_str is matched by the basin-hopping reconstruction. A
representation that cannot describe a crystal (n < 1 after rounding, no positive composition entry, an impossible
cell, a cell so dense that its reconstruction alone would exceed ``max_pairs``) is reported with its reason, never
raised. :class:`GradientReconstruction` is the registered decoder ``structrepdiff_reconstruction``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pymatgen.core import Element
from torch import Tensor

from crystalgen import (
    Condition,
    Decoded,
    Decoder,
    DecoderSpec,
    density_phrase,
    lattice_params_to_matrix,
    tensors_to_structure,
)
from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.reconstruction import LOSS_WEIGHTINGS, BasinHopping, Reconstructor, loss_weights
from crystalgen_structrepdiff.representation import VARIABLE, RepresentationLayout
from crystalgen_structrepdiff.transform import ead_parameters, plain_ead_config

DEFAULT = BasinHopping  # the search's defaults: the paper's trials, hops, iterations and hop step


def atom_counts(composition: Tensor, num_atoms: int) -> Tensor:
    """Integer counts (E,) summing to ``num_atoms`` from element fractions (E,) (Hamilton's largest remainders).

    Negative fractions count as zero; the rest are renormalised to sum to one. Ties go to the lighter element.
    """
    fractions = composition.double().clamp(min=0)
    total = float(fractions.sum())
    if total <= 0 or num_atoms < 1:
        raise ValueError("the composition block has no positive entry")
    quota = fractions / total * num_atoms
    counts = torch.floor(quota)
    remainder = quota - counts
    missing = num_atoms - int(counts.sum())
    order = torch.argsort(-remainder, stable=True)
    counts[order[:missing]] += 1
    return counts.long()


@dataclass
class CellRequest:
    """What the reconstruction needs for one crystal, read from its representation."""

    atomic_numbers: Tensor
    lattice: Tensor
    target: Tensor
    #: n as read from the representation when it exceeded the largest n seen in training (and was lowered to it)
    num_atoms_read: int | None = None


def read_cell(raw: Tensor, layout: RepresentationLayout, max_atoms: int) -> CellRequest | str:
    """Atoms, cell and R_str of one raw representation (N,), or the reason it describes no crystal."""
    if not bool(torch.isfinite(raw).all()):
        return "non-finite representation"
    n = int(round(float(raw[layout.num_atoms])))
    if n < 1:
        return f"number of atoms rounds below 1 ({float(raw[layout.num_atoms]):.2f})"
    clamped = n if n > max_atoms else None
    n = min(n, max_atoms)
    try:
        counts = atom_counts(raw[layout.composition], n)
    except ValueError as exc:
        return str(exc)
    atomic_numbers = torch.repeat_interleave(torch.arange(1, counts.numel() + 1), counts)
    params = raw[layout.lattice].double()
    matrix, valid = lattice_params_to_matrix(params[:3].unsqueeze(0), params[3:].unsqueeze(0), strict=False)
    if not bool(valid[0]):
        return "lattice parameters describe no cell (" + ", ".join(f"{v:.3g}" for v in params.tolist()) + ")"
    return CellRequest(atomic_numbers, matrix[0], raw[layout.structure], clamped)


def over_pair_cap(request: CellRequest | str, reconstructor: Reconstructor) -> CellRequest | str:
    """``request``, or the reason when its crystal alone would exceed the reconstruction's ``max_pairs`` (pairs grow
    with n^2 / V: a generated cell of absurd density would take any amount of memory), with its density."""
    if isinstance(request, str):
        return request
    n = request.atomic_numbers.numel()
    pairs = float(reconstructor.pair_estimate(torch.tensor([n]), request.lattice.unsqueeze(0))[0])
    cap = reconstructor.settings.max_pairs
    if pairs <= cap:
        return request
    mass = sum(Element.from_Z(int(z)).atomic_mass for z in request.atomic_numbers.tolist())
    volume = abs(float(torch.linalg.det(request.lattice.double())))
    return (f"over memory budget: reconstructing it would hold about {pairs:.3g} atom pairs, above "
            f"model.reconstruction.max_pairs={cap}; {n} atoms, {density_phrase(float(mass), n, volume)}")


def decode_representations(raw: Tensor, layout: RepresentationLayout, reconstructor: Reconstructor, max_atoms: int, *,
                           generator: torch.Generator | None = None) -> list[Decoded]:
    """Raw representations (B, N) -> crystals, reconstructing all readable ones in one batched call.

    ``info`` of each crystal carries the final (relative) reconstruction loss and the Adam steps spent on it.
    """
    requests = [over_pair_cap(read_cell(row.cpu(), layout, max_atoms), reconstructor) for row in raw]
    readable = [(i, r) for i, r in enumerate(requests) if isinstance(r, CellRequest)]
    out: list[Decoded] = [Decoded(None, r) if isinstance(r, str) else Decoded(None, "not reconstructed") for r in requests]
    if not readable:
        return out
    cells = [cell for _, cell in readable]
    device = reconstructor.weights.device
    result = reconstructor(
        torch.stack([c.target for c in cells]).to(device),
        torch.cat([c.atomic_numbers for c in cells]).to(device),
        torch.tensor([c.atomic_numbers.numel() for c in cells], device=device),
        torch.stack([c.lattice for c in cells]).to(device),
        generator=generator,
    )
    for k, (i, cell) in enumerate(readable):
        loss = float(result.loss[k])
        frac = torch.linalg.solve(cell.lattice.T, result.positions[k].T).T  # x = f @ L  =>  L^T f^T = x^T
        info = {"reconstruction_loss": loss if math.isfinite(loss) else None, "reconstruction_steps": int(result.steps[k])}
        if cell.num_atoms_read is not None:
            info["num_atoms_read"] = cell.num_atoms_read  # lowered to the training maximum
        try:
            structure = tensors_to_structure(cell.lattice, torch.remainder(frac, 1.0), cell.atomic_numbers)
        except Exception as exc:  # pymatgen refuses some inputs; report, never crash
            out[i] = Decoded(None, f"structure construction failed: {exc}", info)
            continue
        out[i] = Decoded(structure, None, info)
    return out


class GradientReconstruction(Decoder):
    """Registered as decoder ``structrepdiff_reconstruction``: raw representations -> crystals, positions found by
    basin hopping on R_str (paper section 4.3, Algorithm 2).

    Reads ``representation`` (B, N), the raw (denormalised) R, and the conditions ``max_atoms`` (int: a larger n
    read from R is lowered to it, the largest n seen in training) and ``representation_std`` ((N,) spread of each
    feature of R over the training set, for ``loss_weighting: spread``). The model supplies the descriptor the
    transform computed R with (``ead``, ``method``, ``table_spacing``, ``num_elements``); the options are the
    search's (:class:`BasinHopping`) and its loss weighting (``none``: the paper's plain L1; ``spread``: see
    reconstruction.loss_weights, with ``std_floor`` and ``d_min_weight``).
    """

    spec = DecoderSpec(reads=frozenset({VARIABLE}), conditions=frozenset({"max_atoms", "representation_std"}))

    def __init__(self, ead: Mapping[str, Any], num_elements: int, method: str, table_spacing: float,
                 trials: int = DEFAULT.trials, hops: int = DEFAULT.hops, iterations: int = DEFAULT.iterations,
                 lr: float = DEFAULT.lr, lr_final: float | None = DEFAULT.lr_final, hop_step: float = DEFAULT.hop_step,
                 relocate_atoms: int = DEFAULT.relocate_atoms, relocate_closer_than: float = DEFAULT.relocate_closer_than,
                 loss_threshold: float | None = DEFAULT.loss_threshold, d_min_penalty: float = DEFAULT.d_min_penalty,
                 check_every: int = DEFAULT.check_every, skin: float = DEFAULT.skin, max_pairs: int = DEFAULT.max_pairs,
                 loss_weighting: str = "none", std_floor: float = 10.0, d_min_weight: float = 200.0) -> None:
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"model.decoder.loss_weighting: {loss_weighting!r} is not one of {', '.join(LOSS_WEIGHTINGS)}")
        self.params = ead_parameters(plain_ead_config(ead))
        self.layout = RepresentationLayout(self.params.num_features, int(num_elements))
        self.method, self.table_spacing = str(method), float(table_spacing)
        self.settings = BasinHopping(
            trials=int(trials), hops=int(hops), iterations=int(iterations), lr=float(lr),
            lr_final=None if lr_final is None else float(lr_final), hop_step=float(hop_step),
            relocate_atoms=int(relocate_atoms), relocate_closer_than=float(relocate_closer_than),
            loss_threshold=None if loss_threshold is None else float(loss_threshold), d_min_penalty=float(d_min_penalty),
            check_every=int(check_every), skin=float(skin), max_pairs=int(max_pairs))
        self.loss_weighting = loss_weighting
        self.std_floor, self.d_min_weight = float(std_floor), float(d_min_weight)
        self._descriptors: dict[torch.device, StructureDescriptor] = {}  # its table takes a moment to build

    def __call__(self, state: Mapping[str, Tensor], condition: Condition, *,
                 generator: torch.Generator | None = None) -> list[Decoded]:
        reconstructor = self.reconstructor(condition.data["representation_std"])
        return decode_representations(state[VARIABLE], self.layout, reconstructor, int(condition.data["max_atoms"]),
                                      generator=generator)

    def reconstructor(self, std: Tensor) -> Reconstructor:
        """The basin-hopping search on the device of ``std`` (the training spread of each feature of R), its L1 loss
        weighted as ``loss_weighting`` says."""
        device = std.device
        if device not in self._descriptors:
            self._descriptors[device] = StructureDescriptor(self.params, self.method, self.table_spacing, torch.float32, device)
        descriptor = self._descriptors[device]
        if self.loss_weighting == "spread":
            weights = loss_weights(std[self.layout.structure], len(self.params.mus), self.std_floor, self.d_min_weight)
        else:  # "none": the paper's plain L1 over the raw R_str
            weights = torch.ones(descriptor.size, dtype=torch.float64)
        return Reconstructor(descriptor, self.settings, weights.float().to(device))
