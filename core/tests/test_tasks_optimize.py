"""The ``optimize`` task's head fit (``--fit-head-on NAME:SPLIT --property NAME``): the options go together, a model
without ``fit_property_head`` is refused before any data is read, and a model with it receives every crystal of the
fit split with its property before the optimisation, which no longer sees the fit's options."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgen import Decoded, UnsupportedRequestError, structure_to_data
from crystalgen.runner.config import compose
from crystalgen.tasks.base import TaskJob
from crystalgen.tasks.model_methods import Optimize
from crystalgen_toy_model.model import ToyDiffusion


class LatentToy(ToyDiffusion):
    """The toy model with stand-ins for the two optional methods, recording what they receive."""

    tasks = frozenset({"generate", "optimize", "fit_property_head"})

    def fit_property_head(self, batches, property, *, generator=None) -> dict[str, Any]:
        self.fitted = [value for batch in batches for value in batch[f"prop_{property}"].tolist()]
        return {"n_fit": len(self.fitted)}

    def optimize(self, batch, sampler, *, generator=None, **options) -> list[Decoded]:
        self.optimize_options = options
        return [Decoded(None, "stand-in") for _ in range(batch.num_graphs)]


class WithoutHeadFit(LatentToy):
    tasks = frozenset({"generate", "optimize"})


def crystals(n: int) -> list:
    return [structure_to_data(Structure(Lattice.cubic(3.0 + 0.1 * i), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                              {"energy": -float(i)}) for i in range(n)]


def job(model_class: type[LatentToy], options: dict[str, Any], splits: dict[str | None, list]) -> TaskJob:
    cfg = compose(ToyDiffusion.presets(), "small", model_name="toy")
    model = model_class(cfg.model)
    task_job = TaskJob(model, "toy", cfg, sampler=None, source="embedded:test", num_crystals=2,  # type: ignore[arg-type]
                       batch_size=4, generator=torch.Generator().manual_seed(0), options=options)

    task_job.prepared_by_input = lambda: splits[None]  # type: ignore[method-assign]
    task_job.prepared_split = lambda source: splits[source]  # type: ignore[method-assign]
    return task_job


def namespace(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"direction": "min", "opt_steps": None, "fit_head_on": None, "property": None, **changes})


@pytest.mark.parametrize("given", [{"fit_head_on": "perov_5:val"}, {"property": "heat_ref"}])
def test_fit_head_on_and_property_go_together(given):
    with pytest.raises(ValueError, match="go together"):
        Optimize().options(namespace(**given))
    both = Optimize().options(namespace(fit_head_on="perov_5:val", property="heat_ref", opt_steps=7))
    assert both == {"direction": "min", "steps": 7, "fit_head_on": "perov_5:val", "property": "heat_ref"}
    assert Optimize().options(namespace()) == {"direction": "min", "steps": None}


def test_a_model_that_cannot_fit_a_head_is_refused_before_any_data_is_read():
    options = {"direction": "min", "steps": 3, "fit_head_on": "x:val", "property": "energy"}
    with pytest.raises(UnsupportedRequestError, match="fit_property_head"):
        Optimize().produce(job(WithoutHeadFit, options, {}))  # no split at all: reading one would fail with KeyError


def test_the_head_is_fitted_on_the_whole_fit_split_and_the_fit_is_recorded():
    options = {"direction": "max", "steps": 3, "fit_head_on": "x:val", "property": "energy"}
    task_job = job(LatentToy, options, {"x:val": crystals(10), None: crystals(2)})
    per_input = Optimize().produce(task_job)
    model = task_job.model
    assert isinstance(model, LatentToy)
    assert sorted(model.fitted) == [-float(i) for i in range(9, -1, -1)]  # every crystal of the fit split, in batches of 4
    assert task_job.record["property_head"] == {"source": "x:val", "property": "energy",
                                                "left_out_over_memory_budget": 0, "n_fit": 10}
    assert model.optimize_options == {"direction": "max", "steps": 3}
    assert [len(found) for found in per_input] == [1, 1]
