"""``minimal``: a full-cell diffusion model assembled from named parts.

Variables, each moved by the process its preset names (any installed part that fits can replace one by config):
    frac_coords  (N, 3)  on the torus: wrapped_normal, score prediction
    lattice      (B, 6)  standardised lattice features (lattice.py): vp_gaussian, eps prediction
    atom_types   (N,)    classes 0..K-1 (atomic number - 1): d3pm_marginal towards the training-set marginal
The number of atoms of each crystal is drawn from the training set; the cell decoder builds the Structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from omegaconf import DictConfig
from torch import Tensor
from torch_geometric.data import Batch, Data

from crystalgen import (
    Condition,
    D3PMMarginal,
    Decoded,
    GenerativeModel,
    ModelSpec,
    NoiseProcess,
    SampleRequest,
    Variable,
)
from crystalgen_minimal_diffusion.lattice import features_to_lattice, lattice_features

CELL = frozenset({"lattice", "frac_coords", "atom_types", "num_atoms"})


class MinimalDiffusion(GenerativeModel):
    """Unconditional generation of full cells: no conditions, no optional tasks."""

    name = "minimal"
    default_sampler = "ancestral"
    config_package = "crystalgen_minimal_diffusion.configs"
    spec = ModelSpec(
        variables={"frac_coords": Variable("continuous", "torus"), "lattice": Variable("continuous", "real"),
                   "atom_types": Variable("categorical", "classes")},
        conditions=frozenset({"crystal", "num_atoms"}),  # what prepare_sampling puts in Condition.data
        fields=CELL,  # what training_loss reads from the transform's Data
        decodes=CELL,  # what decode hands the decoder
    )

    lattice_mean: Tensor
    lattice_std: Tensor
    num_atoms_probs: Tensor

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        parts = self.assemble(cfg)  # resolves every named part; a misfit is refused here, naming those that fit
        self.num_steps, self.max_atoms = int(cfg.num_steps), int(cfg.max_atoms)
        self.loss_weights = {var: float(w) for var, w in cfg.loss_weights.items()}
        self.processes = parts.processes()
        self.denoiser = parts.build("denoiser")
        self.decoder = parts.build("decoder")
        # statistics of the training set (fit_statistics): buffers, so that they travel with the checkpoint
        self.register_buffer("lattice_mean", torch.zeros(6))
        self.register_buffer("lattice_std", torch.ones(6))
        self.register_buffer("num_atoms_probs", torch.zeros(self.max_atoms + 1))

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """What the model sets for its parts: T everywhere, K for the denoiser and the types, max_atoms for the
        transform (a preset giving one of these as a part option is refused)."""
        steps = {"num_steps": int(cfg.num_steps)}
        return {"transform": {"max_atoms": int(cfg.max_atoms)},
                "denoiser": {**steps, "num_elements": int(cfg.num_elements)},
                "processes.frac_coords": steps, "processes.lattice": steps,
                "processes.atom_types": {**steps, "num_classes": int(cfg.num_elements)}}

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """Lattice feature mean and std, the distribution of N, and the marginal of the atom types."""
        counts = torch.cat([d.num_atoms for d in train])
        feats = lattice_features(torch.cat([d.lattice for d in train]).double(), counts)
        self.lattice_mean.copy_(feats.mean(0))
        self.lattice_std.copy_(feats.std(0, unbiased=False).clamp(min=1e-3))
        self.num_atoms_probs.copy_(torch.bincount(counts, minlength=self.max_atoms + 1)[: self.max_atoms + 1] / len(counts))
        types = torch.cat([d.atom_types for d in train]) - 1
        process = cast(D3PMMarginal, self.processes["atom_types"])
        process.set_marginal(torch.bincount(types, minlength=process.num_classes).double() / len(types))

    def process(self, var: str) -> NoiseProcess:
        """The process of ``var``, typed (an nn.ModuleDict hands out plain modules)."""
        return cast(NoiseProcess, self.processes[var])

    def max_sample_nodes(self) -> int:
        """The most atoms prepare_sampling can draw: the runner sizes sampling batches for it."""
        return int(torch.nonzero(self.num_atoms_probs > 0).flatten().max())

    def clean(self, batch: Batch) -> dict[str, Tensor]:
        """A batch's crystals as the model's variables."""
        feats = lattice_features(batch.lattice.double(), batch.num_atoms)
        return {"frac_coords": torch.remainder(batch.frac_coords.float(), 1.0),
                "lattice": ((feats - self.lattice_mean) / self.lattice_std).float(),
                "atom_types": batch.atom_types - 1}

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """One level per crystal, shared by its variables; each process gives its target and per-row loss."""
        crystal, num_crystals = batch.batch, batch.num_graphs
        t = torch.randint(1, self.num_steps + 1, (num_crystals,), device=crystal.device)
        levels = {"frac_coords": t[crystal], "lattice": t, "atom_types": t[crystal]}  # per-atom rows take their crystal's t
        noised = {var: self.process(var).add_noise(x0, levels[var]) for var, x0 in self.clean(batch).items()}
        condition = Condition(num_crystals, {}, crystal.device, data={"crystal": crystal, "num_atoms": batch.num_atoms})
        prediction = self.denoiser({var: n.x_t for var, n in noised.items()}, t, condition)
        out = {var: self.process(var).loss(prediction[var], n).mean() for var, n in noised.items()}
        out["loss"] = sum((self.loss_weights[var] * out[var] for var in noised), torch.zeros((), device=crystal.device))
        return out

    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """N per crystal from the training distribution; the shape of every variable for the sampler's prior."""
        self.check_request(request)
        num_atoms = torch.multinomial(self.num_atoms_probs, request.num_samples, replacement=True)
        crystal = torch.repeat_interleave(torch.arange(request.num_samples, device=num_atoms.device), num_atoms)
        rows = int(crystal.shape[0])
        return Condition(num_crystals=request.num_samples, device=num_atoms.device,
                         shapes={"frac_coords": (rows, 3), "lattice": (request.num_samples, 6), "atom_types": (rows,)},
                         data={"crystal": crystal, "num_atoms": num_atoms})

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        return self.denoiser(state, t, condition)

    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        """The clean state in the decoder's units: a lattice matrix in Angstrom and atomic numbers. Lattice features
        beyond 6 standard deviations of the training set are clamped: nothing there was learnt, and an untrained
        or undertrained model would otherwise give cells of no volume (NaN stays NaN, a failure per crystal)."""
        num_atoms = condition.data["num_atoms"]
        feats = state["lattice"].double().clamp(-6, 6) * self.lattice_std.double() + self.lattice_mean.double()
        cell = {"lattice": features_to_lattice(feats, num_atoms), "frac_coords": state["frac_coords"],
                "atom_types": state["atom_types"] + 1, "num_atoms": num_atoms}
        return self.decoder(cell, condition)
