"""Sampling conditions: parsing, per-crystal requests, the checks made before any training or data read, and the
expansion of lists, ``from: DATASET:SPLIT`` and ``per_condition`` into one condition per generated crystal."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition

from crystalgen.conditions import ConditionError, parse_composition, parse_num_atoms, parse_spacegroup
from crystalgen.models.base import UnsupportedRequestError
from crystalgen.runner.conditions import ConditionSpec, describe
from crystalgen.state import SampleRequest

CSP = frozenset({"composition", "num_atoms"})


@pytest.mark.parametrize("text, message", [
    ("Xx2O", "names Xx, which is not an element"),  # pymatgen reads unknown symbols as dummy species
    ("Qq", "not an element of the periodic table"),
    ("Sr0.5TiO3", "whole numbers of atoms"),
    ("", "expected a chemical formula"),
    ("Sr(TiO3", "is not a chemical formula"),
])
def test_a_composition_no_model_could_use_is_refused_with_its_reason(text, message):
    with pytest.raises(ConditionError, match="composition") as info:
        parse_composition(text)
    assert message in str(info.value)


def test_a_composition_is_the_whole_cell():
    assert parse_composition("Sr2Ti2O6").num_atoms == 10
    assert parse_composition("SrTiO3") == Composition({"Sr": 1, "Ti": 1, "O": 3})


@pytest.mark.parametrize("value", [0, 231, -5, "abc", 2.5, True])
def test_space_groups_run_from_1_to_230(value):
    with pytest.raises(ConditionError, match="spacegroup"):
        parse_spacegroup(value)
    assert parse_spacegroup("225") == 225 and parse_spacegroup(1) == 1


def test_an_atom_count_is_a_positive_whole_number():
    for bad in (0, -1, "x", 1.5):
        with pytest.raises(ConditionError):
            parse_num_atoms(bad)
    assert parse_num_atoms("7") == 7


def test_a_request_carries_one_condition_per_crystal():
    one = SampleRequest(3, composition="SrTiO3", spacegroup=221)
    assert [c.formula for c in one.composition] == ["Sr1 Ti1 O3"] * 3 and one.spacegroup == [221] * 3
    assert one.requested_conditions() == {"composition", "spacegroup"} and one.atom_counts() == [5, 5, 5]
    listed = SampleRequest(2, composition=["NaCl", "Si2"])
    assert listed.atom_counts() == [2, 2]
    assert SampleRequest(2, num_atoms=[4, 6]).atom_counts() == [4, 6]
    assert SampleRequest(2).requested_conditions() == set() and SampleRequest(2).atom_counts() is None
    with pytest.raises(ConditionError, match="exactly 3"):
        SampleRequest(3, spacegroup=[1, 2])
    with pytest.raises(ConditionError, match="has 5 atoms, but num_atoms asks for 4"):
        SampleRequest(1, composition="SrTiO3", num_atoms=4)


def test_a_kind_the_model_does_not_declare_is_refused_naming_what_it_accepts():
    with pytest.raises(UnsupportedRequestError, match=r"cannot condition on spacegroup \(it accepts: composition, num_atoms\)"):
        ConditionSpec(spacegroup=225).check("toy_csp", CSP)
    with pytest.raises(UnsupportedRequestError, match=r"it accepts: none"):
        ConditionSpec(composition="NaCl").check("toy", frozenset())
    with pytest.raises(UnsupportedRequestError, match="accepts no condition that a crystal can give"):
        ConditionSpec(source="embedded:test").check("toy", frozenset())


@pytest.mark.parametrize("spec, message", [
    (ConditionSpec(composition=["NaCl", "Xx"]), r"composition\[1\]"),
    (ConditionSpec(composition=["NaCl", "KCl"], num_atoms=[2, 2, 2]), "different lengths"),
    (ConditionSpec(take=("composition",)), "give from"),
    (ConditionSpec(source="embedded:test", take=("colour",)), "the condition kinds are"),
    (ConditionSpec(source="embedded:nope"), "has no split 'nope'"),
    (ConditionSpec(source="embedded:test", composition="NaCl"), "given both by value and by from"),
    (ConditionSpec(composition="NaCl", per_condition=0), "per_condition must be a positive"),
    (ConditionSpec(composition="NaCl", max_crystals=3), "give from too"),
])
def test_what_cannot_work_is_refused_before_any_data_is_read(spec, message):
    with pytest.raises(ConditionError, match=message):
        spec.check("toy_csp", CSP)


def test_lists_and_per_condition_decide_how_many_crystals():
    single = ConditionSpec(composition="NaCl").resolve("toy_csp", CSP, 4)
    assert single.count == 4 and not ConditionSpec(composition="NaCl").decides_count()
    listed = ConditionSpec(composition=["NaCl", "Si2"]).resolve("toy_csp", CSP, None)
    assert listed.count == 2 and listed.distinct == 2
    repeated = ConditionSpec(composition=["NaCl", "Si2"], per_condition=3).resolve("toy_csp", CSP, None)
    assert [c.reduced_formula for c in repeated.values["composition"]] == ["NaCl"] * 3 + ["Si"] * 3
    assert repeated.per_condition == 3 and repeated.atom_counts() == [2] * 6
    with pytest.raises(ConditionError, match="2 conditions give one crystal each"):
        ConditionSpec(composition=["NaCl", "Si2"]).resolve("toy_csp", CSP, 5)
    with pytest.raises(ConditionError, match="per_condition 3 = 6 crystals, but 5"):
        ConditionSpec(composition=["NaCl", "Si2"], per_condition=3).resolve("toy_csp", CSP, 5)
    assert ConditionSpec().resolve("toy", frozenset(), 7).count == 7
    assert describe(ConditionSpec().resolve("toy", frozenset(), 7).summary()).startswith("none")


def test_from_a_split_gives_each_crystal_its_own_conditions_per_condition_times():
    from crystalgen.data.registry import get_dataset

    records = get_dataset("embedded").load("test", max_rows=4, progress=False).records
    spec = ConditionSpec(source="embedded:test", take=("composition",), max_crystals=4, per_condition=2)
    assert spec.decides_count() and spec.scores_csp(CSP)
    resolved = spec.resolve("toy_csp", CSP, None)
    assert resolved.count == 8 and resolved.kinds() == {"composition"}
    assert resolved.values["composition"] == [r.structure.composition for r in records for _ in range(2)]
    assert resolved.input_index == [0, 0, 1, 1, 2, 2, 3, 3]
    assert resolved.input_id == [r.id for r in records for _ in range(2)]
    rows = resolved.rows()
    assert rows is not None and rows[3]["input_index"] == 1
    assert rows[3]["condition"]["composition"] == records[1].structure.composition.formula.replace(" ", "")
    summary = resolved.summary()
    assert summary is not None and summary["from"] == "embedded:test" and summary["per_condition"] == 2
    assert describe(summary) == "composition of each of 4 crystals of embedded:test; 2 per condition, 8 crystals"
    # without take: every kind the model accepts, and the batch requests carry both
    both = ConditionSpec(source="embedded:test", max_crystals=2).resolve("toy_csp", CSP, None)
    assert both.kinds() == {"composition", "num_atoms"}
    assert both.request(0, 2).num_atoms == [len(r.structure) for r in records[:2]]


def test_space_groups_from_a_split_are_spglibs():
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from crystalgen.data.registry import get_dataset

    records = get_dataset("embedded").load("test", max_rows=3, progress=False).records
    resolved = ConditionSpec(source="embedded:test", max_crystals=3).resolve("symmcd", frozenset({"spacegroup"}), None)
    assert resolved.values["spacegroup"] == [SpacegroupAnalyzer(r.structure, symprec=0.1).get_space_group_number()
                                             for r in records]


def test_a_configuration_saved_before_conditions_takes_them_as_an_override():
    from omegaconf import OmegaConf

    from crystalgen.runner.config import apply_user_layers, from_yaml, runner_defaults, to_yaml

    old = runner_defaults()
    del old.sample["condition"]
    cfg = from_yaml(to_yaml(old), "an older run's config.yaml")
    assert OmegaConf.to_container(cfg.sample.condition) == OmegaConf.to_container(runner_defaults().sample.condition)
    amended = apply_user_layers(cfg, overrides=["sample.condition.from=embedded:test", "sample.condition.per_condition=2"])
    spec = ConditionSpec.from_config(amended.sample.condition)
    assert spec.source == "embedded:test" and spec.per_condition == 2 and spec.decides_count()
