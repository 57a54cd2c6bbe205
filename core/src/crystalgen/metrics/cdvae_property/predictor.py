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
from crystalgen.metrics.properties import PropertyPredictor

#: The targets of CDVAE's three models; CDVAE reports its energy property in eV/atom for all three datasets.
TARGET_UNITS = {"heat_ref": "eV/atom", "energy_per_atom": "eV/atom", "formation_energy_per_atom": "eV/atom"}

#: Bumped whenever graph building or the forward pass changes, so cached predictions are recomputed.
PIPELINE_VERSION = "1"

_ARCHITECTURE_FIELDS = (
    "num_targets", "hidden_channels", "num_blocks", "int_emb_size", "basis_emb_size", "out_emb_channels",
    "num_spherical", "num_radial", "cutoff", "envelope_exponent", "num_before_skip", "num_after_skip",
    "num_output_layers", "readout",
)  # fmt: skip


class CDVAEPropertyPredictor(PropertyPredictor):
    """One CDVAE property model (a folder with hparams.yaml, epoch=*.ckpt and prop_scaler.pt).

    ``workers`` processes build the CrystalNN graphs (default: all available cores); ``batch_size`` crystals
    go through DimeNet++ at once.
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

    @functools.cached_property
    def cache_identity(self) -> str:
        digest = hashlib.sha256()
        for key in ("checkpoint", "prop_scaler"):
            digest.update(Path(self.checkpoint.files[key]).read_bytes())
        return f"cdvae-property/{PIPELINE_VERSION}/{digest.hexdigest()[:16]}"

    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        """Predicted ``target`` per structure in ``units``; NaN where CrystalNN fails, an element is beyond the
        model's embedding (Z >= 95) or the output is not finite."""
        niggli = bool(self.checkpoint.data_hparams.get("niggli", True))
        primitive = bool(self.checkpoint.data_hparams.get("primitive", False))
        out = np.full(len(structures), np.nan)
        pending: list[tuple[int, CrystalGraph]] = []
        graphs = crystalnn_graphs(structures, niggli=niggli, primitive=primitive, workers=self.workers, progress=self.progress)
        num_species = self.model.emb.emb.num_embeddings  # the embedding covers Z < 95
        for index, graph in enumerate(graphs):
            if isinstance(graph, CrystalGraph) and graph.atom_types.max() < num_species:
                pending.append((index, graph))
            if len(pending) == self.batch_size:
                self._predict_batch(pending, out)
                pending = []
        if pending:
            self._predict_batch(pending, out)
        return out

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
