"""SyMat (Luo, Liu & Ji, NeurIPS 2023): p(M) = p(A) p(L) p(P | A, L).

* A and L: a VAE. The encoder (``model.encoder``, SphereNet ``spherenet``) maps the crystal to (z^A, z^L); the
  decoders (heads.py) rebuild the atom-type set and the six lattice parameters (section 3.3, appendix B).
* P given A and L: score matching on interatomic distances. The denoiser (``model.denoiser``, ``distance_score``)
  outputs one score per edge of the noisy crystal's multigraph, mapped to the atoms by eq. (3); it is trained on
  the distance targets of targets.py, normalised by the per-level std sigma_hat_t fitted on perturbed training
  crystals (``fit_statistics``), or, with ``score_target: coordinate``, on the coordinate targets of the paper's
  ablation (Table 3). The noise is the core's ``cartesian_ve`` process (Cartesian Gaussian noise, 50 geometric
  levels 10 -> 0.01 Angstrom), so every score sampler of the core applies: annealed Langevin (Algorithm 1) by
  default, predictor-corrector as a swap.

Loss = 1 k + 30 elements + 1 counts + 10 lattice + 0.01 KL + 10 score (+ property). Every choice where the paper
and the official code differ is listed in docs/symat.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from crystalgen import (
    PROPERTY_PREFIX,
    Condition,
    ContinuousProcess,
    Decoded,
    GenerativeModel,
    ModelSpec,
    Sampler,
    SampleRequest,
    UnsupportedRequestError,
    Variable,
    cached_statistics,
    reparameterize,
)
from crystalgen_symat import config_upgrade, memory
from crystalgen_symat.heads import Composition, CompositionLatticeHeads, mlp
from crystalgen_symat.heads import Decoded as DecodedVAE
from crystalgen_symat.score import per_atom
from crystalgen_symat.targets import NORM_BATCH_SIZE, NORM_SEED, aligned_displacement, distance_change, fit_distance_std

CELL = frozenset({"frac_coords", "lattice", "atom_types", "num_atoms"})
LOSS_PARTS = ("k", "elements", "counts", "lattice", "kl", "score", "property")
SCORE_TARGETS = ("distance", "coordinate")
DISTANCE_LOSSES = ("edge", "node")
#: Stand-in for a crystal whose decoded lattice or atom count is unusable: one atom in a 5 Angstrom cube, so the
#: batch still samples; the crystal is reported as failed with its reason.
PLACEHOLDER_EDGE = 5.0


class SyMat(GenerativeModel):
    """Symmetry-aware VAE + distance score model. Constructor arguments are the ``model`` section of the presets
    (configs/*.yaml, every key documented there)."""

    name = "symat"
    default_sampler = "langevin"
    tasks = frozenset({"generate", "reconstruct", "optimize", "fit_property_head"})
    config_package = "crystalgen_symat.configs"
    distance_std: Tensor
    property_mean: Tensor
    property_std: Tensor
    spec = ModelSpec(
        variables={"frac_coords": Variable("continuous", "cell", frozenset({"lattice", "num_atoms"}))},
        conditions=frozenset({"z", "atom_types", "lattice", "num_atoms", "reasons"}),
        fields=CELL,
        decodes=CELL,
        encodes=frozenset({"gaussian_posterior"}),
    )

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        c = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        unknown = set(c["loss_weights"]) - set(LOSS_PARTS)
        if unknown:
            raise ValueError(f"model.loss_weights has unknown parts {sorted(unknown)}; parts: {', '.join(LOSS_PARTS)}")
        if c["score_target"] not in SCORE_TARGETS:
            raise ValueError(f"model.score_target must be one of {SCORE_TARGETS}, got {c['score_target']!r}")
        if c["distance_loss"] not in DISTANCE_LOSSES:
            raise ValueError(f"model.distance_loss must be one of {DISTANCE_LOSSES}, got {c['distance_loss']!r}")
        self.loss_weights = {part: float(c["loss_weights"].get(part, 0.0)) for part in LOSS_PARTS}
        self.latent_dim, self.lattice_latent_dim = int(c["latent_dim"]), int(c["lattice_latent_dim"])
        self.max_atoms, self.num_elements = int(c["max_atoms"]), int(c["num_elements"])
        self.score_target, self.distance_loss = c["score_target"], c["distance_loss"]
        self.norm_crystals = int(c["norm_crystals"])
        self.property = c["property"]
        self.optimization = dict(c["optimization"])
        self._graphs = (c["encoder"], c["denoiser"])  # the sections memory.py reads

        parts = self.assemble(cfg)
        self.encoder = parts.build("encoder")
        self.heads = CompositionLatticeHeads(self.latent_dim, self.lattice_latent_dim, int(c["heads"]["hidden_dim"]),
                                             self.max_atoms, self.num_elements, bool(c["scale_lengths"]))
        self.score = parts.build("denoiser")
        self.processes = parts.processes()
        self.decoder = parts.build("decoder")
        steps = self.coordinates.num_steps
        self.register_buffer("distance_std", torch.ones(steps + 1, dtype=torch.float64))
        self.head_hidden = int(c["heads"]["hidden_dim"])
        self.fc_property = mlp(self.latent_dim + self.lattice_latent_dim, self.head_hidden, 1) if self.property else None
        self.register_buffer("property_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("property_std", torch.ones((), dtype=torch.float64))

    @property
    def coordinates(self) -> ContinuousProcess:
        """The process of ``frac_coords`` (the core's ``cartesian_ve`` in the presets)."""
        return self.process_as("frac_coords", ContinuousProcess)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        """A section saved before ``optimization.decode_every`` and ``optimization.head_fit`` existed gets their
        defaults (config_upgrade.py); one in today's shape comes back as it is."""
        return config_upgrade.upgrade(cfg)

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """N_max for the transform, the size of (z^A, z^L) for the encoder, the element classes, and T."""
        steps = {"num_steps": int(cfg.num_levels)}
        return {"transform": {"max_atoms": int(cfg.max_atoms)},
                "encoder": {"latent_dim": int(cfg.latent_dim) + int(cfg.lattice_latent_dim), "num_elements": int(cfg.num_elements)},
                "denoiser": {**steps, "num_elements": int(cfg.num_elements)},
                "processes.frac_coords": steps}

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """The lattice standardisation, the largest k and count, the property scaler, and sigma_hat_t: the std of the distance change of
        the score model's edges on seeded noisy copies of ``norm_crystals`` training crystals at every level
        (deterministic; cached beside the preprocessed data for these crystals and settings, and kept in the
        checkpoint as a buffer). The denoiser's output scale follows from it."""
        lattices, num_atoms = torch.stack([d.lattice.reshape(3, 3) for d in train]), torch.cat([d.num_atoms for d in train])
        types = torch.cat([d.atom_types for d in train])
        crystal = torch.repeat_interleave(torch.arange(len(train)), num_atoms)
        self.heads.fit(lattices, num_atoms, Composition.of(types, crystal, len(train), self.num_elements))
        if self.fc_property is not None:
            values = torch.cat([self._property_of(d, i) for i, d in enumerate(train)]).double()
            self.property_mean.copy_(values.mean())
            self.property_std.copy_(values.std(unbiased=False) + 1e-8)
        process, cutoff, max_neighbors = self.coordinates, self.score.cutoff, self.score.max_neighbors
        settings = {"process": type(process).__name__, "sigmas": process.sigmas.tolist(), "cutoff": cutoff,
                    "max_neighbors": max_neighbors, "crystals": self.norm_crystals, "batch_size": NORM_BATCH_SIZE,
                    "seed": NORM_SEED}
        fitted = cached_statistics(
            "symat-distance-std", train, settings,
            lambda: {"std": fit_distance_std(train, process, cutoff, max_neighbors, self.norm_crystals)})
        self.distance_std.copy_(fitted["std"])
        self.score.output_scale.copy_(self.output_scale())

    def output_scale(self) -> Tensor:
        """sigma_t / sigma_hat_t per level: maps sum o_e (-u_e) to sigma_t times the score (distance targets);
        1 for coordinate targets, whose o-sum already is sigma_t times the score."""
        if self.score_target == "coordinate":
            return torch.ones_like(self.distance_std)
        sigmas = self.coordinates.sigmas.to(self.distance_std)
        return torch.cat([torch.ones(1, dtype=sigmas.dtype), sigmas[1:] / self.distance_std[1:]])

    def _property_of(self, data: Data, index: int) -> Tensor:
        key = PROPERTY_PREFIX + str(self.property)
        if key not in data:
            raise ValueError(f"model.property={self.property!r}: training crystal {index} has no such property; "
                             f"available: {sorted(k[len(PROPERTY_PREFIX):] for k in data.keys() if k.startswith(PROPERTY_PREFIX))}")  # noqa: SIM118
        return data[key].reshape(-1)

    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Bytes per crystal of ``num_nodes`` atoms: both SphereNets' capped graphs grow with the atoms (memory.py,
        for the ``spherenet`` encoder and ``distance_score`` denoiser; other parts get the base class's default)."""
        if (self._graphs[0]["name"], self._graphs[1]["name"]) != ("spherenet", "distance_score"):
            return super().memory_cost(num_nodes, training=training)
        return memory.memory_cost(*self._graphs, num_nodes, training)

    def max_sample_nodes(self) -> int:
        """Crystals decoded with more than max_atoms atoms are replaced by a one-atom stand-in and reported."""
        return self.max_atoms

    # -- training -----------------------------------------------------------------------------------
    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(z^A, z^L) from the encoder's latent."""
        return z[:, : self.latent_dim], z[:, self.latent_dim:]

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        mu, logvar = self.encoder(batch)
        z = reparameterize(mu, logvar)
        z_a, z_l = self.split(z)
        composition = Composition.of(batch.atom_types, batch.batch, batch.num_graphs, self.num_elements)
        parts = self.heads.losses(z_a, z_l, composition, batch.lattice)
        parts["kl"] = torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1))
        parts["score"] = self.score_loss(batch)
        if self.fc_property is not None:
            target = (batch[PROPERTY_PREFIX + str(self.property)].reshape(-1).double() - self.property_mean) / self.property_std
            parts["property"] = F.mse_loss(self.fc_property(z).squeeze(-1), target.to(z.dtype))
        parts["loss"] = torch.stack([self.loss_weights[k] * v for k, v in parts.items()]).sum()
        return parts

    def score_loss(self, batch: Batch) -> Tensor:
        """Denoising score matching at one level per crystal (uniform over 1..T), a mean over crystals."""
        process = self.coordinates
        dtype = next(self.score.parameters()).dtype
        x0, lattice, num_atoms, crystal = batch.frac_coords.to(dtype), batch.lattice.to(dtype), batch.num_atoms, batch.batch
        t = torch.randint(1, process.num_steps + 1, (batch.num_graphs,), device=x0.device)
        x_t = process.add_noise(x0, t[crystal], lattice=lattice, num_atoms=num_atoms).x_t
        out = self.score.edge_scores(x_t, lattice, num_atoms, batch.atom_types, t)
        displacement = aligned_displacement(x0, x_t, lattice, num_atoms)
        edge_index, num_nodes = out.graph.edge_index, batch.num_nodes
        if self.score_target == "coordinate":
            sigma = process.sigmas.to(dtype)[t][crystal].unsqueeze(-1)
            predicted = per_atom(out.scores, edge_index, out.edge_vec, out.scored, num_nodes)
            return _crystal_mean(((predicted - displacement / sigma) ** 2).sum(-1), crystal, batch.num_graphs)
        edge_crystal = crystal[edge_index[1]]
        target = distance_change(edge_index, out.edge_vec, displacement) / self.distance_std.to(dtype)[t][edge_crystal]
        if self.distance_loss == "node":
            predicted = per_atom(out.scores, edge_index, out.edge_vec, out.scored, num_nodes)
            wanted = per_atom(target, edge_index, out.edge_vec, out.scored, num_nodes)
            return _crystal_mean(((predicted - wanted) ** 2).sum(-1), crystal, batch.num_graphs)
        scored = out.scored.nonzero().squeeze(1)
        errors = (out.scores - target)[scored] ** 2
        return _crystal_mean(errors, edge_crystal[scored], batch.num_graphs)

    # -- sampling ---------------------------------------------------------------------------------
    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """z ~ N(0, I), then the atom-type multiset and the lattice (section 3.3); the coordinates are sampled."""
        self.check_request(request)
        device = self.distance_std.device
        dtype = next(self.parameters()).dtype
        return self.condition_from_latent(torch.randn(request.num_samples, self.latent_dim + self.lattice_latent_dim,
                                                      device=device, dtype=dtype))

    def decode_latent(self, z: Tensor) -> DecodedVAE:
        """The VAE decoders on latent codes z (B, latent_dim + lattice_latent_dim)."""
        with torch.no_grad():
            return self.heads.decode(*self.split(z.detach()))

    def condition_from_latent(self, z: Tensor) -> Condition:
        """Everything fixed while the coordinates are sampled. A crystal whose lattice parameters form no lattice or
        whose atom count exceeds max_atoms samples a one-atom stand-in and is decoded as a failure with the reason."""
        vae = self.decode_latent(z)
        counts, reasons = vae.composition.counts.clone(), []
        lattice = vae.lattice.clone()
        for b in range(z.shape[0]):
            n = int(counts[b].sum())
            reason = None
            if not bool(vae.valid[b]):
                reason = f"decoded lattice parameters form no lattice: lengths {vae.lengths[b].tolist()}, angles {vae.angles[b].tolist()}"
            elif n > self.max_atoms:
                reason = f"decoded {n} atoms, more than max_atoms={self.max_atoms}"
            if reason is not None:
                first = int(counts[b].nonzero()[0]) if n > 0 else 0
                counts[b] = 0
                counts[b, first] = 1
                lattice[b] = torch.eye(3, dtype=lattice.dtype, device=lattice.device) * PLACEHOLDER_EDGE
            reasons.append(reason)
        composition = Composition(counts)
        num_atoms, atom_types = composition.num_atoms, composition.atom_types()
        lattice = lattice.to(z.dtype)
        return Condition(
            num_crystals=z.shape[0],
            shapes={"frac_coords": (int(num_atoms.sum()), 3)},
            device=z.device,
            process_args={"frac_coords": {"lattice": lattice, "num_atoms": num_atoms}},
            data={"z": z.detach(), "atom_types": atom_types, "lattice": lattice, "num_atoms": num_atoms, "reasons": reasons},
        )

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """sigma_t times the coordinate score (eq. 3); no gradient is needed: the chain rule is written out."""
        return self.score(state, t, condition)

    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        d = condition.data
        cell = {"lattice": d["lattice"], "frac_coords": state["frac_coords"], "atom_types": d["atom_types"],
                "num_atoms": d["num_atoms"]}
        decoded = self.decoder(cell, condition)
        return [Decoded(None, reason) if reason is not None else item for item, reason in zip(decoded, d["reasons"], strict=True)]

    # -- tasks --------------------------------------------------------------------------------------
    def reconstruct(self, batch: Batch, sampler: Sampler, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Encode each crystal, decode its composition and lattice from the posterior mean, and sample the
        coordinates with the sampler."""
        self.require_task("reconstruct")
        with torch.no_grad():
            mu, _ = self.encoder(batch)
        condition = self.condition_from_latent(mu)
        return self.decode(sampler.run(self.as_sampling_model(), condition, generator=generator), condition)

    def optimize(self, batch: Batch, sampler: Sampler, *, direction: str = "min", steps: int | None = None,
                 generator: torch.Generator | None = None) -> list[Decoded]:
        """Property optimisation (section 4.3): gradient steps with Adam on z of the property head's prediction
        (descent for ``"min"``), from each crystal's posterior mean. The final z is decoded (composition, lattice,
        then sampled coordinates); with ``optimization.decode_every`` also the trajectory, after CDVAE's protocol
        (after step 1, every ``decode_every`` steps, and the last), input-major. Each crystal's ``info`` has
        ``opt_step`` and ``predicted_property`` (the head's value in data units)."""
        self.require_task("optimize")
        if self.fc_property is None:
            raise UnsupportedRequestError("this SyMat checkpoint has no property head: train with model.property=<name>, "
                                          "or fit one on the frozen latents of a split that has the property "
                                          "(crystalgen optimize symat ... --fit-head-on perov_5:val --property heat_ref)")
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
        head = self.fc_property
        steps = int(steps or self.optimization["steps"])
        every = self.optimization.get("decode_every")
        sign = 1.0 if direction == "min" else -1.0
        with torch.no_grad():
            mu, _ = self.encoder(batch)
        z = mu.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=float(self.optimization["lr"]))
        snapshots: list[tuple[int, Tensor]] = []
        with torch.enable_grad():
            for i in range(steps):
                objective = sign * head(z).sum()
                z.grad, = torch.autograd.grad(objective, [z])
                optimizer.step()
                if (every and i % int(every) == 0) or i == steps - 1:
                    snapshots.append((i + 1, z.detach().clone()))
        per_snapshot = []
        for step, code in snapshots:
            with torch.no_grad():
                predicted = (head(code).squeeze(-1).double() * self.property_std + self.property_mean).tolist()
            condition = self.condition_from_latent(code)
            decoded = self.decode(sampler.run(self.as_sampling_model(), condition, generator=generator), condition)
            for item, value in zip(decoded, predicted, strict=True):
                item.info.update(opt_step=step, predicted_property=value, direction=direction)
            per_snapshot.append(decoded)
        return [per_snapshot[k][b] for b in range(batch.num_graphs) for k in range(len(snapshots))]

    def fit_property_head(self, batches: Iterable[Batch], property: str, *,
                          generator: torch.Generator | None = None) -> dict[str, Any]:
        """A new property head (the joint head's MLP) fitted on the frozen encoder's latents of the given crystals,
        for a model trained without one or on a training split that lacks the property: every other weight stays as
        it was. As the joint head, it learns from z ~ q(z | M) (``optimization.head_fit``); the epoch with the
        lowest error at the posterior means of a held-out part of the crystals is kept. Crystals whose value is not
        finite are left out. Returns the fit's summary (sizes, held-out MAE in data units against predicting the
        mean, R^2)."""
        self.require_task("fit_property_head")
        settings = self.optimization["head_fit"]
        key = PROPERTY_PREFIX + property
        mus, logvars, values = [], [], []
        with torch.no_grad():
            for batch in batches:
                if key not in batch:
                    found = sorted(k[len(PROPERTY_PREFIX):] for k in batch.keys() if k.startswith(PROPERTY_PREFIX))  # noqa: SIM118
                    raise ValueError(f"property {property!r}: the crystals to fit the head on have no such column; "
                                     f"they have: {', '.join(found) or 'none'}")
                mu, logvar = self.encoder(batch)
                mus.append(mu)
                logvars.append(logvar)
                values.append(batch[key].reshape(-1).double())
        mu, logvar, value = torch.cat(mus), torch.cat(logvars), torch.cat(values).to(mus[0].device)
        finite = torch.isfinite(value)
        mu, std_z, value = mu[finite], (0.5 * logvar[finite]).exp(), value[finite]
        n = len(value)
        n_held = int(round(float(settings["holdout"]) * n))
        if n - n_held < 2 or n_held < 1:
            raise ValueError(f"property {property!r}: {n} crystals with a finite value, too few to fit a head and "
                             f"hold out {settings['holdout']:.0%} of them")
        order = torch.randperm(n, generator=generator, device=mu.device)
        held, used = order[:n_held], order[n_held:]
        mean, std = value[used].mean(), value[used].std(unbiased=False) + 1e-8
        target = ((value - mean) / std).to(mu.dtype)
        head = mlp(self.latent_dim + self.lattice_latent_dim, self.head_hidden, 1).to(mu)
        optimizer = torch.optim.Adam(head.parameters(), lr=float(settings["lr"]))
        best: tuple[float, int, dict[str, Tensor]] = (math.inf, 0, {})
        with torch.enable_grad():
            for epoch in range(int(settings["epochs"])):
                for chunk in used[torch.randperm(len(used), generator=generator, device=mu.device)].split(int(settings["batch_size"])):
                    noise = torch.randn(mu[chunk].shape, generator=generator, device=mu.device, dtype=mu.dtype)
                    loss = F.mse_loss(head(mu[chunk] + std_z[chunk] * noise).squeeze(-1), target[chunk])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    error = float(F.mse_loss(head(mu[held]).squeeze(-1), target[held]))
                if error < best[0]:
                    best = (error, epoch + 1, {k: v.clone() for k, v in head.state_dict().items()})
        head.load_state_dict(best[2])
        self.fc_property, self.property = head, property
        self.property_mean.copy_(mean)
        self.property_std.copy_(std)
        with torch.no_grad():
            predicted = head(mu[held]).squeeze(-1).double() * std + mean
        truth = value[held]
        mae = float((predicted - truth).abs().mean())
        r2 = 1.0 - float(((predicted - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum().clamp_min(1e-30))
        return {"n_fit": len(used), "n_held_out": n_held, "n_not_finite": int((~finite).sum()),
                "epochs": int(settings["epochs"]), "best_epoch": best[1], "held_out_mae": mae,
                "held_out_mae_of_the_mean": float((truth - mean).abs().mean()), "held_out_r2": r2}


def _crystal_mean(values: Tensor, crystal: Tensor, num_crystals: int) -> Tensor:
    """Average over each crystal's rows (atoms or edges), then over crystals (a crystal without rows counts 0)."""
    return scatter(values, crystal, dim=0, dim_size=num_crystals, reduce="mean").mean()
