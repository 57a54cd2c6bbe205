"""CDVAE's independent property models as a :class:`~crystalgen.metrics.properties.PropertyPredictor`.

Pipeline per crystal, as CDVAE ran it (``CrystGNN_Supervise.forward`` on ``CrystDataset`` items): Niggli cell ->
CrystalNN bonds (both directions, with images) -> edge vectors from our periodic geometry -> DimeNet++ triplets
with CDVAE's rule (k != i by atom index) -> DimeNet++ -> mean over atoms -> prop_scaler inverse transform.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from crystalgen.encoders.dimenet_pp.network import DimeNetPP
from crystalgen.geometry.neighbors import edge_vectors
from crystalgen.geometry.triplets import triplets
from crystalgen.metrics.cdvae_property.checkpoint import PropertyCheckpoint, read_property_checkpoint
from crystalgen.metrics.cdvae_property.crystalnn_graph import CrystalGraph, crystalnn_graphs
from crystalgen.metrics.memory import dimenet_cost
from crystalgen.metrics.properties import PropertyPredictor
from crystalgen.resources import memory_budget, over_budget_reason, pack_by_cost

#: The targets of CDVAE's three models; CDVAE reports its energy property in eV/atom for all three datasets.
TARGET_UNITS = {"heat_ref": "eV/atom", "energy_per_atom": "eV/atom", "formation_energy_per_atom": "eV/atom"}

#: Bumped whenever graph building or the forward pass changes, so cached predictions are recomputed.
PIPELINE_VERSION = "2"  # 2: graphs over the memory budget are refused (NaN)

_ARCHITECTURE_FIELDS = (
    "num_targets", "hidden_channels", "num_blocks", "int_emb_size", "basis_emb_size", "out_emb_channels",
    "num_spherical", "num_radial", "cutoff", "envelope_exponent", "num_before_skip", "num_after_skip",
    "num_output_layers", "readout",
)  # fmt: skip


class CDVAEPropertyPredictor(PropertyPredictor):
    """One CDVAE property model (a folder with hparams.yaml, epoch=*.ckpt and prop_scaler.pt).

    ``workers`` processes build the CrystalNN graphs (default: all available cores); up to ``batch_size`` crystals
    go through DimeNet++ at once, fewer when their graphs would exceed the memory budget.
    """

    def __init__(self, folder: str | Path, *, name: str | None = None, workers: int | None = None, batch_size: int = 256,
                 device: str | torch.device = "cpu", progress: bool = False) -> None:  # fmt: skip
        self.checkpoint: PropertyCheckpoint = read_property_checkpoint(folder)
        self.target = self.checkpoint.target
        self.name = name or f"cdvae:{self.checkpoint.folder.name}"
        self.units = TARGET_UNITS.get(self.target, "dataset units")
        self.description = (
            f"CDVAE property model {self.checkpoint.folder.name} (DimeNet++ on CrystalNN graphs, epoch "
            f"{self.checkpoint.epoch}) predicting {self.target}"
        )
        self.workers, self.batch_size, self.progress = workers, int(batch_size), progress
        self.device = torch.device(device)
        hparams = self.checkpoint.encoder_hparams
        with torch.device("meta"):  # every weight comes from the checkpoint: skip 109 orthogonal inits (seconds)
            self.model = DimeNetPP(**{k: hparams[k] for k in _ARCHITECTURE_FIELDS if k in hparams})
        self.model.load_state_dict(self.checkpoint.encoder_state, strict=True, assign=True)
        self.model.eval().to(self.device)

    # a cached_property can be assigned like the base class's attribute (a non-data descriptor); mypy takes it for a
    # read-only property
    @functools.cached_property
    def cache_identity(self) -> str:  # type: ignore[override]
        digest = hashlib.sha256()
        for key in ("checkpoint", "prop_scaler"):
            digest.update(Path(self.checkpoint.files[key]).read_bytes())
        return f"cdvae-property/{PIPELINE_VERSION}/{digest.hexdigest()[:16]}"

    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        """Predicted ``target`` per structure in ``units``; NaN where CrystalNN fails, an element is beyond the
        model's embedding (Z >= 95), the graph alone would exceed the memory budget, or the output is not finite."""
        return self.predict_with_reasons(structures)[0]

    def predict_with_reasons(self, structures: Sequence[Structure]) -> tuple[np.ndarray, list[str]]:
        """:meth:`predict`, and for each crystal why it was refused for the memory budget ("" if it was not).

        DimeNet++ batches hold at most ``batch_size`` crystals and at most the budget, by the cost of each graph's
        atoms, edges and triplets, counted before the triplets are listed."""
        niggli = bool(self.checkpoint.data_hparams.get("niggli", True))
        primitive = bool(self.checkpoint.data_hparams.get("primitive", False))
        out = np.full(len(structures), np.nan)
        reasons = [""] * len(structures)
        graphs = crystalnn_graphs(structures, niggli=niggli, primitive=primitive, workers=self.workers, progress=self.progress)
        num_species = self.model.emb.emb.num_embeddings  # the embedding covers Z < 95
        usable = [(i, g) for i, g in enumerate(graphs) if isinstance(g, CrystalGraph) and g.atom_types.max() < num_species]
        costs = [dimenet_cost(*self.graph_counts(g)) for _, g in usable]
        budget = memory_budget()
        batches, refused = pack_by_cost(costs, budget, max_items=self.batch_size)
        for k in refused:
            index, graph = usable[k]
            atoms, edges, trip = self.graph_counts(graph)
            what = f"its DimeNet++ graph ({edges} CrystalNN edges, up to {trip} triplets)"
            reasons[index] = over_budget_reason(what, costs[k], budget, structure=structures[index])
        for batch in batches:
            self._predict_batch([usable[k] for k in batch], out)
        return out, reasons

    @staticmethod
    def graph_counts(graph: CrystalGraph) -> tuple[int, int, int]:
        """(atoms, directed edges, an upper bound of the triplets: the edges into each edge's source, summed)."""
        num_atoms = len(graph.atom_types)
        source, target = graph.edge_index
        into = np.bincount(target, minlength=num_atoms)
        return num_atoms, int(source.size), int(into[source].sum())

    @torch.inference_mode()
    def _predict_batch(self, items: list[tuple[int, CrystalGraph]], out: np.ndarray) -> None:
        graphs = [g for _, g in items]
        num_atoms = torch.tensor([len(g.atom_types) for g in graphs])
        atom_start = np.concatenate([[0], np.cumsum(num_atoms.numpy())[:-1]])
        edge_index = torch.from_numpy(np.concatenate([g.edge_index + s for g, s in zip(graphs, atom_start, strict=True)], axis=1))
        offsets = torch.from_numpy(np.concatenate([g.cell_offsets for g in graphs]))
        frac = torch.from_numpy(np.concatenate([g.frac_coords for g in graphs]))
        lattice = torch.from_numpy(np.stack([g.lattice for g in graphs]))
        atom_types = torch.from_numpy(np.concatenate([g.atom_types for g in graphs]))
        num_nodes = int(num_atoms.sum())
        vectors = edge_vectors(frac, lattice, num_atoms, edge_index, offsets).float()
        trip = triplets(edge_index, offsets, num_nodes, exclude_same_atom=True)
        batch = torch.repeat_interleave(torch.arange(len(graphs)), num_atoms)
        dev = self.device
        standardised = self.model(
            atom_types.to(dev), edge_index.to(dev), vectors.to(dev), trip.idx_kj.to(dev), trip.idx_ji.to(dev), batch.to(dev), len(graphs)
        )
        values = self.checkpoint.prop_scaler.inverse_transform(standardised[:, 0].cpu()).double().numpy()
        for (index, _), value in zip(items, values, strict=True):
            out[index] = value if np.isfinite(value) else np.nan
