"""cProfile of ``crystalgen.metrics.evaluate`` with an empty reference cache, in one process (workers=1).

The generated crystals are bench/metrics.py's perturbed MP-20 validation crystals; the reference is the first
``--n-reference`` crystals of the MP-20 test split (the per-crystal costs are those of the whole split). Prints the
functions with the largest cumulative and own time and writes the raw profile for ``python -m pstats``.

Usage:
    OMP_NUM_THREADS=1 nice -n 10 python bench/profile_evaluate.py --n-generated 200 --n-reference 500 \
        --out /tmp/evaluate.prof
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import CDVAE_METRICS, generated_set, load_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-generated", type=int, default=200)
    parser.add_argument("--n-reference", type=int, default=500)
    parser.add_argument("--top", type=int, default=30, help="rows printed per table")
    parser.add_argument("--out", required=True, help="file for the raw profile (pstats format)")
    args = parser.parse_args()

    from crystalgen.metrics import evaluate
    from crystalgen.metrics.crystalnn.fingerprint import preset_layout
    from crystalgen.metrics.fingerprints import composition_fingerprint, structure_fingerprint

    generated = generated_set(args.n_generated)
    reference = load_split("mp_20", "test", args.n_reference)
    preset_layout(), structure_fingerprint(reference[0]), composition_fingerprint(reference[0].composition)
    os.environ["CRYSTALGEN_CACHE"] = tempfile.mkdtemp(prefix="crystalgen-profile-")  # cold: empty cache
    profiler = cProfile.Profile(time.process_time)  # CPU seconds: a shared machine's load does not inflate them
    profiler.enable()
    evaluate(generated, reference, metrics=CDVAE_METRICS[:-1], reference_name="mp_20", workers=1, progress=False)
    profiler.disable()
    profiler.dump_stats(args.out)
    stats = pstats.Stats(args.out)
    print(f"total {stats.total_tt:.1f} CPU s (profiled)")
    for key in ("cumulative", "tottime"):
        stats.sort_stats(key).print_stats(args.top)


if __name__ == "__main__":
    main()
