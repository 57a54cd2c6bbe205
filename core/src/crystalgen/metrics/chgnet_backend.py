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
from dataclasses import dataclass, replace

import numpy as np
import torch
from pymatgen.core import Structure

from crystalgen.metrics.memory import CHGNET_PREDICT, CHGNET_RELAX, GraphCost
from crystalgen.metrics.properties import PropertyPredictor
from crystalgen.resources import memory_budget, over_budget_reason, pack_by_cost

CHGNET_MODEL = "0.3.0"
#: Bumped when the way structures are fed to CHGNet changes, so cached outputs are recomputed.
PIPELINE_VERSION = "2"  # 2: crystals over the memory budget are refused (NaN)
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


def _predict_graphs(model, graphs: list, indices: list[int]) -> list[tuple[int, dict]]:
    """(index, prediction) for the graphs at ``indices``, in one forward pass; if it fails (e.g. an element CHGNet
    has no embedding for), each graph is retried alone and the failing ones are left out."""
    if not indices:
        return []

    def run(chosen: list[int]) -> list[dict]:
        with warnings.catch_warnings(), torch.no_grad():  # energies need no autograd: ~5x less memory, same values
            warnings.simplefilter("ignore")
            preds = model.predict_graph([graphs[i] for i in chosen], task="e", return_crystal_feas=True,
                                        batch_size=len(chosen))
        return [preds] if isinstance(preds, dict) else list(preds)

    try:
        return list(zip(indices, run(indices), strict=True))
    except Exception:
        if len(indices) == 1:
            return []
        return [pair for i in indices for pair in _predict_graphs(model, graphs, [i])]


def predict_batch(model, structures: Sequence[Structure]) -> list[tuple[int, float, np.ndarray]]:
    """(position, energy per atom, crystal_fea) of each crystal of one batch that CHGNet could handle."""
    graphs = [_graph_or_none(model, s) for s in structures]
    out = []
    for i, pred in _predict_graphs(model, graphs, [i for i, g in enumerate(graphs) if g is not None]):
        e, f = float(pred["e"]), np.asarray(pred["crystal_fea"], dtype=np.float64).reshape(-1)
        if np.isfinite(e) and np.isfinite(f).all():
            out.append((i, e, f))
    return out


def predict_cost(model) -> GraphCost:
    """The memory cost model of :func:`predict_batch` with this model's graph cutoffs."""
    converter = model.graph_converter
    return replace(CHGNET_PREDICT, edge_cutoff=converter.atom_graph_cutoff, angle_cutoff=converter.bond_graph_cutoff)


def chgnet_predict(
    structures: Sequence[Structure],
    *,
    batch_size: int = 64,
    model_name: str = CHGNET_MODEL,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """CHGNet ``energy`` (N,) in eV/atom and ``crystal_fea`` (N, 64); NaN rows where CHGNet cannot build its graph
    (e.g. an atom with no neighbour within CHGNet's 6 A cutoff), predicts a non-finite value, or where the crystal's
    graph alone would exceed the memory budget (crystalgen.resources.memory_budget), whose reason is in
    ``refused`` (N,) ("" for the others).

    Batches hold at most ``batch_size`` crystals and at most the memory budget by the estimate of
    crystalgen.metrics.memory, made before any graph is built.
    """
    from tqdm.auto import tqdm

    model = load_chgnet(model_name, device)
    # The model is shared: StructOptimizer switches its converter to "warn"; we always want isolated atoms -> NaN.
    model.graph_converter.set_isolated_atom_response("error")
    energy = np.full(len(structures), np.nan)
    fea = np.full((len(structures), CRYSTAL_FEA_DIM), np.nan)
    cost = predict_cost(model)
    budget = memory_budget()
    costs = [cost.of(s) for s in structures]
    batches, refused = pack_by_cost(costs, budget, max_items=batch_size)
    reasons = np.full(len(structures), "", dtype=object)
    for i in refused:
        reasons[i] = over_budget_reason(cost.what, costs[i], budget, structure=structures[i])
    with tqdm(total=len(structures), desc=f"CHGNet {model_name}", unit="crystal", disable=not progress) as bar:
        bar.update(len(refused))
        for batch in batches:
            for i, e, f in predict_batch(model, [structures[j] for j in batch]):
                energy[batch[i]], fea[batch[i]] = e, f
            bar.update(len(batch))
    return {"energy": energy, "crystal_fea": fea, "refused": reasons.astype(str)}


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
        self.batch_size, self.device, self.progress = batch_size, device, progress

    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        return self.predict_with_reasons(structures)[0]

    def predict_with_reasons(self, structures: Sequence[Structure]) -> tuple[np.ndarray, list[str]]:
        out = chgnet_predict(structures, model_name=self.model_name, batch_size=self.batch_size, device=self.device,
                             progress=self.progress)
        return out["energy"], out["refused"].tolist()

    def predict_reference(self, structures: Sequence[Structure]) -> np.ndarray:
        """Energies from the cached CHGNet pass that also holds the embeddings ``fcd`` reads: one pass over a
        reference split serves both metrics."""
        return chgnet_predict_cached(structures, model_name=self.model_name, batch_size=self.batch_size,
                                     device=self.device, progress=self.progress)["energy"]


@dataclass(frozen=True)
class Relaxation:
    """Outcome of one bounded CHGNet relaxation: optimiser steps taken, and whether it stopped below fmax before
    the step limit; ``structure`` None, ``steps`` -1 and ``error`` set when it failed, ``refused`` when it was
    not attempted because it would exceed the memory budget (``error`` says why)."""

    structure: Structure | None
    steps: int
    converged: bool
    error: str | None = None
    refused: bool = False


def _relax_one(job: tuple[Structure, float, int, bool, str]) -> Relaxation:
    structure, fmax, max_steps, relax_cell, model_name = job
    import multiprocessing

    from chgnet.model import StructOptimizer
    from chgnet.model.dynamics import TrajectoryObserver

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
        trajectory, final = result["trajectory"], result["final_structure"]
        if not isinstance(trajectory, TrajectoryObserver) or not isinstance(final, Structure):  # typed as either
            return Relaxation(None, -1, False, f"CHGNet returned {type(trajectory).__name__}, {type(final).__name__} "
                                               "for the trajectory and the final structure")
        steps = max(0, len(trajectory.energies) - 2)
        if not np.isfinite(final.lattice.matrix).all() or not np.isfinite(final.frac_coords).all():
            return Relaxation(None, -1, False, "relaxation produced non-finite coordinates")
        return Relaxation(final, steps, steps < max_steps)
    except Exception as exc:  # one failed relaxation must not stop the others
        return Relaxation(None, -1, False, f"{type(exc).__name__}: {exc}")


def _relax_chunk(jobs: Sequence[tuple[Structure, float, int, bool, str]]) -> list[Relaxation]:
    return [_relax_one(job) for job in jobs]


def relax_refusal(structure: Structure, budget: int | None = None) -> str | None:
    """Why relaxing ``structure`` is not attempted (its estimated cost exceeds the memory budget), or None."""
    budget = memory_budget() if budget is None else budget
    cost = CHGNET_RELAX.of(structure)
    return over_budget_reason(CHGNET_RELAX.what, cost, budget, structure=structure) if cost > budget else None


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
    input order. ``workers`` processes share the list (default: all available cores; crystalgen.metrics.parallel),
    one crystal each at a time; a crystal whose relaxation alone would exceed the memory budget is refused."""
    from crystalgen.metrics.parallel import map_chunks

    refusals = [relax_refusal(s) for s in structures]
    todo = [i for i, reason in enumerate(refusals) if reason is None]
    jobs = [(structures[i], float(fmax), int(max_steps), bool(relax_cell), model_name) for i in todo]
    done = map_chunks(_relax_chunk, jobs, workers=workers, chunk_size=1, desc=f"CHGNet relax (fmax {fmax}, <= {max_steps} steps)",
                      progress=progress)  # fmt: skip
    out = [Relaxation(None, -1, False, reason, refused=True) for reason in refusals]
    for i, relaxation in zip(todo, done, strict=True):
        out[i] = relaxation
    return out
