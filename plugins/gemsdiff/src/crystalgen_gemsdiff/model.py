"""GemsDiff (Klipfel, Fregier, Sayede & Bouraoui, AAAI 2024): diffusion of the lattice in gl(3) coordinates and of
the fractional coordinates on the torus, for a given composition.

Variables and the parts the presets name (any registered part that fits can replace one by configuration):
    frac_coords  (N, 3)  wrapped_normal, sigma_t = sqrt(1 - abar_t) of linear betas 1e-6 -> 2e-3 (eq. 16),
                         prediction x0 = the lift of the clean coordinates nearest x_t (shortest path, eq. 20)
    lattice      (B, 9)  vp_gaussian, linear betas 1e-5 -> 1e-1, on the gl(3) coordinates of the cell's polar form
                         (lattice_coords.py; the three rotation coordinates are held at zero), prediction x0;
                         with ``lattice_space: matrix`` (ablation (d) of Table 4) on the polar form's 9 matrix entries
                         in Angstrom, all of them noised
The atom types are the condition: each crystal's composition, given (``--composition``) or drawn from the training
set. Losses: the squared shortest-path displacement (eq. 20) and the squared error of the standardised lattice
parameters (a, b, c, alpha, beta, gamma) of the predicted clean cell (eq. 15); docs/gemsdiff.md gives every choice
where the paper and its code differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from pymatgen.core import Composition, Element
from torch import Tensor
from torch_geometric.data import Batch, Data

from crystalgen import (
    GL3_LAMBDA,
    Condition,
    Constraint,
    ContinuousProcess,
    Decoded,
    GenerativeModel,
    ModelSpec,
    SampleRequest,
    UnsupportedRequestError,
    Variable,
    lattice_matrix_to_params,
)
from crystalgen_gemsdiff import config_upgrade, memory
from crystalgen_gemsdiff.lattice_coords import (
    ROTATION,
    coords_to_lattice,
    coords_to_matrix,
    lattice_to_coords,
    matrix_to_coords,
)

CELL = frozenset({"lattice", "frac_coords", "atom_types", "num_atoms"})
LOSS_NORMS = ("l2", "l1")
LATTICE_TARGETS = ("clean", "posterior_mean")
LATTICE_SPACES = ("lie_algebra", "matrix")


def cell_atomic_numbers(composition: Composition, max_atoms: int, num_elements: int) -> list[int]:
    """Atomic numbers of the cell content ``composition`` (Li2MnO3: 6 atoms), in the formula's order. The runner has
    already refused unknown elements and fractional amounts; this refuses what the model's vocabulary cannot hold."""
    numbers: list[int] = []
    for element, amount in composition.items():
        z = Element(str(element)).Z
        if z > num_elements:
            raise UnsupportedRequestError(f"composition {composition.formula!r}: {element} (Z = {z}) is beyond the "
                                          f"model's {num_elements} element classes")
        numbers += [z] * int(round(amount))
    if not 0 < len(numbers) <= max_atoms:
        raise UnsupportedRequestError(f"composition {composition.formula!r} has {len(numbers)} atoms; this model "
                                      f"samples cells of 1 to {max_atoms} atoms (model.max_atoms)")
    return numbers


class GemsDiff(GenerativeModel):
    """The model ``gemsdiff``: generation for given compositions (or compositions of the training set)."""

    name = "gemsdiff"
    default_sampler = "ancestral"
    conditions = frozenset({"composition"})
    config_package = "crystalgen_gemsdiff.configs"
    spec = ModelSpec(
        variables={"frac_coords": Variable("continuous", "torus", predictions=frozenset({"x0"})),
                   "lattice": Variable("continuous", "real", predictions=frozenset({"x0"}))},
        conditions=frozenset({"crystal", "num_atoms", "atom_types"}),
        fields=CELL,
        decodes=CELL,
    )

    params_mean: Tensor
    params_std: Tensor

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        parts = self.assemble(cfg)
        self.num_steps = int(cfg.num_steps)
        self.max_atoms = int(cfg.max_atoms)
        self.num_elements = int(cfg.num_elements)
        self.loss_norm = str(cfg.loss_norm)
        self.lattice_target = str(cfg.lattice_target)
        self.shortest_path = bool(cfg.shortest_path)
        self.volume_prior = bool(cfg.volume_prior)
        self.lattice_space = str(cfg.lattice_space)
        if self.volume_prior and cfg.denoiser.get("decode_from", "identity") != "identity":
            raise ValueError("model.volume_prior offsets the cell decoded from the identity; with "
                             "model.denoiser.decode_from=noisy set model.volume_prior=false")
        if self.loss_norm not in LOSS_NORMS:
            raise ValueError(f"model.loss_norm must be one of {LOSS_NORMS}, got {self.loss_norm!r}")
        if self.lattice_space not in LATTICE_SPACES:
            raise ValueError(f"model.lattice_space must be one of {LATTICE_SPACES}, got {self.lattice_space!r}")
        if self.lattice_target not in LATTICE_TARGETS:
            raise ValueError(f"model.lattice_target must be one of {LATTICE_TARGETS}, got {self.lattice_target!r}")
        self.denoiser_cfg = cfg.denoiser
        self.processes = parts.processes()
        self.denoiser = parts.build("denoiser")
        self.decoder = parts.build("decoder")
        self.register_buffer("params_mean", torch.zeros(6))
        self.register_buffer("params_std", torch.ones(6))
        self.log_volume_per_atom = 0.0  # mean log(V / N) of the training set (extra state: older checkpoints lack it)
        # compositions of the training set, drawn when sampling asks for none (variable size: extra state)
        self.train_types = torch.zeros(0, dtype=torch.int16)
        self.train_counts = torch.zeros(0, dtype=torch.int16)

    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        return config_upgrade.upgrade(cfg)

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        steps = {"num_steps": int(cfg.num_steps)}
        return {"transform": {"max_atoms": int(cfg.max_atoms)},
                "denoiser": {**steps, "num_elements": int(cfg.num_elements)},
                "processes.frac_coords": steps, "processes.lattice": steps}

    # -- statistics that travel with the checkpoint ---------------------------------------------------
    def fit_statistics(self, train: Sequence[Data]) -> None:
        """Mean and std of (a, b, c, alpha, beta, gamma) for the lattice loss, and the training compositions."""
        lattices = torch.cat([d.lattice for d in train]).double()
        lengths, angles = lattice_matrix_to_params(lattices)
        params = torch.cat([lengths, angles], dim=-1)
        self.params_mean.copy_(params.mean(0))
        self.params_std.copy_(params.std(0).clamp(min=1e-3))  # a constant parameter (Perov-5) keeps its scale
        counts = torch.cat([d.num_atoms for d in train]).double()
        self.log_volume_per_atom = float((torch.linalg.det(lattices).abs() / counts).log().mean())
        self.train_types = torch.cat([d.atom_types for d in train]).to(torch.int16)
        self.train_counts = torch.cat([d.num_atoms for d in train]).to(torch.int16)

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"train_types": self.train_types, "train_counts": self.train_counts,
                "log_volume_per_atom": torch.tensor(self.log_volume_per_atom, dtype=torch.float64)}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.train_types, self.train_counts = state["train_types"].cpu(), state["train_counts"].cpu()
        self.log_volume_per_atom = float(state.get("log_volume_per_atom", 0.0))

    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        return memory.memory_cost(self.denoiser_cfg, num_nodes, training)

    def max_sample_nodes(self) -> int:
        """Requests are refused above max_atoms, and the training set holds no larger crystal."""
        return self.max_atoms

    # -- training -----------------------------------------------------------------------------------
    def _condition(self, atom_types: Tensor, num_atoms: Tensor) -> Condition:
        crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms,
                                          output_size=int(atom_types.shape[0]))
        constraints: dict[str, Constraint] = {}
        if self.lattice_space == "lie_algebra":  # the rotation coordinates stay zero; a matrix has no such part
            free = torch.ones(9, dtype=torch.bool, device=num_atoms.device)
            free[ROTATION] = False
            constraints["lattice"] = Constraint(free, torch.zeros(9, device=num_atoms.device))
        return Condition(
            num_crystals=len(num_atoms),
            shapes={"frac_coords": (int(atom_types.shape[0]), 3), "lattice": (len(num_atoms), 9)},
            device=num_atoms.device,
            constraints=constraints,
            data={"crystal": crystal, "num_atoms": num_atoms, "atom_types": atom_types},
        )

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Algorithm 1 with t ~ U{1..T}: L = L_rho (eq. 15) + L_x (eq. 20), each a mean over crystals."""
        crystal, num_crystals = batch.batch, batch.num_graphs
        t = torch.randint(1, self.num_steps + 1, (num_crystals,), device=crystal.device)
        x0 = torch.remainder(batch.frac_coords.float(), 1.0)
        lattice0 = batch.lattice.double()
        v0 = lattice_to_coords(lattice0)
        if self.lattice_space == "matrix":  # (d): the polar form's entries, every one noised
            v0 = coords_to_lattice(v0).flatten(-2)
        v0 = v0.float()
        frac = self.process("frac_coords").add_noise(x0, t[crystal])
        lat = self.process("lattice").add_noise(v0, t)
        if self.lattice_space == "lie_algebra":
            lat.x_t[:, ROTATION] = 0.0  # no rotation noise (the clean rotation part is zero already)
        condition = self._condition(batch.atom_types, batch.num_atoms)
        prediction = self.denoise({"frac_coords": frac.x_t, "lattice": lat.x_t}, t, condition)

        target = frac.target if self.shortest_path else x0  # (e): the wrapped clean value, no shortest path
        position = self._norm(prediction["frac_coords"] - target).mean(-1)
        lattice_pred = self._cell(prediction["lattice"].double())
        lattice_goal = lattice0 if self.lattice_target == "clean" else self._cell(self._posterior_mean(v0, lat.x_t, t).double())
        lattice = self._norm(self._standard_params(lattice_pred) - self._standard_params(lattice_goal)).mean(-1)
        per_crystal_position = torch.zeros(num_crystals, dtype=position.dtype, device=position.device)
        per_crystal_position.index_add_(0, crystal, position)
        per_crystal_position = per_crystal_position / batch.num_atoms.to(position.dtype)
        out = {"frac_coords": per_crystal_position.mean(), "lattice": lattice.float().mean()}
        out["loss"] = out["frac_coords"] + out["lattice"]
        return out

    def process(self, variable: str) -> ContinuousProcess:
        return self.process_as(variable, ContinuousProcess)

    def _norm(self, difference: Tensor) -> Tensor:
        return difference.abs() if self.loss_norm == "l1" else difference.square()

    def _cell(self, lattice: Tensor) -> Tensor:
        """Cell matrices (B, 3, 3) of the lattice variable (B, 9): exp(pi x), or the matrix entries themselves."""
        if self.lattice_space == "matrix":
            return lattice.reshape(-1, 3, 3)
        return coords_to_lattice(lattice)

    def _standard_params(self, lattice: Tensor) -> Tensor:
        lengths, angles = lattice_matrix_to_params(lattice, strict=False)[:2]
        return (torch.cat([lengths, angles], dim=-1) - self.params_mean.to(lattice.dtype)) / self.params_std.to(lattice.dtype)

    def _posterior_mean(self, v0: Tensor, v_t: Tensor, t: Tensor) -> Tensor:
        """mu_t(x_t, x_0) of the lattice process (eq. 6), the literal target of eq. 15: the x0 prediction that
        reproduces it is (mu - c_t x_t) / c_0; here simply the lattice exp(pi mu) (a matrix mu itself under
        ablation (d), appendix F)."""
        proc = self.process("lattice")
        abar = proc.alphas.square().to(v0.dtype)
        a_t, a_s = abar[t].unsqueeze(-1), abar[t - 1].unsqueeze(-1)
        alpha = a_t / a_s
        return (a_s.sqrt() * (1 - alpha) / (1 - a_t)) * v0 + (alpha.sqrt() * (1 - a_s) / (1 - a_t)) * v_t

    # -- sampling -----------------------------------------------------------------------------------
    def check_request(self, request: SampleRequest) -> None:
        """Also refuse compositions beyond the element classes or max_atoms: the runner checks the whole request
        before its first batch, so a bad composition anywhere in a list stops sampling before it starts."""
        super().check_request(request)
        self._cell_numbers(request)

    def _cell_numbers(self, request: SampleRequest) -> dict[str, list[int]]:
        """Atomic numbers of each distinct requested composition, by formula (empty without compositions)."""
        unique = {c.formula: c for c in request.composition or []}
        return {f: cell_atomic_numbers(c, self.max_atoms, self.num_elements) for f, c in unique.items()}

    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """Each crystal's composition: the requested formula(s), else a training crystal's drawn at random."""
        self.check_request(request)
        device = self.params_mean.device
        n = request.num_samples
        if request.composition is not None:  # one pymatgen Composition per crystal (crystalgen.SampleRequest)
            numbers = self._cell_numbers(request)
            compositions = [numbers[c.formula] for c in request.composition]
        else:
            if self.train_counts.numel() == 0:
                raise UnsupportedRequestError("this model holds no training compositions (fit_statistics was not run); "
                                              "give --composition")
            counts = self.train_counts.long()
            starts = torch.cumsum(counts, 0) - counts
            picked = torch.randint(len(counts), (n,))
            compositions = [self.train_types[int(starts[i]): int(starts[i] + counts[i])].tolist() for i in picked]
        atom_types = torch.tensor([z for c in compositions for z in c], dtype=torch.long, device=device)
        num_atoms = torch.tensor([len(c) for c in compositions], dtype=torch.long, device=device)
        return self._condition(atom_types, num_atoms)

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """The denoiser's predictions; with ``volume_prior`` the decoded cell is exp(Y + c I), c = (log N +
        mean log(V / N)) / 3: the network learns the cell relative to a cube of the training set's volume per atom
        rather than relative to the 1 A^3 unit cube (a fixed offset on the volume coordinate x_8 = c / lambda).
        Under ablation (d) (``lattice_space: matrix``) the noisy matrix reaches the denoiser as the gl(3) coordinates
        of its polar form (lattice_coords.matrix_to_coords: singular or left-handed noisy matrices become a cell the
        kNN search can take) and the predicted clean cell leaves as its matrix entries."""
        if self.lattice_space == "matrix":
            state = {**state, "lattice": matrix_to_coords(state["lattice"])}
        prediction = self.denoiser(state, t, condition)
        if self.volume_prior:
            num_atoms = condition.data["num_atoms"].to(prediction["lattice"].dtype)
            offset = (num_atoms.log() + self.log_volume_per_atom) / (3 * GL3_LAMBDA)
            volume = prediction["lattice"][:, 8:] + offset.unsqueeze(-1)
            prediction = {**prediction, "lattice": torch.cat([prediction["lattice"][:, :8], volume], dim=-1)}
        if self.lattice_space == "matrix":
            prediction = {**prediction, "lattice": coords_to_matrix(prediction["lattice"])}
        return prediction

    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        coords = state["lattice"].double()
        finite = torch.isfinite(coords).all(-1, keepdim=True)
        lattice = self._cell(torch.where(finite, coords, torch.zeros_like(coords)))
        lattice = torch.where(finite.unsqueeze(-1) & torch.isfinite(lattice), lattice, torch.full_like(lattice, torch.nan))
        cell = {"lattice": lattice, "frac_coords": state["frac_coords"], "atom_types": condition.data["atom_types"],
                "num_atoms": condition.data["num_atoms"]}
        return self.decoder(cell, condition)
