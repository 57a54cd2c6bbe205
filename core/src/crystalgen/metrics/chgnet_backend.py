"""CHGNet (Deng et al. 2023) as the metrics suite's interatomic potential: energies per atom, the 64-d crystal
feature vector (``crystal_fea``, the pooled atom features CHGNet's energy head reads) and bounded relaxations.

The weights ship inside the chgnet wheel, so everything here runs offline. The model version is pinned
(:data:`CHGNET_MODEL`) and written into every result that depends on it. Energies are CHGNet's (trained on
MPtrj, i.e. MP2020-compatible GGA/GGA+U total energies), in eV/atom.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from crystalgen.metrics.properties import PropertyPredictor

CHGNET_MODEL = "0.3.0"
#: Bumped when the way structures are fed to CHGNet changes, so cached outputs are recomputed.
PIPELINE_VERSION = "1"
CRYSTAL_FEA_DIM = 64


@functools.lru_cache(maxsize=4)
def load_chgnet(model_name: str = CHGNET_MODEL, device: str | None = None):
    """The pretrained CHGNet shipped in the wheel (cached per process); ``device`` None picks CUDA when present."""
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CHGNet.load(model_name=model_name, use_device=device, verbose=False)
    return model.eval()


def embedding_name(model_name: str = CHGNET_MODEL) -> str:
    """How results name the embedding, e.g. ``chgnet-0.3.0 crystal_fea (64-d)``."""
    return f"chgnet-{model_name} crystal_fea ({CRYSTAL_FEA_DIM}-d)"


def _graph_or_none(model, structure: Structure):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.graph_converter(structure)
    except Exception:  # isolated atoms, NaN lattices, disorder: this crystal gets NaN
        return None


def _predict_graphs(model, graphs: list, indices: list[int], batch_size: int) -> list[tuple[int, dict]]:
    """(index, prediction) for the graphs at ``indices``; if the batch fails (e.g. an element CHGNet has no
    embedding for), each graph is retried alone and the failing ones are left out."""
    if not indices:
        return []

    def run(chosen: list[int]) -> list[dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = model.predict_graph([graphs[i] for i in chosen], task="e", return_crystal_feas=True, batch_size=batch_size)
        return [preds] if isinstance(preds, dict) else list(preds)

    try:
        return list(zip(indices, run(indices), strict=True))
    except Exception:
        if len(indices) == 1:
            return []
        return [pair for i in indices for pair in _predict_graphs(model, graphs, [i], batch_size)]


def chgnet_predict(
    structures: Sequence[Structure],
    *,
    batch_size: int = 64,
    model_name: str = CHGNET_MODEL,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """CHGNet ``energy`` (N,) in eV/atom and ``crystal_fea`` (N, 64); NaN rows where CHGNet cannot build its graph
    (e.g. an atom with no neighbour within CHGNet's 6 A cutoff) or predicts a non-finite value."""
    from tqdm.auto import tqdm

    model = load_chgnet(model_name, device)
    # The model is shared: StructOptimizer switches its converter to "warn"; we always want isolated atoms -> NaN.
    model.graph_converter.set_isolated_atom_response("error")
    energy = np.full(len(structures), np.nan)
    fea = np.full((len(structures), CRYSTAL_FEA_DIM), np.nan)
    with tqdm(total=len(structures), desc=f"CHGNet {model_name}", unit="crystal", disable=not progress) as bar:
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            graphs = [_graph_or_none(model, s) for s in chunk]
            ok = [i for i, g in enumerate(graphs) if g is not None]
            for i, pred in _predict_graphs(model, graphs, ok, batch_size):
                e, f = float(pred["e"]), np.asarray(pred["crystal_fea"], dtype=np.float64).reshape(-1)
                if np.isfinite(e) and np.isfinite(f).all():
                    energy[start + i], fea[start + i] = e, f
            bar.update(len(chunk))
    return {"energy": energy, "crystal_fea": fea}


def chgnet_predict_cached(structures: Sequence[Structure], *, model_name: str = CHGNET_MODEL, **options) -> dict[str, np.ndarray]:
    """:func:`chgnet_predict`, stored on disk keyed by the structures' content (for reference/train sets)."""
    from crystalgen.metrics.properties import cached_outputs

    identity = f"chgnet/{model_name}/{PIPELINE_VERSION}"
    return cached_outputs(identity, structures, lambda: chgnet_predict(structures, model_name=model_name, **options))


class CHGNetEnergyPredictor(PropertyPredictor):
    """CHGNet's energy per atom as a property predictor (registered as ``chgnet_energy``)."""

    def __init__(self, model_name: str = CHGNET_MODEL, batch_size: int = 64, device: str | None = None, progress: bool = False) -> None:
        self.name = "chgnet_energy"
        self.units = "eV/atom"
        self.model_name = model_name
        self.description = f"CHGNet {model_name} energy per atom (MP2020-compatible total energy, unrelaxed)"
        self.cache_identity = f"chgnet/{model_name}/{PIPELINE_VERSION}/energy"
        self._options = {"batch_size": batch_size, "device": device, "progress": progress}

    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        return chgnet_predict(structures, model_name=self.model_name, **self._options)["energy"]


@dataclass(frozen=True)
class Relaxation:
    """Outcome of one bounded CHGNet relaxation: optimiser steps taken, and whether it stopped below fmax before
    the step limit; ``structure`` None, ``steps`` -1 and ``error`` set when it failed."""

    structure: Structure | None
    steps: int
    converged: bool
    error: str | None = None


def _relax_one(job: tuple[Structure, float, int, bool, str]) -> Relaxation:
    structure, fmax, max_steps, relax_cell, model_name = job
    import multiprocessing

    import torch
    from chgnet.model import StructOptimizer

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # one worker per core: intra-op threads would oversubscribe
    model = load_chgnet(model_name, "cpu" if multiprocessing.parent_process() is not None else None)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = StructOptimizer(model=model, optimizer_class="FIRE", on_isolated_atoms="error").relax(
                structure, fmax=fmax, steps=max_steps, relax_cell=relax_cell, verbose=False
            )
        # CHGNet's observer records the start, every step, and once more after the run.
        steps = max(0, len(result["trajectory"].energies) - 2)
        final = result["final_structure"]
        if not np.isfinite(final.lattice.matrix).all() or not np.isfinite(final.frac_coords).all():
            return Relaxation(None, -1, False, "relaxation produced non-finite coordinates")
        return Relaxation(final, steps, steps < max_steps)
    except Exception as exc:  # one failed relaxation must not stop the others
        return Relaxation(None, -1, False, f"{type(exc).__name__}: {exc}")


def _relax_chunk(jobs: Sequence[tuple[Structure, float, int, bool, str]]) -> list[Relaxation]:
    return [_relax_one(job) for job in jobs]


def relax_structures(
    structures: Sequence[Structure],
    *,
    fmax: float = 0.1,
    max_steps: int = 500,
    relax_cell: bool = True,
    workers: int | None = None,
    model_name: str = CHGNET_MODEL,
    progress: bool = False,
) -> list[Relaxation]:
    """Relax each structure with CHGNet + ASE FIRE (positions and, with ``relax_cell``, the cell through CHGNet's
    default FrechetCellFilter) until the largest force is below ``fmax`` eV/A or ``max_steps`` steps; in
    input order. ``workers`` processes share the list (default: all available cores; crystalgen.metrics.parallel)."""
    from crystalgen.metrics.parallel import map_chunks

    jobs = [(s, float(fmax), int(max_steps), bool(relax_cell), model_name) for s in structures]
    return map_chunks(_relax_chunk, jobs, workers=workers, chunk_size=1, desc=f"CHGNet relax (fmax {fmax}, <= {max_steps} steps)",
                      progress=progress)  # fmt: skip
