"""The model ("recipe") contract: what the runner and the samplers may ask of a method.

A model binds named components (encoder/transform, denoiser, one noise process per variable, decoder) and a
documented default config. The runner only uses the methods below; optional tasks (reconstruction, latent
property optimisation) are declared in ``tasks`` and refused clearly when absent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import torch
from omegaconf import DictConfig
from pymatgen.core import Structure
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from crystalgen.encoders.base import StructureTransform
from crystalgen.models.stages import Stage
from crystalgen.processes.base import NoiseProcess
from crystalgen.specs import ModelSpec
from crystalgen.state import Condition, SampleRequest

if TYPE_CHECKING:
    from crystalgen.models.assembly import Assembly
    from crystalgen.samplers.base import Sampler, SamplingModel

KIB, MIB = 2**10, 2**20
#: The base class's memory estimate, for a model that says nothing: message passing on the fully connected graph of
#: each crystal, about 8 layers of 512 float32 features per node and per ordered pair, with the activations the
#: backward pass keeps (training); sampling keeps only the layer being computed. Generous for the usual
#: graph networks, so that an unknown model errs towards smaller batches, never towards the OOM killer.
DEFAULT_TRAINING_BYTES = (1 * MIB, 256 * KIB)  # (per node, per ordered node pair)
DEFAULT_SAMPLING_BYTES = (256 * KIB, 64 * KIB)

P = TypeVar("P")


class UnsupportedRequestError(ValueError):
    """The user asked for a condition or task that this model does not offer."""


@dataclass
class Decoded:
    """One generated crystal, or the reason it could not be built (never an exception)."""

    structure: Structure | None
    reason: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.structure is not None


class GenerativeModel(nn.Module, ABC):
    """Base class of every method's model.

    A model is assembled from named parts: its ``model`` config section names a transform, a denoiser, one noise
    process per variable, a decoder (and a learned encoder where the method has one), each ``{name: <registry
    name>, ...options}``; :meth:`assemble` resolves them through the plugin registries and refuses a pairing
    that cannot work before anything is built or read (crystalgen.models.assembly).

    Class attributes a recipe sets:
        name: registry name (``crystalgen run <name>``).
        spec: what its slots ask of their parts (:class:`~crystalgen.specs.ModelSpec`).
        default_sampler: sampler used when the user names none.
        conditions: the sampling conditions it accepts, from ``crystalgen.conditions.CONDITION_KINDS``
            (``"composition"``, ``"spacegroup"``, ``"num_atoms"``); ``prepare_sampling`` receives one value per crystal
            of each (SampleRequest). Declaring ``"composition"`` makes the model run the ``csp`` task.
        tasks: the optional methods it implements beyond ``"generate"``: ``"reconstruct"``, ``"optimize"`` (the
            registered tasks of those names call them; crystalgen.tasks), ``"fit_property_head"`` (``optimize
            --fit-head-on`` calls it first).
        request_options: keys of ``SampleRequest.options`` the model reads (SymmCD: ``spacegroup_prior``); the
            runner routes ``sample --option KEY=VALUE`` here when the sampler takes no option ``KEY``.
        grad_in_denoise: True when :meth:`denoise` takes gradients (scores as autograd gradients of an energy or of
            distance scores): samplers then run it with gradients enabled, on detached inputs, and detach its
            predictions (crystalgen.samplers.base.denoise), while every other part of sampling stays without.
        config_package: package holding ``<preset>.yaml`` config files (documented OmegaConf YAML).
    """

    name: ClassVar[str]
    spec: ClassVar[ModelSpec]
    default_sampler: ClassVar[str] = "ancestral"
    conditions: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"generate"})
    request_options: ClassVar[frozenset[str]] = frozenset()
    grad_in_denoise: ClassVar[bool] = False
    config_package: ClassVar[str]

    processes: nn.ModuleDict

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, Path]:
        """Preset name -> YAML file (at least ``small`` and ``paper``)."""
        root = resources.files(cls.config_package)
        return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}

    @classmethod
    def from_config(cls, cfg: DictConfig) -> GenerativeModel:
        """Build the model from the ``model`` section of a resolved config. Default (contract 2.2): ``cls(cfg)``, for
        the usual ``__init__(self, cfg)`` that builds the parts through :meth:`assemble`; override it when building
        takes more than that section."""
        return cls(cfg)

    @classmethod
    def upgrade_config(cls, cfg: DictConfig) -> DictConfig:
        """The ``model`` section of a saved configuration (a checkpoint's, a run's) in the shape this version of the
        model reads: the place to migrate a plugin's config between versions, so that runs trained with an older
        version still sample and resume. The runner calls it wherever a saved configuration is rebuilt, before any
        override applies and before the model is built; a section already in today's shape must come back as it
        is. Default: unchanged."""
        return cfg

    @classmethod
    def part_context(cls, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """Per slot (``"denoiser"``, ``"processes.lattice"``, ...), constructor arguments the model supplies itself
        (the shared number of levels, class counts); a part receives those its constructor names, and an option
        setting one of them is refused."""
        return {}

    @classmethod
    def assemble(cls, cfg: DictConfig) -> Assembly:
        """The parts named by the ``model`` section ``cfg``, resolved through the installed registries and checked
        to fit together (IncompatiblePartsError names the installed parts that would); nothing is built yet."""
        from crystalgen.models.assembly import assemble

        return assemble(cls, cfg)

    @classmethod
    def transform(cls, cfg: DictConfig) -> StructureTransform:
        """The preprocessing (Structure -> Data) this model trains on, ``model.transform``; cached by the dataset
        layer. Assembling checks every part first, so a misfit is refused before any data is read."""
        return cast(StructureTransform, cls.assemble(cfg).build("transform"))

    def process_as(self, variable: str, kind: type[P]) -> P:
        """The process of ``variable`` as ``kind`` (a process class or a runtime-checkable capability), whose methods
        the model's own code calls: ``processes`` holds them as plain modules, and a configured process of another
        kind is refused here with both names rather than failing later on a missing method."""
        process = self.processes[variable]
        if not isinstance(process, kind):
            raise TypeError(f"{type(self).__name__} needs a {kind.__name__} for the variable {variable!r}; the configured "
                            f"process is a {type(process).__name__} (choose another in model.processes.{variable})")
        return process

    def as_sampling_model(self) -> SamplingModel:
        """This model as a sampler sees it (``Sampler.run(model.as_sampling_model(), ...)``). torch types the
        ``processes`` ModuleDict as holding plain modules; each entry is checked to be a NoiseProcess here, which is
        what makes the model a SamplingModel."""
        wrong = {var: type(p).__name__ for var, p in self.processes.items() if not isinstance(p, NoiseProcess)}
        if wrong:
            raise TypeError(f"{type(self).__name__}.processes holds modules that are not noise processes: {wrong}")
        return cast("SamplingModel", self)

    def fit_statistics(self, train: Sequence[Data]) -> None:
        """Learn data-derived quantities (marginals, p(G), scalers) from the preprocessed training set.

        Kept in buffers or ``get_extra_state`` so that they travel with the checkpoint.
        """

    # -- memory (crystalgen.runner.budget packs batches with these) ----------------------------------
    def memory_cost(self, num_nodes: Tensor, *, training: bool) -> Tensor:
        """Upper estimate of the working bytes each crystal adds to a batch, (B,) float64 from its node count (B,).

        ``num_nodes`` counts what the model's graph is built on: ``Data.num_nodes`` of :meth:`transform`'s output
        (atoms of a full cell; SymmCD: orbit representatives), and the same count that :meth:`prepare_sampling`
        draws. ``training`` covers a training step (forward and backward of :meth:`training_loss`); otherwise a
        sampling step plus :meth:`decode` (and the optional tasks). The estimate must hold for any geometry the
        model may meet, generated crystals of absurd density included: a model whose graph degree grows with
        density caps it (e.g. a maximum number of neighbours), so that the node count bounds the edges.
        Default: fully connected message passing with :data:`DEFAULT_TRAINING_BYTES` / :data:`DEFAULT_SAMPLING_BYTES`.
        """
        per_node, per_pair = DEFAULT_TRAINING_BYTES if training else DEFAULT_SAMPLING_BYTES
        n = num_nodes.to(torch.float64)
        return per_node * n + per_pair * n * n

    def memory_overhead(self, *, training: bool) -> float:
        """Working bytes one batch takes whatever its crystals (tables built on first use, allocator slack); the
        crystals of a batch share what is left of the budget. Default 0: :meth:`memory_cost` is generous."""
        return 0.0

    def max_sample_nodes(self) -> int | None:
        """The most nodes (as in :meth:`memory_cost`) one crystal drawn by :meth:`prepare_sampling` can have, after
        :meth:`fit_statistics` or loading a checkpoint; the runner sizes sampling batches for it. None: unknown
        (the requested batch size is kept, with a warning)."""
        return None

    # -- training -----------------------------------------------------------------------------------
    @abstractmethod
    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Scalar ``"loss"`` to minimise plus named parts for logging.

        A mean over the batch's crystals (each crystal weighing the same) lets the runner split a batch that
        exceeds the memory budget into micro-batches with exactly the full batch's gradient; a mean over atoms or
        representatives gives it only approximately (docs/architecture.md, "Memory budget")."""

    def on_train_epoch(self, epoch: int, max_epochs: int) -> None:
        """Called by the runner before each training epoch (0-based), e.g. for CDVAE's teacher forcing of the
        lattice during the first epochs. State that changes the loss must be derivable from ``epoch`` so that a
        resumed run behaves like an uninterrupted one."""

    def training_stages(self) -> Sequence[Stage]:
        """The stages this model trains in, in order (crystalgen.models.stages.Stage: which parameters train, which
        loss key, how long); the runner gives each its own optimiser and schedule, freezes the other parameters and
        writes ``checkpoints/stage-<name>.ckpt`` when it ends. Default: none, the model trains as one whole."""
        return ()

    def on_train_stage(self, stage: Stage) -> None:
        """Called by the runner when a training stage begins, and when a resumed run continues inside it (before
        its first ``on_train_epoch``): e.g. to compute only the stage's loss in ``training_loss``. State that changes
        the loss must follow from the stage alone, so that a resumed run behaves like an uninterrupted one."""

    # -- sampling ---------------------------------------------------------------------------------
    @abstractmethod
    def prepare_sampling(self, request: SampleRequest) -> Condition:
        """Fill in what is fixed while sampling (priors that are not noise live here: SymmCD's p(G), p(M|G);
        the VAE's aggregate predictors) and the shape of each variable. Raises UnsupportedRequestError."""

    @abstractmethod
    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """One prediction per variable, each in the parameterisation its process declares."""

    def current_values(self, names: frozenset[str], state: dict[str, Tensor], condition: Condition) -> dict[str, Tensor]:
        """The current values of state variables ``names`` in the form the processes that read them take
        (``NoiseProcess.reads``), at every sampling step. Default: the state's own tensors; override when the state
        keeps a variable in another form than its readers expect (lattice features -> (B, 3, 3) Angstrom)."""
        return {name: state[name] for name in names}

    @abstractmethod
    def decode(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        """Final state -> crystals (or per-crystal failure reasons)."""

    # -- optional tasks (declared in ``tasks``; the runner checks with require_task first) ------------
    def reconstruct(self, batch: Batch, sampler: Sampler, *, generator: torch.Generator | None = None) -> list[Decoded]:
        """Task ``"reconstruct"``: encode each crystal of ``batch`` (preprocessed by :meth:`transform`) and
        decode it back, one Decoded per input crystal in order (CDVAE: encoder -> z -> Langevin sampling;
        StructRepDiff: descriptor -> gradient reconstruction, which may ignore ``sampler``)."""
        self.require_task("reconstruct")
        raise NotImplementedError(f"model {self.name!r} lists 'reconstruct' in its tasks but does not implement it")

    def optimize(self, batch: Batch, sampler: Sampler, *, direction: str = "min", steps: int | None = None,
                 generator: torch.Generator | None = None) -> list[Decoded]:
        """Task ``"optimize"``: start from each crystal of ``batch`` and move it towards a lower (``"min"``) or
        higher (``"max"``) value of the model's property in ``steps`` optimisation steps (CDVAE's latent
        gradient descent): one Decoded per input crystal in order, or the same number k > 1 per input, input-major
        (k points along each optimisation trajectory; the runner gives each its input's ``input_index``)."""
        self.require_task("optimize")
        raise NotImplementedError(f"model {self.name!r} lists 'optimize' in its tasks but does not implement it")

    def fit_property_head(self, batches: Iterable[Batch], property: str, *,
                          generator: torch.Generator | None = None) -> dict[str, Any]:
        """Task ``"fit_property_head"``: fit a new head that predicts ``property`` (the batches' ``prop_<name>``
        values, data units) from the model's latent code of each crystal, with every other weight frozen, so that
        :meth:`optimize` follows it. For a model trained without a property head, or on a training split that lacks
        the property (``crystalgen optimize --fit-head-on NAME:SPLIT --property NAME``). Returns a JSON summary of
        the fit (sizes, held-out error), recorded with the output."""
        self.require_task("fit_property_head")
        raise NotImplementedError(f"model {self.name!r} lists 'fit_property_head' in its tasks but does not implement it")

    # -- helpers the runner uses --------------------------------------------------------------------
    def check_request(self, request: SampleRequest) -> None:
        unsupported = request.requested_conditions() - set(self.conditions)
        if unsupported:
            offered = ", ".join(sorted(self.conditions)) or "none"
            raise UnsupportedRequestError(
                f"model {self.name!r} cannot condition on {', '.join(sorted(unsupported))} (it accepts: {offered})."
            )

    def require_task(self, task: str) -> None:
        if task not in self.tasks:
            raise UnsupportedRequestError(f"model {self.name!r} does not support {task!r} (tasks: {', '.join(sorted(self.tasks))}).")
