"""The preprocessing transform's cache contract: its output is pinned to its ``version``, which keys the cache."""

from __future__ import annotations

import hashlib

import numpy as np
from symmcd_testdata import prototype_crystals

from crystalgen_symmcd.transform import AsymmetricUnitTransform

#: version -> digest of the transform's output on the prototype crystals. When a change to the Wyckoff analysis
#: changes this digest, bump AsymmetricUnitTransform.version (so that no cache of the old output is reused) and
#: add the new pair here. "1" (pyxtal from_seed) was never pinned; "2" is the spglib analysis.
PINNED_OUTPUT = {"2": "e637aef8fd338eeeac067626e1b6db898def5bdfd529e084d6255d2f76fb5b29"}


def output_digest(transform: AsymmetricUnitTransform) -> str:
    """SHA-256 of every tensor the transform returns for the prototype crystals (floats rounded to 1e-6)."""
    h = hashlib.sha256()
    for structure in prototype_crystals():
        data = transform(structure)
        for key in sorted(data.keys()):
            value = np.asarray(data[key])
            if value.dtype.kind == "f":
                value = np.round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0
            h.update(key.encode())
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def test_output_is_pinned_to_the_cache_version():
    """Fails when the output changes without a new version (a stale cache would then be reused), or when the
    version goes back to one whose caches hold another output ("1" predates the spglib analysis)."""
    transform = AsymmetricUnitTransform()
    assert transform.version in PINNED_OUTPUT, f"version {transform.version!r} has no pinned output"
    assert transform.cache_key()["version"] == transform.version
    assert output_digest(transform) == PINNED_OUTPUT[transform.version], (
        "the transform's output changed: bump AsymmetricUnitTransform.version and pin the new digest"
    )
