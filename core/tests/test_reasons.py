"""Reasons: one precise kind per refused crystal with a non-empty detail, long values cut, impossible crystals
refused at read time, empty tables refused by name, rows counted from 0 after the header everywhere."""

from __future__ import annotations

import csv
import logging

import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.data.io import structure_to_cif
from crystalgen.data.registry import get_dataset
from crystalgen.metrics import evaluate
from crystalgen.metrics.samples import read_samples
from crystalgen.metrics.suite import _Evaluation

NACL = structure_to_cif(Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
HUGE = "1" * 100_000

#: (material_id, cif, band_gap) -> the skip kind and a fragment of its detail
CASES = {
    "xx": (NACL.replace("  Na  Na0", "  Xx  Xx0"), "1.0", "unknown element", "type symbol 'Xx'"),
    "uue": (NACL.replace("  Na  Na0", "  Uue  Uue0"), "1.0", "unknown element", "type symbol 'Uue'"),
    "negative": (NACL.replace("_cell_length_a   5.60000000", "_cell_length_a   -5.6"), "1.0", "impossible cell",
                 "cell length a = -5.6 is not positive"),
    "angle": (NACL.replace("_cell_angle_alpha   90.00000000", "_cell_angle_alpha   1e8"), "1.0", "impossible cell",
              "cell angle alpha = 1e8 degrees is outside (0, 180)"),
    "metric": (NACL.replace("_cell_angle_alpha   90.00000000", "_cell_angle_alpha   170")
               .replace("_cell_angle_beta   90.00000000", "_cell_angle_beta   170"), "1.0", "impossible cell",
               "do not form a cell"),
    "nan_coord": (NACL.replace("  Cl  Cl1  1  0.50000000", "  Cl  Cl1  1  nan"), "1.0", "non-finite structure",
                  "site 1 has coordinates [nan"),
    "huge": (NACL, HUGE, "infinite property", "band_gap=11111"),
    "inf": (NACL, "inf", "infinite property", "band_gap=inf is infinite"),
    "nan": (NACL, "nan", "NaN property", "band_gap is nan"),
    "fine": (NACL, "1.5", None, None),
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def write_table(path, rows) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", "cif", "band_gap"])
        writer.writerows(rows)


def test_each_refused_row_has_its_precise_kind_a_detail_and_short_values(tmp_path):
    table = tmp_path / "t.csv"
    write_table(table, [(name, cif, gap) for name, (cif, gap, _, _) in CASES.items()])
    loaded = get_dataset(table).load("train", workers=0, progress=False)
    assert [r.id for r in loaded.records] == ["fine"]
    skipped = {s.id: s for s in loaded.skipped}
    for name, (_, _, kind, fragment) in CASES.items():
        if kind is None:
            continue
        assert skipped[name].kind == kind, skipped[name].reason
        assert fragment in skipped[name].reason
        assert len(skipped[name].reason) < 500
    assert skipped["huge"].reason.endswith("(100,000 characters) is beyond the float range")
    assert [s.row for s in loaded.skipped] == list(range(len(CASES) - 1))  # rows from 0 after the header
    assert all(len(line) < 800 for line in loaded.summary().splitlines())


def test_evaluate_gives_the_same_kinds_their_reason_keys(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    for name in ("xx", "uue", "negative", "metric", "nan_coord"):
        (folder / f"{name}.cif").write_text(CASES[name][0])
    _, failures, ids = read_samples(folder, workers=0, progress=False)
    keys = {i: f.split(":", 1)[0] for i, f in zip(ids, failures)}
    assert keys == {"metric": "impossible_cell", "nan_coord": "non_finite", "negative": "impossible_cell",
                    "uue": "unknown_element", "xx": "unknown_element"}


def test_empty_tables_are_refused_naming_the_file(tmp_path):
    empty, header_only = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    header_only.write_text("material_id,cif\n")
    for path, what in ((empty, "the file is empty"), (header_only, "the file has a header but no rows")):
        with pytest.raises(ValueError, match=rf"{path}: {what}"):
            get_dataset(path).load("train", progress=False)
        with pytest.raises(ValueError, match=rf"{path}: {what}"):
            read_samples(path, workers=0, progress=False)


def test_evaluate_counts_csv_rows_from_0_after_the_header(tmp_path):
    table = tmp_path / "gen.csv"
    write_table(table, [("a", NACL, "1"), ("b", "", "1")])
    _, failures, _ = read_samples(table, workers=0, progress=False)
    assert failures == [None, f"empty_file: {table} row 1 has no CIF"]


def test_every_invalid_sample_has_a_detail(tmp_path):
    samples = [
        Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # valid
        Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]),  # overlapping atoms
        Structure(Lattice.cubic(0.3), ["Na"], [[0, 0, 0]]),  # small volume
        Structure(Lattice.cubic(5.6), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]]),  # unbalanced
        None,
    ]
    failures = [None, None, None, None, "decode_failed: the sampler produced NaN"]
    evaluate(samples, [], metrics=["validity"], failures=failures, workers=1, progress=False, out_dir=tmp_path)
    with (tmp_path / "per_sample.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["reason"] for r in rows] == ["", "overlapping_atoms", "small_volume", "not_charge_balanced",
                                           "decode_failed"]
    assert all(r["detail"] for r in rows if r["valid"] != "True")
    assert rows[1]["detail"] == "sites 0 (Na) and 1 (Cl) are 0.056 A apart (minimum 0.5 A)"
    assert rows[2]["detail"] == "cell volume 0.027 A^3 (minimum 0.1 A^3)"
    assert rows[3]["detail"].startswith("NaCl2 has no charge-neutral assignment")


def test_a_handled_metric_failure_logs_one_line_without_a_traceback(caplog):
    run = object.__new__(_Evaluation)
    run.result = {}

    def broken():
        raise RuntimeError("the property model's weights do not load\nsecond line of detail")

    with caplog.at_level(logging.DEBUG, logger="crystalgen.metrics.suite"):
        run.run_metric("wdist_prop", broken)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert warnings[0].getMessage() == ("metric wdist_prop failed (RuntimeError: the property model's weights do not "
                                        "load); the other metrics are kept")
    assert run.result == {"wdist_prop_unavailable": "failed: RuntimeError: the property model's weights do not load"}
