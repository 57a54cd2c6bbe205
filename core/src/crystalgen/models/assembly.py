"""Assembling a model from the parts its configuration names, and refusing pairings that cannot work.

A model's config names each part as ``{name: <registry name>, ...options}`` in the slots ``transform``,
``encoder`` (models with a learned encoder), ``denoiser``, ``processes.<variable>`` and ``decoder``. Each name
is looked up in the plugin host's registry of its kind; the part's constructor receives its options, plus the
values the model supplies for that slot (``GenerativeModel.part_context``: the shared number of levels, class
counts, ...) for the parameters it names. Every part declares a spec (crystalgen.specs), and
:func:`assemble` checks them against each other and against the model's spec before anything is built or read,
naming for each slot that does not fit the installed parts that would (as ``Sampler.check`` does for samplers).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from omegaconf import DictConfig, OmegaConf
from torch import nn

from crystalgen.registry import UnknownComponentError
from crystalgen.specs import (
    DecoderSpec,
    DenoiserSpec,
    EncoderSpec,
    Kind,
    ModelSpec,
    ProcessSpec,
    Variable,
    names,
)

if TYPE_CHECKING:
    from crystalgen.models.base import GenerativeModel
    from crystalgen.plugins import PluginHost

PROCESSES = "processes"


class IncompatiblePartsError(ValueError):
    """Parts named by a model's configuration that cannot work together; the message names those that fit."""


class PartConfigError(ValueError):
    """A part section that cannot be read: no name, an unknown option, an option the model sets itself."""


@dataclass(frozen=True)
class SlotType:
    """The registry kind and base class of the parts a slot takes."""

    kind: str
    base: type


def slot_types() -> dict[str, SlotType]:
    """Slot (``processes`` for every variable) -> what it takes. Imported here: the bases import the models."""
    from crystalgen.decoders.base import Decoder
    from crystalgen.denoisers.base import Denoiser
    from crystalgen.encoders.base import Encoder, StructureTransform
    from crystalgen.processes.base import NoiseProcess

    return {"transform": SlotType("encoder", StructureTransform), "encoder": SlotType("encoder", Encoder),
            "denoiser": SlotType("denoiser", Denoiser), PROCESSES: SlotType("noise process", NoiseProcess),
            "decoder": SlotType("decoder", Decoder)}


def slot_type(slot: str) -> SlotType:
    return slot_types()[slot.split(".")[0]]


@dataclass(frozen=True)
class Part:
    """One resolved part: where it goes, what it is, how it will be built and what it declares."""

    slot: str
    name: str
    cls: type
    args: dict[str, Any]
    spec: Any

    def build(self) -> Any:
        return self.cls(**self.args)

    @property
    def missing(self) -> list[str]:
        """Constructor parameters without a default that neither the options nor the model's context give."""
        params = inspect.signature(cast(Any, self.cls).__init__).parameters
        return [n for n, p in params.items() if n != "self" and n not in self.args and p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


@dataclass(frozen=True)
class Fit:
    """An installed part that fits a slot, and what it must be given to fit: ``required`` options it has no default
    for, ``settings`` (option -> value) that differ from its defaults (a process's ``prediction``). Both empty: it
    fits when only its name is given."""

    name: str
    required: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()

    @property
    def as_is(self) -> bool:
        return not self.required and not self.settings

    def __str__(self) -> str:
        notes = ([f"needs {', '.join(self.required)}"] if self.required else []) + [f"{k}={v}" for k, v in self.settings]
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name


# -- declaring ---------------------------------------------------------------------------------------------
def process_kind(cls: type) -> Kind:
    """How samplers move a process's variable: ``crystalgen.samplers.base.role``, read off the class (its
    ``capabilities`` and ``discrete`` are class attributes)."""
    from crystalgen.capabilities import Process
    from crystalgen.samplers.base import role

    return role(cast(Process, cls))


def declare(slot: str, cls: Any, args: Mapping[str, Any]) -> Any:
    """The spec of part class ``cls`` built with ``args`` for ``slot``."""
    if slot.startswith(f"{PROCESSES}."):
        predictions = tuple(getattr(cls, "predictions", (cls.prediction,)))
        default = predictions[0] if len(predictions) == 1 else cls.prediction
        return ProcessSpec(process_kind(cls), cls.space, str(args.get("prediction", default)), frozenset(predictions),
                           cls.needs, frozenset(getattr(cls, "reads", frozenset())))
    if getattr(cls, "spec", None) is None:
        raise PartConfigError(f"{cls.__name__} declares no spec (what it reads and provides), so it cannot be a model's part")
    return cls.declare(args)


def constructor_arguments(cls: Any, slot: str, options: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``cls``: its defaults, then the model's ``context`` for the parameters it names, then
    ``options``. An option the constructor does not take, or one the model sets itself, is refused."""
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    for key in options:
        if key in context:
            raise PartConfigError(f"model.{slot}.{key} is set by the model, not by the part's options")
        if key not in named and not takes_any:
            close = difflib.get_close_matches(key, sorted(named), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise PartConfigError(f"model.{slot}: {cls.__name__} has no option '{key}'.{hint} "
                                  f"Options: {', '.join(sorted(named - set(context))) or 'none'}.")
    args = {n: p.default for n, p in params.items() if n in named and p.default is not inspect.Parameter.empty}
    args.update({k: v for k, v in context.items() if k in named or takes_any})
    args.update(options)
    return args


def read_section(slot: str, section: Any) -> tuple[str, dict[str, Any]]:
    """(name, options) of a part section ``{name: ..., **options}``."""
    if isinstance(section, DictConfig):
        section = OmegaConf.to_container(section, resolve=True)
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise PartConfigError(f"model.{slot} must be a mapping with a 'name' (a registered {slot_type(slot).kind}) "
                              f"and the part's options, got {section!r}")
    options = {str(k): v for k, v in section.items() if k != "name"}
    return section["name"], options


def resolve(slot: str, name: str, options: Mapping[str, Any], context: Mapping[str, Any], host: PluginHost) -> Part:
    """The registered part ``name`` for ``slot``, with its constructor arguments and spec."""
    st = slot_type(slot)
    try:
        cls = host.registry(st.kind).get(name)
    except UnknownComponentError as exc:
        raise UnknownComponentError(f"model.{slot}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, st.base)):
        raise PartConfigError(f"model.{slot}: {st.kind} {name!r} is not a {st.base.__name__}, so it cannot serve here")
    args = constructor_arguments(cls, slot, options, context)
    return Part(slot, name, cls, args, declare(slot, cls, args))


# -- checking -----------------------------------------------------------------------------------------------
def process_problems(variable: str, want: Variable, spec: ProcessSpec, denoiser: DenoiserSpec | None,
                     any_prediction: bool = False, variables: frozenset[str] | None = None) -> list[str]:
    """Why a process does not fit ``variable`` (and the denoiser's predictions, when given; and, given the model's
    ``variables``, whether the state has the other variables the process reads)."""
    out = []
    if spec.kind != want.kind:
        out.append(f"is a {spec.kind} process, {variable} needs a {want.kind} one")
    if spec.space != want.space:
        out.append(f"works on {spec.space} values, {variable} holds {want.space} values")
    if variables is not None and not spec.reads <= variables - {variable}:
        out.append(f"reads the current {names(spec.reads - (variables - {variable}))}, which the model does not "
                   f"diffuse beside {variable}")
    if not spec.needs - spec.reads <= want.args:
        out.append(f"needs {names(spec.needs - spec.reads - want.args)}, which the model does not pass for {variable}")
    if want.predictions is not None and spec.prediction not in want.predictions and not (
            any_prediction and spec.predictions & want.predictions):
        usable = spec.predictions & want.predictions
        out.append(f"takes a {spec.prediction!r} prediction, the model handles {variable} as {names(want.predictions)}"
                   + (f" (set prediction to one of {names(usable)})" if usable else ""))
    if denoiser is not None and variable in denoiser.predicts:
        offered = denoiser.predicts[variable]
        usable = spec.predictions if any_prediction else frozenset({spec.prediction})
        if not usable & offered:
            out.append(f"takes a {spec.prediction!r} prediction, the denoiser predicts {variable} as {names(offered)}"
                       + (f" (set prediction to one of {names(spec.predictions & offered)})" if spec.predictions & offered else ""))
    return out


def denoiser_problems(spec: DenoiserSpec, model: ModelSpec, processes: Mapping[str, ProcessSpec]) -> list[str]:
    out = []
    missing = set(model.variables) - set(spec.predicts)
    if missing:
        out.append(f"predicts no {names(missing)}")
    if not spec.reads <= set(model.variables):
        out.append(f"reads {names(spec.reads - set(model.variables))}, which the model does not diffuse")
    if not spec.conditions <= model.conditions:
        out.append(f"needs conditions {names(spec.conditions - model.conditions)}, which the model does not provide")
    for var, proc in processes.items():
        offered = spec.predicts.get(var)
        if offered is not None and proc.prediction not in offered:
            out.append(f"predicts {var} as {names(offered)}, its process takes {proc.prediction!r}")
    return out


def decoder_problems(spec: DecoderSpec, model: ModelSpec) -> list[str]:
    out = []
    if not spec.reads <= model.decodes:
        out.append(f"reads {names(spec.reads - model.decodes)}, which the model does not produce "
                   f"(it hands its decoder {names(model.decodes)})")
    if not spec.conditions <= model.conditions:
        out.append(f"needs conditions {names(spec.conditions - model.conditions)}, which the model does not provide")
    return out


def encoder_problems(spec: EncoderSpec, model: ModelSpec, fields: frozenset[str] | None) -> list[str]:
    out = []
    if not model.encodes <= spec.provides:
        out.append(f"provides no {names(model.encodes - spec.provides)}")
    if fields is not None and not spec.reads <= fields:
        out.append(f"reads {names(spec.reads - fields)}, which the transform does not write")
    return out


def transform_problems(spec: EncoderSpec, needed: frozenset[str]) -> list[str]:
    return [f"writes no {names(needed - spec.provides)}"] if not needed <= spec.provides else []


# -- the assembly ---------------------------------------------------------------------------------------------
@dataclass
class Assembly:
    """The resolved parts of one model configuration, checked to fit together; builds them on demand."""

    model: str
    spec: ModelSpec
    parts: dict[str, Part]
    context: Mapping[str, Mapping[str, Any]]
    host: PluginHost

    def build(self, slot: str) -> Any:
        """A fresh instance of the part in ``slot`` (``"denoiser"``, ``"processes.lattice"``, ...)."""
        return self.parts[slot].build()

    def processes(self) -> nn.ModuleDict:
        """Every variable's process, in the order of the model's spec."""
        return nn.ModuleDict({var: self.build(f"{PROCESSES}.{var}") for var in self.spec.variables})

    def problems(self, slot: str, part: Part, any_prediction: bool = False, misfits: frozenset[str] = frozenset()) -> list[str]:
        """Why ``part`` would not fit ``slot`` beside the other configured parts (empty: it fits). A denoiser is not
        blamed for the parameterisation of the variables in ``misfits``, whose processes are refused anyway."""
        spec, others = part.spec, self.parts
        denoiser = others["denoiser"].spec if "denoiser" in others else None
        if slot.startswith(f"{PROCESSES}."):
            var = slot.split(".", 1)[1]
            return process_problems(var, self.spec.variables[var], spec, denoiser, any_prediction,
                                    frozenset(self.spec.variables))
        if slot == "denoiser":
            procs = {s.split(".", 1)[1]: p.spec for s, p in others.items() if s.startswith(f"{PROCESSES}.")}
            return denoiser_problems(spec, self.spec, {v: p for v, p in procs.items() if v not in misfits})
        if slot == "decoder":
            return decoder_problems(spec, self.spec)
        if slot == "encoder":
            fields = others["transform"].spec.provides if "transform" in others else None
            return encoder_problems(spec, self.spec, fields)
        encoder = others.get("encoder")
        return transform_problems(spec, self.spec.fields | (encoder.spec.reads if encoder is not None else frozenset()))

    def fits(self, slot: str) -> list[Fit]:
        """Installed parts (the configured one included) that would fit ``slot``, each with the options it must be
        given: those it has no default for, and the prediction a process must be set to when its default does not
        fit. Why: listing a part that fails once named (structrepdiff_ead needs its ``ead`` settings) misleads."""
        st = slot_type(slot)
        found = []
        for name, cls in self.host.registry(st.kind).items():
            if not (isinstance(cls, type) and issubclass(cls, st.base)):
                continue
            try:  # the configured part with its configured options, any other with its defaults
                configured = self.parts.get(slot)
                candidate = configured if configured is not None and configured.name == name else \
                    resolve(slot, name, {}, self.context.get(slot, {}), self.host)
            except (PartConfigError, TypeError, ValueError):
                continue
            if self.problems(slot, candidate, any_prediction=True):
                continue
            settings: tuple[tuple[str, str], ...] = ()
            if self.problems(slot, candidate):  # a process whose default prediction is not the one wanted
                settings = next(((("prediction", p),) for p in sorted(candidate.spec.predictions)
                                 if not self.problems(slot, self._with(candidate, prediction=p))), ())
                if not settings:
                    continue
            found.append(Fit(name, tuple(candidate.missing), settings))
        return found

    def _with(self, part: Part, **options: Any) -> Part:
        return resolve(part.slot, part.name, options, self.context.get(part.slot, {}), self.host)

    def replacements(self, slot: str) -> list[str]:
        """Installed parts (the configured one included) that fit ``slot`` when only their name is given."""
        return [f.name for f in self.fits(slot) if f.as_is]

    def check(self) -> None:
        """Raise IncompatiblePartsError naming every slot that does not fit and the installed parts that would."""
        lines = []
        misfits = frozenset(s.split(".", 1)[1] for s, p in self.parts.items()
                            if s.startswith(f"{PROCESSES}.") and self.problems(s, p))
        for slot, part in self.parts.items():
            found = self.problems(slot, part, misfits=misfits)
            if found:
                fits = [str(f) for f in self.fits(slot) if f.name != part.name]
                lines.append(f"model.{slot} {part.name!r} {'; '.join(found)}; installed parts that fit model.{slot}: "
                             f"{', '.join(fits) or 'none'}")
        if lines:
            raise IncompatiblePartsError(f"model {self.model!r} cannot be built: " + ". ".join(lines) + ".")


def part_sections(model_cls: type[GenerativeModel], cfg: DictConfig) -> dict[str, Any]:
    """Slot -> configured section, for every slot the model has (missing ones refused)."""
    spec = model_cls.spec
    wanted = ["transform"] + (["encoder"] if spec.encodes else []) + ["denoiser"]
    sections = {}
    for slot in wanted + ["decoder"]:
        if cfg.get(slot) is None:
            raise PartConfigError(f"model {model_cls.name!r}: model.{slot} is missing; name a registered "
                                  f"{slot_type(slot).kind} (see `crystalgen list`)")
        sections[slot] = cfg[slot]
    processes = cfg.get(PROCESSES) or {}
    if set(processes) != set(spec.variables):
        raise PartConfigError(f"model {model_cls.name!r}: model.processes must name a process for each of "
                              f"{names(set(spec.variables))}, got {names(set(processes))}")
    for var in spec.variables:
        sections[f"{PROCESSES}.{var}"] = processes[var]
    return {slot: sections[slot] for slot in wanted + [f"{PROCESSES}.{v}" for v in spec.variables] + ["decoder"]}


def assemble(model_cls: type[GenerativeModel], cfg: DictConfig, host: PluginHost | None = None,
             check: bool = True) -> Assembly:
    """Resolve every part named by the ``model`` section ``cfg`` and (with ``check``) refuse a misfit."""
    if getattr(model_cls, "spec", None) is None:
        raise PartConfigError(f"model {model_cls.name!r} declares no spec of its parts, so it is not built from named parts")
    if host is None:
        from crystalgen.plugins import default_host

        host = default_host()
    context = model_cls.part_context(cfg)
    parts = {}
    for slot, section in part_sections(model_cls, cfg).items():
        name, options = read_section(slot, section)
        parts[slot] = resolve(slot, name, options, context.get(slot, {}), host)
    assembly = Assembly(model_cls.name, model_cls.spec, parts, context, host)
    if check:  # a misfit first: a part swapped for one that cannot fit may leave another without its options
        assembly.check()
    for slot, part in parts.items():
        if part.missing:
            raise PartConfigError(f"model.{slot}: {part.cls.__name__} ({part.name}) needs the option(s) "
                                  f"{', '.join(part.missing)}, which have no default; give them under model.{slot}")
    return assembly
