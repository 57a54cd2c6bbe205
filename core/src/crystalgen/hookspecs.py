"""The plugin contract: one hook per component kind.

A plugin is a module (or object) registered under the ``crystalgen.plugins`` entry-point group that
implements any of these hooks. Every hook returns a mapping ``{name: component}``; the host merges the
answers of all plugins into one registry per kind and reports name clashes instead of letting the last
plugin win silently. The core registers its own built-ins through the same hooks (``crystalgen.builtin``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

PROJECT = "crystalgen"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def crystalgen_encoders() -> Mapping[str, Any]:
    """Encoders: crystal -> representation the model works on.

    Return ``{name: class}``; each class follows :class:`crystalgen.encoders.Encoder` (an analytic
    transform applied at preprocessing time, a learned ``nn.Module``, or both).
    """


@hookspec
def crystalgen_denoisers() -> Mapping[str, Any]:
    """Denoisers: ``nn.Module`` classes mapping a noisy state and time (+ condition) to one prediction per
    variable, each in the parameterisation its noise process declares (:class:`crystalgen.denoisers.Denoiser`)."""


@hookspec
def crystalgen_noise_processes() -> Mapping[str, Any]:
    """Noise processes: ``{name: class}`` of :class:`crystalgen.processes.NoiseProcess` subclasses, each
    owning one variable's forward corruption, prior, training target and reverse-step maths."""


@hookspec
def crystalgen_samplers() -> Mapping[str, Any]:
    """Samplers: ``{name: class}`` of :class:`crystalgen.samplers.Sampler` subclasses. A sampler declares the
    process capabilities it needs and then works with every installed model whose processes offer them."""


@hookspec
def crystalgen_decoders() -> Mapping[str, Any]:
    """Decoders: ``{name: class}`` of :class:`crystalgen.decoders.Decoder` subclasses turning a final
    sampling state into pymatgen Structures (or a per-crystal failure reason)."""


@hookspec
def crystalgen_models() -> Mapping[str, Any]:
    """Model recipes: ``{name: class}`` of :class:`crystalgen.models.GenerativeModel` subclasses; each binds
    named components and ships its documented presets (``small``, ``paper``)."""


@hookspec
def crystalgen_datasets() -> Mapping[str, Any]:
    """Datasets: ``{name: DatasetSpec}`` (:class:`crystalgen.data.registry.DatasetSpec`)."""


@hookspec
def crystalgen_property_predictors() -> Mapping[str, Any]:
    """Property predictors for the metrics suite: ``{name: factory}`` where ``factory(**options)`` returns a
    :class:`crystalgen.metrics.properties.PropertyPredictor` (Structures in, one float per crystal out)."""


@hookspec
def crystalgen_tasks() -> Mapping[str, Any]:
    """Tasks over the crystals of a dataset split: ``{name: class or instance}`` of
    :class:`crystalgen.tasks.base.Task` (``crystalgen task NAME``; the core registers ``reconstruct``, ``optimize``
    and ``csp``). A task says which models can run it (``Task.unsupported``), produces candidates per input crystal
    and scores them."""
