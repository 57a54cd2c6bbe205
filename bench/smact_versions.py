"""Composition validity of the benchmark test splits: crystalgen (installed smact) against smact 2.2.1 under CDVAE.

CDVAE's environment pinned smact 2.2.1; crystalgen runs on smact 4 with its ``oxidation_states_smact14`` set
(crystalgen.metrics.composition_validity). This script counts, per test split, the compositions each side calls
valid (crystalgen also under smact 4's ICSD24 set) and lists those on which they disagree, with the oxidation
states of their elements under both versions; and, as a check of the rule itself, it runs crystalgen's rule on
smact 2.2.1's oxidation states against the 2.2.1 side.

The smact 2.2.1 side runs in a separate interpreter (a throwaway virtual environment; smact 2.2.1 imports with numpy
and future only), following CDVAE's ``smact_validity``: elements in order of atomic number, counts reduced, every
oxidation-state assignment through ``smact.neutral_ratios`` and ``smact.screening.pauling_test``, a TypeError of
the latter counted as a pass, single elements and all-metal compositions valid.

    python3 -m venv /tmp/venv-smact221 && /tmp/venv-smact221/bin/pip install --no-deps smact==2.2.1 && \\
        /tmp/venv-smact221/bin/pip install numpy future
    CRYSTALGEN_DATA=DATA python bench/smact_versions.py --smact221-python /tmp/venv-smact221/bin/python \\
        --out bench/results/smact_versions_test_splits.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402

SPLITS = ("perov_5", "carbon_24", "mp_20")

# Runs under smact 2.2.1: reads [[symbols by Z], [reduced counts]] lists on stdin, writes validities and versions.
SMACT_221_SIDE = r"""
import itertools, json, sys
import numpy as np
import smact
from smact.screening import pauling_test

def valid(symbols, counts):
    if len(set(symbols)) == 1 or all(s in smact.metals for s in symbols):
        return True
    elements = [smact.element_dictionary(symbols)[s] for s in symbols]
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states for e in elements]):
        neutral, _ = smact.neutral_ratios(ox, stoichs=[(c,) for c in counts], threshold=int(np.max(counts)))
        if not neutral:
            continue
        try:
            if pauling_test(ox, enegs):
                return True
        except TypeError:
            return True
    return False

items = json.load(sys.stdin)
states = {s: smact.Element(s).oxidation_states for item in items for s in item[0]}
print(json.dumps({"smact": getattr(smact, "__version__", "2.2.1"), "valid": [valid(*item) for item in items],
                  "oxidation_states": states}))
"""


def split_compositions(root: Path, name: str) -> list[tuple[str, dict[str, int]]]:
    """(material id, composition of the cell from the CIF's _chemical_formula_sum) for every row of a test split."""
    import pandas as pd
    from pymatgen.core import Composition

    frame = pd.read_csv(root / name / "test.csv", usecols=["material_id", "cif"])
    found = []
    for material_id, cif in zip(frame["material_id"], frame["cif"], strict=True):
        match = re.search(r"_chemical_formula_sum\s+'?([^'\n]+)'?", cif)
        if match is None:
            raise SystemExit(f"{name}/test.csv, {material_id}: no _chemical_formula_sum in its CIF")
        composition = Composition(match.group(1))
        found.append((str(material_id), {str(e): int(round(n)) for e, n in composition.items()}))
    return found


def reduced_by_z(counts: dict[str, int]) -> tuple[list[str], list[int]]:
    import math

    from pymatgen.core import Element

    symbols = sorted(counts, key=lambda s: Element(s).Z)
    divisor = math.gcd(*counts.values())
    return symbols, [counts[s] // divisor for s in symbols]


def rule_with_states(symbols: list[str], counts: list[int], states: dict[str, list[int]]) -> bool:
    """crystalgen's rule (installed smact's electronegativities and metals) on smact 2.2.1's oxidation states: zero
    disagreements with the 2.2.1 side means every difference of the first comparison comes from the state tables."""
    import numpy as np
    import smact

    from crystalgen.metrics.composition_validity import _charge_balanced, _element_data

    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    enegs = [_element_data(s, "smact14")[1] for s in symbols]  # type: ignore[index]
    return _charge_balanced([tuple(states[s]) for s in symbols], np.array(counts, dtype=np.int64), enegs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smact221-python", required=True, help="python of a virtual environment with smact==2.2.1")
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args()

    import smact

    from crystalgen.metrics.composition_validity import composition_valid
    from crystalgen.testing import benchmark_data_root

    root = benchmark_data_root()
    if root is None:
        raise SystemExit("set CRYSTALGEN_DATA to the folder holding perov_5/, carbon_24/ and mp_20/")
    report: dict[str, object] = {**provenance(), "splits": {}}
    for name in SPLITS:
        rows = split_compositions(root, name)
        items = [reduced_by_z(counts) for _, counts in rows]
        old = subprocess.run([args.smact221_python, "-c", SMACT_221_SIDE], input=json.dumps(items), text=True,
                             capture_output=True, check=True)
        old_side = json.loads(old.stdout)
        ours = [composition_valid(counts) for _, counts in rows]
        icsd24 = [composition_valid(counts, "icsd24") for _, counts in rows]
        rule_only = [rule_with_states(symbols, counts, old_side["oxidation_states"]) for symbols, counts in items]
        differ = [i for i in range(len(rows)) if ours[i] != old_side["valid"][i]]
        elements = sorted({s for i in differ for s in items[i][0]})
        report["splits"][name] = {
            "rows": len(rows),
            "valid_crystalgen": sum(ours),
            "valid_smact_2_2_1_cdvae": sum(old_side["valid"]),
            "fraction_valid_crystalgen": sum(ours) / len(rows),
            "fraction_valid_crystalgen_icsd24": sum(icsd24) / len(rows),
            "fraction_valid_smact_2_2_1_cdvae": sum(old_side["valid"]) / len(rows),
            "disagreements": len(differ),
            "disagreements_with_smact_2_2_1_states": sum(a != b for a, b in zip(rule_only, old_side["valid"], strict=True)),
            "disagreeing_rows": [{"material_id": rows[i][0], "formula": "".join(f"{s}{n}" for s, n in zip(*items[i])),
                                  "crystalgen": ours[i], "smact_2_2_1_cdvae": old_side["valid"][i]} for i in differ],
            "oxidation_states_where_they_differ": {
                s: {"smact_2_2_1": old_side["oxidation_states"][s],
                    "installed_smact14": list(smact.Element(s).oxidation_states_smact14)}
                for s in elements if list(smact.Element(s).oxidation_states_smact14) != old_side["oxidation_states"][s]},
        }
        report["smact_2_2_1_side"] = old_side["smact"]
        print(f"{name}: {len(rows)} rows, valid {sum(ours)} (crystalgen) vs {sum(old_side['valid'])} "
              f"(smact 2.2.1, CDVAE), {len(differ)} disagreements", flush=True)
    report["load_average_at_end"] = load_average()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
