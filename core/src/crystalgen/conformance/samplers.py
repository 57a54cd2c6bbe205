"""The sampler check: built from its options, refuses what it cannot drive, and turns a prior into a final state
of the right shapes and domains, deterministically for a seed, reporting progress."""

from __future__ import annotations

from typing import Any

import torch

from crystalgen.capabilities import Posterior
from crystalgen.conformance.domains import domain_problem
from crystalgen.conformance.expect import devices, expect, generator, label, running, same
from crystalgen.processes.d3pm import D3PMMarginal
from crystalgen.processes.ve import VEGaussian
from crystalgen.processes.vp import VPGaussian
from crystalgen.processes.wrapped_normal import WrappedNormal
from crystalgen.samplers.analytic import AnalyticModel, Categorical, GaussianMixture, WrappedNormalMixture
from crystalgen.samplers.base import IncompatibleSamplerError, Sampler

LEVELS, ROWS = 20, 6
MIXTURE = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.3, 0.2]))
TORUS = WrappedNormalMixture(torch.tensor([1.0]), torch.tensor([[0.25, 0.5, 0.75]]), torch.tensor([0.1]))
CLASSES = Categorical(torch.tensor([0.2, 0.3, 0.5]))


def analytic_models() -> dict[str, AnalyticModel]:
    """Exactly denoised models over the built-in processes: VP on R^2, and VE on R^2 with a wrapped normal on
    the torus; each with a categorical variable."""
    return {
        "vp_gaussian + d3pm_marginal": AnalyticModel({"x": VPGaussian(LEVELS), "c": D3PMMarginal(LEVELS, 3)},
                                                     {"x": MIXTURE, "c": CLASSES}),
        "ve_gaussian + wrapped_normal + d3pm_marginal": AnalyticModel(
            {"x": VEGaussian(LEVELS, 0.01, 5.0), "f": WrappedNormal(LEVELS), "c": D3PMMarginal(LEVELS, 3)},
            {"x": MIXTURE, "f": TORUS, "c": CLASSES}),
    }


class PosteriorOnly(VPGaussian):
    """A continuous process that offers only the posterior step: every sampler needing more must refuse it."""

    capabilities = frozenset({Posterior})


def check_sampler(sampler: type[Sampler] | Sampler, *, steps: int = 4, options: dict[str, Any] | None = None,
                  device: torch.device | str | None = None, name: str | None = None) -> None:
    """Hold a sampler class (built as ``cls(steps=steps, **options)``, as the runner builds it) or instance to the
    sampler contract, on exactly denoised models of the built-in processes (crystalgen.samplers.analytic).

    Checked: ``config()`` names it and rebuilds an equal sampler; a model whose continuous process lacks what it
    ``requires`` is refused with IncompatibleSamplerError before sampling; on each model it can drive (at least
    one) and on ``device`` (default: the CPU, and the GPU when present), the final state has every variable's shape and domain, is the same for the same generator seed, and
    progress calls count up to their total. Raises AssertionError naming the failed check.
    """
    cls = sampler if isinstance(sampler, type) else type(sampler)
    part = label("sampler", cls, name or getattr(cls, "name", None))
    built = running(part, "construction", cls, steps=steps, **(options or {})) if isinstance(sampler, type) else sampler
    config = running(part, "config", built.config)
    expect(config.get("name") == cls.name and "steps" in config, part, "config", f"name {cls.name!r} and steps among {config}")
    rebuilt = running(part, "config", cls, **{k: v for k, v in config.items() if k != "name"})
    expect(same(rebuilt.config(), config), part, "config", "cls(**options from config()) to have the same config")
    if cls.requires - {Posterior}:
        refused = AnalyticModel({"x": PosteriorOnly(LEVELS)}, {"x": MIXTURE})
        try:
            built.run(refused, refused.condition(ROWS), generator=torch.Generator().manual_seed(0))
        except IncompatibleSamplerError:
            pass
        except Exception as exc:
            raise AssertionError(f"{part}: compatibility: expected IncompatibleSamplerError for a process lacking what it "
                                 f"requires, it raised {type(exc).__name__}: {exc}") from exc
        else:
            raise AssertionError(f"{part}: compatibility: expected IncompatibleSamplerError for a process lacking "
                                 "what it requires, it sampled")
    usable = {desc: m for desc, m in analytic_models().items() if not cls.missing(m.processes)}
    expect(bool(usable), part, "compatibility", f"to drive one of the built-in models ({', '.join(analytic_models())})")
    for dev in [torch.device(device)] if device is not None else devices():
        for desc, model in usable.items():
            run_on(built, part, desc, model, dev)


def run_on(built: Sampler, part: str, desc: str, model: AnalyticModel, device: torch.device) -> None:
    """Sample ``model`` on ``device`` twice with one seed: shapes, domains, determinism and progress."""
    for proc in model.processes.values():
        proc.to(device)
    condition = model.condition(ROWS, device=device)
    calls: list[tuple[int, int]] = []
    state = running(part, f"run on {desc}", built.run, model, condition, generator=generator(device, 0),
                    progress=lambda done, total: calls.append((done, total)))
    again = built.run(model, condition, generator=generator(device, 0))
    expect(isinstance(state, dict) and set(state) == set(model.processes), part, f"run on {desc}",
           f"a final state with the variables {sorted(model.processes)}")
    for var, proc in model.processes.items():
        x = state[var]
        expect(tuple(x.shape) == condition.shapes[var], part, f"run on {desc}: {var}",
               f"shape {condition.shapes[var]}, got {tuple(x.shape)}")
        problem = domain_problem(proc.space, x, getattr(proc, "num_classes", None))
        expect(problem is None, part, f"run on {desc}: {var}", f"{problem} (space {proc.space!r})")
    expect(same(state, again), part, f"run on {desc}: determinism", "the same final state for the same generator seed")
    dones = [d for d, _ in calls]
    expect(bool(calls) and dones == sorted(dones) and calls[-1][0] == calls[-1][1], part, f"run on {desc}: progress",
           f"calls counting up to their total, got {calls[:3]}...{calls[-1:]}")
