"""Predictor-corrector sampling (Song et al. 2021, "Score-based generative modeling through SDEs", Alg. 4 and 5).

At each level t of the grid: ``n_corrector`` Langevin corrector steps on p_t, x <- x + h score + sqrt(2h) z, then
the reverse-diffusion predictor, i.e. each process's ``reverse_step`` t -> s (one more model call). The corrector
step size is set by a signal-to-noise ratio r,  h = 2 alpha_t (r ||z|| / ||score||)^2  (alpha_t = a_t^2 / a_{t-1}^2:
1 - beta_t for VP, 1 for VE), with norms over all rows of a variable (the batch, not each crystal); or, with
``step_lr``, by DiffCSP/SymmCD's rule h = step_lr (s_t / s_1)^2. Correcting before predicting (as DiffCSP/SymmCD
do) means no corrector runs at the clean level 0, where the score is undefined. Categorical processes are left
alone by the corrector; rule processes follow their rule after every model call.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, ClassVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Posterior, Score
from crystalgen.samplers.base import ProgressCallback, Sampler, SamplingModel
from crystalgen.state import Condition


class PredictorCorrectorSampler(Sampler):
    """Options:
        steps: number of predictor steps (evenly spaced grid, default all T).
        snr: signal-to-noise ratio r of the corrector (Song et al.: 0.16 for VE on CIFAR-10).
        n_corrector: corrector steps per level (0 gives the predictor alone).
        step_lr: if set, the corrector step is step_lr (s_t / s_1)^2 instead of the snr rule (DiffCSP/SymmCD: 1e-5
            on fractional coordinates).
        correct: names of the continuous variables the corrector moves, a list or one name (default: all; SymmCD:
            frac_coords only).
    """

    name = "pc"
    requires: ClassVar[frozenset[Capability]] = frozenset({Posterior, Score})

    def __init__(self, steps: int | None = None, snr: float = 0.16, n_corrector: int = 1, step_lr: float | None = None,
                 correct: Sequence[str] | str | None = None) -> None:
        super().__init__(steps)
        if snr <= 0 or n_corrector < 0 or (step_lr is not None and step_lr <= 0):
            raise ValueError(f"snr and step_lr must be > 0 and n_corrector >= 0, got {snr}, {step_lr}, {n_corrector}")
        self.snr = float(snr)
        self.n_corrector = int(n_corrector)
        self.step_lr = None if step_lr is None else float(step_lr)
        self.correct = None if correct is None else [correct] if isinstance(correct, str) else list(correct)

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        unknown = set(self.correct or ()) - set(model.processes)
        if unknown:
            raise ValueError(f"pc: correct={sorted(unknown)} are not variables of this model ({', '.join(model.processes)})")
        grid = self.grid(model)
        corrected = {var: p for var, p in self.continuous(model, Score).items() if self.correct is None or var in self.correct}
        total, done = (len(grid) - 1) * (self.n_corrector + 1), 0
        for t, s in pairwise(grid):
            for _ in range(self.n_corrector):
                prediction = self.predict(model, state, t, condition)
                new = self.correct_rules(model, state, t, prediction, condition, generator)
                for var, proc in corrected.items():
                    x = self.corrector_step(proc, state[var], t, prediction[var],
                                            self.step_args(model, var, state, condition), generator)
                    new[var] = condition.constrain(var, x)
                state, done = new, done + 1
                if progress is not None:
                    progress(done, total)
            prediction = self.predict(model, state, t, condition)
            state = self.reverse_all(model, state, t, s, prediction, condition, generator, ("continuous", "categorical", "rule"))
            done += 1
            if progress is not None:
                progress(done, total)
        return state

    def corrector_step(self, proc: Score, x: Tensor, t: int, prediction: Tensor, args: dict[str, Any],
                       generator: torch.Generator | None) -> Tensor:
        """One Langevin step on p_t with the snr (or step_lr) step size."""
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.step_lr is not None:
            h: float | Tensor = self.step_lr * (proc.scales(t)[1] / proc.scales(1)[1]) ** 2
        else:
            score = proc.score(prediction, x, t, **args)
            alpha = (proc.scales(t)[0] / proc.scales(t - 1)[0]) ** 2
            h = 2 * alpha * (self.snr * z.norm() / score.norm().clamp(min=torch.finfo(x.dtype).tiny)) ** 2
        return proc.langevin_step(x, t, prediction, h, generator=generator, noise=z, **args)
