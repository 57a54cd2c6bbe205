"""evaluate() end to end on tiny crystals, its cache, its outputs, and the `crystalgen evaluate` verb."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from crystalgen.cli.main import main as cli_main
from crystalgen.metrics import evaluate
from crystalgen.metrics import reference as reference_module

FAST = ["validity", "coverage", "diversity", "wdist_density", "wdist_num_elems", "d_sg"]


def fcc(a: float) -> Lattice:
    return Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])


def tiny_crystals() -> list[Structure]:
    """Six small ordered crystals, all valid (structure and composition), in primitive cells."""
    return [
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(fcc(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(fcc(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(fcc(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    ]


def broken_samples() -> tuple[list, list]:
    nan = Structure(Lattice(np.full((3, 3), np.nan)), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    overlap = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.04, 0, 0]])
    flat = Structure(Lattice([[5, 0, 0], [0, 5, 0], [0, 0, 0.001]]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0]])
    charged = Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0.5]])
    return [None, None, nan, overlap, flat, charged], [
        "decode_failed: lattice exploded", "empty_file: cif/000007.cif is empty", None, None, None, None
    ]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def test_self_evaluation_and_invalid_samples_by_reason(tmp_path):
    ref = tiny_crystals()
    bad, failures = broken_samples()
    out = evaluate(ref + bad, ref, metrics=FAST, reference_name="perov_5", failures=[None] * 6 + failures,
                   out_dir=tmp_path / "out", workers=1, progress=False)
    assert out["n_samples"] == 12 and out["n_valid"] == 6
    assert out["struct_valid"] == pytest.approx(7 / 12)  # six good + the charged one
    assert out["comp_valid"] == pytest.approx(9 / 12)  # not: the two None samples (no species), NaCl2
    assert {k: v for k, v in out.items() if k.startswith("n_invalid_") and v} == {
        "n_invalid_decode_failed": 1, "n_invalid_empty_file": 1, "n_invalid_non_finite": 1,
        "n_invalid_overlapping_atoms": 1, "n_invalid_small_volume": 1, "n_invalid_not_charge_balanced": 1,
    }
    # the generated set contains the reference: everything recalled; COV-P counts all 12 samples
    assert out["cov_recall"] == 1.0
    assert out["cov_precision"] >= 6 / 12 and out["cov_n"] == 12
    assert out["wdist_density"] == pytest.approx(0.0, abs=1e-12) and out["wdist_density_n"] == 6
    assert out["wdist_num_elems"] == pytest.approx(0.0) and out["d_sg"] == pytest.approx(0.0, abs=1e-7)
    assert out["comp_valid_oxidation_states"] == "smact14" and out["cov_struct_cutoff"] == 0.2
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["status"] == "complete" and saved["cov_recall"] == 1.0
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "| COV-R (%) | 100.00 | 6 |" in table and "98.6" in table  # beside CDVAE's ground-truth figure
    per_sample = pd.read_csv(tmp_path / "out" / "per_sample.csv")
    assert per_sample["reason"].fillna("").tolist()[6:] == [
        "decode_failed", "empty_file", "non_finite", "overlapping_atoms", "small_volume", "not_charge_balanced"]


def test_reference_features_are_cached_by_content(tmp_path, monkeypatch):
    ref = tiny_crystals()
    first = evaluate(ref[:3], ref, metrics=["coverage", "d_sg"], reference_name="mp_20", workers=1, progress=False)
    assert len(list((tmp_path / "cache" / "metrics").glob("*.npz"))) == 2  # fingerprints, space groups
    calls = []
    original = reference_module.compute_features
    monkeypatch.setattr(reference_module, "compute_features", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = evaluate(ref[:3], ref, metrics=["coverage", "d_sg"], reference_name="mp_20", workers=1, progress=False)
    assert calls == [] and again["cov_recall"] == first["cov_recall"]
    changed = [s.copy() for s in ref]
    changed[0].perturb(0.01)
    evaluate(ref[:3], changed, metrics=["coverage"], reference_name="mp_20", workers=1, progress=False)
    assert len(calls) == 1  # a different reference is a miss


def test_unavailable_metrics_say_why():
    ref = tiny_crystals()
    out = evaluate(ref, ref, metrics=["coverage", "templates", "sun"], workers=1, progress=False)
    assert "cov_cutoffs" in out["coverage_unavailable"]  # no dataset name: no cutoffs
    assert "train" in out["templates_unavailable"] and "train" in out["sun_unavailable"]
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(ref, ref, metrics=["cov"], workers=1, progress=False)


def test_learned_metrics_through_the_property_sun_and_frechet_apis(tmp_path, monkeypatch):
    """The suite's side of the contract with properties.py / sun.py / frechet.py, with stand-in modules."""
    seen = {}

    class Density:
        name, units, cache_identity = "density_stand_in", "g/cm^3", "density-v1"

        def predict(self, structures):
            seen.setdefault("predicted", []).append(len(structures))
            return np.array([s.density for s in structures])

    properties = types.ModuleType("crystalgen.metrics.properties")
    properties.get_predictor = lambda name, **kw: Density()

    def default_predictor_for(dataset, models_dir=None):
        seen.setdefault("models_dir", []).append(models_dir)
        return "density_stand_in" if dataset == "perov_5" else None

    properties.default_predictor_for = default_predictor_for

    def sun_metrics(structures, reference, train, **kw):
        seen["partial"] = json.loads((tmp_path / "out" / "metrics.json").read_text())
        return {"sun_rate": 0.25, "sun_n": 1, "sun_n_structures": len(structures)}

    sun = types.ModuleType("crystalgen.metrics.sun")
    sun.sun_metrics = sun_metrics
    frechet = types.ModuleType("crystalgen.metrics.frechet")
    def frechet_distance(structures, reference, refused=None, **kw):
        refused.extend(["its graph would need about 9 GB"] + [""] * (len(structures) - 1))
        return {"fcd": 0.0, "fcd_n": len(structures), "fcd_embedding": "stand-in"}

    frechet.frechet_distance = frechet_distance
    for module in (properties, sun, frechet):
        monkeypatch.setitem(sys.modules, module.__name__, module)

    ref = tiny_crystals()
    out = evaluate(ref, ref, train=ref, metrics=["wdist_prop", "fcd", "sun"], reference_name="perov_5",
                   out_dir=tmp_path / "out", workers=1, progress=False)
    assert out["wdist_prop"] == pytest.approx(0.0, abs=1e-12) and out["wdist_prop_predictor"] == "density_stand_in"
    assert out["wdist_prop_n"] == 6 and out["wdist_prop_reference_n"] == 6
    assert out["fcd_embedding"] == "stand-in" and out["sun_rate"] == 0.25 and out["sun_n_structures"] == 6
    # metrics.json was written, marked partial, before S.U.N. started
    assert seen["partial"]["status"] == "partial" and "wdist_prop" in seen["partial"]
    refused = pd.read_csv(tmp_path / "out" / "per_sample.csv", keep_default_na=False)["refused"].tolist()
    assert refused == ["fcd: its graph would need about 9 GB"] + [""] * 5  # sun's stand-in refuses nothing
    evaluate(ref, ref, metrics=["wdist_prop"], reference_name="perov_5", workers=1, progress=False,
             options={"predictor_options": {"models_dir": "/models"}})
    assert seen["predicted"] == [6, 6, 6]  # samples, reference, samples again: the reference came from the cache
    assert seen["models_dir"] == [None, "/models"]  # --predictor-option models_dir=... picks the default predictor too


def test_failing_metric_does_not_stop_the_others(monkeypatch):
    properties = types.ModuleType("crystalgen.metrics.properties")
    properties.default_predictor_for = lambda dataset, models_dir=None: "broken"

    def get_predictor(name, **kw):
        raise RuntimeError("weights not found")

    properties.get_predictor = get_predictor
    monkeypatch.setitem(sys.modules, properties.__name__, properties)
    ref = tiny_crystals()
    out = evaluate(ref, ref, metrics=["wdist_prop", "wdist_density"], reference_name="mp_20", workers=1, progress=False)
    assert "weights not found" in out["wdist_prop_unavailable"] and out["wdist_density"] == pytest.approx(0.0)


def test_cli_evaluates_a_folder_of_cifs(tmp_path):
    ref = tiny_crystals()
    gen = tmp_path / "gen"
    gen.mkdir()
    for i, s in enumerate(ref[:4]):
        CifWriter(s).write_file(gen / f"{i}.cif")
    (gen / "9.cif").write_text("")
    ref_csv = tmp_path / "ref.csv"
    pd.DataFrame({"material_id": range(len(ref)), "cif": [str(CifWriter(s)) for s in ref]}).to_csv(ref_csv, index=False)
    out = tmp_path / "out"
    rc = cli_main(["evaluate", str(gen), "--reference", str(ref_csv), "--reference-name", "perov_5", "--out", str(out),
                   "--metrics", "validity,coverage,wdist_density,d_sg", "--workers", "1", "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 5 and metrics["n_valid"] == 4 and metrics["n_invalid_empty_file"] == 1
    assert metrics["cov_precision"] == pytest.approx(4 / 5) and metrics["reference_n"] == 6
    assert (out / "metrics.md").is_file() and (out / "per_sample.csv").is_file()


def test_cli_reconstruction_pairs_by_input_index(tmp_path):
    ref = tiny_crystals()
    recon = tmp_path / "recon"
    (recon / "cif").mkdir(parents=True)
    rows = []
    for index, input_index in enumerate([2, 0]):
        CifWriter(ref[input_index]).write_file(recon / "cif" / f"{index:06d}.cif")
        rows.append({"index": index, "ok": True, "reason": None, "cif": f"cif/{index:06d}.cif",
                     "input_index": input_index})
    (recon / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ref_csv = tmp_path / "ref.csv"
    pd.DataFrame({"cif": [str(CifWriter(s)) for s in ref]}).to_csv(ref_csv, index=False)
    rc = cli_main(["evaluate", str(recon), "--task", "reconstruction", "--reference", str(ref_csv),
                   "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"])
    assert rc == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["match_rate"] == 1.0 and metrics["match_rate_n"] == 2


def test_cli_reports_a_bad_reference_clearly(tmp_path, capsys):
    (tmp_path / "gen").mkdir()
    CifWriter(tiny_crystals()[0]).write_file(tmp_path / "gen" / "a.cif")
    rc = cli_main(["evaluate", str(tmp_path / "gen"), "--reference", "no-such-thing", "--out", str(tmp_path / "o"),
                   "--workers", "1", "--no-progress"])
    assert rc == 2 and "NAME:SPLIT" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--task", "reconstruction", "--metrics", "validity"], "--metrics is not used by --task reconstruction"),
    (["--task", "reconstruction", "--percentiles", "1,2,3"], "--percentiles is not used by --task reconstruction"),
    (["--task", "optimization", "--symprec", "0.01"], "--symprec is not used by --task optimization"),
    (["--metrics", "validity,covrage"], "unknown metric 'covrage'"),
    (["--cov-cutoffs", "0.4"], "--cov-cutoffs '0.4'"),
])
def test_cli_refuses_options_its_task_ignores_before_reading_anything(tmp_path, capsys, monkeypatch, extra, message):
    import crystalgen.metrics

    def never(*args, **kwargs):
        raise AssertionError("samples were read before the options were checked")

    monkeypatch.setattr(crystalgen.metrics, "read_samples", never)
    rc = cli_main(["evaluate", str(tmp_path / "missing"), "--reference", "perov_5:test", "--out", str(tmp_path / "o"),
                   "--no-progress", *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_a_reference_evaluated_against_itself_is_fingerprinted_once(monkeypatch):
    from crystalgen.metrics import suite

    fingerprinted = []
    original = reference_module.compute_features

    def counting(structures, requests, **kw):
        requests = [requests] * len(structures) if not isinstance(requests, list) else requests
        fingerprinted.append(sum(r.fingerprints for r in requests))
        return original(structures, requests, **kw)

    monkeypatch.setattr(reference_module, "compute_features", counting)
    monkeypatch.setattr(suite, "compute_features", counting)
    ref = tiny_crystals()
    out = evaluate(ref, ref, metrics=["coverage"], reference_name="mp_20", workers=1, progress=False)
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 1.0
    assert sum(fingerprinted) == len(ref)  # the reference side only
