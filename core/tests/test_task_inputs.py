"""A task's input crystals are read once per job (TaskJob.inputs) and every view of them keeps each input's place:
the preprocessed crystals name the ones the model's transform refuses, and a model-method task gives those a
candidate holding the reason, so that candidates, ids and true structures stay paired."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from crystalgen import Decoded, TaskJob
from crystalgen.encoders.full_cell import FullCellTransform
from crystalgen.tasks.model_methods import Reconstruct

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class EchoSizes(torch.nn.Module):
    """A stand-in model whose transform refuses crystals above 6 atoms (the first of embedded:test has 7) and whose
    reconstruction reports each input's atom count, so the test sees which input every candidate came from."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    @classmethod
    def transform(cls, cfg):
        return FullCellTransform(max_atoms=6)

    def memory_cost(self, num_nodes, *, training):
        return torch.ones(len(num_nodes))

    def memory_overhead(self, *, training):
        return 0.0

    def reconstruct(self, batch, sampler, *, generator=None):
        return [Decoded(None, f"atoms {int(n)}") for n in batch.num_atoms]


def make_job(tmp_path, num_crystals: int) -> TaskJob:
    config = OmegaConf.create({"model": {}, "data": {"strict": False, "workers": 0, "cache_dir": str(tmp_path)}})
    return TaskJob(EchoSizes(), "echo_sizes", config, None, "embedded:test", num_crystals, 2,  # type: ignore[arg-type]
                   torch.Generator().manual_seed(0), show_progress=False)


def test_the_inputs_are_read_once_and_keep_their_place_after_the_transform(tmp_path, counted_reads):
    job = make_job(tmp_path, 5)
    records = job.inputs().records
    assert [len(r.structure) for r in records] == [7, 6, 4, 2, 6]
    by_input = job.prepared_by_input()
    assert isinstance(by_input[0], str) and "7 atoms exceeds max_atoms=6" in by_input[0]
    assert [int(d.num_atoms) for d in by_input[1:]] == [6, 4, 2, 6]
    assert [int(d.num_atoms) for d in job.prepared_inputs()] == [6, 4, 2, 6]
    assert job.inputs() is job.inputs()
    assert counted_reads == ["test"]


def test_a_crystal_the_transform_refuses_gets_its_reason_in_its_own_place(tmp_path, counted_reads):
    per_input = Reconstruct().produce(make_job(tmp_path, 5))
    assert [[d.reason for d in group] for group in per_input] == [
        [per_input[0][0].reason], ["atoms 6"], ["atoms 4"], ["atoms 2"], ["atoms 6"]]
    assert "7 atoms exceeds max_atoms=6" in str(per_input[0][0].reason)
    assert counted_reads == ["test"]
