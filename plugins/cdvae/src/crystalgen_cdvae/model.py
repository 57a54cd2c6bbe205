"""CDVAE (Xie et al., ICLR 2022): the recipe that binds encoder, aggregate predictors, decoder and processes.

Training (section 3, appendix D): z ~ q(z | M) from the DimeNet++ encoder; MLP_AGG(z) predicts N, the scaled
Niggli lattice and the composition; the decoder denoises coordinates perturbed by Cartesian noise on the
(teacher-forced, then predicted) lattice and types mixed with the predicted composition. Loss =
1 natoms + 10 lattice + 10 coord + 1 type + 1 composition + 0.01 KL (+ 1 property).

Sampling (D.5, Algorithm 1): z ~ N(0, I) (or the encoder's z for reconstruction, or an optimised z) fixes N,
the lattice and the composition in the Condition; the sampler then moves the coordinates (process
``frac_coords``: the core's ``cartesian_ve``) and the types (``atom_types``: the core's ``composition_mixing``,
argmax rule). The parts the presets name are the core's: transform ``cdvae_niggli`` (this plugin), encoder
``dimenet_pp``, denoiser ``gemnet_t`` (the paper's decoder PGNN_DEC), decoder ``cell``. Every choice that differs
from the paper or the official code is listed in docs/cdvae.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from crystalgen import (
    PROPERTY_PREFIX,
    Condition,
    Decoded,
    GenerativeModel,
    ModelSpec,
    NoiseProcess,
    Sampler,
    SampleRequest,
    UnsupportedRequestError,
    Variable,
    collate,
    fit_scale_factors,
    lattice_matrix_to_params,
    reparameterize,
)
from crystalgen_cdvae import config_upgrade, memory
from crystalgen_cdvae.aggregate import AggregatePredictors, scaled_lattice_params
from crystalgen_cdvae.cells import predicted_cells
from crystalgen_cdvae.scale_factors import PAPER_DECODER, PAPER_SCALE_FACTORS

CELL = frozenset({"frac_coords", "lattice", "atom_types", "num_atoms"})
LOSS_PARTS = ("num_atoms", "lattice", "coord", "type", "composition", "kl", "property")


class CDVAE(GenerativeModel):
    """Crystal Diffusion Variational Autoencoder. Constructor arguments are the ``model`` section of the presets
    (configs/*.yaml, every key documented there)."""

    name = "cdvae"
    default_sampler = "langevin"
    tasks = frozenset({"generate", "reconstruct", "optimize"})
    config_package = "crystalgen_cdvae.configs"
    spec = ModelSpec(
        variables={"frac_coords": Variable("continuous", "cell", frozenset({"lattice", "num_atoms"})),
                   "atom_types": Variable("rule", "atomic_numbers", frozenset({"composition", "num_atoms"}))},
        conditions=frozenset({"z", "num_atoms", "lattice", "plausible", "reasons"}),
        fields=CELL,
        decodes=CELL,
        encodes=frozenset({"gaussian_posterior"}),
    )

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        c = OmegaConf.to_container(cfg, resolve=True)
        if not isinstance(c, dict):  # a DictConfig section resolves to a dict
            raise TypeError(f"the CDVAE model section must be a mapping, got {type(c).__name__}")
        max_atoms, latent_dim, property = c["max_atoms"], c["latent_dim"], c["property"]
        loss_weights, validation_loss, heads = c["loss_weights"], c["validation_loss"], c["heads"]
        if validation_loss not in ("decoder", "total"):
            raise ValueError(f"model.validation_loss must be 'decoder' or 'total', got {validation_loss!r}")
        unknown = set(loss_weights) - set(LOSS_PARTS)
        if unknown:
            raise ValueError(f"model.loss_weights has unknown parts {sorted(unknown)}; parts: {', '.join(LOSS_PARTS)}")
        self.max_atoms = int(max_atoms)
        self.latent_dim = int(latent_dim)
        self.property = property
        self.loss_weights = {part: float(loss_weights.get(part, 0.0)) for part in LOSS_PARTS}
        self.teacher_forcing_max_epoch = int(c["teacher_forcing_max_epoch"])
        self.validation_loss = validation_loss
        self.optimization = dict(c["optimization"])
        self.independent_levels = bool(c["independent_levels"])
        self._epoch = 0

        parts = self.assemble(cfg)
        self._graphs = (c["encoder"], c["denoiser"])  # the sections memory.py reads
        self.encoder = parts.build("encoder")
        self.heads = AggregatePredictors(latent_dim, heads["hidden_dim"], heads["num_layers"], self.max_atoms,
                                         c["num_elements"], predict_property=property is not None)
        self.scale_factors = c["scale_factors"]
        self.fit_batches = int(c["fit_batches"])
        self.fit_batch_size = int(c["fit_batch_size"])
        if self.scale_factors == "paper":
            denoiser = c["denoiser"]
            differing: dict[str, tuple[Any, Any]] = {k: (denoiser.get(k), v) for k, v in PAPER_DECODER.items()
                                                     if denoiser.get(k) != v}
            if denoiser["name"] != "gemnet_t" or differing:
                raise ValueError(f"model.scale_factors=paper holds only for the paper's decoder (gemnet_t); these settings "
                                 f"differ (yours, paper's): {differing or {'name': (denoiser['name'], 'gemnet_t')}}. "
                                 f"Use scale_factors: fit.")
        elif self.scale_factors != "fit":
            raise ValueError(f"model.scale_factors must be 'paper' or 'fit', got {self.scale_factors!r}")
        # The network keeps the attribute name `decoder` (the paper's PGNN_DEC), so that checkpoints still load.
        self.decoder = parts.build("denoiser")
        if self.scale_factors == "paper":
            self.decoder.set_scale_factors(PAPER_SCALE_FACTORS)
        self.processes = parts.processes()
        self.structure_decoder = parts.build("decoder")

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        """A section saved by crystalgen-cdvae 0.1 (parts not yet named) in today's shape (config_upgrade.py)."""
        return config_upgrade.upgrade(cfg)

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """N_max and the encoder's graph for the transform, the latent size for the encoder and the denoiser, the
        element classes, and the shared number of noise levels."""
        steps = {"num_steps": int(cfg.num_levels)}
        return {"transform": {"max_atoms": int(cfg.max_atoms), "encoder_graph": cfg.encoder.get("graph", "radius")},
                "encoder": {"latent_dim": int(cfg.latent_dim)},
                "denoiser": {"latent_dim": int(cfg.latent_dim), "num_elements": int(cfg.num_elements)},
                "processes.frac_coords": steps,
                "processes.atom_types": {**steps, "num_classes": int(cfg.num_elements)}}

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """Lattice (and property) scalers from the training set, then the decoder's scale factors when they are
        fitted (GemNet's variance-preserving constants, on noisy training crystals at initialisation)."""
        properties = None
        if self.property is not None:
            key = PROPERTY_PREFIX + self.property
            missing = [i for i, d in enumerate(train) if key not in d]
            if missing:
                raise ValueError(f"model.property={self.property!r}: training crystal {missing[0]} (and {len(missing) - 1} "
                                 f"more) has no such property; available: {sorted(k[len(PROPERTY_PREFIX):] for k in train[0].keys() if k.startswith(PROPERTY_PREFIX))}")  # noqa: SIM118 (Data.keys())
            properties = torch.cat([d[key] for d in train])
        self.heads.fit([d.lattice for d in train], [d.num_atoms for d in train], properties)
        if self.scale_factors == "fit":
            self.fit_decoder_scale_factors(train)

    def fit_decoder_scale_factors(self, train: Sequence[Data]) -> dict[str, float]:
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(len(train), generator=generator)[: self.fit_batches * self.fit_batch_size].tolist()
        batches = [collate([train[i] for i in order[s:s + self.fit_batch_size]])
                   for s in range(0, len(order), self.fit_batch_size)]
        device = next(self.parameters()).device
        with torch.no_grad():
            inputs = [self._noisy_decoder_inputs(b.to(device), teacher_forcing=True)[0] for b in batches]
        return fit_scale_factors(self.decoder.gemnet, lambda x: self.decoder(*x), inputs)

    # -- memory -----------------------------------------------------------------------------------
    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Bytes per crystal of ``num_nodes`` atoms: both networks' capped neighbour graphs grow with the atoms
        (memory.py, for the ``dimenet_pp`` encoder and ``gemnet_t`` denoiser; other parts get the base class's
        generous default)."""
        if (self._graphs[0]["name"], self._graphs[1]["name"]) != ("dimenet_pp", "gemnet_t"):
            return super().memory_cost(num_nodes, training=training)
        return memory.memory_cost(*self._graphs, num_nodes, training)

    def max_sample_nodes(self) -> int:
        """The num-atoms head predicts N in 1..max_atoms."""
        return self.max_atoms

    # -- training -----------------------------------------------------------------------------------
    def on_train_epoch(self, epoch: int, max_epochs: int) -> None:
        self._epoch = epoch

    @property
    def teacher_forcing(self) -> bool:
        """The decoder sees the true lattice while epoch <= teacher_forcing_max_epoch (official code, 0-based)."""
        return self.training and self._epoch <= self.teacher_forcing_max_epoch

    def _noisy_decoder_inputs(self, batch: Batch, teacher_forcing: bool) -> tuple[tuple, dict[str, Any]]:
        """Encode, predict the aggregate properties and corrupt the crystal: ((state, t, condition) of the decoder,
        everything the losses need)."""
        num_atoms, crystal = batch.num_atoms, batch.batch
        mu, logvar = self.encoder(batch)
        z = reparameterize(mu, logvar)
        lattice_pred = self.heads.standardised_lattice(z)
        composition_logits = self.heads.composition_logits(z)
        true_lattice = batch.lattice.float()
        if teacher_forcing:
            lattice_in = true_lattice
        else:  # the predicted lattice (detached: it is an input of the decoder, not trained through it)
            lengths, angles = self.heads.lattice_params(lattice_pred.detach(), num_atoms)
            predicted, plausible, _ = predicted_cells(lengths, angles, num_atoms)
            lattice_in = torch.where(plausible[:, None, None], predicted.to(true_lattice.dtype), true_lattice)
        coord_process = self.process_as("frac_coords", NoiseProcess)
        type_process = self.process_as("atom_types", NoiseProcess)
        levels = coord_process.num_steps
        t_coord = torch.randint(1, levels + 1, (batch.num_graphs,), device=num_atoms.device)
        t_type = torch.randint(1, levels + 1, (batch.num_graphs,), device=num_atoms.device) if self.independent_levels else t_coord
        coords = coord_process.add_noise(batch.frac_coords.float(), t_coord[crystal], lattice=lattice_in, num_atoms=num_atoms)
        types = type_process.add_noise(batch.atom_types, t_type[crystal], num_atoms=num_atoms,
                                       composition=torch.softmax(composition_logits.detach(), dim=-1))
        condition = Condition(batch.num_graphs, {}, num_atoms.device, data={"z": z, "num_atoms": num_atoms, "lattice": lattice_in})
        inputs = ({"frac_coords": coords.x_t, "atom_types": types.x_t}, t_coord, condition)
        return inputs, {"mu": mu, "logvar": logvar, "z": z, "lattice_pred": lattice_pred,
                        "composition_logits": composition_logits, "coords": coords, "types": types}

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        num_atoms, crystal = batch.num_atoms, batch.batch
        inputs, aux = self._noisy_decoder_inputs(batch, self.teacher_forcing)
        prediction = self.decoder(*inputs)
        coord_out, type_logits = prediction["frac_coords"], prediction["atom_types"]
        z, mu, logvar = aux["z"], aux["mu"], aux["logvar"]
        true_params = scaled_lattice_params(batch.lattice.double(), num_atoms)

        parts = {
            "num_atoms": F.cross_entropy(self.heads.num_atoms_logits(z), num_atoms - 1),
            "lattice": F.mse_loss(aux["lattice_pred"], self.heads.lattice_scaler.transform(true_params).float()),
            "composition": _crystal_mean(F.cross_entropy(aux["composition_logits"][crystal], batch.atom_types - 1,
                                                         reduction="none"), crystal, batch.num_graphs),
            "coord": _crystal_mean(self.process_as("frac_coords", NoiseProcess).loss(coord_out, aux["coords"]), crystal,
                                   batch.num_graphs),
            "type": _crystal_mean(self.process_as("atom_types", NoiseProcess).loss(type_logits, aux["types"]), crystal,
                                  batch.num_graphs),
            "kl": torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1)),
        }
        if self.property is not None:
            target = self.heads.standardise_property(batch[PROPERTY_PREFIX + self.property])
            parts["property"] = F.mse_loss(self.heads.standardised_property(z), target.float())
        weighted = [self.loss_weights[k] * v for k, v in parts.items()]
        total = sum(weighted[1:], weighted[0])
        if self.training or self.validation_loss == "total":
            parts["loss"] = total
        else:  # the official validation loss, which drives the LR schedule and model selection
            parts["loss"] = self.loss_weights["coord"] * parts["coord"] + self.loss_weights["type"] * parts["type"]
            parts["total_loss"] = total
            parts.update(self._validation_metrics(z, aux["lattice_pred"], type_logits, batch))
        return parts

    def _validation_metrics(self, z: Tensor, lattice_pred: Tensor, type_logits: Tensor, batch: Batch) -> dict[str, Tensor]:
        """The official validation diagnostics: N accuracy, lattice errors with the true N, type accuracy."""
        num_atoms = batch.num_atoms
        lengths, angles = self.heads.lattice_params(lattice_pred.double(), num_atoms)
        true_lengths, true_angles = lattice_matrix_to_params(batch.lattice.double())
        correct = (type_logits.argmax(-1) + 1 == batch.atom_types).float()
        return {
            "natom_accuracy": (self.heads.predict_num_atoms(z) == num_atoms).float().mean(),
            "lengths_mard": ((lengths - true_lengths).abs() / true_lengths).mean().float(),
            "angles_mae": (angles - true_angles).abs().mean().float(),
            "type_accuracy": _crystal_mean(correct, batch.batch, batch.num_graphs),
        }

    # -- sampling ---------------------------------------------------------------------------------
    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """z ~ N(0, I) for each requested crystal, then its N, lattice and composition (Algorithm 1, line 2)."""
        self.check_request(request)
        device = next(self.parameters()).device
        return self.condition_from_latent(torch.randn(request.num_samples, self.latent_dim, device=device))

    def condition_from_latent(self, z: Tensor) -> Condition:
        """Everything fixed while sampling from latent codes z (B, latent_dim): N = argmax of its head, the lattice
        predicted with that N, the composition softmax; the processes get them as keyword arguments."""
        z = z.detach()
        with torch.no_grad():
            num_atoms = self.heads.predict_num_atoms(z)
            lengths, angles = self.heads.lattice_params(self.heads.standardised_lattice(z).double(), num_atoms)
            lattice, plausible, reasons = predicted_cells(lengths, angles, num_atoms)
            lattice = lattice.to(z.dtype)
            composition = torch.softmax(self.heads.composition_logits(z), dim=-1)
        rows = int(num_atoms.sum())
        return Condition(
            num_crystals=z.shape[0],
            shapes={"frac_coords": (rows, 3), "atom_types": (rows,)},
            device=z.device,
            process_args={"frac_coords": {"lattice": lattice, "num_atoms": num_atoms},
                          "atom_types": {"composition": composition, "num_atoms": num_atoms}},
            data={"z": z, "num_atoms": num_atoms, "lattice": lattice, "plausible": plausible, "reasons": reasons},
        )

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """The decoder is not conditioned on the level (D.3); the processes scale its output by sigma_t."""
        z = condition.data["z"]
        return self.decoder({"frac_coords": state["frac_coords"].to(z.dtype), "atom_types": state["atom_types"]}, t, condition)

    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        d = condition.data
        cell = {"lattice": d["lattice"], "frac_coords": state["frac_coords"], "atom_types": state["atom_types"],
                "num_atoms": d["num_atoms"]}
        decoded = self.structure_decoder(cell, condition)
        return [Decoded(None, reason) if reason is not None else item for item, reason in zip(decoded, d["reasons"], strict=True)]

    # -- tasks --------------------------------------------------------------------------------------
    def reconstruct(self, batch: Batch, sampler: Sampler, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Encode each crystal, sample z from q(z | M) (as the official evaluation does), and decode it with the
        sampler; N and the lattice come from the aggregate predictors (section 4.1)."""
        self.require_task("reconstruct")
        with torch.no_grad():
            mu, logvar = self.encoder(batch)
            condition = self.condition_from_latent(reparameterize(mu, logvar, generator))
        return self.decode(sampler.run(self.as_sampling_model(), condition, generator=generator), condition)

    def optimize(self, batch: Batch, sampler: Sampler, *, direction: str = "min", steps: int | None = None,
                 generator: torch.Generator | None = None) -> list[Decoded]:
        """Gradient descent (ascent for ``"max"``) on z with Adam on the property head's prediction, from each
        crystal's sampled latent code; decodes the trajectory every ``optimization.decode_every`` steps and after
        the last (appendix G.3, official ``optimization``). Returns ``len(batch) * decodes`` crystals, input-major,
        each with ``info`` ``opt_step`` and ``predicted_property`` (the head's value, in the data's units)."""
        self.require_task("optimize")
        if self.heads.fc_property is None:
            raise UnsupportedRequestError("this CDVAE checkpoint has no property head: train with model.property=<name> "
                                          "(e.g. formation_energy_per_atom on mp_20) to optimise")
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
        steps = int(steps or self.optimization["steps"])
        every = int(self.optimization["decode_every"])
        sign = 1.0 if direction == "min" else -1.0
        with torch.no_grad():
            mu, logvar = self.encoder(batch)
            z = reparameterize(mu, logvar, generator)
        z = z.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=float(self.optimization["lr"]))
        snapshots: list[tuple[int, Tensor]] = []
        with torch.enable_grad():
            for i in range(steps):
                objective = sign * self.heads.standardised_property(z).mean()
                z.grad, = torch.autograd.grad(objective, [z])
                optimizer.step()
                if i % every == 0 or i == steps - 1:
                    snapshots.append((i + 1, z.detach().clone()))
        per_snapshot = []
        for step, code in snapshots:
            condition = self.condition_from_latent(code)
            with torch.no_grad():
                predicted = self.heads.property_value(code).tolist()
            decoded = self.decode(sampler.run(self.as_sampling_model(), condition, generator=generator), condition)
            for item, value in zip(decoded, predicted, strict=True):
                item.info.update(opt_step=step, predicted_property=value, direction=direction)
            per_snapshot.append(decoded)
        return [per_snapshot[k][b] for b in range(batch.num_graphs) for k in range(len(snapshots))]


def _crystal_mean(per_atom: Tensor, crystal: Tensor, num_crystals: int) -> Tensor:
    """Average over each crystal's atoms, then over crystals (every crystal weighs the same, as in CDVAE)."""
    return scatter(per_atom, crystal, dim=0, dim_size=num_crystals, reduce="mean").mean()
