"""What each part of a model offers and needs, declared without running anything.

A model is assembled from named parts (docs/architecture.md, "Models built from named parts"). So that a pairing
that cannot work is refused before any data is read, every part declares a small spec, and every model declares
what its slots ask for. The vocabulary is plain names:

* **variables**: keys of the sampling state (``frac_coords``, ``lattice``, ``atom_types``, ...); each one lives in
  a **space** (``real``: R^d; ``torus``: fractional coordinates in [0, 1), noised in fractional units; ``cell``:
  fractional coordinates noised in Cartesian Angstrom on the crystal's lattice, so predictions are Cartesian;
  ``classes``: class indices 0..K-1; ``atomic_numbers``: 1..K) and is moved by a process of one **kind**
  (``continuous``, ``categorical``, ``rule``);
* **conditions**: keys of ``Condition.data`` (``crystal``, ``num_atoms``, ``z``, ...), filled by the model;
* **fields**: attributes of the torch_geometric ``Data`` a transform writes (``lattice``, ``frac_coords``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["continuous", "categorical", "rule"]

#: Symmetries a denoiser may declare in ``DenoiserSpec.symmetries``; ``crystalgen.testing.check_denoiser`` tests
#: each declared one. Rows of a variable are per atom when their count is that of ``Condition.data["crystal"]``
#: (the crystal of each row; else rows in order, ``Condition.data["num_atoms"]`` per crystal); fractional variables
#: are those whose space is ``torus`` or ``cell``.
SYMMETRIES: dict[str, str] = {
    "permutation": "permuting the rows of a crystal permutes its per-row predictions and leaves the others unchanged",
    "periodicity": "adding integers to fractional coordinates changes no prediction",
    "translation": "shifting every fractional coordinate of a crystal by one vector changes no prediction",
}


def names(items: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(items)) or "nothing"


@dataclass(frozen=True)
class Variable:
    """What a model asks of the process of one variable.

    Attributes:
        kind: how samplers move it: ``continuous`` (the sampler's update), ``categorical`` (posterior steps),
            ``rule`` (a deterministic update from each prediction).
        space: where its values live (``real``, ``torus``, ``classes``, ``atomic_numbers``).
        args: process keyword arguments the model passes for it (``Condition.process_args``), e.g. ``lattice``.
        predictions: the parameterisations the model's own code can handle for it (SymmCD clips k through its
            eps); None: any the denoiser offers.
    """

    kind: Kind
    space: str
    args: frozenset[str] = frozenset()
    predictions: frozenset[str] | None = None


@dataclass(frozen=True)
class ProcessSpec:
    """What a noise process is, as built with given options.

    Attributes:
        kind: ``continuous``, ``categorical`` or ``rule``.
        space: the values it corrupts and restores (see :class:`Variable`).
        prediction: the parameterisation its denoiser output must have (``eps``, ``score``, ``x0``, ``logits``).
        predictions: every parameterisation it can be built with (its ``prediction`` option).
        needs: keyword arguments it requires in every call (``lattice``, ``num_atoms``, ``composition``).
        reads: other variables of the state whose current values every step receives (``lattice``); a need that
            is read comes from the state, not from the model's process arguments.
    """

    kind: Kind
    space: str
    prediction: str
    predictions: frozenset[str]
    needs: frozenset[str] = frozenset()
    reads: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DenoiserSpec:
    """What a denoiser reads and predicts.

    Attributes:
        predicts: per variable, the parameterisations its output for that variable can be trained as.
        reads: state variables it takes as (noisy) input.
        conditions: keys of ``Condition.data`` it reads.
        symmetries: names from :data:`SYMMETRIES` it promises, so that a conformance check can hold it to them.
    """

    predicts: Mapping[str, frozenset[str]]
    reads: frozenset[str]
    conditions: frozenset[str] = frozenset()
    symmetries: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.symmetries - set(SYMMETRIES)
        if unknown:
            raise ValueError(f"unknown symmetries {names(unknown)}; known: {names(set(SYMMETRIES))}")


@dataclass(frozen=True)
class DecoderSpec:
    """What a decoder reads: keys of the clean state the model hands it, and of ``Condition.data``."""

    reads: frozenset[str]
    conditions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder reads and provides.

    A :class:`~crystalgen.encoders.StructureTransform` reads a Structure and provides ``Data`` fields; a learned
    :class:`~crystalgen.encoders.Encoder` reads ``Data`` fields of a batch and provides named outputs
    (``gaussian_posterior``: the pair ``(mu, logvar)`` of a VAE's q(z | x)).
    """

    provides: frozenset[str]
    reads: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ModelSpec:
    """What a model's slots ask of its parts.

    Attributes:
        variables: the diffused variables and what their processes must be.
        conditions: keys of ``Condition.data`` the model fills (for its denoiser and decoder).
        fields: ``Data`` fields its training reads from the transform's output.
        decodes: keys of the clean state the model hands its decoder (in the decoder's units, documented by each
            decoder: e.g. ``lattice`` (B, 3, 3) Angstrom for the ``cell`` decoder).
        encodes: outputs the model needs from a learned encoder (``model.encoder``); empty: the model has none.
    """

    variables: Mapping[str, Variable]
    conditions: frozenset[str]
    fields: frozenset[str]
    decodes: frozenset[str]
    encodes: frozenset[str] = field(default_factory=frozenset)
