"""The StructRepDiff recipe: DDPM on the normalised representation R, decoded by gradient reconstruction.

One diffused variable, ``representation`` (B, N): R = [EAD max, EAD min, d_min, composition, n, lattice] standardised
with training statistics (RepresentationScaler, saved with the model), VP Gaussian with the cosine schedule and
2,000 levels, eps predicted by a 1D U-Net (paper section 4.2, appendix A.3). Decoding denormalises R, reads atoms and
cell from it and reconstructs positions from R_str by batched basin hopping (section 4.3). The ``reconstruct`` task
runs that decoder on the true R of given crystals (Table 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from crystalgen import Condition, Decoded, GenerativeModel, SampleRequest, VPGaussian
from crystalgen_structrepdiff import memory
from crystalgen_structrepdiff.decoding import decode_representations
from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.reconstruction import LOSS_WEIGHTINGS, BasinHopping, Reconstructor, loss_weights
from crystalgen_structrepdiff.representation import SCALINGS, RepresentationScaler
from crystalgen_structrepdiff.transform import RepresentationTransform
from crystalgen_structrepdiff.unet import UNet1D

VARIABLE = "representation"


class StructRepDiff(GenerativeModel):
    """StructRepDiff (representation-space diffusion for periodic materials). Tasks: generate, reconstruct."""

    name = "structrepdiff"
    default_sampler = "ancestral"
    tasks = frozenset({"generate", "reconstruct"})
    config_package = "crystalgen_structrepdiff.configs"

    max_atoms_seen: Tensor

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        self.cfg = cfg
        self.encoder = self.transform(cfg)
        self.layout = self.encoder.layout
        self.processes = nn.ModuleDict({VARIABLE: VPGaussian(int(cfg.num_steps), str(cfg.schedule), "eps")})
        u = cfg.unet
        self.denoiser = UNet1D(self.layout.size, dim=int(u.dim), dim_mults=tuple(int(m) for m in u.dim_mults), groups=int(u.groups),
                               attention_heads=int(u.attention_heads), attention_dim_head=int(u.attention_dim_head))
        self.scaler = RepresentationScaler(self.layout.size)
        self.register_buffer("max_atoms_seen", torch.zeros((), dtype=torch.long))
        r = cfg.reconstruction
        self.basin_hopping = BasinHopping(trials=int(r.trials), hops=int(r.hops), iterations=int(r.iterations), lr=float(r.lr),
                                          lr_final=None if r.lr_final is None else float(r.lr_final), hop_step=float(r.hop_step),
                                          relocate_atoms=int(r.get("relocate_atoms", 0)),  # absent in older checkpoints
                                          relocate_closer_than=float(r.get("relocate_closer_than", 0.0)),  # same
                                          loss_threshold=None if r.loss_threshold is None else float(r.loss_threshold),
                                          d_min_penalty=float(r.get("d_min_penalty", 0.0)),  # absent in older checkpoints
                                          check_every=int(r.check_every), skin=float(r.skin), max_pairs=int(r.max_pairs))
        self.clip_x0 = bool(cfg.get("clip_x0", True))  # absent in older checkpoints
        self.scaling = str(cfg.get("scaling", "standard"))  # same
        if self.scaling not in SCALINGS:
            raise ValueError(f"model.scaling: {self.scaling!r} is not one of {', '.join(SCALINGS)}")
        self.loss_weighting = str(r.get("loss_weighting", "spread"))  # absent in older checkpoints
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"model.reconstruction.loss_weighting: {self.loss_weighting!r} is not one of {', '.join(LOSS_WEIGHTINGS)}")
        self.std_floor = float(r.std_floor)
        self.d_min_weight = float(r.d_min_weight)
        self._reconstructor: Reconstructor | None = None

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: DictConfig) -> StructRepDiff:
        return cls(cfg)

    @classmethod
    def transform(cls, cfg: DictConfig) -> RepresentationTransform:
        ead = OmegaConf.to_container(cfg.ead, resolve=True) if isinstance(cfg.ead, DictConfig) else dict(cfg.ead)
        return RepresentationTransform(ead, num_elements=int(cfg.num_elements), max_atoms=cfg.max_atoms,
                                       method=str(cfg.ead_method), table_spacing=float(cfg.table_spacing))

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """The scaling of every feature of R over the training set (``model.scaling``), and the largest n seen
        (decoding clamps to it)."""
        if not train:
            raise ValueError("StructRepDiff needs at least one training crystal to fit its representation statistics")
        self.scaler.fit(torch.cat([item.representation for item in train]), self.scaling)
        self.max_atoms_seen.fill_(max(int(item.num_atoms.reshape(-1)[0]) for item in train))
        self._reconstructor = None

    # -- memory -----------------------------------------------------------------------------------
    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Bytes per crystal: the U-Net over the fixed-size R, whatever its atoms (decoding: memory_overhead)."""
        return memory.memory_cost(self.layout.size, self.cfg, num_nodes, training)

    def memory_overhead(self, *, training: bool) -> float:
        """Decoding: one reconstruction group at its cap of max_pairs pairs (memory.py)."""
        return 0.0 if training else memory.decode_overhead(self.cfg)

    def max_sample_nodes(self) -> int | None:
        """Decoding clamps n to the largest seen in training (model.max_atoms before fit_statistics)."""
        seen = int(self.max_atoms_seen)
        return seen if seen > 0 else (None if self.cfg.max_atoms is None else int(self.cfg.max_atoms))

    # -- training -----------------------------------------------------------------------------------
    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Algorithm 3: ||eps - eps_theta(sqrt(abar_t) R_0 + sqrt(1 - abar_t) eps, t)||^2, t ~ U{1..T}."""
        x0 = self.scaler.normalise(batch.representation).float()
        t = torch.randint(1, self.processes[VARIABLE].num_steps + 1, (x0.shape[0],), device=x0.device)
        noised = self.processes[VARIABLE].add_noise(x0, t)
        loss = self.processes[VARIABLE].loss(self.denoiser(noised.x_t, t), noised).mean()
        return {"loss": loss}

    # -- sampling ---------------------------------------------------------------------------------
    def prepare_sampling(self, request: SampleRequest) -> Condition:
        self.check_request(request)
        if not self.scaler.fitted:
            raise RuntimeError("the model has no representation statistics; call fit_statistics first or load a trained checkpoint")
        device = self.scaler.mean.device
        return Condition(num_crystals=request.num_samples, shapes={VARIABLE: (request.num_samples, self.layout.size)}, device=device)

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """eps_theta(R_t, t); with ``clip_x0`` the implied clean R is clamped to the training range of each feature
        (docs/structrepdiff.md, "Decisions")."""
        x = state[VARIABLE]
        eps = self.denoiser(x, t)
        if self.clip_x0:
            eps = self.processes[VARIABLE].clip_x0(eps, x, t, self.scaler.low.to(x), self.scaler.high.to(x)).to(x.dtype)
        return {VARIABLE: eps}

    def decode(self, state: dict[str, Tensor], condition: Condition, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Denormalise R and rebuild each crystal (counts, cell, then positions by basin hopping)."""
        return self.decode_raw(self.scaler.denormalise(state[VARIABLE]), generator=generator)

    def decode_raw(self, raw: Tensor, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Crystals from raw (unnormalised) representations (B, N)."""
        max_atoms = int(self.max_atoms_seen) if int(self.max_atoms_seen) > 0 else int(self.cfg.max_atoms or 10**6)
        return decode_representations(raw, self.layout, self.reconstructor(), max_atoms, generator=generator)

    def reconstructor(self) -> Reconstructor:
        """The basin-hopping reconstruction on the model's device, weighted by the training statistics."""
        device = self.scaler.std.device
        if self._reconstructor is None or self._reconstructor.weights.device != device:
            descriptor = StructureDescriptor(self.encoder.params, self.encoder.method, self.encoder.table_spacing, torch.float32, device)
            if self.loss_weighting == "spread":
                weights = loss_weights(self.scaler.std[self.layout.structure], len(self.encoder.params.mus), self.std_floor, self.d_min_weight)
            else:  # "none": the paper's plain L1 over the raw R_str
                weights = torch.ones(descriptor.size, dtype=torch.float64)
            self._reconstructor = Reconstructor(descriptor, self.basin_hopping, weights.float().to(device))
        return self._reconstructor

    # -- tasks ------------------------------------------------------------------------------------
    def reconstruct(self, batch: Batch, sampler=None, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Table 1's task: the true representation of each crystal (from the transform) decoded back; the sampler
        plays no part."""
        self.require_task("reconstruct")
        return self.decode_raw(batch.representation.double(), generator=generator)
