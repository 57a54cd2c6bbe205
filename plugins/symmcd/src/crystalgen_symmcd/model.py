"""The SymmCD model recipe: p(C') = p(k, X', S, A' | M, G) p(M | G) p(G) (paper section 4.3).

Variables and the parts the presets name for them (one shared time step per crystal, T levels):
    lattice_k      (B, 6)       vp_gaussian, cosine schedule, eps prediction; the space-group mask and the
                                hexagonal offset travel as a Constraint (App. B, D)
    frac_coords    (M, 3)       wrapped_normal on the torus (variance exploding, as the official code; the
                                paper's Algorithm 1 line 7 writes a VP form), normalised-score prediction
    atom_types     (M,)         d3pm_marginal towards the training marginal over Z = 1..94, logits
    site_symmetry  (M, 15)      d3pm_marginal per axis towards the per-space-group marginal (13 classes), logits
The transform is ``symmcd_asymmetric_unit``, the denoiser ``symmcd``, the decoder ``symmcd_wyckoff``. p(G) and
p(M | G) are not diffused: prepare_sampling draws them (or takes the requested space group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch_geometric.data import Batch, Data

from crystalgen import (
    Condition,
    Constraint,
    ContinuousProcess,
    D3PMMarginal,
    Decoded,
    GenerativeModel,
    ModelSpec,
    NoiseProcess,
    SampleRequest,
    UnsupportedRequestError,
    Variable,
    space_group_k_masks,
)
from crystalgen_symmcd import config_upgrade, memory
from crystalgen_symmcd.denoiser import NUM_ELEMENTS
from crystalgen_symmcd.statistics import NUM_SPACE_GROUPS, count
from crystalgen_symmcd.symmetry.axes import NUM_AXES
from crystalgen_symmcd.symmetry.site_symmetry import NUM_SITE_CLASSES
from crystalgen_symmcd.symmetry.space_group import all_space_group_encodings

#: The 10 most common MP-20 space groups, the paper's "10 SGs" variant (section 5.2, footnote 4).
TOP10_SPACEGROUPS = (2, 12, 14, 62, 63, 139, 166, 194, 221, 225)
#: Widening of the training range of k used to clip x0_hat while sampling (fraction of the range, and absolute).
K_RANGE_MARGIN = 0.1
VARIABLES = ("lattice_k", "frac_coords", "atom_types", "site_symmetry")


class SymmCD(GenerativeModel):
    """SymmCD (Levy et al., ICLR 2025). Conditions: ``spacegroup``. Request option ``spacegroup_prior``
    (``crystalgen sample symmcd --option spacegroup_prior=top10``; default ``model.spacegroup_prior``):
    ``"data"`` (p(G) of the training set) or ``"top10"`` (p(G) restricted to TOP10_SPACEGROUPS)."""

    name = "symmcd"
    default_sampler = "ancestral"
    conditions = frozenset({"spacegroup"})
    request_options = frozenset({"spacegroup_prior"})
    config_package = "crystalgen_symmcd.configs"
    spec = ModelSpec(
        # lattice_k: clip_lattice_eps reads the prediction as eps
        variables={"lattice_k": Variable("continuous", "real", predictions=frozenset({"eps"})),
                   "frac_coords": Variable("continuous", "torus"),
                   "atom_types": Variable("categorical", "classes"),
                   "site_symmetry": Variable("categorical", "classes", frozenset({"marginal"}))},
        conditions=frozenset({"spacegroup", "crystal", "encoding"}),
        fields=frozenset({"spacegroup", "lattice_k", "frac_coords", "atom_types", "site_symmetry"}),
        decodes=frozenset({"lattice_k", "frac_coords", "atom_types", "site_symmetry"}),
    )

    spacegroup_probs: Tensor
    representatives_probs: Tensor
    site_symmetry_marginals: Tensor
    lattice_k_range: Tensor

    def __init__(self, cfg: DictConfig | dict) -> None:
        super().__init__()
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        self.cfg = cfg
        T = int(cfg.num_steps)
        self.num_steps = T
        self.max_representatives = int(cfg.max_representatives)
        self.spacegroup_prior = str(cfg.spacegroup_prior)
        self.loss_weights = {var: float(cfg.loss_weights[var]) for var in VARIABLES}
        parts = self.assemble(cfg)
        self.processes = parts.processes()
        self.denoiser = parts.build("denoiser")
        self.decoder = parts.build("decoder")
        self.register_buffer("spacegroup_probs", torch.zeros(NUM_SPACE_GROUPS + 1, dtype=torch.float64))
        self.register_buffer("representatives_probs", torch.zeros(NUM_SPACE_GROUPS + 1, self.max_representatives + 1, dtype=torch.float64))
        self.register_buffer("site_symmetry_marginals",
                             torch.full((NUM_SPACE_GROUPS + 1, NUM_AXES, NUM_SITE_CLASSES), 1.0 / NUM_SITE_CLASSES, dtype=torch.float64))
        self.register_buffer("lattice_k_range", torch.tensor([[-math.inf] * 6, [math.inf] * 6], dtype=torch.float64))
        # Derived per space group on first use (all 230 take seconds); a pure function of G, so neither saved nor
        # a buffer (DDP would broadcast rank 0's partly filled table over the other ranks').
        self._encodings: dict[torch.device, Tensor] = {}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        """A section saved by crystalgen-symmcd 0.1 (parts not yet named) in today's shape (config_upgrade.py)."""
        return config_upgrade.upgrade(cfg)

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """T for every process; 94 element classes; 13 site-symmetry classes per axis, uniform until
        fit_statistics; the largest M for the transform."""
        steps = {"num_steps": int(cfg.num_steps)}
        uniform = torch.full((NUM_AXES, NUM_SITE_CLASSES), 1.0 / NUM_SITE_CLASSES)
        return {"transform": {"max_representatives": cfg.max_representatives},
                "processes.lattice_k": steps, "processes.frac_coords": steps,
                "processes.atom_types": {**steps, "num_classes": NUM_ELEMENTS},
                "processes.site_symmetry": {**steps, "num_classes": NUM_SITE_CLASSES, "marginal": uniform}}

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """p(G), p(M | G), the atom-type marginal and the per-space-group site-symmetry marginals."""
        stats = count(train, self.max_representatives)
        self.spacegroup_probs.copy_(stats.spacegroup_probs())
        self.representatives_probs.copy_(stats.representatives_probs())
        self.process_as("atom_types", D3PMMarginal).set_marginal(stats.atom_type_marginal())
        self.site_symmetry_marginals.copy_(stats.site_symmetry_marginals())
        k = torch.cat([item.lattice_k for item in train]).double()
        lo, hi = k.min(0).values, k.max(0).values
        margin = K_RANGE_MARGIN * (hi - lo) + K_RANGE_MARGIN
        self.lattice_k_range.copy_(torch.stack([lo - margin, hi + margin]))

    # -- memory -----------------------------------------------------------------------------------
    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Bytes per crystal of ``num_nodes`` representatives: the ``symmcd`` denoiser's M^2 pairs dominate
        (memory.py); another denoiser gets the base class's generous default."""
        if self.cfg.denoiser.name != "symmcd":
            return super().memory_cost(num_nodes, training=training)
        return memory.memory_cost(self.cfg.denoiser, num_nodes, training)

    def max_sample_nodes(self) -> int:
        """The largest M that p(M | G) gives any weight (max_representatives before fit_statistics)."""
        sizes = torch.nonzero(self.representatives_probs.sum(0) > 0).flatten()
        return int(sizes.max()) if sizes.numel() else self.max_representatives

    def encode_spacegroups(self, spacegroups: Tensor) -> Tensor:
        """(B,) numbers -> (B, 397) binary encodings (appendix C), gathered from the table of all 230 groups; the
        table is kept per device outside the state dict (DDP broadcasts buffers) and built on first use (~2 s)."""
        table = self._encodings.get(spacegroups.device)
        if table is None:
            table = torch.from_numpy(all_space_group_encodings()).to(device=spacegroups.device, dtype=torch.float32)
            self._encodings[spacegroups.device] = table
        return table.index_select(0, spacegroups)

    # -- training -----------------------------------------------------------------------------------
    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Algorithm 1: one t per crystal shared by all variables; weighted sum of the four losses, each
        averaged over rows (representatives or crystals), as in the official code."""
        crystal, B = batch.batch, batch.num_graphs
        spacegroup = batch.spacegroup
        t = torch.randint(1, self.num_steps + 1, (B,), device=crystal.device)
        mask, fill = space_group_k_masks(spacegroup, torch.float32)
        site_marginal = self.site_symmetry_marginals[spacegroup[crystal]]

        proc = {var: self.process_as(var, NoiseProcess) for var in VARIABLES}
        k = proc["lattice_k"].add_noise(batch.lattice_k.float(), t)
        k_t = torch.where(mask, k.x_t, fill)
        x = proc["frac_coords"].add_noise(torch.remainder(batch.frac_coords.float(), 1.0), t[crystal])
        a = proc["atom_types"].add_noise(batch.atom_types - 1, t[crystal])
        s = proc["site_symmetry"].add_noise(batch.site_symmetry, t[crystal], marginal=site_marginal)

        noisy = {"lattice_k": k_t, "frac_coords": x.x_t, "atom_types": a.x_t, "site_symmetry": s.x_t}
        data = {"spacegroup": spacegroup, "crystal": crystal, "encoding": self.encode_spacegroups(spacegroup)}
        pred = self.denoiser(noisy, t, Condition(B, {}, crystal.device, data=data))
        losses = {
            # paper App. D: || m * eps - eps_hat ||^2, so the network learns to output 0 on fixed entries
            "lattice_k": ((pred["lattice_k"] - mask * k.target) ** 2).mean(),
            "frac_coords": proc["frac_coords"].loss(pred["frac_coords"], x).mean(),
            "atom_types": proc["atom_types"].loss(pred["atom_types"], a).mean(),
            "site_symmetry": proc["site_symmetry"].loss(pred["site_symmetry"], s).mean(),
        }
        losses["loss"] = sum(self.loss_weights[var] * losses[var] for var in VARIABLES)
        return losses

    # -- sampling ---------------------------------------------------------------------------------
    def check_request(self, request: SampleRequest) -> None:
        """Conditions, and the prior's name before any sampling starts."""
        super().check_request(request)
        self._prior(request)

    def _prior(self, request: SampleRequest) -> str:
        prior = str(request.options.get("spacegroup_prior", self.spacegroup_prior))
        if prior not in ("data", "top10"):
            raise UnsupportedRequestError(f"spacegroup_prior must be 'data' or 'top10', got {prior!r}")
        return prior

    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """Algorithm 2, inputs: G (requested or ~ p(G)), M ~ p(M | G), and the fixed parts of each process."""
        self.check_request(request)
        if float(self.spacegroup_probs.sum()) == 0:
            raise RuntimeError("the model has no training statistics (p(G), p(M|G)); call fit_statistics first or load a trained checkpoint")
        device = self.spacegroup_probs.device
        spacegroup = self._spacegroups(request).to(device)
        num_reps = torch.multinomial(self.representatives_probs[spacegroup].float(), 1).squeeze(1)
        if bool((num_reps == 0).any()):  # p(M|G) puts mass on M >= 1 only; guard all the same
            num_reps = num_reps.clamp(min=1)
        B = len(spacegroup)
        crystal = torch.repeat_interleave(torch.arange(B, device=device), num_reps)
        rows = int(num_reps.sum())
        mask, fill = space_group_k_masks(spacegroup, torch.float32)
        return Condition(
            num_crystals=B,
            shapes={"lattice_k": (B, 6), "frac_coords": (rows, 3), "atom_types": (rows,), "site_symmetry": (rows, NUM_AXES)},
            device=device,
            constraints={"lattice_k": Constraint(mask, fill)},
            process_args={"site_symmetry": {"marginal": self.site_symmetry_marginals[spacegroup[crystal]]}},
            data={"spacegroup": spacegroup, "crystal": crystal, "encoding": self.encode_spacegroups(spacegroup)},
        )

    def _spacegroups(self, request: SampleRequest) -> Tensor:
        n = request.num_samples
        if request.spacegroup is not None:
            numbers = request.spacegroup if isinstance(request.spacegroup, list) else [request.spacegroup] * n
            if len(numbers) != n or any(not 1 <= int(g) <= NUM_SPACE_GROUPS for g in numbers):
                raise UnsupportedRequestError(f"spacegroup must be one number in 1..230 or one per crystal ({n}); got {request.spacegroup}")
            return torch.tensor([int(g) for g in numbers], dtype=torch.long)
        probs = self.spacegroup_probs.float().cpu().clone()
        if self._prior(request) == "top10":
            keep = torch.zeros_like(probs, dtype=torch.bool)
            keep[list(TOP10_SPACEGROUPS)] = True
            probs = torch.where(keep, probs, torch.zeros_like(probs))
            if float(probs.sum()) == 0:  # none of the ten groups seen in training: sample them uniformly
                probs = keep.float()
        return torch.multinomial(probs, n, replacement=True)

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        pred = self.denoiser(state, t, condition)
        pred["lattice_k"] = self.clip_lattice_eps(pred["lattice_k"], state["lattice_k"], t)
        return pred

    def clip_lattice_eps(self, eps: Tensor, k_t: Tensor, t: Tensor) -> Tensor:
        """eps_hat of k rewritten so that the clean k it implies, (k_t - s_t eps_hat) / a_t, lies within the
        training range of k (widened by K_RANGE_MARGIN); unchanged when it already does.

        The cosine schedule ends at a_T ~ 1e-4, so at the first levels x0_hat = (k_t - s_t eps_hat) / a_t turns a
        small error of eps_hat into an enormous k (exp of it overflows); a sampler that skips levels multiplies
        that error by a_s / a_t at once. Clipping x0_hat (diffusers' clip_sample, with a range from the data)
        keeps every sampler finite. Sampling only: training regresses eps directly.
        """
        k64, eps64 = k_t.double(), eps.double()
        a, s = self.process_as("lattice_k", ContinuousProcess).marginal(t, k64)
        x0 = (k64 - s * eps64) / a
        clipped = torch.maximum(torch.minimum(x0, self.lattice_k_range[1]), self.lattice_k_range[0])
        return torch.where(clipped == x0, eps64, (k64 - a * clipped) / s).to(eps.dtype)

    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        """Lattice from k, projection of S and X' onto Wyckoff positions of G, replication (App. A): the decoder
        reads atomic numbers, the state holds their classes Z - 1."""
        return self.decoder({**state, "atom_types": state["atom_types"] + 1}, condition)
