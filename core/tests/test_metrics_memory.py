"""The memory budget of the metric stages: cost estimates by hand, packing, refusals with their reasons, unchanged
values for normal crystals, and the default metric set on adversarial crystals under a 3 GB address-space limit."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics import memory
from crystalgen.metrics.chgnet_backend import chgnet_predict, load_chgnet, predict_batch
from crystalgen.metrics.validity import min_pair_distance, structure_problem
from crystalgen.resources import GB, MEMORY_ENV, pack_by_cost


def dense_lead(n: int = 20, volume_per_atom: float = 0.65, seed: int = 0) -> Structure:
    """Pb atoms at random positions at least 0.5 A apart: "structurally valid", ~529 g/cm^3 at 0.65 A^3/atom."""
    rng = np.random.default_rng(seed)
    lattice = Lattice.cubic((n * volume_per_atom) ** (1 / 3))
    frac: list[np.ndarray] = []
    while len(frac) < n:
        candidate = rng.random(3)
        if not frac or lattice.get_all_distances(np.array(frac), candidate[None]).min() >= 0.5:
            frac.append(candidate)
    return Structure(lattice, ["Pb"] * n, np.array(frac))


def normal_crystals() -> list[Structure]:
    fcc = lambda a: Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])  # noqa: E731
    return [
        Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(fcc(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(fcc(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        Structure(fcc(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    ]


def test_graph_cost_by_hand():
    cost = memory.GraphCost("a graph", edge_cutoff=6.0, angle_cutoff=3.0, per_crystal=1.0, per_atom=10.0,
                            per_edge=100.0, per_angle=1000.0)
    # 8 atoms in 16 A^3: 0.5 atoms/A^3; 0.5 * 4/3 pi 6^3 = 144 pi neighbours within 6 A, 18 pi within 3 A
    edges, angles = cost.counts(8, 16.0)
    assert edges == pytest.approx(8 * 144 * math.pi)
    assert angles == pytest.approx(8 * (18 * math.pi) ** 2)
    assert cost.estimate(8, 16.0) == pytest.approx(1 + 80 + 100 * 8 * 144 * math.pi + 1000 * 8 * (18 * math.pi) ** 2)
    compressed = memory.GraphCost("a graph", 6.0, 3.0, 0.0, 0.0, 0.0, 1.0, volume_factor=0.5)
    assert compressed.estimate(8, 32.0) == pytest.approx(8 * (18 * math.pi) ** 2)  # priced at 16 A^3
    assert cost.estimate(8, 0.0) == math.inf
    assert memory.PairCost("pairs", per_pair=3.0, per_call=7.0).estimate(10, 20) == 607.0
    assert memory.dimenet_cost(2, 3, 4) == 2 * memory.DIMENET_PER_ATOM + 3 * memory.DIMENET_PER_EDGE + 4 * memory.DIMENET_PER_TRIPLET


def test_packing_by_cost_keeps_order_and_refuses_what_alone_exceeds():
    batches, refused = pack_by_cost([4, 3, 9, 11, 2, 2, 2, math.nan], budget=10, max_items=2)
    assert batches == [[0, 1], [2], [4, 5], [6]] and refused == [3, 7]


def test_chgnet_cost_covers_the_dense_crystal_that_took_16_gb_with_autograd():
    model = load_chgnet()
    dense, normal = dense_lead(), normal_crystals()[1]
    assert memory.CHGNET_PREDICT.of(dense) > 2 * GB  # refused under the default budget
    assert memory.CHGNET_PREDICT.of(normal) < 10 * 1024**2
    graph = model.graph_converter(normal)
    estimated_edges, _ = memory.CHGNET_PREDICT.counts(len(normal), normal.volume)
    assert 0.5 < graph.atom_graph.shape[0] / estimated_edges < 2.0  # the uniform-density count is the right size


def test_refused_crystal_gets_nan_and_a_reason_with_its_density(monkeypatch):
    monkeypatch.setenv(MEMORY_ENV, "0.5")
    structures = [normal_crystals()[1], dense_lead()]
    out = chgnet_predict(structures)
    assert np.isfinite(out["energy"][0]) and np.isnan(out["energy"][1]) and np.isnan(out["crystal_fea"][1]).all()
    assert out["refused"][0] == ""
    reason = out["refused"][1]
    assert reason.startswith("its CHGNet graph would need about") and "above the memory budget of 0.5 GB" in reason
    assert "20 atoms, density 5" in reason and "(0.65 A^3 per atom): physically impossible" in reason


def test_normal_crystals_get_the_values_of_one_unbudgeted_batch():
    """Packing by the budget (here: several batches) changes no value: CHGNet treats each crystal of a batch alone."""
    structures = normal_crystals() * 3
    model = load_chgnet()
    whole = predict_batch(model, structures)
    packed = chgnet_predict(structures, batch_size=4)
    assert [i for i, _, _ in whole] == list(range(len(structures)))
    np.testing.assert_allclose(packed["energy"], [e for _, e, _ in whole], rtol=0, atol=1e-6)
    np.testing.assert_allclose(packed["crystal_fea"], np.stack([f for _, _, f in whole]), rtol=0, atol=1e-5)


def test_blocked_distance_check_equals_the_whole_matrix(monkeypatch):
    structure = Structure(Lattice([[5, 0, 0], [1, 5, 0], [0.5, 0.5, 4]]), ["Na", "Cl", "Na", "Cl", "K"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.1, 0.7, 0.2], [0.9, 0.05, 0.6], [0.33, 0.3, 0.95]])
    whole = structure.distance_matrix
    np.fill_diagonal(whole, np.inf)
    monkeypatch.setenv(MEMORY_ENV, repr(2 * memory.DISTANCE_MATRIX.per_pair * 5 / GB))  # two rows per block
    assert min_pair_distance(structure) == whole.min()
    overlapping = Structure(structure.lattice, structure.species, np.vstack([structure.frac_coords[:4], [[0.51, 0.5, 0.5]]]))
    assert structure_problem(overlapping) == "overlapping_atoms" and structure_problem(structure) is None


ADVERSARIAL_RUN = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))
    import pickle
    from importlib.resources import files
    from omegaconf import OmegaConf
    from crystalgen.metrics import evaluate
    samples, reference, out = pickle.load(open(sys.argv[1], "rb"))
    metrics = list(OmegaConf.load(files("crystalgen") / "configs" / "runner.yaml").evaluate.metrics)
    evaluate(samples, reference, train=reference, metrics=metrics, reference_name="mp_20", out_dir=out, workers=2,
             progress=False)
""")


def test_default_metrics_on_adversarial_crystals_under_a_3_gb_address_space(tmp_path):
    dense = [dense_lead(seed=seed) for seed in range(3)]
    large = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * (8, 8, 8)
    normal = normal_crystals()
    samples = dense + [large] + normal
    import pickle

    (tmp_path / "input.pkl").write_bytes(pickle.dumps((samples, normal, str(tmp_path / "out"))))
    env = {k: v for k, v in os.environ.items() if k not in (MEMORY_ENV, "CRYSTALGEN_CDVAE_PROP_MODELS")}
    env.update(CRYSTALGEN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", ADVERSARIAL_RUN, str(tmp_path / "input.pkl")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert result["status"] == "complete" and not [k for k in result if k.endswith("_unavailable")]
    assert result["n_valid"] == len(samples)  # dense by 0.5 A rule, large and normal crystals are all "valid"
    assert result["wdist_prop_predictor"] == "chgnet_energy" and math.isfinite(result["wdist_prop"])
    assert result["wdist_prop_n_refused"] == len(dense)
    assert "physically impossible, denser than any known solid" in result["wdist_prop_refused_reason"]
    rows = pd.read_csv(tmp_path / "out" / "per_sample.csv", keep_default_na=False)
    refused = rows["refused"].tolist()
    assert all(r.startswith("wdist_prop: its CHGNet graph") and "g/cm^3 (0.65 A^3 per atom)" in r for r in refused[:3])
    assert refused[3:] == [""] * (1 + len(normal))
    assert Path(tmp_path / "out" / "metrics.md").is_file()


def test_memory_budget_from_the_cli_and_the_run_config(tmp_path, monkeypatch, capsys):
    from omegaconf import OmegaConf

    from crystalgen.cli.main import main as cli_main
    from crystalgen.resources import memory_budget
    from crystalgen.runner.pipeline import apply_memory_budget

    monkeypatch.setenv(MEMORY_ENV, "2")  # recorded, so that what apply_memory_budget sets is undone afterwards
    monkeypatch.delenv(MEMORY_ENV)
    apply_memory_budget(OmegaConf.create({"memory_gb": None}))
    assert MEMORY_ENV not in os.environ and memory_budget() == 2 * GB
    apply_memory_budget(OmegaConf.create({"memory_gb": 1.5}))
    assert memory_budget() == int(1.5 * GB)  # and worker processes inherit it through the environment
    rc = cli_main(["evaluate", str(tmp_path), "--reference", "mp_20:test", "--out", str(tmp_path / "o"), "--memory-gb", "lots"])
    assert rc == 2 and "--memory-gb: memory budget must be a number of gigabytes, got 'lots'" in capsys.readouterr().err


def test_sun_skips_a_relaxation_over_the_budget_and_says_so(monkeypatch):
    from crystalgen.metrics.sun import sun_metrics

    nacl = normal_crystals()[1]
    monkeypatch.setenv(MEMORY_ENV, repr(memory.CHGNET_RELAX.of(nacl) / 2 / GB))  # energy fits, relaxation does not
    refused: list[str] = []
    out = sun_metrics([nacl], [nacl], [nacl], max_steps=2, workers=1, progress=False, refused=refused)
    assert out["sun_n_refused"] == 1 and out["stable_n"] == 0 and out["stable_initial_n"] == 1
    assert refused[0].startswith("its CHGNet relaxation would need about") and "density 2.1" in refused[0]


def test_dimenet_batches_refuse_a_graph_over_the_budget(monkeypatch):
    from crystalgen.metrics.properties import cdvae_model_folder, get_predictor

    if cdvae_model_folder("mp_20") is None:
        pytest.skip("CDVAE's mp20 property model not found ($CRYSTALGEN_CDVAE_PROP_MODELS)")
    predictor = get_predictor("cdvae_mp_20", workers=1)
    large = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * (4, 4, 4)
    unbudgeted, _ = predictor.predict_with_reasons(normal_crystals())
    monkeypatch.setenv(MEMORY_ENV, "0.01")  # 10 MB: the 256-atom cell's graph needs more, the small ones fit
    values, reasons = predictor.predict_with_reasons(normal_crystals() + [large])
    np.testing.assert_allclose(values[:-1], unbudgeted, rtol=0, atol=1e-6)
    assert np.isnan(values[-1]) and reasons[:-1] == [""] * 5
    assert reasons[-1].startswith("its DimeNet++ graph (") and "256 atoms, density 8.9" in reasons[-1]
