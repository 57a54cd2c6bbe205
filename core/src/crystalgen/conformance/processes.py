"""The noise-process check: prior, forward corruption, loss and every declared reverse capability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from crystalgen.capabilities import Marginal, Rule, Score, VarianceExploding, offered, undeclared
from crystalgen.conformance.domains import domain_problem
from crystalgen.conformance.expect import expect, generator, label, running, same
from crystalgen.processes.base import NoiseProcess


def check_process(process: NoiseProcess, shape: tuple[int, ...], *, args: Mapping[str, Any] | None = None,
                  prediction: Tensor | None = None, device: torch.device | str = "cpu", name: str | None = None) -> None:
    """Hold ``process`` to the noise-process contract on a variable of ``shape`` (rows first).

    ``args`` are the keyword arguments its calls need (``Condition.process_args``: what its ``needs`` names);
    ``prediction`` is a denoiser output in its parameterisation for that variable (default: standard normal noise
    of the variable's shape, or logits over ``num_classes`` for a discrete process). Checked on ``device``: the
    prior's shape, domain and seeded determinism; ``add_noise`` at random levels (shapes, domain, determinism);
    the loss, one finite value per row; ``reverse_step`` for several ``s < t`` (shape, domain, determinism); that
    every method of each declared capability exists and runs, keeping shape and domain; ``a_t = 1`` for a
    variance-exploding process. Raises AssertionError naming the failed check.
    """
    part = label("noise process", process, name)
    device = torch.device(device)
    args = dict(args or {})
    gaps = undeclared(type(process))
    expect(not gaps, part, "declared capabilities", "every method of what it declares, it lacks "
           + "; ".join(f"{cap}: {', '.join(methods)}" for cap, methods in gaps.items()))
    missing = set(process.needs) - set(args)
    expect(not missing, part, "arguments", f"the caller to pass what it needs ({', '.join(sorted(missing))})")
    process = process.to(device)
    num_classes = getattr(process, "num_classes", None)

    def in_domain(check: str, x: Tensor, like: tuple[int, ...]) -> None:
        expect(tuple(x.shape) == tuple(like), part, check, f"shape {tuple(like)}, got {tuple(x.shape)}")
        expect(x.device.type == device.type, part, check, f"a tensor on {device}, got {x.device}")
        problem = domain_problem(process.space, x, num_classes)
        expect(problem is None, part, check, f"{problem} (space {process.space!r})")

    def seeded(check: str, call: Any, *a: Any, **kw: Any) -> Any:
        first = running(part, check, call, *a, generator=generator(device, 0), **kw)
        again = running(part, check, call, *a, generator=generator(device, 0), **kw)
        expect(same(first, again), part, f"{check} determinism", "the same output for the same generator seed")
        return first

    x0 = seeded("sample_prior", process.sample_prior, shape, device=device, **args)
    in_domain("sample_prior", x0, shape)
    rows, T = shape[0], process.num_steps
    if prediction is None:
        prediction = default_prediction(process, x0, part)
    prediction = prediction.to(device)

    levels = torch.randint(1, T + 1, (rows,), generator=torch.Generator().manual_seed(0)).to(device)
    noised = seeded("add_noise", lambda **kw: vars(process.add_noise(x0, levels, **kw)), **args)
    in_domain("add_noise x_t", noised["x_t"], shape)
    target = noised["target"]
    expect(isinstance(target, Tensor) and target.shape[0] == rows, part, "add_noise target", f"{rows} rows, one per row of x0")
    loss = running(part, "loss", process.loss, prediction, process.add_noise(x0, levels, generator=generator(device, 0), **args), **args)
    expect(isinstance(loss, Tensor) and tuple(loss.shape) == (rows,), part, "loss",
           f"one value per row, shape ({rows},), got {tuple(getattr(loss, 'shape', ()))}")
    expect(bool(loss.isfinite().all()), part, "loss", "finite values")

    for t, s in sorted({(T, 0), (T, T // 2), (max(T // 2, 1), 0), (1, 0)} - {(0, 0)}):
        x_t = process.add_noise(x0, torch.full((rows,), t, device=device), generator=generator(device, 1), **args).x_t
        x_s = seeded(f"reverse_step t={t} s={s}", process.reverse_step, x_t, t, s, prediction, **args)
        in_domain(f"reverse_step t={t} s={s}", x_s, shape)
    check_capabilities(process, part, x0, prediction, args, in_domain)


def default_prediction(process: NoiseProcess, x0: Tensor, part: str) -> Tensor:
    """Noise shaped as a denoiser's output for this variable: the variable's shape, or logits over its classes."""
    rng = torch.Generator().manual_seed(2)
    if not process.discrete and process.prediction != "logits":
        return torch.randn(x0.shape, generator=rng).to(x0.device)
    classes = getattr(process, "num_classes", None)
    if classes is None:
        raise AssertionError(f"{part}: prediction: expected one from the caller (it has no num_classes to shape logits)")
    return torch.randn((*x0.shape, int(classes)), generator=rng).to(x0.device)


def check_capabilities(process: NoiseProcess, part: str, x0: Tensor, prediction: Tensor, args: dict[str, Any],
                       in_domain: Any) -> None:
    """Run every method of each declared capability beyond the posterior step (checked by the caller)."""
    caps = offered(process)
    T, shape = process.num_steps, tuple(x0.shape)
    x_t = process.add_noise(x0, torch.full((shape[0],), T, device=x0.device), generator=generator(x0.device, 3), **args).x_t
    if Marginal in caps:
        marginal: Any = process
        a, s = running(part, "marginal scales", marginal.scales, T)
        expect(isinstance(a, float) and isinstance(s, float), part, "marginal scales", "(a_t, s_t) as Python floats")
        for method in ("to_eps", "to_x0"):
            out = running(part, f"marginal {method}", getattr(marginal, method), prediction, x_t, T, **args)
            expect(tuple(out.shape) == shape, part, f"marginal {method}", f"shape {shape}, got {tuple(out.shape)}")
        first = running(part, "marginal ddim_step", marginal.ddim_step, x_t, T, T // 2, prediction, eta=0.0, **args)
        again = marginal.ddim_step(x_t, T, T // 2, prediction, eta=0.0, **args)
        in_domain("marginal ddim_step (eta=0)", first, shape)
        expect(same(first, again), part, "marginal ddim_step (eta=0) determinism", "the same output twice (no noise)")
        in_domain("marginal finalize", running(part, "marginal finalize", marginal.finalize, x_t + 0.75), shape)
    if Score in caps:
        score: Any = process
        out = running(part, "score score", score.score, prediction, x_t, T, **args)
        expect(tuple(out.shape) == shape and bool(out.isfinite().all()), part, "score score", f"finite values of shape {shape}")
        _, s_T = score.scales(T)
        step = running(part, "score langevin_step", score.langevin_step, x_t, T, prediction, 0.01 * s_T**2,
                       generator=generator(x0.device, 4), **args)
        in_domain("score langevin_step", step, shape)
        in_domain("score clean_estimate", running(part, "score clean_estimate", score.clean_estimate, prediction, x_t, T, **args), shape)
    if VarianceExploding in caps:
        exploding: Any = process
        scales = [exploding.scales(t)[0] for t in range(T + 1)]
        expect(all(a == 1.0 for a in scales), part, "variance_exploding", "a_t = 1 at every level")
    if Rule in caps:
        out = running(part, "rule corrector_step", process.corrector_step, x_t, T, prediction, generator=generator(x0.device, 5), **args)
        in_domain("rule corrector_step", out, shape)
