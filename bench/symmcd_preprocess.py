"""Time SymmCD's preprocessing (Wyckoff analysis) of dataset splits through the core's data layer.

Each split is loaded with crystalgen.data.registry and transformed by ``prepare_split`` (parallel workers,
on-disk cache). A fresh cache folder is used unless --cache-dir is given, so the times are build times; run
it twice on the same folder to see the cache-hit times.

    CRYSTALGEN_DATA=DATA nice python bench/symmcd_preprocess.py --datasets embedded perov_5 mp_20 \
        --workers 2 --cache-dir /tmp/symmcd_cache
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter

from crystalgen.data.preprocess import prepare_split
from crystalgen.data.registry import get_dataset
from crystalgen_symmcd.transform import AsymmetricUnitTransform


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["embedded", "perov_5", "mp_20"])
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default=None, help="write the timings as JSON here")
    args = p.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="symmcd_cache_")
    transform = AsymmetricUnitTransform()
    rows = []
    for name in args.datasets:
        for split in args.splits:
            start = time.perf_counter()
            loaded = get_dataset(name).load(split)
            load_seconds = time.perf_counter() - start
            prepared = prepare_split(loaded, transform, cache_dir=cache_dir, workers=args.workers, progress=False)
            reasons = Counter(s.reason.split(":")[0] for s in prepared.skipped)
            row = {"dataset": name, "split": split, "records": len(loaded.records), "prepared": len(prepared.items),
                   "skipped": len(prepared.skipped), "skip_reasons": dict(reasons), "load_seconds": round(load_seconds, 1),
                   "transform_seconds": round(prepared.seconds, 1), "cache_hit": prepared.cache_hit, "workers": args.workers}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": f"{platform.node()}, {os.cpu_count()} cores, CPU only", "cache_dir": cache_dir, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
