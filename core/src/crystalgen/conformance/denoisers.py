"""The denoiser check: one prediction per variable it predicts, of the right shape, device and dtype,
deterministic, and true to each symmetry it declares (crystalgen.specs.SYMMETRIES)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import Tensor

from crystalgen.conformance.domains import FRACTIONAL
from crystalgen.conformance.expect import close, expect, label, running, same
from crystalgen.denoisers.base import Denoiser
from crystalgen.specs import DenoiserSpec
from crystalgen.state import Condition

#: symmetric outputs may differ by float rounding, relative to the output's scale
TOLERANCE = 1e-4


def check_denoiser(denoiser: Denoiser, state: Mapping[str, Tensor], t: Tensor, condition: Condition, *,
                   spaces: Mapping[str, str] | None = None, spec: DenoiserSpec | None = None,
                   name: str | None = None) -> None:
    """Hold ``denoiser`` to the denoiser contract on one input (a model's ``denoise`` call: ``check_model``
    records it).

    ``spaces`` maps each variable to its space (``ModelSpec.variables``), needed for the fractional symmetries;
    ``spec`` is the denoiser's spec as built (default: its class's). Checked, in eval mode and on the input's
    device: a prediction for every variable of ``state`` it predicts, floating point and finite, with the
    variable's shape (plus a class axis for ``logits``); the same output twice; and each declared symmetry:
    ``permutation`` (rows reversed within each crystal: ``condition.data["crystal"]``, else ``["num_atoms"]``), ``periodicity``
    (integers added to fractional variables), ``translation`` (one random shift per crystal of fractional
    variables). Raises AssertionError naming the failed check.
    """
    part = label("denoiser", denoiser, name)
    spec = spec or type(denoiser).spec
    spaces = dict(spaces or {})
    was_training = denoiser.training
    denoiser.eval()
    try:
        with torch.no_grad():
            out = running(part, "forward", denoiser, dict(state), t, condition)
            check_outputs(part, spec, state, out)
            again = denoiser(dict(state), t, condition)
            expect(same(out, again), part, "determinism", "the same predictions for the same input (eval mode)")
            for symmetry in sorted(spec.symmetries):
                check_symmetry(denoiser, part, symmetry, state, t, condition, spaces, out)
    finally:
        denoiser.train(was_training)


def check_outputs(part: str, spec: DenoiserSpec, state: Mapping[str, Tensor], out: object) -> None:
    expect(isinstance(out, Mapping), part, "output", f"a dict of predictions, got {type(out).__name__}")
    assert isinstance(out, Mapping)
    for var, x in state.items():
        offered = spec.predicts.get(var)
        if offered is None:
            continue
        expect(var in out, part, f"output {var}", f"a prediction for {var}, which its spec says it predicts")
        y = out[var]
        expect(isinstance(y, Tensor), part, f"output {var}", f"a tensor, got {type(y).__name__}")
        want = (tuple(x.shape), (*x.shape, "K")) if "logits" in offered else (tuple(x.shape),)
        fits = tuple(y.shape) == tuple(x.shape) if "logits" not in offered else tuple(y.shape[:-1]) == tuple(x.shape)
        expect(fits, part, f"output {var} shape", f"{' or '.join(map(str, want[-1:]))}, got {tuple(y.shape)}")
        expect(y.dtype.is_floating_point, part, f"output {var} dtype", f"floating point, got {y.dtype}")
        expect(y.device == x.device, part, f"output {var} device", f"the input's device {x.device}, got {y.device}")
        expect(bool(y.isfinite().all()), part, f"output {var}", "finite values")


def check_symmetry(denoiser: Denoiser, part: str, symmetry: str, state: Mapping[str, Tensor], t: Tensor,
                   condition: Condition, spaces: Mapping[str, str], out: Mapping[str, Tensor]) -> None:
    check = f"declared symmetry {symmetry!r}"
    expect(any(bool(y.abs().max() > 1e-6) for y in out.values() if y.numel()), part, check,
           "non-zero predictions to compare (perturb a network whose output starts at zero)")
    fractional = [var for var in state if spaces.get(var) in FRACTIONAL]
    if symmetry in ("periodicity", "translation"):
        expect(bool(fractional), part, check, "a fractional variable in the input (pass spaces=)")
    crystal = crystal_of(condition)
    if symmetry in ("permutation", "translation"):
        expect(crystal is not None, part, check, 'the crystal of each row: condition.data["crystal"] or ["num_atoms"]')
    rng = torch.Generator().manual_seed(7)
    if symmetry == "periodicity":
        moved = {var: x + torch.randint(-2, 3, x.shape, generator=rng).to(x) if var in fractional else x
                 for var, x in state.items()}
        expect_equal(part, check, out, denoiser(moved, t, condition), lambda var, y: y)
        return
    assert isinstance(crystal, Tensor)
    if symmetry == "translation":
        shift = torch.rand((condition.num_crystals, 3), generator=rng).to(crystal.device)
        moved = {var: torch.remainder(x + shift[crystal].to(x), 1.0) if var in fractional else x for var, x in state.items()}
        expect_equal(part, check, out, denoiser(moved, t, condition), lambda var, y: y)
        return
    rows = int(crystal.shape[0])
    perm = within_crystals(crystal)
    expect(bool((perm != torch.arange(rows, device=perm.device)).any()), part, check, "a crystal with two rows in the input")

    def permuted(value: object) -> object:
        return value[perm] if isinstance(value, Tensor) and value.dim() and value.shape[0] == rows else value

    moved_state = {var: permuted(x) for var, x in state.items()}
    data = {key: value if key == "crystal" else permuted(value) for key, value in condition.data.items()}
    moved_out = denoiser(moved_state, t, replace(condition, data=data))
    expect_equal(part, check, out, moved_out, lambda var, y: permuted(y) if state[var].shape[0] == rows else y)


def crystal_of(condition: Condition) -> Tensor | None:
    """The crystal of each row: ``data["crystal"]``, else rows in order with ``data["num_atoms"]`` per crystal."""
    crystal, counts = condition.data.get("crystal"), condition.data.get("num_atoms")
    if isinstance(crystal, Tensor):
        return crystal
    if isinstance(counts, Tensor) and counts.dim() == 1 and len(counts) == condition.num_crystals:
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    return None


def within_crystals(crystal: Tensor) -> Tensor:
    """A permutation of the rows that keeps each row's crystal: the rows of every crystal in reverse order."""
    perm = torch.arange(crystal.shape[0], device=crystal.device)
    for c in torch.unique(crystal):
        rows = torch.nonzero(crystal == c).flatten()
        perm[rows] = rows.flip(0)
    return perm


def expect_equal(part: str, check: str, out: Mapping[str, Tensor], moved: Mapping[str, Tensor], expected: object) -> None:
    """``moved[var]`` equals ``expected(var, out[var])`` for every predicted variable."""
    for var, y in out.items():
        want = expected(var, y)  # type: ignore[operator]
        expect(close(moved[var], want, TOLERANCE), part, check,
               f"prediction {var} to follow (max difference {float((moved[var].double() - want.double()).abs().max()):.3g})")
