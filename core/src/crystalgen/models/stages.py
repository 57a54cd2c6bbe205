"""Training stages: a model trained in parts, in order (an autoencoder first, then a score model on its frozen
latents; or a network, then a head with the network frozen).

A model returns its stages from ``GenerativeModel.training_stages``; the runner (crystalgen.runner.training) trains
them one after the other with a fresh optimiser and schedule each, only the stage's parameters trainable and the
stage's loss minimised, writes ``checkpoints/stage-<name>.ckpt`` when a stage ends, and resumes inside the stage it
stopped in. A model that declares no stages trains as one whole, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Stage:
    """One stage of a model's training.

    Attributes:
        name: letters, digits, ``-`` and ``_``, unique among the model's stages (the stage's checkpoint is
            ``checkpoints/stage-<name>.ckpt``; logs and the model's ``on_train_stage`` use it).
        share: relative length. The stage trains for ``share / (sum of the shares)`` of ``trainer.max_epochs``
            (rounded, at least one epoch) and, under a time budget, may use that fraction of ``trainer.max_minutes``
            beside what earlier stages left unspent; its epochs end earlier when the share of time is spent.
        epochs: a fixed number of epochs instead of the share of ``trainer.max_epochs`` (the time share still holds).
        trainable: parameter-name prefixes of the parameters this stage trains (``("encoder", "decoder.head")``:
            matched at a dot, crystalgen.parameter_names); every other parameter is frozen. ``()``: all of them.
        loss: the key of ``training_loss``'s output that this stage minimises, and monitors on the validation split
            (best checkpoint, early stopping, plateau schedule).
    """

    name: str
    share: float = 1.0
    epochs: int | None = None
    trainable: tuple[str, ...] = ()
    loss: str = "loss"

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"stage name {self.name!r}: use letters, digits, '-' and '_' (it names a checkpoint file)")
        if not self.share > 0:
            raise ValueError(f"stage {self.name!r}: share must be > 0, got {self.share}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"stage {self.name!r}: epochs must be >= 1 or None, got {self.epochs}")
        if isinstance(self.trainable, str):
            raise TypeError(f"stage {self.name!r}: trainable must be a tuple of prefixes, got the string {self.trainable!r}")
