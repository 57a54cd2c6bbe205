"""The conditions of a sampling job, from the run config's ``sample.condition`` or the flags of ``crystalgen sample``.

A :class:`ConditionSpec` is what the user wrote: values (a composition or a list of them, a space group, a number of
atoms), or ``from: DATASET:SPLIT`` (each crystal of the split gives its own composition / space group / atom count),
and ``per_condition``. :meth:`ConditionSpec.check` refuses what cannot work before any training or data read (bad
values, a kind the model does not declare, an unknown dataset or split); :meth:`ConditionSpec.resolve` expands it into
:class:`Conditions`, one value per generated crystal, which ``generate`` slices into each batch's SampleRequest.

Counting: the values form a list of L conditions (a single value is a list of one; ``from`` gives one per crystal of
the split). With ``per_condition: N`` every condition gets N consecutive crystals (L x N in all). Without it, a
single condition (or none) gets ``num_samples`` crystals and a list gets one crystal per condition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crystalgen.conditions import CONDITION_KINDS, ConditionError, describe_value, per_crystal
from crystalgen.models.base import UnsupportedRequestError
from crystalgen.state import SampleRequest

if TYPE_CHECKING:
    from crystalgen.data.records import LoadedSplit

log = logging.getLogger("crystalgen.conditions")

#: spglib tolerance (Angstrom) for the space group of a dataset crystal, as the d_sg metric uses
SYMPREC = 0.1
#: conditions listed in full in sampling.json (longer lists: their count; samples.jsonl has every crystal's)
LISTED = 20


@dataclass(frozen=True)
class ConditionSpec:
    """Conditions as the user gave them (see the module docstring for how they are counted).

    Attributes:
        composition, spacegroup, num_atoms: one value for all crystals, or a list (one per condition); None: free.
        source: ``DATASET:SPLIT`` whose crystals give their own conditions (``from`` in the run config).
        take: the kinds taken from ``source``; None: every kind the model accepts.
        max_crystals: use only the first N crystals of ``source``.
        per_condition: crystals generated per condition; None: see the module docstring.
    """

    composition: Any = None
    spacegroup: Any = None
    num_atoms: Any = None
    source: str | None = None
    take: tuple[str, ...] | None = None
    max_crystals: int | None = None
    per_condition: int | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> ConditionSpec:
        """The ``sample.condition`` section of a run configuration (a DictConfig or plain mapping)."""
        from omegaconf import DictConfig, OmegaConf

        raw = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section or {})
        assert isinstance(raw, dict)
        take = raw.get("take")
        return cls(composition=raw.get("composition"), spacegroup=raw.get("spacegroup"), num_atoms=raw.get("num_atoms"),
                   source=raw.get("from"), take=tuple(take) if take is not None else None,
                   max_crystals=raw.get("max_crystals"), per_condition=raw.get("per_condition"))

    def decides_count(self) -> bool:
        """True when the conditions alone decide how many crystals to generate (a list, ``from``, per_condition)."""
        return (self.source is not None or self.per_condition is not None
                or any(_length(v) > 1 for v in self.explicit().values()))

    def scores_csp(self, accepted: Iterable[str]) -> bool:
        """True when each crystal of ``from`` gives its composition: the samples are structure predictions of it."""
        return "composition" in self.taken(accepted)

    def explicit(self) -> dict[str, Any]:
        """The kinds given by value, and their values."""
        return {kind: getattr(self, kind) for kind in CONDITION_KINDS if getattr(self, kind) is not None}

    def taken(self, accepted: Iterable[str]) -> tuple[str, ...]:
        """The kinds ``source`` provides: ``take``, else every kind the model accepts."""
        if self.source is None:
            return ()
        if self.take is not None:
            return tuple(self.take)
        return tuple(kind for kind in CONDITION_KINDS if kind in set(accepted))

    def kinds(self, accepted: Iterable[str]) -> set[str]:
        return set(self.explicit()) | set(self.taken(accepted))

    def check(self, model_name: str, accepted: Iterable[str]) -> None:
        """Refuse values no model can use, kinds ``model_name`` does not accept (naming those it does) and an unknown
        ``from`` dataset or split; reads no data."""
        accepted = frozenset(accepted)
        offered = ", ".join(sorted(accepted & set(CONDITION_KINDS))) or "none"
        for key in ("per_condition", "max_crystals"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConditionError(f"{key} must be a positive whole number, got {value!r}")
        lengths = {kind: _length(value) for kind, value in self.explicit().items()}
        for kind, value in self.explicit().items():
            per_crystal(kind, value, lengths[kind])
        if len({n for n in lengths.values() if n > 1}) > 1:
            raise ConditionError(f"condition lists of different lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())}): "
                                 "give one value, or lists of the same length (one entry per condition)")
        if self.take is not None:
            if self.source is None:
                raise ConditionError("take names the kinds to take from a dataset: give from: DATASET:SPLIT too")
            unknown = set(self.take) - set(CONDITION_KINDS)
            if unknown or not self.take:
                raise ConditionError(f"take: {sorted(unknown) or 'empty'}; the condition kinds are {', '.join(CONDITION_KINDS)}")
        if self.max_crystals is not None and self.source is None:
            raise ConditionError("max_crystals limits the crystals of from: DATASET:SPLIT; give from too")
        if self.source is not None:
            both = set(self.taken(accepted)) & set(self.explicit())
            if both:
                raise ConditionError(f"{', '.join(sorted(both))} given both by value and by from: {self.source}; keep one")
            if not self.taken(accepted):
                raise UnsupportedRequestError(f"from: {self.source}: model {model_name!r} accepts no condition that a "
                                              f"crystal can give (it accepts: {offered})")
            _check_split(self.source)
        unsupported = self.kinds(accepted) - accepted
        if unsupported:
            raise UnsupportedRequestError(f"model {model_name!r} cannot condition on {', '.join(sorted(unsupported))} "
                                          f"(it accepts: {offered})")

    def resolve(self, model_name: str, accepted: Iterable[str], num_samples: int | None, *,
                show_progress: bool = False, loaded: LoadedSplit | None = None) -> Conditions:
        """One value per crystal of each kind; ``num_samples``: see the module docstring (may be None when the
        conditions decide the count, and must agree with them when given). Reads ``source`` unless its crystals are
        given as ``loaded`` (a task's job reads them once, TaskJob.inputs)."""
        self.check(model_name, accepted)
        values: dict[str, list[Any]] = {}
        input_index = input_id = None
        if self.source is not None:
            values, input_index, input_id = _from_split(self.source, self.taken(accepted), self.max_crystals,
                                                         show_progress, loaded)
        explicit = self.explicit()
        count = max([_length(v) for v in explicit.values()] + [len(input_index or [])] + [1])
        listed = self.source is not None or count > 1
        for kind, value in explicit.items():
            values[kind] = per_crystal(kind, value, count) or []
        per = self.per_condition
        if per is not None:
            total = count * per
            if num_samples is not None and num_samples != total:
                raise ConditionError(f"{count} condition(s) x per_condition {per} = {total} crystals, but {num_samples} "
                                     "were asked for: drop the number of samples or make them agree")
        elif listed:
            per, total = 1, count
            if num_samples is not None and num_samples != total:
                raise ConditionError(f"{count} conditions give one crystal each ({total}), but {num_samples} were asked "
                                     "for: drop the number of samples, or set per_condition")
        else:
            if num_samples is None:
                raise ConditionError("give the number of crystals to generate (num_samples, -n)")
            per, total = num_samples, num_samples
        expanded = {kind: [v for v in vals for _ in range(per)] for kind, vals in values.items()}
        return Conditions(
            count=total, values=expanded, source=self.source, take=self.taken(accepted), per_condition=per,
            distinct=count if values else 0,
            input_index=[i for i in input_index for _ in range(per)] if input_index is not None else None,
            input_id=[i for i in input_id for _ in range(per)] if input_id is not None else None,
        )


@dataclass
class Conditions:
    """The conditions of every crystal of a sampling job (``values[kind][i]`` for crystal ``i``), and their origin.

    Attributes:
        count: crystals to generate.
        values: per kind, one value per crystal; empty for unconditioned sampling.
        source: the ``DATASET:SPLIT`` the values came from, if any; ``take``: the kinds taken from it.
        per_condition: consecutive crystals that share one condition.
        distinct: conditions before that repetition (0: unconditioned).
        input_index, input_id: per crystal, the position and id of the ``source`` crystal it came from.
    """

    count: int
    values: dict[str, list[Any]] = field(default_factory=dict)
    source: str | None = None
    take: tuple[str, ...] = ()
    per_condition: int = 1
    distinct: int = 0
    input_index: list[int] | None = None
    input_id: list[str] | None = None

    @classmethod
    def none(cls, count: int) -> Conditions:
        return cls(count=count, per_condition=count)

    def request(self, start: int, stop: int, options: dict[str, Any] | None = None) -> SampleRequest:
        """The SampleRequest of crystals ``start..stop-1``."""
        return SampleRequest(stop - start, options=dict(options or {}),
                             **{kind: vals[start:stop] for kind, vals in self.values.items()})

    def kinds(self) -> set[str]:
        return set(self.values)

    def atom_counts(self) -> list[int] | None:
        """Atoms of each crystal's cell when the conditions fix them (num_atoms, composition), else None."""
        if "num_atoms" in self.values:
            return [int(n) for n in self.values["num_atoms"]]
        if "composition" in self.values:
            return [int(c.num_atoms) for c in self.values["composition"]]
        return None

    def rows(self) -> list[dict[str, Any]] | None:
        """Per crystal, the fields samples.jsonl adds: its conditions and, from a dataset, the input crystal."""
        if not self.values:
            return None
        rows: list[dict[str, Any]] = []
        for i in range(self.count):
            row: dict[str, Any] = {"condition": {k: describe_value(k, v[i]) for k, v in self.values.items()}}
            if self.input_index is not None:
                row["input_index"] = self.input_index[i]
                row["input_id"] = self.input_id[i] if self.input_id is not None else None
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any] | None:
        """What sampling.json records of the conditions (None: unconditioned)."""
        if not self.values:
            return None
        out: dict[str, Any] = {"kinds": sorted(self.values), "from": self.source, "take": list(self.take),
                               "conditions": self.distinct, "per_condition": self.per_condition, "crystals": self.count}
        if self.distinct <= LISTED:
            step = self.per_condition
            out["values"] = {k: [describe_value(k, x) for x in v[::step]] for k, v in self.values.items()}
        return out


def describe(summary: Mapping[str, Any] | None) -> str:
    """One line for a report from :meth:`Conditions.summary`."""
    if not summary:
        return "none (unconditioned sampling)"
    kinds = ", ".join(summary["kinds"])
    per = summary["per_condition"]
    crystals = f"{summary['crystals']} crystal{'s' if summary['crystals'] != 1 else ''}"
    if summary.get("from"):
        what = f"{kinds} of each of {summary['conditions']} crystals of {summary['from']}"
    else:
        shown = summary.get("values") or {}
        listing = "; ".join(f"{k} {', '.join(map(str, v))}" for k, v in shown.items()) or kinds
        what = f"{listing}" if summary["conditions"] == 1 else f"{summary['conditions']} conditions ({listing})"
    return f"{what}; {per} per condition, {crystals}"


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (list, tuple)) else 1


def _check_split(source: str) -> None:
    """A known dataset and split (no data read)."""
    from crystalgen.data.registry import get_dataset
    from crystalgen.runner.datasets import parse_split

    name, split = parse_split(source)
    try:
        get_dataset(name).check_split(split)
    except ValueError as exc:
        raise ConditionError(f"from: {source}: {exc}") from None


def _from_split(source: str, kinds: Iterable[str], max_crystals: int | None, show_progress: bool,
                loaded: LoadedSplit | None = None) -> tuple[dict[str, list[Any]], list[int], list[str]]:
    """Each crystal's own conditions of kind ``kinds``, with its position and id in the split (read here unless
    ``loaded`` holds its records). A crystal whose space group spglib cannot find is left out, with a warning."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalgen.data.registry import get_dataset
    from crystalgen.runner.datasets import parse_split

    if loaded is None:
        name, split = parse_split(source)
        loaded = get_dataset(name).load(split, max_rows=max_crystals, progress=show_progress)
    records = loaded.records[:max_crystals]
    if not records:
        raise ConditionError(f"from: {source}: the split has no readable crystal")
    kinds = tuple(kinds)
    values: dict[str, list[Any]] = {kind: [] for kind in kinds}
    index, ids = [], []
    for i, record in enumerate(records):
        s = record.structure
        found: dict[str, Any] = {"composition": s.composition, "num_atoms": len(s)}
        if "spacegroup" in kinds:
            try:
                found["spacegroup"] = SpacegroupAnalyzer(s, symprec=SYMPREC).get_space_group_number()
            except Exception as exc:  # noqa: BLE001 - spglib's failures share no type; keep the other crystals
                log.warning("from: %s: crystal %d (%s) left out: no space group (%s)", source, i, record.id, exc)
                continue
        for kind in kinds:
            values[kind].append(found[kind])
        index.append(i)
        ids.append(record.id)
    log.info("conditions from %s: %d crystals (%s)", source, len(index), ", ".join(kinds))
    return values, index, ids
