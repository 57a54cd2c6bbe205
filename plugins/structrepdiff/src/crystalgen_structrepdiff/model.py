"""The StructRepDiff recipe: DDPM on the normalised representation R, decoded by gradient reconstruction.

One diffused variable, ``representation`` (B, N): R = [EAD max, EAD min, d_min, composition, n, lattice] standardised
with training statistics (RepresentationScaler, saved with the model), VP Gaussian with the cosine schedule and
2,000 levels, eps predicted by a 1D U-Net (paper section 4.2, appendix A.3). Decoding denormalises R, reads atoms and
cell from it and reconstructs positions from R_str by batched basin hopping (section 4.3). The ``reconstruct`` task
runs that decoder on the true R of given crystals (Table 1).

The parts the presets name: transform ``structrepdiff_ead`` (transform.py), denoiser ``structrepdiff_unet1d``
(unet.py), process ``vp_gaussian`` for ``representation``, decoder ``structrepdiff_reconstruction`` (decoding.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch_geometric.data import Batch, Data

from crystalgen import (
    Condition,
    ContinuousProcess,
    Decoded,
    GenerativeModel,
    ModelSpec,
    NoiseProcess,
    SampleRequest,
    Variable,
)
from crystalgen_structrepdiff import config_upgrade, memory
from crystalgen_structrepdiff.representation import SCALINGS, VARIABLE, RepresentationLayout, RepresentationScaler
from crystalgen_structrepdiff.transform import RepresentationTransform, descriptor_options, ead_parameters


class StructRepDiff(GenerativeModel):
    """StructRepDiff (representation-space diffusion for periodic materials). Tasks: generate, reconstruct."""

    name = "structrepdiff"
    default_sampler = "ancestral"
    tasks = frozenset({"generate", "reconstruct"})
    config_package = "crystalgen_structrepdiff.configs"
    spec = ModelSpec(
        # any real-valued parameterisation: clip_x0 goes through the process's own conversions
        variables={VARIABLE: Variable("continuous", "real")},
        conditions=frozenset({"max_atoms", "representation_std"}),
        fields=frozenset({VARIABLE, "num_atoms"}),
        decodes=frozenset({VARIABLE}),
    )

    max_atoms_seen: Tensor

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        self.cfg = cfg
        self.scaling = str(cfg.scaling)
        if self.scaling not in SCALINGS:
            raise ValueError(f"model.scaling: {self.scaling!r} is not one of {', '.join(SCALINGS)}")
        self.clip_x0 = bool(cfg.clip_x0)
        parts = self.assemble(cfg)
        # `encoder` (the transform) and `denoiser` keep their names from before the parts were named in config
        self.encoder: RepresentationTransform = parts.build("transform")
        self.layout = self.encoder.layout
        self.processes = parts.processes()
        self.denoiser = parts.build("denoiser")
        self.scaler = RepresentationScaler(self.layout.size)
        self.register_buffer("max_atoms_seen", torch.zeros((), dtype=torch.long))
        self.decoder = parts.build("decoder")

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        """A section saved by crystalgen-structrepdiff 0.1 (parts not yet named) in today's shape
        (config_upgrade.py)."""
        return config_upgrade.upgrade(cfg)

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """The composition vocabulary and n cap for the transform; T for the process; the size N of R for the
        denoiser and the transform's descriptor for the decoder, which inverts it (none when the transform is not an
        EAD one: assembling then refuses it, as it writes no representation)."""
        context: dict[str, dict[str, Any]] = {
            "transform": {"num_elements": int(cfg.num_elements), "max_atoms": cfg.max_atoms},
            f"processes.{VARIABLE}": {"num_steps": int(cfg.num_steps)}}
        if (cfg.get("transform") or {}).get("ead") is not None:
            descriptor = descriptor_options(cfg.transform)
            layout = RepresentationLayout(ead_parameters(descriptor["ead"]).num_features, int(cfg.num_elements))
            context["denoiser"] = {"length": layout.size}
            context["decoder"] = {**descriptor, "num_elements": int(cfg.num_elements)}
        return context

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """The scaling of every feature of R over the training set (``model.scaling``), and the largest n seen
        (decoding clamps to it)."""
        if not train:
            raise ValueError("StructRepDiff needs at least one training crystal to fit its representation statistics")
        self.scaler.fit(torch.cat([item.representation for item in train]), self.scaling)
        self.max_atoms_seen.fill_(max(int(item.num_atoms.reshape(-1)[0]) for item in train))

    # -- memory -----------------------------------------------------------------------------------
    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Bytes per crystal: the ``structrepdiff_unet1d`` denoiser over the fixed-size R, whatever its atoms
        (decoding: memory_overhead); another denoiser gets the base class's generous default."""
        if self.cfg.denoiser.name != "structrepdiff_unet1d":
            return super().memory_cost(num_nodes, training=training)
        return memory.memory_cost(self.layout.size, self.cfg.denoiser, num_nodes, training)

    def memory_overhead(self, *, training: bool) -> float:
        """Decoding: one reconstruction group at its cap of max_pairs pairs (memory.py)."""
        return 0.0 if training else memory.decode_overhead(self.decoder.settings.max_pairs)

    def max_sample_nodes(self) -> int | None:
        """Decoding clamps n to the largest seen in training (model.max_atoms before fit_statistics)."""
        seen = int(self.max_atoms_seen)
        return seen if seen > 0 else (None if self.cfg.max_atoms is None else int(self.cfg.max_atoms))

    # -- training -----------------------------------------------------------------------------------
    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Algorithm 3: ||eps - eps_theta(sqrt(abar_t) R_0 + sqrt(1 - abar_t) eps, t)||^2, t ~ U{1..T}."""
        x0 = self.scaler.normalise(batch.representation).float()
        process = self.process_as(VARIABLE, NoiseProcess)
        t = torch.randint(1, process.num_steps + 1, (x0.shape[0],), device=x0.device)
        noised = process.add_noise(x0, t)
        prediction = self.denoiser({VARIABLE: noised.x_t}, t, Condition(x0.shape[0], {}, x0.device))[VARIABLE]
        loss = process.loss(prediction, noised).mean()
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
        eps = self.denoiser(state, t, condition)[VARIABLE]
        if self.clip_x0:
            eps = self.process_as(VARIABLE, ContinuousProcess).clip_x0(eps, x, t, self.scaler.low.to(x), self.scaler.high.to(x)).to(x.dtype)
        return {VARIABLE: eps}

    def decode(self, state: dict[str, Tensor], condition: Condition, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Denormalise R and rebuild each crystal (counts, cell, then positions by basin hopping)."""
        return self.decode_raw(self.scaler.denormalise(state[VARIABLE]), generator=generator)

    def decode_raw(self, raw: Tensor, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Crystals from raw (unnormalised) representations (B, N), by the decoder with the training statistics."""
        seen = int(self.max_atoms_seen)
        max_atoms = seen if seen > 0 else int(self.cfg.max_atoms or 10**6)
        condition = Condition(raw.shape[0], {}, raw.device, data={"max_atoms": max_atoms, "representation_std": self.scaler.std})
        return self.decoder({VARIABLE: raw}, condition, generator=generator)

    # -- tasks ------------------------------------------------------------------------------------
    def reconstruct(self, batch: Batch, sampler=None, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Table 1's task: the true representation of each crystal (from the transform) decoded back; the sampler
        plays no part."""
        self.require_task("reconstruct")
        return self.decode_raw(batch.representation.double(), generator=generator)
