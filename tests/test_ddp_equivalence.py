"""DDP under the runner: two CPU processes (gloo) with batch b each take the same optimiser step as one process
with the combined batch 2b, also when a memory budget splits the ranks' batches into different numbers of
micro-batches (only the last one of each rank synchronises gradients).

The model is deterministic (no noise in its loss) so the only difference between the runs is how the batch is
split and how gradients are averaged: DistributedSampler must hand rank r the items r, r+2, ... of the same
permutation that one process would batch, and DDP must average the ranks' gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from ddp_processes import become_rank, free_port
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen.data.crystal import structure_to_data
from crystalgen.runner.config import apply_user_layers, runner_defaults
from crystalgen.runner.distributed import setup, teardown
from crystalgen.runner.training import Trainer

pytest.importorskip("crystalgen_toy_model", reason="install tests/fixtures/crystalgen_toy_model (pip install -e)")
from crystalgen_toy_model.crystals import toy_structures  # noqa: E402

PER_RANK_BATCH = 4
WORLD = 2


class AtomCountRegression(nn.Module):
    """Predicts each crystal's atom count from its mean fractional coordinate and lattice: a deterministic loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_loss(self, batch) -> dict[str, Tensor]:
        mean_frac = scatter(batch.frac_coords.float(), batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")
        features = torch.cat([mean_frac, batch.lattice.float().flatten(1)], dim=-1)
        prediction = self.net(features).squeeze(-1)
        return {"loss": ((prediction - batch.num_atoms.float()) ** 2).mean()}


class AtomCountRegressionWithCost(AtomCountRegression):
    """The same loss, with a memory estimate of one byte per atom: a budget of 9 bytes splits every batch."""

    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        return num_nodes.double()

    def memory_overhead(self, *, training: bool) -> float:
        return 0.0


#: model class and memory budget (bytes) of each variant
VARIANTS = {"whole": (AtomCountRegression, None), "micro_batches": (AtomCountRegressionWithCost, 9)}


def _items():
    """Training items (one combined batch) and 3 validation items: fewer batches than ranks, so rank 1 validates
    nothing and must still take part in the reduction."""
    items = [structure_to_data(s) for s in toy_structures(WORLD * PER_RANK_BATCH + 3, seed=5)]
    return items[:-3], items[-3:]


def _one_step(batch_size: int, variant: str) -> dict[str, Tensor]:
    """One epoch = one optimiser step over all items; returns the parameters afterwards and the validation loss."""
    cfg = apply_user_layers(runner_defaults(), overrides=[
        "trainer.max_epochs=1", f"data.batch_size={batch_size}", "trainer.device=cpu", "data.val_split=null",
        "trainer.lr=0.05", "trainer.grad_clip=0.5", "trainer.seed=11"])
    env = setup("cpu")
    try:
        torch.manual_seed(0)
        model_class, budget = VARIANTS[variant]
        trainer = Trainer(model_class(), cfg, env, checkpoints=None, show_progress=False, budget=budget)
        progress = trainer.fit(*_items())
        assert progress.global_step == 1
        return {"val_loss": torch.tensor(progress.best_loss),
                **{k: v.detach().clone() for k, v in trainer.model.state_dict().items()}}
    finally:
        teardown(env)


def _worker(rank: int, port: int, out: str, variant: str) -> None:
    become_rank(rank, WORLD, port)
    params = _one_step(PER_RANK_BATCH, variant)
    if rank == 0:
        torch.save(params, out)


@pytest.mark.timeout(480)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_gloo_processes_take_the_same_step_as_one_process_with_the_combined_batch(tmp_path, variant):
    out = tmp_path / "ddp_params.pt"
    # spawn, not fork: a forked child can deadlock on locks or thread pools the parent held (seen once here)
    mp.start_processes(_worker, args=(free_port(), str(out), variant), nprocs=WORLD, join=True, start_method="spawn")
    distributed = torch.load(out, weights_only=True)
    single = _one_step(WORLD * PER_RANK_BATCH, variant)
    initial = (torch.manual_seed(0), AtomCountRegression().state_dict())[1]
    for key, value in single.items():
        if key in initial:
            assert not torch.allclose(value, initial[key]), f"{key} did not move: the step was not taken"
        torch.testing.assert_close(distributed[key], value, rtol=1e-5, atol=1e-6, msg=f"{key}: DDP result differs")
